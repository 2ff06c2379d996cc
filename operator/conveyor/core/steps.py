"""The two things every stage operation waits on — a Job, and a rollout — judged the same way for
promotions and rollbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from conveyor.api.pipeline import Pipeline
from conveyor.core.world import PIPELINE_ANNOTATION, RELEASE_ANNOTATION, DeploymentView, StageWorld

# A Job's own activeDeadlineSeconds normally ends it; this grace covers a Job controller that is
# slow to say so.
JOB_GRACE_SECONDS = 30.0


class JobState(StrEnum):
    """Where a Conveyor Job is."""

    CREATE = "Create"  # not recorded, not there: create it
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    MISSING = "Missing"  # recorded as created, but gone before finishing: never recreate
    CONFLICT = "Conflict"  # the name is taken by another owner's Job


@dataclass(frozen=True)
class JobCheck:
    """The verdict on one Job, and whether it was found without a record (adopt it)."""

    state: JobState
    adopt: bool = False
    detail: str = ""
    requeue_after: float | None = None
    stale: bool = False  # a verdict is due, but only on data read fresh from the API server
    traces: bool = False  # a verdict is due, but only knowing whether the Job ever had a Pod
    again: bool = False  # CREATE of a Job recorded before: it never existed (never had a Pod)


# Events expire after an hour by default: a recorded Job that is not there and was recorded longer
# ago than this may have run and lost its traces — it is judged missing, never created again.
TRACE_SECONDS = 1800.0


def check_job(
    sw: StageWorld,
    name: str,
    *,
    recorded: bool,
    owner_uid: str,
    started_at: datetime | None,
    deadline_seconds: float | None,
    now: datetime,
    recorded_since: datetime | None = None,
) -> JobCheck:
    """Judge the Job `name` in a stage: create, wait, or a verdict. `recorded_since`: the Job is
    recorded before it is created (a (down-)migration), no later than this."""
    job = sw.jobs.get(name)
    if job is not None and job.release_uid not in (None, owner_uid):
        return JobCheck(JobState.CONFLICT, detail=f"Job {sw.namespace}/{name} belongs to another object")
    if job is None:
        if recorded and not sw.fresh:
            # A cache may not have the Job yet: "gone" is judged only on what the API server says.
            return JobCheck(JobState.RUNNING, stale=True)
        if recorded and recorded_since is not None:
            # Recorded, then created: absent, it was deleted — or the operator died between the
            # two. A Job that ever ran had a Pod, and the Job controller's Event saying so outlives
            # it: without one (and recently recorded) it never existed and is created now.
            recent = (now - recorded_since).total_seconds() < TRACE_SECONDS
            if recent and sw.started_jobs is None:
                return JobCheck(JobState.RUNNING, traces=True)
            if recent and sw.started_jobs is not None and name not in sw.started_jobs:
                return JobCheck(JobState.CREATE, again=True)
        if recorded:
            return JobCheck(
                JobState.MISSING, detail=f"Job {sw.namespace}/{name} disappeared before it finished"
            )
        return JobCheck(JobState.CREATE)
    adopt = not recorded  # created by a pass that crashed before recording it
    if job.complete:
        return JobCheck(JobState.SUCCEEDED, adopt=adopt)
    if job.failed:
        detail = f"Job {sw.namespace}/{name} failed: {job.failure_reason or 'Failed'}"
        if job.failure_message:
            detail += f" ({job.failure_message})"
        state = JobState.TIMED_OUT if job.failure_reason == "DeadlineExceeded" else JobState.FAILED
        return JobCheck(state, adopt=adopt, detail=detail)
    if deadline_seconds is not None and started_at is not None:
        limit = started_at + timedelta(seconds=deadline_seconds + JOB_GRACE_SECONDS)
        if sw.seen_again_at is not None:
            # Its cluster could not be seen for a while: the Job controller there ends the Job at
            # its own deadline (activeDeadlineSeconds); the grace lets its verdict arrive first.
            limit = max(limit, sw.seen_again_at + timedelta(seconds=JOB_GRACE_SECONDS))
        if now >= limit and not sw.fresh:
            return JobCheck(JobState.RUNNING, adopt=adopt, stale=True)
        if now >= limit:
            return JobCheck(
                JobState.TIMED_OUT,
                adopt=adopt,
                detail=f"Job {sw.namespace}/{name} ran past {deadline_seconds:.0f}s",
            )
        return JobCheck(JobState.RUNNING, adopt=adopt, requeue_after=(limit - now).total_seconds())
    return JobCheck(JobState.RUNNING, adopt=adopt)


class RolloutState(StrEnum):
    """Where a rollout of one image to every target of a stage is."""

    BLOCKED = "Blocked"  # the targets do not exist as the pipeline says
    PATCH = "Patch"  # some target is not on the image yet
    WAITING = "Waiting"
    DONE = "Done"
    FAILED = "Failed"  # Kubernetes gave up (ProgressDeadlineExceeded)
    TIMED_OUT = "TimedOut"


# A rollout past its deadline whose new replicas all run and are available, or whose Deployment the
# controller has not looked at since the change, is waiting on the cluster, not failing: it gets up
# to this many deadlines before the verdict (the Deployment's own ProgressDeadlineExceeded still
# fails it at once).
CLUSTER_LAG_FACTOR = 3
LAG_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class RolloutCheck:
    """The verdict on a rollout, with the patches still needed (deployment -> container -> image)."""

    state: RolloutState
    reason: str = ""
    detail: str = ""
    patches: dict[str, dict[str, str]] = field(default_factory=dict)
    requeue_after: float | None = None
    stale: bool = False  # a verdict is due, but only on data read fresh from the API server


def resolve_targets(pipeline: Pipeline, sw: StageWorld) -> tuple[str, str] | None:
    """(reason, message) when a stage's targets do not exist as the pipeline says; None when they do."""
    if not sw.namespace_exists:
        return "NamespaceNotFound", f"namespace {sw.namespace} does not exist"
    for t in pipeline.spec.targets:
        dep = sw.deployments.get(t.deployment)
        if dep is None:
            return "DeploymentNotFound", f"Deployment {sw.namespace}/{t.deployment} does not exist"
        owner = dep.pipeline_annotation
        if owner is not None and owner != pipeline_key(pipeline):
            return (
                "DeploymentClaimed",
                f"Deployment {sw.namespace}/{t.deployment} is promoted by pipeline {owner}: one "
                "Deployment, one pipeline (two would each roll back the other's releases)",
            )
        if t.container not in dep.images:
            return (
                "ContainerNotFound",
                f"Deployment {sw.namespace}/{t.deployment} has no container {t.container!r} "
                f"(containers: {', '.join(sorted(dep.images)) or 'none'})",
            )
    return None


