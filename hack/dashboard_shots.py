"""The dashboard's screenshots (docs/images/dashboard-*.png), from a scene made for real on the local
control plane. Run by hack/dashboard-shots, which starts the cluster and sets KUBECONFIG,
CONVEYOR_CLUSTER_DIR and PATH.

The scene: the demo's shop pipeline (namespace default) and six more in two teams' namespaces
(payments: checkout, ledger, billing; search: search-api, indexer, autocomplete), each Pipeline
labelled conveyor.dev/team, over stage namespaces whose Deployments kwok makes Available; some run
migrations, all run smoke tests. CI (ci-bot) creates releases with their source (repository, CI
run, author, commit time); alice and bob approve production as themselves (their own kubeconfigs:
the API server stamps who they are). One release waits at ledger's prod gate, one fails billing's
staging smoke test (its image's digest starts 0bad: kwok fails its Job pods), and alice rolls
checkout's prod back. Every wait is a watch (tests/support/wait.py), never a sleep.

Each run starts from scratch: it deletes what an earlier run (or the demo) left in these namespaces.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from support.browser import Browser  # noqa: E402
from support.cluster import kubectl_binary, wait_until_identities_are_stamped  # noqa: E402
from support.dashboard import DashboardProcess  # noqa: E402
from support.operator import OperatorProcess  # noqa: E402
from support.wait import has_condition, wait_for_object  # noqa: E402

GROUP, VERSION = "conveyor.dev", "v1alpha1"
TEAM_LABEL = "conveyor.dev/team"
APPROVAL = {"approvers": {"groups": ["conveyor:approvers"]}, "minApprovals": 1, "fourEyes": True}
IMAGES = ("board", "journey", "release", "failed-release", "pipeline", "waiting", "waiting-carol")
NOW = datetime.now(UTC)


def log(message: str) -> None:
    print(f"[dashboard-shots {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def sha(*parts: str) -> str:
    """A commit SHA that looks like one, the same on every run."""
    return hashlib.sha1("/".join(parts).encode()).hexdigest()  # noqa: S324 — a name, not security


# --- the scene ------------------------------------------------------------------------------------


@dataclass
class App:
    """One application: its Pipeline, its Deployments, the releases CI makes of it."""

    name: str
    namespace: str  # the pipeline's (the team's) namespace
    team: str
    stages: list[tuple[str, str]]  # (stage, namespace), prod last, behind an approval
    container: str = "web"
    migration: bool = False
    replicas: int = 2
    # Each release: (author, commit minutes before now, who approves prod, what happens). What
    # happens: "prod" (verified through prod), "wait" (stops at the prod gate), "fail" (its image
    # fails Job pods: the first smoke test or migration fails).
    releases: list[tuple[str, int, str, str]] = field(default_factory=list)
    rollback: str | None = None  # a reason: alice rolls prod back after the last release

    @property
    def repository(self) -> str:
        return f"https://github.com/acme/{self.name}"

    @property
    def image_repository(self) -> str:
        return f"ghcr.io/acme/{self.name}"


PAYMENTS = [("staging", "payments-staging"), ("prod", "payments-prod")]
SEARCH = [("dev", "search-dev"), ("staging", "search-staging"), ("prod", "search-prod")]
APPS = [
    App(
        "checkout",
        "payments",
        "payments",
        PAYMENTS,
        migration=True,
        releases=[
            ("Maya Chen", 190, "alice", "prod"),
            ("Tom Okafor", 95, "bob", "prod"),
            ("Maya Chen", 40, "alice", "prod"),
        ],
        rollback="checkout p99 latency doubled after this release; back to the previous one",
    ),
    App(
        "ledger",
        "payments",
        "payments",
        PAYMENTS,
        migration=True,
        releases=[
            ("Priya Natarajan", 300, "bob", "prod"),
            ("Priya Natarajan", 120, "alice", "prod"),
            ("Lars Eriksen", 25, "", "wait"),
        ],
    ),
    App(
        "billing",
        "payments",
        "payments",
        PAYMENTS,
        releases=[
            ("Tom Okafor", 240, "alice", "prod"),
            ("Ana Souza", 70, "bob", "prod"),
            ("Ana Souza", 15, "", "fail"),
        ],
    ),
    App(
        "search-api",
        "search",
        "search",
        SEARCH,
        replicas=3,
        releases=[("Lars Eriksen", 400, "bob", "prod"), ("Jo Developer", 55, "alice", "prod")],
    ),
    App(
        "indexer",
        "search",
        "search",
        SEARCH,
        container="worker",
        migration=True,
        releases=[("Ana Souza", 260, "alice", "prod"), ("Lars Eriksen", 85, "bob", "prod")],
    ),
    App("autocomplete", "search", "search", SEARCH, releases=[("Jo Developer", 150, "bob", "prod")]),
]
TEAM_NAMESPACES = ["payments", "payments-staging", "payments-prod", "search", *[ns for _, ns in SEARCH]]
DEMO_RELEASE = "shop-3f9c2a1"


@dataclass
class Made:
    """What the scene made, for the screenshots."""

    releases: dict[str, list[str]] = field(default_factory=dict)  # app -> release names, in order
    commits: dict[str, str] = field(default_factory=dict)  # release -> commit


class Cluster:
    """API clients for the admin and the test identities."""

    def __init__(self) -> None:
        self.kubeconfig = Path(os.environ["KUBECONFIG"])
        self.users = Path(os.environ["CONVEYOR_CLUSTER_DIR"]) / "users"
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def as_user(self, user: str) -> client.CustomObjectsApi:
        api = config.new_client_from_config(config_file=str(self.users / f"{user}.kubeconfig"))
        return client.CustomObjectsApi(api)

    def kubectl(self, *args: str) -> None:
        subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args],
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )

    def lister(self, ns: str, plural: str) -> Callable[..., Any]:
        return functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, plural)

    def wait_release(self, ns: str, name: str, phases: set[str], timeout: float = 180) -> dict[str, Any]:
        obj: dict[str, Any] = wait_for_object(
            self.lister(ns, "releases"),
            name,
            lambda o: o is not None and (o.get("status") or {}).get("phase") in phases,
            what=f"release {ns}/{name} {' or '.join(sorted(phases))}",
            timeout=timeout,
        )
        return obj


def install(c: Cluster) -> None:
    """Conveyor's CRDs, identity-stamping policies and roles (as hack/demo installs them)."""
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/")
    c.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{k}.conveyor.dev" for k in ("pipelines", "releases", "approvals", "rollbacks")],
    )
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", "examples/rbac/roles.yaml")
    wait_until_identities_are_stamped(c.custom)


