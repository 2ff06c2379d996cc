"""The hardening rules of the core, decided without a cluster: approvals bound to the content they
approved and judged as the release enters; rollbacks that act once, on what they were asked about;
what runs apart from what was verified; Jobs named per owner uid and cleaned up; one bad object never
wedging a pipeline; no decision across two clocks."""

from __future__ import annotations

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Phase, Release, ReleaseStatus
from conveyor.api.rollback import Rollback
from conveyor.core import release_step
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.plan import CreateJob, DeleteJob, OwnApproval, Plan, SetImage
from conveyor.core.promotion import reconcile
from conveyor.core.world import JobView
from support.builders import (
    REPO,
    T0,
    approval,
    deployment_view,
    digest_of,
    job,
    later,
    pipeline,
    release,
    retention_pass,
    rollback,
    verified_in,
    world,
)


def digest_short(label: str) -> str:
    return release(label).spec.commit[:7]


def image(label: str) -> str:
    return f"{REPO}@{digest_of(label)}"


def cond(status, ctype):
    return next(c for c in status.conditions if c.type == ctype)


def carry(releases: list[Release], plan: Plan) -> list[Release]:
    return [r.model_copy(update={"status": plan.releases.get(r.metadata.name, r.status)}) for r in releases]


def carry_rb(rb: Rollback, plan: Plan) -> Rollback:
    return rb.model_copy(update={"status": plan.rollbacks[rb.metadata.name]})


def with_status(r: Release, **update) -> Release:
    return r.model_copy(update={"status": r.status.model_copy(update=update)})


def prod_gate(**policy) -> Pipeline:
    prod = {"name": "prod", "namespace": "shop-prod", "requiresApproval": True}
    if policy:
        prod["approval"] = policy
    return pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}, prod])


def at_prod_door(name: str = "r1", created=T0, label: str | None = None) -> Release:
    r = release(name, created=created, label=label, status=verified_in("staging", at=1))
    return with_status(r, phase=Phase.AWAITING_APPROVAL, current_stage="prod", accepted_at=created)


def staged(label: str = "r1", name: str = "r1", **kw):
    return world(staging=deployment_view(image(label), release_name=name), **kw)


# --- approvals count only for the content approved, judged as the release enters


def test_an_approval_older_than_its_release_is_stale_and_does_not_open_the_gate():
    r = at_prod_door(created=later(100))  # re-created after the approval below
    old = approval("a1", "r1", "prod", created=later(50))
    plan = reconcile(prod_gate(), [r], [old], staged(), later(101))
    assert plan.releases["r1"].phase == Phase.AWAITING_APPROVAL
    assert cond(plan.approvals["a1"], "Counted").reason == "StaleApproval"
    assert plan.releases["r1"].approvals[0].verdict == "StaleApproval"
    assert not any(isinstance(a, OwnApproval) for a in plan.actions)


def test_a_plain_approval_in_the_same_second_as_its_release_cannot_prove_it_came_after():
    r = at_prod_door(created=later(100))
    same = approval("a1", "r1", "prod", created=later(100))  # one-second timestamps: no order
    plan = reconcile(prod_gate(), [r], [same], staged(), later(101))
    assert plan.releases["r1"].phase == Phase.AWAITING_APPROVAL
    assert cond(plan.approvals["a1"], "Counted").reason == "AmbiguousOrder"
    bound = same.model_copy(update={"spec": same.spec.model_copy(update={"release_uid": "uid-r1"})})
    plan = reconcile(prod_gate(), [r], [bound], staged(), later(101))
    assert plan.releases["r1"].phase == Phase.PROGRESSING  # naming the uid proves it


def test_an_approval_bound_to_another_uid_or_digest_does_not_count():
    r = at_prod_door()
    other_uid = approval("a1", "r1", "prod", created=later(5))
    other_uid = other_uid.model_copy(
        update={"spec": other_uid.spec.model_copy(update={"release_uid": "some-other-uid"})}
    )
    other_digest = approval("a2", "r1", "prod", created=later(5), approver="bob")
    other_digest = other_digest.model_copy(
        update={"spec": other_digest.spec.model_copy(update={"digest": digest_of("elsewhere")})}
    )
    plan = reconcile(prod_gate(), [r], [other_uid, other_digest], staged(), later(10))
    assert plan.releases["r1"].phase == Phase.AWAITING_APPROVAL
    assert cond(plan.approvals["a1"], "Counted").reason == "OtherRelease"
    assert cond(plan.approvals["a2"], "Counted").reason == "DigestMismatch"


