"""A release's phase and its four conditions, set together from one verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.api.common import ConditionStatus
from conveyor.api.release import Phase, ReleaseStatus
from conveyor.core.conditions import set_condition


@dataclass
class Verdict:
    """How a release's pass ended: its phase and the reason/message its conditions carry."""

    phase: Phase
    reason: str
    message: str
    progressing: ConditionStatus | None = None  # override (e.g. blocked while in a stage)


_CONDITIONS: dict[Phase, tuple[ConditionStatus, ConditionStatus, ConditionStatus, ConditionStatus]] = {
    # phase: (Ready, Progressing, Failed, AwaitingApproval)
    Phase.PENDING: ("False", "False", "False", "False"),
    Phase.WAITING: ("False", "False", "False", "False"),
    Phase.AWAITING_APPROVAL: ("False", "False", "False", "True"),
    Phase.PROGRESSING: ("False", "True", "False", "False"),
    Phase.SUCCEEDED: ("True", "False", "False", "False"),
    Phase.FAILED: ("False", "False", "True", "False"),
    Phase.SUPERSEDED: ("False", "False", "False", "False"),
    Phase.ROLLED_BACK: ("False", "False", "True", "False"),
    Phase.CANCELLED: ("False", "False", "False", "False"),
    Phase.VETOED: ("False", "False", "False", "False"),
}


def apply_verdict(status: ReleaseStatus, verdict: Verdict, generation: int, now: datetime) -> None:
    """Write phase, message and the four conditions from a verdict."""
    status.phase = verdict.phase
    status.message = verdict.message  # a Message field: cut to its bound on assignment
    status.observed_generation = generation
    ready, progressing, failed, awaiting = _CONDITIONS[verdict.phase]
    if verdict.progressing is not None:
        progressing = verdict.progressing
    conds = status.conditions
    for ctype, value in (
        ("Ready", ready),
        ("Progressing", progressing),
        ("Failed", failed),
        ("AwaitingApproval", awaiting),
    ):
        conds = set_condition(
            conds, ctype, value, verdict.reason, verdict.message, generation=generation, now=now
        )
    status.conditions = conds