def reset(c: Cluster) -> None:
    """Remove what an earlier run (or the demo) left: the teams' namespaces and the demo's objects."""
    for ns in TEAM_NAMESPACES:
        try:
            c.core.delete_namespace(ns)
        except ApiException as e:
            if e.status != 404:
                raise
    for plural in ("approvals", "rollbacks", "releases"):
        for obj in c.custom.list_namespaced_custom_object(GROUP, VERSION, "default", plural)["items"]:
            spec = obj["spec"]
            if spec.get("pipeline") == "shop" or spec.get("release", "").startswith("shop-"):
                c.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, "default", plural, obj["metadata"]["name"]
                )
    c.kubectl("delete", "-f", "examples/quickstart/", "--ignore-not-found", "--wait=true")
    for ns in TEAM_NAMESPACES:
        wait_for_object(
            c.core.list_namespace, ns, lambda o: o is None, what=f"namespace {ns} gone", timeout=180
        )


def bind(c: Cluster, ns: str, name: str, role: str, subjects: list[dict[str, str]]) -> None:
    c.rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **s} for s in subjects],
        },
    )


def teams(c: Cluster) -> None:
    """The namespaces, who may do what there, the Deployments and the Pipelines."""
    people = [{"kind": "Group", "name": "conveyor:approvers"}, {"kind": "Group", "name": "developers"}]
    for ns in TEAM_NAMESPACES:
        c.core.create_namespace({"metadata": {"name": ns, "labels": {TEAM_LABEL: ns.split("-")[0]}}})
        # Everyone on the teams sees their namespaces (Jobs, Events): the release page reads them.
        bind(c, ns, "team-view", "view", people)
    for ns in ("payments", "search"):
        bind(c, ns, "conveyor-releasers", "conveyor-releaser", [{"kind": "User", "name": "ci-bot"}])
        # RBAC lets developers create Approvals too; the Pipeline's policy decides whether one counts.
        bind(c, ns, "conveyor-approvers", "conveyor-approver", people)
    for app in APPS:
        for stage, ns in app.stages:
            replicas = app.replicas + (1 if stage == "prod" else 0)
            c.apps.create_namespaced_deployment(ns, deployment(app, replicas))
    for app in APPS:
        for _, ns in app.stages:
            wait_for_object(
                c.apps.list_namespaced_deployment,
                app.name,
                has_condition("Available"),
                namespace=ns,
                what=f"Deployment {ns}/{app.name} Available",
            )
        c.custom.create_namespaced_custom_object(GROUP, VERSION, app.namespace, "pipelines", pipeline(app))


