"""`kubectl conveyor`: a kubectl plugin that makes Conveyor pleasant (plain kubectl stays complete).

    kubectl conveyor status [PIPELINE] [--watch [--release R] [--timeout S]]
    kubectl conveyor trace SHA
    kubectl conveyor history PIPELINE [--stage S]
    kubectl conveyor approve RELEASE --stage S [--comment C] [--reviewed-by R]
    kubectl conveyor rollback PIPELINE [--stage S] [--to RELEASE] [--reason R] [--no-verify]
    kubectl conveyor dashboard [--port P] [-n NS]... [--read-only] [--open]

Every command takes -n/--namespace and -o json. Exit codes for CI: 0 success; 1 the release failed
(status --watch); 2 bad usage or not found; 3 timed out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from kubernetes import config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import TERMINAL_PHASES, Release
from conveyor.api.rollback import Rollback
from conveyor.cli import dashboard
from conveyor.core.plan import order_key
from conveyor.kube.client import Kube, context_namespace, load_api_client
from conveyor.views import actions
from conveyor.views import text as views

OK, FAILED, USAGE, TIMEOUT = 0, 1, 2, 3


class Cli:
    """The plugin's view of the cluster: one namespace, parsed objects."""

    def __init__(self, namespace: str | None) -> None:
        self.kube = Kube(load_api_client())
        self.ns = namespace or context_namespace()

    def _all(self, plural: str, model: type[Any], selector: str | None = None) -> list[Any]:
        out = []
        for obj in self.kube.list_custom(plural, self.ns, field_selector=selector):
            try:
                out.append(model.model_validate(obj))
            except ValidationError:
                continue
        return out

    def pipeline(self, name: str) -> Pipeline | None:
        obj = self.kube.get_custom("pipelines", self.ns, name)
        return Pipeline.model_validate(obj) if obj else None

    def pipelines(self) -> list[Pipeline]:
        return list(self._all("pipelines", Pipeline))

    def releases(self, pipeline: str | None = None) -> list[Release]:
        return list(self._all("releases", Release, f"spec.pipeline={pipeline}" if pipeline else None))

    def rollbacks(self, pipeline: str | None = None) -> list[Rollback]:
        return list(self._all("rollbacks", Rollback, f"spec.pipeline={pipeline}" if pipeline else None))


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    # JSON escapes every non-ASCII character; text is neutralised (views.printable).
    print(json.dumps(data, indent=2, default=str) if args.output == "json" else views.printable(text))


def cmd_status(cli: Cli, args: argparse.Namespace) -> int:
    """Where each commit is; with --watch, follow a release until it ends (exit 1 when it fails)."""
    if args.watch:
        return watch_release(cli, args)
    pipelines = [p for p in [cli.pipeline(args.pipeline)] if p] if args.pipeline else cli.pipelines()
    if args.pipeline and not pipelines:
        print(f"no pipeline {args.pipeline} in namespace {cli.ns}", file=sys.stderr)
        return USAGE
    data = [views.status(p, cli.releases(p.metadata.name)) for p in pipelines]
    _emit(args, data, "\n\n".join(views.render_status(d) for d in data) or f"no pipelines in {cli.ns}")
    return OK


