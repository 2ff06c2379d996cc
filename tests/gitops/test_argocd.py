"""GitOps for real: a real Argo CD (hack/argocd) syncs the examples/gitops layout from a Git
repository, Conveyor promotes what it syncs, and the two stay at peace.

One story, in the order a team lives it:
1. Argo CD syncs the Pipeline and the apps' Deployments (examples/argocd/application.yaml); a commit
   adding a Release -> Conveyor promotes it to staging and waits for approval; Argo CD's health for
   the Release (Conveyor's Lua check, run by Argo CD) reads Suspended; approved -> Healthy.
2. A release whose smoke test fails -> Degraded in Argo CD.
3. A person rolls production back (a Rollback, not in Git): production goes back, Argo CD's
   self-heal does not undo it, the vetoed Release still in Git stays vetoed.
4. The next commit's Release proceeds normally.
Throughout, neither Application ever goes OutOfSync except for a commit not yet synced, and Argo
CD syncs once per commit (a self-heal that fought Conveyor would be a sync more).

With CONVEYOR_CAPTURE_DIR set, the Conveyor objects Argo CD judged are written there with Argo CD's
verdict (tests/fixtures/argocd/: what tests/unit/test_argocd_health.py replays under lupa).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.core.jobs import RELEASE_LABEL, RELEASE_UID_ANNOTATION
from support.argocd import (
    ArgoCD,
    GitRepo,
    Seen,
    argocd_up,
    captured,
    example_applications,
    gitops_layout,
    have_git,
    lua_health,
    rename,
    resource,
    sync_of,
)
from support.builders import release_dict
from support.cluster import REPO, Cluster
from support.invariants import audit_writes_by
from support.story import Story, stage_record, status

pytestmark = pytest.mark.cluster
ARGOCD_USER = "system:serviceaccount:argocd:argocd-application-controller"


@pytest.fixture
def argocd(cluster: Cluster, story: Story) -> Iterator[ArgoCD]:
    """Argo CD running beside the local control plane; the story's Applications deleted after."""
    if not cluster.local or cluster.cluster_dir is None:
        pytest.skip("the gitops stage runs Argo CD beside the local control plane (hack/argocd)")
    if not have_git():
        pytest.fail("git is required: Argo CD's repo-server clones with it (apt-get install git)")
    argocd_up(cluster.cluster_dir)
    a = ArgoCD(story.api)
    yield a
    a.stop()


def release_file(name: str, namespace_free: dict[str, Any]) -> str:
    """A Release as CI commits it: the example's annotations for Argo CD, no namespace (the
    Application's destination decides)."""
    example = yaml.safe_load((REPO / "examples" / "gitops" / "releases" / "shop-3f9c2a1.yaml").read_text())
    body = dict(namespace_free)
    body["metadata"] = {"name": name, "annotations": example["metadata"]["annotations"]}
    return json.dumps(body, indent=2) + "\n"


def ci_release(name: str, label: str, digest_prefix: str = "") -> str:
    """A Release file for a build (commit and digest derived from `label`)."""
    return release_file(name, release_dict(name, label=label, digest_prefix=digest_prefix))


class Judged:
    """Argo CD's verdict on Conveyor's objects in one Application, checked against the same Lua
    run under lupa (what tests/unit/test_argocd_health.py replays); with CONVEYOR_CAPTURE_DIR set,
    each object and its verdict are written there (tests/fixtures/argocd/argocd-*.json and
    argocd-verdicts.json)."""

    def __init__(self, story: Story, argocd: ArgoCD, app: str) -> None:
        self.story, self.argocd, self.app = story, argocd, app
        folder = os.environ.get("CONVEYOR_CAPTURE_DIR")
        self.folder = Path(folder) if folder else None

    def check(self, plural: str, name: str, tag: str) -> dict[str, str]:
        """Argo CD's health for the object, judged in a reconciliation that began after this call
        (its default config leaves status-only changes unjudged until something else changes), must
        equal — status and message — what the Lua gives under lupa for the object as it is."""
        kind = self.story.get(plural, name)["kind"]
        latest: dict[str, Any] = {}

        def agree(app: dict[str, Any]) -> bool:
            latest["object"] = self.story.get(plural, name)
            latest["lua"] = lua_health(kind, latest["object"])
            return (resource(app, kind, name) or {}).get("health") == latest["lua"]

        self.argocd.reconciled(self.app)
        judged = self.argocd.wait(self.app, agree, f"{kind} {name} judged as the Lua judges it", timeout=30)
        verdict: dict[str, str] = latest["lua"]
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fixture = f"argocd-{kind.lower()}-{tag}.json"
            obj = captured(latest["object"])
            (self.folder / fixture).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
            verdicts = self.folder / "argocd-verdicts.json"
            known = json.loads(verdicts.read_text()) if verdicts.exists() else {}
            known[fixture] = verdict
            verdicts.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
        assert resource(judged, kind, name) is not None
        return verdict