def deployment(app: App, replicas: int) -> dict[str, Any]:
    image = f"{app.image_repository}@sha256:{hashlib.sha256(f'{app.name}/initial'.encode()).hexdigest()}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.name, "labels": {"app": app.name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app.name}},
            "template": {
                "metadata": {"labels": {"app": app.name}},
                "spec": {"containers": [{"name": app.container, "image": image}]},
            },
        },
    }


def pipeline(app: App) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []
    for stage, ns in app.stages:
        host = f"{app.name}.{'' if stage == 'prod' else stage + '.'}acme.example"
        s: dict[str, Any] = {"name": stage, "namespace": ns, "variables": {"BASE_URL": f"https://{host}"}}
        if stage == "prod":
            s.update(requiresApproval=True, approval=APPROVAL)
        stages.append(s)
    spec: dict[str, Any] = {
        "imageRepository": app.image_repository,
        "targets": [{"deployment": app.name, "container": app.container}],
        "stages": stages,
        "smokeTest": {"command": ["/app/smoke", "--base-url", "$(BASE_URL)"]},
    }
    if app.migration:
        spec["migration"] = {"command": ["/app/manage", "migrate"]}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": app.name, "labels": {TEAM_LABEL: app.team}},
        "spec": spec,
    }


def release_body(app: App, index: int, author: str, minutes_ago: int, outcome: str) -> dict[str, Any]:
    commit = sha(app.name, str(index))
    digest = hashlib.sha256(f"{app.name}/{commit}".encode()).hexdigest()
    if outcome == "fail":
        digest = "0bad" + digest[4:]  # kwok fails this image's Job pods (docs/local-cluster.md)
    run_id = str(7_400_000_000 + int(commit[:6], 16) % 99_999_999)
    spec: dict[str, Any] = {
        "pipeline": app.name,
        "commit": commit,
        "digest": f"sha256:{digest}",
        "source": {
            "repository": app.repository,
            "author": author,
            "commitTime": (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds"),
            "ciRunId": run_id,
            "ciRunUrl": f"{app.repository}/actions/runs/{run_id}",
        },
    }
    if app.migration:
        spec["schemaChange"] = "backwardCompatible"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Release",
        "metadata": {"name": f"{app.name}-{commit[:7]}"},
        "spec": spec,
    }


def approve(who: client.CustomObjectsApi, ns: str, rel: dict[str, Any], comment: str) -> None:
    """An Approval of prod bound to the release's uid, created by the approver themself."""
    name = rel["metadata"]["name"]
    who.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "approvals",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Approval",
            "metadata": {"name": f"{name}-prod"},
            "spec": {
                "release": name,
                "stage": "prod",
                "releaseUID": rel["metadata"]["uid"],
                "digest": rel["spec"]["digest"],
                "comment": comment,
            },
        },
    )


COMMENTS = [
    "staging smoke tests green",
    "checked the staging dashboards, looks good",
    "migration ran clean in staging",
    "ok to ship",
]


