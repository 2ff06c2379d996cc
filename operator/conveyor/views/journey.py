"""A commit's journey as a picture: one lane per stage, bars for the wait (for an approval, or for
the stage to come free), the migration, the rollout and the smoke test; rollbacks in a lane of their
own; marks for approvals and failures. Pure: times in, geometry-free segments out (the page scales
them); every segment carries its exact instants for the hover text."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import TERMINAL_PHASES, Release, StageRecord
from conveyor.api.rollback import Rollback
from conveyor.views.links import iso
from conveyor.views.text import took

# Segment kinds, in the order they happen within a stage.
WAIT_APPROVAL, WAIT_QUEUE, MIGRATION, ROLLOUT, SMOKE, ROLLBACK = (
    "approval",
    "queue",
    "migration",
    "rollout",
    "smokeTest",
    "rollback",
)
LABELS = {
    WAIT_APPROVAL: "waiting for approval",
    WAIT_QUEUE: "waiting for the stage",
    MIGRATION: "migration",
    ROLLOUT: "rollout",
    SMOKE: "smoke test",
    ROLLBACK: "rollback",
}


def rollback_side(rb: Rollback, rel: Release) -> str | None:
    """ "from" when the rollback went away from this very release, "to" when back to it, else None —
    by name *and* digest, so a re-created namesake does not inherit an old rollback."""
    plan = rb.status.plan
    if plan is None:
        return None
    if plan.from_release == rel.metadata.name and plan.from_digest in (None, rel.spec.digest):
        return "from"
    if plan.to_release == rel.metadata.name and plan.to_digest in (None, rel.spec.digest):
        return "to"
    return None


@dataclass(frozen=True)
class Segment:
    """One bar: a kind, its instants, whether it is still going, and how it ended."""

    kind: str
    start: datetime
    end: datetime
    ongoing: bool = False
    outcome: str | None = None  # Succeeded / Failed, when known
    label: str = ""


def _bar(kind: str, start: datetime | None, end: datetime | None, now: datetime, **kw: Any) -> Segment | None:
    if start is None:
        return None
    ongoing = end is None
    stop = end or max(now, start)
    return Segment(kind, start, max(stop, start), ongoing=ongoing, label=LABELS[kind], **kw)


@dataclass(frozen=True)
class Gate:
    """What the release's history says about one stage's gate (the operator's clock, milliseconds):
    when it began to wait there (AwaitingApproval) and when the approval let it in (ApprovalGranted)."""

    held_at: datetime | None = None
    granted_at: datetime | None = None


def gates(rel: Release) -> dict[str, Gate]:
    """Per stage, the first AwaitingApproval and the last ApprovalGranted of the release's history."""
    held: dict[str, datetime] = {}
    granted: dict[str, datetime] = {}
    for h in sorted(rel.status.history, key=lambda h: h.time):
        if h.stage and h.reason == "AwaitingApproval":
            held.setdefault(h.stage, h.time)
        elif h.stage and h.reason == "ApprovalGranted":
            granted[h.stage] = h.time
    return {s: Gate(held.get(s), granted.get(s)) for s in held.keys() | granted.keys()}


def stage_segments(
    rec: StageRecord, ready_at: datetime | None, gated: bool, now: datetime, gate: Gate | None = None
) -> list[Segment]:
    """The bars of one stage record, in order. `ready_at`: when the release could have entered."""
    out: list[Segment | None] = []
    failed = str(rec.phase) == "Failed"
    entered = rec.started_at
    waiting = str(rec.phase) == "AwaitingApproval"
    end_of_wait = entered or (rec.finished_at if failed or rec.finished_at else None)
    if gated and gate is not None and gate.held_at is not None:
        # Held at the gate, by the history's own clock: from AwaitingApproval to ApprovalGranted.
        out.append(_bar(WAIT_APPROVAL, gate.held_at, gate.granted_at or end_of_wait, now))
    elif ready_at is not None and (entered is None or entered > ready_at):
        # Without those history entries (trimmed, or never held: approved before the stage could be
        # entered), an approval timestamp is whole seconds: only one clearly after ready_at held it.
        approved = rec.approved_at
        held = gated and ((approved is not None and approved > ready_at) or (approved is None and waiting))
        out.append(
            _bar(WAIT_APPROVAL if held else WAIT_QUEUE, ready_at, approved if held else end_of_wait, now)
        )
    if rec.migration_job:
        done = rec.migrated_at or (rec.finished_at if failed else None)
        out.append(_bar(MIGRATION, entered, done, now, outcome=rec.migration_result))
    rollout_start = rec.deployed_at
    if rollout_start is not None:
        done = rec.rolled_out_at or (rec.finished_at if failed else None)
        outcome = "Succeeded" if rec.rolled_out_at else ("Failed" if failed else None)
        out.append(_bar(ROLLOUT, rollout_start, done, now, outcome=outcome))
    if rec.smoke_test_job or rec.smoke_test_started_at:
        start = rec.smoke_test_started_at or rec.rolled_out_at
        done = rec.verified_at or (rec.finished_at if failed else None)
        out.append(_bar(SMOKE, start, done, now, outcome=rec.smoke_test_result))
    return [s for s in out if s is not None]


def _segment_json(s: Segment, origin: datetime) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "label": s.label,
        "start": iso(s.start),
        "end": iso(s.end),
        "from": round((s.start - origin).total_seconds(), 3),
        "to": round((s.end - origin).total_seconds(), 3),
        "ongoing": s.ongoing,
        "outcome": s.outcome,
        "title": f"{s.label}: {took(s.start, s.end)}{' so far' if s.ongoing else ''} "
        f"({iso(s.start)} → {'now' if s.ongoing else iso(s.end)})" + (f", {s.outcome}" if s.outcome else ""),
    }


