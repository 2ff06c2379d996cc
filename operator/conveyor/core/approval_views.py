"""What each Approval's status says, and each release's list of the approvals considered: views of
the gate's judgements, plus which Approvals should be owned by their Release."""

from __future__ import annotations

from datetime import datetime

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import APPROVAL_RECORDS_LIMIT, ApprovalRecord, Release
from conveyor.core.approvals import Gate, Judgement, binds_to, gate, judge
from conveyor.core.conditions import set_condition
from conveyor.core.plan import EPOCH, OwnApproval


def judge_approvals(
    pipeline: Pipeline, releases: list[Release], approvals: list[Approval], *, enforced: bool, now: datetime
) -> dict[str, tuple[Release, Judgement]]:
    """Every approval of this pipeline's releases, judged: Used when it opened its stage, else the gate's
    verdict (which sees duplicates), else judged alone (unknown stage, stage without approval)."""
    by_name = {r.metadata.name: r for r in releases}
    out: dict[str, tuple[Release, Judgement]] = {}
    # One gate per (release, stage), not per approval: each gate judges every approval of its
    # release and stage, so a flood of n approvals would otherwise cost n² judgements a pass.
    gates: dict[tuple[str, str], Gate] = {}
    for a in approvals:
        release = by_name.get(a.spec.release)
        if release is None:
            continue  # another pipeline's, or an unknown release (see unknown_release_approval)
        rec = next((r for r in release.status.stages if r.name == a.spec.stage), None)
        stage = pipeline.stage(a.spec.stage)
        if rec is not None and a.metadata.name in (rec.approvals or ([rec.approval] if rec.approval else [])):
            j = Judgement(True, "Used", f"opened stage {a.spec.stage} for release {release.metadata.name}")
        elif stage is not None and stage.requires_approval:
            key = (release.metadata.name, stage.name)
            if key not in gates:
                gates[key] = gate(release, stage, approvals, pipeline, enforced=enforced, now=now)
            j = gates[key].judgements[a.metadata.name]
        else:
            j = judge(a, release, pipeline, enforced=enforced, now=now)
        out[a.metadata.name] = (release, j)
    return out


def approval_statuses(
    pipeline: Pipeline, releases: list[Release], approvals: list[Approval], *, enforced: bool, now: datetime
) -> dict[str, ApprovalStatus]:
    """Whether each approval of this pipeline's releases counts, and why (not)."""
    judged = judge_approvals(pipeline, releases, approvals, enforced=enforced, now=now)
    out: dict[str, ApprovalStatus] = {}
    for a in approvals:
        if a.metadata.name not in judged:
            continue
        release, j = judged[a.metadata.name]
        status = a.status.model_copy(deep=True)
        status.commit = release.spec.commit
        if j.reason == "Used":
            rec = next((r for r in release.status.stages if r.name == a.spec.stage), None)
            status.used_at = rec.started_at if rec is not None else None
        status.counted = j.counted
        status.seen_at = status.seen_at or now
        status.observed_generation = a.metadata.generation
        status.conditions = set_condition(
            status.conditions,
            "Counted",
            "True" if j.counted else "False",
            j.reason,
            j.message,
            generation=a.metadata.generation,
            now=now,
        )
        out[a.metadata.name] = status
    return out


def approval_records(
    release: Release, approvals: list[Approval], judged: dict[str, tuple[Release, Judgement]]
) -> list[ApprovalRecord]:
    """The release's list of the approvals considered (the latest ones), with who, when and the verdict."""
    out = []
    for a in sorted(approvals, key=lambda a: (a.metadata.creation_timestamp or EPOCH, a.metadata.name)):
        if a.spec.release != release.metadata.name or a.metadata.name not in judged:
            continue
        j = judged[a.metadata.name][1]
        out.append(
            ApprovalRecord(
                name=a.metadata.name,
                stage=a.spec.stage,
                approver=a.spec.approver.username if a.spec.approver else None,
                at=a.metadata.creation_timestamp,
                counted=j.counted,
                verdict=j.reason,
                message=j.message,
            )
        )
    return out[-APPROVAL_RECORDS_LIMIT:]


def unknown_release_approval(
    approval: Approval, now: datetime, *, missing_pipeline: str | None = None
) -> ApprovalStatus:
    """The status of an Approval whose release does not exist — or, `missing_pipeline`, whose release
    exists but names a Pipeline that does not: no pipeline's pass would ever judge it, so it is told
    here (it heals when the release, or its pipeline, appears: that pipeline's pass judges it)."""
    status = approval.status.model_copy(deep=True)
    status.counted = False
    status.observed_generation = approval.metadata.generation
    ns = approval.metadata.namespace
    if missing_pipeline is None:
        reason, message = "UnknownRelease", f"no Release {approval.spec.release!r} in namespace {ns}"
    else:
        reason = "PipelineNotFound"
        message = (
            f"Release {approval.spec.release!r} names Pipeline {missing_pipeline!r}, which does not "
            f"exist in namespace {ns}"
        )
    status.conditions = set_condition(
        status.conditions,
        "Counted",
        "False",
        reason,
        message,
        generation=approval.metadata.generation,
        now=now,
    )
    return status


def approvals_to_own(releases: list[Release], approvals: list[Approval]) -> list[OwnApproval]:
    """Approvals given for a live Release (this very one, not a namesake) that it does not own yet:
    owned, they are garbage-collected with it."""
    by_name = {r.metadata.name: r for r in releases}
    out = []
    for a in approvals:
        r = by_name.get(a.spec.release)
        if r is None or not r.metadata.uid or binds_to(a, r) is not None:
            continue
        if any(ref.get("uid") == r.metadata.uid for ref in a.metadata.owner_references):
            continue
        out.append(
            OwnApproval(
                a.metadata.name,
                a.metadata.name,
                r.metadata.name,
                r.metadata.uid,
                tuple(a.metadata.owner_references),
            )
        )
    return out