def test_a_matching_approval_opens_the_gate_and_is_owned_by_its_release():
    r = at_prod_door()
    good = approval("a1", "r1", "prod", created=later(5))
    good = good.model_copy(
        update={"spec": good.spec.model_copy(update={"release_uid": "uid-r1", "digest": r.spec.digest})}
    )
    plan = reconcile(prod_gate(), [r], [good], staged(), later(10))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert OwnApproval("a1", "a1", "r1", "uid-r1") in plan.actions
    assert plan.approvals["a1"].seen_at == later(10)


def test_an_approval_that_expires_while_the_stage_is_busy_no_longer_counts():
    # r0 is rolling out in prod; r1 is approved, waits for the stage, and its approval expires meanwhile.
    p = prod_gate(expiresAfterSeconds=60)
    busy = release("r0", created=later(0), status=verified_in("staging", at=0))
    busy = with_status(busy, phase=Phase.PROGRESSING, accepted_at=later(0))
    busy.status.stages.append(
        busy.status.stages[0].model_copy(update={"name": "prod", "phase": "RollingOut"})
    )
    busy.status.stages[-1].verified_at = busy.status.stages[-1].finished_at = None
    r1 = at_prod_door(created=later(1), label="r1")
    a = approval("a1", "r1", "prod", created=later(2), seen=later(2))
    w = world(
        staging=deployment_view(image("r1"), release_name="r1"),
        prod=deployment_view(image("r0"), release_name="r0", rolled_out=False),
    )
    waiting = reconcile(p, [busy, r1], [a], w, later(10))
    assert waiting.releases["r1"].phase == Phase.WAITING
    assert cond(waiting.releases["r1"], "Ready").reason == "StageBusy"
    assert waiting.releases["r1"].stages[-1].approval is None  # nothing recorded before entering
    # r0 finishes after the approval expired: r1 does not enter on it.
    busy = busy.model_copy(update={"status": waiting.releases["r0"]})
    r1 = r1.model_copy(update={"status": waiting.releases["r1"]})
    w = world(
        staging=deployment_view(image("r1"), release_name="r1"),
        prod=deployment_view(image("r0"), release_name="r0"),
    )
    later_plan = reconcile(p, [busy, r1], [a], w, later(120))
    assert later_plan.releases["r0"].phase == Phase.SUCCEEDED
    assert later_plan.releases["r1"].phase == Phase.AWAITING_APPROVAL
    assert cond(later_plan.approvals["a1"], "Counted").reason == "Expired"


def test_a_huge_approver_list_and_a_non_approver_never_wedge_the_pipeline():
    p = prod_gate(approvers={"users": [f"approver-{i:03d}-with-a-long-name" for i in range(100)]})
    r = at_prod_door()
    carol = approval("by-carol", "r1", "prod", created=later(5), approver="carol")
    plan = reconcile(p, [r], [carol], staged(), later(10))
    message = cond(plan.approvals["by-carol"], "Counted").message
    assert cond(plan.approvals["by-carol"], "Counted").reason == "NotAnApprover"
    assert len(message) <= 1024
    assert message.endswith("…")
    assert len(plan.releases["r1"].approvals[0].message) <= 1024
    # Every status written validates under the models' (and so the CRD's) bounds.
    ReleaseStatus.model_validate(plan.releases["r1"].wire())


# --- rollbacks act once, on what they were asked about


def verified_v1_v2() -> list[Release]:
    v1 = release("v1", created=later(0), status=verified_in("staging", "prod", at=0))
    v2 = release("v2", created=later(10), status=verified_in("staging", "prod", at=20))
    return [with_status(v1, accepted_at=later(0)), with_status(v2, accepted_at=later(10))]


def prod_on(label: str, name: str, **kw):
    return world(prod=deployment_view(image(label), release_name=name), **kw)


