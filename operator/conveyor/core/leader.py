"""Leader election decisions: given the Lease as observed, who I am and the time, what to do.

Two replicas run; one acts. The Lease (coordination.k8s.io/v1) names the holder. These functions
decide; the shell (kube/lease.py, handlers/leader.py) reads and writes the Lease — every write with
the resourceVersion it read, so two candidates never both win — and obeys.

Time: no decision compares the API server's clock (or another replica's) with ours. Like client-go,
a candidate judges another holder's lease by when *it* saw that exact record (holder, renewTime)
change on its own monotonic clock, and a leader judges its own lease from when it *sent* its last
successful renewal. Others can only see a renewal after it was sent, so they can never think the
lease expired before the leader does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    """Lease timings in seconds. renew_deadline < lease_duration: a leader that could not renew
    stops acting (and its writes are fenced) before anyone else may take the lease over."""

    lease_duration: float = 10.0
    renew_period: float = 2.0
    renew_deadline: float = 7.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "need 0 < renew_period < renew_deadline < lease_duration, got "
                f"{self.renew_period}, {self.renew_deadline}, {self.lease_duration}"
            )


@dataclass(frozen=True)
class Observed:
    """The Lease's spec as read (None fields: absent), and since when — on this process's
    monotonic clock — this exact record (holder and renewTime) has been seen unchanged."""

    holder: str | None
    renew_time: str | None
    duration_seconds: float | None
    transitions: int
    seen_since: float


class Action(enum.Enum):
    """What a candidate does with the Lease now."""

    CREATE = "create"  # no Lease yet: create it, holding it
    ACQUIRE = "acquire"  # free or expired: take it over (transitions + 1)
    RENEW = "renew"  # mine: refresh renewTime
    STAND_BY = "stand_by"  # held by someone else, not expired: wait


def observe(
    previous: Observed | None,
    *,
    holder: str | None,
    renew_time: str | None,
    duration_seconds: float | None,
    transitions: int,
    now: float,
) -> Observed:
    """The record as just read, remembering since when it has been unchanged: a holder that keeps
    renewing moves renewTime, which restarts the clock; a silent one does not."""
    unchanged = previous is not None and (previous.holder, previous.renew_time) == (holder, renew_time)
    since = previous.seen_since if unchanged and previous is not None else now
    return Observed(holder, renew_time, duration_seconds, transitions, since)


def decide(observed: Observed | None, me: str, now: float, timings: Timings) -> Action:
    """The next move on the Lease for candidate `me` at monotonic time `now`.

    My own identity on the Lease is mine to renew at once — a restarted process with the same
    identity (the same Pod) need not wait out its predecessor's lease. Someone else's lease is
    expired once it has not changed for its duration (the longer of its own and ours) on our clock.
    """
    if observed is None:
        return Action.CREATE
    if observed.holder == me:
        return Action.RENEW
    if not observed.holder:
        return Action.ACQUIRE  # released on shutdown: nobody holds it
    duration = max(observed.duration_seconds or 0.0, timings.lease_duration)
    if now - observed.seen_since >= duration:
        return Action.ACQUIRE
    return Action.STAND_BY


def leading_until(renewed_at: float | None, timings: Timings) -> float | None:
    """Until when (monotonic) a leader may act, given when it sent its last successful renewal
    (None: not leading). After this it must have stepped down: renew_deadline is shorter than the
    lease, leaving lease_duration - renew_deadline for the last writes in flight to land."""
    if renewed_at is None:
        return None
    return renewed_at + timings.renew_deadline


def may_write(renewed_at: float | None, now: float, timings: Timings) -> bool:
    """The fence: True only while this process leads and its lease is valid for longer than the
    safety margin (lease_duration - renew_deadline) — checked before every write."""
    until = leading_until(renewed_at, timings)
    return until is not None and now < until
