"""Start the dashboard: pick what to watch, list it, serve, print where."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import webbrowser
from dataclasses import dataclass, field

import urllib3
from aiohttp import web
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from conveyor.dashboard.server import Dashboard, Settings
from conveyor.dashboard.store import Store, choose_scope
from conveyor.kube.client import Kube, context_namespace, load_api_client

log = logging.getLogger("conveyor.dashboard")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY = ("0.0.0.0", "::")  # noqa: S104  (names of "every interface", compared, not bound)


@dataclass
class Options:
    """How to serve (see `kubectl conveyor dashboard --help`)."""

    address: str = "127.0.0.1"
    port: int = 8642
    namespaces: list[str] = field(default_factory=list)
    read_only: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    open_browser: bool = False
    kubeconfig: str | None = None
    # `kubectl conveyor dashboard`: the person's own credentials, a token in the printed address, and
    # actions unless read-only. `conveyor dashboard` (the chart's Pod): never personal — read-only,
    # no token (the authenticating proxy in front decides who looks), its ServiceAccount's identity.
    personal: bool = True


def hosts_for(address: str, port: int, extra: list[str]) -> set[str]:
    """The Host header values the server answers to: its own address and, on loopback, localhost."""
    names = {address}
    if address in LOOPBACK or address in ANY:
        names |= set(LOOPBACK)
    out = set()
    for name in names | set(extra):
        n = name.lower()
        host = f"[{n}]" if ":" in n and not n.startswith("[") else n
        out |= {f"{host}:{port}"} | ({host} if port in (80, 443) else set())
    for e in extra:
        out.add(e.lower())  # as given, e.g. conveyor.example.com (behind a proxy on 443)
    return out


async def _serve(options: Options, ready: asyncio.Event | None = None) -> None:
    # Not personal, an action would be the ServiceAccount's, not the person's: never.
    read_only = options.read_only or not options.personal
    kube = Kube(load_api_client(options.kubeconfig))
    scope = await asyncio.to_thread(choose_scope, kube, options.namespaces, context_namespace())
    store = Store(kube, scope)
    settings = Settings(read_only=read_only, allowed_hosts=set(), personal=options.personal)
    dashboard = Dashboard(kube, store, settings)
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, options.address, options.port)
    await site.start()
    # The port actually bound (0 asks the kernel for a free one).
    sockets = getattr(site._server, "sockets", None) or []
    port = int(sockets[0].getsockname()[1]) if sockets else options.port
    settings.allowed_hosts = hosts_for(options.address, port, options.allowed_hosts)
    store.start()
    await asyncio.to_thread(store.wait_synced, 10.0)
    shown = "127.0.0.1" if options.address in (*ANY, "localhost") else options.address
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    if settings.personal:
        # In the fragment: never sent to a server, not in any access log; the page keeps it in
        # its own origin's storage and drops it from the address bar.
        url += f"#token={settings.token}"
    if not options.personal and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        # The shared server has no token: outside a Pod, every local user (and, on 0.0.0.0, the
        # network) reads with these credentials. Said loudly; `kubectl conveyor dashboard` is yours.
        log.warning(
            "conveyor dashboard is the chart's shared read-only server: it asks no token, so anyone "
            "who reaches %s:%s reads what %s may read; for yourself, run `kubectl conveyor dashboard`",
            options.address,
            port,
            "these credentials",
        )
    print(
        f"Conveyor dashboard: {url}  ({scope.why}; {'read-only' if read_only else 'actions as you'})",
        flush=True,
    )
    if options.open_browser:
        webbrowser.open(url)
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        store.close()
        await runner.cleanup()


def serve(options: Options) -> int:
    """Run until interrupted; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(options))
    except config.ConfigException as e:
        print(f"conveyor dashboard: {e}", file=sys.stderr)
        return 2
    except ApiException as e:
        print(f"conveyor dashboard: the API server said {e.status} {e.reason}", file=sys.stderr)
        return 2
    except urllib3.exceptions.HTTPError as e:
        print(f"conveyor dashboard: cannot reach the API server: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"conveyor dashboard: cannot serve on {options.address}:{options.port}: {e}", file=sys.stderr)
        return 2
    return 0
