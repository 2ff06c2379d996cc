"""Retention: which old, finished Releases of a pipeline to delete.

Keep the newest `keepReleases`; beyond them delete finished ones — but never a release that is
still live, was last verified in a stage, runs in a stage now (even one that failed after deploying),
last changed a stage (a rollback plans from it), is a stage's rollback target (the one a Rollback
would go back to), is named by an unfinished Rollback, or was vetoed less than `vetoedSeconds` ago
(counted from the veto, on the operator's clock).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.api.pipeline import Pipeline, PipelineStatus
from conveyor.api.release import TERMINAL_PHASES, Release
from conveyor.api.rollback import ROLLBACK_TERMINAL, Rollback
from conveyor.core.plan import order_key, recreated, stage_record
from conveyor.core.rollback import occupant
from conveyor.core.running import release_running, releases_running
from conveyor.core.world import World


def protected(
    pipeline: Pipeline,
    status: PipelineStatus,
    releases: list[Release],
    rollbacks: list[Rollback],
    *,
    world: World | None = None,
) -> dict[str, str]:
    """Releases that must stay, with why."""
    keep: dict[str, str] = {}
    for state in status.stages:
        if state.release:
            keep.setdefault(state.release, f"runs in {state.name}")
        if state.in_flight:
            keep.setdefault(state.in_flight, f"in flight in {state.name}")
        if state.running and state.running.release:
            keep.setdefault(state.running.release, f"its image runs in {state.name}")
    by_name = {r.metadata.name: r for r in releases}
    for stage in pipeline.spec.stages:
        sw = world.stages.get(stage.name) if world is not None else None
        for name in sorted(releases_running(pipeline, sw, releases)):
            keep.setdefault(name, f"its image runs in {stage.name}")
        runs = release_running(pipeline, sw, releases)
        last = occupant(stage.name, by_name, rollbacks, "", runs.metadata.name if runs else None)
        if last:
            keep.setdefault(last, f"last changed {stage.name} (a rollback plans from it)")
    for stage in pipeline.spec.stages:
        last_verified = next((s.release for s in status.stages if s.name == stage.name), None)
        verified = [
            (stage_record(r, stage.name).verified_at, r.metadata.name)
            for r in releases
            if stage_record(r, stage.name) is not None
            and stage_record(r, stage.name).verified_at
            and r.metadata.name != last_verified
            and not r.status.vetoed
        ]
        if verified:
            keep.setdefault(max(verified)[1], f"rollback target of {stage.name}")
    for rb in rollbacks:
        plan = rb.status.plan
        if rb.status.phase not in ROLLBACK_TERMINAL and plan is not None:
            for named in (plan.from_release, plan.to_release):
                if named:
                    keep.setdefault(named, f"named by rollback {rb.metadata.name}")
    return keep


def to_delete(
    pipeline: Pipeline,
    status: PipelineStatus,
    releases: list[Release],
    rollbacks: list[Rollback],
    now: datetime,
    *,
    world: World | None = None,
) -> list[tuple[str, str]]:
    """(release, why) to delete now, oldest first."""
    policy = pipeline.spec.retention
    retired = {r.release: r for r in status.retired}
    # A release retention deleted and something created again is no release of the policy's count
    # (it has the newest creation time): deleting it again would only see it re-created.
    newest_first = sorted((r for r in releases if not recreated(r, retired)), key=order_key, reverse=True)
    keep = protected(pipeline, status, releases, rollbacks, world=world)
    vetoed_floor = now - timedelta(seconds=policy.vetoed_seconds)
    vetoed_at = {v.release: v.at for v in status.vetoed}
    out = []
    for r in newest_first[policy.keep_releases :]:
        name = r.metadata.name
        if r.status.phase not in TERMINAL_PHASES or name in keep:
            continue
        # The veto's own time; for a veto the list no longer holds, when Conveyor accepted the release.
        if r.status.vetoed and vetoed_at.get(name, r.status.accepted_at or now) > vetoed_floor:
            continue
        out.append(
            (
                name,
                f"beyond the newest {policy.keep_releases} releases of pipeline "
                f"{pipeline.metadata.name} ({r.status.phase})",
            )
        )
    return list(reversed(out))
