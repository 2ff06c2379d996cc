"""Approval policy: which Approvals count for a release entering a stage, and why the others do not.

Only the identity the API server stamped counts (spec.approver). Per stage: allowed approvers
(users and/or groups), a minimum number of distinct approvers, four eyes (the release's requester
may not approve it), and an expiry. An Approval that does not count is kept and marked with the
reason — never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.api.approval import Approval
from conveyor.api.pipeline import Pipeline, Stage
from conveyor.api.release import Release

# Reasons an Approval does not count.
IDENTITY_NOT_ENFORCED = "IdentityNotEnforced"
UNAUTHENTICATED = "Unauthenticated"
WRONG_STAGE = "WrongStage"
NOT_REQUIRED = "NotRequired"
NOT_AN_APPROVER = "NotAnApprover"
SELF_APPROVAL = "SelfApproval"
REQUESTER_UNKNOWN = "RequesterUnknown"
EXPIRED = "Expired"
DUPLICATE = "DuplicateApprover"


@dataclass(frozen=True)
class Judgement:
    """Whether one Approval counts, and why."""

    counted: bool
    reason: str
    message: str
    expires_at: datetime | None = None


def judge(
    approval: Approval,
    release: Release,
    pipeline: Pipeline,
    *,
    enforced: bool,
    now: datetime,
) -> Judgement:
    """Judge one Approval on its own (duplicates are judged by `gate`)."""
    stage = pipeline.stage(approval.spec.stage)
    if stage is None:
        names = ", ".join(s.name for s in pipeline.spec.stages)
        return Judgement(
            False,
            WRONG_STAGE,
            f"pipeline {pipeline.metadata.name} has no stage {approval.spec.stage!r} (stages: {names})",
        )
    if not stage.requires_approval:
        return Judgement(False, NOT_REQUIRED, f"stage {stage.name} does not require approval")
    if not enforced:
        return Judgement(
            False,
            IDENTITY_NOT_ENFORCED,
            "the admission policies that stamp authenticated "
            "identities are not installed (apply crds/): Conveyor counts no approval it cannot "
            "attribute",
        )
    who = approval.spec.approver
    if who is None:
        return Judgement(
            False,
            UNAUTHENTICATED,
            "no authenticated approver was stamped on this Approval "
            "(created before the admission policies were installed?)",
        )
    policy = stage.approval
    allowed = policy.approvers
    if (
        (allowed.users or allowed.groups)
        and who.username not in allowed.users
        and not (set(who.groups) & set(allowed.groups))
    ):
        return Judgement(
            False,
            NOT_AN_APPROVER,
            f"{who.username} is not an approver of {stage.name} "
            f"(users: {', '.join(allowed.users) or '-'}; groups: {', '.join(allowed.groups) or '-'})",
        )
    if policy.four_eyes:
        requester = release.spec.requester
        if requester is None:
            return Judgement(
                False,
                REQUESTER_UNKNOWN,
                f"four eyes: release {release.metadata.name} has no "
                "authenticated requester, so self-approval cannot be ruled out",
            )
        if requester.username == who.username:
            return Judgement(
                False,
                SELF_APPROVAL,
                f"four eyes: {who.username} requested release {release.metadata.name} and may not approve it",
            )
    expires_at = None
    if policy.expires_after_seconds is not None and approval.metadata.creation_timestamp is not None:
        expires_at = approval.metadata.creation_timestamp + timedelta(seconds=policy.expires_after_seconds)
        if now >= expires_at:
            return Judgement(
                False,
                EXPIRED,
                f"older than {policy.expires_after_seconds}s (expired {expires_at.isoformat()})",
                expires_at,
            )
    return Judgement(
        True, "Accepted", f"{who.username} approves {release.metadata.name} for {stage.name}", expires_at
    )


@dataclass(frozen=True)
class Gate:
    """The state of one release's gate into one stage."""

    open: bool
    counted: list[Approval]  # distinct approvers, oldest first
    judgements: dict[str, Judgement]  # every Approval naming this release and stage
    needed: int
    requeue_after: float | None  # when a counted approval expires


def gate(
    release: Release,
    stage: Stage,
    approvals: list[Approval],
    pipeline: Pipeline,
    *,
    enforced: bool,
    now: datetime,
) -> Gate:
    """Judge every Approval naming (release, stage); open when enough distinct approvers count."""
    mine = sorted(
        (a for a in approvals if a.spec.release == release.metadata.name and a.spec.stage == stage.name),
        key=lambda a: (a.metadata.creation_timestamp or now, a.metadata.name),
    )
    judgements: dict[str, Judgement] = {}
    counted: list[Approval] = []
    seen: set[str] = set()
    requeue: float | None = None
    for a in mine:
        j = judge(a, release, pipeline, enforced=enforced, now=now)
        if j.counted and a.spec.approver is not None:
            if a.spec.approver.username in seen:
                j = Judgement(
                    False,
                    DUPLICATE,
                    f"{a.spec.approver.username} already approved this release "
                    "for this stage: approvals must come from distinct people",
                )
            else:
                seen.add(a.spec.approver.username)
                counted.append(a)
                if j.expires_at is not None:
                    left = (j.expires_at - now).total_seconds()
                    requeue = left if requeue is None else min(requeue, left)
        judgements[a.metadata.name] = j
    needed = stage.approval.min_approvals
    return Gate(
        open=len(counted) >= needed,
        counted=counted,
        judgements=judgements,
        needed=needed,
        requeue_after=requeue,
    )
