"""Hardening stories (issue #10), end to end on the real control plane with the operator as users run it.

Each story is one failure observed on the operator before the hardening: an approval bound by name
only, a refused rollback acting later, a rollback that changes nothing vetoing what runs, two
rollbacks fighting over one stage, one object wedging a pipeline, a deleted release hiding what runs,
Jobs piling up or colliding, retention deleting what runs, rollouts that can never start, and an
approval that expires while its release waits. Failures on purpose (docs/local-cluster.md): digest
`dead…` never gets Ready, digest `0bad…` fails its Jobs but runs fine.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.core.jobs import uid_tag
from support.builders import digest_of, pipeline_dict
from support.story import Story, image_of, stage_record, status
from support.wait import WaitTimeout, condition, wait_for_list, wait_for_object

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}
# A release's phases once it has stopped moving, and a rollback's.
RELEASE_FINAL = {"Succeeded", "Failed", "Superseded", "RolledBack", "Cancelled", "Vetoed"}
ROLLBACK_FINAL = {"Succeeded", "Failed", "Refused"}


# --- small helpers (kept here: additive, and only this file needs them) -------------------------------


def prod_stage(story: Story, **extra: Any) -> dict[str, Any]:
    return {"name": "prod", "namespace": story.stage_ns["prod"], "rolloutDeadlineSeconds": 60, **extra}


def given_prod(
    story: Story,
    *,
    deployments: bool = True,
    retention: dict[str, Any] | None = None,
    **stage_and_pipeline: Any,
) -> None:
    """A one-stage pipeline (prod) with its Deployment and the operator. Keys that are Pipeline spec
    builders (migration, smoke_test, down_migration) go to the pipeline; the rest to the stage."""
    pipeline_keys = {k: stage_and_pipeline.pop(k) for k in list(stage_and_pipeline) if k in _PIPELINE_KEYS}
    if deployments:
        story.given_deployments(stages=["prod"])
    body = pipeline_dict("shop", story.ns, stages=[prod_stage(story, **stage_and_pipeline)], **pipeline_keys)
    if retention is not None:
        body["spec"]["retention"] = retention
    story.create("pipelines", body)
    story.given_operator()


_PIPELINE_KEYS = {"migration", "smoke_test", "down_migration"}


def gated(**approval: Any) -> dict[str, Any]:
    """Stage keys for a prod that requires approval under `approval` (the policy)."""
    stage: dict[str, Any] = {"requiresApproval": True}
    if approval:
        stage["approval"] = approval
    return stage


def phase(obj: dict[str, Any] | None) -> str | None:
    return status(obj).get("phase") if obj else None


def then_release_settles(
    story: Story, name: str, phases: set[str], *, uid: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the release (the object with `uid`, if given) is in one of `phases`; return it."""
    return story.then_release(
        name,
        lambda o: o is not None and (uid is None or o["metadata"]["uid"] == uid) and phase(o) in phases,
        f"one of {sorted(phases)}",
        timeout,
    )


def delete(story: Story, plural: str, name: str) -> None:
    """Delete a Conveyor object and wait until it is gone."""
    story.custom.delete_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, plural, name)
    wait_for_object(
        story.lister(plural), name, lambda o: o is None, what=f"{plural}/{name} deleted", timeout=30
    )


def deployed_in_prod(story: Story, name: str) -> dict[str, Any]:
    return story.then_release(
        name, lambda o: o is not None and stage_record(o, "prod").get("deployedAt"), "image set in prod"
    )


def release_jobs(story: Story, release: str, stage: str = "prod") -> list[str]:
    jobs = story.batch.list_namespaced_job(
        story.stage_ns[stage], label_selector=f"conveyor.dev/release={release}"
    ).items
    return sorted(j.metadata.name for j in jobs)


