"""One release's way through its stages, decided for one pass: the gate before each stage, then
migration Job -> image patch -> rollout -> smoke-test Job -> verified.

The gate is judged at the moment the release enters a stage — pins, newer releases, the approval
policy, parity, a rollback holding the stage, another release in it, the targets existing — and
nothing is recorded for the stage until every part of it passes in the same pass: an approval that
expires while the release waits no longer counts, and a migration never runs against a stage whose
Deployments are missing.
"""

from __future__ import annotations

from datetime import timedelta

from conveyor.api.pipeline import Stage
from conveyor.api.release import Phase, Release, ReleaseStatus, StagePhase, StageRecord
from conveyor.core.approvals import Judgement, gate
from conveyor.core.clusters import ClusterProblem, display, stage_cluster
from conveyor.core.jobs import (
    JobKind,
    bounded_name,
    image_ref,
    job_manifest,
    job_name,
    short_commit,
    uid_tag,
)
from conveyor.core.parity import summary as parity_summary
from conveyor.core.plan import (
    BLOCKED_RETRY_SECONDS,
    CONVEYOR,
    CreateJob,
    CreateRollback,
    Pass,
    SetImage,
    accepted_by,
    current_index,
    order_key,
    path_of,
    recreated,
)
from conveyor.core.release_status import Verdict
from conveyor.core.steps import (
    JobState,
    RolloutState,
    changed_targets,
    check_job,
    check_rollout,
    resolve_targets,
    set_image_annotations,
)


def _record(status: ReleaseStatus, stage: str) -> StageRecord:
    rec = next((r for r in status.stages if r.name == stage), None)
    if rec is None:
        rec = StageRecord(name=stage)
        status.stages.append(rec)
    return rec


