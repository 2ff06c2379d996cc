"""The Helm chart, for real: lint, render, validate against the API server, install, and run the
operator with the chart's ServiceAccount credentials (a TokenRequest token) through a promotion and
a rollback — a missing permission fails here, not in production; an excessive one too. The same for
the in-cluster dashboard (`ui`): its ServiceAccount's rules, listed by the API server, are exactly
what it needs, and the real server, run with the chart's own command line and that ServiceAccount's
token, shows a promoted release and refuses to act. Its NetworkPolicy selects exactly its Pods and admits
its port only from the proxy's label and the peers given (the object: kwok enforces no policy).
Multi-cluster: a target cluster's install (`mode: target`) makes only an identity whose rights, as
the API server answers for its token, are exactly a stage's in the target namespaces; the control
cluster's `clusters.*` reads cluster Secrets in one namespace only."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import kubectl_binary
from support.dashboard import DashboardProcess
from support.operator import OperatorProcess
from support.story import Story, image_of

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "conveyor"
KUBE_VERSION = "1.36.3"
UI_KINDS = ("pipelines", "releases", "approvals", "rollbacks")
# Everything the dashboard's ServiceAccount may do (group, resource, verb), and nothing more: its
# store lists and watches Conveyor's kinds; a release's page gets its Jobs and lists its Events.
UI_RULES = {("conveyor.dev", kind, verb) for kind in UI_KINDS for verb in ("list", "watch")} | {
    ("batch", "jobs", "get"),
    ("", "events", "list"),
}
# Everything a target cluster's ServiceAccount (mode: target) may do in a target namespace, and
# nothing more: patch a stage's Deployment, run its migration and smoke-test Jobs, list Events (did a
# missing migration Job ever have a Pod).
TARGET_RULES = (
    {("apps", "deployments", verb) for verb in ("get", "list", "watch", "patch")}
    | {("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")}
    | {("", "events", "list")}
)

# The NetworkPolicy's one default peer: Pods of the release namespace carrying the proxy's label.
CLIENT_PEER = {"podSelector": {"matchLabels": {"conveyor.dev/dashboard-client": "true"}}}
# ui.networkPolicy.from, one peer of each kind: the ingress controller's Pods in their namespace (one
# peer, both selectors: AND), a proxy's whole namespace, the nodes' addresses.
EXTRA_PEERS: list[dict[str, Any]] = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    },
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "oauth2-proxy"}}},
    {"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.9/32"]}},
]


def helm() -> str:
    out = subprocess.run(
        [REPO / "hack" / "build-binaries", "--print"], capture_output=True, text=True, check=True
    )
    return str(Path(dict(line.split("=", 1) for line in out.stdout.split())["HELM_BIN"]) / "helm")


def run(*args: str, kubeconfig: Path | None = None, input_: str | None = None) -> str:
    env_args = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    out = subprocess.run([*args, *env_args], capture_output=True, text=True, input=input_, check=False)
    assert out.returncode == 0, f"{' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def install(cluster, release: str, namespace: str, *sets: str) -> None:
    """`helm install` of the chart into a story's namespace with `--set` values; the suite's fixture
    already installed the CRDs and admission policies cluster-wide."""
    args = [
        a
        for value in ("crds.install=false", "admissionPolicies.install=false", *sets)
        for a in ("--set", value)
    ]
    run(
        helm(), "install", release, str(CHART), "--namespace", namespace, *args, kubeconfig=cluster.kubeconfig
    )


def sa_kubeconfig(cluster, name: str, namespace: str, token: str | None = None) -> Path:
    """A kubeconfig holding a TokenRequest token of ServiceAccount `name` (or the `token` given, e.g.
    a service-account-token Secret's): the API server sees that ServiceAccount and nobody else."""
    token = (
        token
        or run(
            kubectl_binary(),
            "create",
            "token",
            name,
            "-n",
            namespace,
            "--duration",
            "2h",
            kubeconfig=cluster.kubeconfig,
        ).strip()
    )
    admin = json.loads(cluster.kubeconfig.read_text())
    config = dict(
        admin,
        users=[{"name": "sa", "user": {"token": token}}],
        contexts=[{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}],
        **{"current-context": "sa"},
    )
    path = cluster.kubeconfig.parent / f"{namespace}-{name}.kubeconfig"
    path.write_text(json.dumps(config))
    return path


def can(kubeconfig: Path, verb: str, what: str, ns: str) -> bool:
    """`kubectl auth can-i` as the kubeconfig's identity: the API server's answer."""
    out = subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, what, "-n", ns],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() == "yes"


