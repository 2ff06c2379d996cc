"""What `kubectl conveyor` prints: pure functions from API objects to text and JSON-ready data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import TERMINAL_PHASES, Release, StageRecord
from conveyor.api.rollback import Rollback
from conveyor.core.plan import EPOCH

FAILED_PHASES = {"Failed", "RolledBack", "Cancelled", "Vetoed", "Superseded"}
# Direction overrides, isolates and marks: in text a CI declared (an author, a message) they would
# reorder what a terminal shows around them — "(declared by CI)" read backwards.
BIDI_CONTROLS = dict.fromkeys(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)], 0xFFFD
)


def printable(text: str) -> str:
    """Text for a terminal: bidirectional controls replaced (the dashboard does the same)."""
    return text.translate(BIDI_CONTROLS)


def stamp(t: datetime | None) -> str:
    """A timestamp as people read it in a timeline (UTC, milliseconds)."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if t else "-"


def took(a: datetime | None, b: datetime | None) -> str:
    """The time from a to b, human-sized."""
    if a is None or b is None:
        return ""
    seconds = (b - a).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


@dataclass(frozen=True)
class Step:
    """One line of a timeline."""

    at: datetime | None
    what: str
    detail: str = ""


def _stage_steps(rel: Release, rec: StageRecord) -> list[Step]:
    steps: list[Step] = []
    s = rec.name
    for a in rel.status.approvals:
        if a.stage == s:
            verdict = "counted" if a.counted else f"not counted: {a.verdict}"
            steps.append(
                Step(a.at, f"{s}: approval {a.name}", f"by {a.approver or 'unauthenticated'} ({verdict})")
            )
    if rec.started_at:
        steps.append(
            Step(
                rec.started_at,
                f"{s}: entered",
                f"approved by {', '.join(rec.approvers)}" if rec.approvers else "",
            )
        )
    if rec.migration_job:
        steps.append(
            Step(
                rec.migrated_at or rec.finished_at,
                f"{s}: migration {rec.migration_result or 'running'}",
                f"Job {rec.migration_job}, {took(rec.started_at, rec.migrated_at)}".rstrip(", "),
            )
        )
    if rec.deployed_at:
        steps.append(Step(rec.deployed_at, f"{s}: image set", ""))
    if rec.rolled_out_at:
        steps.append(Step(rec.rolled_out_at, f"{s}: rolled out", took(rec.deployed_at, rec.rolled_out_at)))
    if rec.smoke_test_job:
        steps.append(
            Step(
                rec.verified_at or rec.finished_at or rec.smoke_test_started_at,
                f"{s}: smoke test {rec.smoke_test_result or 'running'}",
                f"Job {rec.smoke_test_job}, "
                + took(rec.smoke_test_started_at, rec.verified_at or rec.finished_at),
            )
        )
    if rec.verified_at:
        steps.append(
            Step(rec.verified_at, f"{s}: VERIFIED", f"stage took {took(rec.started_at, rec.verified_at)}")
        )
    elif rec.phase == "Failed":
        steps.append(Step(rec.finished_at, f"{s}: FAILED", rec.message or ""))
    return steps


def trace(rel: Release, pipeline: Pipeline | None, rollbacks: list[Rollback]) -> dict[str, Any]:
    """The commit's journey as data: facts, timeline steps, verdict, lead time."""
    src = rel.spec.source
    steps: list[Step] = []
    if src.commit_time:
        steps.append(Step(src.commit_time, "commit", f"by {src.author or '?'} (declared)"))
    who = rel.spec.requester.username if rel.spec.requester else "unknown (not stamped)"
    steps.append(
        Step(
            rel.metadata.creation_timestamp,
            f"release {rel.metadata.name} created",
            f"by {who}" + (f", CI run {src.ci_run_id}" if src.ci_run_id else ""),
        )
    )
    for rec in rel.status.stages:
        steps.extend(_stage_steps(rel, rec))
    for rb in rollbacks:
        p = rb.status.plan
        if p is None or rel.metadata.name not in (p.from_release, p.to_release):
            continue
        by = rb.spec.requester.username if rb.spec.requester else "?"
        direction = (
            f"away from {p.from_release}"
            if p.from_release == rel.metadata.name
            else f"back to it from {p.from_release}"
        )
        steps.append(
            Step(
                rb.status.planned_at or rb.metadata.creation_timestamp,
                f"{p.stage}: rollback {rb.metadata.name} {direction}",
                f"by {by}, plan {p.action}, {rb.status.phase}"
                + (f" in {rb.status.duration_seconds}s" if rb.status.duration_seconds else ""),
            )
        )
    steps.sort(key=lambda s: s.at or EPOCH)
    last = pipeline.spec.stages[-1].name if pipeline else None
    done = next((r.verified_at for r in rel.status.stages if r.name == last and r.verified_at), None)
    start = src.commit_time or rel.metadata.creation_timestamp
    return {
        "release": rel.metadata.name,
        "pipeline": rel.spec.pipeline,
        "commit": rel.spec.commit,
        "digest": rel.spec.digest,
        "image": rel.status.image,
        "requester": who,
        "author": src.author,
        "ciRunId": src.ci_run_id,
        "ciRunUrl": src.ci_run_url,
        "phase": rel.status.phase,
        "vetoed": bool(rel.status.vetoed),
        "leadTimeSeconds": (done - start).total_seconds() if done and start else None,
        "steps": [{"at": stamp(s.at), "what": s.what, "detail": s.detail} for s in steps],
    }


