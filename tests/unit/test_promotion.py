"""The promotion engine, decided without a cluster: next step, status, ordering, verdicts.

Each test feeds `reconcile` a pipeline, releases, approvals and an observed world, and checks the
plan (actions, statuses, events). Multi-pass tests carry statuses forward, as the operator does.
"""

from __future__ import annotations

from conveyor.api.release import Phase, Release
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.plan import CreateJob, Plan, SetImage
from conveyor.core.promotion import reconcile
from support.builders import (
    REPO,
    approval,
    deployment_view,
    digest_of,
    job,
    later,
    pipeline,
    release,
    world,
)

MIGRATION = {"command": ["migrate"]}
SMOKE = {"command": ["smoke"]}


def carry(releases: list[Release], plan: Plan) -> list[Release]:
    """The releases as the next pass sees them: with the statuses this plan wrote."""
    return [
        r.model_copy(update={"status": plan.releases[r.metadata.name]})
        if r.metadata.name in plan.releases
        else r
        for r in releases
    ]


def image(label: str) -> str:
    return f"{REPO}@{digest_of(label)}"


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def condition(status, ctype):
    return next(c for c in status.conditions if c.type == ctype)


def test_new_release_without_jobs_patches_staging_and_waits_for_the_rollout():
    p = pipeline()
    r = release("r1")
    plan = reconcile(p, [r], [], world(), later(0))
    assert plan.actions == [
        SetImage(
            "r1",
            "shop-staging",
            "shop",
            {"web": image("r1")},
            {
                "conveyor.dev/release": "r1",
                "conveyor.dev/commit": r.spec.commit,
                "conveyor.dev/rollback": None,
                "conveyor.dev/pipeline": "apps/shop",
            },
        )
    ]
    status = plan.releases["r1"]
    assert status.phase == Phase.PROGRESSING
    assert status.current_stage == "staging"
    assert status.short_commit == r.spec.commit[:7]
    assert condition(status, "Progressing").status == "True"
    assert condition(status, "Ready").status == "False"
    assert reasons(plan) == ["ReleaseAccepted", "StageStarted", "RolloutStarted"]
    assert plan.requeue_after == 120  # the stage's default rollout deadline


def test_rollout_complete_without_smoke_test_verifies_staging_then_waits_for_approval():
    p = pipeline()
    rs = [release("r1")]
    first = reconcile(p, rs, [], world(), later(0))
    rs = carry(rs, first)
    done = world(staging=deployment_view(image("r1"), release_name="r1"))
    plan = reconcile(p, rs, [], done, later(5))
    status = plan.releases["r1"]
    assert status.phase == Phase.AWAITING_APPROVAL
    assert status.current_stage == "prod"
    assert condition(status, "AwaitingApproval").status == "True"
    assert [r.name for r in status.stages if r.phase == "Verified"] == ["staging"]
    assert plan.actions == []
    assert "StageVerified" in reasons(plan)
    assert plan.pipeline.summary == f"staging={rs[0].spec.commit[:7]} prod=-"


def test_the_image_is_not_patched_again_when_already_there_after_a_crash():
    # The operator patched the Deployment, then died before recording it in status.
    p = pipeline()
    r = release("r1")
    w = world(staging=deployment_view(image("r1"), release_name="r1", rolled_out=False))
    plan = reconcile(p, [r], [], w, later(0))
    assert plan.actions == []
    assert plan.releases["r1"].stages[0].deployed_at == later(0)


def test_migration_runs_first_and_only_once():
    p = pipeline(migration=MIGRATION)
    rs = [release("r1")]
    plan = reconcile(p, rs, [], world(), later(0))
    name = job_name("r1", "uid-r1", "staging", JobKind.MIGRATION)
    assert [type(a) for a in plan.actions] == [CreateJob]
    assert plan.actions[0].manifest["metadata"]["name"] == name
    rs = carry(rs, plan)
    # Next pass, Job still running: nothing created again, no image patch yet.
    plan = reconcile(p, rs, [], world(jobs={name: job(name)}), later(1))
    assert plan.actions == []
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    # The Job completes: now the image is set.
    plan = reconcile(p, carry(rs, plan), [], world(jobs={name: job(name, complete=True)}), later(2))
    assert [type(a) for a in plan.actions] == [SetImage]
    assert plan.releases["r1"].stages[0].migration_result == "Succeeded"