def test_a_refused_rollback_is_final_and_never_acts_on_a_later_release():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    only = release("v1", created=later(0), status=verified_in("prod", at=0))
    rb = rollback("rb1", created=later(5))
    first = reconcile(p, [only], [], prod_on("v1", "v1"), later(6), rollbacks=[rb])
    assert first.rollbacks["rb1"].phase == "Refused"
    assert cond(first.rollbacks["rb1"], "RollbackBlocked").reason == "NoPreviousRelease"
    rb = carry_rb(rb, first)
    v2 = with_status(
        release("v2", created=later(30), status=verified_in("prod", at=30)), accepted_at=later(30)
    )
    again = reconcile(p, [only, v2], [], prod_on("v2", "v2"), later(40), rollbacks=[rb])
    assert "rb1" not in again.rollbacks  # terminal: never looked at again
    assert not any(isinstance(a, SetImage) for a in again.actions)
    assert not again.releases.get("v2", v2.status).vetoed


def test_a_blocked_rollback_whose_stage_moved_on_is_refused_for_good():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    v1 = with_status(release("v1", created=later(0), status=verified_in("prod", at=0)), accepted_at=later(0))
    v2 = with_status(
        release("v2", created=later(10), status=verified_in("prod", at=20)), accepted_at=later(10)
    )
    v2 = v2.model_copy(update={"spec": v2.spec.model_copy(update={"schema_change": "breaking"})})
    rb = rollback("rb1", created=later(30))
    first = reconcile(p, [v1, v2], [], prod_on("v2", "v2"), later(31), rollbacks=[rb])
    assert first.rollbacks["rb1"].phase == "Blocked"
    assert cond(first.rollbacks["rb1"], "RollbackBlocked").reason == "NoDownMigration"
    rb = carry_rb(rb, first)
    v3 = with_status(
        release("v3", created=later(40), status=verified_in("prod", at=40)), accepted_at=later(40)
    )
    fixed = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}], down_migration={"command": ["d"]})
    again = reconcile(fixed, [v1, v2, v3], [], prod_on("v3", "v3"), later(50), rollbacks=[rb])
    assert again.rollbacks["rb1"].phase == "Refused"
    assert cond(again.rollbacks["rb1"], "RollbackBlocked").reason == "StageMovedOn"
    assert not any(isinstance(a, SetImage | CreateJob) for a in again.actions)
    assert not again.releases.get("v3", v3.status).vetoed


def test_a_rollback_to_what_already_runs_vetoes_and_pins_nothing():
    p = pipeline()
    rs = verified_v1_v2()
    rb = rollback("noop", created=later(30), to="v2")
    plan = reconcile(p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[rb])
    assert plan.rollbacks["noop"].plan.action == "Nothing"
    assert plan.rollbacks["noop"].phase == "Succeeded"
    assert not plan.releases.get("v2", rs[1].status).vetoed
    assert plan.pipeline.vetoed == []
    assert plan.pipeline.stages[-1].pinned_by is None
    again = release("v2-again", created=later(40), label="v2")
    rb = carry_rb(rb, plan)
    plan = reconcile(p, [*rs, again], [], prod_on("v2", "v2"), later(41), rollbacks=[rb])
    assert plan.releases["v2-again"].phase != Phase.VETOED


def test_two_rollbacks_of_one_stage_the_second_is_refused():
    p = pipeline(
        stages=[{"name": "staging", "namespace": "shop-staging"}, {"name": "prod", "namespace": "shop-prod"}]
    )
    v0 = with_status(
        release("v0", created=later(-10), status=verified_in("staging", "prod", at=-10)),
        accepted_at=later(-10),
    )
    rs = [v0, *verified_v1_v2()]
    a = rollback("a", created=later(30), to="v1")
    b = rollback("b", created=later(30), to="v0")
    plan = reconcile(p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[a, b])
    phases = {n: s.phase for n, s in plan.rollbacks.items()}
    assert sorted(phases.values()) == ["Pending", "Refused"]
    refused = next(n for n, ph in phases.items() if ph == "Refused")
    assert cond(plan.rollbacks[refused], "RollbackBlocked").reason == "RollbackInProgress"
    acting = next(n for n in phases if n != refused)
    # The refusal did not release the stage: a release waiting for prod still waits.
    waiting = with_status(
        release("v3", created=later(29), status=verified_in("staging", at=29)),
        accepted_at=later(29),
        phase=Phase.WAITING,
        current_stage="prod",
    )
    w = world(
        staging=deployment_view(image("v3"), release_name="v3"),
        prod=deployment_view(image("v2"), release_name="v2"),
    )
    plan = reconcile(p, [*rs, waiting], [], w, later(31), rollbacks=[a, b])
    assert cond(plan.releases["v3"], "Ready").reason == "RollbackInProgress"
    a, b = carry_rb(a, plan), carry_rb(b, plan)
    plan = reconcile(p, rs, [], prod_on("v2", "v2"), later(32), rollbacks=[a, b])
    sets = [x for x in plan.actions if isinstance(x, SetImage)]
    assert {x.owner for x in sets} == {acting}


