"""A pipeline's delivery record: promotions and rollbacks over time, and the four DORA metrics —
deployment frequency, lead time for changes, change failure rate, time to restore — computed from
Conveyor's own records (nothing estimated, nothing sampled). Pure.

Definitions (production = the pipeline's last stage; the window = the last `days` days):
- deployment: a release whose image Conveyor set in production inside the window;
- lead time: commit time (CI's declared commitTime when plausible — from a year before the
  Release's creation to five minutes after it — else the Release's creation) → verified in
  production, for releases verified there inside the window; the median;
- failed change: a deployment that failed in production, was rolled back there (a rollback that
  acted: a refused one changed nothing), or was vetoed;
- time to restore: from the failure (the stage failed, or the rollback away from it was planned) to
  production running a good release again (that rollback finished, or the next release verified).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from statistics import median
from typing import Any

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release, StageRecord
from conveyor.api.rollback import Rollback
from conveyor.views.journey import rollback_side
from conveyor.views.links import iso
from conveyor.views.text import history


def _prod(rel: Release, stage: str) -> StageRecord | None:
    return next((r for r in rel.status.stages if r.name == stage), None)


# A declared commit time is CI's word: trusted from a year before the Release was created up to a
# few minutes after it (clock skew). Outside that (a typo, year 0001, year 9999), the Release's own
# creation stands in — the lead time must not become nonsense, negative or centuries long.
COMMIT_TIME_BEFORE = timedelta(days=365)
COMMIT_TIME_SKEW = timedelta(minutes=5)


def change_start(rel: Release) -> datetime | None:
    """When the change began: the declared commit time when plausible, else the Release's creation."""
    created = rel.metadata.creation_timestamp
    declared = rel.spec.source.commit_time
    if declared is not None and (
        created is None or created - COMMIT_TIME_BEFORE <= declared <= created + COMMIT_TIME_SKEW
    ):
        return declared
    return created


def _median(values: list[float]) -> float | None:
    return round(median(values), 3) if values else None


def dora(
    pipeline: Pipeline, releases: list[Release], rollbacks: list[Rollback], now: datetime, days: int = 30
) -> dict[str, Any]:
    """The four DORA metrics of one pipeline over the last `days` days, and how each was counted."""
    if not pipeline.spec.stages:
        return {"days": days, "deployments": 0}
    prod = pipeline.spec.stages[-1].name
    since = now - timedelta(days=days)
    mine = [r for r in releases if r.spec.pipeline == pipeline.metadata.name]
    deployed = [
        (r, rec) for r in mine if (rec := _prod(r, prod)) and rec.deployed_at and rec.deployed_at >= since
    ]
    lead = [
        max((rec.verified_at - (change_start(r) or rec.verified_at)).total_seconds(), 0.0)
        for r in mine
        if (rec := _prod(r, prod)) and rec.verified_at and rec.verified_at >= since
    ]
    # Only rollbacks that acted: a Refused one (or one still planning) changed nothing in production.
    prod_rollbacks = [
        rb
        for rb in rollbacks
        if rb.status.plan is not None
        and rb.status.plan.stage == prod
        and rb.status.plan.from_release
        and rb.status.patched_at is not None
    ]
    verified_times = sorted(rec.verified_at for r in mine if (rec := _prod(r, prod)) and rec.verified_at)
    failures: list[dict[str, Any]] = []
    for r, rec in deployed:
        away = [rb for rb in prod_rollbacks if rollback_side(rb, r) == "from"]
        if str(rec.phase) != "Failed" and not away and not r.status.vetoed:
            continue
        started = min(
            [t for t in [rec.finished_at if str(rec.phase) == "Failed" else None] if t]
            + [t for rb in away if (t := rb.status.planned_at or rb.metadata.creation_timestamp)],
            default=rec.finished_at or rec.deployed_at,
        )
        restored = min(
            [
                rb.status.finished_at
                for rb in away
                if rb.status.finished_at and str(rb.status.phase) == "Succeeded"
            ]
            + [t for t in verified_times if started and t > started],
            default=None,
        )
        failures.append(
            {
                "release": r.metadata.name,
                "commit": r.spec.commit[:7],
                "failedAt": iso(started),
                "restoredAt": iso(restored),
                "restoreSeconds": round((restored - started).total_seconds(), 3)
                if restored and started
                else None,
                "how": "rolled back" if away else ("vetoed" if r.status.vetoed else "failed"),
            }
        )
    restore = [f["restoreSeconds"] for f in failures if f["restoreSeconds"] is not None]
    return {
        "days": days,
        "stage": prod,
        "deployments": len(deployed),
        "deploymentsPerDay": round(len(deployed) / days, 3),
        "leadTimeSeconds": _median(lead),
        "leadTimes": len(lead),
        "failedChanges": len(failures),
        "changeFailureRate": round(len(failures) / len(deployed), 3) if deployed else None,
        "timeToRestoreSeconds": _median(restore),
        "failures": failures,
    }


def per_day(
    pipeline: Pipeline, releases: list[Release], rollbacks: list[Rollback], now: datetime, days: int = 30
) -> list[dict[str, Any]]:
    """Promotions (into any stage) and rollbacks per UTC day, oldest first, `days` days to today."""
    today = now.date()
    counts = {
        today - timedelta(days=i): {"promotions": 0, "failures": 0, "rollbacks": 0} for i in range(days)
    }
    for r in releases:
        if r.spec.pipeline != pipeline.metadata.name:
            continue
        for rec in r.status.stages:
            if rec.deployed_at and rec.deployed_at.date() in counts:
                counts[rec.deployed_at.date()]["promotions"] += 1
            if str(rec.phase) == "Failed" and rec.finished_at and rec.finished_at.date() in counts:
                counts[rec.finished_at.date()]["failures"] += 1
    for rb in rollbacks:
        t = rb.status.patched_at  # rollbacks that acted, on the day they did
        if rb.spec.pipeline == pipeline.metadata.name and t and t.date() in counts:
            counts[t.date()]["rollbacks"] += 1
    return [{"day": d.isoformat(), **counts[d]} for d in sorted(counts)]


def pipeline_page(
    pipeline: Pipeline, releases: list[Release], rollbacks: list[Rollback], now: datetime, days: int = 30
) -> dict[str, Any]:
    """A pipeline's history and delivery: its stages, every promotion and rollback, DORA, per day."""
    mine = [r for r in releases if r.spec.pipeline == pipeline.metadata.name]
    return {
        "namespace": pipeline.metadata.namespace,
        "name": pipeline.metadata.name,
        "stages": [
            {"stage": s.name, "namespace": s.namespace, "requiresApproval": s.requires_approval}
            for s in pipeline.spec.stages
        ],
        "history": history(mine, [rb for rb in rollbacks if rb.spec.pipeline == pipeline.metadata.name]),
        "dora": dora(pipeline, mine, rollbacks, now, days),
        "perDay": per_day(pipeline, mine, rollbacks, now, days),
        "vetoed": [
            {"release": v.release, "commit": v.commit[:7], "rollback": v.rollback, "at": iso(v.at)}
            for v in pipeline.status.vetoed
        ],
        "parity": [
            {"path": d.path, "a": f"{d.stage_a}: {d.shape_a}", "b": f"{d.stage_b}: {d.shape_b}"}
            for d in pipeline.status.parity.differences
        ],
    }