def test_a_job_found_after_a_crash_is_adopted_not_created_again():
    p = pipeline(migration=MIGRATION)
    name = job_name("r1", "uid-r1", "staging", JobKind.MIGRATION)
    plan = reconcile(p, [release("r1")], [], world(jobs={name: job(name)}), later(0))
    assert plan.actions == []
    assert plan.releases["r1"].stages[0].migration_job == name


def test_failed_migration_fails_the_release_and_no_rollout_happens():
    p = pipeline(migration=MIGRATION)
    rs = [release("r1")]
    rs = carry(rs, reconcile(p, rs, [], world(), later(0)))
    name = job_name("r1", "uid-r1", "staging", JobKind.MIGRATION)
    plan = reconcile(
        p, rs, [], world(jobs={name: job(name, failed=True, reason="BackoffLimitExceeded")}), later(3)
    )
    status = plan.releases["r1"]
    assert status.phase == Phase.FAILED
    assert condition(status, "Failed").reason == "MigrationFailed"
    assert "rollout did not start" in condition(status, "Failed").message
    assert not any(isinstance(a, SetImage) for a in plan.actions)
    # A failed release is a record: later passes change nothing.
    again = reconcile(p, carry(rs, plan), [], world(), later(100))
    assert "r1" not in again.releases
    assert again.actions == []


def test_a_vanished_migration_job_fails_rather_than_running_twice():
    from conveyor.core.jobs import JobKind, job_name
    from conveyor.core.plan import CreateJob

    p = pipeline(migration=MIGRATION)
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    job = job_name("r1", "uid-r1", "staging", JobKind.MIGRATION)
    # Recorded, not there: first, did it ever have a Pod? (the shell looks, the pass decides again)
    plan = reconcile(p, rs, [], world(), later(5))
    assert plan.traces == {("", "shop-staging")}  # (cluster, namespace): the control cluster
    assert plan.actions == []
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    # It had one: it may have run, and never runs twice
    ran = world()
    ran.stages["staging"].started_jobs = {job}
    plan = reconcile(p, rs, [], ran, later(5))
    assert condition(plan.releases["r1"], "Failed").reason == "MigrationJobMissing"
    assert plan.actions == []
    # It never had one: the operator died between recording and creating it — created now, once
    never = world()
    never.stages["staging"].started_jobs = set()
    plan = reconcile(p, rs, [], never, later(5))
    assert [type(a) for a in plan.actions] == [CreateJob]
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    # ... unless it was recorded too long ago to tell (Events expire): then it is missing, and the
    # Events are not even asked for (a pipeline without `list events` is not held up by them)
    plan = reconcile(p, rs, [], never, later(3600))
    assert condition(plan.releases["r1"], "Failed").reason == "MigrationJobMissing"
    plan = reconcile(p, rs, [], world(), later(3600))
    assert not plan.traces
    assert condition(plan.releases["r1"], "Failed").reason == "MigrationJobMissing"


def test_rollout_deadline_gives_a_verdict():
    p = pipeline()
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    stuck = world(staging=deployment_view(image("r1"), release_name="r1", rolled_out=False))
    before = reconcile(p, rs, [], stuck, later(119))
    assert before.releases["r1"].phase == Phase.PROGRESSING
    assert 0 < before.requeue_after <= 1.0
    plan = reconcile(p, rs, [], stuck, later(120))
    status = plan.releases["r1"]
    assert status.phase == Phase.FAILED
    assert condition(status, "Failed").reason == "RolloutTimedOut"
    assert "0/2 replicas updated, 2 unavailable" in status.message
    assert status.current_stage == "staging"


def test_progress_deadline_exceeded_fails_at_once():
    p = pipeline()
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    w = world(
        staging=deployment_view(image("r1"), release_name="r1", rolled_out=False, deadline_exceeded=True)
    )
    plan = reconcile(p, rs, [], w, later(10))
    assert condition(plan.releases["r1"], "Failed").reason == "RolloutFailed"


