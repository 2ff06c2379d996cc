"""Rollbacks: plan first (recorded before anything changes), then act, then record — pure decisions.

Plan, against what the stage runs when Conveyor first sees the Rollback (the release that last
changed it):
  schemaChange none / backwardCompatible -> ImageOnly
  breaking, with a downMigration template -> DownMigrationThenImage (run with the *newer* image)
  breaking, without one                   -> Blocked: refused until spec.downMigration is added
  the target is what already runs         -> Nothing (changes, vetoes and pins nothing)
A target never verified in the stage, an unknown one, none at all, or another rollback already
acting on the stage: Refused, and that is final — a refused rollback never acts later. A Blocked one
is planned again when the pipeline changes, and refused for good if the stage moved on meanwhile.

Act: stop the release in flight in the stage (RolledBack, or Cancelled if it changed nothing) and
veto the release rolled away from — both returned as effects for the pass to apply, never edits of
other objects made here — run the down-migration once, set every target back to the target's
digest (stopping, not fighting, if someone else changes the image meanwhile), wait for the rollout,
smoke-test if asked. A completed rollback pins the stage: only releases accepted after it enter,
and a vetoed digest is never promoted again.
"""

from __future__ import annotations

from datetime import datetime

from conveyor.api.common import ConditionStatus
from conveyor.api.pipeline import Pipeline, Stage, VetoRecord
from conveyor.api.release import TERMINAL_PHASES, Release, SchemaChange, StagePhase
from conveyor.api.rollback import (
    ROLLBACK_TERMINAL,
    PlanAction,
    Rollback,
    RollbackPhase,
    RollbackPlan,
    RollbackStatus,
)
from conveyor.core.clusters import display, stage_cluster
from conveyor.core.conditions import set_condition
from conveyor.core.jobs import JobKind, image_ref, job_manifest, job_name, short_commit
from conveyor.core.plan import (
    BLOCKED_RETRY_SECONDS,
    CONVEYOR,
    EPOCH,
    CreateJob,
    Pass,
    Pin,
    SetImage,
    StopRelease,
    VetoRelease,
    stage_record,
)
from conveyor.core.running import release_running
from conveyor.core.steps import (
    JobCheck,
    JobState,
    RolloutState,
    changed_targets,
    check_job,
    check_rollout,
    set_image_annotations,
)
from conveyor.core.world import StageWorld, World

# Refusals the user can fix without a new Rollback; every other refusal is final.
FIXABLE = frozenset({"NoDownMigration"})


def _refuse(
    code: str, message: str, stage: Stage | None = None, src: Release | None = None
) -> tuple[RollbackPlan, str]:
    return RollbackPlan(
        action=PlanAction.REFUSED,
        reason=message,
        stage=stage.name if stage else None,
        namespace=stage.namespace if stage else None,
        from_release=src.metadata.name if src else None,
        from_commit=src.spec.commit if src else None,
        from_digest=src.spec.digest if src else None,
    ), code


def _changed_at(release: Release, stage: str) -> datetime | None:
    """When the release last changed the stage: its image set, or (failing before) its migration."""
    rec = stage_record(release, stage)
    if rec is None:
        return None
    if rec.deployed_at is not None:
        return rec.deployed_at
    return rec.started_at if rec.migration_job is not None else None


def occupant(
    stage: str,
    releases: dict[str, Release],
    rollbacks: list[Rollback],
    exclude: str,
    running: str | None = None,
) -> str | None:
    """The release whose work the stage runs now: the latest to change it, by promotion or rollback.

    `running` is the release whose image the Deployments run (the world's word). It wins unless a
    record shows another release changed the stage after it (a migration that ran, then failed
    before the image was set); it also wins when nothing records its own change — the operator was
    killed between patching the image and writing the release's status."""
    best: tuple[datetime, str] | None = None
    running_at: datetime | None = None
    for r in releases.values():
        t = _changed_at(r, stage)
        if t is not None and (best is None or t > best[0]):
            best = (t, r.metadata.name)
    for rb in rollbacks:
        p, st = rb.status.plan, rb.status
        if (
            rb.metadata.name == exclude
            or p is None
            or p.stage != stage
            or st.patched_at is None
            or not p.to_release
        ):
            continue
        if best is None or st.patched_at > best[0]:
            best = (st.patched_at, p.to_release)
        if p.to_release == running and (running_at is None or st.patched_at > running_at):
            running_at = st.patched_at
    if running is None or best is None or best[1] == running:
        return best[1] if best else running
    own = _changed_at(releases[running], stage) if running in releases else None
    running_at = max((t for t in (own, running_at) if t is not None), default=None)
    return running if running_at is None or running_at >= best[0] else best[1]