def _annotated(dep: DeploymentView, release: str) -> bool:
    return dep.release_annotation == release and dep.template_release_annotation == release


def check_rollout(
    pipeline: Pipeline,
    sw: StageWorld,
    *,
    image: str,
    release: str,
    patched_at: datetime | None,
    deadline_seconds: float,
    now: datetime,
) -> RolloutCheck:
    """Judge putting `image` (of `release`) on every target of a stage, within the deadline."""
    problem = resolve_targets(pipeline, sw)
    if problem is not None:
        return RolloutCheck(RolloutState.BLOCKED, reason=problem[0], detail=problem[1])
    patches: dict[str, dict[str, str]] = {}
    views: list[DeploymentView] = []
    for t in pipeline.spec.targets:
        dep = sw.deployments[t.deployment]
        assert dep is not None  # resolve_targets checked
        views.append(dep)
        if dep.images.get(t.container) != image or not _annotated(dep, release):
            patches.setdefault(t.deployment, {})[t.container] = image
    if patches:
        return RolloutCheck(RolloutState.PATCH, patches=patches)
    if all(v.rolled_out() for v in views):
        return RolloutCheck(RolloutState.DONE)
    failed = [v for v in views if v.rollout_failed()]
    if failed:
        v = failed[0]
        return RolloutCheck(
            RolloutState.FAILED,
            detail=f"Deployment {sw.namespace}/{v.name}: "
            f"ProgressDeadlineExceeded ({v.progressing_message or 'no progress'})",
        )
    start = patched_at or now
    if sw.seen_again_at is not None and sw.seen_again_at > start:
        # The stage's cluster could not be seen (its API server away: its controllers stalled too):
        # the rollout gets a whole deadline from when it was seen again, not what was left.
        start = sw.seen_again_at
    deadline = start + timedelta(seconds=deadline_seconds)
    if now >= deadline and not sw.fresh:
        # Past the deadline everything is judged on fresh reads: a cache may hold the answer to
        # Conveyor's own patch (not yet observed) long after the controller moved on.
        return RolloutCheck(RolloutState.WAITING, stale=True)
    if now >= deadline and now < start + timedelta(seconds=deadline_seconds * CLUSTER_LAG_FACTOR):
        # Fair verdicts: the release is not to blame when the cluster's controllers are what is slow.
        lag = [lagging for v in views if not v.rolled_out() and (lagging := v.cluster_lag())]
        if lag and len(lag) == sum(1 for v in views if not v.rolled_out()):
            return RolloutCheck(
                RolloutState.WAITING,
                detail="; ".join(lag),
                requeue_after=min(LAG_RETRY_SECONDS, deadline_seconds),
            )
    if now >= deadline:
        parts = [
            f"{v.name}: {v.updated_replicas}/{v.replicas} replicas updated, "
            f"{v.unavailable_replicas} unavailable"
            for v in views
            if not v.rolled_out()
        ]
        return RolloutCheck(
            RolloutState.TIMED_OUT,
            detail=f"not available within {deadline_seconds:.0f}s "
            f"({'; '.join(parts) or 'targets not available'})",
        )
    return RolloutCheck(RolloutState.WAITING, requeue_after=(deadline - now).total_seconds())


def changed_targets(pipeline: Pipeline, sw: StageWorld, image: str) -> list[str]:
    """Target Deployments that run another image than `image` (missing ones are not counted here)."""
    out = []
    for t in pipeline.spec.targets:
        dep = sw.deployments.get(t.deployment)
        if dep is not None and t.container in dep.images and dep.images[t.container] != image:
            out.append(t.deployment)
    return sorted(set(out))


def pipeline_key(pipeline: Pipeline) -> str:
    """`<namespace>/<name>`: the pipeline that claims the Deployments it promotes."""
    return f"{pipeline.metadata.namespace}/{pipeline.metadata.name}"


def set_image_annotations(
    pipeline: Pipeline, release: str, commit: str, rollback: str | None = None
) -> dict[str, str | None]:
    """Annotations on a Deployment and its pod template: whose image runs there, which rollback put
    it back (None removes a stale one when a release is promoted again), and which pipeline claims
    the Deployment."""
    return {
        RELEASE_ANNOTATION: release,
        "conveyor.dev/commit": commit,
        "conveyor.dev/rollback": rollback,
        PIPELINE_ANNOTATION: pipeline_key(pipeline),
    }