def test_smoke_test_failure_fails_the_stage_and_later_stages_never_start():
    p = pipeline(smoke_test=SMOKE)
    rs = [release("r1")]
    rs = carry(rs, reconcile(p, rs, [], world(), later(0)))
    done = world(staging=deployment_view(image("r1"), release_name="r1"))
    plan = reconcile(p, rs, [], done, later(2))
    assert [type(a) for a in plan.actions] == [CreateJob]
    rs = carry(rs, plan)
    name = job_name("r1", "uid-r1", "staging", JobKind.SMOKE_TEST)
    failed = world(
        staging=deployment_view(image("r1"), release_name="r1"),
        jobs={name: job(name, failed=True, reason="BackoffLimitExceeded")},
    )
    plan = reconcile(p, rs, [approval("a1", "r1", "prod")], failed, later(4))
    status = plan.releases["r1"]
    assert condition(status, "Failed").reason == "SmokeTestFailed"
    assert [r.name for r in status.stages] == ["staging"]  # prod never started


def test_approval_opens_the_gate_and_is_recorded():
    p = pipeline()
    rs = [release("r1")]
    for t in range(2):
        rs = carry(
            rs, reconcile(p, rs, [], world(staging=deployment_view(image("r1"), release_name="r1")), later(t))
        )
    assert rs[0].status.phase == Phase.AWAITING_APPROVAL
    a = approval("a1", "r1", "prod", created=later(3))
    plan = reconcile(p, rs, [a], world(staging=deployment_view(image("r1"), release_name="r1")), later(4))
    prod = next(s for s in plan.releases["r1"].stages if s.name == "prod")
    assert prod.approval == "a1"
    assert any(isinstance(x, SetImage) and x.namespace == "shop-prod" for x in plan.actions)
    assert plan.approvals["a1"].counted is True
    assert condition(plan.approvals["a1"], "Counted").reason == "Used"


def test_approval_for_an_unknown_stage_is_marked_and_does_not_count():
    p = pipeline()
    plan = reconcile(p, [release("r1")], [approval("a1", "r1", "qa")], world(), later(0))
    assert plan.approvals["a1"].counted is False
    assert condition(plan.approvals["a1"], "Counted").reason == "WrongStage"


def test_one_release_in_flight_per_stage_and_the_newest_waiting_supersedes_older_ones():
    p = pipeline()
    r1 = release("r1", created=later(0))
    rs = carry([r1], reconcile(p, [r1], [], world(), later(0)))  # r1 in flight in staging
    r2, r3 = release("r2", created=later(1)), release("r3", created=later(2))
    stuck = world(staging=deployment_view(image("r1"), release_name="r1", rolled_out=False))
    plan = reconcile(p, [*rs, r2, r3], [], stuck, later(3))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert plan.releases["r2"].phase == Phase.SUPERSEDED
    assert plan.releases["r3"].phase == Phase.WAITING
    assert condition(plan.releases["r3"], "Ready").reason == "StageBusy"
    assert plan.actions == []  # r1's image is already set; nobody else touches staging


def test_a_release_waiting_for_prod_approval_is_superseded_when_a_newer_one_arrives_there():
    p = pipeline()
    r1, r2 = release("r1", created=later(0)), release("r2", created=later(1))
    r1 = r1.model_copy(update={"status": _awaiting_prod(r1)})
    r2 = r2.model_copy(update={"status": _awaiting_prod(r2)})
    plan = reconcile(
        p, [r1, r2], [], world(staging=deployment_view(image("r2"), release_name="r2")), later(5)
    )
    assert plan.releases["r1"].phase == Phase.SUPERSEDED
    assert plan.releases["r2"].phase == Phase.AWAITING_APPROVAL


def test_an_older_release_waiting_for_approval_is_not_superseded_by_a_newer_one_still_in_staging():
    p = pipeline()
    r1 = release("r1", created=later(0))
    r1 = r1.model_copy(update={"status": _awaiting_prod(r1)})
    r2 = release("r2", created=later(1))
    plan = reconcile(p, [r1, r2], [], world(), later(5))
    assert plan.releases["r1"].phase == Phase.AWAITING_APPROVAL
    assert plan.releases["r2"].phase == Phase.PROGRESSING


