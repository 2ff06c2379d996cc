"""Failures the model of the core (test_core_model.py) found, each kept as a short story (issue #10).

Each story drives the pure core through the simulated cluster (tests/support/sim.py), asserts what
the hardening design says must happen, and checks the invariant the model caught it with. Each
failed on the core before the hardening.
"""

from __future__ import annotations

from typing import Any

from support.builders import REPO, digest_of
from support.invariants import Invariants
from support.sim import SimCluster


def holds(sim: SimCluster, *invariants: str) -> None:
    """The named invariants held over every pass so far."""
    Invariants(sim, enabled=set(invariants)).check()


def phase(sim: SimCluster, plural: str, name: str) -> str | None:
    return sim.status(plural, name).get("phase")


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), {})


def stage_state(sim: SimCluster, stage: str) -> dict[str, Any]:
    return next(s for s in sim.status("pipelines", "shop").get("stages", []) if s["name"] == stage)


def to_production(sim: SimCluster, name: str, *, artifact: str | None = None) -> None:
    """CI releases `name`; it is verified in staging; alice approves it; it is verified in prod."""
    sim.create_release(name, artifact=artifact)
    sim.settle()
    sim.create_approval(f"{name}-prod", name, "prod", user="alice", bound=True)
    sim.settle()
    assert phase(sim, "releases", name) == "Succeeded"


def image(artifact: str) -> str:
    return f"{REPO}@{digest_of(artifact)}"


# --- rollbacks --------------------------------------------------------------------------------


def test_a_refused_rollback_stays_refused_when_the_stage_changes_later():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_rollback("rb1", stage="staging")  # nothing ever ran there: nothing to roll back
    sim.reconcile()
    sim.create_release("r1", target_stage="staging")
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Refused"
    assert sim.image_of("shop-staging", "shop", "web") == image("r1")
    assert not sim.status("releases", "r1").get("vetoed")
    holds(sim, "final-rollbacks")


def test_rolling_back_to_what_the_stage_already_runs_vetoes_nothing():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.settle()
    sim.create_rollback("rb1", stage="staging", to_release="r1")
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Succeeded"
    assert not sim.status("releases", "r1").get("vetoed")
    assert "conveyor.dev/vetoed" not in sim.releases["r1"]["metadata"].get("labels", {})
    assert sim.status("pipelines", "shop").get("vetoed", []) == []
    assert stage_state(sim, "staging").get("pinnedBy") is None
    # Re-releasing the same artifact afterwards ends Succeeded, not Vetoed.
    sim.create_release("r2", artifact="a1", target_stage="staging")
    sim.settle()
    assert phase(sim, "releases", "r2") == "Succeeded"
    holds(sim, "noop-rollbacks")


# --- what runs --------------------------------------------------------------------------------


def test_the_pipeline_says_what_runs_after_an_image_is_set_by_hand():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", target_stage="staging")
    sim.settle()
    sim.set_image_by_hand("shop-staging", image("hand-built"))
    sim.reconcile()
    staging = stage_state(sim, "staging")
    assert staging["release"] == "r1"  # still the last one verified there
    assert staging["running"]["image"] == image("hand-built")
    assert staging["running"].get("release") in (None, "")
    tracked = condition(sim.status("pipelines", "shop"), "Tracked")
    assert (tracked.get("status"), tracked.get("reason")) == ("False", "UntrackedImage")
    holds(sim, "stage-truth", "tracked")


def test_the_pipeline_says_prod_runs_the_release_that_failed_there():
    sim = SimCluster(migration=False, smoke_test=False)
    to_production(sim, "r1")
    sim.create_release("r2")
    sim.settle()
    sim.create_approval("r2-prod", "r2", "prod", user="alice", bound=True)
    sim.reconcile()  # r2 enters prod and sets its image
    sim.rollout("shop-prod", "fail")  # ProgressDeadlineExceeded: r2 fails, onFailure hold
    sim.reconcile()
    assert phase(sim, "releases", "r2") == "Failed"
    prod = stage_state(sim, "prod")
    assert prod["release"] == "r1"  # last verified
    assert prod["running"]["release"] == "r2"  # what the Deployment runs
    holds(sim, "stage-truth")


