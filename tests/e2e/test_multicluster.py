"""Multi-cluster, end to end (issue #16): a Pipeline's prod stage names another cluster (B), which
Conveyor, running in the control cluster (A), reaches with a bearer token from a cluster Secret in
A — and there it has only the target ServiceAccount's rights (the chart's `mode: target`).

Two real control planes (the test cluster, and the second one of support/multicluster.py), one
operator for the whole module (A: the test runner's credentials, as the other stories run it; B:
only the token), and the stories the issue asks for:

  (a) staging in A -> approval -> prod in B, with migrations and smoke tests: prod's Jobs and image
      change in B only; A's namespace of the same name is untouched; `kubectl get pipelines` shows
      where each stage runs;
  (b) a rollback of prod with a down-migration that runs in B;
  (c) B's kube-apiserver down for 20 s while a release is in prod's smoke test: the release says
      ClusterUnreachable within seconds, a pipeline that lives in A alone promotes meanwhile, and
      after B's return the release succeeds, each Job created once in B, no 403 in B (its staging in
      A and its prod in B share a namespace name: each cluster's Jobs and patch are its stage's);
  (d) a wrong token: ClusterCredentialsInvalid; the Secret fixed (no restart), the release proceeds;
  (e) a pipeline whose namespace the Secret does not list: ClusterNotAllowed, and B never hears of it.

`-m multicluster` selects them (`-m "not multicluster"` leaves them out). Against an external
cluster they need CONVEYOR_TEST_KUBECONFIG_B too (support/multicluster.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from conftest import make_namespace
from conveyor.api.pipeline import Stage
from support import multicluster as mc
from support.cluster import Cluster, audit_log
from support.invariants import audit_job_creates, audit_log_events, audit_writes_by
from support.operator import OperatorProcess
from support.outages import outage, restart_controllers
from support.story import OLD_IMAGE, Story, deployment_manifest, image_of, stage_record, status
from support.wait import has_condition, wait_for_list, wait_for_object

pytestmark = [pytest.mark.cluster, pytest.mark.multicluster]

MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}
DOWN = {"command": ["/app/migrate", "down"]}
CLUSTER = "prod-b"  # the name stages use for B (the cluster Secret's `name`)
CREDS_CLUSTER = "prod-b-creds"  # B again, under a second Secret that starts with a wrong token
# Issue #16: a release says ClusterUnreachable within about 10 s of B's API server going away (the
# story prints what it measured: 0.0-0.1 s here, a refused connection is seen at once).
UNREACHABLE_WITHIN_SECONDS = 10.0
# After an outage B's own controllers lag (support/outages.py, tests/e2e/test_outages.py); the story
# restarts them, and gives the release this long.
CLUSTER_CATCH_UP_SECONDS = 120.0
HOLD_GATE = "conveyor.dev/held-by-test"
READS = ("get", "list", "watch")  # B's audit log has every request; audit_writes_by counts all verbs

# The stories' worlds, created before the one operator starts (it is told every namespace it
# serves): role -> namespace in A; "prod" is the namespace name in B (and, empty or not, in A).
SLOTS = {
    "promo": ("pipeline", "staging", "prod"),
    "rollback": ("pipeline", "prod"),
    "outage": ("pipeline", "staging", "prod"),
    "aonly": ("pipeline", "staging", "prod"),  # every stage in A: it must not care about B
    "creds": ("pipeline", "staging", "prod"),
    "denied": ("pipeline", "prod"),
}
IN_B = ("promo", "rollback", "outage", "creds", "denied")  # slots whose prod is in B
# Slots whose prod in B has the very name of their staging in A: two stages, one namespace name,
# two clusters (each has a Deployment `shop` there); the others' A namespace of prod's name is empty.
SAME_NAME = ("outage",)


@dataclass
class World:
    """Both clusters, their clients, the module's namespaces, the token and the one operator."""

    a: Cluster
    b: Cluster
    api_a: client.ApiClient
    core_a: client.CoreV1Api
    apps_a: client.AppsV1Api
    batch_a: client.BatchV1Api
    core_b: client.CoreV1Api
    apps_b: client.AppsV1Api
    batch_b: client.BatchV1Api
    secret_ns: str
    slots: dict[str, dict[str, str]]
    token: str
    audit_a: Path | None
    audit_b: Path | None
    operator: OperatorProcess | None = None
    stories: dict[str, Story] = field(default_factory=dict)
    started: float = field(default_factory=time.time)  # B's audit log before this is another run's

    def secret(self, cluster: str, slots: list[str], **kwargs: Any) -> dict[str, Any]:
        """The cluster Secret for B named `cluster`, allowed to the pipelines of `slots`, for the prod
        namespaces of every slot in B (so only the annotation can refuse)."""
        return mc.cluster_secret(
            cluster,
            mc.server_of(self.b),
            self.token,
            mc.ca_pem_of(self.b),
            [self.slots[s]["pipeline"] for s in slots],
            [self.slots[s]["prod"] for s in IN_B],
            **kwargs,
        )

    def story(self, slot: str) -> Story:
        """A Story over one slot's namespaces in A, speaking for the module's operator."""
        if slot not in self.stories:
            s = Story(
                self.api_a,
                self.a.kubeconfig,
                self.slots[slot],
                users_dir=self.a.cluster_dir / "users" if self.a.cluster_dir else None,
            )
            s.grant_team_roles()
            s.operator = self.operator
            self.stories[slot] = s
        return self.stories[slot]

    def b_jobs(self, ns: str) -> list[str]:
        """Conveyor's Jobs in B's namespace `ns`."""
        items = self.batch_b.list_namespaced_job(
            ns, label_selector="app.kubernetes.io/managed-by=conveyor"
        ).items
        return sorted(j.metadata.name for j in items)

    def a_jobs(self, ns: str) -> list[str]:
        return sorted(j.metadata.name for j in self.batch_a.list_namespaced_job(ns).items)

    def b_image(self, ns: str, name: str = "shop") -> str:
        dep = self.apps_b.read_namespaced_deployment(name, ns)
        return str(dep.spec.template.spec.containers[0].image)

    def b_deployment(self, ns: str, name: str = "shop", replicas: int = 2) -> None:
        """The application's Deployment in B's `ns` on the initial image, Available."""
        self.apps_b.create_namespaced_deployment(ns, deployment_manifest(name, replicas=replicas))
        wait_for_object(
            self.apps_b.list_namespaced_deployment,
            name,
            has_condition("Available"),
            namespace=ns,
            what=f"Deployment {ns}/{name} Available in B",
        )