def journey(
    rel: Release, pipeline: Pipeline | None, rollbacks: list[Rollback], now: datetime
) -> dict[str, Any]:
    """The timeline of one release: lanes (stages in pipeline order, then rollbacks) and marks."""
    order = [s.name for s in pipeline.spec.stages] if pipeline else [r.name for r in rel.status.stages]
    gated = {s.name for s in pipeline.spec.stages if s.requires_approval} if pipeline else set()
    records = {r.name: r for r in rel.status.stages}
    held = gates(rel)
    origin = rel.status.accepted_at or rel.metadata.creation_timestamp or now
    ended = rel.status.phase in TERMINAL_PHASES
    if ended:
        # An ended release waits for nothing any more: what it never finished stops where its
        # record stops (its last history entry), not at "now" — days later, on a superseded one.
        now = min(now, max([h.time for h in rel.status.history], default=origin))
    lanes: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    ready_at: datetime | None = origin
    instants: list[datetime] = [origin]
    pending: list[tuple[str, list[Segment]]] = []
    for name in order:
        rec = records.get(name)
        if rec is None:
            pending.append((name, []))
            ready_at = None  # a later stage cannot be ready before this one is verified
            continue
        segs = stage_segments(rec, ready_at, name in gated, now, held.get(name))
        if ended:
            segs = [replace(s, ongoing=False) for s in segs]
        pending.append((name, segs))
        for s in segs:
            instants += [s.start, s.end]
        if str(rec.phase) == "Failed" and rec.finished_at:
            marks.append(
                {"kind": "failed", "lane": name, "at": rec.finished_at, "label": rec.message or "failed"}
            )
        if rec.verified_at:
            marks.append({"kind": "verified", "lane": name, "at": rec.verified_at, "label": "verified"})
        ready_at = rec.verified_at
    for a in rel.status.approvals:
        if a.at is not None:
            verdict = "counted" if a.counted else f"not counted: {a.verdict}"
            marks.append(
                {"kind": "approval", "lane": a.stage, "at": a.at, "label": f"{a.approver or '?'} ({verdict})"}
            )
    rollback_segs: list[tuple[Segment, str]] = []
    for rb in rollbacks:
        plan = rb.status.plan
        side = rollback_side(rb, rel)
        if plan is None or side is None:
            continue
        start = rb.status.planned_at or rb.metadata.creation_timestamp
        if start is None:
            continue
        seg = _bar(ROLLBACK, start, rb.status.finished_at, now, outcome=rb.status.phase)
        if seg is not None:
            away = side == "from"
            text = f"{rb.metadata.name} ({plan.stage}): " + (
                f"away from this release to {plan.to_release}" if away else "back to this release"
            )
            rollback_segs.append((seg, text))
            instants += [seg.start, seg.end]
    for m in marks:
        instants.append(m["at"])
    end = max(instants)
    for name, segs in pending:
        lanes.append({"lane": name, "kind": "stage", "segments": [_segment_json(s, origin) for s in segs]})
    if rollback_segs:
        lanes.append(
            {
                "lane": "rollbacks",
                "kind": "rollbacks",
                "segments": [
                    {
                        **_segment_json(s, origin),
                        "label": text,
                        "title": f"{text} — {_segment_json(s, origin)['title']}",
                    }
                    for s, text in rollback_segs
                ],
            }
        )
    return {
        "release": rel.metadata.name,
        "namespace": rel.metadata.namespace,
        "commit": rel.spec.commit,
        "start": iso(origin),
        "end": iso(end),
        "span": round(max((end - origin).total_seconds(), 0.001), 3),
        "lanes": lanes,
        "marks": sorted(
            (
                {**m, "at": iso(m["at"]), "offset": round((m["at"] - origin).total_seconds(), 3)}
                for m in marks
            ),
            key=lambda m: m["offset"],
        ),
    }
