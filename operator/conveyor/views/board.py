"""The board: every pipeline by stage — which commit runs there, since when, who put it there, what is
on its way — the seed's "which commit is in production right now", at a glance for hundreds of
pipelines. Pure: pipelines and releases in, JSON-ready data out."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from conveyor.api.common import Condition
from conveyor.api.pipeline import Pipeline, StageState
from conveyor.api.release import TERMINAL_PHASES, Release, StageRecord
from conveyor.core.plan import EPOCH, order_key
from conveyor.views.links import commit_url, iso, safe_url

# Labels that name the team owning a pipeline (the first one set wins); the board filters on it.
TEAM_LABELS = ("conveyor.dev/team", "team", "app.kubernetes.io/part-of")


def team(pipeline: Pipeline) -> str | None:
    """The team a pipeline belongs to, from its labels."""
    labels = pipeline.metadata.labels
    return next((labels[k] for k in TEAM_LABELS if labels.get(k)), None)


def _record(rel: Release | None, stage: str) -> StageRecord | None:
    if rel is None:
        return None
    return next((r for r in rel.status.stages if r.name == stage), None)


def _condition(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def progress(rel: Release, stage: str) -> dict[str, Any]:
    """Where a release in flight is inside one stage: its step, and steps done of steps it has."""
    rec = _record(rel, stage)
    steps = ["migration", "rollout", "smokeTest"]
    done = 0
    if rec is not None:
        done = sum(
            1
            for finished in (rec.migrated_at or rec.deployed_at, rec.rolled_out_at, rec.verified_at)
            if finished is not None
        )
    return {
        "release": rel.metadata.name,
        "commit": rel.spec.commit,
        "shortCommit": rel.spec.commit[:7],
        "phase": str(rel.status.phase or "Pending"),
        "step": str(rec.phase) if rec is not None and rec.phase else str(rel.status.phase or "Pending"),
        "stepsDone": done,
        "steps": len(steps),
        "since": iso(rec.started_at if rec is not None else rel.metadata.creation_timestamp),
        "message": rel.status.message,
    }


def _cell(state: StageState, by_name: dict[str, Release], waiting: Release | None) -> dict[str, Any]:
    rel = by_name.get(state.release or "")
    rec = _record(rel, state.name)
    src = rel.spec.source if rel is not None else None
    repository = src.repository if src is not None else None
    flying = by_name.get(state.in_flight or "")
    running = state.running
    drift = bool(running is not None and running.tracked is False)
    return {
        "stage": state.name,
        "namespace": state.namespace,
        "release": state.release,
        "commit": state.commit,
        "shortCommit": state.short_commit,
        "commitUrl": commit_url(repository, state.commit),
        "ciRunId": src.ci_run_id if src is not None else None,
        "ciRunUrl": safe_url(src.ci_run_url) if src is not None else None,
        "since": iso(state.since),
        "approvedBy": list(rec.approvers) if rec is not None else [],
        "pinnedBy": state.pinned_by,
        "inFlight": progress(flying, state.name) if flying is not None else None,
        "awaitingApproval": (
            {
                "release": waiting.metadata.name,
                "commit": waiting.spec.commit,
                "shortCommit": waiting.spec.commit[:7],
                "message": waiting.status.message,
            }
            if waiting is not None
            else None
        ),
        "running": running.short_commit if running is not None else None,
        "drift": drift,
        "driftMessage": running.message if drift and running is not None else None,
    }


def pipeline_row(pipeline: Pipeline, releases: list[Release]) -> dict[str, Any]:
    """One row of the board."""
    by_name = {r.metadata.name: r for r in releases}
    states = {s.name: s for s in pipeline.status.stages}
    # A release held at a gate is not yet in flight there: the board shows it waiting at the door.
    waiting: dict[str, Release] = {}
    for r in sorted(releases, key=order_key):
        if r.status.phase == "AwaitingApproval" and r.status.current_stage:
            waiting[r.status.current_stage] = r
    cells = []
    for stage in pipeline.spec.stages:
        state = states.get(stage.name) or StageState(name=stage.name, namespace=stage.namespace)
        cells.append(_cell(state, by_name, waiting.get(stage.name)))
    parity = pipeline.status.parity
    reconciled = _condition(pipeline.status.conditions, "Reconciled")
    ready = _condition(pipeline.status.conditions, "Ready")
    problems = [
        {"type": c.type, "reason": c.reason, "message": c.message}
        for c in (reconciled, ready)
        if c is not None and c.status == "False"
    ]
    live = [r for r in releases if r.status.phase not in TERMINAL_PHASES]
    failed = [r for r in releases if r.status.phase == "Failed"]
    newest_failure = max(failed, key=lambda r: r.metadata.creation_timestamp or EPOCH, default=None)
    return {
        "namespace": pipeline.metadata.namespace,
        "name": pipeline.metadata.name,
        "team": team(pipeline),
        "repository": pipeline.spec.image_repository,
        "stages": cells,
        "production": pipeline.status.production_commit,
        "parity": {
            "inParity": parity.in_parity,
            "differences": len(parity.differences),
            "checkedAt": iso(parity.checked_at),
        },
        "vetoes": len(pipeline.status.vetoed),
        "live": len(live),
        "lastFailure": newest_failure.metadata.name if newest_failure is not None else None,
        "problems": problems,
    }


def board(pipelines: list[Pipeline], releases: list[Release]) -> dict[str, Any]:
    """The whole board, sorted by namespace then pipeline name."""
    per_pipeline: dict[tuple[str, str], list[Release]] = defaultdict(list)
    for r in releases:
        per_pipeline[(r.metadata.namespace, r.spec.pipeline)].append(r)
    rows = [
        pipeline_row(p, per_pipeline.get((p.metadata.namespace, p.metadata.name), []))
        for p in sorted(pipelines, key=lambda p: (p.metadata.namespace, p.metadata.name))
    ]
    return {
        "pipelines": rows,
        "namespaces": sorted({r["namespace"] for r in rows}),
        "teams": sorted({r["team"] for r in rows if r["team"]}),
        "inFlight": sum(1 for r in rows for c in r["stages"] if c["inFlight"]),
    }
