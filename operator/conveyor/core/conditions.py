"""Conditions per Kubernetes API conventions, kept in one place (as CloudNativePG does)."""

from __future__ import annotations

from datetime import datetime

from conveyor.api.common import Condition, ConditionStatus

MAX_MESSAGE = 1024


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    """Cut a message to the API's comfort zone, marking the cut."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Return `conditions` with `type_` set; lastTransitionTime moves only when the status changes."""
    message = truncate(message)
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        changed = c.status != status
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=now if changed else c.last_transition_time,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=now,
            )
        )
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, if present."""
    return next((c for c in conditions if c.type == type_), None)
