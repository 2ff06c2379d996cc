"""The promotion engine: given one pipeline, its releases and approvals, and the observed world,
decide what happens next. Pure: plain data in, a `Plan` out; the shell performs it.

Per stage, in order: approval (if required) -> migration Job -> image patch -> rollout -> smoke-test
Job -> verified. At most one release is in flight per stage; releases waiting for a stage go in
creation order, and a newer one supersedes older waiting ones. Every decision is recomputed from
status + world on each pass, so a restarted operator continues exactly where the last one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.common import ConditionStatus
from conveyor.api.pipeline import Pipeline, PipelineStatus, Stage, StageState
from conveyor.api.release import (
    TERMINAL_PHASES,
    HistoryEntry,
    Phase,
    Release,
    ReleaseStatus,
    StagePhase,
    StageRecord,
)
from conveyor.core.conditions import set_condition, truncate
from conveyor.core.jobs import JobKind, image_ref, job_manifest, job_name, short_commit
from conveyor.core.world import DeploymentView, StageWorld, World

HISTORY_LIMIT = 50
BLOCKED_RETRY_SECONDS = 15.0
# The Job's own activeDeadlineSeconds normally ends a smoke test; this grace covers a Job controller
# that is slow to say so.
SMOKE_GRACE_SECONDS = 30.0


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJob:
    """Create a Job (AlreadyExists means an earlier pass did: fine)."""

    release: str
    namespace: str
    manifest: dict[str, object]


@dataclass(frozen=True)
class SetImage:
    """Point containers of one Deployment at the release's image, and annotate who put it there."""

    release: str
    namespace: str
    deployment: str
    images: dict[str, str]  # container -> image
    annotations: dict[str, str]


Action = CreateJob | SetImage


@dataclass(frozen=True)
class Emit:
    """One transition to announce: an Event on the object, a history line, a JSON log line."""

    kind: Literal["Release", "Pipeline", "Approval"]
    name: str
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    stage: str | None = None
    release: str | None = None
    commit: str | None = None


@dataclass
class Plan:
    """Everything one reconcile pass decided."""

    actions: list[Action] = field(default_factory=list)
    releases: dict[str, ReleaseStatus] = field(default_factory=dict)
    approvals: dict[str, ApprovalStatus] = field(default_factory=dict)
    pipeline: PipelineStatus = field(default_factory=PipelineStatus)
    events: list[Emit] = field(default_factory=list)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        """Ask to be called again within `seconds` (the earliest request wins)."""
        seconds = max(0.1, seconds)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


# --- ordering -----------------------------------------------------------------------------------


def order_key(release: Release) -> tuple[datetime, str]:
    """Creation order (name breaks ties within the API server's one-second timestamps)."""
    created = release.metadata.creation_timestamp or datetime.min
    return (created, release.metadata.name)


def path_of(pipeline: Pipeline, release: Release) -> list[Stage] | None:
    """The stages this release travels: up to its targetStage (None when that stage is unknown)."""
    stages = pipeline.spec.stages
    if release.spec.target_stage is None:
        return list(stages)
    names = [s.name for s in stages]
    if release.spec.target_stage not in names:
        return None
    return list(stages[: names.index(release.spec.target_stage) + 1])


def current_stage(pipeline: Pipeline, release: Release) -> Stage | None:
    """The stage a release is in or waiting for (None: all verified, or unknown target)."""
    path = path_of(pipeline, release) or []
    index = _current_index_from(release.status, path)
    return path[index] if index < len(path) else None


def jobs_to_observe(pipeline: Pipeline, releases: list[Release]) -> list[tuple[str, str, str]]:
    """(stage, namespace, job name) of every Job a live release may own in its current stage."""
    out = []
    for release in releases:
        if release.status.phase in TERMINAL_PHASES:
            continue
        stage = current_stage(pipeline, release)
        if stage is None:
            continue
        for kind, template in (
            (JobKind.MIGRATION, pipeline.spec.migration),
            (JobKind.SMOKE_TEST, pipeline.spec.smoke_test),
        ):
            if template is not None:
                out.append((stage.name, stage.namespace, job_name(release.metadata.name, stage.name, kind)))
    return out


