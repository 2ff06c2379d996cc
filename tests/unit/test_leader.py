"""Leader election decisions (core/leader.py), the write fence (kube/fence.py) and the liveness and
readiness decisions (core/health.py): pure, on a clock the test sets."""

from __future__ import annotations

import pytest

from conveyor.core.health import DEAD_WATCH_SECONDS, STUCK_PASS_SECONDS, Activity, ready, wedged
from conveyor.core.leader import Action, Observed, Timings, decide, may_write, observe
from conveyor.kube.fence import Fence, NotLeader

T = Timings(lease_duration=10, renew_period=2, renew_deadline=7)


def held(holder: str | None, since: float, duration: float | None = 10, renew: str = "r1") -> Observed:
    return Observed(holder, renew, duration, 0, since)


def test_no_lease_is_created_and_a_released_one_taken_at_once():
    assert decide(None, "a", 0.0, T) is Action.CREATE
    assert decide(held(None, since=100.0), "a", 100.0, T) is Action.ACQUIRE
    assert decide(held("", since=100.0), "a", 100.0, T) is Action.ACQUIRE


def test_my_own_lease_is_renewed_even_when_a_previous_me_left_it():
    # a restarted process with the same identity (the same Pod) does not wait out its own lease
    assert decide(held("a", since=100.0), "a", 100.0, T) is Action.RENEW


def test_someone_elses_lease_expires_exactly_one_duration_after_it_stopped_changing():
    lease = held("b", since=100.0)
    assert decide(lease, "a", 100.0, T) is Action.STAND_BY
    assert decide(lease, "a", 109.999, T) is Action.STAND_BY
    assert decide(lease, "a", 110.0, T) is Action.ACQUIRE


def test_the_longer_of_the_leases_duration_and_ours_counts():
    assert decide(held("b", since=0.0, duration=30), "a", 20.0, T) is Action.STAND_BY
    assert decide(held("b", since=0.0, duration=30), "a", 30.0, T) is Action.ACQUIRE
    assert decide(held("b", since=0.0, duration=1), "a", 5.0, T) is Action.STAND_BY  # ours: 10
    assert decide(held("b", since=0.0, duration=None), "a", 10.0, T) is Action.ACQUIRE


def test_a_renewing_holder_restarts_the_observers_clock_a_silent_one_does_not():
    first = observe(None, holder="b", renew_time="r1", duration_seconds=10, transitions=0, now=100.0)
    same = observe(first, holder="b", renew_time="r1", duration_seconds=10, transitions=0, now=108.0)
    assert same.seen_since == 100.0
    assert decide(same, "a", 110.0, T) is Action.ACQUIRE
    renewed = observe(same, holder="b", renew_time="r2", duration_seconds=10, transitions=0, now=109.0)
    assert renewed.seen_since == 109.0
    assert decide(renewed, "a", 110.0, T) is Action.STAND_BY
    other = observe(renewed, holder="c", renew_time="r2", duration_seconds=10, transitions=1, now=111.0)
    assert other.seen_since == 111.0  # a new holder with the same stamp is a change too


def test_no_clock_but_ours_is_compared():
    # renewTime far in the past or future (another machine's clock) changes nothing: only change counts
    a = observe(
        None,
        holder="b",
        renew_time="1970-01-01T00:00:00.000000Z",
        duration_seconds=10,
        transitions=0,
        now=5.0,
    )
    assert decide(a, "a", 14.0, T) is Action.STAND_BY
    b = observe(
        None,
        holder="b",
        renew_time="2999-01-01T00:00:00.000000Z",
        duration_seconds=10,
        transitions=0,
        now=5.0,
    )
    assert decide(b, "a", 15.0, T) is Action.ACQUIRE


def test_a_leader_may_write_only_until_its_renew_deadline_before_anyone_may_take_over():
    assert not may_write(None, 0.0, T)
    assert may_write(100.0, 100.0, T)
    assert may_write(100.0, 106.999, T)
    assert not may_write(100.0, 107.0, T)
    # the earliest anyone else may take over: it saw the renewal no earlier than it was sent
    observer = held("a", since=100.0)
    assert decide(observer, "b", 109.999, T) is Action.STAND_BY
    assert T.renew_deadline < T.lease_duration


