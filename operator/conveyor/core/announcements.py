"""Transitions recorded in status whose Event was never posted.

A pass writes a status (its history entries are the record that travels with the object) and then
posts the Events and audit lines for it. An operator killed between the two loses those Events: the
restarted operator compares each Release's and Rollback's recent history with the Events Conveyor
posted about it (each Event carries its transition's time as eventTime) and posts what is missing,
with the transition's own time. Pure: the shell lists the Events and posts what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conveyor.api.release import HistoryEntry
from conveyor.core.plan import CONVEYOR, Emit, Kind

# Events expire (about an hour by default): a transition older than this may have had its Event and
# lost it to expiry, so it is not posted again — its history entry and audit line remain.
RECOVERY_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class Recorded:
    """One object's history as read: who it is and the release its Events are about."""

    kind: Kind
    name: str
    uid: str
    release: str | None
    history: list[HistoryEntry]


@dataclass(frozen=True)
class Missing:
    """A transition to announce again: the Event, the object's uid and the transition's time."""

    event: Emit
    uid: str
    time: datetime


def _key(uid: str, reason: str, moment: datetime) -> tuple[str, str, datetime]:
    # eventTime is a MicroTime (microseconds, UTC), as are the history's times: compare in UTC.
    return uid, reason, moment.astimezone(UTC)


def recent(objects: list[Recorded], now: datetime) -> bool:
    """True when some object has a transition young enough to check (else nothing needs listing)."""
    return any(now - h.time <= RECOVERY_WINDOW for o in objects for h in o.history)


def unannounced(
    objects: list[Recorded], posted: set[tuple[str, str, datetime]], now: datetime
) -> list[Missing]:
    """The recent history entries with no Event about the same object (uid), reason and time among
    `posted` (uid, reason, eventTime), oldest first."""
    seen = {_key(*p) for p in posted}
    out: list[Missing] = []
    for o in objects:
        for h in o.history:
            if now - h.time > RECOVERY_WINDOW or _key(o.uid, h.reason, h.time) in seen:
                continue
            event = Emit(
                kind=o.kind,
                name=o.name,
                type="Warning" if h.warning else "Normal",
                reason=h.reason,
                message=h.message,
                stage=h.stage,
                release=o.release,
                commit=h.commit,
                digest=h.digest,
                ci_run=h.ci_run,
                actor=h.actor or CONVEYOR,
            )
            out.append(Missing(event, o.uid, h.time))
    out.sort(key=lambda m: m.time)
    return out