# --- approvals --------------------------------------------------------------------------------


def approval_verdict(sim: SimCluster, release: str, approval: str) -> str | None:
    records = sim.status("releases", release).get("approvals", [])
    return next((a.get("verdict") for a in records if a["name"] == approval), None)


def test_an_approval_created_before_its_release_does_not_count():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_approval("r1-prod", "r1", "prod", user="alice")  # no release r1 yet
    sim.tick(1)
    sim.create_release("r1")
    sim.settle()
    assert phase(sim, "releases", "r1") == "AwaitingApproval"
    assert sim.image_of("shop-prod", "shop", "web") != image("r1")
    assert approval_verdict(sim, "r1", "r1-prod") == "StaleApproval"
    counted = condition(sim.status("approvals", "r1-prod"), "Counted")
    assert (counted.get("status"), counted.get("reason")) == ("False", "StaleApproval")
    holds(sim, "gate", "released-digests")


def test_an_approval_of_a_deleted_release_does_not_count_for_a_new_one_of_the_same_name():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="good")
    sim.settle()
    sim.create_approval("r1-prod", "r1", "prod", user="alice")  # a plain `kubectl create`: no uid, no owner
    sim.delete("releases", "r1")  # before the operator saw the approval
    sim.tick(1)
    sim.create_release("r1", artifact="other")  # the same name, another artifact
    sim.settle()
    assert sim.image_of("shop-prod", "shop", "web") != image("other")
    assert phase(sim, "releases", "r1") == "AwaitingApproval"
    holds(sim, "gate", "released-digests")


def test_of_two_rollbacks_of_one_stage_only_the_first_acts():
    sim = SimCluster(migration=False, smoke_test=False)
    to_production(sim, "r1")
    to_production(sim, "r2")
    sim.create_rollback("rb1", stage="prod", user="alice")
    sim.create_rollback("rb2", stage="prod", user="bob")  # the same second: both see r2 running
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Succeeded"
    assert phase(sim, "rollbacks", "rb2") == "Refused"
    blocked = condition(sim.status("rollbacks", "rb2"), "RollbackBlocked")
    assert blocked.get("reason") == "RollbackInProgress"
    assert "rb1" in blocked.get("message", "")
    assert sim.image_of("shop-prod", "shop", "web") == image("r1")
    holds(sim, "one-at-a-time", "no-fights")


# --- Deployments and Jobs ---------------------------------------------------------------------


def test_a_release_whose_image_is_changed_mid_rollout_fails_instead_of_fighting():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", target_stage="staging")
    sim.reconcile()  # r1 sets staging's image; the rollout has not finished
    sim.set_image_by_hand("shop-staging", image("hotfix"))
    sim.reconcile()
    assert sim.image_of("shop-staging", "shop", "web") == image("hotfix")
    assert phase(sim, "releases", "r1") == "Failed"
    assert condition(sim.status("releases", "r1"), "Failed").get("reason") == "ImageChanged"
    holds(sim, "no-fights")


def test_a_re_created_release_runs_its_own_jobs():
    sim = SimCluster(migration=True, smoke_test=True)
    sim.create_release("r1", artifact="first", target_stage="staging")
    sim.settle()
    sim.delete("releases", "r1")  # its finished Jobs stay in shop-staging
    sim.create_release("r1", artifact="second", target_stage="staging")
    sim.settle()
    assert phase(sim, "releases", "r1") == "Succeeded"
    assert sim.image_of("shop-staging", "shop", "web") == image("second")
    holds(sim, "job-names-unique", "migrations-once")


# --- approval expiry --------------------------------------------------------------------------


