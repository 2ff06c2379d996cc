"""The Pipeline's status: per stage, the release last verified there and what its Deployments run
now; the vetoes; and the conditions Ready (targets resolve), InParity, Tracked (every stage runs an
image a live release names) and Reconciled (Conveyor could decide for every object)."""

from __future__ import annotations

from datetime import datetime

from conveyor.api.common import Condition
from conveyor.api.pipeline import VETO_LIMIT, Pipeline, PipelineStatus, RunningState, Stage, StageState
from conveyor.api.release import Release
from conveyor.api.rollback import PlanAction, Rollback, RollbackPhase
from conveyor.core.clusters import ClusterProblem, display, placement, stage_cluster
from conveyor.core.conditions import set_condition
from conveyor.core.jobs import image_ref, short_commit
from conveyor.core.parity import summary as parity_summary
from conveyor.core.plan import Pass, Plan
from conveyor.core.running import release_running, target_images
from conveyor.core.steps import resolve_targets
from conveyor.core.world import StageWorld


def running_state(pipeline: Pipeline, sw: StageWorld | None, releases: list[Release]) -> RunningState | None:
    """What the stage's Deployments run now, matched to the live release whose image it is."""
    targets = target_images(pipeline, sw)
    if not targets:
        return None
    images = {image for _, image, _ in targets}
    state = RunningState()
    if len(images) == 1:
        state.image = targets[0][1]
        state.digest = state.image.partition("@")[2] or None
    named = release_running(pipeline, sw, releases)
    if named is not None:
        state.release, state.commit = named.metadata.name, named.spec.commit
        state.short_commit = short_commit(named.spec.commit)
    known = {image_ref(pipeline, r) for r in releases}
    unknown = [(d, i) for d, i, _ in targets if i not in known]
    touched = any(annotation is not None for _, _, annotation in targets)
    assert sw is not None  # targets exist
    if not touched:
        state.tracked = True
        state.message = "Conveyor has not promoted anything here yet"
    elif unknown:
        state.tracked = False
        state.message = "; ".join(
            f"Deployment {sw.namespace}/{d} runs {i}, which no live Release of pipeline "
            f"{pipeline.metadata.name} names (was its release deleted, or the image set by hand?)"
            for d, i in unknown
        )
    else:
        state.tracked = True
        if named is None:
            state.message = "the targets run images of different releases: " + "; ".join(
                f"{d} runs {i}" for d, i, _ in targets
            )
    return state