def deliver(c: Cluster, app: App, made: Made) -> None:
    """One app's releases, one after the other, each as far as its outcome says."""
    ci = c.as_user("ci-bot")
    approvers = {u: c.as_user(u) for u in ("alice", "bob")}
    names = made.releases.setdefault(app.name, [])
    for i, (author, minutes_ago, approver, outcome) in enumerate(app.releases, start=1):
        body = release_body(app, i, author, minutes_ago, outcome)
        name = body["metadata"]["name"]
        names.append(name)
        made.commits[name] = body["spec"]["commit"]
        ci.create_namespaced_custom_object(GROUP, VERSION, app.namespace, "releases", body)
        if outcome == "fail":
            c.wait_release(app.namespace, name, {"Failed"})
            log(f"{app.namespace}/{name}: Failed, as it should")
            continue
        rel = c.wait_release(app.namespace, name, {"AwaitingApproval"})
        if outcome == "wait":
            log(f"{app.namespace}/{name}: waits at the prod gate")
            continue
        approve(approvers[approver], app.namespace, rel, COMMENTS[(i + len(app.name)) % len(COMMENTS)])
        c.wait_release(app.namespace, name, {"Succeeded"})
        log(f"{app.namespace}/{name}: verified in prod, approved by {approver}")
    if app.rollback:
        alice = approvers["alice"]
        rb = f"{app.name}-prod-rollback"
        alice.create_namespaced_custom_object(
            GROUP,
            VERSION,
            app.namespace,
            "rollbacks",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Rollback",
                "metadata": {"name": rb},
                "spec": {"pipeline": app.name, "stage": "prod", "reason": app.rollback},
            },
        )
        wait_for_object(
            c.lister(app.namespace, "rollbacks"),
            rb,
            lambda o: o is not None and (o.get("status") or {}).get("phase") == "Succeeded",
            what=f"rollback {app.namespace}/{rb} Succeeded",
            timeout=180,
        )
        log(f"{app.namespace}/{rb}: prod rolled back by alice")


def demo_shop(c: Cluster, made: Made) -> None:
    """The demo's own story (hack/demo): ci-bot's release of shop, approved into prod by alice."""
    c.kubectl(
        "apply",
        "-f",
        "examples/quickstart/00-namespaces.yaml",
        "-f",
        "examples/quickstart/05-team.yaml",
        "-f",
        "examples/quickstart/10-deployments.yaml",
        "-f",
        "examples/quickstart/20-pipeline.yaml",
    )
    c.kubectl("label", "pipeline", "shop", "-n", "default", f"{TEAM_LABEL}=storefront", "--overwrite")
    ci = c.as_user("ci-bot")
    body = yaml.safe_load((REPO / "examples/quickstart/30-release.yaml").read_text())
    ci.create_namespaced_custom_object(GROUP, VERSION, "default", "releases", body)
    rel = c.wait_release("default", DEMO_RELEASE, {"AwaitingApproval"})
    approve(c.as_user("alice"), "default", rel, "staging smoke tests green")
    c.wait_release("default", DEMO_RELEASE, {"Succeeded"})
    made.releases["shop"] = [DEMO_RELEASE]
    made.commits[DEMO_RELEASE] = body["spec"]["commit"]
    log(f"default/{DEMO_RELEASE}: verified in prod, approved by alice")