def _record(status: ReleaseStatus, stage: str) -> StageRecord:
    rec = next((r for r in status.stages if r.name == stage), None)
    if rec is None:
        rec = StageRecord(name=stage)
        status.stages.append(rec)
    return rec


def _current_index(pipeline: Pipeline, release: Release) -> int:
    """Index of the first stage of its path not yet verified (len(path) when all are)."""
    path = path_of(pipeline, release) or []
    verified = {r.name for r in release.status.stages if r.phase == StagePhase.VERIFIED}
    for i, s in enumerate(path):
        if s.name not in verified:
            return i
    return len(path)


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


# --- one release ----------------------------------------------------------------------------------


@dataclass
class _Pass:
    """Shared state of one reconcile pass over a pipeline."""

    pipeline: Pipeline
    world: World
    approvals: list[Approval]
    now: datetime
    plan: Plan
    in_flight: dict[str, str]
    position: dict[str, int]  # release -> current stage index, as of this pass
    by_name: dict[str, Release]


@dataclass
class _Verdict:
    """How a release's pass ended: its phase and the reason/message its conditions carry."""

    phase: Phase
    reason: str
    message: str
    progressing: ConditionStatus | None = None  # override (e.g. blocked while in a stage)


class _ReleaseStep:
    """Advance one release as far as the world allows in this pass."""

    def __init__(self, ctx: _Pass, release: Release) -> None:
        self.ctx = ctx
        self.release = release
        self.status = release.status.model_copy(deep=True)
        self.name = release.metadata.name
        self.commit = release.spec.commit
        self.image = image_ref(ctx.pipeline, release)

    # -- announcements

    def emit(self, reason: str, message: str, stage: str | None = None, *, warning: bool = False) -> None:
        message = truncate(message)
        self.ctx.plan.events.append(
            Emit(
                kind="Release",
                name=self.name,
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                stage=stage,
                release=self.name,
                commit=self.commit,
            )
        )
        self.status.history.append(
            HistoryEntry(time=self.ctx.now, reason=reason, stage=stage, message=message)
        )
        del self.status.history[:-HISTORY_LIMIT]

    # -- outcomes

    def fail(self, stage: Stage, rec: StageRecord, reason: str, message: str) -> _Verdict:
        rec.phase = StagePhase.FAILED
        rec.finished_at = self.ctx.now
        rec.message = truncate(message)
        self.ctx.in_flight.pop(stage.name, None)
        self.emit(reason, message, stage.name, warning=True)
        return _Verdict(Phase.FAILED, reason, f"{stage.name}: {message}")

    # -- the walk

    def run(self) -> _Verdict:
        ctx, status = self.ctx, self.status
        status.short_commit = short_commit(self.commit)
        status.image = self.image
        path = path_of(ctx.pipeline, self.release)
        if path is None:
            names = ", ".join(s.name for s in ctx.pipeline.spec.stages)
            return _Verdict(
                Phase.PENDING,
                "UnknownTargetStage",
                f"targetStage {self.release.spec.target_stage!r} is not a stage of pipeline "
                f"{ctx.pipeline.metadata.name} (stages: {names})",
            )
        if status.phase is None:
            self.emit(
                "ReleaseAccepted",
                f"commit {short_commit(self.commit)} ({self.image}) will travel "
                f"{' -> '.join(s.name for s in path)}",
            )
        while True:
            index = _current_index_from(status, path)
            ctx.position[self.name] = index
            if index == len(path):
                last = path[-1].name
                self.emit("ReleaseSucceeded", f"verified in every stage up to {last}", last)
                return _Verdict(Phase.SUCCEEDED, "Promoted", f"verified in {last}")
            stage = path[index]
            status.current_stage = stage.name
            rec = _record(status, stage.name)
            if rec.started_at is None:
                verdict = self.enter(stage, rec, index)
                if verdict is not None:
                    return verdict
            verdict = self.in_stage(stage, rec)
            if verdict is not None:
                return verdict

    def enter(self, stage: Stage, rec: StageRecord, index: int) -> _Verdict | None:
        """Gatekeeping before a stage: supersede, approval, one release at a time."""
        ctx = self.ctx
        newer = self.newer_reaching(stage, index)
        if newer is not None:
            msg = f"release {newer} (newer) reached stage {stage.name} first; this one will not be promoted"
            self.emit("Superseded", msg, stage.name)
            rec.message = msg
            return _Verdict(Phase.SUPERSEDED, "Superseded", msg)
        if stage.requires_approval and rec.approval is None:
            approval = self.approval_for(stage)
            if approval is None:
                if rec.phase != StagePhase.AWAITING_APPROVAL:
                    rec.phase = StagePhase.AWAITING_APPROVAL
                    self.emit(
                        "AwaitingApproval",
                        f"stage {stage.name} needs an Approval for release {self.name}",
                        stage.name,
                    )
                return _Verdict(
                    Phase.AWAITING_APPROVAL,
                    "AwaitingApproval",
                    f"create an Approval with release={self.name} stage={stage.name} to promote "
                    f"{short_commit(self.commit)} into {stage.name}",
                )
            rec.approval = approval.metadata.name
            rec.approved_at = approval.metadata.creation_timestamp
            self.emit(
                "ApprovalGranted", f"approval {approval.metadata.name} opens stage {stage.name}", stage.name
            )
        busy = ctx.in_flight.get(stage.name)
        if busy is not None and busy != self.name:
            return _Verdict(
                Phase.WAITING, "StageBusy", f"waiting for release {busy} to finish in {stage.name}"
            )
        rec.started_at = ctx.now
        rec.phase = StagePhase.MIGRATING
        ctx.in_flight[stage.name] = self.name
        self.emit(
            "StageStarted",
            f"promoting {short_commit(self.commit)} into {stage.name} (namespace {stage.namespace})",
            stage.name,
        )
        return None

    def newer_reaching(self, stage: Stage, index: int) -> str | None:
        """A newer, still-live release that has reached this stage (waiting, in it, or past it)."""
        mine = order_key(self.release)
        for other in self.ctx.by_name.values():
            if other.metadata.name == self.name or order_key(other) <= mine:
                continue
            if other.status.phase in (Phase.FAILED, Phase.SUPERSEDED):
                continue
            other_path = path_of(self.ctx.pipeline, other)
            if other_path is None or stage.name not in [s.name for s in other_path]:
                continue
            position = self.ctx.position.get(other.metadata.name, _current_index(self.ctx.pipeline, other))
            if position >= index:
                return other.metadata.name
        return None

    def approval_for(self, stage: Stage) -> Approval | None:
        """The oldest Approval naming this release and stage."""
        matching = [
            a for a in self.ctx.approvals if a.spec.release == self.name and a.spec.stage == stage.name
        ]
        matching.sort(key=lambda a: (a.metadata.creation_timestamp or datetime.min, a.metadata.name))
        return matching[0] if matching else None

    def in_stage(self, stage: Stage, rec: StageRecord) -> _Verdict | None:
        """Migration -> rollout -> smoke test -> verified. None: the stage is verified, go on."""
        ctx = self.ctx
        sw = ctx.world.stage(stage.name, stage.namespace)
        pipeline = ctx.pipeline
        if pipeline.spec.migration is not None and rec.migration_result is None:
            verdict = self.job_step(stage, rec, sw, JobKind.MIGRATION)
            if verdict is not None:
                return verdict
        if rec.rolled_out_at is None:
            verdict = self.rollout_step(stage, rec, sw)
            if verdict is not None:
                return verdict
        if pipeline.spec.smoke_test is not None and rec.smoke_test_result is None:
            verdict = self.job_step(stage, rec, sw, JobKind.SMOKE_TEST)
            if verdict is not None:
                return verdict
        rec.phase = StagePhase.VERIFIED
        rec.verified_at = rec.finished_at = ctx.now
        ctx.in_flight.pop(stage.name, None)
        self.emit("StageVerified", f"{short_commit(self.commit)} verified in {stage.name}", stage.name)
        ctx.plan.events.append(
            Emit(
                kind="Pipeline",
                name=pipeline.metadata.name,
                type="Normal",
                reason="StagePromoted",
                message=f"{stage.name} now runs {short_commit(self.commit)} (release {self.name})",
                stage=stage.name,
                release=self.name,
                commit=self.commit,
            )
        )
        return None

    def job_step(self, stage: Stage, rec: StageRecord, sw: StageWorld, kind: JobKind) -> _Verdict | None:
        """Create the Job once, then wait for its verdict. None: it succeeded."""
        ctx = self.ctx
        migration = kind is JobKind.MIGRATION
        label = "migration" if migration else "smoke test"
        name = job_name(self.name, stage.name, kind)
        recorded = rec.migration_job if migration else rec.smoke_test_job
        job = sw.jobs.get(name)
        if job is not None and job.release_uid not in (None, self.release.metadata.uid):
            return self.fail(
                stage,
                rec,
                "JobNameConflict",
                f"Job {stage.namespace}/{name} exists but belongs to another release object",
            )
        if recorded is None:
            if not sw.namespace_exists:
                return self.blocked(stage, "NamespaceNotFound", f"namespace {stage.namespace} does not exist")
            if job is None:
                manifest = job_manifest(ctx.pipeline, self.release, stage, kind)
                ctx.plan.actions.append(CreateJob(self.name, stage.namespace, manifest))
            if migration:
                rec.migration_job, rec.phase = name, StagePhase.MIGRATING
                self.emit(
                    "MigrationStarted", f"migration Job {name} started in {stage.namespace}", stage.name
                )
            else:
                rec.smoke_test_job, rec.phase = name, StagePhase.SMOKE_TESTING
                rec.smoke_test_started_at = ctx.now
                self.emit(
                    "SmokeTestStarted", f"smoke-test Job {name} started in {stage.namespace}", stage.name
                )
            if job is None:
                return _Verdict(
                    Phase.PROGRESSING,
                    "MigrationRunning" if migration else "SmokeTestRunning",
                    f"{stage.name}: {label} Job {name} running",
                )
        if job is None:
            return self.fail(
                stage,
                rec,
                "MigrationJobMissing" if migration else "SmokeTestJobMissing",
                f"{label} Job {stage.namespace}/{name} disappeared before it finished; "
                "Conveyor never runs it twice",
            )
        if job.complete:
            if migration:
                rec.migration_result, rec.migrated_at = "Succeeded", ctx.now
                self.emit("MigrationSucceeded", f"migration Job {name} completed", stage.name)
            else:
                rec.smoke_test_result = "Succeeded"
                self.emit("SmokeTestSucceeded", f"smoke-test Job {name} completed", stage.name)
            return None
        if job.failed:
            detail = f"{label} Job {stage.namespace}/{name} failed: {job.failure_reason or 'Failed'}"
            if job.failure_message:
                detail += f" ({job.failure_message})"
            if migration:
                rec.migration_result = "Failed"
                return self.fail(stage, rec, "MigrationFailed", detail + "; the rollout did not start")
            rec.smoke_test_result = "Failed"
            timed_out = job.failure_reason == "DeadlineExceeded"
            return self.fail(stage, rec, "SmokeTestTimedOut" if timed_out else "SmokeTestFailed", detail)
        if not migration and rec.smoke_test_started_at is not None:
            limit = rec.smoke_test_started_at + timedelta(
                seconds=stage.smoke_test_deadline_seconds + SMOKE_GRACE_SECONDS
            )
            if ctx.now >= limit:
                rec.smoke_test_result = "Failed"
                return self.fail(
                    stage,
                    rec,
                    "SmokeTestTimedOut",
                    f"smoke-test Job {name} ran past {stage.smoke_test_deadline_seconds}s",
                )
            ctx.plan.requeue((limit - ctx.now).total_seconds())
        return _Verdict(
            Phase.PROGRESSING,
            "MigrationRunning" if migration else "SmokeTestRunning",
            f"{stage.name}: {label} Job {name} running",
        )

    def blocked(self, stage: Stage, reason: str, message: str) -> _Verdict:
        """The world is not as the pipeline says; wait (never fail) and look again soon."""
        self.ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
        return _Verdict(Phase.PROGRESSING, reason, f"{stage.name}: {message}", progressing="False")

    def rollout_step(self, stage: Stage, rec: StageRecord, sw: StageWorld) -> _Verdict | None:
        """Set the image once, then wait for every target to be available, within the deadline."""
        ctx = self.ctx
        problem = resolve_targets(ctx.pipeline, sw)
        if problem is not None:
            return self.blocked(stage, *problem)
        annotations = {"conveyor.dev/release": self.name, "conveyor.dev/commit": self.commit}
        patches: dict[str, dict[str, str]] = {}
        for t in ctx.pipeline.spec.targets:
            dep = sw.deployments[t.deployment]
            assert dep is not None  # resolve_targets checked
            if dep.images.get(t.container) != self.image or not _annotated(dep, self.name):
                patches.setdefault(t.deployment, {})[t.container] = self.image
        for deployment, images in patches.items():
            ctx.plan.actions.append(SetImage(self.name, stage.namespace, deployment, images, annotations))
        if rec.deployed_at is None:
            rec.deployed_at, rec.phase = ctx.now, StagePhase.ROLLING_OUT
            self.emit(
                "RolloutStarted",
                f"set {', '.join(sorted({t.deployment for t in ctx.pipeline.spec.targets}))} to {self.image}",
                stage.name,
            )
        deadline = rec.deployed_at + timedelta(seconds=stage.rollout_deadline_seconds)
        if not patches:
            views = [sw.deployments[t.deployment] for t in ctx.pipeline.spec.targets]
            if all(v is not None and v.rolled_out() for v in views):
                rec.rolled_out_at = ctx.now
                took = (ctx.now - rec.deployed_at).total_seconds()
                self.emit(
                    "RolloutSucceeded",
                    f"every target available in {stage.name} after {took:.1f}s",
                    stage.name,
                )
                return None
            failed = [v for v in views if v is not None and v.rollout_failed()]
            if failed:
                v = failed[0]
                return self.fail(
                    stage,
                    rec,
                    "RolloutFailed",
                    f"Deployment {stage.namespace}/{v.name}: ProgressDeadlineExceeded "
                    f"({v.progressing_message or 'no progress'})",
                )
        if ctx.now >= deadline:
            return self.fail(stage, rec, "RolloutTimedOut", rollout_timeout_message(ctx.pipeline, sw, stage))
        ctx.plan.requeue((deadline - ctx.now).total_seconds())
        return _Verdict(
            Phase.PROGRESSING, "RolloutInProgress", f"{stage.name}: rolling out {short_commit(self.commit)}"
        )