def multicluster_operator_exists() -> bool:
    """Whether this Conveyor's Stage has a `cluster` at all (issue #16 landed)."""
    return "cluster" in Stage.model_fields


def new_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def world(
    cluster: Cluster, second_cluster: Cluster, api_client: client.ApiClient, crds: None
) -> Iterator[World]:
    """Both clusters ready for the stories: namespaces in A and B, the target rights and a token in B,
    the cluster Secrets in A. The operator is started by `operator` (it needs issue #16's code)."""
    b = second_cluster
    api_b = new_client(b.kubeconfig)
    core_a = client.CoreV1Api(api_client)
    tag = uuid.uuid4().hex[:5]
    slots: dict[str, dict[str, str]] = {}
    created_a: list[str] = []
    for slot, roles in SLOTS.items():
        slots[slot] = {}
        for role in roles:
            if role == "prod" and slot in SAME_NAME:
                slots[slot][role] = slots[slot]["staging"]
                continue
            if role == "prod" and slot in IN_B:
                # the same name in both clusters: B's is the stage's, A's must stay untouched
                slots[slot][role] = f"mc-{slot}-prod-{tag}"
                core_a.create_namespace(
                    {"metadata": {"name": slots[slot][role], "labels": {"conveyor.dev/test": "true"}}}
                )
            else:
                slots[slot][role] = make_namespace(core_a, f"mc-{slot}-{role[:4]}")
            created_a.append(slots[slot][role])
    secret_ns = make_namespace(core_a, "mc-secrets")
    created_a.append(secret_ns)
    b_namespaces = [slots[s]["prod"] for s in IN_B]
    mc.install_target_rbac(b, b_namespaces)
    w = World(
        a=cluster,
        b=b,
        api_a=api_client,
        core_a=core_a,
        apps_a=client.AppsV1Api(api_client),
        batch_a=client.BatchV1Api(api_client),
        core_b=client.CoreV1Api(api_b),
        apps_b=client.AppsV1Api(api_b),
        batch_b=client.BatchV1Api(api_b),
        secret_ns=secret_ns,
        slots=slots,
        token=mc.create_token(b),
        audit_a=audit_log(cluster) if cluster.local else None,
        audit_b=mc.audit_log_b(b),
    )
    mc.apply_secret(core_a, secret_ns, w.secret(CLUSTER, ["promo", "rollback", "outage"]))
    mc.apply_secret(
        core_a,
        secret_ns,
        w.secret(CREDS_CLUSTER, ["creds"], config_overrides={"bearerToken": "not-" + w.token[:40]}),
    )
    yield w
    if w.operator is not None:
        w.operator.stop()
    for ns in created_a:
        core_a.delete_namespace(ns)
    for ns in b_namespaces:
        w.core_b.delete_namespace(ns)