def scene(c: Cluster) -> Made:
    """Every app delivers at once (one thread each), as teams do."""
    made = Made()
    errors: list[BaseException] = []

    def run(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as e:  # reported below, after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=run, args=(deliver, c, app, made)) for app in APPS]
    threads.append(threading.Thread(target=run, args=(demo_shop, c, made)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return made


# --- the screenshots ------------------------------------------------------------------------------


WIDTH, HEIGHT = 1400, 900  # the page's viewport, not the window's outer size


def viewport(b: Browser, width: int, height: int) -> None:
    """Resize the window so the page itself gets width x height (headless Chromium's window size
    includes room for browser chrome it does not draw)."""
    inner = b.driver.execute_script("return [window.innerWidth, window.innerHeight];")
    outer = b.driver.get_window_size()
    b.driver.set_window_size(outer["width"] + width - inner[0], outer["height"] + height - inner[1])
    b.wait_until(
        lambda: b.driver.execute_script("return [window.innerWidth, window.innerHeight];") == [width, height],
        what=f"a {width}x{height} viewport",
    )


def shoot(b: Browser, out: Path, name: str, *, whole_page: bool = False) -> None:
    """The viewport as a PNG; `whole_page`: first make the viewport as tall as the page."""
    if whole_page:
        height = b.driver.execute_script("return document.documentElement.scrollHeight;")
        viewport(b, WIDTH, max(HEIGHT, int(height)))
    for error in b.console_errors():
        log(f"browser console error on {name}: {error}")
    path = out / f"dashboard-{name}.png"
    path.write_bytes(b.driver.get_screenshot_as_png())
    log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if whole_page:
        viewport(b, WIDTH, HEIGHT)


def open_view(b: Browser, url: str, css: str, what: str, text: str | None = None) -> None:
    """Open a view; `url` is a dashboard's printed address (its session token in the fragment) with
    the view's route after it, e.g. `alice.url + "#/waiting"`."""
    printed, _, route = url.partition("#/")
    if "#token=" in printed:
        b.open(printed)  # the page keeps the token (its origin's storage), then any route works
        url = printed.split("#", 1)[0] + "#/" + route
    b.open(url)
    b.wait_for(css, text=text, what=what, timeout=30)
    b.wait_for("#viewer", text="you: ", what="who is looking, in the header")
    # The view has rendered its data (the page stamps each render).
    b.wait_until(
        lambda: b.driver.execute_script("return document.getElementById('view').dataset.loaded"),
        what="the view loaded",
    )
    b.driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")


def screenshots(c: Cluster, made: Made, out: Path) -> None:
    users = c.users
    checkout, ledger, billing = (made.releases[a] for a in ("checkout", "ledger", "billing"))
    indexer = made.releases["indexer"]
    alice = DashboardProcess(users / "alice.kubeconfig", "default", "payments", "search").start()
    carol = DashboardProcess(users / "carol.kubeconfig", "payments", "search").start()
    try:
        with Browser(default_timeout=30) as b:
            viewport(b, WIDTH, HEIGHT)
            open_view(
                b,
                alice.url,
                '[data-pipeline="payments/ledger"] [data-waiting]',
                "the board, ledger at the gate",
            )
            b.wait_until(
                lambda: len(b.find_all(".board-row")) == len(APPS) + 1, what="every pipeline on the board"
            )
            b.wait_for("#live.on", what="the live indicator on", visible=False)
            shoot(b, out, "board", whole_page=True)  # every pipeline

            rolled = checkout[-1]
            open_view(
                b,
                alice.url + f"#/commit/{made.commits[rolled]}",
                f'.timeline[data-release="{rolled}"] [data-lane="rollbacks"]',
                "the journey of checkout's rolled-back release, its rollback lane",
            )
            shoot(b, out, "journey")

            verified = indexer[-1]
            open_view(
                b,
                alice.url + f"#/release/search/{verified}",
                '.timeline [data-lane="prod"] .bar-smokeTest',
                "a verified release's page, its prod smoke test",
            )
            shoot(b, out, "release")

            failed = billing[-1]
            open_view(
                b, alice.url + f"#/release/payments/{failed}", ".failed-job", "the failing smoke-test Job"
            )
            shoot(b, out, "failed-release")

            open_view(
                b,
                alice.url + "#/pipeline/payments/checkout",
                '[data-metric="deployment frequency"] .tile-value',
                "checkout's DORA tiles",
            )
            shoot(b, out, "pipeline")

            waiting = ledger[-1]
            open_view(
                b,
                alice.url + "#/waiting",
                f'.waiting[data-release="{waiting}"] .why[data-reason="MayApprove"]',
                "alice may approve",
            )
            assert b.find(f'.waiting[data-release="{waiting}"] button.approve').is_enabled()
            shoot(b, out, "waiting")

            open_view(
                b,
                carol.url + "#/waiting",
                f'.waiting[data-release="{waiting}"] .why[data-reason="NotAnApprover"]',
                "carol is told why she cannot approve",
            )
            assert not b.find(f'.waiting[data-release="{waiting}"] button.approve').is_enabled()
            shoot(b, out, "waiting-carol")
    finally:
        alice.stop()
        carol.stop()


def optimise(out: Path) -> None:
    """Smaller PNGs with optipng when it is installed (apt-get install optipng); never required."""
    optipng = shutil.which("optipng")
    files = [str(out / f"dashboard-{n}.png") for n in IMAGES]
    if optipng:
        subprocess.run([optipng, "-quiet", "-o2", "-strip", "all", *files], check=True)
    for f in files:
        log(f"{Path(f).name}: {Path(f).stat().st_size // 1024} KB" + ("" if optipng else " (no optipng)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    c = Cluster()
    log("installing Conveyor's CRDs, policies and roles")
    install(c)
    # The operator as the demo runs it (every namespace), on the demo's Lease: if the demo's own
    # operator runs, only one of them acts.
    operator = OperatorProcess(c.kubeconfig, lease_name="conveyor-leader", lease_namespace="default").start()
    try:
        operator.wait_for_log(r"is alive", timeout=60)
        log("operator running; removing what an earlier run left")
        reset(c)
        log("teams, namespaces, Deployments, Pipelines")
        teams(c)
        log("CI releases; alice and bob approve")
        made = scene(c)
        log(f"scene ready after {time.monotonic() - started:.0f}s; screenshots")
        screenshots(c, made, out)
    finally:
        operator.stop()
    optimise(out)
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
