"""Retention, decided without a cluster: old finished releases go; what runs, what a rollback would
go back to, what is live, and young vetoed releases stay."""

from __future__ import annotations

from conveyor.api.release import Phase
from conveyor.core.plan import DeleteRelease
from conveyor.core.promotion import reconcile
from support.builders import REPO, deployment_view, digest_of, later, pipeline, release, verified_in, world


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
    plan = reconcile(p, [*rs, live], [], w, later(100))
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
    plan = reconcile(p, rs, [], on_r4(), later(100))
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
    plan = reconcile(
        p, rs, [], world(prod=deployment_view(f"{REPO}@{digest_of('b')}", release_name="b")), later(1000)
    )
    assert [a.release for a in plan.actions if isinstance(a, DeleteRelease)] == ["old"]
