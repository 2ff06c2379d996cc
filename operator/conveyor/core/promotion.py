"""The promotion engine: given one pipeline, its releases, approvals and rollbacks, and the observed
world, decide what happens next. Pure: plain data in, a `Plan` out; the shell performs it.

Per stage, in order: approval (if required) -> migration Job -> image patch -> rollout -> smoke-test
Job -> verified. At most one release is in flight per stage; releases waiting for a stage go in
creation order, and a newer one supersedes older waiting ones. Rollbacks go first in every pass:
an active rollback holds its stage, and a completed one pins it (see rollback.py). Every decision
is recomputed from status + world on each pass, so a restarted operator continues exactly where
the last one stopped.
"""

from __future__ import annotations

from datetime import datetime

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.pipeline import Pipeline, PipelineStatus, Stage, StageState
from conveyor.api.release import (
    TERMINAL_PHASES,
    ApprovalRecord,
    Phase,
    Release,
    ReleaseStatus,
    StagePhase,
    StageRecord,
)
from conveyor.api.rollback import ROLLBACK_TERMINAL, Rollback, RollbackPhase
from conveyor.core.approvals import Judgement, gate, judge
from conveyor.core.conditions import set_condition, truncate
from conveyor.core.jobs import (
    JobKind,
    bounded_name,
    image_ref,
    job_manifest,
    job_name,
    short_commit,
    template_for,
)
from conveyor.core.parity import compare, stage_objects
from conveyor.core.parity import summary as parity_summary
from conveyor.core.plan import (
    BLOCKED_RETRY_SECONDS,
    CONVEYOR,
    EPOCH,
    CreateJob,
    CreateRollback,
    DeleteRelease,
    Pass,
    Plan,
    SetImage,
    created_before,
    current_index,
    order_key,
    path_of,
)
from conveyor.core.release_status import Verdict, apply_verdict
from conveyor.core.retention import to_delete
from conveyor.core.rollback import RollbackStep, pins_and_vetoes
from conveyor.core.steps import (
    JobState,
    RolloutState,
    check_job,
    check_rollout,
    resolve_targets,
    set_image_annotations,
)
from conveyor.core.world import World

__all__ = [
    "Plan",
    "approval_statuses",
    "current_stage",
    "jobs_to_observe",
    "reconcile",
    "unknown_pipeline_release",
    "unknown_release_approval",
]


def current_stage(pipeline: Pipeline, release: Release) -> Stage | None:
    """The stage a release is in or waiting for (None: all verified, or unknown target)."""
    path = path_of(pipeline, release) or []
    index = current_index(release, path)
    return path[index] if index < len(path) else None


def jobs_to_observe(
    pipeline: Pipeline, releases: list[Release], rollbacks: list[Rollback] | None = None
) -> list[tuple[str, str, str]]:
    """(stage, namespace, job name) of every Job a live release or rollback may own."""
    out = []
    for release in releases:
        if release.status.phase in TERMINAL_PHASES:
            continue
        stage = current_stage(pipeline, release)
        if stage is None:
            continue
        for kind in (JobKind.MIGRATION, JobKind.SMOKE_TEST):
            if template_for(pipeline, kind) is not None:
                out.append((stage.name, stage.namespace, job_name(release.metadata.name, stage.name, kind)))
    for rb in rollbacks or []:
        plan = rb.status.plan
        if (
            rb.status.phase in ROLLBACK_TERMINAL
            or plan is None
            or plan.stage is None
            or plan.namespace is None
        ):
            continue
        for kind in (JobKind.DOWN_MIGRATION, JobKind.SMOKE_TEST):
            out.append((plan.stage, plan.namespace, job_name(rb.metadata.name, plan.stage, kind)))
    return out


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


def _record(status: ReleaseStatus, stage: str) -> StageRecord:
    rec = next((r for r in status.stages if r.name == stage), None)
    if rec is None:
        rec = StageRecord(name=stage)
        status.stages.append(rec)
    return rec


def auto_rollback_name(release: str, stage: str) -> str:
    """The automatic rollback's name: one per failed release and stage, whatever restarts happen."""
    return bounded_name(release, f"{stage}-rollback")