def _annotated(dep: DeploymentView, release: str) -> bool:
    return dep.release_annotation == release and dep.template_release_annotation == release


def _current_index_from(status: ReleaseStatus, path: list[Stage]) -> int:
    verified = {r.name for r in status.stages if r.phase == StagePhase.VERIFIED}
    return next((i for i, s in enumerate(path) if s.name not in verified), len(path))


def resolve_targets(pipeline: Pipeline, sw: StageWorld) -> tuple[str, str] | None:
    """(reason, message) when a stage's targets do not exist as the pipeline says; None when they do."""
    if not sw.namespace_exists:
        return "NamespaceNotFound", f"namespace {sw.namespace} does not exist"
    for t in pipeline.spec.targets:
        dep = sw.deployments.get(t.deployment)
        if dep is None:
            return "DeploymentNotFound", f"Deployment {sw.namespace}/{t.deployment} does not exist"
        if t.container not in dep.images:
            return (
                "ContainerNotFound",
                f"Deployment {sw.namespace}/{t.deployment} has no container {t.container!r} "
                f"(containers: {', '.join(sorted(dep.images)) or 'none'})",
            )
    return None


def rollout_timeout_message(pipeline: Pipeline, sw: StageWorld, stage: Stage) -> str:
    """What was still missing when the rollout deadline passed."""
    parts = []
    for t in pipeline.spec.targets:
        v = sw.deployments.get(t.deployment)
        if v is not None and not v.rolled_out():
            parts.append(
                f"{t.deployment}: {v.updated_replicas}/{v.replicas} replicas updated, "
                f"{v.unavailable_replicas} unavailable"
            )
    detail = "; ".join(parts) or "targets not available"
    return f"not available within {stage.rollout_deadline_seconds}s ({detail})"