def plan_rollback(
    pipeline: Pipeline,
    rollback: Rollback,
    releases: dict[str, Release],
    rollbacks: list[Rollback],
    world: World | None = None,
) -> tuple[RollbackPlan, str]:
    """Decide the plan (and a CamelCase code for the condition reason)."""
    stage_name = rollback.spec.stage or pipeline.spec.stages[-1].name
    stage = pipeline.stage(stage_name)
    if stage is None:
        names = ", ".join(s.name for s in pipeline.spec.stages)
        return _refuse(
            "UnknownStage", f"pipeline {pipeline.metadata.name} has no stage {stage_name!r} (stages: {names})"
        )
    sw = world.stages.get(stage.name) if world is not None else None
    running = release_running(pipeline, sw, list(releases.values()))
    current = occupant(
        stage.name, releases, rollbacks, rollback.metadata.name, running.metadata.name if running else None
    )
    if current is None:
        return _refuse(
            "NothingToRollBack",
            f"Conveyor has never changed stage {stage.name}: there is no release to roll away from",
            stage,
        )
    src = releases.get(current)
    if src is None:
        return _refuse(
            "UnknownRelease", f"release {current}, which runs in {stage.name}, no longer exists", stage
        )

    def verified_at(r: Release) -> datetime | None:
        rec = stage_record(r, stage.name)
        return rec.verified_at if rec is not None else None

    if rollback.spec.to_release:
        target = releases.get(rollback.spec.to_release)
        if target is None:
            return _refuse(
                "UnknownRelease",
                f"no release {rollback.spec.to_release!r} in pipeline {pipeline.metadata.name}",
                stage,
                src,
            )
        if verified_at(target) is None:
            return _refuse(
                "NotVerifiedInStage",
                f"release {target.metadata.name} was never verified in "
                f"{stage.name}: Conveyor only rolls back to a release proven there",
                stage,
                src,
            )
        if target.status.vetoed:
            return _refuse(
                "TargetVetoed",
                f"release {target.metadata.name} was itself rolled away from (by {target.status.vetoed_by})",
                stage,
                src,
            )
    else:
        candidates = [
            r
            for r in releases.values()
            if r.metadata.name != src.metadata.name
            and verified_at(r) is not None
            and not r.status.vetoed
            and r.spec.digest != src.spec.digest
        ]
        if not candidates:
            return _refuse(
                "NoPreviousRelease",
                f"no release other than {src.metadata.name} was ever verified in "
                f"{stage.name}: there is nothing to go back to",
                stage,
                src,
            )
        target = max(candidates, key=lambda r: verified_at(r) or EPOCH)
    base = {
        "stage": stage.name,
        "namespace": stage.namespace,
        "from_release": src.metadata.name,
        "from_commit": src.spec.commit,
        "from_digest": src.spec.digest,
        "schema_change": src.spec.schema_change,
        "to_release": target.metadata.name,
        "to_commit": target.spec.commit,
        "to_digest": target.spec.digest,
    }
    if target.spec.digest == src.spec.digest:
        # The same artifact (perhaps released twice under two names): nothing to change or veto.
        return RollbackPlan(
            action=PlanAction.NOTHING,
            reason=f"{stage.name} already runs {target.metadata.name}'s image ({target.spec.digest})",
            **base,
        ), "AlreadyThere"
    target_at = verified_at(target) or EPOCH
    between = [
        r
        for r in releases.values()
        if r.metadata.name not in (src.metadata.name, target.metadata.name)
        and r.spec.schema_change == SchemaChange.BREAKING
        and (_changed_at(r, stage.name) or EPOCH) > target_at
        # A vetoed release was rolled away from: its breaking change was already undone.
        and not r.status.vetoed
    ]
    if between:
        names = ", ".join(sorted(r.metadata.name for r in between))
        plan = RollbackPlan(
            action=PlanAction.REFUSED,
            reason=f"going back to {target.metadata.name} would "
            f"undo more than one breaking schema change ({names} too): roll back one release "
            "at a time",
            **base,
        )
        return plan, "MultipleBreakingChanges"
    if src.spec.schema_change == SchemaChange.BREAKING:
        if pipeline.spec.down_migration is None:
            plan = RollbackPlan(
                action=PlanAction.REFUSED,
                reason=f"release {src.metadata.name} declares "
                "schemaChange: breaking and pipeline "
                f"{pipeline.metadata.name} defines no spec.downMigration Job: add one (it runs "
                f"with {src.metadata.name}'s image and must undo its schema change), or roll "
                "forward with a fixed release",
                **base,
            )
            return plan, "NoDownMigration"
        return RollbackPlan(
            action=PlanAction.DOWN_MIGRATION_THEN_IMAGE,
            reason=f"{src.metadata.name} made a breaking schema change: run the down-migration "
            "with its image, then set the image back",
            **base,
        ), "DownMigrationThenImage"
    return RollbackPlan(
        action=PlanAction.IMAGE_ONLY,
        reason=f"{src.metadata.name}'s schema change is "
        f"{src.spec.schema_change}: the older image works with the current schema",
        **base,
    ), "ImageOnly"