def watch_release(cli: Cli, args: argparse.Namespace) -> int:
    """Follow one release (default: the pipeline's newest) to its verdict, redrawing on a terminal."""
    if not args.pipeline and not args.release:
        print("status --watch needs a PIPELINE or --release", file=sys.stderr)
        return USAGE
    name = args.release
    if name is None:
        rels = sorted(cli.releases(args.pipeline), key=order_key)  # the operator's own notion of newest
        if not rels:
            print(f"no releases of pipeline {args.pipeline}", file=sys.stderr)
            return USAGE
        name = rels[-1].metadata.name
    tty = sys.stdout.isatty() and args.output != "json"
    deadline = time.monotonic() + args.timeout
    last_line = ""
    while True:
        obj = cli.kube.get_custom("releases", cli.ns, name)
        if obj is None:
            print(f"no release {name} in namespace {cli.ns}", file=sys.stderr)
            return USAGE
        rel = Release.model_validate(obj)
        line = views.printable(_progress_line(rel))
        if line != last_line:
            if tty:
                print(f"\r\033[K{line}", end="", flush=True)
            elif args.output != "json":
                print(line, flush=True)
            last_line = line
        if rel.status.phase in TERMINAL_PHASES:
            if tty:
                print()
            if args.output == "json":
                print(json.dumps({"release": name, "phase": rel.status.phase, "message": rel.status.message}))
            return OK if rel.status.phase == "Succeeded" else FAILED
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if tty:
                print()
            print(
                f"timed out after {args.timeout:.0f}s; release {name} is {rel.status.phase}",
                file=sys.stderr,
            )
            return TIMEOUT
        # Wait for the next change of this release (a watch, not a poll), at most until the deadline.
        cli.kube.watch_one("releases", cli.ns, name, rel.metadata.resource_version, max(1, int(remaining)))


def _progress_line(rel: Release) -> str:
    stages = []
    for rec in rel.status.stages:
        mark = {"Verified": "✓", "Failed": "✗"}.get(str(rec.phase), "…")
        stages.append(f"{rec.name}{mark}")
    return (
        f"{rel.metadata.name} {rel.spec.commit[:7]}  {rel.status.phase or 'Pending'}  "
        f"[{' '.join(stages)}]  {rel.status.message or ''}"
    ).rstrip()


def cmd_trace(cli: Cli, args: argparse.Namespace) -> int:
    """The commit's journey, one timeline per release of that commit."""
    sha = args.sha.lower()
    if not re.fullmatch(r"[0-9a-f]{4,40}", sha):
        print(f"kubectl conveyor: {args.sha!r} is not a commit SHA (4 to 40 hex characters)", file=sys.stderr)
        return USAGE
    rels = [r for r in cli.releases() if r.spec.commit.startswith(sha)]
    if not rels:
        print(f"no release of a commit starting {sha} in namespace {cli.ns}", file=sys.stderr)
        return USAGE
    data = []
    for rel in sorted(rels, key=lambda r: r.metadata.creation_timestamp or views.EPOCH):
        data.append(views.trace(rel, cli.pipeline(rel.spec.pipeline), cli.rollbacks(rel.spec.pipeline)))
    _emit(args, data if len(data) > 1 else data[0], "\n\n".join(views.render_trace(d) for d in data))
    return OK


def cmd_history(cli: Cli, args: argparse.Namespace) -> int:
    """What ran where, when, who put it there."""
    pipeline = cli.pipeline(args.pipeline)
    if pipeline is None:
        print(f"no pipeline {args.pipeline} in namespace {cli.ns}", file=sys.stderr)
        return USAGE
    rows = views.history(cli.releases(args.pipeline), cli.rollbacks(args.pipeline), args.stage)
    _emit(
        args, rows, views.render_table(rows, ["at", "stage", "release", "commit", "action", "outcome", "by"])
    )
    return OK


def cmd_approve(cli: Cli, args: argparse.Namespace) -> int:
    """Create an Approval for the release as it is now — its uid and digest, owned by it — so it never
    counts for other content (a re-created release of the same name); the API server stamps who you are."""
    release = cli.kube.get_custom("releases", cli.ns, args.release)
    if release is None:
        print(f"error: no release {args.release!r} in namespace {cli.ns}", file=sys.stderr)
        return USAGE
    pipeline = cli.pipeline(release["spec"]["pipeline"])
    if pipeline is not None and pipeline.stage(args.stage) is None:
        names = ", ".join(st.name for st in pipeline.spec.stages)
        print(
            f"error: pipeline {pipeline.metadata.name} has no stage {args.stage!r} ({names})", file=sys.stderr
        )
        return USAGE
    body = actions.approval_body(release, args.stage, args.comment, args.reviewed_by)
    created = cli.kube.create_custom_object("approvals", cli.ns, body)
    who = created["spec"].get("approver", {}).get("username", "?")
    _emit(
        args,
        created,
        f"approval/{created['metadata']['name']} created: {who} approves {args.release} for {args.stage}",
    )
    return OK