# --- conditions and status --------------------------------------------------------------------------

_CONDITIONS: dict[Phase, tuple[ConditionStatus, ConditionStatus, ConditionStatus, ConditionStatus]] = {
    # phase: (Ready, Progressing, Failed, AwaitingApproval)
    Phase.PENDING: ("False", "False", "False", "False"),
    Phase.WAITING: ("False", "False", "False", "False"),
    Phase.AWAITING_APPROVAL: ("False", "False", "False", "True"),
    Phase.PROGRESSING: ("False", "True", "False", "False"),
    Phase.SUCCEEDED: ("True", "False", "False", "False"),
    Phase.FAILED: ("False", "False", "True", "False"),
    Phase.SUPERSEDED: ("False", "False", "False", "False"),
}


def apply_verdict(status: ReleaseStatus, verdict: _Verdict, generation: int, now: datetime) -> None:
    """Write phase, message and the four conditions from a verdict."""
    status.phase = verdict.phase
    status.message = truncate(verdict.message)
    status.observed_generation = generation
    ready, progressing, failed, awaiting = _CONDITIONS[verdict.phase]
    if verdict.progressing is not None:
        progressing = verdict.progressing
    conds = status.conditions
    for ctype, value in (
        ("Ready", ready),
        ("Progressing", progressing),
        ("Failed", failed),
        ("AwaitingApproval", awaiting),
    ):
        conds = set_condition(
            conds, ctype, value, verdict.reason, verdict.message, generation=generation, now=now
        )
    status.conditions = conds