def pins_and_vetoes(
    pipeline: Pipeline,
    rollbacks: list[Rollback],
    updated: dict[str, RollbackStatus] | None = None,
    vetoed: dict[str, VetoRecord] | None = None,
) -> tuple[dict[str, Pin], dict[str, VetoRecord]]:
    """Stages pinned by completed rollbacks (the latest per stage), and every vetoed digest."""
    pins: dict[str, Pin] = {}
    out = dict(vetoed or {v.digest: v for v in pipeline.status.vetoed})
    for rb in rollbacks:
        st = (updated or {}).get(rb.metadata.name, rb.status)
        p = st.plan
        if p is None or p.stage is None or p.action in (PlanAction.REFUSED, PlanAction.NOTHING):
            continue
        if p.from_digest and p.from_digest not in out and p.from_release and p.from_commit:
            out[p.from_digest] = VetoRecord(
                digest=p.from_digest,
                commit=p.from_commit,
                release=p.from_release,
                rollback=rb.metadata.name,
                at=st.planned_at or EPOCH,
            )
        if st.phase == RollbackPhase.SUCCEEDED and st.finished_at and p.to_release:
            pin = pins.get(p.stage)
            if pin is None or st.finished_at > pin.since:
                pins[p.stage] = Pin(rollback=rb.metadata.name, release=p.to_release, since=st.finished_at)
    return pins, out