class ReleaseStep:
    """Advance one release as far as the world allows in this pass."""

    def __init__(self, ctx: Pass, release: Release) -> None:
        self.ctx = ctx
        self.release = release
        self.status = release.status  # the pass's working copy
        self.name = release.metadata.name
        self.commit = release.spec.commit
        self.image = image_ref(ctx.pipeline, release)

    def emit(
        self,
        reason: str,
        message: str,
        stage: str | None = None,
        *,
        warning: bool = False,
        actor: str = CONVEYOR,
    ) -> None:
        self.ctx.emit(
            "Release",
            self.name,
            reason,
            message,
            warning=warning,
            stage=stage,
            subject=self.release,
            actor=actor,
            history=self.status.history,
        )

    def fail(self, stage: Stage, rec: StageRecord, reason: str, message: str) -> Verdict:
        rec.phase = StagePhase.FAILED
        rec.finished_at = self.ctx.now
        rec.message = truncate(message)
        self.ctx.in_flight.pop(stage.name, None)
        self.emit(reason, message, stage.name, warning=True)
        changed = rec.deployed_at is not None or rec.migration_job is not None
        if stage.on_failure == "rollback" and changed:
            self.request_rollback(stage, reason)
        return Verdict(Phase.FAILED, reason, f"{stage.name}: {message}")

    def request_rollback(self, stage: Stage, reason: str) -> None:
        """onFailure: rollback — one Rollback object, the same mechanism and audit trail as a manual one."""
        name = auto_rollback_name(self.name, stage.name)
        manifest = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "Rollback",
            "metadata": {
                "name": name,
                "namespace": self.ctx.pipeline.metadata.namespace,
                "labels": {
                    "conveyor.dev/automatic": "true",
                    "conveyor.dev/pipeline": self.ctx.pipeline.metadata.name,
                },
            },
            "spec": {
                "pipeline": self.ctx.pipeline.metadata.name,
                "stage": stage.name,
                "reason": f"automatic: release {self.name} failed in {stage.name} ({reason})",
            },
        }
        self.ctx.plan.actions.append(CreateRollback(self.name, manifest))
        self.emit("RollbackRequested", f"stage {stage.name} fails over: Rollback {name} created", stage.name)

    def blocked(self, stage: Stage, reason: str, message: str) -> Verdict:
        """The world is not as the pipeline says; wait (never fail) and look again soon."""
        self.ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
        return Verdict(Phase.PROGRESSING, reason, f"{stage.name}: {message}", progressing="False")

    def run(self) -> Verdict:
        ctx, status = self.ctx, self.status
        status.short_commit = short_commit(self.commit)
        status.image = self.image
        if status.accepted_at is None:
            status.accepted_at = ctx.now
        veto = ctx.vetoed.get(self.release.spec.digest)
        if veto is not None:
            msg = (
                f"image {self.release.spec.digest} was rolled away from by {veto.rollback} (as release "
                f"{veto.release}); Conveyor never promotes it again"
            )
            status.vetoed, status.vetoed_by = True, veto.rollback
            self.emit("ReleaseVetoed", msg)
            return Verdict(Phase.VETOED, "Vetoed", msg)
        path = path_of(ctx.pipeline, self.release)
        if path is None:
            names = ", ".join(s.name for s in ctx.pipeline.spec.stages)
            return Verdict(
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
            index = current_index(self.release, path)
            ctx.position[self.name] = index
            if index == len(path):
                last = path[-1].name
                self.emit("ReleaseSucceeded", f"verified in every stage up to {last}", last)
                return Verdict(Phase.SUCCEEDED, "Promoted", f"verified in {last}")
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

    def enter(self, stage: Stage, rec: StageRecord, index: int) -> Verdict | None:
        """Gatekeeping before a stage: pins, supersede, approval, rollbacks, one release at a time."""
        ctx = self.ctx
        pin = ctx.pins.get(stage.name)
        if pin is not None and created_before(self.release, pin.since):
            msg = (
                f"stage {stage.name} was rolled back to {pin.release} by {pin.rollback}; only releases "
                "created after that enter it"
            )
            self.emit("Superseded", msg, stage.name)
            return Verdict(Phase.SUPERSEDED, "PinnedByRollback", msg)
        newer = self.newer_reaching(stage, index)
        if newer is not None:
            msg = f"release {newer} (newer) reached stage {stage.name} first; this one will not be promoted"
            self.emit("Superseded", msg, stage.name)
            rec.message = msg
            return Verdict(Phase.SUPERSEDED, "Superseded", msg)
        if stage.requires_approval and rec.approval is None:
            g = gate(
                self.release,
                stage,
                ctx.approvals,
                ctx.pipeline,
                enforced=ctx.world.identity_enforced,
                now=ctx.now,
            )
            ctx.plan.requeue(g.requeue_after)
            if not g.open:
                if rec.phase != StagePhase.AWAITING_APPROVAL:
                    rec.phase = StagePhase.AWAITING_APPROVAL
                    self.emit(
                        "AwaitingApproval",
                        f"stage {stage.name} needs {g.needed} approval(s) for release {self.name}",
                        stage.name,
                    )
                reason = "IdentityNotEnforced" if not ctx.world.identity_enforced else "AwaitingApproval"
                msg = (
                    f"{len(g.counted)} of {g.needed} approval(s) to promote {short_commit(self.commit)} into "
                    f"{stage.name}: create an Approval with release={self.name} stage={stage.name}"
                )
                refused = [f"{n} ({j.reason})" for n, j in g.judgements.items() if not j.counted]
                if refused:
                    msg += f"; not counted: {', '.join(refused)}"
                if not ctx.world.identity_enforced:
                    msg = (
                        "approvals are not counted: " + next(iter(g.judgements.values())).message
                        if g.judgements
                        else (msg + "; and the identity admission policies are not installed")
                    )
                return Verdict(Phase.AWAITING_APPROVAL, reason, msg)
            approvers = [a.spec.approver.username for a in g.counted if a.spec.approver]
            rec.approval = g.counted[0].metadata.name
            rec.approvals = [a.metadata.name for a in g.counted]
            rec.approvers = approvers
            rec.approved_at = max(a.metadata.creation_timestamp or ctx.now for a in g.counted)
            self.status.approved_by = ", ".join(approvers)
            self.emit(
                "ApprovalGranted",
                f"{', '.join(approvers)} approved {short_commit(self.commit)} for "
                f"{stage.name} ({', '.join(rec.approvals)})",
                stage.name,
                actor=", ".join(approvers),
            )
        last = ctx.pipeline.spec.stages[-1].name
        if stage.name == last and ctx.parity and ctx.pipeline.spec.parity.policy == "enforce":
            return Verdict(
                Phase.WAITING,
                "ParityBlocked",
                f"{stage.name} waits until the stages are in parity: {parity_summary(ctx.parity)}",
            )
        hold = ctx.holds.get(stage.name)
        if hold is not None:
            return Verdict(
                Phase.WAITING, "RollbackInProgress", f"waiting for rollback {hold} of {stage.name}"
            )
        busy = ctx.in_flight.get(stage.name)
        if busy is not None and busy != self.name:
            return Verdict(
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
        for other in self.ctx.releases.values():
            if other.metadata.name == self.name or order_key(other) <= mine:
                continue
            if other.status.phase in (
                Phase.FAILED,
                Phase.SUPERSEDED,
                Phase.ROLLED_BACK,
                Phase.CANCELLED,
                Phase.VETOED,
            ):
                continue
            other_path = path_of(self.ctx.pipeline, other)
            if other_path is None or stage.name not in [s.name for s in other_path]:
                continue
            position = self.ctx.position.get(other.metadata.name, current_index(other, other_path))
            if position >= index:
                return other.metadata.name
        return None

    def in_stage(self, stage: Stage, rec: StageRecord) -> Verdict | None:
        """Migration -> rollout -> smoke test -> verified. None: the stage is verified, go on."""
        ctx = self.ctx
        pipeline = ctx.pipeline
        if pipeline.spec.migration is not None and rec.migration_result is None:
            verdict = self.job_step(stage, rec, JobKind.MIGRATION)
            if verdict is not None:
                return verdict
        if rec.rolled_out_at is None:
            verdict = self.rollout_step(stage, rec)
            if verdict is not None:
                return verdict
        if pipeline.spec.smoke_test is not None and rec.smoke_test_result is None:
            verdict = self.job_step(stage, rec, JobKind.SMOKE_TEST)
            if verdict is not None:
                return verdict
        rec.phase = StagePhase.VERIFIED
        rec.verified_at = rec.finished_at = ctx.now
        ctx.in_flight.pop(stage.name, None)
        self.emit("StageVerified", f"{short_commit(self.commit)} verified in {stage.name}", stage.name)
        ctx.emit(
            "Pipeline",
            pipeline.metadata.name,
            "StagePromoted",
            f"{stage.name} now runs {short_commit(self.commit)} (release {self.name})",
            stage=stage.name,
            subject=self.release,
        )
        return None

    def job_step(self, stage: Stage, rec: StageRecord, kind: JobKind) -> Verdict | None:
        """Create the Job once, then wait for its verdict. None: it succeeded."""
        ctx = self.ctx
        migration = kind is JobKind.MIGRATION
        label = "migration" if migration else "smoke test"
        event = "Migration" if migration else "SmokeTest"
        sw = ctx.world.stage(stage.name, stage.namespace)
        name = job_name(self.name, stage.name, kind)
        recorded = (rec.migration_job if migration else rec.smoke_test_job) is not None
        running = Verdict(Phase.PROGRESSING, f"{event}Running", f"{stage.name}: {label} Job {name} running")
        if not recorded and not sw.namespace_exists:
            return self.blocked(stage, "NamespaceNotFound", f"namespace {stage.namespace} does not exist")
        check = check_job(
            sw,
            name,
            recorded=recorded,
            owner_uid=self.release.metadata.uid,
            started_at=None if migration else rec.smoke_test_started_at,
            deadline_seconds=None if migration else stage.smoke_test_deadline_seconds,
            now=ctx.now,
        )
        if check.state is JobState.CREATE or check.adopt:
            if check.state is JobState.CREATE:
                ctx.plan.actions.append(
                    CreateJob(
                        self.name, stage.namespace, job_manifest(ctx.pipeline, self.release, stage, kind)
                    )
                )
            if migration:
                rec.migration_job, rec.phase = name, StagePhase.MIGRATING
            else:
                rec.smoke_test_job, rec.phase, rec.smoke_test_started_at = (
                    name,
                    StagePhase.SMOKE_TESTING,
                    ctx.now,
                )
            self.emit(f"{event}Started", f"{label} Job {name} started in {stage.namespace}", stage.name)
            if check.state is JobState.CREATE:
                return running
        if check.state is JobState.SUCCEEDED:
            if migration:
                rec.migration_result, rec.migrated_at = "Succeeded", ctx.now
            else:
                rec.smoke_test_result = "Succeeded"
            self.emit(f"{event}Succeeded", f"{label} Job {name} completed", stage.name)
            return None
        if check.state is JobState.RUNNING:
            ctx.plan.requeue(check.requeue_after)
            return running
        if migration:
            rec.migration_result = "Failed"
        else:
            rec.smoke_test_result = "Failed"
        reason = {
            JobState.CONFLICT: "JobNameConflict",
            JobState.MISSING: f"{event}JobMissing",
            JobState.TIMED_OUT: f"{event}TimedOut",
            JobState.FAILED: f"{event}Failed",
        }[check.state]
        detail = check.detail
        if check.state is JobState.MISSING:
            detail += "; Conveyor never runs it twice"
        if migration and check.state is not JobState.MISSING:
            detail += "; the rollout did not start"
        return self.fail(stage, rec, reason, detail)

    def rollout_step(self, stage: Stage, rec: StageRecord) -> Verdict | None:
        """Set the image once, then wait for every target to be available, within the deadline."""
        ctx = self.ctx
        sw = ctx.world.stage(stage.name, stage.namespace)
        check = check_rollout(
            ctx.pipeline,
            sw,
            image=self.image,
            release=self.name,
            patched_at=rec.deployed_at,
            deadline_seconds=stage.rollout_deadline_seconds,
            now=ctx.now,
        )
        if check.state is RolloutState.BLOCKED:
            return self.blocked(stage, check.reason, check.detail)
        if check.state is RolloutState.PATCH:
            annotations = set_image_annotations(self.name, self.commit)
            for deployment, images in check.patches.items():
                ctx.plan.actions.append(SetImage(self.name, stage.namespace, deployment, images, annotations))
        if rec.deployed_at is None:
            rec.deployed_at, rec.phase = ctx.now, StagePhase.ROLLING_OUT
            targets = ", ".join(sorted({t.deployment for t in ctx.pipeline.spec.targets}))
            self.emit("RolloutStarted", f"set {targets} to {self.image}", stage.name)
        if check.state is RolloutState.DONE:
            rec.rolled_out_at = ctx.now
            took = (ctx.now - rec.deployed_at).total_seconds()
            self.emit(
                "RolloutSucceeded", f"every target available in {stage.name} after {took:.1f}s", stage.name
            )
            return None
        if check.state is RolloutState.FAILED:
            return self.fail(stage, rec, "RolloutFailed", check.detail)
        if check.state is RolloutState.TIMED_OUT:
            return self.fail(stage, rec, "RolloutTimedOut", check.detail)
        ctx.plan.requeue(
            check.requeue_after
            if check.state is RolloutState.WAITING
            else float(stage.rollout_deadline_seconds)
        )
        return Verdict(
            Phase.PROGRESSING, "RolloutInProgress", f"{stage.name}: rolling out {short_commit(self.commit)}"
        )


# --- the pass -----------------------------------------------------------------------------------------


def reconcile(
    pipeline: Pipeline,
    releases: list[Release],
    approvals: list[Approval],
    world: World,
    now: datetime,
    *,
    rollbacks: list[Rollback] | None = None,
) -> Plan:
    """Decide one pass over a pipeline: actions to take and the status every object should have."""
    plan = Plan()
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
    )
    ctx.pins, ctx.vetoed = pins_and_vetoes(pipeline, rbs)
    if pipeline.spec.parity.policy != "off":
        ctx.parity = compare(pipeline, stage_objects(pipeline, world))
        plan.requeue(float(pipeline.spec.parity.interval_seconds))
    # Rollbacks first: they stop releases in flight, hold stages, and veto artifacts.
    for rb in rbs:
        if rb.status.phase in ROLLBACK_TERMINAL:
            continue
        plan.rollbacks[rb.metadata.name] = RollbackStep(ctx, rb).run()
    ctx.pins, ctx.vetoed = pins_and_vetoes(pipeline, rbs, plan.rollbacks, ctx.vetoed)
    for name in [r.metadata.name for r in ordered]:
        release = working[name]
        if release.status.phase in TERMINAL_PHASES:
            continue  # a record now; only a rollback's veto marks it further
        step = ReleaseStep(ctx, release)
        apply_verdict(step.status, step.run(), release.metadata.generation, now)
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
    plan.pipeline = pipeline_status(
        pipeline, list(working.values()), rollbacks=rbs, plan=plan, ctx=ctx, now=now
    )
    for name, why in to_delete(pipeline, plan.pipeline, list(working.values()), rbs, now):
        plan.actions.append(DeleteRelease(owner=name, release=name))
        release = working[name]
        ctx.emit(
            "Pipeline",
            pipeline.metadata.name,
            "ReleaseDeleted",
            f"deleted release {name}: {why}",
            subject=release,
        )
    return plan


def judge_approvals(
    pipeline: Pipeline, releases: list[Release], approvals: list[Approval], *, enforced: bool, now: datetime
) -> dict[str, tuple[Release, Judgement]]:
    """Every approval of this pipeline's releases, judged: Used when it opened its stage, else the gate's
    verdict (which sees duplicates), else judged alone (unknown stage, stage without approval)."""
    by_name = {r.metadata.name: r for r in releases}
    out: dict[str, tuple[Release, Judgement]] = {}
    for a in approvals:
        release = by_name.get(a.spec.release)
        if release is None:
            continue  # another pipeline's, or an unknown release (see unknown_release_approval)
        rec = next((r for r in release.status.stages if r.name == a.spec.stage), None)
        stage = pipeline.stage(a.spec.stage)
        if rec is not None and a.metadata.name in (rec.approvals or ([rec.approval] if rec.approval else [])):
            j = Judgement(True, "Used", f"opened stage {a.spec.stage} for release {release.metadata.name}")
        elif stage is not None and stage.requires_approval:
            j = gate(release, stage, approvals, pipeline, enforced=enforced, now=now).judgements[
                a.metadata.name
            ]
        else:
            j = judge(a, release, pipeline, enforced=enforced, now=now)
        out[a.metadata.name] = (release, j)
    return out


def approval_statuses(
    pipeline: Pipeline, releases: list[Release], approvals: list[Approval], *, enforced: bool, now: datetime
) -> dict[str, ApprovalStatus]:
    """Whether each approval of this pipeline's releases counts, and why (not)."""
    judged = judge_approvals(pipeline, releases, approvals, enforced=enforced, now=now)
    out: dict[str, ApprovalStatus] = {}
    for a in approvals:
        if a.metadata.name not in judged:
            continue
        release, j = judged[a.metadata.name]
        status = a.status.model_copy(deep=True)
        status.commit = release.spec.commit
        if j.reason == "Used":
            rec = next((r for r in release.status.stages if r.name == a.spec.stage), None)
            status.used_at = rec.started_at if rec is not None else None
        status.counted = j.counted
        status.observed_generation = a.metadata.generation
        status.conditions = set_condition(
            status.conditions,
            "Counted",
            "True" if j.counted else "False",
            j.reason,
            j.message,
            generation=a.metadata.generation,
            now=now,
        )
        out[a.metadata.name] = status
    return out


def approval_records(
    release: Release, approvals: list[Approval], judged: dict[str, tuple[Release, Judgement]]
) -> list[ApprovalRecord]:
    """The release's list of every approval considered, with who, when and the verdict."""
    out = []
    for a in sorted(approvals, key=lambda a: (a.metadata.creation_timestamp or EPOCH, a.metadata.name)):
        if a.spec.release != release.metadata.name or a.metadata.name not in judged:
            continue
        j = judged[a.metadata.name][1]
        out.append(
            ApprovalRecord(
                name=a.metadata.name,
                stage=a.spec.stage,
                approver=a.spec.approver.username if a.spec.approver else None,
                at=a.metadata.creation_timestamp,
                counted=j.counted,
                verdict=j.reason,
                message=j.message,
            )
        )
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
        Verdict(
            Phase.PENDING,
            "PipelineNotFound",
            f"no Pipeline {release.spec.pipeline!r} in namespace {release.metadata.namespace}",
        ),
        release.metadata.generation,
        now,
    )
    return status