def pipeline_status(
    pipeline: Pipeline,
    releases: list[Release],
    *,
    rollbacks: list[Rollback],
    plan: Plan,
    ctx: Pass,
    now: datetime,
) -> PipelineStatus:
    """Per stage, the release last verified there (or rolled back to) and what runs now; conditions."""
    status = pipeline.status.model_copy(deep=True)
    by_name = {r.metadata.name: r for r in releases}
    states: list[StageState] = []
    for stage in pipeline.spec.stages:
        best: tuple[datetime, Release, str | None] | None = None
        for r in releases:
            rec = next((x for x in r.status.stages if x.name == stage.name), None)
            if rec and rec.verified_at and (best is None or rec.verified_at > best[0]):
                best = (rec.verified_at, r, None)
        for rb in rollbacks:
            rbs = plan.rollbacks.get(rb.metadata.name, rb.status)
            p = rbs.plan
            if (
                rbs.phase == RollbackPhase.SUCCEEDED
                and p
                and p.action != PlanAction.NOTHING
                and p.stage == stage.name
                and rbs.finished_at
            ):
                target = by_name.get(p.to_release or "")
                if target is not None and (best is None or rbs.finished_at > best[0]):
                    best = (rbs.finished_at, target, rb.metadata.name)
        sw = ctx.world.stages.get(stage.name)
        problem = sw.problem if sw is not None else None
        state = StageState(
            name=stage.name,
            namespace=stage.namespace,
            cluster=stage.cluster,
            cluster_problem=str(problem) if problem else None,
            in_flight=ctx.in_flight.get(stage.name),
        )
        if best is not None:
            since, r, pinned_by = best
            state.release, state.commit = r.metadata.name, r.spec.commit
            state.short_commit, state.digest, state.since = short_commit(r.spec.commit), r.spec.digest, since
            state.pinned_by = pinned_by
        if problem is None:
            state.running = running_state(pipeline, sw, releases)
        else:  # not seen now: what it ran when last seen
            state.running = next((s.running for s in pipeline.status.stages if s.name == stage.name), None)
        states.append(state)
    status.stages = states
    status.summary = " ".join(_summary(s) for s in states)
    status.production_commit = states[-1].short_commit if states else None
    unseen = [(s.name, sw.cluster, sw.problem) for s, sw in _observed(pipeline, ctx) if sw.problem]
    # Only where some stage lives elsewhere: a single-cluster pipeline's column stays empty.
    status.placement = (
        placement(
            (s.name, stage_cluster(s), sw.problem if sw else None)
            for s in pipeline.spec.stages
            for sw in [ctx.world.stages.get(s.name)]
        )
        if any(s.cluster for s in pipeline.spec.stages)
        else None
    )
    status.vetoed = sorted(ctx.vetoed.values(), key=lambda v: v.at)[-VETO_LIMIT:]
    set_parity(status, pipeline, ctx, now)
    set_tracked(status, pipeline, ctx, now)
    set_reconciled(status, pipeline, plan.errors, now)
    status.observed_generation = pipeline.metadata.generation
    set_reachable(status, pipeline, unseen, now)
    problems = []
    for stage, sw in _observed(pipeline, ctx):
        if sw.problem is None:  # a stage that cannot be seen is judged when it can be
            unresolved = resolve_targets(pipeline, sw)
            if unresolved is not None:
                problems.append((stage.name, *unresolved))
    if problems:
        msg = "; ".join(f"{s}: {m}" for s, _, m in problems)
        status.conditions = set_condition(
            status.conditions,
            "Ready",
            "False",
            problems[0][1],
            msg,
            generation=pipeline.metadata.generation,
            now=now,
        )
    else:
        status.conditions = set_condition(
            status.conditions,
            "Ready",
            "True",
            "TargetsResolved",
            "every stage's namespace, Deployments and containers exist",
            generation=pipeline.metadata.generation,
            now=now,
        )
    return status


def _observed(pipeline: Pipeline, ctx: Pass) -> list[tuple[Stage, StageWorld]]:
    return [(s, ctx.world.stages[s.name]) for s in pipeline.spec.stages if s.name in ctx.world.stages]


def set_reachable(
    status: PipelineStatus, pipeline: Pipeline, unseen: list[tuple[str, str, ClusterProblem]], now: datetime
) -> None:
    """ClustersReachable: every stage's cluster can be seen (only on pipelines with a stage in
    another cluster; single-cluster pipelines carry no such condition)."""
    if all(not s.cluster for s in pipeline.spec.stages):
        status.conditions = [c for c in status.conditions if c.type != "ClustersReachable"]
        return
    gen = pipeline.metadata.generation
    if unseen:
        msg = "; ".join(f"{name} ({display(cluster)}): {p.message}" for name, cluster, p in unseen)
        status.conditions = set_condition(
            status.conditions, "ClustersReachable", "False", unseen[0][2].reason, msg, generation=gen, now=now
        )
    else:
        status.conditions = set_condition(
            status.conditions,
            "ClustersReachable",
            "True",
            "ClustersReachable",
            "every stage's cluster can be seen",
            generation=gen,
            now=now,
        )