class RollbackStep:
    """Advance one rollback as far as the world allows in this pass."""

    def __init__(self, ctx: Pass, rollback: Rollback) -> None:
        self.ctx = ctx
        self.rb = rollback
        self.name = rollback.metadata.name
        self.status = rollback.status.model_copy(deep=True)
        # Who asked for it (an automatic rollback: the operator's own, stamped, identity).
        self.actor = rollback.spec.requester.username if rollback.spec.requester else CONVEYOR

    def emit(self, reason: str, message: str, *, warning: bool = False) -> None:
        p = self.status.plan
        subject = self.ctx.releases.get(p.from_release or "") if p else None
        requester = self.rb.spec.requester
        self.ctx.emit(
            "Rollback",
            self.name,
            reason,
            message,
            warning=warning,
            stage=p.stage if p else None,
            subject=subject,
            actor=requester.username if requester else CONVEYOR,
            history=self.status.history,
        )

    def set_state(self, phase: RollbackPhase, reason: str, message: str) -> None:
        """Phase, message and the four conditions, together."""
        st, now, gen = self.status, self.ctx.now, self.rb.metadata.generation
        st.phase, st.message, st.observed_generation = phase, message, gen  # message: cut on assignment
        flags: dict[str, ConditionStatus] = {
            "Ready": "True" if phase == RollbackPhase.SUCCEEDED else "False",
            "Progressing": "True"
            if phase
            in (
                RollbackPhase.PENDING,
                RollbackPhase.MIGRATING_DOWN,
                RollbackPhase.ROLLING_BACK,
                RollbackPhase.VERIFYING,
            )
            else "False",
            "Failed": "True" if phase == RollbackPhase.FAILED else "False",
            "RollbackBlocked": "True" if phase in (RollbackPhase.BLOCKED, RollbackPhase.REFUSED) else "False",
        }
        for ctype, value in flags.items():
            st.conditions = set_condition(
                st.conditions, ctype, value, reason, message, generation=gen, now=now
            )

    def run(self) -> RollbackStatus:
        """Plan (once; again only while Blocked for a fixable reason), else act on the plan."""
        st = self.status
        unseen = self.unseen()
        if unseen is not None:
            return unseen
        if st.plan is None or st.phase == RollbackPhase.BLOCKED:
            return self.decide()
        return self.act()

    def unseen(self) -> RollbackStatus | None:
        """The stage's cluster cannot be seen: no plan is made and no step taken on what was not
        read (the rollback keeps its phase and goes on when the cluster can be seen); None: it can."""
        st, ctx = self.status, self.ctx
        name = (st.plan.stage if st.plan is not None else None) or self.rb.spec.stage
        stage = ctx.pipeline.stage(name or ctx.pipeline.spec.stages[-1].name)
        sw = ctx.world.stages.get(stage.name) if stage is not None else None
        if stage is None or sw is None or sw.problem is None:
            return None
        if st.plan is not None and st.plan.action != PlanAction.NOTHING and st.phase != RollbackPhase.BLOCKED:
            ctx.holds[stage.name] = self.name  # still acting on the stage: no release enters it
        ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
        message = f"{stage.name}: cannot see cluster {display(stage_cluster(stage))}: {sw.problem.message}"
        self.set_state(st.phase or RollbackPhase.PENDING, sw.problem.reason, message)
        return st

    def decide(self) -> RollbackStatus:
        st, ctx = self.status, self.ctx
        previous = st.plan if st.plan is not None and st.plan.stage is not None else None
        plan, code = plan_rollback(ctx.pipeline, self.rb, ctx.releases, ctx.rollbacks, ctx.world)
        if previous is not None and plan.from_release != previous.from_release:
            # Planned against what the stage ran when first seen; it never acts on a newcomer.
            now_runs = plan.from_release or "nothing Conveyor knows"
            plan = previous.model_copy(
                update={
                    "action": PlanAction.REFUSED,
                    "reason": f"{previous.stage} ran {previous.from_release} when this rollback was "
                    f"planned and runs {now_runs} now: it never acts on a release that entered "
                    "afterwards; create a new Rollback",
                }
            )
            code = "StageMovedOn"
        # Another rollback acting on the stage comes first, whatever this one's plan would be.
        other = ctx.holds.get(self.rb.spec.stage or ctx.pipeline.spec.stages[-1].name)
        if other not in (None, self.name):
            plan = plan.model_copy(
                update={
                    "action": PlanAction.REFUSED,
                    "reason": f"rollback {other} is already acting on {plan.stage}: one rollback at a "
                    "time; create a new one after it finishes if it is still needed",
                }
            )
            code = "RollbackInProgress"
        changed = st.plan is None or st.plan.reason != plan.reason
        st.plan = plan
        st.from_short_commit = short_commit(plan.from_commit) if plan.from_commit else None
        st.to_short_commit = short_commit(plan.to_commit) if plan.to_commit else None
        if plan.action == PlanAction.REFUSED:
            if code in FIXABLE:
                if changed:
                    self.emit("RollbackBlocked", plan.reason, warning=True)
                self.set_state(RollbackPhase.BLOCKED, code, plan.reason)
                return st
            self.finish()
            st.verdict = f"Refused: {code}"
            self.emit("RollbackRefused", plan.reason, warning=True)
            self.set_state(RollbackPhase.REFUSED, code, plan.reason)
            return st
        st.planned_at = ctx.now
        if plan.action == PlanAction.NOTHING:
            return self.succeed()  # nothing to change: no veto, no pin, nothing stopped
        self.emit(
            "RollbackStarted",
            f"{plan.stage}: {plan.from_release} ({st.from_short_commit}) -> "
            f"{plan.to_release} ({st.to_short_commit}); plan {plan.action}: {plan.reason}"
            + (f"; reason: {self.rb.spec.reason}" if self.rb.spec.reason else ""),
        )
        assert plan.stage is not None
        stage = ctx.pipeline.stage(plan.stage)
        assert stage is not None
        ctx.holds[plan.stage] = self.name
        self.stop_in_flight(stage)  # status only: no release may act in the stage from now on
        # The plan is recorded before anything in the cluster changes; the next pass acts on it: the
        # shell runs it at once, right after this status write (the requeue is the fallback).
        ctx.plan.again.add(self.name)
        ctx.plan.requeue(0.05)
        self.set_state(RollbackPhase.PENDING, code, f"planned: {plan.reason}")
        return st

    def act(self) -> RollbackStatus:
        st, ctx = self.status, self.ctx
        plan = st.plan
        assert plan is not None
        assert plan.stage is not None
        stage = ctx.pipeline.stage(plan.stage)
        if stage is None:
            return self.fail("StageRemoved", f"stage {plan.stage} is no longer in the pipeline")
        if plan.action == PlanAction.NOTHING:
            return self.succeed()
        other = ctx.holds.get(stage.name)
        if other not in (None, self.name):
            return self.fail("RollbackInProgress", f"rollback {other} is already acting on {stage.name}")
        ctx.holds[stage.name] = self.name
        self.stop_in_flight(stage)
        src, dst = (
            self.planned(plan.from_release, plan.from_digest),
            self.planned(plan.to_release, plan.to_digest),
        )
        self.veto(src)
        if dst is None or src is None:
            return self.fail(
                "UnknownRelease",
                f"release {plan.to_release if dst is None else plan.from_release} "
                "was deleted (or replaced by a release of the same name) during the rollback",
            )
        sw = ctx.world.stage(stage.name, stage.namespace)
        if plan.action == PlanAction.DOWN_MIGRATION_THEN_IMAGE and st.down_migrated_at is None:
            check, name = self.job(stage, sw, JobKind.DOWN_MIGRATION, src, recorded=st.down_migration_job)
            if (check.state is JobState.CREATE and not check.again) or check.adopt:
                st.down_migration_job = name
                self.emit(
                    "DownMigrationStarted",
                    f"down-migration Job {name} started with {src.metadata.name}'s image",
                )
            if check.state in (JobState.CREATE, JobState.RUNNING):
                self.set_state(
                    RollbackPhase.MIGRATING_DOWN, "DownMigrationRunning", f"down-migration Job {name} running"
                )
                return st
            if check.state is not JobState.SUCCEEDED:
                return self.fail("DownMigrationFailed", f"{check.detail}; the image was not changed")
            st.down_migrated_at = ctx.now
            self.emit("DownMigrationSucceeded", f"down-migration Job {name} completed")
        if st.rolled_out_at is None:
            image = image_ref(ctx.pipeline, dst)
            check_r = check_rollout(
                ctx.pipeline,
                sw,
                image=image,
                release=dst.metadata.name,
                patched_at=st.patched_at,
                deadline_seconds=stage.rollout_deadline_seconds,
                now=ctx.now,
            )
            ctx.plan.refresh |= check_r.stale
            if not sw.fresh and check_r.state is RolloutState.PATCH and st.patched_at is not None:
                ctx.plan.refresh = True  # "another writer" is a verdict: only on fresh reads
                ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
                return st
            if check_r.state is RolloutState.BLOCKED:
                ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
                self.set_state(RollbackPhase.ROLLING_BACK, check_r.reason, check_r.detail)
                return st
            if check_r.state is RolloutState.PATCH and st.patched_at is not None:
                # Someone else changed the image after Conveyor set it: stop, never fight.
                changed_by_others = ", ".join(sorted(check_r.patches))
                return self.fail(
                    "ImageChanged",
                    f"the image of {changed_by_others} in {stage.namespace} changed after the rollback "
                    f"set it to {image}: another writer is at work; the rollback stops here",
                )
            if check_r.state is RolloutState.PATCH:
                annotations = set_image_annotations(
                    ctx.pipeline, dst.metadata.name, dst.spec.commit, self.name
                )
                for deployment, images in check_r.patches.items():
                    ctx.plan.actions.append(
                        SetImage(
                            self.name,
                            stage.namespace,
                            deployment,
                            images,
                            annotations,
                            cluster=stage_cluster(stage),
                        )
                    )
            if st.patched_at is None:
                st.patched_at = ctx.now
                self.emit("RollbackPatched", f"set {stage.name}'s targets back to {image}")
            if check_r.state in (RolloutState.FAILED, RolloutState.TIMED_OUT):
                return self.fail("RollbackRolloutFailed", check_r.detail)
            if check_r.state is not RolloutState.DONE:
                ctx.plan.requeue(check_r.requeue_after or float(stage.rollout_deadline_seconds))
                self.set_state(
                    RollbackPhase.ROLLING_BACK,
                    "RollingBack",
                    f"rolling {stage.name} back to {dst.metadata.name}",
                )
                return st
            st.rolled_out_at = ctx.now
            self.emit("RollbackRolledOut", f"every target of {stage.name} available on {dst.metadata.name}")
        changed = changed_targets(ctx.pipeline, sw, image_ref(ctx.pipeline, dst))
        if changed and not sw.fresh:  # a verdict: only on fresh reads
            ctx.plan.refresh = True
            ctx.plan.requeue(BLOCKED_RETRY_SECONDS)
            return st
        if changed:
            return self.fail(
                "ImageChanged",
                f"the image of {', '.join(changed)} in {stage.namespace} changed after the rollback "
                "rolled it out: another writer is at work; the rollback stops here",
            )
        if self.rb.spec.verify and ctx.pipeline.spec.smoke_test is not None and st.verified_at is None:
            check, name = self.job(
                stage,
                sw,
                JobKind.SMOKE_TEST,
                dst,
                recorded=st.smoke_test_job,
                started_at=st.smoke_test_started_at,
                deadline_seconds=stage.smoke_test_deadline_seconds,
            )
            if check.state is JobState.CREATE or check.adopt:
                st.smoke_test_job, st.smoke_test_started_at = name, ctx.now
            if check.state in (JobState.CREATE, JobState.RUNNING):
                ctx.plan.requeue(check.requeue_after)
                self.set_state(RollbackPhase.VERIFYING, "SmokeTestRunning", f"smoke-test Job {name} running")
                return st
            if check.state is not JobState.SUCCEEDED:
                return self.fail("RollbackSmokeTestFailed", check.detail)
            st.verified_at = ctx.now
        return self.succeed()

    def job(
        self,
        stage: Stage,
        sw: StageWorld,
        kind: JobKind,
        release: Release,
        *,
        recorded: str | None,
        started_at: datetime | None = None,
        deadline_seconds: float | None = None,
    ) -> tuple[JobCheck, str]:
        """Judge the rollback's Job of `kind` (running `release`'s image); plan its creation once."""
        name = job_name(self.name, self.rb.metadata.uid, stage.name, kind)
        down = kind is JobKind.DOWN_MIGRATION
        check = check_job(
            sw,
            name,
            recorded=recorded is not None,
            owner_uid=self.rb.metadata.uid,
            started_at=started_at,
            deadline_seconds=deadline_seconds,
            now=self.ctx.now,
            # Recorded before it is created, after the plan: a conservative "recorded since".
            recorded_since=(self.status.planned_at or self.ctx.now) if down else None,
        )
        self.ctx.plan.refresh |= check.stale
        if check.traces:
            self.ctx.plan.traces.add((stage_cluster(stage), stage.namespace))
        if check.state is JobState.CREATE:
            manifest = job_manifest(
                self.ctx.pipeline, release, stage, kind, rollback=self.name, owner_uid=self.rb.metadata.uid
            )
            cluster = stage_cluster(stage)
            self.ctx.plan.actions.append(
                CreateJob(self.name, stage.namespace, manifest, record_first=down, cluster=cluster)
            )
        return check, name

    def stop_in_flight(self, stage: Stage) -> None:
        """Every release in flight in the stage ends there (an effect the pass applies)."""
        for r in self.ctx.releases.values():
            rec = stage_record(r, stage.name)
            if r.status.phase in TERMINAL_PHASES or rec is None or rec.started_at is None:
                continue
            if rec.phase in (StagePhase.VERIFIED, StagePhase.FAILED):
                continue
            self.ctx.effects.append(StopRelease(r.metadata.name, stage.name, self.name, self.actor))

    def planned(self, name: str | None, digest: str | None) -> Release | None:
        """The release the plan names, as planned: a release re-created under that name since, with
        another artifact, is not it (its digest was never verified where the plan says)."""
        r = self.ctx.releases.get(name or "")
        return r if r is not None and (digest is None or r.spec.digest == digest) else None

    def veto(self, release: Release | None) -> None:
        """The release rolled away from is never promoted again (an effect the pass applies)."""
        if release is not None and not release.status.vetoed:
            self.ctx.effects.append(VetoRelease(release.metadata.name, self.name, self.actor))

    def finish(self) -> None:
        st = self.status
        st.finished_at = self.ctx.now
        if st.planned_at is not None:
            st.duration_seconds = round((st.finished_at - st.planned_at).total_seconds(), 3)
        if st.plan and st.plan.stage and self.ctx.holds.get(st.plan.stage) == self.name:
            del self.ctx.holds[st.plan.stage]  # only its own hold: another rollback may hold the stage

    def succeed(self) -> RollbackStatus:
        st = self.status
        self.finish()
        plan = st.plan
        assert plan is not None
        st.verdict = "Succeeded"
        msg = (
            f"{plan.stage} runs {plan.to_release} ({st.to_short_commit}) again after {st.duration_seconds}s"
            if plan.action != PlanAction.NOTHING
            else plan.reason
        )
        self.emit("RollbackCompleted", msg)
        self.set_state(RollbackPhase.SUCCEEDED, "RollbackCompleted", msg)
        if plan.stage and plan.to_release and plan.action != PlanAction.NOTHING and st.finished_at:
            self.ctx.pins[plan.stage] = Pin(rollback=self.name, release=plan.to_release, since=st.finished_at)
        return st

    def fail(self, reason: str, message: str) -> RollbackStatus:
        self.finish()
        self.status.verdict = f"Failed: {reason}"
        self.emit("RollbackFailed", message, warning=True)
        self.set_state(RollbackPhase.FAILED, reason, message)
        return self.status


def unknown_pipeline_rollback(rollback: Rollback, now: datetime) -> RollbackStatus:
    """The status of a Rollback whose pipeline does not exist (it heals when the pipeline appears)."""
    st = rollback.status.model_copy(deep=True)
    msg = f"no Pipeline {rollback.spec.pipeline!r} in namespace {rollback.metadata.namespace}"
    st.plan = RollbackPlan(action=PlanAction.REFUSED, reason=msg)
    st.phase, st.message, st.observed_generation = RollbackPhase.BLOCKED, msg, rollback.metadata.generation
    st.conditions = set_condition(
        st.conditions,
        "RollbackBlocked",
        "True",
        "PipelineNotFound",
        msg,
        generation=rollback.metadata.generation,
        now=now,
    )
    return st


__all__ = [
    "ROLLBACK_TERMINAL",
    "RollbackStep",
    "pins_and_vetoes",
    "plan_rollback",
    "unknown_pipeline_rollback",
]