def then_jobs_gone(story: Story, release: str, stage: str = "prod", timeout: float = 30) -> None:
    wait_for_list(
        story.batch.list_namespaced_job,
        lambda items: not items,
        what=f"every Job of release {release} in {stage} deleted",
        timeout=timeout,
        namespace=story.stage_ns[stage],
        label_selector=f"conveyor.dev/release={release}",
    )


def generation(story: Story, stage: str = "prod") -> int:
    return int(story.apps.read_namespaced_deployment("shop", story.stage_ns[stage]).metadata.generation)


def pipeline_stage(story: Story, stage: str) -> dict[str, Any]:
    return next(s for s in status(story.get("pipelines", "shop")).get("stages", []) if s["name"] == stage)


def plugin(story: Story, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    kubeconfig = story.users_dir / f"{user}.kubeconfig" if user and story.users_dir else story.kubeconfig
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "kubectl-conveyor"), *args, "-n", story.ns],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        check=False,
    )


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def approval_with(story: Story, name: str, release: str, *, as_user: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name},
        "spec": {"release": release, "stage": "prod", **spec},
    }
    return story.create("approvals", body, as_user=as_user)


def counted_false(story: Story, approval: str, reasons: set[str], *, or_gone: bool = False) -> Any:
    """Wait until the Approval does not count for one of `reasons` (or, if allowed, is gone)."""

    def check(o: Any) -> bool:
        if o is None:
            return or_gone
        c = condition(o, "Counted")
        return c is not None and c.get("status") == "False" and c.get("reason") in reasons

    return wait_for_object(
        story.lister("approvals"),
        approval,
        check,
        what=f"approval {approval}: Counted=False ({' or '.join(sorted(reasons))})",
        timeout=30,
    )


# --- 2. approvals are bound to the release's content, not its name -----------------------------------


def test_an_approval_does_not_open_prod_for_a_recreated_release_with_other_content(story: Story):
    # Given shop-aaa (commit aaa…) approved by alice and running in prod
    given_prod(story, **gated())
    story.when_release("shop-aaa", label="aaa")
    story.when_approved("shop-aaa", "prod", name="shop-aaa-prod")
    story.then_condition("releases", "shop-aaa", "Ready")
    assert story.deployment_image("prod") == image_of("aaa")
    # When the release is deleted and re-created under the same name with other content (commit bbb…)
    delete(story, "releases", "shop-aaa")
    new = story.when_release("shop-aaa", label="bbb")
    # Then alice's old approval does not open prod for the new content: it waits for a new one
    rel = then_release_settles(
        story, "shop-aaa", {"AwaitingApproval", "Progressing"} | RELEASE_FINAL, uid=new["metadata"]["uid"]
    )
    assert phase(rel) == "AwaitingApproval", (
        f"re-created shop-aaa (commit bbb…) went on without a new approval: {status(rel).get('message')}"
    )
    assert story.deployment_image("prod") == image_of("aaa")
    # The old Approval was garbage-collected with its release, or is marked stale
    counted_false(story, "shop-aaa-prod", {"StaleApproval", "OtherRelease"}, or_gone=True)
    # And a new approval opens prod for the new content
    story.when_approved("shop-aaa", "prod", name="shop-aaa-prod-again", as_user="bob")
    rel = story.then_condition("releases", "shop-aaa", "Ready")
    assert story.deployment_image("prod") == image_of("bbb")
    assert stage_record(rel, "prod")["approvals"] == ["shop-aaa-prod-again"]
    assert status(rel)["approvedBy"] == "bob"


