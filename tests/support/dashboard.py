"""Run the dashboard as users run it: `kubectl conveyor dashboard` in its own process, with one
identity's kubeconfig (so the API server sees that person), on a free port of 127.0.0.1 — or, with
`server_args`, the chart's in-cluster entry point `conveyor dashboard <server_args>` as given."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"Conveyor dashboard: (http://\S+)")
TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")


class DashboardProcess:
    """`kubectl-conveyor dashboard --port 0` as a subprocess; `url` once it serves (the address it
    printed, with its session token in the fragment: a page opened there keeps it).

    `server_args`: run `conveyor dashboard *server_args` instead (the chart's command line; then
    `namespaces` and `read_only` are not used — the arguments say everything)."""

    def __init__(
        self,
        kubeconfig: Path,
        *namespaces: str,
        read_only: bool = False,
        server_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.read_only = read_only
        self.server_args = server_args
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> DashboardProcess:
        """Start it and wait for the line that says where it serves (it prints it once every watch
        has listed, so the first page shows everything)."""
        if self.server_args is not None:
            args = [str(REPO / ".venv" / "bin" / "conveyor"), "dashboard", *self.server_args]
        else:
            args = [str(REPO / ".venv" / "bin" / "kubectl-conveyor"), "dashboard", "--port", "0"]
            args += [a for ns in self.namespaces for a in ("-n", ns)]
            if self.read_only:
                args.append("--read-only")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise AssertionError(
                f"the dashboard did not say where it serves within {timeout:.0f}s:\n"
                + "\n".join(self.lines[-30:])
            )
        return self

    def _pump(self) -> None:
        assert self.proc
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = READY.search(line)
            if m and not self.url:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()  # ended: start() reports it

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT, without the token."""
        return self.url.split("#", 1)[0].rstrip("/")

    def open_in(self, browser: Any) -> None:
        """Open the printed address in `browser` (tests/support/browser.py) and wait until the page
        has taken its token and shown its first view: the address no longer carries the token, the
        header names the viewer, and the view has loaded. A test that navigates on at once raced
        the page's own start (seen in a fresh-clone run: the next address was left showing the
        board)."""
        browser.open(self.url)
        browser.wait_until(
            lambda: browser.driver.execute_script(
                "return !location.hash.startsWith('#token=')"
                " && document.getElementById('viewer').textContent !== ''"
                " && !!document.getElementById('view').dataset.loaded;"
            ),
            what="the dashboard took its token and showed its first view",
        )

    @property
    def token(self) -> str:
        """The session token the printed address carries ('' when it needs none)."""
        m = TOKEN.search(self.url)
        return m.group(1) if m else ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        session: bool = True,
        raw: bool = False,
    ) -> tuple[int, Any]:
        """One HTTP request to the dashboard, with the session token (X-Conveyor-Token) unless
        `session=False`; `body` as JSON, or bytes as they are; (status, decoded JSON body — or the
        text, with `raw`)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
        sent = dict(headers or {})
        if session and self.token:
            sent.setdefault("X-Conveyor-Token", self.token)
        req = urllib.request.Request(  # noqa: S310  (our own http://127.0.0.1 URL)
            self.base + path, data=data, method=method, headers=sent
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        if raw:
            return status, payload.decode(errors="replace")
        return status, json.loads(payload or b"{}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