@pytest.fixture(scope="module")
def operator(world: World, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """One `conveyor run` for every story: A as the test runner, B through the Secrets only."""
    if not multicluster_operator_exists():
        pytest.skip("this Conveyor's Stage has no `cluster` yet: issue #16's operator has not landed")
    served = sorted({ns for slot in world.slots.values() for ns in slot.values()})
    op = OperatorProcess(
        world.a.kubeconfig,
        *[a for ns in served for a in ("-n", ns)],
        f"--cluster-secret-namespace={world.secret_ns}",
    ).start()
    world.operator = op
    op.wait_for_log(r"is alive")
    op.wait_healthy()
    for s in world.stories.values():
        s.operator = op
    yield op
    failed = any(
        getattr(item, "module", None) is request.module
        and getattr(item, "rep_call", None)
        and item.rep_call.failed
        for item in request.session.items
    )
    if failed:
        print("\n--- multi-cluster operator output (last 120 lines) ---\n" + "\n".join(op.lines[-120:]))


# --- helpers ---------------------------------------------------------------------------------------


def reasons(obj: dict[str, Any] | None) -> set[str]:
    """Every reason the object shows: its conditions', its own and its stages'."""
    if obj is None:
        return set()
    st = status(obj)
    found = {c.get("reason") for c in st.get("conditions") or []}
    found |= {st.get("reason")} | {s.get("reason") for s in st.get("stages") or []}
    return {r for r in found if r}


def shows(reason: str) -> Callable[[Any], bool]:
    return lambda o: reason in reasons(o)


def placement_stages(story: Story, pipeline: str = "shop") -> dict[str, str]:
    """stage -> the cluster the Pipeline's status says it runs in ("" for A)."""
    st = status(story.get("pipelines", pipeline))
    return {s["name"]: s.get("cluster") or "" for s in st.get("stages") or []}


def prod_in_b(story: Story, cluster: str = CLUSTER, **extra: Any) -> dict[str, Any]:
    return {
        "name": "prod",
        "namespace": story.stage_ns["prod"],
        "cluster": cluster,
        "rolloutDeadlineSeconds": 60,
        **extra,
    }


def staging_in_a(story: Story) -> dict[str, Any]:
    return {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 60}


def b_creates(world: World, ns: str) -> dict[str, int]:
    """Job creates the target ServiceAccount requested in B's `ns` (audit log), per Job, 409s
    included (a second attempt hides behind one); {} when B has no log here."""
    if world.audit_b is None:
        return {}
    return dict(mc.job_creates_by(world.audit_b, mc.TARGET_USER, ns))


def conveyor_patches(log: Path, namespace: str) -> dict[str, int]:
    """Deployment patches Conveyor (user agent conveyor/...) made in `namespace` per Deployment, as
    the API server carried them out (2xx), from A's audit log."""
    out: Counter[str] = Counter()
    for ev in audit_log_events(log, '"deployments"', '"patch"'):
        ref = ev.get("objectRef") or {}
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        if (
            ev.get("verb") == "patch"
            and ref.get("resource") == "deployments"
            and ref.get("namespace") == namespace
            and not ref.get("subresource")
            and str(ev.get("userAgent", "")).startswith("conveyor/")
            and 200 <= code < 300
        ):
            out[ref.get("name", "")] += 1
    return dict(out)


def assert_nothing_of_prod_in_a(world: World, slot: str) -> None:
    """A's namespace of the same name as prod's in B: no Job, no write by Conveyor (audit)."""
    ns = world.slots[slot]["prod"]
    assert world.a_jobs(ns) == [], f"Jobs in A's {ns}"
    if world.audit_a is not None:
        assert audit_job_creates(world.audit_a, [ns]) == {}, f"Conveyor created Jobs in A's {ns}"


# --- the infrastructure, without the operator ------------------------------------------------------


def test_the_second_cluster_gives_the_token_only_the_target_rights(world: World, tmp_path: Path):
    token = mc.token_kubeconfig(world.b, world.token, tmp_path / "target.kubeconfig")
    ns = world.slots["promo"]["prod"]
    # what Conveyor needs in a stage namespace of B
    for verb, what in (
        ("get", "deployments.apps"),
        ("list", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "jobs.batch"),
        ("get", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "events"),
    ):
        assert mc.can_i(token, verb, what, ns), f"{verb} {what} in {ns}"
    assert mc.can_i(token, "get", f"namespaces/{ns}")
    # and nothing more
    assert not mc.can_i(token, "get", "secrets", ns)
    assert not mc.can_i(token, "update", "deployments.apps", ns)
    assert not mc.can_i(token, "create", "pods", ns)
    assert not mc.can_i(token, "patch", "deployments.apps", "default")
    assert not mc.can_i(token, "create", "jobs.batch", "default")
    assert not mc.can_i(token, "get", "namespaces/default")
    assert not mc.can_i(token, "list", "namespaces")
    # the cluster Secret in A, as the operator will read it
    secret = world.core_a.read_namespaced_secret(f"cluster-{CLUSTER}", world.secret_ns)
    assert secret.metadata.labels[mc.SECRET_LABEL] == "true"
    allowed = secret.metadata.annotations[mc.PIPELINES_ANNOTATION].split(",")
    assert world.slots["promo"]["pipeline"] in allowed
    assert world.slots["denied"]["pipeline"] not in allowed
    cfg = mc.secret_config(secret)
    assert cfg["bearerToken"] == world.token
    assert mc.server_of(world.b).startswith("https://127.0.0.1:") or not world.b.local


# --- the stories -----------------------------------------------------------------------------------


def test_a_release_goes_from_staging_in_a_to_prod_in_b(world: World, operator: OperatorProcess):
    story = world.story("promo")
    prod = story.stage_ns["prod"]
    # Given staging in A, prod in B, and A's namespace of prod's name holding a Deployment too
    story.given_deployments(stages=["staging"])
    story.create_deployment(prod, "shop")
    story.wait_deployment_available(prod, "shop")
    world.b_deployment(prod)
    story.given_pipeline(
        stages=[staging_in_a(story), prod_in_b(story, requiresApproval=True)],
        migration=MIGRATION,
        smoke_test=SMOKE,
    )
    story.then_condition("pipelines", "shop", "ClustersReachable", status="True")
    assert placement_stages(story) == {"staging": "", "prod": CLUSTER}
    # When CI creates a release, and alice approves prod
    story.when_release("shop-v1", label="v1")
    story.then_release_phase("shop-v1", "AwaitingApproval", timeout=90)
    story.when_approved("shop-v1", "prod")
    rel = story.then_condition("releases", "shop-v1", "Ready", timeout=90)
    # Then prod's Jobs ran and its image changed in B ...
    assert stage_record(rel, "prod")["phase"] == "Verified"
    expected = [story.job("shop-v1", "prod", "migrate"), story.job("shop-v1", "prod", "smoke")]
    assert world.b_jobs(prod) == sorted(expected)
    assert world.b_image(prod) == image_of("v1")
    if world.audit_b is not None:
        assert b_creates(world, prod) == dict.fromkeys(expected, 1)
        writes = audit_writes_by(world.audit_b, mc.TARGET_USER, [prod])
        patches = {k: n for k, n in writes.items() if k[1] == "deployments" and k[0] not in READS}
        assert patches == {("patch", "deployments", f"{prod}/shop"): 1}, writes
    # ... and staging's in A, while A's namespace of the same name as prod's saw nothing
    assert story.jobs("staging") == sorted(
        [story.job("shop-v1", "staging", "migrate"), story.job("shop-v1", "staging", "smoke")]
    )
    assert story.deployment_image("staging") == image_of("v1")
    assert story.deployment_image("prod") == OLD_IMAGE  # A's shop-prod: untouched
    assert story.apps.read_namespaced_deployment("shop", prod).metadata.generation == 1
    assert_nothing_of_prod_in_a(world, "promo")
    # And `kubectl get pipelines` says where each stage runs
    pipeline = story.get("pipelines", "shop")
    assert status(pipeline)["placement"] == f"staging=control prod={CLUSTER}", status(pipeline)
    header, row = story.kubectl("get", "pipelines").splitlines()[:2]
    assert "CLUSTERS" in header.split(), header
    assert f"staging=control prod={CLUSTER}" in row, row


def test_a_rollback_of_prod_runs_its_down_migration_in_b(world: World, operator: OperatorProcess):
    story = world.story("rollback")
    prod = story.stage_ns["prod"]
    # Given prod (in B, no gate) ran v1, then v2 with a breaking schema change
    world.b_deployment(prod)
    story.given_pipeline(stages=[prod_in_b(story)], down_migration=DOWN)
    story.promote("shop-v1", label="v1")
    from support.builders import release_dict

    body = release_dict("shop-v2", namespace=story.ns, label="v2")
    body["spec"]["schemaChange"] = "breaking"
    story.create("releases", body)
    story.then_condition("releases", "shop-v2", "Ready", timeout=90)
    assert world.b_image(prod) == image_of("v2")
    # When alice rolls prod back
    story.when_rollback("undo-v2", verify=False, reason="v2 broke checkout")
    rb = story.then_rollback_phase("undo-v2", "Succeeded")
    # Then the down-migration ran once, in B, with v2's image, before the image went back to v1
    assert status(rb)["plan"]["action"] == "DownMigrationThenImage"
    assert status(rb)["downMigratedAt"] <= status(rb)["patchedAt"]
    down_job = story.job("undo-v2", "prod", "down", plural="rollbacks")
    assert world.b_jobs(prod) == [down_job]
    down = world.batch_b.read_namespaced_job(down_job, prod)
    assert down.spec.template.spec.containers[0].image == image_of("v2")
    assert down.spec.template.spec.containers[0].command == DOWN["command"]
    assert world.b_image(prod) == image_of("v1")
    if world.audit_b is not None:
        assert b_creates(world, prod) == {down_job: 1}
    assert_nothing_of_prod_in_a(world, "rollback")
    story.then_event("undo-v2", "RollbackCompleted")


def hold_smoke_tests(world: World, ns: str) -> None:
    """In B's `ns`, smoke-test Pods are created with a scheduling gate (a MutatingAdmissionPolicy):
    the smoke test stays under way, deterministically, until release_smoke_tests()."""
    name = f"hold-smoke-{ns}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "smoke-test",
                    "expression": "object.spec.containers.exists(c, c.name == 'smoke-test')",
                }
            ],
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {
                        "expression": "Object{spec: Object.spec{schedulingGates: "
                        f'[Object.spec.schedulingGates{{name: "{HOLD_GATE}"}}]}}}}'
                    },
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
        },
    }
    mc.kubectl(
        world.b,
        "apply",
        "-f",
        "-",
        input_=json.dumps({"kind": "List", "apiVersion": "v1", "items": [policy, binding]}),
    )
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {"containers": [{"name": "smoke-test", "image": OLD_IMAGE}]},
    }
    deadline = time.monotonic() + 30
    while True:  # the policy takes effect when the API server has loaded it: nothing to watch
        out = json.loads(
            mc.kubectl(
                world.b, "create", "--dry-run=server", "-o", "json", "-f", "-", input_=json.dumps(probe)
            )
        )
        if out["spec"].get("schedulingGates"):
            return
        assert time.monotonic() < deadline, "B's API server did not apply the smoke-test hold within 30s"
        time.sleep(0.2)


