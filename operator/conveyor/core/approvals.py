"""Approval policy: which Approvals count for a release entering a stage, and why the others do not.

Only the identity the API server stamped counts (spec.approver). An Approval counts only for the
content its approver consented to: created no earlier than its Release (a re-created release of the
same name never inherits it), and — when it names them, as `kubectl conveyor approve` does — for that
Release's uid and digest. Per stage: allowed approvers (users and/or groups), a minimum number of
distinct approvers, four eyes (the release's requester may not approve it), and an expiry counted
from when Conveyor first saw the Approval. An Approval that does not count is kept and marked with
the reason — never silently dropped. Every message is cut to the status bound where it is built.
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
STALE = "StaleApproval"
OTHER_RELEASE = "OtherRelease"
DIGEST_MISMATCH = "DigestMismatch"
SAME_SECOND = "AmbiguousOrder"


@dataclass(frozen=True)
class Judgement:
    """Whether one Approval counts, and why."""

    counted: bool
    reason: str
    message: str
    expires_at: datetime | None = None


def binds_to(approval: Approval, release: Release) -> Judgement | None:
    """Why the Approval is not for this very Release (None: it is)."""
    name = release.metadata.name
    if approval.spec.release_uid and approval.spec.release_uid != release.metadata.uid:
        return Judgement(
            False,
            OTHER_RELEASE,
            f"given for another release named {name} (uid {approval.spec.release_uid}); this one "
            f"has uid {release.metadata.uid}: approve it anew",
        )
    if approval.spec.digest and approval.spec.digest != release.spec.digest:
        return Judgement(
            False,
            DIGEST_MISMATCH,
            f"given for image {approval.spec.digest}; release {name} names {release.spec.digest}",
        )
    created, born = approval.metadata.creation_timestamp, release.metadata.creation_timestamp
    # Both timestamps are the API server's: comparing them is comparing one clock with itself.
    if created is None or born is None:
        return None
    if created < born:
        return Judgement(
            False,
            STALE,
            f"created {created.isoformat()}, before release {name} existed ({born.isoformat()}): an "
            "approval never carries over to a re-created release of the same name; approve it anew",
        )
    if created == born and approval.spec.release_uid is None:
        # Timestamps have one-second resolution: within one second "after the release" cannot be
        # proven for an approval that does not name the release's uid.
        return Judgement(
            False,
            SAME_SECOND,
            f"created in the same second as release {name} ({born.isoformat()}), so it cannot be told "
            "apart from an approval for a namesake created just before: approve with `kubectl conveyor "
            "approve` (it names the release's uid) or create the Approval again",
        )
    return None


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
    unbound = binds_to(approval, release)
    if unbound is not None:
        return unbound
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
    if policy.expires_after_seconds is not None:
        # Counted from when Conveyor first saw it: the operator's clock against the operator's clock.
        seen = approval.status.seen_at or now
        expires_at = seen + timedelta(seconds=policy.expires_after_seconds)
        if now >= expires_at:
            return Judgement(
                False,
                EXPIRED,
                f"seen more than {policy.expires_after_seconds}s ago (expired {expires_at.isoformat()})",
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
