"""The elector: one asyncio task that keeps looking at the Lease and obeys core/leader.py.

Leading opens the gate (workers run passes, every known pipeline gets a live pass at once) and the
write fence; losing the lease — another holder, or no successful renewal within the renew deadline —
closes both and the process stays on as a standby with warm caches (it does not exit: an API-server
outage then costs no restart, and the same replica can lead again the moment the lease is free).
On shutdown the leader releases the lease, so the standby takes over within one renew period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from conveyor.core.leader import Action, Observed, Timings, decide, observe
from conveyor.handlers.metrics import LEADER, LEADER_TRANSITIONS
from conveyor.kube.fence import Fence
from conveyor.kube.lease import LeaseStore, LeaseTaken, micro_time

log = logging.getLogger("conveyor.leader")

DEFAULT_LEASE_NAME = "conveyor-leader"
FALLBACK_NAMESPACE = "default"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_identity() -> str:
    """POD_NAME (the chart sets it from the downward API), else hostname and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def default_namespace() -> str:
    """POD_NAMESPACE, else the in-cluster ServiceAccount's namespace, else `default` (which every
    cluster has: `conveyor run` on a laptop needs no setup)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError), open(SERVICE_ACCOUNT_NAMESPACE) as f:
        return f.read().strip() or FALLBACK_NAMESPACE
    return FALLBACK_NAMESPACE


class Elector:
    """Campaigns for the Lease every renew period; calls `on_started` / `on_stopped` on the event
    loop when this process starts or stops leading."""

    def __init__(
        self,
        store: LeaseStore,
        fence: Fence,
        identity: str,
        timings: Timings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.fence = fence
        self.identity = identity
        self.timings = timings
        self.on_started: Callable[[], None] = lambda: None
        self.on_stopped: Callable[[], None] = lambda: None
        self._clock = clock
        self._wall = wall
        self._observed: Observed | None = None
        self._leading = False
        self._stop = asyncio.Event()
        self.lease_seen_at: float | None = None  # last successful read of the Lease (monotonic)

    @property
    def leading(self) -> bool:
        """True while this process leads and may write."""
        return self._leading and self.fence.leading()

    async def run(self) -> None:
        """Campaign until stopped."""
        log.info(
            "leader election: %s campaigns for lease %s/%s",
            self.identity,
            self.store.namespace,
            self.store.name,
        )
        while not self._stop.is_set():
            try:
                await self._round()
            except Exception:
                log.warning("leader election round failed", exc_info=True)
            self._check_lapsed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.timings.renew_period)

    def _check_lapsed(self) -> None:
        if self._leading and not self.fence.leading():
            self._step_down(
                f"no renewal succeeded within the renew deadline ({self.timings.renew_deadline:.0f}s)"
            )

    async def _round(self) -> None:
        try:
            lease = await asyncio.to_thread(self.store.get)
        except Exception as e:
            log.warning("leader election: cannot read lease %s: %s", self.store.name, e)
            return
        now = self._clock()
        self.lease_seen_at = now
        spec: dict[str, Any] = (lease or {}).get("spec") or {}
        self._observed = (
            None
            if lease is None
            else observe(
                self._observed,
                holder=spec.get("holderIdentity"),
                renew_time=spec.get("renewTime"),
                duration_seconds=spec.get("leaseDurationSeconds"),
                transitions=int(spec.get("leaseTransitions") or 0),
                now=now,
            )
        )
        action = decide(self._observed, self.identity, now, self.timings)
        if action is Action.STAND_BY:
            if self._leading:
                self._step_down(f"the lease is held by {spec.get('holderIdentity')}")
            return
        stamp = micro_time(self._wall())
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if action is Action.RENEW else stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0)
            + (1 if action is Action.ACQUIRE else 0),
        }
        sent = self._clock()  # others see this renewal only after it was sent: count from here
        try:
            if action is Action.CREATE:
                await asyncio.to_thread(self.store.create, new_spec)
            else:
                assert lease is not None
                await asyncio.to_thread(self.store.replace, lease, new_spec)
        except LeaseTaken as e:
            log.info("leader election: %s", e)
            if self._leading:
                self._step_down("another candidate took the lease")
            return
        except Exception as e:
            log.warning("leader election: writing lease %s failed: %s", self.store.name, e)
            return
        if self._leading:
            self.fence.renewed(sent)
            return
        self.fence.started(sent)
        self._leading = True
        LEADER.set(1)
        LEADER_TRANSITIONS.labels("leader").inc()
        previous = self._observed.holder if self._observed else None
        log.warning(
            "leader election: %s is the leader now (lease %s/%s, previous holder %s, term %d)",
            self.identity,
            self.store.namespace,
            self.store.name,
            previous or "none",
            self.fence.term,
        )
        self.on_started()

    def _step_down(self, why: str) -> None:
        self.fence.revoke()
        self._leading = False
        LEADER.set(0)
        LEADER_TRANSITIONS.labels("standby").inc()
        log.warning(
            "leader election: %s stepping down: %s; standing by, writes refused (NotLeader)",
            self.identity,
            why,
        )
        self.on_stopped()

    async def release(self, drain: Callable[[], bool] | None = None, drain_seconds: float = 2.0) -> None:
        """Stop campaigning; if leading, stop writing, give writes in flight up to `drain_seconds`
        (`drain()` True: none left), then free the lease so the standby need not wait it out."""
        self._stop.set()
        if not self._leading:
            return
        self._step_down("shutting down")
        deadline = self._clock() + drain_seconds
        while drain is not None and not drain() and self._clock() < deadline:
            await asyncio.sleep(0.05)  # threads in flight offer nothing to await; bounded by drain_seconds
        try:
            lease = await asyncio.to_thread(self.store.get)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = dict(lease["spec"], holderIdentity=None, leaseDurationSeconds=1, renewTime=None)
                await asyncio.to_thread(self.store.replace, lease, spec)
                log.info("leader election: released lease %s/%s", self.store.namespace, self.store.name)
        except Exception as e:
            log.warning(
                "leader election: could not release lease %s: %s (the standby waits it out)",
                self.store.name,
                e,
            )


class NoElection:
    """`--no-leader-election`: this process always leads (one replica, or development)."""

    leading = True
    lease_seen_at: float | None = None
    identity = "no-election"

    def __init__(self) -> None:
        self.on_started: Callable[[], None] = lambda: None
        self.on_stopped: Callable[[], None] = lambda: None

    async def run(self) -> None:
        """Lead at once, forever."""
        LEADER.set(1)
        self.on_started()

    async def release(self, drain: Callable[[], bool] | None = None, drain_seconds: float = 2.0) -> None:
        """Nothing to release."""