def release_smoke_tests(world: World, ns: str) -> None:
    """Remove the hold: no new Pod is held, and the held ones are scheduled."""
    name = f"hold-smoke-{ns}"
    mc.kubectl(world.b, "delete", "mutatingadmissionpolicybinding", name, "--ignore-not-found")
    mc.kubectl(world.b, "delete", "mutatingadmissionpolicy", name, "--ignore-not-found")
    for pod in world.core_b.list_namespaced_pod(ns).items:
        if pod.spec.scheduling_gates:
            world.core_b.patch_namespaced_pod(
                pod.metadata.name, ns, [{"op": "remove", "path": "/spec/schedulingGates"}]
            )


def test_b_down_for_20s_mid_smoke_test_is_said_and_survived(world: World, operator: OperatorProcess):
    if not world.b.local:
        pytest.skip("stopping B's kube-apiserver needs a local second cluster (hack/cluster)")
    story, aonly = world.story("outage"), world.story("aonly")
    prod = story.stage_ns["prod"]
    # Given a pipeline whose prod is in B in a namespace of the very name of its staging's in A, one
    # wholly in A, and prod's smoke tests in B held
    story.given_deployments(stages=["staging"])
    world.b_deployment(prod)
    story.given_pipeline(
        stages=[staging_in_a(story), prod_in_b(story, requiresApproval=True)],
        migration=MIGRATION,
        smoke_test=SMOKE,
    )
    aonly.given_deployments()
    aonly.given_pipeline(smoke_test=SMOKE)
    story.then_condition("pipelines", "shop", "ClustersReachable", status="True")
    hold_smoke_tests(world, prod)
    pid = operator.proc.pid if operator.proc else None
    # And a release approved for prod as it is created, now in prod's smoke test (held in B)
    story.when_release("shop-o", label="out-b")
    story.when_approved("shop-o", "prod")
    story.then_release(
        "shop-o",
        lambda o: o is not None and stage_record(o, "prod").get("phase") == "SmokeTesting",
        "prod's smoke test under way in B",
        timeout=120,
    )
    smoke = story.job("shop-o", "prod", "smoke")
    wait_for_list(
        world.core_b.list_namespaced_pod,
        lambda pods: any(p.spec.scheduling_gates for p in pods),
        what=f"the held Pod of smoke test {smoke} in B",
        namespace=prod,
        label_selector=f"job-name={smoke}",
        timeout=30,
    )
    assert "ClusterUnreachable" not in reasons(story.get("releases", "shop-o"))  # what follows is news
    try:
        # When B's kube-apiserver is killed, and stays down for 20 s
        with outage(world.b, "kube-apiserver") as timings:
            # Then the release says so within seconds
            story.then_release(
                "shop-o", shows("ClusterUnreachable"), "reason ClusterUnreachable", UNREACHABLE_WITHIN_SECONDS
            )
            said = time.monotonic() - timings["down"]
            story.then_condition(
                "pipelines",
                "shop",
                "ClustersReachable",
                status="False",
                reason="ClusterUnreachable",
                timeout=10,
            )
            # And a pipeline that lives in A alone promotes meanwhile, B still down
            aonly.promote("aonly-v1", label="aonly-v1")
            promoted = time.monotonic() - timings["down"]
        # And once B is back (its smoke test let go), the release succeeds by itself (B's own
        # controllers restarted: their watches would back off for up to a minute)
        restart_controllers(world.b)
        release_smoke_tests(world, prod)
        rel = story.then_release_phase("shop-o", "Succeeded", timeout=CLUSTER_CATCH_UP_SECONDS)
        caught_up = time.monotonic() - timings["back"]
    finally:
        release_smoke_tests(world, prod)
    print(
        f"\nB down {timings['back'] - timings['down']:.1f}s; ClusterUnreachable said after {said:.1f}s; "
        f"the A-only release Ready {promoted:.1f}s into the outage; shop-o Succeeded {caught_up:.1f}s "
        "after B was back"
    )
    story.then_condition("pipelines", "shop", "ClustersReachable", status="True", timeout=60)
    assert stage_record(rel, "prod")["phase"] == "Verified"
    assert operator.proc is not None
    assert operator.proc.pid == pid
    assert operator.proc.poll() is None
    # And each Job was created once, in B; nothing of prod's in A
    expected = [story.job("shop-o", "prod", "migrate"), smoke]
    assert world.b_jobs(prod) == sorted(expected)
    assert world.b_image(prod) == image_of("out-b")
    # (prod's namespace name in B is staging's in A: there, staging's Jobs and one image patch only)
    assert story.jobs("staging") == sorted(
        [story.job("shop-o", "staging", "migrate"), story.job("shop-o", "staging", "smoke")]
    )
    if world.audit_a is not None:
        assert set(audit_job_creates(world.audit_a, [prod]).values()) == {1}
        assert {name for _, name in audit_job_creates(world.audit_a, [prod])} == set(story.jobs("staging"))
        assert conveyor_patches(world.audit_a, prod) == {"shop": 1}
    if world.audit_b is not None:
        assert b_creates(world, prod) == dict.fromkeys(expected, 1)
        # And B never refused the target ServiceAccount anything (reads and watches included), but
        # while it restarted: it serves before its authorizer has read RBAC (403, no reason given)
        restart = (timings["down_at"], timings["back_at"])
        refused = mc.refused_requests(world.audit_b, mc.TARGET_USER, since=world.started, excluding=[restart])
        assert refused == {}, refused
    operator.wait_healthy(timeout=10)