def test_argo_cd_syncs_releases_from_git_and_keeps_the_peace(
    story: Story, argocd: ArgoCD, tmp_path: Path, audit: Path | None
) -> None:
    staging, prod = story.stage_ns["staging"], story.stage_ns["prod"]
    # The migration's Secret (never in Git), as a platform team provides it in each stage.
    for ns in (staging, prod):
        story.core.create_namespaced_secret(
            ns, {"metadata": {"name": "shop-db"}, "stringData": {"url": "postgres://shop@db/shop"}}
        )
    story.given_operator()

    # Given the examples/gitops layout in a Git repository, and the example Applications over it
    git = GitRepo(tmp_path)
    for path, text in gitops_layout(staging, prod).items():
        git.write(path, text)
    first = git.push("shop: pipeline and apps")
    project, delivery, app = example_applications(git.url, story.ns, uuid.uuid4().hex[:5])
    argocd.create_project(project)
    for a in (delivery, app):
        argocd.create(a)
    d, s = delivery["metadata"]["name"], app["metadata"]["name"]
    judged = Judged(story, argocd, d)
    argocd.wait_synced(d, first)
    shop_app = argocd.wait_synced(s, first)
    argocd.wait_health(s, "Deployment", "shop", "Healthy")
    # Argo CD, not a person, created the Pipeline: it is Ready once Conveyor has looked at it
    story.then_condition("pipelines", "shop", "Ready")
    assert sync_of(shop_app)[0] == "Synced"

    # 1. CI commits a Release: Argo CD creates it (as its ServiceAccount), Conveyor promotes it to
    # staging and stops at prod's gate; Argo CD's health for it reads Suspended
    r1 = "shop-3f9c2a1"
    example = (REPO / "examples" / "gitops" / "releases" / f"{r1}.yaml").read_text()
    git.write(f"examples/gitops/releases/{r1}.yaml", rename(example, staging, prod))
    # push -> Conveyor's acceptedAt, per release (same clock), read as each is answered: r3 is
    # re-created by the retention step, and that copy's acceptedAt is another moment
    pushed = {r1: datetime.now(UTC)}
    accepted_at: dict[str, str] = {}
    c2 = git.push(f"release {r1}")
    argocd.refresh(d)  # what Argo CD's Git webhook does on a push
    accepted = story.then_release(r1, lambda o: o is not None and bool(status(o).get("phase")), "accepted")
    accepted_at[r1] = status(accepted)["acceptedAt"]
    assert (
        accepted["spec"]["requester"]["username"]
        == "system:serviceaccount:argocd:argocd-application-controller"
    )
    story.then_release_phase(r1, "AwaitingApproval", timeout=90)
    argocd.wait_health(d, "Release", r1, "Suspended")
    assert "approval" in judged.check("releases", r1, "awaiting-approval")["message"]
    argocd.wait_synced(d, c2)

    story.when_approved(r1, "prod")
    story.then_condition("releases", r1, "Ready", timeout=90)
    argocd.wait_health(d, "Release", r1, "Healthy")
    judged.check("releases", r1, "succeeded")
    r1_digest = yaml.safe_load(example)["spec"]["digest"]
    assert story.deployment_image("prod").endswith(r1_digest)

    # 2. The next build reaches prod; the one after it fails its smoke test in staging: Degraded
    r2, r3 = "shop-v2", "shop-v3"
    git.write(f"examples/gitops/releases/{r2}.yaml", ci_release(r2, "gitops-v2"))
    pushed[r2] = datetime.now(UTC)
    c3 = git.push(f"release {r2}")
    argocd.refresh(d)
    accepted_at[r2] = status(story.then_release_phase(r2, "AwaitingApproval", timeout=90))["acceptedAt"]
    argocd.wait_synced(d, c3)
    story.when_approved(r2, "prod")
    story.then_condition("releases", r2, "Ready", timeout=90)
    argocd.wait_health(d, "Release", r2, "Healthy")
    git.write(f"examples/gitops/releases/{r3}.yaml", ci_release(r3, "gitops-v3", digest_prefix="5bad"))
    pushed[r3] = datetime.now(UTC)
    c4 = git.push(f"release {r3}")
    argocd.refresh(d)
    accepted_at[r3] = status(story.then_release_phase(r3, "Failed", timeout=90))["acceptedAt"]
    argocd.wait_synced(d, c4)
    argocd.wait_health(d, "Release", r3, "Degraded")
    assert "smoke" in judged.check("releases", r3, "failed-smoke-test")["message"]

    # 3. A person rolls prod back (a Rollback, not in Git): prod runs r1 again, r2 is vetoed
    story.when_rollback("shop-prod-back", stage="prod", reason="checkout errors after shop-v2")
    story.then_rollback_phase("shop-prod-back", "Succeeded")
    assert story.deployment_image("prod").endswith(r1_digest)
    assert status(story.get("releases", r2))["vetoed"] is True
    # Argo CD compares everything with Git again, after the rollback: it finds nothing to undo
    for name in (s, d):
        after = argocd.reconciled(name)
        assert sync_of(after)[0] == "Synced", (name, after["status"].get("sync"))
    argocd.wait_health(d, "Release", r2, "Degraded")
    assert "vetoed" in judged.check("releases", r2, "vetoed")["message"]
    assert story.deployment_image("prod").endswith(r1_digest), "self-heal put the vetoed image back"
    assert status(story.get("releases", r2))["vetoed"] is True, "the Release in Git was un-vetoed"

    # A later change to the app in Git (prod scaled out) is synced, and the sync leaves the image
    # alone (RespectIgnoreDifferences): prod still runs what the rollback put back
    apps = "examples/gitops/apps/shop/deployments.yaml"
    manifests = (git.work / apps).read_text()
    scaled = manifests.replace("replicas: 3", "replicas: 4")
    assert scaled != manifests
    git.write(apps, scaled)
    c5 = git.push("shop: prod scaled to 4")
    argocd.refresh(s)
    argocd.wait_synced(s, c5)
    scaled_out = story.apps.read_namespaced_deployment("shop", prod)
    assert scaled_out.spec.replicas == 4
    assert scaled_out.spec.template.spec.containers[0].image.endswith(r1_digest), (
        "a sync put Git's image back"
    )

    # 4. The next commit's Release goes through as any other
    r4 = "shop-v4"
    git.write(f"examples/gitops/releases/{r4}.yaml", ci_release(r4, "gitops-v4"))
    pushed[r4] = datetime.now(UTC)
    c6 = git.push(f"release {r4}")
    argocd.refresh(d)
    accepted_at[r4] = status(story.then_release_phase(r4, "AwaitingApproval", timeout=90))["acceptedAt"]
    story.when_approved(r4, "prod")
    story.then_condition("releases", r4, "Ready", timeout=90)
    argocd.wait_health(d, "Release", r4, "Healthy")
    assert stage_record(story.get("releases", r4), "prod").get("verifiedAt")
    argocd.wait_synced(d, c6)
    judged.check("pipelines", "shop", "ready-in-parity")
    for name in (s, d):  # a last comparison after every write of the story
        assert sync_of(argocd.reconciled(name))[0] == "Synced", name

    # 5. Retention set in Git deletes the failed r3; self-heal creates it again from its file: an old
    # build Conveyor never promotes again (Superseded, Retired) nor deletes again
    r3_uid = story.get("releases", r3)["metadata"]["uid"]
    pipeline_file = "examples/gitops/pipelines/shop.yaml"
    spec = (git.work / pipeline_file).read_text()
    git.write(pipeline_file, spec.replace("spec:\n", "spec:\n  retention: {keepReleases: 1}\n", 1))
    c7 = git.push("shop: keep one release")
    argocd.refresh(d)
    recreated = story.then_release(
        r3,
        lambda o: o is not None and o["metadata"]["uid"] != r3_uid and bool(status(o).get("phase")),
        "deleted by retention, created again by Argo CD and answered",
        timeout=90,
    )
    assert status(recreated)["phase"] == "Superseded"
    assert any(c["reason"] == "Retired" for c in status(recreated)["conditions"]), status(recreated)
    retired = story.get("pipelines", "shop")["status"]["retired"]
    assert [(r["release"], r["uid"]) for r in retired] == [(r3, r3_uid)]
    for stage in ("staging", "prod"):  # no Job ran for the re-created one
        jobs = story.batch.list_namespaced_job(story.stage_ns[stage], label_selector=f"{RELEASE_LABEL}={r3}")
        owners = {(j.metadata.annotations or {}).get(RELEASE_UID_ANNOTATION) for j in jobs.items}
        assert recreated["metadata"]["uid"] not in owners, f"a Job ran in {stage} for the re-created {r3}"
    r4_digest = story.get("releases", r4)["spec"]["digest"]
    for stage in ("staging", "prod"):
        assert story.deployment_image(stage).endswith(r4_digest), f"{stage} left {r4}"
    argocd.wait_health(d, "Release", r3, "Healthy")
    judged.check("releases", r3, "retired")
    # ... and its file leaves Git: the Release stays (the record), the Application Synced
    git.remove(f"examples/gitops/releases/{r3}.yaml")
    c8 = git.push(f"drop {r3} from Git")
    argocd.refresh(d)
    argocd.wait(d, lambda o: sync_of(o) == ("Synced", c8), f"Synced at {c8[:7]}, {r3}'s file gone")
    assert story.get("releases", r3)["metadata"]["uid"] == recreated["metadata"]["uid"]

    # Throughout, OutOfSync only for a commit Argo CD had not synced yet — or for a Release Argo CD
    # could not see ("Missing"): one it had just created, before its own cache saw it (Argo CD's
    # race: it then re-applies the file, "unchanged"), and, once, by design, the one retention
    # deleted at c7 while Git still held it. Never for an object Conveyor changed.
    for name in (d, s):
        seen = argocd.recorded(name)
        assert seen, f"nothing recorded for {name}"
        synced: set[str] = set()
        drift: list[Seen] = []
        for state in seen:
            if state.sync == "OutOfSync" and state.revision in synced:
                drift.append(state)
            if state.sync == "Synced":
                synced.add(state.revision)
        fights = [v for v in drift if any(health != "Missing" for _, _, health in v.out_of_sync)]
        assert not fights, f"{name} went OutOfSync over what Conveyor changed: {fights}"
        if name == d:
            assert any((("Release", r3, "Missing") in v.out_of_sync) for v in drift if v.revision == c7), (
                drift
            )
    # And what Argo CD wrote (the API server's audit log): each Release created once (r3 twice:
    # self-heal after retention) and never changed; the Deployments created, then patched once, at
    # the scale-out commit (both: Argo CD rewrites its last-applied record with the live image,
    # which the story saw stay). A self-heal that fought Conveyor's image patches, labels or status
    # would be a patch more.
    assert audit is not None  # the local control plane runs with its audit log of writes
    wrote = audit_writes_by(audit, ARGOCD_USER, [*story.stage_ns.values(), story.ns])
    deployments = {f"{ns}/shop" for ns in (staging, prod)}
    assert {k: n for k, n in wrote.items() if k[1] == "deployments"} == {
        **{("create", "deployments", dep): 1 for dep in deployments},
        **{("patch", "deployments", dep): 1 for dep in deployments},
    }, wrote
    releases = {k: n for k, n in wrote.items() if k[1] == "releases"}
    assert releases == {
        ("create", "releases", f"{story.ns}/{r}"): 2 if r == r3 else 1 for r in (r1, r2, r3, r4)
    }, f"Argo CD changed a Release: {releases}"
    took = {
        name: (datetime.fromisoformat(accepted_at[name]) - at).total_seconds() for name, at in pushed.items()
    }
    write_timings(
        {
            "git_push_to_release_accepted_s": {k: round(v, 2) for k, v in took.items()},
            "median_s": round(statistics.median(took.values()), 2),
        }
    )