# --- the pass -----------------------------------------------------------------------------------------


def reconcile(
    pipeline: Pipeline,
    releases: list[Release],
    approvals: list[Approval],
    world: World,
    now: datetime,
) -> Plan:
    """Decide one pass over a pipeline: actions to take and the status every object should have."""
    plan = Plan()
    ordered = sorted(releases, key=order_key)
    ctx = _Pass(
        pipeline=pipeline,
        world=world,
        approvals=approvals,
        now=now,
        plan=plan,
        in_flight=_in_flight(ordered),
        position={},
        by_name={r.metadata.name: r for r in ordered},
    )
    for release in ordered:
        if release.status.phase in TERMINAL_PHASES:
            continue  # a record now; nothing moves it (rollbacks act through their own objects)
        step = _ReleaseStep(ctx, release)
        verdict = step.run()
        apply_verdict(step.status, verdict, release.metadata.generation, now)
        plan.releases[release.metadata.name] = step.status
        # Later releases in this pass see this one's new state (for supersede decisions).
        ctx.by_name[release.metadata.name] = release.model_copy(update={"status": step.status})
    plan.approvals = approval_statuses(pipeline, list(ctx.by_name.values()), approvals, now)
    plan.pipeline = pipeline_status(pipeline, list(ctx.by_name.values()), world, ctx.in_flight, now)
    return plan


