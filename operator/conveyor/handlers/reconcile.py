"""One reconcile pass over one pipeline: read the world, ask the core, apply the plan, record it.

Synchronous (the official client blocks); the pipeline's worker runs it in a thread.
Order of writes: child objects first (Jobs, Deployment patches), then status, then Events. A crash
between them is safe: the next pass finds the child by its deterministic name (or the Deployment
already on the image) and records what the crashed pass could not.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from conveyor.api.approval import Approval
from conveyor.api.common import KubeModel
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import TERMINAL_PHASES, Release
from conveyor.core.patch import merge_patch
from conveyor.core.promotion import (
    CreateJob,
    Plan,
    SetImage,
    jobs_to_observe,
    reconcile,
    unknown_pipeline_release,
    unknown_release_approval,
)
from conveyor.core.world import DeploymentView, JobView, StageWorld, World
from conveyor.kube.client import Kube
from conveyor.kube.record import announce

log = logging.getLogger("conveyor.reconcile")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, in UTC, with microseconds (status timestamps are sub-second)."""
    return datetime.now(UTC)


def _parse(model: type[KubeModel], obj: dict[str, Any]) -> Any:
    try:
        return model.model_validate(obj)
    except ValidationError as e:  # the schema should have refused it; skip rather than crash
        meta = obj.get("metadata", {})
        log.warning("ignoring %s %s/%s: %s", model.__name__, meta.get("namespace"), meta.get("name"), e)
        return None


def observe(kube: Kube, pipeline: Pipeline, releases: list[Release]) -> World:
    """Read each stage's target Deployments, and the Jobs that active releases may own."""
    world = World()
    for stage in pipeline.spec.stages:
        sw = StageWorld(namespace=stage.namespace)
        for target in pipeline.spec.targets:
            if target.deployment not in sw.deployments:
                obj = kube.get_deployment(stage.namespace, target.deployment)
                sw.deployments[target.deployment] = DeploymentView.from_object(obj) if obj else None
        if any(v is None for v in sw.deployments.values()):
            sw.namespace_exists = kube.namespace_exists(stage.namespace)
        world.stages[stage.name] = sw
    for stage_name, namespace, name in jobs_to_observe(pipeline, releases):
        sw = world.stages[stage_name]
        if sw.namespace_exists:
            obj = kube.get_job(namespace, name)
            if obj is not None:
                sw.jobs[name] = JobView.from_object(obj)
    return world


def _set_image_patch(action: SetImage) -> dict[str, Any]:
    return {
        "metadata": {"annotations": action.annotations},
        "spec": {
            "template": {
                "metadata": {"annotations": action.annotations},
                "spec": {"containers": [{"name": c, "image": i} for c, i in sorted(action.images.items())]},
            }
        },
    }


class Counters:
    """API writes made by reconciles (the brief asks for them to be counted)."""

    def __init__(self) -> None:
        self.writes: dict[str, int] = defaultdict(int)

    def add(self, what: str) -> None:
        """Count one write of kind `what`."""
        self.writes[what] += 1


WRITES = Counters()


def apply_plan(
    kube: Kube,
    *,
    pipeline: Pipeline,
    releases: list[Release],
    approvals: list[Approval],
    plan: Plan,
    now: datetime,
) -> bool:
    """Perform the plan. Returns False when some write failed (the caller backs off and retries)."""
    ns = pipeline.metadata.namespace
    ok = True
    failed_releases: set[str] = set()
    for action in plan.actions:
        if action.release in failed_releases:
            continue
        try:
            if isinstance(action, CreateJob):
                if kube.create_job(action.namespace, action.manifest):
                    WRITES.add("job_create")
            else:
                kube.patch_deployment(action.namespace, action.deployment, _set_image_patch(action))
                WRITES.add("deployment_patch")
        except Exception:
            log.warning(
                "release %s/%s: %s failed; will retry",
                ns,
                action.release,
                type(action).__name__,
                exc_info=True,
            )
            failed_releases.add(action.release)
            ok = False
    current = {r.metadata.name: r for r in releases}
    patched: set[str] = set()
    for name, status in plan.releases.items():
        if name in failed_releases:
            continue
        patch = merge_patch(current[name].status.wire(), status.wire())
        if patch:
            kube.patch_custom_status("releases", ns, name, patch)
            WRITES.add("status_patch")
            patched.add(name)
    by_name = {a.metadata.name: a for a in approvals}
    for name, astatus in plan.approvals.items():
        patch = merge_patch(by_name[name].status.wire(), astatus.wire())
        if patch:
            kube.patch_custom_status("approvals", ns, name, patch)
            WRITES.add("status_patch")
    patch = merge_patch(pipeline.status.wire(), plan.pipeline.wire())
    if patch:
        kube.patch_custom_status("pipelines", ns, pipeline.metadata.name, patch)
        WRITES.add("status_patch")
    for event in plan.events:
        if event.release in failed_releases:
            continue
        uid = pipeline.metadata.uid if event.kind == "Pipeline" else current[event.name].metadata.uid
        announce(
            kube,
            namespace=ns,
            kind=event.kind,
            name=event.name,
            uid=uid,
            type_=event.type,
            reason=event.reason,
            message=event.message,
            pipeline=pipeline.metadata.name,
            stage=event.stage,
            release=event.release,
            commit=event.commit,
            now=now,
        )
        WRITES.add("event")
    return ok


def reconcile_pipeline(
    kube: Kube, namespace: str, name: str, clock: Clock = utcnow
) -> tuple[bool, float | None]:
    """One pass. Returns (exists, requeue_after seconds or None)."""
    obj = kube.get_custom("pipelines", namespace, name)
    if obj is None:
        return False, None
    pipeline = _parse(Pipeline, obj)
    if pipeline is None:
        return True, None
    releases = [
        r
        for r in (
            _parse(Release, o)
            for o in kube.list_custom("releases", namespace, field_selector=f"spec.pipeline={name}")
        )
        if r is not None
    ]
    names = {r.metadata.name for r in releases}
    approvals = [
        a
        for a in (_parse(Approval, o) for o in kube.list_custom("approvals", namespace))
        if a is not None and a.spec.release in names
    ]
    world = observe(kube, pipeline, releases)
    now = clock()
    plan = reconcile(pipeline, releases, approvals, world, now)
    if not apply_plan(kube, pipeline=pipeline, releases=releases, approvals=approvals, plan=plan, now=now):
        return True, 2.0
    return True, plan.requeue_after


def report_orphan_release(kube: Kube, obj: dict[str, Any], clock: Clock = utcnow) -> None:
    """A Release whose Pipeline does not exist: say so in its status (heals when the pipeline appears)."""
    release = _parse(Release, obj)
    if release is None or release.status.phase in TERMINAL_PHASES:
        return
    status = unknown_pipeline_release(release, clock())
    patch = merge_patch(release.status.wire(), status.wire())
    if patch:
        kube.patch_custom_status("releases", release.metadata.namespace, release.metadata.name, patch)
        WRITES.add("status_patch")


def report_orphan_approval(kube: Kube, obj: dict[str, Any], clock: Clock = utcnow) -> None:
    """An Approval whose Release does not exist: say so in its status."""
    approval = _parse(Approval, obj)
    if approval is None:
        return
    status = unknown_release_approval(approval, clock())
    patch = merge_patch(approval.status.wire(), status.wire())
    if patch:
        kube.patch_custom_status("approvals", approval.metadata.namespace, approval.metadata.name, patch)
        WRITES.add("status_patch")
