"""``conveyor``: the operator's command line.

``conveyor version`` prints the version; ``conveyor run`` starts the operator with kopf against the
current kubeconfig (or the in-cluster ServiceAccount).
"""

from __future__ import annotations

import argparse
import sys

from conveyor import __version__
from conveyor.cli import dashboard


def _run(args: argparse.Namespace) -> int:
    # Imported here so `conveyor version` stays fast and works without a cluster.
    from conveyor.handlers.operator import run_operator

    run_operator(
        namespaces=args.namespace or [],
        liveness_endpoint=args.liveness or None,
        metrics_port=args.metrics_port,
        leader_election=args.leader_election,
        lease_namespace=args.leader_election_namespace,
        lease_name=args.lease_name,
        identity=args.leader_identity,
        notify_allowed_hosts=args.notify_allowed_host or [],
        cluster_secret_namespace=args.cluster_secret_namespace,
        allow_insecure_clusters=args.allow_insecure_clusters,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``conveyor`` argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version and exit")
    run = sub.add_parser("run", help="run the operator in the foreground")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        help="watch only this namespace (repeatable); default: every namespace",
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf liveness endpoint URL (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="port for Prometheus /metrics and the /healthz and /readyz probes; 0 disables "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="act without holding the Lease (one replica only, or development)",
    )
    run.add_argument(
        "--leader-election-namespace",
        help="namespace of the Lease (default: $POD_NAMESPACE, the in-cluster namespace, else default)",
    )
    run.add_argument(
        "--lease-name",
        help="name of the Lease the replicas elect a leader with (default: conveyor-leader)",
    )
    run.add_argument(
        "--leader-identity",
        help="this replica's identity on the Lease (default: $POD_NAME, else hostname-pid)",
    )
    run.add_argument(
        "--notify-allowed-host",
        action="append",
        metavar="HOST[:PORT]",
        help="a host NotificationChannels may reach although private or loopback, and over plain "
        "http (repeatable; default: public https hosts only)",
    )
    run.add_argument(
        "--cluster-secret-namespace",
        help="namespace of the Secrets that let stages live in other clusters (labelled "
        "conveyor.dev/cluster-secret=true; docs/multi-cluster.md) (default: the Lease's namespace)",
    )
    run.add_argument(
        "--allow-insecure-clusters",
        action="store_true",
        help="accept cluster Secrets with tlsClientConfig.insecure (no server certificate check): "
        "development only",
    )
    web = sub.add_parser(
        "dashboard",
        help="serve the read-only web dashboard for everyone (the chart's: behind an authenticating "
        "proxy, with its own ServiceAccount; `kubectl conveyor dashboard` is the personal one)",
    )
    dashboard.add_arguments(web, address="127.0.0.1", local=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``conveyor`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"conveyor {__version__}")
        return 0
    if args.command == "dashboard":
        return dashboard.serve(args, local=False)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