def auto_rollback_name(release: Release, stage: str) -> str:
    """The automatic rollback's name: one per failed release (by uid) and stage, whatever restarts
    happen — and a re-created release of the same name gets its own."""
    return bounded_name(release.metadata.name, f"{stage}-rollback-{uid_tag(release.metadata.uid)}")


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
        rec.message = message  # a Message field: cut to its bound on assignment
        self.ctx.in_flight.pop(stage.name, None)
        self.emit(reason, message, stage.name, warning=True)
        changed = rec.deployed_at is not None or rec.migration_job is not None
        if stage.on_failure == "rollback" and changed:
            self.request_rollback(stage, reason)
        return Verdict(Phase.FAILED, reason, f"{stage.name}: {message}")

    def judge_fresh(self, stage: Stage) -> Verdict:
        """Another image than the release's, in a cache: a cache may show a change that has since
        been undone. ImageChanged is judged, like the deadlines, only on live reads: ask for them
        (the shell decides again at once on them; this pass's plan is not applied)."""
        self.ctx.plan.refresh = True
        return Verdict(
            Phase.PROGRESSING, "RolloutInProgress", f"{stage.name}: checking {stage.namespace}'s images"
        )

    def request_rollback(self, stage: Stage, reason: str) -> None:
        """onFailure: rollback — one Rollback object, the same mechanism and audit trail as a manual one."""
        name = auto_rollback_name(self.release, stage.name)
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
        if recreated(self.release, ctx.retired):
            msg = (
                f"release {self.name} ({short_commit(self.commit)}) was deleted by retention at "
                f"{ctx.retired[self.name].at:%Y-%m-%dT%H:%M:%SZ} and created again: an old build, never "
                "promoted again (kept; if Argo CD re-creates it, delete its file from Git; to ship this "
                "build on purpose, create a Release under a new name)"
            )
            if status.phase is None:
                self.emit("ReleaseRetired", msg)
            return Verdict(Phase.SUPERSEDED, "Retired", msg)
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
        """The gate before a stage, judged whole in this pass; None: the release entered it."""
        ctx = self.ctx
        pin = ctx.pins.get(stage.name)
        if pin is not None and accepted_by(self.release, pin.since):
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
        approved = None
        if stage.requires_approval:
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
                return self.awaiting_approval(stage, rec, g.needed, len(g.counted), g.judgements)
            approved = g.counted
        waiting = self.stage_closed(stage)
        if waiting is not None:
            return waiting
        if approved is not None:
            # Recorded only now, as the release enters: the approvals that counted at this moment.
            approvers = [a.spec.approver.username for a in approved if a.spec.approver]
            rec.approval = approved[0].metadata.name
            rec.approvals = [a.metadata.name for a in approved]
            rec.approvers = approvers
            rec.approved_at = max(a.metadata.creation_timestamp or ctx.now for a in approved)
            self.status.approved_by = ", ".join(approvers)
            self.emit(
                "ApprovalGranted",
                f"{', '.join(approvers)} approved {short_commit(self.commit)} for "
                f"{stage.name} ({', '.join(rec.approvals)})",
                stage.name,
                actor=", ".join(approvers),
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

    def awaiting_approval(
        self, stage: Stage, rec: StageRecord, needed: int, counted: int, judgements: dict[str, Judgement]
    ) -> Verdict:
        """The gate is not open: say how many approvals count, and why the others do not."""
        ctx = self.ctx
        if rec.phase != StagePhase.AWAITING_APPROVAL:
            rec.phase = StagePhase.AWAITING_APPROVAL
            self.emit(
                "AwaitingApproval",
                f"stage {stage.name} needs {needed} approval(s) for release {self.name}",
                stage.name,
            )
        reason = "IdentityNotEnforced" if not ctx.world.identity_enforced else "AwaitingApproval"
        msg = (
            f"{counted} of {needed} approval(s) to promote {short_commit(self.commit)} into "
            f"{stage.name}: create an Approval with release={self.name} stage={stage.name}"
        )
        refused = [f"{n} ({j.reason})" for n, j in judgements.items() if not j.counted]
        if refused:
            msg += f"; not counted: {', '.join(refused)}"
        if not ctx.world.identity_enforced:
            msg = (
                "approvals are not counted: " + next(iter(judgements.values())).message
                if judgements
                else (msg + "; and the identity admission policies are not installed")
            )
        return Verdict(Phase.AWAITING_APPROVAL, reason, msg)

    def stage_closed(self, stage: Stage) -> Verdict | None:
        """Why the release may not enter the stage yet (it waits, changing nothing); None: it may."""
        ctx = self.ctx
        sw = ctx.world.stage(stage.name, stage.namespace)
        if sw.problem is not None:
            # A stage Conveyor cannot see is never entered: it waits outside (the cause first: a
            # rollback or a parity check waits on the same cluster), and goes on when it is seen.
            return self.unseen(stage, sw.problem, Phase.WAITING)
        last = ctx.pipeline.spec.stages[-1].name
        enforced = stage.name == last and ctx.pipeline.spec.parity.policy == "enforce"
        if enforced and ctx.parity_unseen:
            return Verdict(
                Phase.WAITING,
                "ParityBlocked",
                f"{stage.name} waits until the stages can be compared: a stage's cluster cannot be seen",
            )
        if enforced and ctx.parity:
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
        # The targets are checked before anything runs in the stage (the migration included): until
        # they exist the release waits outside, and heals when they appear.
        problem = resolve_targets(ctx.pipeline, sw)
        if problem is not None:
            ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
            return Verdict(Phase.WAITING, problem[0], f"{stage.name}: {problem[1]}")
        return None

    def unseen(self, stage: Stage, problem: ClusterProblem, phase: Phase) -> Verdict:
        """The stage's cluster cannot be seen: wait, say why, and look again soon."""
        self.ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
        where = display(stage_cluster(stage))
        message = f"{stage.name}: cannot see cluster {where}: {problem.message}"
        # In the stage it is Progressing, but not progressing now; waiting outside, as any wait.
        return Verdict(phase, problem.reason, message, "False" if phase is Phase.PROGRESSING else None)

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
            # Not yet answered, but never promoted: it reaches nothing (an old build come back, a
            # vetoed artifact) — it must not supersede this one in the pass before it is answered.
            if recreated(other, self.ctx.retired) or other.spec.digest in self.ctx.vetoed:
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
        unseen = ctx.world.stage(stage.name, stage.namespace).problem
        if unseen is not None:
            # Nothing was read there: an empty world would read as "the Job is missing" (a second
            # Job, a lost verdict) or "not rolled out". The record stays as it stood.
            return self.unseen(stage, unseen, Phase.PROGRESSING)
        if pipeline.spec.migration is not None and rec.migration_result is None:
            verdict = self.job_step(stage, rec, JobKind.MIGRATION)
            if verdict is not None:
                return verdict
        if rec.rolled_out_at is None:
            verdict = self.rollout_step(stage, rec)
            if verdict is not None:
                return verdict
        sw = ctx.world.stage(stage.name, stage.namespace)
        changed = changed_targets(pipeline, sw, self.image)
        if changed and not sw.fresh:
            return self.judge_fresh(stage)
        if changed:
            # What is smoke-tested and verified must be what runs: another writer ends the stage.
            return self.fail(
                stage,
                rec,
                "ImageChanged",
                f"the image of {', '.join(changed)} in {stage.namespace} changed after it rolled out to "
                f"{self.image}: another writer is at work",
            )
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
        name = job_name(self.name, self.release.metadata.uid, stage.name, kind)
        recorded = (rec.migration_job if migration else rec.smoke_test_job) is not None
        running = Verdict(Phase.PROGRESSING, f"{event}Running", f"{stage.name}: {label} Job {name} running")
        check = check_job(
            sw,
            name,
            recorded=recorded,
            owner_uid=self.release.metadata.uid,
            started_at=None if migration else rec.smoke_test_started_at,
            deadline_seconds=None if migration else stage.smoke_test_deadline_seconds,
            now=ctx.now,
            # The stage started before its migration was recorded: a conservative "recorded since".
            recorded_since=(rec.started_at or ctx.now) if migration else None,
        )
        ctx.plan.refresh |= check.stale
        if check.traces:
            ctx.plan.traces.add((stage_cluster(stage), stage.namespace))

        def create() -> CreateJob:
            manifest = job_manifest(ctx.pipeline, self.release, stage, kind)
            return CreateJob(
                self.name, stage.namespace, manifest, record_first=migration, cluster=stage_cluster(stage)
            )

        if check.again:  # recorded by a process that died before creating it: create it now
            ctx.plan.actions.append(create())
            return running
        if check.state is JobState.CREATE or check.adopt:
            if check.state is JobState.CREATE:
                ctx.plan.actions.append(create())
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
        if check.state is JobState.MISSING and migration:
            # Recorded before it was created, and it had a Pod (or was recorded too long ago to
            # tell): it may have run, and may not run a second time.
            detail += " (deleted after it started)"
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
        ctx.plan.refresh |= check.stale
        if check.state is RolloutState.BLOCKED:
            # The targets vanished after the release entered: that counts against the deadline.
            since = rec.deployed_at or rec.migrated_at or rec.started_at or ctx.now
            since = max(since, sw.seen_again_at or since)  # a cluster that was away: counted from its return
            deadline = since + timedelta(seconds=stage.rollout_deadline_seconds)
            if ctx.now >= deadline and not sw.fresh:
                # A cache may not show targets created a moment ago: judged only on live reads.
                ctx.plan.refresh = True
                return self.blocked(stage, check.reason, check.detail)
            if ctx.now >= deadline:
                return self.fail(
                    stage,
                    rec,
                    "RolloutTimedOut",
                    f"not rolled out within {stage.rollout_deadline_seconds}s: {check.detail}",
                )
            verdict = self.blocked(stage, check.reason, check.detail)
            ctx.plan.requeue((deadline - ctx.now).total_seconds())
            return verdict
        if check.state is RolloutState.PATCH and rec.deployed_at is not None and not sw.fresh:
            return self.judge_fresh(stage)
        if check.state is RolloutState.PATCH and rec.deployed_at is not None:
            # Someone else changed the image after Conveyor set it: the stage fails, never a fight.
            return self.fail(
                stage,
                rec,
                "ImageChanged",
                f"the image of {', '.join(sorted(check.patches))} in {stage.namespace} changed after "
                f"Conveyor set it to {self.image}: another writer is at work",
            )
        if check.state is RolloutState.PATCH:
            annotations = set_image_annotations(ctx.pipeline, self.name, self.commit)
            cluster = stage_cluster(stage)
            for deployment, images in check.patches.items():
                ctx.plan.actions.append(
                    SetImage(self.name, stage.namespace, deployment, images, annotations, cluster=cluster)
                )
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
        return self.rolling_out(stage, check.detail)

    def rolling_out(self, stage: Stage, lag: str = "") -> Verdict:
        """The rollout goes on (past the deadline, waiting on the cluster's controllers: `lag` says so)."""
        message = f"{stage.name}: rolling out {short_commit(self.commit)}"
        if lag:
            message += f"; past the deadline, waiting on the cluster ({lag})"
        return Verdict(Phase.PROGRESSING, "RolloutInProgress", message)