@pytest.mark.parametrize(
    "values",
    [
        ["namespaces={a,b}"],
        # the in-cluster dashboard, per namespace, behind an Ingress with TLS
        [
            "ui.enabled=true",
            "ui.namespaces={a}",
            "ui.stageNamespaces={b}",
            "ui.ingress.enabled=true",
            "ui.ingress.host=conveyor.example.com",
            "ui.ingress.tls[0].secretName=conveyor-tls",
            "ui.ingress.tls[0].hosts={conveyor.example.com}",
        ],
        # a target cluster (multi-cluster), everything on
        [
            "mode=target",
            "target.namespaces={a,b}",
            "target.parity.secrets=true",
            "target.parity.externalSecrets=true",
            "target.tokenSecret=true",
        ],
        # the control cluster's cluster Secrets, in their own namespace
        ["clusters.enabled=true", "clusters.secretNamespace=conveyor-clusters"],
    ],
    ids=["operator", "ui", "target", "clusters"],
)
def test_helm_lint_is_clean(values: list[str]):
    sets = [a for v in values for a in ("--set", v)]
    out = run(helm(), "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *sets)
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_rendered_chart_is_accepted_by_the_api_server(cluster, story: Story):
    rendered = run(
        helm(),
        "template",
        "dry",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--namespace",
        story.ns,
        "--set",
        f"namespaces={{{story.ns},{story.stage_ns['staging']}}}",
        "--set",
        "dashboard.enabled=true",
        # the in-cluster dashboard, namespaced, behind an Ingress
        "--set",
        "ui.enabled=true",
        "--set",
        f"ui.namespaces={{{story.ns}}}",
        "--set",
        f"ui.stageNamespaces={{{story.stage_ns['staging']},{story.stage_ns['prod']}}}",
        "--set",
        "ui.ingress.enabled=true",
        "--set",
        "ui.ingress.host=conveyor.example.com",
        "--set",
        "ui.ingress.tls[0].secretName=conveyor-tls",
        "--set",
        "ui.ingress.tls[0].hosts={conveyor.example.com}",
        # its NetworkPolicy (on by default), with a peer of each kind appended
        "--set-json",
        f"ui.networkPolicy.from={json.dumps(EXTRA_PEERS)}",
    )
    out = run(
        kubectl_binary(),
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        kubeconfig=cluster.kubeconfig,
        input_=rendered,
    )
    assert "deployment.apps/dry created (server dry run)" in out
    assert "customresourcedefinition.apiextensions.k8s.io/releases.conveyor.dev" in out
    for ui in (
        "deployment.apps",
        "serviceaccount",
        "service",
        "ingress.networking.k8s.io",
        "networkpolicy.networking.k8s.io",
    ):
        assert f"{ui}/dry-ui created (server dry run)" in out
    assert out.count("role.rbac.authorization.k8s.io/dry-ui created (server dry run)") == 3


def refused(*args: str) -> str:
    """`helm template` of the chart with these arguments must fail (schema or `fail`); its stderr."""
    out = subprocess.run(
        [helm(), "template", "x", str(CHART), "--kube-version", KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0, f"helm template {' '.join(args)} was not refused"
    return out.stderr


def test_values_schema_refuses_bad_values():
    assert "namespaces" in refused("--set", "namespaces={Not_A_Namespace}")
    # an Ingress for no host: the dashboard would answer it with 403
    assert "ui.ingress.host" in refused("--set", "ui.enabled=true", "--set", "ui.ingress.enabled=true")
    # a mistyped peer (`namespace` for namespaceSelector) and an empty one (it would admit nothing
    # the author meant): refused before anything reaches the cluster
    for peer in ({"namespace": "ingress-nginx"}, {}):
        stderr = refused(
            "--set", "ui.enabled=true", "--set-json", f"ui.networkPolicy.from={json.dumps([peer])}"
        )
        assert "/ui/networkPolicy/from/0" in stderr


def test_the_operator_runs_a_promotion_and_a_rollback_with_only_the_charts_permissions(cluster, story: Story):
    release = f"cv-{uuid.uuid4().hex[:6]}"
    served = [story.ns, *story.stage_ns.values()]
    install(cluster, release, story.ns, f"namespaces={{{','.join(served)}}}")
    try:
        sa = sa_kubeconfig(cluster, release, story.ns)

        # Least privilege, both ways: what it may not do
        assert can(sa, "patch", "deployments", story.stage_ns["prod"])
        assert not can(sa, "patch", "deployments", "default")
        assert not can(sa, "get", "secrets", story.stage_ns["prod"])
        assert not can(sa, "list", "secrets", story.stage_ns["prod"])
        assert not can(sa, "create", "approvals.conveyor.dev", story.ns)
        # the Lease: its own, in the release namespace only
        assert can(sa, "update", f"leases.coordination.k8s.io/{release}-leader", story.ns)
        assert not can(sa, "update", "leases.coordination.k8s.io/other", story.ns)
        assert not can(sa, "create", "leases.coordination.k8s.io", "default")

        # ... and that it can do everything it needs: a promotion, an approval gate, a rollback
        story.given_deployments()
        story.given_pipeline(smoke_test={"command": ["/app/smoke"]}, migration={"command": ["/app/migrate"]})
        story.operator = OperatorProcess(
            sa,
            *[a for ns in served for a in ("-n", ns)],
            lease_namespace=story.ns,  # as the chart runs it: POD_NAMESPACE, the chart's Lease
            lease_name=f"{release}-leader",
        ).start()
        story.operator.wait_for_log("is alive")
        story.operator.wait_healthy()
        story.operator.wait_for_log("is the leader now")
        for label in ("v1", "v2"):
            story.promote(f"shop-{label}", label=label)
        story.when_rollback("undo", verify=True)
        story.then_rollback_phase("undo", "Succeeded")
        assert story.deployment_image("prod") == image_of("v1")
        story.then_event("undo", "RollbackCompleted")
        forbidden = [line for line in story.operator.lines if re.search(r"forbidden|\b403\b", line, re.I)]
        assert forbidden == []
    finally:
        run(helm(), "uninstall", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)


def manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a rendered chart."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def rules_of(kubeconfig: Path, ns: str) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the kubeconfig's identity may use in `ns`, as the API server
    lists them (SelfSubjectRulesReview), less the self-reviews Kubernetes allows every authenticated
    user (system:basic-user)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": ns},
    }
    out = run(
        kubectl_binary(),
        "create",
        "--validate=false",  # validation would list CRDs, which the identity may not
        "-f",
        "-",
        "-o",
        "json",
        kubeconfig=kubeconfig,
        input_=json.dumps(review),
    )
    rules = {
        (group, resource, verb)
        for rule in json.loads(out)["status"]["resourceRules"]
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule["verbs"]
    }
    return {r for r in rules if not (r[1].startswith("self") and r[2] == "create")}


def render(*sets: str, release: str = "x", values: Path | None = None) -> list[dict[str, Any]]:
    """The chart's objects, rendered offline (`helm template`) with these --set values."""
    args = [a for s in sets for a in ("--set", s)] + (["--values", str(values)] if values else [])
    return manifests(run(helm(), "template", release, str(CHART), "--kube-version", KUBE_VERSION, *args))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects an object with these labels."""
    return all(labels.get(k) == v for k, v in selector.items())


def secret_rules(objects: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(kind, name, verbs) of every RBAC rule that reaches Secrets."""
    return [
        (d["kind"], d["metadata"].get("namespace", ""), rule["verbs"])
        for d in objects
        if d["kind"] in ("ClusterRole", "Role")
        for rule in d.get("rules") or []
        if "secrets" in rule.get("resources", [])
    ]


def test_secrets_are_read_only_when_notifications_are_enabled_and_only_get():
    assert secret_rules(render()) == []  # least privilege: no Secret access by default
    assert secret_rules(render("notifications.enabled=true")) == [("ClusterRole", "", ["get"])]
    namespaced = secret_rules(render("notifications.enabled=true", "namespaces={apps,shop-prod}"))
    assert sorted(namespaced) == [("Role", "apps", ["get"]), ("Role", "shop-prod", ["get"])]
    args = next(
        d for d in render("notifications.allowedHosts={hooks.internal:8443}") if d["kind"] == "Deployment"
    )
    assert (
        "--notify-allowed-host=hooks.internal:8443"
        in args["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_the_dashboard_is_off_by_default_and_its_pods_are_never_the_operators():
    assert not [d for d in render() if d["metadata"]["name"] == "x-ui"]
    objects = render("ui.enabled=true")
    by = {(d["kind"], d["metadata"]["name"]): d for d in objects}
    operator_pod = by["Deployment", "x"]["spec"]["template"]["metadata"]["labels"]
    ui_pod = by["Deployment", "x-ui"]["spec"]["template"]["metadata"]["labels"]

    # Two Deployments whose selectors overlap fight over Pods; the metrics Service and the
    # PodDisruptionBudget must count only the operator's.
    for selector in (
        by["Deployment", "x"]["spec"]["selector"]["matchLabels"],
        by["Service", "x-metrics"]["spec"]["selector"],
        by["PodDisruptionBudget", "x"]["spec"]["selector"]["matchLabels"],
    ):
        assert not selects(selector, ui_pod)
    assert not selects(by["Deployment", "x-ui"]["spec"]["selector"]["matchLabels"], operator_pod)
    assert selects(by["Service", "x-ui"]["spec"]["selector"], ui_pod)


def test_the_dashboards_network_policy_admits_only_its_proxy_and_the_peers_given(tmp_path: Path):
    objects = render("ui.enabled=true")  # on by default with the dashboard
    by = {(d["kind"], d["metadata"]["name"]): d for d in objects}
    [policy] = [d for d in objects if d["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["name"] == "x-ui"
    spec = policy["spec"]

    # It selects the dashboard's Pods, this release's only: never the operator's, nor another
    # release's dashboard in the same namespace
    assert set(spec["podSelector"]) == {"matchLabels"}  # no matchExpressions widening or narrowing it
    selector = spec["podSelector"]["matchLabels"]
    assert selects(selector, by["Deployment", "x-ui"]["spec"]["template"]["metadata"]["labels"])
    assert selector == by["Deployment", "x-ui"]["spec"]["selector"]["matchLabels"]
    assert not selects(selector, by["Deployment", "x"]["spec"]["template"]["metadata"]["labels"])
    other = {(d["kind"], d["metadata"]["name"]): d for d in render("ui.enabled=true", release="y")}
    assert not selects(selector, other["Deployment", "y-ui"]["spec"]["template"]["metadata"]["labels"])

    # Ingress only (its egress reaches the API server), one rule: the UI port, from the proxy's label
    # in the release namespace (a podSelector without a namespaceSelector) and nothing else
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": [CLIENT_PEER], "ports": [{"protocol": "TCP", "port": 8642}]}]

    # ui.networkPolicy.from: appended after the default peer, verbatim; the port follows ui.port
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"ui": {"enabled": True, "port": 9000, "networkPolicy": {"from": EXTRA_PEERS}}})
    )
    [policy] = [d for d in render(values=values) if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"] == [
        {"from": [CLIENT_PEER, *EXTRA_PEERS], "ports": [{"protocol": "TCP", "port": 9000}]}
    ]

    # Off when asked, and never without the dashboard
    assert not [
        d for d in render("ui.enabled=true", "ui.networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"
    ]
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_dashboard_in_the_cluster_reads_with_only_its_own_service_account(cluster, story: Story):
    release = f"ui-{uuid.uuid4().hex[:6]}"
    port = _free_port()  # the chart's ui.port: the server below binds it, as the Pod would
    install(
        cluster,
        release,
        story.ns,
        "ui.enabled=true",  # every namespace (the default)
        f"ui.port={port}",
        "ui.allowedHosts={conveyor.example.com}",
    )
    dashboard: DashboardProcess | None = None
    try:
        manifest = run(
            helm(), "get", "manifest", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig
        )
        objects = manifests(manifest)
        deployment = next(
            d for d in objects if (d["kind"], d["metadata"]["name"]) == ("Deployment", f"{release}-ui")
        )
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"{release}-ui"
        container = pod["containers"][0]
        assert container["args"][:2] == ["dashboard", "--read-only"]
        probe_host = {h["name"]: h["value"] for h in container["readinessProbe"]["httpGet"]["httpHeaders"]}[
            "Host"
        ]
        sa = sa_kubeconfig(cluster, f"{release}-ui", story.ns)

        # Its NetworkPolicy, installed by default, as the API server stored it (kwok enforces none:
        # this proves the object, not the enforcement)
        stored = json.loads(
            run(
                kubectl_binary(),
                "get",
                "networkpolicy",
                f"{release}-ui",
                "-n",
                story.ns,
                "-o",
                "json",
                kubeconfig=cluster.kubeconfig,
            )
        )
        assert selects(
            stored["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
        )
        assert stored["spec"]["ingress"] == [
            {"from": [CLIENT_PEER], "ports": [{"protocol": "TCP", "port": port}]}
        ]

        # Least privilege, proved by the API server: exactly these rules, here and anywhere else
        assert rules_of(sa, story.ns) == UI_RULES
        assert rules_of(sa, "default") == UI_RULES
        assert can(sa, "watch", "releases.conveyor.dev", "default")
        assert can(sa, "get", "jobs.batch", story.stage_ns["staging"])
        assert not can(sa, "create", "approvals.conveyor.dev", story.ns)
        assert not can(sa, "create", "rollbacks.conveyor.dev", story.ns)
        assert not can(sa, "patch", "releases.conveyor.dev", story.ns)
        assert not can(sa, "get", "secrets", story.ns)
        assert not can(sa, "patch", "deployments.apps", story.stage_ns["staging"])

        # Something to show: a release through staging (a migration and a smoke-test Job, Events)
        story.given_deployments()
        story.given_pipeline(
            stages=[
                {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 60}
            ],
            migration={"command": ["/app/migrate"]},
            smoke_test={"command": ["/app/smoke"]},
        )
        story.given_operator()
        story.promote("shop-v1", label="v1")

        # The real server, with the chart's own arguments and only the ServiceAccount's token
        # (bound to loopback here instead of every interface: the last --address wins)
        dashboard = DashboardProcess(sa, server_args=[*container["args"][1:], "--address=127.0.0.1"]).start()

        def get(path: str, host: str) -> tuple[int, dict[str, Any]]:
            return dashboard.request("GET", path, headers={"Host": host})

        service = f"{release}-ui.{story.ns}.svc:8642"
        assert get("/healthz", probe_host)[0] == 200  # the kubelet, with the probe's Host header
        assert get("/healthz", f"10.244.0.7:{port}")[0] == 403  # a probe without it: the Pod's IP
        assert get("/healthz", f"evil.example.com:{port}")[0] == 403
        status, board = get("/api/board", service)
        assert status == 200
        assert (story.ns, "shop") in [(p["namespace"], p["name"]) for p in board["pipelines"]]
        assert get("/api/board", "conveyor.example.com")[0] == 200  # the proxy's public host
        status, who = get("/api/whoami", f"{release}-ui:8642")
        assert who["username"] == f"system:serviceaccount:{story.ns}:{release}-ui"
        assert who["readOnly"] is True
        status, page = get(f"/api/releases/{story.ns}/shop-v1", service)
        assert status == 200
        assert {j["kind"] for j in page["jobs"]} == {"migration", "smokeTest"}
        assert all(j["exists"] for j in page["jobs"]), page["jobs"]  # read (get) as the ServiceAccount
        assert page["events"], "the release's Events (list) as the ServiceAccount"
        status, refused = dashboard.request(
            "POST",
            "/api/approve",
            {"namespace": story.ns, "release": "shop-v1", "stage": "staging"},
            headers={"Host": service, "Content-Type": "application/json"},
        )
        assert status == 403
        assert "read-only" in refused["error"]
        forbidden = [line for line in dashboard.lines if re.search(r"forbidden|\b403\b", line, re.I)]
        assert forbidden == []
    finally:
        if dashboard is not None:
            dashboard.stop()
        run(helm(), "uninstall", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)


def test_the_dashboard_given_namespaces_reads_only_there(cluster, story: Story):
    release = f"ui-{uuid.uuid4().hex[:6]}"
    staging, prod = story.stage_ns["staging"], story.stage_ns["prod"]
    install(
        cluster,
        release,
        story.ns,
        f"namespaces={{{story.ns},{staging},{prod}}}",
        "ui.enabled=true",
        f"ui.namespaces={{{story.ns}}}",
        f"ui.stageNamespaces={{{staging},{prod}}}",
    )
    try:
        sa = sa_kubeconfig(cluster, f"{release}-ui", story.ns)
        assert rules_of(sa, story.ns) == {r for r in UI_RULES if r[0] != "batch"}
        assert rules_of(sa, staging) == {("batch", "jobs", "get")}
        assert rules_of(sa, prod) == {("batch", "jobs", "get")}
        assert rules_of(sa, "default") == set()
    finally:
        run(helm(), "uninstall", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)


# --- Multi-cluster (#16): a target cluster's install (mode: target) and the control cluster's
# cluster Secrets (clusters.*)


def rule_set(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) a rendered Role or ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in role.get("rules") or []
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_target_mode_renders_only_a_service_account_and_its_rights_in_the_target_namespaces():
    objects = render("mode=target", "target.namespaces={shop-prod,shop-canary}")
    by = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in objects}
    # Nothing of the operator: no CRD, no Deployment, no operator ClusterRole, no admission policy,
    # no metrics Service, no dashboard; one identity and its rights, nothing else
    assert set(by) == {
        ("ServiceAccount", "default", "conveyor-target"),  # the release namespace (helm template's)
        ("Role", "shop-prod", "x-target"),
        ("RoleBinding", "shop-prod", "x-target"),
        ("Role", "shop-canary", "x-target"),
        ("RoleBinding", "shop-canary", "x-target"),
        ("ClusterRole", "", "x-target"),
        ("ClusterRoleBinding", "", "x-target"),
    }
    sa = {"kind": "ServiceAccount", "name": "conveyor-target", "namespace": "default"}
    for ns in ("shop-prod", "shop-canary"):
        assert rule_set(by["Role", ns, "x-target"]) == TARGET_RULES
        binding = by["RoleBinding", ns, "x-target"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "x-target",
        }
        assert binding["subjects"] == [sa]
    # Cluster-wide: only `get` on the target namespaces, by name (to say "namespace does not exist")
    assert by["ClusterRole", "", "x-target"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": ["shop-prod", "shop-canary"],
            "verbs": ["get"],
        }
    ]
    assert by["ClusterRoleBinding", "", "x-target"]["subjects"] == [sa]
    assert secret_rules(objects) == []  # no Secret access unless asked

    # The parity check's reads, only when asked, and only in the target namespaces
    parity = render(
        "mode=target",
        "target.namespaces={shop-prod}",
        "target.parity.secrets=true",
        "target.parity.externalSecrets=true",
    )
    assert secret_rules(parity) == [("Role", "shop-prod", ["get"])]
    [role] = [d for d in parity if d["kind"] == "Role"]
    assert rule_set(role) == TARGET_RULES | {
        ("", "secrets", "get"),
        ("external-secrets.io", "externalsecrets", "get"),
    }

    # Another ServiceAccount name; a long-lived token Secret for it when asked
    named = render(
        "mode=target",
        "target.namespaces={shop-prod}",
        "target.serviceAccount.name=cv",
        "target.tokenSecret=true",
    )
    [account] = [d for d in named if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == "cv"
    assert all(d["subjects"] == [dict(sa, name="cv")] for d in named if d["kind"].endswith("Binding"))
    [token] = [d for d in named if d["kind"] == "Secret"]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "cv"}
    assert not [d for d in objects if d["kind"] == "Secret"]


def test_target_mode_without_namespaces_is_refused():
    # by the schema, and by the template when the schema is skipped: rights nowhere are no target
    assert "/target/namespaces" in refused("--set", "mode=target")
    stderr = refused("--set", "mode=target", "--set", "target.namespaces=null")
    assert "'/target': missing property 'namespaces'" in stderr
    assert "mode: target needs target.namespaces" in refused(
        "--set", "mode=target", "--skip-schema-validation"
    )
    assert "/mode" in refused("--set", "mode=remote")


def cluster_secret_namespace_args(objects: list[dict[str, Any]]) -> list[str]:
    [deployment] = [d for d in objects if d["kind"] == "Deployment"]
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return [a for a in args if a.startswith("--cluster-secret-namespace")]


def test_cluster_secrets_are_read_only_in_their_own_namespace_when_enabled():
    objects = render()
    assert cluster_secret_namespace_args(objects) == []
    assert not [d for d in objects if d["metadata"]["name"] == "x-cluster-secrets"]

    for sets, ns in (
        (["clusters.enabled=true"], "default"),  # the release namespace
        (["clusters.enabled=true", "clusters.secretNamespace=conveyor-clusters"], "conveyor-clusters"),
    ):
        objects = render(*sets)
        assert cluster_secret_namespace_args(objects) == [f"--cluster-secret-namespace={ns}"]
        assert secret_rules(objects) == [("Role", ns, ["get", "list", "watch"])]
        [binding] = [
            d for d in objects if (d["kind"], d["metadata"]["name"]) == ("RoleBinding", "x-cluster-secrets")
        ]
        assert binding["metadata"]["namespace"] == ns
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "x", "namespace": "default"}]


def test_a_target_clusters_service_account_may_do_what_a_stage_needs_there_and_nothing_else(
    cluster, story: Story
):
    release = f"tg-{uuid.uuid4().hex[:6]}"
    target, other = story.stage_ns["prod"], story.stage_ns["staging"]
    install(cluster, release, story.ns, "mode=target", f"target.namespaces={{{target}}}")
    try:
        manifest = manifests(
            run(helm(), "get", "manifest", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)
        )
        assert {d["kind"] for d in manifest} == {
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        }
        sa = sa_kubeconfig(cluster, "conveyor-target", story.ns)

        # Exactly what a stage needs, in the target namespace, as the API server lists it; elsewhere
        # only `get` on the target namespace (a ClusterRole: listed in every namespace, pinned by name)
        namespace_get = {("", "namespaces", "get")}
        assert rules_of(sa, target) == TARGET_RULES | namespace_get
        assert rules_of(sa, other) == namespace_get
        for group, resource, verb in sorted(TARGET_RULES):
            assert can(sa, verb, f"{resource}.{group}" if group else resource, target), (verb, resource)
        assert can(sa, "get", f"namespaces/{target}", target)

        assert not can(sa, "create", "jobs.batch", other)
        assert not can(sa, "patch", "deployments.apps", other)
        assert not can(sa, "get", "secrets", target)
        assert not can(sa, "delete", "deployments.apps", target)
        assert not can(sa, "create", "deployments.apps", target)
        assert not can(sa, "list", "pipelines.conveyor.dev", target)
        assert not can(sa, "list", "pipelines.conveyor.dev", story.ns)
        assert not can(sa, "list", "namespaces", target)
        assert not can(sa, "get", f"namespaces/{other}", other)

        # The parity check's Secret reads, when asked: in the target namespace only; and the
        # long-lived token Secret, filled by the token controller, is the ServiceAccount's
        run(
            helm(),
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            story.ns,
            "--reuse-values",
            "--set",
            "target.parity.secrets=true",
            "--set",
            "target.tokenSecret=true",
            kubeconfig=cluster.kubeconfig,
        )
        assert can(sa, "get", "secrets", target)
        assert not can(sa, "get", "secrets", other)
        assert not can(sa, "list", "secrets", target)
        token = ""
        for _ in range(50):
            token = run(
                kubectl_binary(),
                "get",
                "secret",
                "conveyor-target-token",
                "-n",
                story.ns,
                "-o",
                "jsonpath={.data.token}",
                kubeconfig=cluster.kubeconfig,
            )
            if token:
                break
            time.sleep(0.1)
        assert token, "the token controller never filled the service-account-token Secret"
        long_lived = sa_kubeconfig(
            cluster, "conveyor-target", story.ns, token=base64.b64decode(token).decode()
        )
        assert rules_of(long_lived, target) == TARGET_RULES | namespace_get | {("", "secrets", "get")}
    finally:
        run(helm(), "uninstall", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)