def patient_stages(expires: int = 300) -> list[dict[str, Any]]:
    """Rollouts may take an hour; prod approvals expire after `expires` seconds."""
    return [
        {"name": "staging", "namespace": "shop-staging", "rolloutDeadlineSeconds": 3600},
        {
            "name": "prod",
            "namespace": "shop-prod",
            "requiresApproval": True,
            "rolloutDeadlineSeconds": 3600,
            "approval": {"approvers": {"groups": ["conveyor:approvers"]}, "expiresAfterSeconds": expires},
        },
    ]


def test_an_approval_expires_by_the_time_conveyor_saw_it_whatever_the_clock_skew():
    sim = SimCluster(stages=patient_stages(300), migration=False, smoke_test=False, skew_seconds=-90.5)
    sim.create_release("r1")
    sim.reconcile()  # r1 rolls out in staging (slowly)
    sim.create_approval("r1-prod", "r1", "prod", user="alice", bound=True)
    sim.reconcile()  # Conveyor sees the approval now
    sim.tick(350)  # older than 300 s by any clock
    sim.settle()
    assert phase(sim, "releases", "r1") == "AwaitingApproval"
    assert sim.image_of("shop-prod", "shop", "web") != image("r1")
    assert approval_verdict(sim, "r1", "r1-prod") == "Expired"
    holds(sim, "gate", "released-digests")


def test_an_approval_that_expires_while_the_stage_is_busy_no_longer_counts():
    sim = SimCluster(stages=patient_stages(300), migration=False, smoke_test=False)
    sim.create_release("r1")
    sim.settle()
    sim.create_approval("r1-prod", "r1", "prod", user="alice", bound=True)
    sim.reconcile()  # r1 enters prod; its rollout stalls (the deadline is an hour)
    sim.rollout("shop-prod", "stall")
    sim.create_release("r2")
    sim.reconcile()
    sim.rollout("shop-staging")
    sim.reconcile()  # r2 is verified in staging, at prod's door
    sim.create_approval("r2-prod", "r2", "prod", user="bob", bound=True)
    sim.reconcile()  # r2's gate is open, but prod is busy: r2 waits
    assert phase(sim, "releases", "r2") == "Waiting"
    sim.tick(400)  # r2's approval expires while it waits
    sim.rollout("shop-prod", "complete")
    sim.settle()
    assert phase(sim, "releases", "r1") == "Succeeded"
    assert phase(sim, "releases", "r2") == "AwaitingApproval"
    assert approval_verdict(sim, "r2", "r2-prod") == "Expired"
    assert sim.image_of("shop-prod", "shop", "web") == image("r1")
    holds(sim, "gate", "released-digests")


# --- retention --------------------------------------------------------------------------------


def test_retention_keeps_the_release_a_stage_runs_even_one_that_failed_there():
    sim = SimCluster(migration=False, smoke_test=False, keep_releases=1)
    to_production(sim, "r1")
    sim.create_release("r2")
    sim.settle()
    sim.create_approval("r2-prod", "r2", "prod", user="alice", bound=True)
    sim.reconcile()  # r2 sets prod's image...
    sim.rollout("shop-prod", "fail")
    sim.reconcile()  # ...and fails there: prod runs r2 (onFailure hold)
    for newer in ("r3", "r4"):  # newer releases through staging push r2 past keepReleases
        sim.create_release(newer, target_stage="staging")
        sim.reconcile()
        sim.rollout("shop-staging")
        sim.reconcile()
    assert sim.image_of("shop-prod", "shop", "web") == image("r2")
    assert "r2" in sim.releases
    holds(sim, "retention")


# --- reading a cache (the watches lag) --------------------------------------------------------


def test_a_rollback_deleted_before_the_watch_says_so_is_announced_once():
    """The cache still lists a Rollback its user deleted: the first pass decides it (Refused), and its
    status write meets a 404 — so nothing is announced for it (it is gone), and the overlay hides the
    object until the watch delivers the deletion; before, every pass until then decided and
    announced it again."""
    sim = SimCluster(migration=False, smoke_test=False, watch_lag=True)
    sim.create_rollback("rb1")  # nothing ever ran anywhere: Refused
    sim.deliver()
    sim.delete("rollbacks", "rb1")  # not delivered yet
    sim.reconcile()
    sim.reconcile()
    assert [e.reason for e in sim.events if e.name == "rb1"] == []
    holds(sim, "events-once", "final-rollbacks")


