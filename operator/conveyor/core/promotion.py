"""The promotion engine: given one pipeline, its releases, approvals and rollbacks, and the observed
world, decide what happens next. Pure: plain data in, a `Plan` out; the shell performs it.

One pass, in a fixed order: rollbacks first (each decides for itself and returns its effects on
other objects — stop a release, veto one — which are applied right after it, see effects.py), then
each live release in creation order (release_step.py: the gate before each stage, then migration ->
image -> rollout -> smoke test -> verified), then the views (approval_views.py, pipeline_status.py),
then retention and Job clean-up. At most one release is in flight per stage and one rollback acts on
it. Every decision is recomputed from status + world on each pass, so a restarted operator continues
exactly where the last one stopped. A release or rollback whose step raises is left as it was and
named in the Pipeline's Reconciled condition; the others go on.
"""

from __future__ import annotations

from datetime import datetime

from conveyor.api.approval import Approval
from conveyor.api.pipeline import RETIRED_LIMIT, Pipeline, RetiredRecord, Stage
from conveyor.api.release import TERMINAL_PHASES, Phase, Release, ReleaseStatus, StagePhase
from conveyor.api.rollback import ROLLBACK_TERMINAL, PlanAction, Rollback, RollbackPhase
from conveyor.core.approval_views import (
    approval_records,
    approval_statuses,
    approvals_to_own,
    judge_approvals,
    unknown_release_approval,
)
from conveyor.core.cleanup import jobs_to_delete
from conveyor.core.conditions import truncate
from conveyor.core.effects import apply_effects
from conveyor.core.jobs import short_commit
from conveyor.core.parity import compare, stage_objects
from conveyor.core.pipeline_status import pipeline_status
from conveyor.core.plan import (
    EPOCH,
    DeleteRelease,
    Pass,
    Plan,
    current_index,
    order_key,
    path_of,
)
from conveyor.core.release_status import Verdict, apply_verdict
from conveyor.core.release_step import ReleaseStep, auto_rollback_name
from conveyor.core.retention import to_delete
from conveyor.core.rollback import RollbackStep, pins_and_vetoes
from conveyor.core.world import World

__all__ = [
    "Plan",
    "approval_statuses",
    "auto_rollback_name",
    "current_stage",
    "reconcile",
    "unknown_pipeline_release",
    "unknown_release_approval",
]


def current_stage(pipeline: Pipeline, release: Release) -> Stage | None:
    """The stage a release is in or waiting for (None: all verified, or unknown target)."""
    path = path_of(pipeline, release) or []
    index = current_index(release, path)
    return path[index] if index < len(path) else None


def _in_flight(releases: list[Release]) -> dict[str, str]:
    """stage -> the release that entered it and has not finished there."""
    out: dict[str, str] = {}
    for r in releases:
        if r.status.phase in TERMINAL_PHASES:
            continue
        for rec in r.status.stages:
            if rec.started_at and rec.phase not in (StagePhase.VERIFIED, StagePhase.FAILED):
                out[rec.name] = r.metadata.name
    return out


def _acting(rollbacks: list[Rollback]) -> dict[str, str]:
    """stage -> the rollback acting on it (planned, not finished); the first planned wins."""
    acting = [
        rb
        for rb in rollbacks
        if rb.status.phase not in ROLLBACK_TERMINAL
        and rb.status.phase != RollbackPhase.BLOCKED
        and rb.status.plan is not None
        and rb.status.plan.stage
        and rb.status.plan.action not in (PlanAction.REFUSED, PlanAction.NOTHING)
    ]
    holds: dict[str, str] = {}
    for rb in sorted(acting, key=lambda rb: (rb.status.planned_at or EPOCH, order_key(rb))):
        holds.setdefault((rb.status.plan.stage if rb.status.plan else None) or "", rb.metadata.name)
    return holds


def retire(ctx: Pass, doomed: list[tuple[str, str]], due: set[str]) -> list[RetiredRecord]:
    """Retention's deletions, each on the record (Pipeline status.retired) before it happens: a
    release is deleted only once a stored record names its uid, so one created again afterwards
    (Argo CD's self-heal, a re-apply) is known for the old build it is, even if the operator died
    between the two writes. `doomed`: (release, why) to delete now; `due`: every release the policy
    would delete (including those held back for live reads). Returns the records to store.

    A record stays while its name exists in the cluster (waiting for its deletion, or created
    again); only records of names that are gone make room, the oldest first. With no room, nothing
    new is recorded, so nothing more is deleted: retention waits rather than forget."""
    pipeline, working, plan, now = ctx.pipeline, ctx.releases, ctx.plan, ctx.now
    stored = {r.release: r for r in pipeline.status.retired}
    records: dict[str, RetiredRecord] = {}
    for name, rec in stored.items():
        live = working.get(name)
        if live is not None and live.metadata.uid == rec.uid and name not in due:
            continue  # recorded for deletion, no longer due (the policy changed): withdrawn
        records[name] = rec
    present = sum(1 for name in records if name in working)
    for name, why in doomed:
        release = working[name]
        uid = release.metadata.uid or ""
        if name in stored and stored[name].uid == uid:
            plan.actions.append(DeleteRelease(owner=name, release=name, uid=uid))
            ctx.emit(
                "Pipeline",
                pipeline.metadata.name,
                "ReleaseDeleted",
                f"deleted release {name}: {why}",
                subject=release,
            )
            continue
        if present >= RETIRED_LIMIT:
            continue  # no room on the record: not deleted (see the docstring)
        records[name] = RetiredRecord(release=name, digest=release.spec.digest, uid=uid, at=now)
        present += 1
        plan.requeue(1.0)  # retention is in no hurry: the next pass deletes what this one records
    kept = [r for r in records.values() if r.release in working]
    gone = sorted((r for r in records.values() if r.release not in working), key=lambda r: r.at)
    room = RETIRED_LIMIT - len(kept)
    return sorted([*(gone[-room:] if room > 0 else []), *kept], key=lambda r: r.at)


