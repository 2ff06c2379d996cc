"""Fair verdicts under load (issue #11): a release never fails because Conveyor, the API server or
the cluster's controllers were slow. A deadline verdict is given only on data read fresh from the API
server; a rollout whose new replicas all run is never judged timed out while old ones terminate; a
rollout the Deployment controller has not looked at yet waits for it (up to a bound)."""

from __future__ import annotations

from dataclasses import replace

from conveyor.api.release import Phase, Release
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.plan import Plan
from conveyor.core.promotion import reconcile
from conveyor.core.steps import CLUSTER_LAG_FACTOR
from conveyor.core.world import World
from support.builders import (
    REPO,
    deployment_view,
    digest_of,
    later,
    pipeline,
    release,
    rollback,
    verified_in,
    world,
)

SMOKE = {"command": ["smoke"]}


def carry(releases: list[Release], plan: Plan) -> list[Release]:
    return [r.model_copy(update={"status": plan.releases.get(r.metadata.name, r.status)}) for r in releases]


def cached(w: World) -> World:
    """The same world, as read from the watch-fed cache."""
    for sw in w.stages.values():
        sw.fresh = False
    return w


def image(label: str) -> str:
    return f"{REPO}@{digest_of(label)}"


def started() -> tuple[list[Release], object]:
    p = pipeline()
    rs = [release("r1")]
    return carry(rs, reconcile(p, rs, [], world(), later(0))), p


def test_a_deadline_on_cached_data_asks_for_fresh_data_instead_of_failing():
    rs, p = started()
    stuck = deployment_view(image("r1"), release_name="r1", rolled_out=False)
    plan = reconcile(p, rs, [], cached(world(staging=stuck)), later(121))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert plan.refresh
    # On fresh data the same world is a verdict.
    plan = reconcile(p, rs, [], world(staging=stuck), later(121))
    assert plan.releases["r1"].phase == Phase.FAILED
    assert not plan.refresh


def test_cached_data_before_the_deadline_needs_no_fresh_read():
    rs, p = started()
    stuck = deployment_view(image("r1"), release_name="r1", rolled_out=False)
    plan = reconcile(p, rs, [], cached(world(staging=stuck)), later(60))
    assert not plan.refresh
    assert plan.releases["r1"].phase == Phase.PROGRESSING


def test_new_replicas_available_while_old_ones_terminate_is_not_a_timeout():
    rs, p = started()
    done = deployment_view(image("r1"), release_name="r1")
    terminating = replace(done, total_replicas=3)  # one old pod still going away
    assert not terminating.rolled_out()
    plan = reconcile(p, rs, [], world(staging=terminating), later(121))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert "old ones are still terminating" in plan.releases["r1"].message
    assert plan.requeue_after <= 5
    # Still so after several deadlines: the verdict comes at CLUSTER_LAG_FACTOR deadlines.
    late = reconcile(p, rs, [], world(staging=terminating), later(120 * CLUSTER_LAG_FACTOR + 1))
    assert late.releases["r1"].phase == Phase.FAILED


def test_a_controller_that_has_not_observed_the_change_is_waited_for():
    rs, p = started()
    unseen = replace(deployment_view(image("r1"), release_name="r1", rolled_out=False), observed_generation=1)
    plan = reconcile(p, rs, [], world(staging=unseen), later(121))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    # Past the deadline even "waiting on the cluster" is judged on fresh reads: a cache may hold
    # the answer to Conveyor's own patch (never observed) long after the controller moved on.
    assert reconcile(p, rs, [], cached(world(staging=unseen)), later(121)).refresh
    assert "has not yet observed generation 2" in plan.releases["r1"].message


def test_pods_that_never_become_available_still_time_out():
    rs, p = started()
    stuck = deployment_view(image("r1"), release_name="r1", rolled_out=False)
    plan = reconcile(p, rs, [], world(staging=stuck), later(121))
    assert plan.releases["r1"].phase == Phase.FAILED


def test_a_recorded_job_missing_from_the_cache_is_not_judged_gone():
    p = pipeline(smoke_test=SMOKE)
    rs = [release("r1")]
    rs = carry(rs, reconcile(p, rs, [], world(), later(0)))
    done = deployment_view(image("r1"), release_name="r1")
    rs = carry(rs, reconcile(p, rs, [], world(staging=done), later(2)))  # creates and records the Job
    name = job_name("r1", "uid-r1", "staging", JobKind.SMOKE_TEST)
    assert rs[0].status.stages[0].smoke_test_job == name
    plan = reconcile(p, rs, [], cached(world(staging=done)), later(3))
    assert plan.refresh
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    fresh = reconcile(p, rs, [], world(staging=done), later(3))
    assert fresh.releases["r1"].phase == Phase.FAILED