def test_kubectl_conveyor_approve_binds_the_approval_to_the_release_uid_and_digest(story: Story):
    given_prod(story, **gated())
    rel = story.when_release("shop-v1", label="v1")
    uid, digest = rel["metadata"]["uid"], rel["spec"]["digest"]
    story.then_release_phase("shop-v1", "AwaitingApproval")
    # Approvals bound to other content never count: another digest, another release object
    other = digest_of("x")
    approval_with(story, "by-bob-other-digest", "shop-v1", as_user="bob", releaseUID=uid, digest=other)
    approval_with(story, "by-dave-other-uid", "shop-v1", as_user="dave", releaseUID="0" * 8 + uid[8:])
    counted_false(story, "by-bob-other-digest", {"DigestMismatch"})
    counted_false(story, "by-dave-other-uid", {"OtherRelease"})
    assert phase(story.get("releases", "shop-v1")) == "AwaitingApproval"
    # When alice approves with the plugin
    out = plugin(story, "approve", "shop-v1", "--stage", "prod", user="alice")
    assert out.returncode == 0, out.stderr
    name = out.stdout.split()[0].split("/")[1]
    # Then her Approval names the release's uid and digest, and is owned by the release
    approval = story.get("approvals", name)
    assert approval["spec"].get("releaseUID") == uid, approval["spec"]
    assert approval["spec"].get("digest") == digest, approval["spec"]
    owners = approval["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Release", "shop-v1", uid)], owners
    rel = story.then_condition("releases", "shop-v1", "Ready")
    assert stage_record(rel, "prod")["approvals"] == [name]


# --- 3. a refused rollback is final ------------------------------------------------------------------


def test_a_refused_rollback_never_acts_later(story: Story):
    # Given prod has only ever verified v1
    given_prod(story, **gated())
    story.promote("shop-v1", label="v1")
    # When someone rolls prod back: refused, nothing older was ever verified
    story.when_rollback("too-early", verify=False)
    story.then_condition("rollbacks", "too-early", "RollbackBlocked", reason="NoPreviousRelease")
    # And later the next release is approved into prod
    story.when_release("shop-v2", label="v2")
    story.when_approved("shop-v2", "prod")
    # Then it is promoted: the refused rollback does not wake up and roll it back
    rel = then_release_settles(story, "shop-v2", RELEASE_FINAL)
    assert phase(rel) == "Succeeded", f"shop-v2 ended {phase(rel)}: {status(rel).get('message')}"
    assert not status(rel).get("vetoed")
    assert story.deployment_image("prod") == image_of("v2")
    rb = story.get("rollbacks", "too-early")
    assert status(rb)["phase"] == "Refused", status(rb)
    assert "patchedAt" not in status(rb)
    assert not status(story.get("pipelines", "shop")).get("vetoed")


# --- 4. a rollback that changes nothing vetoes nothing -------------------------------------------------


def test_a_rollback_to_what_already_runs_changes_nothing(story: Story):
    given_prod(story)
    story.promote("shop-v1", label="v1")
    story.promote("shop-v2", label="v2")
    # When someone rolls prod back to the release it already runs
    story.when_rollback("noop", toRelease="shop-v2", verify=False)
    rb = story.then_rollback_phase("noop", "Succeeded", timeout=30)
    # Then nothing changes: plan Nothing, no veto, no pin
    assert status(rb)["plan"]["action"] == "Nothing"
    v2 = story.get("releases", "shop-v2")
    assert not status(v2).get("vetoed"), f"the running release was vetoed by {status(v2).get('vetoedBy')}"
    assert "conveyor.dev/vetoed" not in (v2["metadata"].get("labels") or {})
    assert not status(story.get("pipelines", "shop")).get("vetoed")
    assert not pipeline_stage(story, "prod").get("pinnedBy")
    assert story.deployment_image("prod") == image_of("v2")
    # And re-releasing the same artifact goes through
    story.when_release("shop-v2-again", label="v2")
    rel = then_release_settles(story, "shop-v2-again", RELEASE_FINAL)
    assert phase(rel) == "Succeeded", f"shop-v2-again ended {phase(rel)}: {status(rel).get('message')}"


# --- 5. one rollback acts per stage --------------------------------------------------------------------