def test_a_status_computed_for_a_deleted_release_never_lands_on_its_successor_of_the_same_name():
    """r1 is verified in staging; CI deletes it and creates r1 again with another artifact; the watch
    has not delivered either change. The pass decides for the r1 it cached and merge-patches the
    status by name: the API server applies it to the new r1, which now says it was verified in
    staging — a digest that never ran there, one approval away from prod.

    Before the cache the same race had the width of one pass (LIST, then PATCH); a lagging watch
    widens it to the lag. A uid in a status merge patch is ignored by the API server, but a
    resourceVersion is a precondition it checks (409, verified on v1.36): every status write now
    carries the version the pass read, so this one is refused and the pass retried on fresh data."""
    sim = SimCluster(migration=False, smoke_test=False, watch_lag=True)
    sim.create_release("r1", artifact="a1")
    sim.deliver()
    sim.reconcile()  # r1 enters staging and sets its image
    sim.deliver()
    sim.rollout("shop-staging")
    sim.deliver("deployments")
    sim.delete("releases", "r1")
    sim.create_release("r1", artifact="a2")  # neither change delivered yet
    sim.tick(1)
    sim.reconcile()
    staging = next((s for s in sim.status("releases", "r1").get("stages", []) if s["name"] == "staging"), {})
    assert staging.get("phase") != "Verified", "the new r1 inherited the deleted r1's verification"
    holds(sim, "right-object")


def test_a_deployment_applied_again_but_not_yet_delivered_is_no_timeout():
    """r1 rolls out in staging; its Deployment is deleted and applied again; the watch has not
    delivered the new one when the deadline comes. Judged on the cache, r1 failed RolloutTimedOut
    while its Deployment existed and ran its image; now the core asks for live reads first."""
    sim = SimCluster(migration=False, smoke_test=False, watch_lag=True)
    sim.create_release("r1", artifact="a1")
    sim.deliver()
    sim.reconcile()  # r1 enters staging and sets its image
    sim.delete_deployments("shop-staging")
    sim.deliver()
    sim.reconcile()  # blocked: DeploymentNotFound
    sim.tick(100)
    sim.restore_deployments("shop-staging")
    sim.tick(30)  # past the 120 s deadline; the new Deployment not delivered yet
    sim.reconcile()
    assert phase(sim, "releases", "r1") != "Failed"
    holds(sim, "fair-verdicts")


def test_an_image_set_by_hand_and_back_before_the_watch_delivers_it_is_no_image_changed():
    """r1 rolled out in staging and smoke-tests there. Someone sets another image by hand and then
    r1's image back; the cache has the first change, not the second. The pass failed r1
    ImageChanged on what only the cache said, while the stage ran r1's image; now ImageChanged
    (releases' and rollbacks') is judged, like the deadlines, on live reads only."""
    sim = SimCluster(migration=False, smoke_test=True, watch_lag=True)
    sim.create_release("r1", artifact="a1")
    sim.deliver()
    sim.reconcile()
    sim.rollout("shop-staging")
    sim.deliver()
    sim.reconcile()  # rolled out; the smoke test runs
    sim.deliver()
    sim.set_image_by_hand("shop-staging", image("hand-built"))
    sim.deliver("deployments")
    sim.set_image_by_hand("shop-staging", image("a1"))  # back, not delivered yet
    sim.reconcile()
    assert phase(sim, "releases", "r1") != "Failed"
    holds(sim, "fair-verdicts")