def cmd_rollback(cli: Cli, args: argparse.Namespace) -> int:
    """Create a Rollback (of a pipeline that exists, in a stage it has)."""
    pipeline = cli.pipeline(args.pipeline)
    if pipeline is None:
        print(f"error: no pipeline {args.pipeline!r} in namespace {cli.ns}", file=sys.stderr)
        return USAGE
    if args.stage and pipeline.stage(args.stage) is None:
        names = ", ".join(st.name for st in pipeline.spec.stages)
        print(f"error: pipeline {args.pipeline} has no stage {args.stage!r} ({names})", file=sys.stderr)
        return USAGE
    body = actions.rollback_body(args.pipeline, args.stage, args.to, args.reason, verify=not args.no_verify)
    created = cli.kube.create_custom_object("rollbacks", cli.ns, body)
    _emit(
        args,
        created,
        f"rollback/{created['metadata']['name']} created "
        f"(kubectl get rollback {created['metadata']['name']} -w)",
    )
    return OK


def build_parser() -> argparse.ArgumentParser:
    """The plugin's argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    common.add_argument("-o", "--output", choices=["text", "json"], default="text")
    parser = argparse.ArgumentParser(
        prog="kubectl conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("status", parents=[common], help="where each commit is")
    p.add_argument("pipeline", nargs="?")
    p.add_argument("--watch", "-w", action="store_true", help="follow a release to its verdict")
    p.add_argument("--release", help="with --watch: this release (default: the newest)")
    p.add_argument("--timeout", type=_positive, default=1800, help="with --watch: give up after (s)")
    p.set_defaults(run=cmd_status)
    p = sub.add_parser("trace", parents=[common], help="a commit's journey")
    p.add_argument("sha")
    p.set_defaults(run=cmd_trace)
    p = sub.add_parser("history", parents=[common], help="what ran where, when, who put it there")
    p.add_argument("pipeline")
    p.add_argument("--stage")
    p.set_defaults(run=cmd_history)
    p = sub.add_parser("approve", parents=[common], help="approve a release into a stage")
    p.add_argument("release")
    p.add_argument("--stage", required=True)
    p.add_argument("--comment")
    p.add_argument("--reviewed-by", help="declared review behind it (e.g. a pull request URL)")
    p.set_defaults(run=cmd_approve)
    p = sub.add_parser("rollback", parents=[common], help="roll a stage back")
    p.add_argument("pipeline")
    p.add_argument("--stage")
    p.add_argument("--to", help="release to go back to (default: the previous one verified there)")
    p.add_argument("--reason")
    p.add_argument("--no-verify", action="store_true", help="skip the smoke test (fastest)")
    p.set_defaults(run=cmd_rollback)
    p = sub.add_parser(
        "dashboard",
        help="a web dashboard on 127.0.0.1, with your kubeconfig (your RBAC decides what you see)",
        description="Serve the dashboard on this machine with your own credentials: what your RBAC lets "
        "you list is what you see, and an approval or rollback you make there is yours, stamped by the "
        "API server. Every asset is served locally (works air-gapped).",
    )
    dashboard.add_arguments(p, address="127.0.0.1", local=True)
    p.set_defaults(run=None)
    return parser


def _positive(value: str) -> float:
    """A number of seconds greater than zero (argparse type)."""
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Entry point of `kubectl-conveyor`."""
    args = build_parser().parse_args(argv)
    if args.command == "dashboard":
        return dashboard.serve(args, local=True)
    try:
        cli = Cli(args.namespace)
        code: int = args.run(cli, args)
    except config.ConfigException as e:
        print(f"kubectl conveyor: {e}", file=sys.stderr)
        return USAGE
    except ApiException as e:
        # The API server's own word (e.g. a field the schema refuses), not a traceback.
        print(f"kubectl conveyor: {_api_message(e)}", file=sys.stderr)
        return USAGE
    return code


def _api_message(error: ApiException) -> str:
    """The message of an API server's Status answer, else its reason."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or f"{error.status} {error.reason}")


if __name__ == "__main__":
    sys.exit(main())
