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
from support.builders import REPO, deployment_view, digest_of, later, pipeline, release, world

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
    assert "1 old replica(s) still terminating" in plan.releases["r1"].message
    assert plan.requeue_after <= 5
    # Still so after several deadlines: the verdict comes at CLUSTER_LAG_FACTOR deadlines.
    late = reconcile(p, rs, [], world(staging=terminating), later(120 * CLUSTER_LAG_FACTOR + 1))
    assert late.releases["r1"].phase == Phase.FAILED


def test_a_controller_that_has_not_observed_the_change_is_waited_for():
    rs, p = started()
    unseen = replace(deployment_view(image("r1"), release_name="r1", rolled_out=False), observed_generation=1)
    plan = reconcile(p, rs, [], world(staging=unseen), later(121))
    assert plan.releases["r1"].phase == Phase.PROGRESSING
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