def test_a_pass_sees_the_status_the_orphan_approval_handler_wrote():
    """An Approval names a release that does not exist yet: the approval handler writes its status
    (UnknownRelease). CI creates the release; the pass reads the Approval from the cache, which has
    not delivered the handler's write. The handler's writes bypassed the overlay, so the pass
    computed its merge patch from the status before them (a field the pass left as it read it kept
    the handler's value); now every Conveyor status write goes through the overlay."""
    sim = SimCluster(migration=False, smoke_test=False, watch_lag=True)
    sim.create_approval("r1-staging", "r1", "staging", user="alice")
    sim.deliver()  # the handler: no release r1, UnknownRelease (its write not delivered)
    sim.create_release("r1", artifact="a0")
    sim.deliver("releases")
    sim.reconcile()
    holds(sim, "fresh-writes")


def test_a_rollback_never_acts_on_a_namesake_of_the_release_it_planned_for():
    """rb1 plans to put staging back on r1 (verified there), and the operator dies before acting on
    it. CI deletes r1 and creates r1 again with another artifact. The rollback acted on the release
    that had the name now: it set staging to a digest never verified there (and would have vetoed
    a namesake of the release it rolled away from). Now a release is the planned one only with the
    plan's digest; else the rollback fails (UnknownRelease). make fuzz found it (released-digests)."""
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.settle()
    sim.create_release("r2", artifact="a2", target_stage="staging")
    sim.settle()
    sim.create_rollback("rb1", stage="staging")
    sim.reconcile(crash_after=1)  # the plan is recorded; the operator dies before acting on it
    assert sim.status("rollbacks", "rb1")["plan"]["toRelease"] == "r1"
    sim.delete("releases", "r1")
    sim.create_release("r1", artifact="a3", target_stage="staging")
    sim.reconcile()
    assert phase(sim, "rollbacks", "rb1") == "Failed"
    assert condition(sim.status("rollbacks", "rb1"), "Failed").get("reason") == "UnknownRelease"
    holds(sim, "released-digests")


def test_a_rollback_decision_a_crash_kept_from_being_recorded_binds_nothing():
    """A pass refuses rb1 (staging only ever ran r1) while r2 enters staging, and dies before
    recording the refusal. After the restart staging runs r2: rb1 rolls it back to r1. The model's
    final-rollbacks once held rb1 to the unrecorded plan (from r1) and cried foul: only a recorded
    plan binds a rollback."""
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.settle()
    sim.create_release("r2", artifact="a2", target_stage="staging")
    sim.create_rollback("rb1", stage="staging", verify=False)
    sim.reconcile(crash_after=0)  # r2's image is set; rb1's refusal is never written
    assert sim.image_of("shop-staging", "shop", "web") == image("a2")
    assert phase(sim, "rollbacks", "rb1") is None
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Succeeded"
    assert sim.image_of("shop-staging", "shop", "web") == image("a1")
    holds(sim, "final-rollbacks", "noop-rollbacks")


def test_retention_never_deletes_a_release_whose_image_was_just_set_by_hand():
    """make fuzz, shrunk: r1, r3 and r2 are created (keep 2; r1 is superseded before it starts);
    someone sets staging to r1's artifact by hand; the cache has the releases but not that change.
    Retention deleted r1 — whose image runs in staging — on what only the cache said; a deletion
    is for good, so it is now decided on live reads only."""
    sim = SimCluster(migration=False, smoke_test=False, keep_releases=2, watch_lag=True)
    sim.create_release("r1", artifact="a2")
    sim.create_release("r3", artifact="a0")
    sim.set_image_by_hand("shop-staging", image("a2"))
    sim.create_release("r2", artifact="a0")
    sim.deliver("releases")
    sim.reconcile()
    assert "r1" in sim.releases
    holds(sim, "retention")