def approval_statuses(
    pipeline: Pipeline, releases: list[Release], approvals: list[Approval], now: datetime
) -> dict[str, ApprovalStatus]:
    """Whether each approval of this pipeline's releases counts, and why (not)."""
    by_name = {r.metadata.name: r for r in releases}
    out: dict[str, ApprovalStatus] = {}
    for a in approvals:
        release = by_name.get(a.spec.release)
        if release is None:
            continue  # another pipeline's, or an unknown release (see unknown_release_approval)
        stage = pipeline.stage(a.spec.stage)
        status = a.status.model_copy(deep=True)
        status.commit = release.spec.commit
        if stage is None:
            names = ", ".join(s.name for s in pipeline.spec.stages)
            counted, reason, msg = (
                False,
                "UnknownStage",
                (f"pipeline {pipeline.metadata.name} has no stage {a.spec.stage!r} (stages: {names})"),
            )
        elif not stage.requires_approval:
            counted, reason, msg = False, "NotRequired", f"stage {stage.name} does not require approval"
        else:
            rec = next((r for r in release.status.stages if r.name == stage.name), None)
            if rec is not None and rec.approval == a.metadata.name:
                counted, reason, msg = (
                    True,
                    "Used",
                    f"opened stage {stage.name} for release {release.metadata.name}",
                )
                status.used_at = rec.started_at or rec.approved_at
            else:
                counted, reason, msg = (
                    True,
                    "Accepted",
                    (f"release {release.metadata.name} may enter {stage.name}"),
                )
        status.counted = counted
        status.observed_generation = a.metadata.generation
        status.conditions = set_condition(
            status.conditions,
            "Counted",
            "True" if counted else "False",
            reason,
            msg,
            generation=a.metadata.generation,
            now=now,
        )
        out[a.metadata.name] = status
    return out