def pipeline_status(
    pipeline: Pipeline,
    releases: list[Release],
    *,
    rollbacks: list[Rollback],
    plan: Plan,
    ctx: Pass,
    now: datetime,
) -> PipelineStatus:
    """Per stage, the release running there (last verified, or rolled back to); Ready when targets resolve."""
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
            if rbs.phase == RollbackPhase.SUCCEEDED and p and p.stage == stage.name and rbs.finished_at:
                target = by_name.get(p.to_release or "")
                if target is not None and (best is None or rbs.finished_at > best[0]):
                    best = (rbs.finished_at, target, rb.metadata.name)
        state = StageState(
            name=stage.name, namespace=stage.namespace, in_flight=ctx.in_flight.get(stage.name)
        )
        if best is not None:
            since, r, pinned_by = best
            state.release, state.commit = r.metadata.name, r.spec.commit
            state.short_commit, state.digest, state.since = short_commit(r.spec.commit), r.spec.digest, since
            state.pinned_by = pinned_by
        states.append(state)
    status.stages = states
    status.summary = " ".join(f"{s.name}={s.short_commit or '-'}" for s in states)
    status.production_commit = states[-1].short_commit if states else None
    status.vetoed = sorted(ctx.vetoed.values(), key=lambda v: v.at)[-100:]
    set_parity(status, pipeline, ctx, now)
    status.observed_generation = pipeline.metadata.generation
    problems = []
    for stage in pipeline.spec.stages:
        if stage.name in ctx.world.stages:
            problem = resolve_targets(pipeline, ctx.world.stages[stage.name])
            if problem is not None:
                problems.append((stage.name, *problem))
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


def set_parity(status: PipelineStatus, pipeline: Pipeline, ctx: Pass, now: datetime) -> None:
    """The InParity condition and status.parity; an Event when the verdict changes."""
    gen = pipeline.metadata.generation
    if pipeline.spec.parity.policy == "off" or len(pipeline.spec.stages) < 2:
        status.conditions = [c for c in status.conditions if c.type != "InParity"]
        status.parity = status.parity.model_copy(update={"in_parity": None, "differences": []})
        return
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
