"""The dashboard's command line, one definition for `kubectl conveyor dashboard` (local, as you) and
`conveyor dashboard` (the chart's in-cluster server)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, *, address: str, local: bool) -> None:
    """The dashboard's options; `address` is the default to listen on."""
    parser.add_argument("--address", default=address, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8642, help="port (default: %(default)s; 0 picks a free one)"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable; default: every namespace the credentials may list, "
        "else the context's)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        dest="allowed_hosts",
        metavar="HOST",
        help="a Host header to answer to besides the address itself, e.g. the Service's or the "
        "proxy's name (repeatable)",
    )
    if local:
        parser.add_argument("--read-only", action="store_true", help="no Approve / Roll back buttons")
        parser.add_argument("--open", action="store_true", help="open it in your browser")
    else:
        # The chart's server never acts (an action would be its ServiceAccount's): accepted, always on.
        parser.add_argument("--read-only", action="store_true", default=True, help="always on")


def serve(args: argparse.Namespace, *, local: bool) -> int:
    """Serve until interrupted; the exit code. `local`: `kubectl conveyor dashboard` (as you, with
    a token); else the chart's read-only server."""
    from conveyor.dashboard import run  # aiohttp only when serving: the other commands stay quick

    return run.serve(
        run.Options(
            address=args.address,
            port=args.port,
            namespaces=args.namespaces,
            read_only=args.read_only,
            allowed_hosts=args.allowed_hosts,
            open_browser=getattr(args, "open", False),
            personal=local,
        )
    )
