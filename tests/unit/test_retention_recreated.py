"""Retention when what it deletes is created again (Argo CD's self-heal re-creating a Release whose
file is still in Git): found by a review of the first version, each case once a bug — an old build
promoted anew, a legitimate release superseded, a deletion without a stored record, a loop."""

from __future__ import annotations

import itertools

from conveyor.api.release import Phase
from conveyor.core.plan import DeleteRelease
from conveyor.core.promotion import reconcile
from support.builders import (
    REPO,
    created_again,
    deployment_view,
    digest_of,
    later,
    release,
    verified_in,
    with_retired,
    world,
)
from support.builders import keeping as keep


def test_a_recreated_release_never_supersedes_an_older_waiting_one():
    p = keep(
        1,
        stages=[
            {"name": "staging", "namespace": "shop-staging", "requiresApproval": True},
            {"name": "prod", "namespace": "shop-prod"},
        ],
    )
    rs = [
        release(f"r{i}", created=later(i * 10), status=verified_in("staging", "prod", at=i * 10))
        for i in range(1, 4)
    ]
    w = world(
        staging=deployment_view(f"{REPO}@{digest_of('r3')}", release_name="r3"),
        prod=deployment_view(f"{REPO}@{digest_of('r3')}", release_name="r3"),
    )
    first = reconcile(p, rs, [], w, later(100))
    assert first.pipeline.retired, "r1 recorded"
    p2 = with_retired(p, first.pipeline.retired)
    waiting = release("a", created=later(150))  # a legit new build, waiting for approval into staging
    plan = reconcile(p2, [*rs[1:], waiting], [], w, later(160))
    assert plan.releases["a"].phase != Phase.SUPERSEDED
    again = created_again("r1", later(200))
    a_status = waiting.model_copy(update={"status": plan.releases["a"]})
    plan = reconcile(p2, [*rs[1:], a_status, again], [], w, later(210))
    assert plan.releases["a"].phase != Phase.SUPERSEDED, "a legit release superseded by a Retired re-creation"


def test_more_due_than_the_record_holds_never_deletes_without_a_stored_record():
    p = keep(1)
    n = 150
    rs = {
        f"r{i}": release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10))
        for i in range(n)
    }
    last = f"r{n - 1}"
    w = world(prod=deployment_view(f"{REPO}@{digest_of(last)}", release_name=last))
    retired = []
    deleted = 0
    for k in range(6):
        plan = reconcile(with_retired(p, retired), list(rs.values()), [], w, later(10000 + k))
        rec = {(r.release, r.uid) for r in plan.pipeline.retired}
        dels = [a for a in plan.actions if isinstance(a, DeleteRelease)]
        missing = [a.release for a in dels if (a.release, a.uid) not in rec]
        assert not missing, f"pass {k}: {len(missing)} deleted whose record this pass's status drops"
        retired = plan.pipeline.retired
        for a in dels:
            rs.pop(a.release)
        deleted += len(dels)
    assert deleted > 0, "retention deleted nothing: the check above proved nothing"


def test_recreated_releases_do_not_take_the_keep_window():
    p = keep(3)
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 6)]
    w = world(prod=deployment_view(f"{REPO}@{digest_of('r5')}", release_name="r5"))
    first = reconcile(p, rs, [], w, later(100))
    assert sorted(r.release for r in first.pipeline.retired) == ["r1", "r2"]
    p2 = with_retired(p, first.pipeline.retired)
    back = [created_again(name, later(200 + i)) for i, name in enumerate(["r1", "r2"])]
    plan = reconcile(p2, [*rs[2:], *back], [], w, later(210))
    back = [b.model_copy(update={"status": plan.releases[b.metadata.name]}) for b in back]
    plan = reconcile(p2, [*rs[2:], *back], [], w, later(220))
    newly = sorted(r.release for r in plan.pipeline.retired)
    assert "r3" not in newly, "r3 is among the newest 3 real releases, yet retention now deletes it"


def test_a_record_of_a_release_no_longer_due_is_withdrawn():
    p = keep(1)
    rs = [release(f"r{i}", created=later(i * 10), status=verified_in("prod", at=i * 10)) for i in range(1, 4)]
    w = world(prod=deployment_view(f"{REPO}@{digest_of('r3')}", release_name="r3"))
    first = reconcile(p, rs, [], w, later(100))
    # the owner raises keepReleases before the next pass: r1 is no longer doomed, never deleted
    p2 = with_retired(keep(10), first.pipeline.retired)
    second = reconcile(p2, rs, [], w, later(101))
    assert not [a for a in second.actions if isinstance(a, DeleteRelease)]
    # the person deletes r1 and re-creates it (a restore): it is answered "deleted by retention"
    again = created_again("r1", later(200))
    plan = reconcile(with_retired(keep(10), second.pipeline.retired), [again, *rs[1:]], [], w, later(210))
    assert plan.releases["r1"].phase != Phase.SUPERSEDED, "retention never deleted r1"


def test_more_recreated_releases_than_the_record_holds_stop_retention_instead_of_looping():
    p = keep(1)
    n = 130
    rs = {
        f"r{i:03d}": release(f"r{i:03d}", created=later(i * 10), status=verified_in("prod", at=i * 10))
        for i in range(n)
    }
    last = f"r{n - 1:03d}"
    w = world(prod=deployment_view(f"{REPO}@{digest_of(last)}", release_name=last))
    retired = []
    deletions = 0
    promoted = set()
    gen = itertools.count()
    t = 10000
    per_window = []
    for k in range(600):
        t += 2
        plan = reconcile(with_retired(p, retired), list(rs.values()), [], w, later(t))
        retired = plan.pipeline.retired
        for name, st in plan.releases.items():
            rs[name] = rs[name].model_copy(update={"status": st})
            if st.phase not in (Phase.SUPERSEDED, Phase.SUCCEEDED):
                promoted.add((name, rs[name].metadata.uid, st.phase))
        for a in plan.actions:
            if isinstance(a, DeleteRelease):
                deletions += 1
                rs.pop(a.release)
                # Argo CD's self-heal, at once
                rs[a.release] = created_again(a.release, later(t + 1), f"uid-{a.release}-{next(gen)}")
        if k % 100 == 99:
            per_window.append(deletions)
    assert per_window[-1] == per_window[-2], "retention keeps deleting what Argo CD re-creates"
    assert not promoted, f"an old build was promoted again: {sorted(promoted)[:5]}"