def test_a_rollback_stops_when_someone_else_changes_the_image():
    p = pipeline()
    rs = verified_v1_v2()
    rb = rollback("rb1", created=later(30), verify=False)
    plan = reconcile(p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[rb])
    rb = carry_rb(rb, plan)
    plan = reconcile(p, carry(rs, plan), [], prod_on("v2", "v2"), later(32), rollbacks=[rb])
    assert any(isinstance(a, SetImage) for a in plan.actions)
    rs, rb = carry(rs, plan), carry_rb(rb, plan)
    # Someone sets another image (keeping Conveyor's annotation): the rollback must not fight.
    hand = world(prod=deployment_view(image("by-hand"), release_name="v1"))
    plan = reconcile(p, rs, [], hand, later(33), rollbacks=[rb])
    assert plan.rollbacks["rb1"].phase == "Failed"
    assert cond(plan.rollbacks["rb1"], "Failed").reason == "ImageChanged"
    assert not any(isinstance(a, SetImage) for a in plan.actions)


def test_a_release_mid_rollout_fails_when_someone_else_changes_the_image():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}])
    rs = [release("r1")]
    rs = carry(rs, reconcile(p, rs, [], world(), later(0)))  # patched
    hand = world(staging=deployment_view(image("by-hand"), release_name="r1", rolled_out=False))
    plan = reconcile(p, rs, [], hand, later(1))
    assert plan.releases["r1"].phase == Phase.FAILED
    assert cond(plan.releases["r1"], "Failed").reason == "ImageChanged"
    assert not any(isinstance(a, SetImage) for a in plan.actions)


# --- what runs, apart from what was verified


def test_a_release_deleted_mid_rollout_leaves_an_untracked_image_that_the_pipeline_names():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}])
    v1 = with_status(
        release("v1", created=later(0), status=verified_in("staging", at=0)), accepted_at=later(0)
    )
    # v2 was deleted while rolling out: its image runs, no live release names it.
    w = world(staging=deployment_view(image("v2"), release_name="v2", rolled_out=False))
    plan = reconcile(p, [v1], [], w, later(10))
    state = plan.pipeline.stages[0]
    assert state.release == "v1"  # last verified
    assert state.running.release is None
    assert state.running.digest == digest_of("v2")
    assert state.running.tracked is False
    assert cond(plan.pipeline, "Tracked").reason == "UntrackedImage"
    assert plan.pipeline.summary == f"staging={digest_short('v1')}(runs:untracked)"
    assert "UntrackedImage" in [e.reason for e in plan.events]
    ok = reconcile(p, [v1], [], world(staging=deployment_view(image("v1"), release_name="v1")), later(11))
    assert ok.pipeline.stages[0].running.release == "v1"
    assert cond(ok.pipeline, "Tracked").status == "True"


def test_retention_keeps_the_release_a_stage_runs_even_when_it_failed_there():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={"retention": p.spec.retention.model_copy(update={"keep_releases": 1})}
            )
        }
    )
    v1 = with_status(release("v1", created=later(0), status=verified_in("prod", at=0)), accepted_at=later(0))
    failed = release("v2", created=later(10), status=verified_in("prod", at=10))
    failed.status.stages[0] = failed.status.stages[0].model_copy(
        update={"phase": "Failed", "verified_at": None}
    )
    failed = with_status(failed, phase=Phase.FAILED, accepted_at=later(10))
    newest = with_status(
        release("v3", created=later(20), target_stage="prod"), phase=Phase.CANCELLED, accepted_at=later(20)
    )
    plan = reconcile(p, [v1, failed, newest], [], prod_on("v2", "v2"), later(100))
    deleted = {a.release for a in plan.actions if type(a).__name__ == "DeleteRelease"}
    assert "v2" not in deleted


# --- Jobs: unique per owner uid, checked targets, cleaned up