def write_timings(values: dict[str, Any]) -> None:
    """What the story measured, for docs/argocd.md (the gitops stage prints it)."""
    folder = Path(os.environ.get("CONVEYOR_ARTIFACTS", REPO / ".artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gitops-timings.json").write_text(json.dumps(values, indent=2) + "\n")


def test_hack_argocd_up_is_idempotent_and_down_leaves_nothing_running(cluster: Cluster) -> None:
    if not cluster.local or cluster.cluster_dir is None:
        pytest.skip("hack/argocd runs beside the local control plane")
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cluster.cluster_dir)}
    state = cluster.cluster_dir / "argocd" / "state.json"

    def hack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REPO / "hack" / "argocd", *args], env=env, capture_output=True, text=True, check=False
        )

    argocd_up(cluster.cluster_dir)
    pids = json.loads(state.read_text())["pids"]
    again = hack("up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout, again.stdout
    assert json.loads(state.read_text())["pids"] == pids, "a second `up` started another Argo CD"

    down = hack("down")
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert hack("status").returncode == 1
    left = [pid for pid in pids.values() if Path(f"/proc/{pid}").exists() and not zombie(pid)]
    assert not left, f"still running after `down`: {left}"
    assert hack("down").returncode == 0  # nothing to stop: still fine

    argocd_up(cluster.cluster_dir)  # as it was, for whatever runs next
    assert hack("status").returncode == 0


def zombie(pid: int) -> bool:
    """True when the process has exited and only waits to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