def test_another_writer_is_judged_on_fresh_data_only():
    # Review F2: a cache holding the Deployment from before Conveyor's patch reads as "the image
    # changed after Conveyor set it" — a false ImageChanged (and with onFailure: rollback, a
    # rollback of a healthy release). The verdict waits for fresh reads.
    rs, p = started()
    assert rs[0].status.stages[0].deployed_at is not None
    before_patch = deployment_view(image("old"), release_name=None)
    plan = reconcile(p, rs, [], cached(world(staging=before_patch)), later(5))
    assert plan.refresh
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert not plan.actions  # and it does not patch again either
    fresh = reconcile(p, rs, [], world(staging=before_patch), later(5))
    assert fresh.releases["r1"].phase == Phase.FAILED


def test_a_target_missing_from_the_cache_past_the_deadline_is_confirmed_before_failing():
    # Review F3: between the DELETED and ADDED events of a `kubectl replace --force` the cache
    # has no Deployment; the deadline verdict asks the API server first.
    rs, p = started()
    w = world()
    w.stages["staging"].deployments["shop"] = None
    plan = reconcile(p, rs, [], cached(w), later(121))
    assert plan.refresh
    assert plan.releases["r1"].phase == Phase.PROGRESSING


def test_targets_missing_from_the_cache_past_the_deadline_ask_for_fresh_data_instead_of_failing():
    """The model test found it: the Deployment was deleted and applied again; the watch had not
    delivered the new one when the deadline came, and the release failed RolloutTimedOut on what
    only the cache said."""
    rs, p = started()

    def gone() -> World:
        w = world()
        w.stages["staging"].deployments["shop"] = None
        return w

    plan = reconcile(p, rs, [], cached(gone()), later(121))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
    assert plan.refresh
    # On fresh data the same world is a verdict.
    plan = reconcile(p, rs, [], gone(), later(121))
    assert plan.releases["r1"].phase == Phase.FAILED
    assert not plan.refresh


def test_another_image_in_the_cache_asks_for_fresh_data_instead_of_image_changed():
    """A cache may show an image someone set by hand and has since set back (the model test found
    it): ImageChanged, like the deadlines, is judged on live reads only — while the release rolls
    out, and once it rolled out (smoke-testing)."""
    p = pipeline(smoke_test=SMOKE)
    rolling = carry([release("r1")], reconcile(p, [release("r1")], [], world(), later(0)))
    done = deployment_view(image("r1"), release_name="r1")
    testing = carry(rolling, reconcile(p, rolling, [], world(staging=done), later(2)))
    assert testing[0].status.stages[0].rolled_out_at is not None
    hand = deployment_view(image("hand-built"), release_name="r1")
    for rs in (rolling, testing):
        plan = reconcile(p, rs, [], cached(world(staging=hand)), later(3))
        assert plan.refresh
        assert plan.releases["r1"].phase == Phase.PROGRESSING
        assert plan.actions == []
        fresh = reconcile(p, rs, [], world(staging=hand), later(3))
        assert fresh.releases["r1"].phase == Phase.FAILED
        assert "ImageChanged" in [e.reason for e in fresh.events]


def test_a_rollback_judges_image_changed_on_fresh_data_only():
    """While it rolls out, and once rolled out (verifying), a rollback's ImageChanged too."""
    p = pipeline(smoke_test=SMOKE)
    rs = [
        release("v1", created=later(0), status=verified_in("staging", "prod", at=0)),
        release("v2", created=later(10), status=verified_in("staging", "prod", at=20)),
    ]
    rb = rollback("rb1", created=later(30))

    def on(label: str, name: str) -> World:
        return world(prod=deployment_view(image(label), release_name=name))

    def step(rb, rs, w, at):
        plan = reconcile(p, rs, [], w, later(at), rollbacks=[rb])
        return rb.model_copy(update={"status": plan.rollbacks["rb1"]}), carry(rs, plan)

    rb, rs = step(rb, rs, on("v2", "v2"), 31)  # planned
    patching, rs = step(rb, rs, on("v2", "v2"), 32)  # patched
    verifying, _ = step(patching, rs, on("v1", "v1"), 33)  # rolled out: the smoke test runs
    assert patching.status.patched_at is not None
    assert patching.status.rolled_out_at is None
    assert verifying.status.rolled_out_at is not None
    assert verifying.status.phase == "Verifying"
    for rb in (patching, verifying):
        plan = reconcile(p, rs, [], cached(on("hand-built", "v1")), later(34), rollbacks=[rb])
        assert plan.refresh
        assert plan.rollbacks["rb1"].phase != "Failed"
        fresh = reconcile(p, rs, [], on("hand-built", "v1"), later(34), rollbacks=[rb])
        assert fresh.rollbacks["rb1"].verdict == "Failed: ImageChanged"