def test_target_stage_stops_early_and_unknown_target_stage_is_reported():
    p = pipeline()
    r = release("r1", target_stage="staging")
    rs = carry([r], reconcile(p, [r], [], world(), later(0)))
    plan = reconcile(p, rs, [], world(staging=deployment_view(image("r1"), release_name="r1")), later(1))
    assert plan.releases["r1"].phase == Phase.SUCCEEDED
    assert condition(plan.releases["r1"], "Ready").status == "True"
    bad = release("r2", target_stage="qa")
    plan = reconcile(p, [bad], [], world(), later(0))
    assert condition(plan.releases["r2"], "Ready").reason == "UnknownTargetStage"
    assert plan.actions == []


def test_missing_namespace_deployment_or_container_blocks_with_a_condition_and_retries():
    p = pipeline()
    plan = reconcile(p, [release("r1")], [], world(missing_namespace="shop-staging"), later(0))
    status = plan.releases["r1"]
    assert condition(status, "Progressing").status == "False"
    assert condition(status, "Progressing").reason == "NamespaceNotFound"
    assert status.phase == Phase.WAITING  # it waits outside the stage: nothing ran, nothing failed
    assert plan.requeue_after == 15
    assert condition(plan.pipeline, "Ready").reason == "NamespaceNotFound"
    p2 = pipeline(targets=[{"deployment": "shop", "container": "api"}])
    plan = reconcile(p2, [release("r1")], [], world(), later(0))
    assert condition(plan.releases["r1"], "Progressing").reason == "ContainerNotFound"
    assert "containers: web" in plan.releases["r1"].message


def test_status_history_is_bounded():
    p = pipeline()
    r = release("r1")
    history = [{"time": later(i).isoformat(), "reason": "X", "message": str(i)} for i in range(60)]
    r = r.model_copy(update={"status": r.status.model_validate({"phase": "Progressing", "history": history})})
    plan = reconcile(p, [r], [], world(), later(100))
    assert len(plan.releases["r1"].history) == 50
    assert plan.releases["r1"].history[-1].reason == "RolloutStarted"


def test_condition_transition_time_moves_only_when_status_changes():
    p = pipeline()
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    stuck = world(staging=deployment_view(image("r1"), release_name="r1", rolled_out=False))
    plan = reconcile(p, rs, [], stuck, later(10))
    assert condition(plan.releases["r1"], "Progressing").last_transition_time == later(0)


def test_nothing_changes_means_an_identical_status():
    p = pipeline()
    rs = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    stuck = world(staging=deployment_view(image("r1"), release_name="r1", rolled_out=False))
    rs = carry(rs, reconcile(p, rs, [], stuck, later(1)))
    plan = reconcile(p, rs, [], stuck, later(2))
    assert plan.releases["r1"] == rs[0].status
    assert plan.events == []


def _awaiting_prod(r: Release):
    """A status: staging verified, waiting at prod's door."""
    return r.status.model_validate(
        {
            "phase": "AwaitingApproval",
            "currentStage": "prod",
            "stages": [
                {
                    "name": "staging",
                    "phase": "Verified",
                    "startedAt": later(0).isoformat(),
                    "verifiedAt": later(1).isoformat(),
                },
                {"name": "prod", "phase": "AwaitingApproval"},
            ],
        }
    )


def test_within_one_second_a_release_already_accepted_is_older_than_a_new_one():
    # The API server's creationTimestamp has one-second granularity; "shop-stuck" < "shop-v1" by name.
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    v1 = release("shop-v1", created=later(0))
    v1 = v1.model_copy(update={"status": reconcile(p, [v1], [], world(), later(0.1)).releases["shop-v1"]})
    assert v1.status.accepted_at == later(0.1)
    done = world(prod=deployment_view(image("shop-v1"), release_name="shop-v1"))
    v1 = v1.model_copy(update={"status": reconcile(p, [v1], [], done, later(0.2)).releases["shop-v1"]})
    assert v1.status.phase == Phase.SUCCEEDED
    stuck = release("shop-stuck", created=later(0))
    plan = reconcile(p, [v1, stuck], [], done, later(0.5))
    assert plan.releases["shop-stuck"].phase == Phase.PROGRESSING
