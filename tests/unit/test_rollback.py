"""Rollback decisions without a cluster: plans, refusals, acting, vetoes, pins, automatic rollback."""

from __future__ import annotations

from conveyor.api.release import Phase, Release
from conveyor.api.rollback import Rollback
from conveyor.core.jobs import JobKind, job_name, uid_tag
from conveyor.core.plan import CreateJob, CreateRollback, LabelRelease, Plan, SetImage
from conveyor.core.promotion import reconcile
from conveyor.core.rollback import plan_rollback
from support.builders import (
    REPO,
    deployment_view,
    digest_of,
    job,
    later,
    pipeline,
    release,
    rollback,
    verified_in,
    world,
)

DOWN = {"command": ["/app/migrate", "down"]}


def image(label: str) -> str:
    return f"{REPO}@{digest_of(label)}"


def cond(status, ctype):
    return next(c for c in status.conditions if c.type == ctype)


def two_releases(schema: str = "backwardCompatible") -> list[Release]:
    """v1 verified in both stages earlier; v2 (schema change `schema`) verified in both since."""
    v1 = release("v1", created=later(0), status=verified_in("staging", "prod", at=0))
    v2 = release("v2", created=later(10), status=verified_in("staging", "prod", at=20))
    v2 = v2.model_copy(update={"spec": v2.spec.model_copy(update={"schema_change": schema})})
    return [v1, v2]


def prod_on(label: str, release_name: str, **kw) -> object:
    return world(prod=deployment_view(image(label), release_name=release_name, **kw))


def carry_rb(rb: Rollback, plan: Plan) -> Rollback:
    return rb.model_copy(update={"status": plan.rollbacks[rb.metadata.name]})


def carry(releases: list[Release], plan: Plan) -> list[Release]:
    return [r.model_copy(update={"status": plan.releases.get(r.metadata.name, r.status)}) for r in releases]


def test_image_only_plan_is_recorded_before_anything_changes_then_acted_on():
    p, rs = pipeline(), two_releases()
    rb = rollback("rb1", created=later(30))
    first = reconcile(p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[rb])
    st = first.rollbacks["rb1"]
    assert st.plan.action == "ImageOnly"
    assert (st.plan.from_release, st.plan.to_release) == ("v2", "v1")
    assert st.phase == "Pending"
    assert first.actions == []  # plan first
    rb = carry_rb(rb, first)
    second = reconcile(p, rs, [], prod_on("v2", "v2"), later(31.1), rollbacks=[rb])
    sets = [a for a in second.actions if isinstance(a, SetImage)]
    assert sets == [
        SetImage(
            "rb1",
            "shop-prod",
            "shop",
            {"web": image("v1")},
            {
                "conveyor.dev/release": "v1",
                "conveyor.dev/commit": rs[0].spec.commit,
                "conveyor.dev/rollback": "rb1",
                "conveyor.dev/pipeline": "apps/shop",
            },
        )
    ]
    assert LabelRelease("rb1", "v2", {"conveyor.dev/vetoed": "true"}) in second.actions
    assert second.releases["v2"].vetoed is True
    assert second.rollbacks["rb1"].patched_at == later(31.1)
    # Rolled out: with verify and no smoke-test template, it completes and pins prod to v1.
    rb = carry_rb(rb, second)
    rs = carry(rs, second)
    done = reconcile(p, rs, [], prod_on("v1", "v1"), later(33), rollbacks=[rb])
    st = done.rollbacks["rb1"]
    assert st.phase == "Succeeded"
    assert st.duration_seconds == 2.0
    assert cond(st, "Ready").status == "True"
    prod = next(s for s in done.pipeline.stages if s.name == "prod")
    assert (prod.release, prod.pinned_by) == ("v1", "rb1")
    assert done.pipeline.production_commit == rs[0].spec.commit[:7]
    assert [v.release for v in done.pipeline.vetoed] == ["v2"]
    assert [e.reason for e in done.events if e.kind == "Rollback"] == [
        "RollbackRolledOut",
        "RollbackCompleted",
    ]