def test_a_wrong_token_is_said_and_fixing_the_secret_lets_the_release_proceed(
    world: World, operator: OperatorProcess
):
    story = world.story("creds")
    prod = story.stage_ns["prod"]
    # Given prod in B under a cluster Secret whose token is wrong
    story.given_deployments(stages=["staging"])
    world.b_deployment(prod)
    story.given_pipeline(stages=[staging_in_a(story), prod_in_b(story, cluster=CREDS_CLUSTER)])
    pid = operator.proc.pid if operator.proc else None
    # When a release heads for prod
    story.when_release("shop-c", label="creds")
    # Then it waits, saying why, and the Pipeline says it too; nothing changed in B
    story.then_release("shop-c", shows("ClusterCredentialsInvalid"), "reason ClusterCredentialsInvalid", 90)
    story.then_condition(
        "pipelines", "shop", "ClustersReachable", status="False", reason="ClusterCredentialsInvalid"
    )
    assert world.b_image(prod) == OLD_IMAGE
    assert world.b_jobs(prod) == []
    assert status(story.get("releases", "shop-c"))["phase"] not in ("Succeeded", "Failed")
    # When the platform team fixes the Secret (no restart)
    mc.apply_secret(world.core_a, world.secret_ns, world.secret(CREDS_CLUSTER, ["creds"]))
    # Then the same release proceeds to prod in B
    story.then_release_phase("shop-c", "Succeeded", timeout=90)
    story.then_condition("pipelines", "shop", "ClustersReachable", status="True", timeout=30)
    assert world.b_image(prod) == image_of("creds")
    assert operator.proc is not None
    assert operator.proc.pid == pid
    assert_nothing_of_prod_in_a(world, "creds")