def test_timings_must_leave_a_safety_margin():
    with pytest.raises(ValueError, match="renew_deadline"):
        Timings(lease_duration=10, renew_period=2, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_deadline"):
        Timings(lease_duration=10, renew_period=8, renew_deadline=7)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fence_refuses_writes_unless_leading_with_time_to_spare():
    clock = Clock()
    fence = Fence(T, clock)
    with pytest.raises(NotLeader):
        fence.check("create a Job")
    fence.started(clock.now)
    fence.check("create a Job")
    clock.now += 6.9
    fence.check("create a Job")
    clock.now += 0.1  # no renewal for the renew deadline: refused before the lease can expire
    with pytest.raises(NotLeader, match="create a Job"):
        fence.check("create a Job")
    fence.renewed(clock.now)
    fence.check()
    fence.revoke()
    with pytest.raises(NotLeader):
        fence.check()


def test_a_pass_of_an_earlier_term_writes_nothing_even_when_this_process_leads_again():
    clock = Clock()
    fence = Fence(T, clock)
    fence.started(clock.now)
    fence.bind()  # a pass starts in term 1
    fence.check()
    fence.revoke()
    fence.started(clock.now)  # term 2
    with pytest.raises(NotLeader, match="term 1"):
        fence.check()
    fence.bind()  # a new pass of term 2
    fence.check()


def test_liveness_fails_only_when_a_pass_is_stuck_or_a_watch_is_dead():
    now = 10_000.0
    healthy = Activity(passes_started=(now - 20,), watches_seen={"releases": now - 70, "jobs": now - 290})
    assert wedged(healthy, now) == []
    stuck = Activity(passes_started=(now - 1, now - STUCK_PASS_SECONDS - 1), watches_seen={})
    assert "reconcile pass" in wedged(stuck, now)[0]
    assert wedged(Activity((now - STUCK_PASS_SECONDS,), {}), now) == []  # the edge itself still passes
    dead = Activity(
        passes_started=(), watches_seen={"releases": now - 5, "jobs": now - DEAD_WATCH_SECONDS - 1}
    )
    assert wedged(dead, now) == [
        f"the jobs watch delivered nothing for {DEAD_WATCH_SECONDS + 1:.0f}s (limit 600s)"
    ]
    assert wedged(Activity((), {}), now) == []  # nothing running, nothing watched yet: alive


def test_ready_means_caches_synced_and_leading_or_a_standby_that_reads_the_lease():
    assert not ready(caches_synced=False, leading=True, lease_seen_ago=0.0, lease_duration=10)
    assert ready(caches_synced=True, leading=True, lease_seen_ago=None, lease_duration=10)
    assert ready(caches_synced=True, leading=False, lease_seen_ago=3.0, lease_duration=10)
    assert not ready(caches_synced=True, leading=False, lease_seen_ago=11.0, lease_duration=10)
    assert not ready(caches_synced=True, leading=False, lease_seen_ago=None, lease_duration=10)


def test_the_watch_tracker_sees_kopfs_streams_listings_and_bookmarks(monkeypatch: pytest.MonkeyPatch):
    import asyncio
    import types

    from kopf._cogs.clients import watching

    from conveyor.handlers import health

    async def fake_stream(**kwargs):
        yield {"type": None, "object": {}}
        yield watching.Bookmark.LISTED
        yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}

    monkeypatch.setattr(watching, "continuous_watch", fake_stream)
    clock = Clock()
    tracker = health.WatchTracker(clock)
    health.install(tracker)
    health.install(tracker)  # idempotent: wrapped once
    assert watching.continuous_watch is not fake_stream
    assert tracker.installed

    async def consume(plural: str, namespace: str | None) -> None:
        resource = types.SimpleNamespace(plural=plural)
        async for _ in watching.continuous_watch(resource=resource, namespace=namespace):
            clock.now += 1

    for kind in health.WATCHED[:-1]:
        asyncio.run(consume(kind, "apps"))
    asyncio.run(consume("namespaces", None))  # kopf's own observer watch: not judged
    assert not tracker.synced()  # jobs never listed
    asyncio.run(consume("jobs", None))
    assert tracker.synced()
    assert set(tracker.seen()) == {f"{k} in apps" for k in health.WATCHED[:-1]} | {"jobs cluster-wide"}
    assert tracker.seen()["jobs cluster-wide"] == clock.now - 1  # the bookmark was the last delivery
