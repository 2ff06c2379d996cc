"""Waiting for me: releases held at an approval gate, and whether the viewer's approval would count —
judged by the operator's own rules (core/approvals.py) on the Approval the viewer would create, so
the page never promises what the operator would then refuse."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.api.approval import Approval, ApprovalSpec
from conveyor.api.common import Identity, ObjectMeta
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.core.approvals import gate, judge
from conveyor.views.links import commit_url, iso

APPROVE_REASON = "MayApprove"
NO_RBAC = "NotAllowedByRBAC"
ALREADY = "AlreadyApproved"
READ_ONLY = "ReadOnly"
UNKNOWN_VIEWER = "ViewerUnknown"


def would_count(
    viewer: Identity | None,
    rel: Release,
    stage: str,
    pipeline: Pipeline,
    approvals: list[Approval],
    *,
    may_create: bool,
    read_only: bool,
    enforced: bool,
    now: datetime,
) -> dict[str, Any]:
    """Whether the viewer can approve `rel` into `stage` now, and if not, why — in their words."""
    # The operator says on the release when it cannot attribute approvals (the identity-stamping
    # admission policies are missing): then nothing the viewer makes would count either.
    enforced = enforced and not any(c.reason == "IdentityNotEnforced" for c in rel.status.conditions)
    if read_only:
        return {
            "may": False,
            "reason": READ_ONLY,
            "message": "this dashboard is read-only: use kubectl conveyor approve",
        }
    if viewer is None:
        return {
            "may": False,
            "reason": UNKNOWN_VIEWER,
            "message": "the API server did not say who you are (SelfSubjectReview unavailable)",
        }
    if not may_create:
        return {
            "may": False,
            "reason": NO_RBAC,
            "message": f"your RBAC does not let {viewer.username} create Approvals in namespace "
            f"{rel.metadata.namespace}",
        }
    mine = [
        a
        for a in approvals
        if a.spec.release == rel.metadata.name
        and a.spec.release_uid in (None, rel.metadata.uid)  # not one for a deleted namesake
        and a.spec.stage == stage
        and a.spec.approver is not None
        and a.spec.approver.username == viewer.username
        and a.status.counted is not False  # counted, or not judged yet: either way, one is enough
    ]
    if mine:
        return {
            "may": False,
            "reason": ALREADY,
            "message": f"{viewer.username} already approved (approval {mine[0].metadata.name}); another "
            "approver is needed",
        }
    probe = Approval(
        metadata=ObjectMeta(name="(yours)", namespace=rel.metadata.namespace, creation_timestamp=now),
        spec=ApprovalSpec(
            release=rel.metadata.name,
            stage=stage,
            release_uid=rel.metadata.uid or None,
            digest=rel.spec.digest,
            approver=viewer,
        ),
    )
    verdict = judge(probe, rel, pipeline, enforced=enforced, now=now)
    if not verdict.counted:
        return {"may": False, "reason": verdict.reason, "message": verdict.message}
    return {
        "may": True,
        "reason": APPROVE_REASON,
        "message": f"your approval as {viewer.username} would count",
    }


def waiting(
    pipelines: list[Pipeline],
    releases: list[Release],
    approvals: list[Approval],
    viewer: Identity | None,
    may_create: dict[str, bool],
    *,
    read_only: bool,
    enforced: bool,
    now: datetime,
) -> dict[str, Any]:
    """Every release waiting at a gate, oldest first, with what the viewer may do about it."""
    by_key = {(p.metadata.namespace, p.metadata.name): p for p in pipelines}
    rows = []
    for rel in releases:
        if str(rel.status.phase) != "AwaitingApproval" or not rel.status.current_stage:
            continue
        pipeline = by_key.get((rel.metadata.namespace, rel.spec.pipeline))
        stage = pipeline.stage(rel.status.current_stage) if pipeline else None
        if pipeline is None or stage is None:
            continue
        same_ns = [a for a in approvals if a.metadata.namespace == rel.metadata.namespace]
        g = gate(rel, stage, same_ns, pipeline, enforced=enforced, now=now)
        # At the gate since the stage before it was verified (the first stage: since accepted).
        index = [s.name for s in pipeline.spec.stages].index(stage.name)
        before = pipeline.spec.stages[index - 1].name if index > 0 else None
        prior = next((r for r in rel.status.stages if r.name == before), None)
        since = (prior.verified_at if prior else None) or rel.status.accepted_at
        rows.append(
            {
                "namespace": rel.metadata.namespace,
                "pipeline": pipeline.metadata.name,
                "release": rel.metadata.name,
                "uid": rel.metadata.uid,
                "digest": rel.spec.digest,
                "stage": stage.name,
                "commit": rel.spec.commit,
                "commitUrl": commit_url(rel.spec.source.repository, rel.spec.commit),
                "requester": rel.spec.requester.username if rel.spec.requester else None,
                "waitingSince": iso(since or rel.metadata.creation_timestamp),
                "counted": [a.spec.approver.username for a in g.counted if a.spec.approver],
                "needed": g.needed,
                "approvers": {
                    "users": list(stage.approval.approvers.users),
                    "groups": list(stage.approval.approvers.groups),
                },
                "fourEyes": stage.approval.four_eyes,
                "you": would_count(
                    viewer,
                    rel,
                    stage.name,
                    pipeline,
                    same_ns,
                    may_create=may_create.get(rel.metadata.namespace, False),
                    read_only=read_only,
                    enforced=enforced,
                    now=now,
                ),
            }
        )
    rows.sort(key=lambda r: (r["waitingSince"] or "", r["namespace"], r["release"]))
    return {
        "viewer": {"username": viewer.username, "groups": list(viewer.groups)} if viewer else None,
        "readOnly": read_only,
        "releases": rows,
    }