def test_a_migration_created_but_never_recorded_and_then_deleted_is_not_run_twice():
    """make fuzz, shrunk (not a cache bug): a pass created r1's migration Job and the operator died
    before the status write that recorded it; someone deleted the Job; the restarted operator found
    neither a record nor a Job and created it again — the migration ran twice. Fixed: a migration
    Job is recorded in the release's status before it is created (CreateJob.record_first), so the
    operator dying after the create — the release's status written, the pipeline's not, no Event —
    leaves a recorded Job; deleted after it had a Pod, it is MigrationJobMissing, never created
    again."""
    for crash_after in (0, 1, 2):  # the process dies at its 1st, 2nd status write, or its Events
        sim = SimCluster(smoke_test=False)
        sim.create_release("r1", artifact="a1", target_stage="staging")
        sim.reconcile(crash_after=crash_after)
        for job in list(sim.jobs):  # someone deletes the Job while the operator is down
            sim.finish_job(*job, "delete")
        sim.reconcile()
        sim.reconcile()
        assert [j.kind for j in sim.jobs_created] in (["migrate"], []), crash_after
        holds(sim, "migrations-once", "jobs-once")
        if sim.jobs_created and not sim.jobs:  # created, then deleted: never run again
            rel = sim.status("releases", "r1")
            assert rel["phase"] == "Failed"
            assert "never runs it twice" in rel["message"]


def test_a_pass_that_dies_between_recording_a_migration_and_creating_it_creates_it_once():
    """The other side of recording first: the process dies right after the status write that names
    the migration Job, before the create. The Job never existed — no Pod was ever created for it (the
    Job controller's SuccessfulCreate Events say which Jobs had one) — so the restarted operator
    creates it, once, without a second MigrationStarted, and the release goes on."""
    sim = SimCluster(smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.kube.crash_before_create = True
    sim.reconcile(crash_after=1)
    assert sim.jobs_created == []
    sim.reconcile()
    assert [j.kind for j in sim.jobs_created] == ["migrate"]
    sim.reconcile()
    assert [j.kind for j in sim.jobs_created] == ["migrate"]
    history = [h["reason"] for h in sim.status("releases", "r1")["history"]]
    assert history.count("MigrationStarted") == 1
    assert sim.status("releases", "r1")["phase"] == "Progressing"
    holds(sim, "migrations-once", "jobs-once", "events-once")


def test_events_a_crash_lost_are_posted_once_by_the_restarted_operator():
    """The process dies after the status write, before the Events: the restarted operator's first
    pass posts every transition the history kept but no Event announced, with its own time, once."""
    sim = SimCluster(smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.reconcile(crash_after=2)  # both status writes land; the Events do not
    assert sim.events == []
    history = sim.status("releases", "r1")["history"]
    sim.reconcile()
    posted = [(e.reason, e.event_time) for e in sim.events if e.name == "r1"]
    for h in history:
        assert sum(1 for reason, _ in posted if reason == h["reason"]) == 1, h["reason"]
    holds(sim, "events-once")


def test_a_final_rollbacks_recorded_veto_written_late_is_no_new_act():
    """make fuzz, shrunk: rb6's plan (from r4) is recorded but the pipeline's status write, with
    its veto of r4's digest, is lost to a crash twice; r1 (its target) is gone, so rb6 fails. The
    next passes write the veto its recorded plan implies: the veto standing, not a final rollback
    acting again (the model's final-rollbacks said otherwise)."""
    from test_core_model import CoreModel

    m = CoreModel()
    m.configure(
        three=True,
        smoke=True,
        down=True,
        migration=True,
        keep=2,
        on_failure="hold",
        expires=None,
        skew=0.0,
        min_approvals=1,
    )
    m.release_to_production(approver="alice", artifact="a0", name="r1")
    m.rollback(count=3, stage=None, to=None, user="alice", verify=True)
    m.release_to_production(approver="alice", artifact="a1", name="r4")
    m.rollback(count=1, stage=None, to=None, user="alice", verify=False)
    m.delete_approval(i=0)
    m.deliver_all()
    m.delete_release(name="r1")
    m.crash(writes=3)
    m.crash(writes=2)
    m.everything_goes_well(held=None)
    holds(m.sim, "final-rollbacks")