def test_breaking_change_runs_the_down_migration_with_the_newer_image_first():
    p = pipeline(down_migration=DOWN)
    rs = two_releases("breaking")
    rb = rollback("rb1", created=later(30))
    rb = carry_rb(rb, reconcile(p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[rb]))
    assert rb.status.plan.action == "DownMigrationThenImage"
    plan = reconcile(p, rs, [], prod_on("v2", "v2"), later(32), rollbacks=[rb])
    jobs = [a for a in plan.actions if isinstance(a, CreateJob)]
    assert len(jobs) == 1
    manifest = jobs[0].manifest
    assert manifest["metadata"]["name"] == job_name("rb1", "uid-rb1", "prod", JobKind.DOWN_MIGRATION)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == image("v2")
    assert not any(isinstance(a, SetImage) for a in plan.actions)  # image only after the down-migration
    rb = carry_rb(rb, plan)
    name = job_name("rb1", "uid-rb1", "prod", JobKind.DOWN_MIGRATION)
    running = world(prod=deployment_view(image("v2"), release_name="v2"), jobs={name: job(name)})
    assert reconcile(p, carry(rs, plan), [], running, later(33), rollbacks=[rb]).actions == []
    finished = world(
        prod=deployment_view(image("v2"), release_name="v2"), jobs={name: job(name, complete=True)}
    )
    plan = reconcile(p, carry(rs, plan), [], finished, later(34), rollbacks=[rb])
    assert any(isinstance(a, SetImage) and a.images == {"web": image("v1")} for a in plan.actions)
    assert not any(isinstance(a, CreateJob) for a in plan.actions)  # never a second down-migration


def test_breaking_change_without_a_down_migration_is_refused_with_what_is_missing():
    p, rs = pipeline(), two_releases("breaking")
    plan = reconcile(
        p, rs, [], prod_on("v2", "v2"), later(31), rollbacks=[rollback("rb1", created=later(30))]
    )
    st = plan.rollbacks["rb1"]
    assert st.phase == "Blocked"
    blocked = cond(st, "RollbackBlocked")
    assert (blocked.status, blocked.reason) == ("True", "NoDownMigration")
    assert "spec.downMigration" in blocked.message
    assert "v2" in blocked.message
    assert plan.actions == []
    assert "RollbackBlocked" in [e.reason for e in plan.events]


def test_refusals_unknown_stage_unknown_release_never_verified_and_nothing_to_go_back_to():
    p, rs = pipeline(), two_releases()
    never = release(
        "v3",
        created=later(40),
        status={
            "phase": "AwaitingApproval",
            "stages": [{"name": "staging", "phase": "Verified", "verifiedAt": later(41).isoformat()}],
        },
    )
    cases = {
        "UnknownStage": rollback("a", stage="qa"),
        "UnknownRelease": rollback("b", to="nope"),
        "NotVerifiedInStage": rollback("c", to="v3"),
    }
    by_name = {r.metadata.name: r for r in [*rs, never]}
    for code, rb in cases.items():
        plan, got = plan_rollback(p, rb, by_name, [])
        assert (plan.action, got) == ("Refused", code)
    only = {"v1": release("v1", status=verified_in("staging", "prod"))}
    plan, got = plan_rollback(p, rollback("d"), only, [])
    assert got == "NoPreviousRelease"


def test_explicit_older_target_and_the_default_stage_is_the_last():
    p = pipeline()
    v0 = release("v0", created=later(-20), status=verified_in("staging", "prod", at=-20))
    rs = [v0, *two_releases()]
    plan, code = plan_rollback(p, rollback("rb", stage=None, to="v0"), {r.metadata.name: r for r in rs}, [])
    assert (plan.stage, plan.to_release, plan.from_release, code) == ("prod", "v0", "v2", "ImageOnly")


def rolling_out_in_prod(name: str) -> Release:
    """A release verified in staging and rolling out in prod now."""
    return release(
        name,
        created=later(40),
        status={
            "phase": "Progressing",
            "currentStage": "prod",
            "stages": [
                {"name": "staging", "phase": "Verified", "verifiedAt": later(41).isoformat()},
                {
                    "name": "prod",
                    "phase": "RollingOut",
                    "startedAt": later(42).isoformat(),
                    "deployedAt": later(42).isoformat(),
                },
            ],
        },
    )


def test_an_in_flight_release_is_stopped_and_others_wait_until_the_rollback_is_done():
    p, rs = pipeline(), two_releases()
    v3 = rolling_out_in_prod("v3")
    v4 = release("v4", created=later(45), status=verified_in("staging", at=45))
    v4 = v4.model_copy(update={"status": v4.status.model_copy(update={"phase": Phase.AWAITING_APPROVAL})})
    rb = rollback("rb1", created=later(50))
    plan = reconcile(p, [*rs, v3, v4], [], prod_on("v3", "v3", rolled_out=False), later(51), rollbacks=[rb])
    assert plan.rollbacks["rb1"].plan.from_release == "v3"  # the one that changed prod last
    assert plan.releases["v3"].phase == Phase.ROLLED_BACK
    assert "ReleaseRolledBack" in [e.reason for e in plan.events]