def test_job_names_carry_the_owner_uid_so_a_recreated_release_never_collides():
    p = pipeline(migration={"command": ["m"]})
    first = reconcile(p, [release("r1")], [], world(), later(0))
    made = next(a for a in first.actions if isinstance(a, CreateJob))
    old_job = made.manifest["metadata"]["name"]
    assert old_job == job_name("r1", "uid-r1", "staging", JobKind.MIGRATION)
    assert made.manifest["spec"]["ttlSecondsAfterFinished"] > 0
    recreated = release("r1").model_copy(
        update={"metadata": release("r1").metadata.model_copy(update={"uid": "zz9"})}
    )
    again = reconcile(p, [recreated], [], world(jobs={old_job: job(old_job, complete=True)}), later(5))
    new = next(a for a in again.actions if isinstance(a, CreateJob))
    assert new.manifest["metadata"]["name"] != old_job
    assert again.releases["r1"].phase == Phase.PROGRESSING


def test_a_missing_target_keeps_the_migration_from_running():
    p = pipeline(migration={"command": ["m"]})
    w = world()
    w.stages["staging"].deployments["shop"] = None
    plan = reconcile(p, [release("r1")], [], w, later(0))
    assert not any(isinstance(a, CreateJob) for a in plan.actions)
    assert plan.releases["r1"].phase == Phase.WAITING
    assert cond(plan.releases["r1"], "Ready").reason == "DeploymentNotFound"
    assert plan.releases["r1"].stages[0].started_at is None


def test_a_deployment_deleted_mid_rollout_fails_at_the_stage_deadline():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging", "rolloutDeadlineSeconds": 30}])
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    gone = world()
    gone.stages["staging"].deployments["shop"] = None
    waiting = reconcile(p, rs, [], gone, later(10))
    assert waiting.releases["r1"].phase == Phase.PROGRESSING
    assert waiting.requeue_after is not None
    assert waiting.requeue_after <= 20
    failed = reconcile(p, rs, [], gone, later(31))
    assert failed.releases["r1"].phase == Phase.FAILED
    assert cond(failed.releases["r1"], "Failed").reason == "RolloutTimedOut"


def test_finished_jobs_go_after_the_ttl_and_orphans_at_once():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}], smoke_test={"command": ["s"]})
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={"retention": p.spec.retention.model_copy(update={"finished_jobs_seconds": 60})}
            )
        }
    )
    smoke = job_name("r1", "uid-r1", "staging", JobKind.SMOKE_TEST)
    r1 = release("r1", status=verified_in("staging", at=0))
    r1.status.stages[0].smoke_test_job = smoke
    r1 = with_status(r1, accepted_at=later(0))
    orphan = job_name("gone", "uid-gone", "staging", JobKind.MIGRATION)
    jobs = {
        smoke: JobView(name=smoke, complete=True, failed=False, release_uid="uid-r1"),
        orphan: JobView(name=orphan, complete=False, failed=False, release_uid="uid-gone"),
    }
    w = world(staging=deployment_view(image("r1"), release_name="r1"), jobs=jobs)
    soon = reconcile(p, [r1], [], w, later(30))
    assert [a.name for a in soon.actions if isinstance(a, DeleteJob)] == [orphan]
    assert soon.requeue_after is not None
    assert soon.requeue_after <= 31.5
    due = reconcile(p, [r1], [], w, later(62))
    assert sorted(a.name for a in due.actions if isinstance(a, DeleteJob)) == sorted([orphan, smoke])


# --- one bad object, two clocks


def test_a_release_whose_step_raises_is_named_and_the_others_go_on(monkeypatch):
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}])
    real = release_step.ReleaseStep.run

    def run(self):
        if self.name == "bad":
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(release_step.ReleaseStep, "run", run)
    bad, good = release("bad", created=later(0)), release("good", created=later(1))
    plan = reconcile(p, [bad, good], [], world(), later(2))
    assert cond(plan.pipeline, "Reconciled").reason == "ReconcileFailed"
    assert "release bad: RuntimeError: boom" in cond(plan.pipeline, "Reconciled").message
    assert plan.releases["good"].phase == Phase.PROGRESSING


