"""Retention, decided without a cluster: old finished releases go; what runs, what a rollback would
go back to, what is live, and young vetoed releases stay."""

from __future__ import annotations

from conveyor.api.release import Phase
from conveyor.core.plan import DeleteRelease
from conveyor.core.promotion import reconcile
from support.builders import (
    REPO,
    created_again,
    deployment_view,
    digest_of,
    keeping,
    later,
    pipeline,
    release,
    retention_pass,
    verified_in,
    with_retired,
    world,
)


def test_old_finished_releases_beyond_the_count_are_deleted_and_the_deletion_is_logged():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={
                    "retention": p.spec.retention.model_copy(
                        update={"keep_releases": 2, "vetoed_seconds": 3600}
                    )
                }
            )
        }
    )
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 6)]
    # r2 was rolled away from recently (vetoed, young); r3 failed; r1 is old and plain.
    rs[1] = rs[1].model_copy(update={"status": rs[1].status.model_copy(update={"vetoed": True})})
    rs[2] = rs[2].model_copy(update={"status": rs[2].status.model_copy(update={"phase": Phase.FAILED})})
    live = release("r6", created=later(70))  # newest, still on its way
    w = world(prod=deployment_view(f"{REPO}@{digest_of('r5')}", release_name="r5"))
    plan = retention_pass(p, [*rs, live], [], w, later(100))
    deleted = [a.release for a in plan.actions if isinstance(a, DeleteRelease)]
    # kept: r6 (newest, live), r5 (newest, runs in prod), r4 (prod's rollback target), r2 (vetoed, young)
    assert deleted == ["r1", "r3"]
    logged = [e.message for e in plan.events if e.reason == "ReleaseDeleted"]
    assert len(logged) == 2
    assert "beyond the newest 2 releases" in logged[0]


def test_retention_deletes_only_on_live_reads():
    """A deletion is for good: on a cache (which may not show an image set by hand a moment ago —
    the model test found one) retention asks for live reads instead of deleting."""
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={"retention": p.spec.retention.model_copy(update={"keep_releases": 2})}
            )
        }
    )
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 5)]

    def on_r4():
        return world(prod=deployment_view(f"{REPO}@{digest_of('r4')}", release_name="r4"))

    cached = on_r4()
    for sw in cached.stages.values():
        sw.fresh = False
    plan = reconcile(p, rs, [], cached, later(100))
    assert plan.refresh
    assert not [a for a in plan.actions if isinstance(a, DeleteRelease)]
    assert "ReleaseDeleted" not in [e.reason for e in plan.events]
    plan = retention_pass(p, rs, [], on_r4(), later(100))
    assert not plan.refresh
    assert [a.release for a in plan.actions if isinstance(a, DeleteRelease)] == ["r1", "r2"]


def test_a_vetoed_release_older_than_the_window_goes_too():
    p = pipeline(stages=[{"name": "prod", "namespace": "shop-prod"}])
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={
                    "retention": p.spec.retention.model_copy(
                        update={"keep_releases": 1, "vetoed_seconds": 60}
                    )
                }
            )
        }
    )
    old = release("old", created=later(0), status=verified_in("prod", at=0))
    old = old.model_copy(
        update={"status": old.status.model_copy(update={"vetoed": True, "accepted_at": later(0)})}
    )
    rs = [
        old,
        release("a", created=later(10), status=verified_in("prod", at=10)),
        release("b", created=later(20), status=verified_in("prod", at=20)),
    ]
    plan = retention_pass(
        p, rs, [], world(prod=deployment_view(f"{REPO}@{digest_of('b')}", release_name="b")), later(1000)
    )
    assert [a.release for a in plan.actions if isinstance(a, DeleteRelease)] == ["old"]


def r1_retired():
    """Three releases verified in prod, keep one: r1 is recorded for deletion (r2 is prod's rollback
    target). (pipeline, releases, world, the pipeline with that record stored)."""
    p = keeping(1)
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 4)]
    w = world(prod=deployment_view(f"{REPO}@{digest_of('r3')}", release_name="r3"))
    first = reconcile(p, rs, [], w, later(100))
    return p, rs, w, with_retired(p, first.pipeline.retired)


def test_retention_records_what_it_deletes_before_deleting_it():
    # Found by the adversarial round on Argo CD: retention deleted a Release still in Git, self-heal
    # created it again, and Conveyor promoted that old build anew. The record comes first (a pass
    # that dies between the two writes must not forget it), the deletion at the next pass.
    p = keeping(1)
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 4)]
    w = world(prod=deployment_view(f"{REPO}@{digest_of('r3')}", release_name="r3"))
    first = reconcile(p, rs, [], w, later(100))
    assert not [a for a in first.actions if isinstance(a, DeleteRelease)]
    assert {(r.release, r.digest, r.uid) for r in first.pipeline.retired} == {
        ("r1", digest_of("r1"), "uid-r1")
    }
    second = retention_pass(p, rs, [], w, later(100))
    assert [(a.release, a.uid) for a in second.actions if isinstance(a, DeleteRelease)] == [("r1", "uid-r1")]


def test_a_release_retention_deleted_and_created_again_is_never_promoted_nor_deleted_again():
    _, rs, w, retired = r1_retired()
    # Argo CD's self-heal creates r1 again from Git: a new uid, the newest creation time
    again = created_again("r1", later(200))
    plan = reconcile(retired, [again, *rs[1:]], [], w, later(210))
    status = plan.releases["r1"]
    assert status.phase == Phase.SUPERSEDED
    assert any(c.reason == "Retired" for c in status.conditions)
    assert not [a for a in plan.actions if type(a).__name__ in ("CreateJob", "SetImage")]
    assert [e.reason for e in plan.events if e.name == "r1"].count("ReleaseRetired") == 1
    # terminal now — and retention leaves it alone: deleting it again would only see it re-created
    done = again.model_copy(update={"status": status})
    later_plan = retention_pass(retired, [done, *rs[1:]], [], w, later(300))
    assert "r1" not in [a.release for a in later_plan.actions if isinstance(a, DeleteRelease)]
    assert later_plan.pipeline.retired[0].uid == "uid-r1"


def test_a_new_release_that_only_shares_the_name_of_a_retired_one_is_promoted():
    _, rs, w, retired = r1_retired()
    fresh = release("r1", created=later(200), label="a-new-build")  # another digest under the name
    plan = reconcile(retired, [fresh, *rs[1:]], [], w, later(210))
    assert plan.releases["r1"].phase != Phase.SUPERSEDED