def unknown_release_approval(approval: Approval, now: datetime) -> ApprovalStatus:
    """The status of an Approval whose release does not exist (it heals when the release appears)."""
    status = approval.status.model_copy(deep=True)
    status.counted = False
    status.observed_generation = approval.metadata.generation
    status.conditions = set_condition(
        status.conditions,
        "Counted",
        "False",
        "UnknownRelease",
        f"no Release {approval.spec.release!r} in namespace {approval.metadata.namespace}",
        generation=approval.metadata.generation,
        now=now,
    )
    return status


def unknown_pipeline_release(release: Release, now: datetime) -> ReleaseStatus:
    """The status of a Release whose pipeline does not exist (it heals when the pipeline appears)."""
    status = release.status.model_copy(deep=True)
    status.short_commit = short_commit(release.spec.commit)
    apply_verdict(
        status,
        _Verdict(
            Phase.PENDING,
            "PipelineNotFound",
            f"no Pipeline {release.spec.pipeline!r} in namespace {release.metadata.namespace}",
        ),
        release.metadata.generation,
        now,
    )
    return status


def pipeline_status(
    pipeline: Pipeline, releases: list[Release], world: World, in_flight: dict[str, str], now: datetime
) -> PipelineStatus:
    """Per stage, the release last verified there; a one-line summary; Ready when targets resolve."""
    status = pipeline.status.model_copy(deep=True)
    states: list[StageState] = []
    for stage in pipeline.spec.stages:
        best: tuple[datetime, Release] | None = None
        for r in releases:
            rec = next((x for x in r.status.stages if x.name == stage.name), None)
            if rec and rec.verified_at and (best is None or rec.verified_at > best[0]):
                best = (rec.verified_at, r)
        state = StageState(name=stage.name, namespace=stage.namespace, in_flight=in_flight.get(stage.name))
        if best is not None:
            since, r = best
            state.release, state.commit = r.metadata.name, r.spec.commit
            state.short_commit, state.digest, state.since = short_commit(r.spec.commit), r.spec.digest, since
        states.append(state)
    status.stages = states
    status.summary = " ".join(f"{s.name}={s.short_commit or '-'}" for s in states)
    status.production_commit = states[-1].short_commit if states else None
    status.observed_generation = pipeline.metadata.generation
    problems = []
    for stage in pipeline.spec.stages:
        if stage.name in world.stages:
            problem = resolve_targets(pipeline, world.stages[stage.name])
            if problem is not None:
                problems.append((stage.name, *problem))
    if problems:
        reason = problems[0][1]
        msg = "; ".join(f"{s}: {m}" for s, _, m in problems)
        status.conditions = set_condition(
            status.conditions, "Ready", "False", reason, msg, generation=pipeline.metadata.generation, now=now
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