def test_pins_compare_the_operators_own_clock_only():
    # The API server's clock runs an hour ahead: a release it stamps "later" than the rollback's end
    # was still accepted by Conveyor before it — and stays out of the pinned stage.
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    rs = verified_v1_v2()
    done = {
        "phase": "Succeeded",
        "plannedAt": later(30).isoformat(),
        "patchedAt": later(30).isoformat(),
        "finishedAt": later(32).isoformat(),
        "plan": {
            "action": "ImageOnly", "reason": "x", "stage": "prod", "namespace": "shop-prod",
            "fromRelease": "v2", "fromCommit": rs[1].spec.commit, "fromDigest": rs[1].spec.digest,
            "toRelease": "v1", "toCommit": rs[0].spec.commit, "toDigest": rs[0].spec.digest,
        },
    }  # fmt: skip
    rb = rollback("rb1", created=later(30), status=done)
    skewed = with_status(release("v3", created=later(3600), target_stage="prod"), accepted_at=later(31))
    fresh = with_status(release("v4", created=later(3700), target_stage="prod"), accepted_at=later(40))
    plan = reconcile(p, [*rs, skewed, fresh], [], prod_on("v1", "v1"), later(41), rollbacks=[rb])
    assert plan.releases["v3"].phase == Phase.SUPERSEDED
    assert cond(plan.releases["v3"], "Ready").reason == "PinnedByRollback"
    assert plan.releases["v4"].phase == Phase.PROGRESSING


# --- found by a hostile review: the world's word on what runs, same artifacts, late writers, bytes


def test_a_rollback_rolls_away_from_what_runs_even_when_its_promotion_was_never_recorded():
    # The operator was killed right after patching v3's image: v3's status records nothing.
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    rs = verified_v1_v2()
    v3 = with_status(release("v3", created=later(30), target_stage="prod"), accepted_at=later(30))
    rb = rollback("rb1", created=later(40))
    plan = reconcile(p, [*rs, v3], [], prod_on("v3", "v3"), later(41), rollbacks=[rb])
    st = plan.rollbacks["rb1"]
    assert (st.plan.from_release, st.plan.to_release) == ("v3", "v2")


def test_a_migration_that_ran_after_what_runs_is_still_what_a_rollback_undoes():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}], down_migration={"command": ["d"]})
    rs = verified_v1_v2()
    failed = release("v3", created=later(30), status=verified_in("prod", at=30, deployed=False))
    failed.status.stages[0] = failed.status.stages[0].model_copy(
        update={"phase": "Failed", "verified_at": None, "migration_job": "v3-prod-migrate-uid-v3"}
    )
    failed = with_status(failed, phase=Phase.FAILED, accepted_at=later(30))
    failed = failed.model_copy(update={"spec": failed.spec.model_copy(update={"schema_change": "breaking"})})
    plan = reconcile(p, [*rs, failed], [], prod_on("v2", "v2"), later(41), rollbacks=[rollback("rb1")])
    assert plan.rollbacks["rb1"].plan.from_release == "v3"
    assert plan.rollbacks["rb1"].plan.action == "DownMigrationThenImage"


def test_a_rollback_to_the_same_artifact_under_another_name_is_nothing_and_vetoes_nothing():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    a = with_status(release("a", created=later(0), status=verified_in("prod", at=0)), accepted_at=later(0))
    b = with_status(release("b", created=later(10), status=verified_in("prod", at=10)), accepted_at=later(10))
    c = release("c", created=later(20), label="a", status=verified_in("prod", at=20))  # a, re-released
    c = with_status(c, accepted_at=later(20))
    plan = reconcile(p, [a, b, c], [], prod_on("a", "c"), later(30), rollbacks=[rollback("rb", to="a")])
    assert plan.rollbacks["rb"].plan.action == "Nothing"
    assert plan.pipeline.vetoed == []


def test_an_image_changed_during_the_smoke_test_fails_the_stage_instead_of_verifying_it():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}], smoke_test={"command": ["s"]})
    rs = [release("r1")]
    rs = carry(rs, reconcile(p, rs, [], world(), later(0)))
    done = world(staging=deployment_view(image("r1"), release_name="r1"))
    rs = carry(rs, reconcile(p, rs, [], done, later(1)))  # rolled out; smoke test created
    smoke = job_name("r1", "uid-r1", "staging", JobKind.SMOKE_TEST)
    hand = world(
        staging=deployment_view(image("by-hand"), release_name="r1"),
        jobs={smoke: JobView(name=smoke, complete=True, failed=False, release_uid="uid-r1")},
    )
    plan = reconcile(p, rs, [], hand, later(2))
    assert plan.releases["r1"].phase == Phase.FAILED
    assert cond(plan.releases["r1"], "Failed").reason == "ImageChanged"