def _failed(kind: str, name: str, error: Exception) -> str:
    return truncate(f"{kind} {name}: {type(error).__name__}: {error}", 300)


def reconcile(
    pipeline: Pipeline,
    releases: list[Release],
    approvals: list[Approval],
    world: World,
    now: datetime,
    *,
    rollbacks: list[Rollback] | None = None,
    invalid: list[str] | None = None,
) -> Plan:
    """Decide one pass over a pipeline: actions to take and the status every object should have.
    `invalid` names objects the shell could not read (they are reported, the rest goes on)."""
    plan = Plan(errors=list(invalid or []))
    ordered = sorted(releases, key=order_key)
    working = {
        r.metadata.name: r.model_copy(update={"status": r.status.model_copy(deep=True)}) for r in ordered
    }
    rbs = sorted(rollbacks or [], key=order_key)
    ctx = Pass(
        pipeline=pipeline,
        world=world,
        approvals=approvals,
        now=now,
        plan=plan,
        releases=working,
        rollbacks=rbs,
        in_flight=_in_flight(ordered),
        holds=_acting(rbs),
    )
    ctx.pins, ctx.vetoed = pins_and_vetoes(pipeline, rbs)
    ctx.retired = {r.release: r for r in pipeline.status.retired}
    if pipeline.spec.parity.policy != "off" and any(sw.problem for sw in world.stages.values()):
        # A stage that cannot be seen is not compared as if it were empty: the last verdict stands.
        ctx.parity = list(pipeline.status.parity.differences)
        ctx.parity_unseen = True
    elif pipeline.spec.parity.policy != "off":
        ctx.parity = compare(pipeline, stage_objects(pipeline, world))
        plan.requeue(float(pipeline.spec.parity.interval_seconds))
    # Rollbacks first: they stop releases in flight, hold stages, and veto artifacts.
    for rb in rbs:
        if rb.status.phase in ROLLBACK_TERMINAL:
            continue
        try:
            plan.rollbacks[rb.metadata.name] = RollbackStep(ctx, rb).run()
        except Exception as e:  # one object's bug never stops the pipeline: name it, go on
            ctx.effects.clear()
            plan.errors.append(_failed("rollback", rb.metadata.name, e))
            continue
        apply_effects(ctx)
    ctx.pins, ctx.vetoed = pins_and_vetoes(pipeline, rbs, plan.rollbacks, ctx.vetoed)
    for name in [r.metadata.name for r in ordered]:
        release = working[name]
        if release.status.phase in TERMINAL_PHASES:
            continue  # a record now; only a rollback's veto marks it further
        before = release.status.model_copy(deep=True)
        try:
            step = ReleaseStep(ctx, release)
            apply_verdict(step.status, step.run(), release.metadata.generation, now)
        except Exception as e:
            release.status = before
            plan.errors.append(_failed("release", name, e))
    enforced = world.identity_enforced
    judged = judge_approvals(pipeline, list(working.values()), approvals, enforced=enforced, now=now)
    for release in working.values():
        release.status.approvals = approval_records(release, approvals, judged)
    originals = {r.metadata.name: r.status for r in ordered}
    # Every live release, and any record that changed (the shell writes only what changed).
    plan.releases = {
        n: r.status
        for n, r in working.items()
        if r.status != originals[n] or originals[n].phase not in TERMINAL_PHASES
    }
    plan.approvals = approval_statuses(
        pipeline, list(working.values()), approvals, enforced=enforced, now=now
    )
    plan.actions.extend(approvals_to_own(list(working.values()), approvals))
    plan.pipeline = pipeline_status(
        pipeline, list(working.values()), rollbacks=rbs, plan=plan, ctx=ctx, now=now
    )
    doomed = to_delete(pipeline, plan.pipeline, list(working.values()), rbs, now, world=world)
    # Only a release whose end is already on the record (written by an earlier pass) goes: one that
    # ends in this very pass — a burst of releases beyond keepReleases, each superseded at once — is
    # answered first, and deleted at a later pass (found by the hostile-input fuzzing: such releases
    # vanished without a word; the status write of a release deleted in the same pass is a 404).
    doomed = [(n, why) for n, why in doomed if originals[n].phase in TERMINAL_PHASES]
    due_now = {n for n, _ in doomed}
    if doomed and any(sw.problem for sw in world.stages.values()):
        # Whether a stage that cannot be seen runs a release's image is unknown: nothing is deleted.
        doomed = []
    if doomed and not all(sw.fresh for sw in world.stages.values()):
        # A deletion is for good: that no stage runs the release's image is judged on live reads
        # (a cache may not have delivered an image set a moment ago).
        plan.refresh = True
        doomed = []
    plan.pipeline.retired = retire(ctx, doomed, due_now)
    deletions, due = jobs_to_delete(pipeline, list(working.values()), rbs, world, now)
    plan.actions.extend(deletions)
    plan.requeue(due)
    return plan


def unknown_pipeline_release(release: Release, now: datetime) -> ReleaseStatus:
    """The status of a Release whose pipeline does not exist (it heals when the pipeline appears)."""
    status = release.status.model_copy(deep=True)
    status.short_commit = short_commit(release.spec.commit)
    apply_verdict(
        status,
        Verdict(
            Phase.PENDING,
            "PipelineNotFound",
            f"no Pipeline {release.spec.pipeline!r} in namespace {release.metadata.namespace}",
        ),
        release.metadata.generation,
        now,
    )
    return status