def test_a_pipeline_the_secret_does_not_allow_never_reaches_b(world: World, operator: OperatorProcess):
    story = world.story("denied")
    prod = story.stage_ns["prod"]
    # Given a pipeline in a namespace the Secret's annotation does not list (its stage namespace is
    # listed in the Secret's `namespaces`: only the annotation refuses), and a Deployment there in B
    world.b_deployment(prod)
    started = time.time()
    story.given_pipeline(stages=[prod_in_b(story)])
    # Then the Pipeline and a release say ClusterNotAllowed
    story.then_condition("pipelines", "shop", "ClustersReachable", status="False", reason="ClusterNotAllowed")
    story.when_release("shop-d", label="denied")
    story.then_release("shop-d", shows("ClusterNotAllowed"), "reason ClusterNotAllowed", 60)
    # And B never heard of it: its Deployment untouched, no Job, no request of the operator there
    assert world.b_image(prod) == OLD_IMAGE
    assert world.b_jobs(prod) == []
    assert_nothing_of_prod_in_a(world, "denied")
    if world.audit_b is not None:
        seen = [
            f"{e.get('verb')} {(e.get('objectRef') or {}).get('resource')} {e.get('requestURI')}"
            for e in mc.requests_by(world.audit_b, mc.TARGET_USER, [prod])
        ]
        assert seen == [], (
            f"the operator reached B for a pipeline not allowed there (since {started}): {seen}"
        )
