"""A release's page: its conditions, approvals (counted, or why not), Jobs and how they ended, history,
recent Events, and what changed against the release before it. Pure: objects in (Jobs and Events as
the API server's dicts), JSON-ready data out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.api.approval import Approval
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core.plan import order_key
from conveyor.views.journey import journey, rollback_side
from conveyor.views.links import commit_url, compare_url, iso, safe_url

EVENTS_SHOWN = 30
UNREADABLE = "unreadable"  # a Job that could not be read now: {UNREADABLE: why} (RBAC, API server away)


def previous_release(rel: Release, releases: list[Release]) -> Release | None:
    """The release of the same pipeline created just before this one (the operator's own order)."""
    mine = sorted((r for r in releases if r.spec.pipeline == rel.spec.pipeline), key=order_key)
    names = [r.metadata.name for r in mine]
    if rel.metadata.name not in names:
        return None
    i = names.index(rel.metadata.name)
    return mine[i - 1] if i > 0 else None


def changes(rel: Release, before: Release | None, pipeline: Pipeline | None) -> dict[str, Any]:
    """What this release changes against the one before it: commits, image, schema."""
    repo = rel.spec.source.repository
    last = pipeline.spec.stages[-1].name if pipeline and pipeline.spec.stages else None
    in_production = None
    if pipeline is not None and last is not None:
        state = next((s for s in pipeline.status.stages if s.name == last), None)
        if state is not None and state.commit and state.release != rel.metadata.name:
            in_production = {
                "release": state.release,
                "commit": state.commit,
                "compareUrl": compare_url(repo, state.commit, rel.spec.commit),
            }
    if before is None:
        return {"previous": None, "schemaChange": str(rel.spec.schema_change), "production": in_production}
    return {
        "previous": {
            "release": before.metadata.name,
            "commit": before.spec.commit,
            "phase": str(before.status.phase or "Pending"),
            "commitUrl": commit_url(before.spec.source.repository or repo, before.spec.commit),
        },
        "commitRange": f"{before.spec.commit[:7]}..{rel.spec.commit[:7]}",
        "compareUrl": compare_url(repo, before.spec.commit, rel.spec.commit),
        "sameCommit": before.spec.commit == rel.spec.commit,
        "imageChanged": before.spec.digest != rel.spec.digest,
        "schemaChange": str(rel.spec.schema_change),
        "production": in_production,
    }


def job_row(
    name: str, kind: str, stage: str, recorded: str | None, job: dict[str, Any] | None
) -> dict[str, Any]:
    """One Job as the page shows it: what Conveyor recorded, and what the Job itself says now."""
    unreadable = (job or {}).get(UNREADABLE)
    if unreadable:
        job = None
    status = (job or {}).get("status") or {}
    conditions = [
        {"type": c.get("type"), "reason": c.get("reason"), "message": c.get("message")}
        for c in status.get("conditions") or []
        if c.get("status") == "True"
    ]
    failed_condition = next((c for c in conditions if c["type"] == "Failed"), None)
    return {
        "name": name,
        "kind": kind,
        "stage": stage,
        "result": recorded
        or ("Failed" if failed_condition else ("Succeeded" if status.get("succeeded") else "Running")),
        "exists": job is not None,
        "unreadable": unreadable,  # why it cannot be read now (not "gone")
        "succeeded": status.get("succeeded", 0),
        "failed": status.get("failed", 0),
        "active": status.get("active", 0),
        "startTime": status.get("startTime"),
        "completionTime": status.get("completionTime"),
        "conditions": conditions,
        "why": (failed_condition or {}).get("message") or (failed_condition or {}).get("reason"),
    }


def event_row(e: dict[str, Any]) -> dict[str, Any]:
    """One core/v1 Event as the page shows it."""
    return {
        "type": e.get("type"),
        "reason": e.get("reason"),
        "message": e.get("message"),
        "count": e.get("count") or 1,
        "at": e.get("lastTimestamp")
        or e.get("eventTime")
        or (e.get("metadata") or {}).get("creationTimestamp"),
        "from": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
    }


def release_page(  # noqa: PLR0917  (one page, many sources)
    rel: Release,
    pipeline: Pipeline | None,
    releases: list[Release],
    rollbacks: list[Rollback],
    approvals: list[Approval],
    jobs: dict[str, dict[str, Any]],
    events: list[dict[str, Any]] | str,
    now: datetime,
) -> dict[str, Any]:
    """Everything the release page shows."""
    src = rel.spec.source
    said = {a.metadata.name: a.spec for a in approvals}  # what each approver wrote with it
    job_rows = []
    for rec in rel.status.stages:
        if rec.migration_job:
            job_rows.append(
                job_row(
                    rec.migration_job,
                    "migration",
                    rec.name,
                    rec.migration_result,
                    jobs.get(rec.migration_job),
                )
            )
        if rec.smoke_test_job:
            job_rows.append(
                job_row(
                    rec.smoke_test_job,
                    "smokeTest",
                    rec.name,
                    rec.smoke_test_result,
                    jobs.get(rec.smoke_test_job),
                )
            )
    readable = events if isinstance(events, list) else []
    shown = sorted(readable, key=lambda e: str(event_row(e)["at"] or ""), reverse=True)[:EVENTS_SHOWN]
    mine = [rb for rb in rollbacks if rollback_side(rb, rel) is not None]
    return {
        "namespace": rel.metadata.namespace,
        "name": rel.metadata.name,
        "pipeline": rel.spec.pipeline,
        "commit": rel.spec.commit,
        "commitUrl": commit_url(src.repository, rel.spec.commit),
        "digest": rel.spec.digest,
        "image": rel.status.image,
        "author": src.author,
        "ciRunId": src.ci_run_id,
        "ciRunUrl": safe_url(src.ci_run_url),
        "commitTime": iso(src.commit_time),
        "created": iso(rel.metadata.creation_timestamp),
        "requester": rel.spec.requester.username if rel.spec.requester else None,
        "phase": str(rel.status.phase or "Pending"),
        "message": rel.status.message,
        "currentStage": rel.status.current_stage,
        "vetoed": bool(rel.status.vetoed),
        "vetoedBy": rel.status.vetoed_by,
        "conditions": [
            {
                "type": c.type,
                "status": str(c.status),
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": iso(c.last_transition_time),
            }
            for c in rel.status.conditions
        ],
        "stages": [
            {
                "stage": r.name,
                "phase": str(r.phase or ""),
                "approvers": list(r.approvers),
                "startedAt": iso(r.started_at),
                "verifiedAt": iso(r.verified_at),
                "finishedAt": iso(r.finished_at),
                "message": r.message,
            }
            for r in rel.status.stages
        ],
        "approvals": [
            {
                "name": a.name,
                "stage": a.stage,
                "approver": a.approver,
                "at": iso(a.at),
                "counted": a.counted,
                "verdict": a.verdict,
                "message": a.message,
                "comment": said[a.name].comment if a.name in said else None,
                "reviewedBy": said[a.name].reviewed_by if a.name in said else None,
            }
            for a in rel.status.approvals
        ],
        "jobs": job_rows,
        "failedJobs": [j["name"] for j in job_rows if j["result"] == "Failed"],
        "history": [
            {
                "time": iso(h.time),
                "reason": h.reason,
                "stage": h.stage,
                "actor": h.actor,
                "message": h.message,
                "warning": bool(h.warning),
            }
            for h in sorted(rel.status.history, key=lambda h: h.time, reverse=True)
        ],
        "events": [event_row(e) for e in shown],
        "eventsUnreadable": events if isinstance(events, str) else None,
        "rollbacks": [
            {
                "name": rb.metadata.name,
                "stage": rb.status.plan.stage if rb.status.plan else None,
                "phase": str(rb.status.phase or ""),
                "from": rb.status.plan.from_release if rb.status.plan else None,
                "to": rb.status.plan.to_release if rb.status.plan else None,
                "by": rb.spec.requester.username if rb.spec.requester else None,
                "reason": rb.spec.reason,
            }
            for rb in mine
        ],
        "changes": changes(rel, previous_release(rel, releases), pipeline),
        "journey": journey(rel, pipeline, rollbacks, now),
    }
