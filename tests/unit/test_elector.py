"""The elector (handlers/leader.py) against an in-memory Lease with the API server's rules — a
replace must carry the version read (else 409) — on a clock the test moves; and the fence wired into
every write of kube/client.py."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from conveyor.core.leader import Timings
from conveyor.handlers.leader import Elector
from conveyor.kube.client import Kube
from conveyor.kube.fence import Fence, NotLeader
from conveyor.kube.lease import LeaseTaken

T = Timings(lease_duration=10, renew_period=2, renew_deadline=7)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """One Lease with resourceVersion preconditions; `down` makes every call fail."""

    namespace, name = "ops", "conveyor-leader"

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("API server unreachable")

    def get(self) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.obj)

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if self.obj is not None:
            raise LeaseTaken("exists")
        self.version += 1
        self.obj = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
        return copy.deepcopy(self.obj)

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        self._check()
        assert self.obj is not None
        if lease["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise LeaseTaken("changed")
        self.version += 1
        self.obj = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
        return copy.deepcopy(self.obj)


def elector(store: MemoryLease, me: str, clock: Clock) -> Elector:
    e = Elector(store, Fence(T, clock), me, T, clock=clock)  # type: ignore[arg-type]
    e.events = []  # type: ignore[attr-defined]
    e.on_started = lambda: e.events.append("started")  # type: ignore[attr-defined]
    e.on_stopped = lambda: e.events.append("stopped")  # type: ignore[attr-defined]
    return e


def rounds(*pairs: tuple[Elector, Clock, float]) -> None:
    async def run() -> None:
        for e, clock, at in pairs:
            clock.now = at
            await e._round()
            e._check_lapsed()

    asyncio.run(run())


def test_one_leader_the_standby_takes_over_only_after_the_lease_went_unrenewed():
    store, ca, cb = MemoryLease(), Clock(), Clock()
    a, b = elector(store, "a", ca), elector(store, "b", cb)
    rounds((a, ca, 100), (b, cb, 100))
    assert a.leading
    assert not b.leading
    assert store.obj is not None
    assert store.obj["spec"]["holderIdentity"] == "a"
    rounds((a, ca, 102), (b, cb, 102), (b, cb, 111))  # a renewed at 102: b saw that at 102
    assert not b.leading
    # a dies (no more renewals): b takes over 10 s after it first saw the last renewal
    rounds((b, cb, 111.9))
    assert not b.leading
    rounds((b, cb, 112.0))
    assert b.leading
    assert store.obj["spec"]["leaseTransitions"] == 1
    assert b.events == ["started"]  # type: ignore[attr-defined]


def test_a_leader_that_cannot_renew_stops_writing_before_the_lease_can_expire_and_steps_down():
    store, ca, cb = MemoryLease(), Clock(), Clock()
    a, b = elector(store, "a", ca), elector(store, "b", cb)
    rounds((a, ca, 100), (b, cb, 100))
    store.down = True  # a partition: a cannot renew
    rounds((a, ca, 106.9))
    assert a.leading
    a.fence.check()
    rounds((a, ca, 107.0))
    assert not a.leading
    with pytest.raises(NotLeader):
        a.fence.check()
    assert a.events == ["started", "stopped"]  # type: ignore[attr-defined]
    store.down = False
    rounds((b, cb, 110.0))  # the earliest b may lead: a stopped writing 3 s before
    assert b.leading


def test_a_paused_leader_finds_another_holder_and_steps_down_having_written_nothing():
    store, ca, cb = MemoryLease(), Clock(), Clock()
    a, b = elector(store, "a", ca), elector(store, "b", cb)
    rounds((a, ca, 100), (b, cb, 100), (b, cb, 110))
    assert b.leading
    # a wakes up at 130: before its elector even looks, the fence already refuses
    ca.now = 130
    with pytest.raises(NotLeader):
        a.fence.check()
    rounds((a, ca, 130))
    assert not a.leading
    assert store.obj is not None
    assert store.obj["spec"]["holderIdentity"] == "b"


class StaleView:
    """The Lease as a candidate read it a moment ago (writes go to the real one)."""

    def __init__(self, store: MemoryLease, stale: dict[str, Any] | None) -> None:
        self.store, self.stale = store, stale
        self.namespace, self.name = store.namespace, store.name

    def get(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.stale)

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        return self.store.replace(lease, spec)


def test_two_candidates_seeing_the_same_expired_lease_one_wins():
    store, ca, cb = MemoryLease(), Clock(), Clock()
    rounds((elector(store, "a", ca), ca, 100))
    b, c = elector(store, "b", cb), elector(store, "c", cb)
    rounds((b, cb, 101), (c, cb, 101))  # both see a's lease; a dies
    stale = store.get()  # c reads it expired at 120 ...
    rounds((b, cb, 120))  # ... b reads and takes it first ...
    c.store = StaleView(store, stale)  # type: ignore[assignment]
    rounds((c, cb, 120))  # ... c's replace carries the old version: 409
    assert b.leading
    assert not c.leading
    assert store.obj is not None
    assert store.obj["spec"]["holderIdentity"] == "b"


def test_release_hands_the_lease_over_at_once():
    store, ca, cb = MemoryLease(), Clock(), Clock()
    a, b = elector(store, "a", ca), elector(store, "b", cb)
    rounds((a, ca, 100), (b, cb, 100))
    asyncio.run(a.release())
    assert not a.leading
    with pytest.raises(NotLeader):
        a.fence.check()
    rounds((b, cb, 100.5))
    assert b.leading


def test_a_restarted_process_with_the_same_identity_leads_again_at_once():
    store, clock = MemoryLease(), Clock()
    rounds((elector(store, "pod-0", clock), clock, 100))
    again = elector(store, "pod-0", clock)  # killed and restarted: a fresh process, same identity
    rounds((again, clock, 101))
    assert again.leading


class Recorder:
    """An ApiClient stand-in: any request reaching it is a write that got past the fence."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def update_params_for_auth(self, *_: Any) -> None:
        self.calls.append("auth")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a request was made ({name})")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("create_job", ("ns", {"metadata": {"name": "j"}})),
        ("patch_deployment", ("ns", "shop", {})),
        ("patch_custom_status", ("releases", "ns", "r", {"phase": "x"})),
        ("patch_custom_metadata", ("releases", "ns", "r", {})),
        ("label_custom", ("releases", "ns", "r", {})),
        ("create_custom", ("rollbacks", "ns", {})),
        ("delete_custom", ("releases", "ns", "r")),
        ("delete_job", ("ns", "j")),
        ("create_event", ("ns", {})),
    ],
)
def test_every_write_asks_the_fence_before_any_request(method: str, args: tuple[Any, ...]):
    api = Recorder()
    kube = Kube(api, Fence(T, Clock()))  # type: ignore[arg-type]  (never leading)
    with pytest.raises(NotLeader):
        getattr(kube, method)(*args)
    assert api.calls == []