def test_two_rollbacks_of_one_stage_one_acts_the_other_is_refused(story: Story):
    given_prod(story)
    for label in ("v1", "v2", "v3"):
        story.promote(f"shop-{label}", label=label)
    before = generation(story)
    # When two people roll prod back at once, to different releases
    story.when_rollback("to-v1", toRelease="shop-v1", verify=False)
    story.when_rollback("to-v2", toRelease="shop-v2", verify=False, as_user="bob")
    # Then one acts and the other is refused, naming it
    try:
        items = wait_for_list(
            story.lister("rollbacks"),
            lambda items: len(items) == 2 and all(phase(i) in ROLLBACK_FINAL for i in items),
            what="both rollbacks settled",
            timeout=30,
        )
    except WaitTimeout as e:
        phases = {i["metadata"]["name"]: phase(i) for i in story.lister("rollbacks")()["items"]}
        raise AssertionError(
            f"{e}; phases {phases}; prod's Deployment generation went {before} -> {generation(story)} "
            f"and runs {story.deployment_image('prod')}"
        ) from e
    by_phase = {phase(i): i for i in items}
    assert sorted(by_phase) == ["Refused", "Succeeded"], {i["metadata"]["name"]: phase(i) for i in items}
    winner, loser = by_phase["Succeeded"], by_phase["Refused"]
    blocked = condition(loser, "RollbackBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "RollbackInProgress")
    assert winner["metadata"]["name"] in status(loser)["message"]
    assert "patchedAt" not in status(loser)
    target = winner["spec"]["toRelease"].removeprefix("shop-")
    assert story.deployment_image("prod") == image_of(target)
    settled = generation(story)
    # And nobody patches prod afterwards: a later pass (a refused probe) leaves the Deployment alone
    story.when_rollback("probe", toRelease="shop-ghost", verify=False)
    story.then_condition("rollbacks", "probe", "RollbackBlocked", reason="UnknownRelease")
    assert generation(story) == settled
    assert story.deployment_image("prod") == image_of(target)


# --- 6. one bad object never wedges a pipeline ---------------------------------------------------------


def test_a_non_approver_on_a_long_approver_list_does_not_wedge_the_pipeline(story: Story):
    users = ["alice", *(f"approver-{i:02d}.payments-team.example.com" for i in range(99))]
    given_prod(story, **gated(approvers={"users": users}))
    story.when_release("shop-v1", label="v1")
    story.then_release_phase("shop-v1", "AwaitingApproval")
    # When carol, who is not on the list of 100, approves — and then alice does
    story.when_approved("shop-v1", "prod", name="by-carol", as_user="carol")
    story.when_approved("shop-v1", "prod", name="by-alice", as_user="alice")
    # Then alice's approval opens prod
    rel = story.then_condition("releases", "shop-v1", "Ready", timeout=30)
    # And carol's is marked, with a message cut to fit
    approval = counted_false(story, "by-carol", {"NotAnApprover"})
    message = condition(approval, "Counted")["message"]
    assert "carol is not an approver" in message
    assert len(message) <= 1024
    record = next(a for a in status(rel)["approvals"] if a["name"] == "by-carol")
    assert record["verdict"] == "NotAnApprover"
    assert len(record["message"]) <= 1024
    # And new releases still get a status
    story.when_release("shop-v2", label="v2")
    story.then_release_phase("shop-v2", "AwaitingApproval", timeout=30)


# --- 7. what runs is shown even when its release is gone -----------------------------------------------


def test_deleting_a_release_mid_rollout_shows_what_runs_and_that_it_is_untracked(story: Story):
    given_prod(story)
    story.promote("shop-v1", label="v1")
    # When a release whose pods never get Ready is deleted mid-rollout
    story.when_release("shop-v2", label="v2", digest_prefix="dead")
    deployed_in_prod(story, "shop-v2")
    delete(story, "releases", "shop-v2")
    # Then the pipeline says what prod runs, and that no live release names it
    pipeline = story.then_condition(
        "pipelines", "shop", "Tracked", status="False", reason="UntrackedImage", timeout=30
    )
    prod = next(s for s in status(pipeline)["stages"] if s["name"] == "prod")
    running = prod.get("running") or {}
    assert running.get("image") == image_of("v2", "dead"), prod
    assert running.get("digest") == digest_of("v2", "dead"), prod
    assert prod["release"] == "shop-v1"  # still the last verified
    assert story.deployment_image("prod") == image_of("v2", "dead")


# --- 8. Jobs: unique per release object, and cleaned up ------------------------------------------------


def test_finished_jobs_are_deleted_after_their_result_is_recorded(story: Story):
    given_prod(story, migration=MIGRATION, smoke_test=SMOKE, retention={"finishedJobsSeconds": 2})
    rel = story.promote("shop-v1", label="v1")
    prod = stage_record(rel, "prod")
    assert (prod["migrationResult"], prod["smokeTestResult"]) == ("Succeeded", "Succeeded")
    # The finished Jobs go once their results are recorded (2 s later), and the record stays
    then_jobs_gone(story, "shop-v1", timeout=30)
    rel = story.get("releases", "shop-v1")
    assert phase(rel) == "Succeeded"
    prod = stage_record(rel, "prod")
    assert (prod["migrationResult"], prod["smokeTestResult"]) == ("Succeeded", "Succeeded")
    # And their names carried a tag of the release's uid
    tag = uid_tag(rel["metadata"]["uid"])
    assert (prod["migrationJob"], prod["smokeTestJob"]) == (
        f"shop-v1-prod-migrate-{tag}",
        f"shop-v1-prod-smoke-{tag}",
    )


def test_jobs_of_a_deleted_release_are_deleted(story: Story):
    given_prod(story, migration=MIGRATION, smoke_test=SMOKE)  # default finishedJobsSeconds: an hour
    story.promote("shop-v1", label="v1")
    assert len(release_jobs(story, "shop-v1")) == 2
    delete(story, "releases", "shop-v1")
    then_jobs_gone(story, "shop-v1", timeout=30)


def test_a_recreated_release_runs_its_own_jobs(story: Story):
    given_prod(story, migration=MIGRATION, smoke_test=SMOKE)
    story.promote("shop-aaa", label="aaa")
    delete(story, "releases", "shop-aaa")
    # When shop-aaa is re-created with other content
    new = story.when_release("shop-aaa", label="bbb")
    # Then it runs its own migration and smoke test (no name conflict with the old release's Jobs)
    rel = then_release_settles(story, "shop-aaa", RELEASE_FINAL, uid=new["metadata"]["uid"], timeout=45)
    assert phase(rel) == "Succeeded", f"re-created shop-aaa ended {phase(rel)}: {status(rel).get('message')}"
    migrate = f"shop-aaa-prod-migrate-{uid_tag(new['metadata']['uid'])}"
    assert stage_record(rel, "prod")["migrationJob"] == migrate
    job = story.batch.read_namespaced_job(migrate, story.stage_ns["prod"])
    assert job.spec.template.spec.containers[0].image == image_of("bbb")
    assert story.deployment_image("prod") == image_of("bbb")


# --- retention never deletes what runs -----------------------------------------------------------------


def test_retention_keeps_the_release_a_stage_runs_even_after_it_failed(story: Story):
    given_prod(story, smoke_test=SMOKE, retention={"keepReleases": 1}, **gated())
    story.promote("shop-v0", label="v0")
    story.promote("shop-v1", label="v1")
    # When v2's smoke test fails after its image was set: prod runs v2
    story.when_release("shop-v2", label="v2", digest_prefix="0bad")
    story.when_approved("shop-v2", "prod")
    story.then_condition("releases", "shop-v2", "Failed", reason="SmokeTestFailed")
    assert story.deployment_image("prod") == image_of("v2", "0bad")
    # And a newer release waits at the gate (so v2 is no longer the newest)
    story.when_release("shop-v3", label="v3")
    story.then_release_phase("shop-v3", "AwaitingApproval")
    # When someone rolls prod back
    story.when_rollback("undo", verify=False)
    rb = story.then_rollback_phase("undo", "Succeeded", timeout=30)
    # Then the rollback goes away from what runs (v2), to the last release verified there (v1)
    plan = status(rb)["plan"]
    assert (plan["fromRelease"], plan["toRelease"]) == ("shop-v2", "shop-v1"), plan
    assert story.get("releases", "shop-v2")  # retention kept it: it ran in prod
    assert not status(story.get("releases", "shop-v1")).get("vetoed")
    assert story.deployment_image("prod") == image_of("v1")


# --- rollouts that can never start ---------------------------------------------------------------------


def test_a_release_whose_deployment_is_missing_waits_without_migrating(story: Story):
    given_prod(story, deployments=False, migration=MIGRATION)
    # When a release arrives and prod has no Deployment
    story.when_release("shop-v1", label="v1")
    # Then it waits before the stage, and its migration does not run
    rel = story.then_release(
        "shop-v1",
        lambda o: phase(o) == "Waiting" or "does not exist" in (status(o or {}).get("message") or ""),
        "waiting, or a message that the Deployment does not exist",
        timeout=30,
    )
    assert phase(rel) == "Waiting", f"phase {phase(rel)}; prod's Jobs: {story.jobs('prod')}"
    assert condition(rel, "Ready")["reason"] == "DeploymentNotFound"
    assert story.jobs("prod") == []
    assert not stage_record(rel, "prod").get("startedAt")
    # When the Deployment appears, the release goes on by itself
    story.given_deployments(stages=["prod"])
    story.then_condition("releases", "shop-v1", "Ready", timeout=30)
    assert len(story.jobs("prod")) == 1


def test_a_deployment_deleted_mid_rollout_fails_at_the_rollout_deadline(story: Story):
    given_prod(story, rolloutDeadlineSeconds=8)
    story.promote("shop-v1", label="v1")
    story.when_release("shop-v2", label="v2", digest_prefix="dead")
    deployed_in_prod(story, "shop-v2")
    # When the Deployment is deleted mid-rollout
    story.apps.delete_namespaced_deployment("shop", story.stage_ns["prod"])
    # Then the release fails at its rollout deadline like any other rollout that does not finish
    rel = story.then_condition("releases", "shop-v2", "Failed", reason="RolloutTimedOut", timeout=30)
    prod = stage_record(rel, "prod")
    assert (ts(prod["finishedAt"]) - ts(prod["deployedAt"])).total_seconds() >= 8


# --- an approval counts when the release enters, not before --------------------------------------------


def test_an_approval_that_expires_while_the_release_waits_does_not_count(story: Story):
    given_prod(story, rolloutDeadlineSeconds=15, **gated(expiresAfterSeconds=6))
    # Given v1 is stuck rolling out in prod (until its 15 s deadline)
    story.when_release("shop-v1", label="v1", digest_prefix="dead")
    story.when_approved("shop-v1", "prod")
    deployed_in_prod(story, "shop-v1")
    # When v2 is approved while prod is busy, and the approval (6 s) expires before prod is free
    story.when_release("shop-v2", label="v2")
    story.when_approved("shop-v2", "prod", name="v2-by-bob", as_user="bob")
    story.then_condition("releases", "shop-v1", "Failed", reason="RolloutTimedOut", timeout=45)
    # Then v2 does not enter prod on the expired approval
    rel = then_release_settles(story, "shop-v2", {"AwaitingApproval", "Progressing"} | RELEASE_FINAL)
    assert phase(rel) == "AwaitingApproval", (
        f"shop-v2 entered prod ({phase(rel)}) on an approval that expired while it waited"
    )
    assert not stage_record(rel, "prod").get("startedAt")
    counted_false(story, "v2-by-bob", {"Expired"})
    assert story.deployment_image("prod") == image_of("v1", "dead")
    # And a fresh approval opens prod
    story.when_approved("shop-v2", "prod", name="v2-by-dave", as_user="dave")
    rel = story.then_condition("releases", "shop-v2", "Ready", timeout=30)
    assert stage_record(rel, "prod")["approvals"] == ["v2-by-dave"]


# --- found by a hostile review ------------------------------------------------------------------------


def test_a_rollback_after_the_operator_died_mid_promotion_rolls_away_from_what_runs(story: Story):
    # Given prod ran v1, then v2
    given_prod(story)
    story.promote("shop-v1", label="v1")
    story.promote("shop-v2", label="v2")
    # When v3's image is set in prod and the operator is SIGKILLed at that moment — perhaps before
    # it recorded the patch in v3's status
    story.when_release("shop-v3", label="v3", digest_prefix="dead")  # never Ready: stays in flight
    wait_for_object(
        story.apps.list_namespaced_deployment,
        "shop",
        lambda d: d is not None and d.spec.template.spec.containers[0].image == image_of("v3", "dead"),
        namespace=story.stage_ns["prod"],
        what="prod's Deployment patched to v3's image",
    )
    assert story.operator is not None
    story.operator.kill()
    # and on-call rolls prod back while the operator restarts
    story.when_rollback("undo", verify=False)
    story.given_operator()
    # Then the rollback rolls away from v3 — what runs — back to v2, and vetoes v3, not v2
    rb = story.then_rollback_phase("undo", "Succeeded")
    assert (status(rb)["plan"]["fromRelease"], status(rb)["plan"]["toRelease"]) == ("shop-v3", "shop-v2")
    assert story.deployment_image("prod") == image_of("v2")
    assert status(story.get("releases", "shop-v3")).get("vetoed") is True
    assert not status(story.get("releases", "shop-v2")).get("vetoed")


def test_an_image_changed_during_the_smoke_test_fails_the_stage(story: Story):
    # Given a smoke test that runs until told otherwise (its pod never finishes)
    never = {**SMOKE, "labels": {"conveyor.dev/simulate": "never-ready"}}
    given_prod(story, smoke_test=never, smokeTestDeadlineSeconds=300)
    story.when_release("shop-v1", label="v1")
    story.then_release(
        "shop-v1",
        lambda o: o is not None and stage_record(o, "prod").get("smokeTestJob"),
        "smoke test running",
    )
    # When someone sets another image while it runs
    story.kubectl(
        "set", "image", "deployment/shop", f"web={image_of('by-hand')}", "-n", story.stage_ns["prod"]
    )
    # Then the stage fails at once — what is verified must be what runs
    rel = story.then_condition("releases", "shop-v1", "Failed", reason="ImageChanged", timeout=30)
    assert stage_record(rel, "prod")["phase"] == "Failed"
    assert "another writer" in status(rel)["message"]


def test_a_deployment_belongs_to_the_first_pipeline_that_promotes_it(story: Story):
    # Given shop promoted v1 into prod's Deployment
    given_prod(story)
    story.promote("shop-v1", label="v1")
    # When a second pipeline targets the same Deployment and releases into it
    other = pipeline_dict("other", story.ns, stages=[prod_stage(story)])
    story.create("pipelines", other)
    story.when_release("other-v9", pipeline="other", label="v9")
    # Then it waits, and both it and its pipeline say whose Deployment that is; prod still runs v1
    rel = story.then_condition("releases", "other-v9", "Ready", status="False", reason="DeploymentClaimed")
    assert f"{story.ns}/shop" in status(rel)["message"]
    story.then_condition("pipelines", "other", "Ready", status="False", reason="DeploymentClaimed")
    assert story.deployment_image("prod") == image_of("v1")