def test_retention_keeps_every_release_whose_image_some_target_runs():
    p = pipeline(
        stages=[{"name": "prod", "namespace": "shop-prod"}],
        targets=[{"deployment": "shop", "container": "web"}, {"deployment": "api", "container": "web"}],
    )
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={"retention": p.spec.retention.model_copy(update={"keep_releases": 1})}
            )
        }
    )
    rs = [
        with_status(release(n, created=later(i), status=verified_in("prod", at=i)), accepted_at=later(i))
        for i, n in enumerate(["r0", "r1", "r2", "r3"])
    ]
    w = world(prod=deployment_view(image("r3"), release_name="r3"))
    w.stages["prod"].deployments["api"] = deployment_view(image("r1"), release_name="r1", name="api")
    plan = retention_pass(p, rs, [], w, later(100))
    deleted = {a.release for a in plan.actions if type(a).__name__ == "DeleteRelease"}
    assert "r1" not in deleted
    assert "r0" in deleted


def test_event_messages_are_cut_in_bytes_never_inside_a_character():
    from conveyor.core.conditions import cut_bytes

    cut = cut_bytes("💥" * 1024)
    assert len(cut.encode()) <= 1024
    assert cut.endswith("…")
    assert cut_bytes("short") == "short"


def test_a_breaking_change_already_undone_by_a_rollback_does_not_block_the_next_rollback():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}], down_migration={"command": ["d"]})
    v1 = with_status(release("v1", created=later(0), status=verified_in("prod", at=0)), accepted_at=later(0))
    v2 = release("v2", created=later(10), status=verified_in("prod", at=10))  # breaking, rolled back
    v2 = with_status(v2, accepted_at=later(10), vetoed=True, vetoed_by="rb1")
    v3 = with_status(
        release("v3", created=later(30), status=verified_in("prod", at=30)), accepted_at=later(30)
    )
    v2 = v2.model_copy(update={"spec": v2.spec.model_copy(update={"schema_change": "breaking"})})
    v3 = v3.model_copy(update={"spec": v3.spec.model_copy(update={"schema_change": "breaking"})})
    plan = reconcile(p, [v1, v2, v3], [], prod_on("v3", "v3"), later(40), rollbacks=[rollback("rb2")])
    st = plan.rollbacks["rb2"]
    assert (st.plan.action, st.plan.from_release, st.plan.to_release) == (
        "DownMigrationThenImage",
        "v3",
        "v1",
    )


def test_a_deployment_another_pipeline_promotes_is_not_this_ones_to_touch():
    from dataclasses import replace

    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}])
    w = world()
    dep = w.stages["staging"].deployments["shop"]
    assert dep is not None
    w.stages["staging"].deployments["shop"] = replace(dep, pipeline_annotation="apps/other")
    plan = reconcile(p, [release("r1")], [], w, later(0))
    assert not any(isinstance(a, SetImage) for a in plan.actions)
    assert plan.releases["r1"].phase == Phase.WAITING
    assert cond(plan.releases["r1"], "Ready").reason == "DeploymentClaimed"
    assert cond(plan.pipeline, "Ready").reason == "DeploymentClaimed"
    assert "apps/other" in cond(plan.pipeline, "Ready").message


def test_an_object_the_shell_could_not_read_is_named_and_the_others_go_on():
    p = pipeline(stages=[{"name": "staging", "namespace": "shop-staging"}])
    invalid = ["Release huge does not validate (see the operator log); it is skipped"]
    plan = reconcile(p, [release("r1")], [], world(), later(0), invalid=invalid)
    assert cond(plan.pipeline, "Reconciled").status == "False"
    assert "Release huge does not validate" in cond(plan.pipeline, "Reconciled").message
    assert plan.releases["r1"].phase == Phase.PROGRESSING


def test_owning_an_approval_keeps_the_owners_it_already_had():
    r = at_prod_door()
    a = approval("a1", "r1", "prod", created=later(5))
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "review", "uid": "cm-uid"}
    a = a.model_copy(update={"metadata": a.metadata.model_copy(update={"owner_references": [other]})})
    plan = reconcile(prod_gate(), [r], [a], staged(), later(10))
    own = next(x for x in plan.actions if isinstance(x, OwnApproval))
    assert own.others == (other,)
    assert (own.release, own.release_uid) == ("r1", "uid-r1")
