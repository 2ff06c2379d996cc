"""Retention: which old, finished Releases of a pipeline to delete.

Keep the newest `keepReleases`; beyond them delete finished ones — but never a release that is
still live, runs in a stage, is a stage's rollback target (the one a Rollback would go back to),
is named by an unfinished Rollback, or is vetoed and younger than `vetoedSeconds`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.api.pipeline import Pipeline, PipelineStatus
from conveyor.api.release import TERMINAL_PHASES, Release
from conveyor.api.rollback import ROLLBACK_TERMINAL, Rollback
from conveyor.core.plan import EPOCH, order_key, stage_record


def protected(
    pipeline: Pipeline, status: PipelineStatus, releases: list[Release], rollbacks: list[Rollback]
) -> dict[str, str]:
    """Releases that must stay, with why."""
    keep: dict[str, str] = {}
    for state in status.stages:
        if state.release:
            keep.setdefault(state.release, f"runs in {state.name}")
        if state.in_flight:
            keep.setdefault(state.in_flight, f"in flight in {state.name}")
    for stage in pipeline.spec.stages:
        running = next((s.release for s in status.stages if s.name == stage.name), None)
        verified = [
            (stage_record(r, stage.name).verified_at, r.metadata.name)
            for r in releases
            if stage_record(r, stage.name) is not None
            and stage_record(r, stage.name).verified_at
            and r.metadata.name != running
            and not r.status.vetoed
        ]
        if verified:
            keep.setdefault(max(verified)[1], f"rollback target of {stage.name}")
    for rb in rollbacks:
        plan = rb.status.plan
        if rb.status.phase not in ROLLBACK_TERMINAL and plan is not None:
            for name in (plan.from_release, plan.to_release):
                if name:
                    keep.setdefault(name, f"named by rollback {rb.metadata.name}")
    return keep


def to_delete(
    pipeline: Pipeline,
    status: PipelineStatus,
    releases: list[Release],
    rollbacks: list[Rollback],
    now: datetime,
) -> list[tuple[str, str]]:
    """(release, why) to delete now, oldest first."""
    policy = pipeline.spec.retention
    newest_first = sorted(releases, key=order_key, reverse=True)
    keep = protected(pipeline, status, releases, rollbacks)
    vetoed_floor = now - timedelta(seconds=policy.vetoed_seconds)
    out = []
    for r in newest_first[policy.keep_releases :]:
        name = r.metadata.name
        if r.status.phase not in TERMINAL_PHASES or name in keep:
            continue
        if r.status.vetoed and (r.metadata.creation_timestamp or EPOCH) > vetoed_floor:
            continue
        out.append(
            (
                name,
                f"beyond the newest {policy.keep_releases} releases of pipeline "
                f"{pipeline.metadata.name} ({r.status.phase})",
            )
        )
    return list(reversed(out))