def set_parity(status: PipelineStatus, pipeline: Pipeline, ctx: Pass, now: datetime) -> None:
    """The InParity condition and status.parity; an Event when the verdict changes."""
    gen = pipeline.metadata.generation
    if pipeline.spec.parity.policy == "off" or len(pipeline.spec.stages) < 2:
        status.conditions = [c for c in status.conditions if c.type != "InParity"]
        status.parity = status.parity.model_copy(update={"in_parity": None, "differences": []})
        return
    if ctx.parity_unseen:
        return  # a stage cannot be seen: the last verdict stands, checkedAt says when it was made
    in_parity = not ctx.parity
    before = status.parity.in_parity
    if before != in_parity or status.parity.differences != ctx.parity:
        status.parity = status.parity.model_copy(
            update={"in_parity": in_parity, "checked_at": now, "differences": list(ctx.parity)}
        )
    if in_parity:
        msg = f"{len(pipeline.spec.stages)} stages have the same shape"
        status.conditions = set_condition(
            status.conditions, "InParity", "True", "InParity", msg, generation=gen, now=now
        )
    else:
        msg = f"{len(ctx.parity)} difference(s): {parity_summary(ctx.parity)}"
        status.conditions = set_condition(
            status.conditions, "InParity", "False", "StagesDiffer", msg, generation=gen, now=now
        )
    if before is not None and before != in_parity:
        ctx.emit(
            "Pipeline",
            pipeline.metadata.name,
            "ParityRestored" if in_parity else "ParityLost",
            msg,
            warning=not in_parity,
        )


def _summary(state: StageState) -> str:
    """`prod=3f9c2a1`: the commit verified there; `prod=3f9c2a1(runs:9e1b0c2)` while something else
    runs (a rollout in flight, a failure that changed the stage); `(runs:untracked)` for an image no
    live release names."""
    verified = state.short_commit or "-"
    running = state.running
    if running is None:
        return f"{state.name}={verified}"
    if running.tracked is False:
        return f"{state.name}={verified}(runs:untracked)"
    if running.short_commit and running.short_commit != state.short_commit:
        return f"{state.name}={verified}(runs:{running.short_commit})"
    return f"{state.name}={verified}"


def set_tracked(status: PipelineStatus, pipeline: Pipeline, ctx: Pass, now: datetime) -> None:
    """Tracked: every stage runs an image some live release names; an Event when that changes."""
    gen = pipeline.metadata.generation
    lost = [
        f"{s.name}: {s.running.message}" for s in status.stages if s.running and s.running.tracked is False
    ]
    before = next((c.status for c in status.conditions if c.type == "Tracked"), None)
    if lost:
        msg = "; ".join(lost)
        status.conditions = set_condition(
            status.conditions, "Tracked", "False", "UntrackedImage", msg, generation=gen, now=now
        )
    else:
        msg = "every stage runs an image a live release names (or one Conveyor never replaced)"
        status.conditions = set_condition(
            status.conditions, "Tracked", "True", "ImagesTracked", msg, generation=gen, now=now
        )
    if lost and before != "False":
        ctx.emit("Pipeline", pipeline.metadata.name, "UntrackedImage", msg, warning=True)


def reconciled(
    conditions: list[Condition], errors: list[str], *, generation: int, now: datetime
) -> list[Condition]:
    """The Reconciled condition: False with the errors when Conveyor could not decide for some object
    (or a whole pass failed), True otherwise. One rule for the pass and for the shell's report of a
    pass that keeps failing."""
    if errors:
        return set_condition(
            conditions,
            "Reconciled",
            "False",
            "ReconcileFailed",
            "; ".join(errors),
            generation=generation,
            now=now,
        )
    return set_condition(
        conditions,
        "Reconciled",
        "True",
        "Reconciled",
        "every object was reconciled",
        generation=generation,
        now=now,
    )


def set_reconciled(status: PipelineStatus, pipeline: Pipeline, errors: list[str], now: datetime) -> None:
    """Reconciled on the pipeline's status, from this pass's errors."""
    status.conditions = reconciled(
        status.conditions, errors, generation=pipeline.metadata.generation, now=now
    )