def render_trace(data: dict[str, Any]) -> str:
    """The timeline, as text."""
    lines = [
        f"commit   {data['commit']}",
        f"release  {data['release']} (pipeline {data['pipeline']})",
        f"image    {data['image']}",
        f"CI run   {data['ciRunId'] or '-'} {data['ciRunUrl'] or ''}".rstrip(),
        f"author   {data['author'] or '-'} (declared by CI)",
        f"by       {data['requester']} (authenticated)",
        "",
    ]
    width = max((len(s["what"]) for s in data["steps"]), default=10)
    for s in data["steps"]:
        lines.append(f"  {s['at']}  {s['what']:<{width}}  {s['detail']}".rstrip())
    lines.append("")
    verdict = data["phase"] + (" (vetoed)" if data["vetoed"] else "")
    lines.append(f"verdict    {verdict}")
    lead = data["leadTimeSeconds"]
    lines.append(f"lead time  {took_seconds(lead) if lead is not None else '- (not in production)'}")
    return "\n".join(lines)


def took_seconds(seconds: float) -> str:
    """A duration in seconds, human-sized."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def history(
    releases: list[Release], rollbacks: list[Rollback], stage: str | None = None
) -> list[dict[str, Any]]:
    """What ran where, when, and who put it there, newest first."""
    rows: list[dict[str, Any]] = []
    for rel in releases:
        for rec in rel.status.stages:
            if stage and rec.name != stage:
                continue
            if rec.deployed_at is None and rec.phase != "Failed":
                continue
            who = (
                ", ".join(rec.approvers)
                if rec.approvers
                else (rel.spec.requester.username if rel.spec.requester else "?")
            )
            outcome = (
                "verified" if rec.verified_at else ("failed" if rec.phase == "Failed" else "in progress")
            )
            rows.append(
                {
                    "at": stamp(rec.deployed_at or rec.started_at),
                    "stage": rec.name,
                    "release": rel.metadata.name,
                    "commit": rel.spec.commit[:7],
                    "action": "promoted",
                    "outcome": outcome,
                    "by": who,
                    "_t": rec.deployed_at or rec.started_at,
                }
            )
    for rb in rollbacks:
        p = rb.status.plan
        if p is None or p.stage is None or (stage and p.stage != stage) or rb.status.patched_at is None:
            continue
        rows.append(
            {
                "at": stamp(rb.status.patched_at),
                "stage": p.stage,
                "release": p.to_release,
                "commit": (p.to_commit or "")[:7],
                "action": f"rolled back ({rb.metadata.name})",
                "reason": rb.spec.reason,
                "outcome": (rb.status.phase or "").lower(),
                "by": rb.spec.requester.username if rb.spec.requester else "?",
                "_t": rb.status.patched_at,
            }
        )
    rows.sort(key=lambda r: r["_t"], reverse=True)
    for r in rows:
        del r["_t"]
    return rows


def render_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned table with upper-case headers."""
    table = [[c.upper() for c in columns]] + [[str(r.get(c) or "-") for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def status(pipeline: Pipeline, releases: list[Release]) -> dict[str, Any]:
    """Where each commit is, and the live progress of releases in flight."""
    live = [r for r in releases if r.status.phase not in TERMINAL_PHASES]
    return {
        "pipeline": pipeline.metadata.name,
        "stages": [
            {
                "stage": s.name,
                "namespace": s.namespace,
                "commit": s.short_commit,
                "release": s.release,
                "since": stamp(s.since) if s.since else None,
                "pinnedBy": s.pinned_by,
                "inFlight": s.in_flight,
                # Only where a stage lives in another cluster (docs/multi-cluster.md).
                **({"cluster": _where(s.cluster, s.cluster_problem)} if s.cluster else {}),
            }
            for s in pipeline.status.stages
        ],
        "releases": [
            {
                "release": r.metadata.name,
                "commit": r.spec.commit[:7],
                "phase": r.status.phase,
                "stage": r.status.current_stage,
                "step": _current_step(r),
                "message": r.status.message,
            }
            for r in sorted(live, key=lambda r: r.metadata.creation_timestamp or EPOCH)
        ],
    }


def _current_step(rel: Release) -> str | None:
    rec = next((r for r in rel.status.stages if r.name == rel.status.current_stage), None)
    return str(rec.phase) if rec is not None and rec.phase else None


def _where(cluster: str, problem: str | None) -> str:
    """`prod-eu`, or `prod-eu (ClusterUnreachable)` while Conveyor cannot see it."""
    return cluster + (f" ({problem.split(':')[0]})" if problem else "")


STAGE_COLUMNS = ("commit", "release", "since", "inFlight")


def _cluster_column(data: dict[str, Any]) -> list[str]:
    """The CLUSTER column, only when some stage lives in another cluster."""
    return ["cluster"] if any("cluster" in s for s in data["stages"]) else []


def render_status(data: dict[str, Any]) -> str:
    """Status as text: a stage table, then releases in flight."""
    out = [
        f"pipeline {data['pipeline']}",
        render_table(
            data["stages"], ["stage", *_cluster_column(data), "commit", "release", "since", "inFlight"]
        ),
    ]
    if data["releases"]:
        out += [
            "",
            render_table(data["releases"], ["release", "commit", "stage", "phase", "step", "message"]),
        ]
    return "\n".join(out)
