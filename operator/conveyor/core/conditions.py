"""Conditions per Kubernetes API conventions, kept in one place (as CloudNativePG does)."""

from __future__ import annotations

from datetime import datetime

from conveyor.api.common import MESSAGE_LIMIT, Condition, ConditionStatus, cut

MAX_MESSAGE = MESSAGE_LIMIT


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    """Cut a message to the API's comfort zone, marking the cut (for text that is not a model field:
    Events, condition messages; the models' `Message` fields cut themselves the same way)."""
    result: str = cut(message, limit)
    return result


def cut_bytes(message: str, limit: int = MAX_MESSAGE) -> str:
    """Cut a message to `limit` UTF-8 bytes (where an API counts bytes, as Events do), never inside a
    character, marking the cut."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


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
    previous = get_condition(conditions, type_)
    changed = previous is None or previous.status != status
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=truncate(message),
        observed_generation=generation,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
    )
    if previous is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, if present."""
    return next((c for c in conditions if c.type == type_), None)


# The condition an object of each kind answers with (Release, Rollback: Ready; Approval: Counted).
ANSWER_CONDITION = {"releases": "Ready", "rollbacks": "Ready", "approvals": "Counted", "pipelines": "Ready"}


def unreadable_conditions(
    plural: str, conditions: list[Condition], error: str, *, generation: int, now: datetime
) -> list[Condition]:
    """The conditions of an object the API server admitted but Conveyor cannot read (its schema and
    Conveyor's model disagree — an object stored under an older schema, or a gap in the schema): it is
    answered, False with reason InvalidSpec and what does not validate, rather than skipped in
    silence. It heals: the next pass that reads it sets its conditions as usual."""
    return set_condition(
        conditions,
        ANSWER_CONDITION[plural],
        "False",
        "InvalidSpec",
        f"Conveyor cannot read this object, so it does nothing with it: {error}",
        generation=generation,
        now=now,
    )


def validation_summary(errors: list[tuple[str, str]], limit: int = 5) -> str:
    """`path: message; ...` for the first `limit` validation errors (pydantic's loc and msg, never the
    input value: it may be huge)."""
    shown = "; ".join(f"{loc}: {msg}" for loc, msg in errors[:limit])
    more = len(errors) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
