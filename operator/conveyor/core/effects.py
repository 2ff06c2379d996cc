"""Cross-object effects of a step, applied in one place.

A rollback decides for itself and returns what it wants done to other objects — stop the release in
flight in its stage, veto the release it rolls away from — as `Effect`s on the pass. They are applied
here, in the order they were returned, right after the step that returned them; so a test (or a
model checker) can read every intent, and no step edits another object's status behind the pass.
"""

from __future__ import annotations

from conveyor.api.pipeline import VetoRecord
from conveyor.api.release import TERMINAL_PHASES, Phase, StagePhase
from conveyor.core.jobs import short_commit
from conveyor.core.plan import LabelRelease, Pass, StopRelease, VetoRelease, stage_record
from conveyor.core.release_status import Verdict, apply_verdict

VETOED_LABEL = "conveyor.dev/vetoed"


def apply_effects(ctx: Pass) -> None:
    """Apply (and drain) the effects steps returned so far in this pass."""
    effects, ctx.effects = ctx.effects, []
    for effect in effects:
        if isinstance(effect, StopRelease):
            _stop(ctx, effect)
        else:
            _veto(ctx, effect)


def _stop(ctx: Pass, effect: StopRelease) -> None:
    """The release ends in the stage: RolledBack if it changed the stage, else Cancelled."""
    r = ctx.releases.get(effect.release)
    rec = stage_record(r, effect.stage) if r is not None else None
    if r is None or rec is None or r.status.phase in TERMINAL_PHASES:
        return
    if rec.phase in (StagePhase.VERIFIED, StagePhase.FAILED):
        return
    changed = rec.deployed_at is not None or rec.migration_job is not None
    rec.phase, rec.finished_at = StagePhase.FAILED, ctx.now
    rec.message = f"stopped by rollback {effect.rollback}"
    phase, reason = (Phase.ROLLED_BACK, "RolledBack") if changed else (Phase.CANCELLED, "Cancelled")
    msg = f"stopped in {effect.stage} by rollback {effect.rollback}"
    ctx.emit(
        "Release",
        r.metadata.name,
        f"Release{reason}",
        msg,
        warning=True,
        stage=effect.stage,
        subject=r,
        actor=effect.actor,
        history=r.status.history,
    )
    apply_verdict(r.status, Verdict(phase, reason, msg), r.metadata.generation, ctx.now)
    if ctx.in_flight.get(effect.stage) == r.metadata.name:
        ctx.in_flight.pop(effect.stage)


def _veto(ctx: Pass, effect: VetoRelease) -> None:
    """Never promoted again: status, label, and the pipeline's list."""
    r = ctx.releases.get(effect.release)
    if r is None or r.status.vetoed:
        return
    r.status.vetoed, r.status.vetoed_by = True, effect.rollback
    ctx.plan.actions.append(LabelRelease(effect.rollback, r.metadata.name, {VETOED_LABEL: "true"}))
    msg = f"vetoed by rollback {effect.rollback}: Conveyor never promotes {short_commit(r.spec.commit)} again"
    ctx.emit(
        "Release",
        r.metadata.name,
        "ReleaseVetoed",
        msg,
        warning=True,
        subject=r,
        actor=effect.actor,
        history=r.status.history,
    )
    if r.status.phase not in TERMINAL_PHASES:
        apply_verdict(r.status, Verdict(Phase.ROLLED_BACK, "Vetoed", msg), r.metadata.generation, ctx.now)
    ctx.vetoed.setdefault(
        r.spec.digest,
        VetoRecord(
            digest=r.spec.digest,
            commit=r.spec.commit,
            release=r.metadata.name,
            rollback=effect.rollback,
            at=ctx.now,
        ),
    )