def test_a_completed_rollback_pins_the_stage_and_the_vetoed_digest_never_returns():
    p, rs = pipeline(), two_releases()
    done_status = {
        "phase": "Succeeded",
        "plannedAt": later(30).isoformat(),
        "patchedAt": later(30.1).isoformat(),
        "finishedAt": later(32).isoformat(),
        "plan": {
            "action": "ImageOnly",
            "reason": "x",
            "stage": "prod",
            "namespace": "shop-prod",
            "fromRelease": "v2",
            "fromCommit": rs[1].spec.commit,
            "fromDigest": rs[1].spec.digest,
            "toRelease": "v1",
            "toCommit": rs[0].spec.commit,
            "toDigest": rs[0].spec.digest,
        },
    }
    rb = rollback("rb1", created=later(30), status=done_status)
    older = release("v3", created=later(25), status=verified_in("staging", at=25))
    older = older.model_copy(
        update={
            "status": older.status.model_copy(
                update={"phase": Phase.AWAITING_APPROVAL, "accepted_at": later(25)}
            )
        }
    )
    again = release("v2-again", created=later(60), label="v2")  # Argo CD re-created the vetoed one
    newer = release("v4", created=later(61))
    plan = reconcile(p, [*rs, older, again, newer], [], prod_on("v1", "v1"), later(62), rollbacks=[rb])
    assert plan.releases["v3"].phase == Phase.SUPERSEDED
    assert cond(plan.releases["v3"], "Ready").reason == "PinnedByRollback"
    assert plan.releases["v2-again"].phase == Phase.VETOED
    assert plan.releases["v4"].phase == Phase.PROGRESSING  # newer than the pin: promoted as usual
    assert plan.pipeline.production_commit == rs[0].spec.commit[:7]


def test_failure_after_changing_the_stage_creates_one_automatic_rollback():
    p = pipeline(
        stages=[
            {
                "name": "staging",
                "namespace": "shop-staging",
                "onFailure": "rollback",
                "rolloutDeadlineSeconds": 10,
            },
            {"name": "prod", "namespace": "shop-prod"},
        ]
    )
    r = release("v9")
    rs = [r.model_copy(update={"status": reconcile(p, [r], [], world(), later(0)).releases["v9"]})]
    stuck = world(staging=deployment_view(image("v9"), release_name="v9", rolled_out=False))
    plan = reconcile(p, rs, [], stuck, later(11))
    creates = [a for a in plan.actions if isinstance(a, CreateRollback)]
    assert len(creates) == 1
    assert creates[0].manifest["metadata"]["name"] == f"v9-staging-rollback-{uid_tag('uid-v9')}"
    assert creates[0].manifest["spec"]["stage"] == "staging"
    assert plan.releases["v9"].phase == Phase.FAILED


def test_failure_before_changing_anything_does_not_roll_back():
    p = pipeline(
        migration={"command": ["m"]},
        stages=[{"name": "staging", "namespace": "shop-staging", "onFailure": "rollback"}],
    )
    name = job_name("v9", "uid-v9", "staging", JobKind.MIGRATION)
    r = release("v9")
    # A Job with our name that belongs to someone else: the release fails before changing anything.
    from conveyor.core.world import JobView

    w = world(jobs={name: JobView(name=name, complete=False, failed=False, release_uid="someone-else")})
    plan = reconcile(p, [r], [], w, later(0))
    assert plan.releases["v9"].phase == Phase.FAILED
    assert not any(isinstance(a, CreateRollback) for a in plan.actions)


def test_a_plan_written_alone_then_acted_on_loses_nothing_and_repeats_nothing():
    """The shell writes only a fresh rollback plan (handlers/reconcile.plans_only), then passes again
    at once: the second pass patches and decides everything else — the stopped release, the veto,
    their Events — exactly once between the two passes."""
    from conveyor.handlers.reconcile import plans_only

    p, rs = pipeline(), two_releases()
    v3 = rolling_out_in_prod("v3")
    releases, rb = [*rs, v3], rollback("rb1", created=later(50))
    w = prod_on("v3", "v3", rolled_out=False)
    full = reconcile(p, releases, [], w, later(51), rollbacks=[rb])
    assert full.again == {"rb1"}
    first = plans_only(full, p)
    assert set(first.rollbacks) == {"rb1"}
    assert first.releases == {}
    assert first.actions == []
    assert {e.name for e in first.events} == {"rb1"}
    assert first.pipeline == p.status  # the pipeline's status is written by the second pass
    # The second pass reads the recorded plan (nothing else was written) and acts.
    second = reconcile(p, releases, [], w, later(51.05), rollbacks=[carry_rb(rb, first)])
    assert [a for a in second.actions if isinstance(a, SetImage)]
    assert second.releases["v3"].phase == Phase.ROLLED_BACK
    assert not second.again
    both = [(e.name, e.reason) for e in first.events + second.events]
    everything_once = [(e.name, e.reason) for e in full.events]
    for event in everything_once:  # what the full first pass would have said is said, once
        assert both.count(event) == 1, (event, both)
