"""Builders of API objects and observed worlds, for unit tests of the pure core and for e2e stories."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.api.approval import Approval
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.core.world import DeploymentView, JobView, StageWorld, World

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
REPO = "ghcr.io/acme/shop"


def commit_of(label: str) -> str:
    """A deterministic 40-hex commit SHA for a readable label."""
    return hashlib.sha1(label.encode()).hexdigest()  # noqa: S324 — a name generator, not security


def digest_of(label: str, prefix: str = "") -> str:
    """A deterministic image digest; `prefix` (hex) makes kwok simulate e.g. fa11 or dead."""
    return "sha256:" + (prefix + hashlib.sha256(label.encode()).hexdigest())[:64]


def pipeline_dict(
    name: str = "shop",
    namespace: str = "apps",
    *,
    stages: list[dict[str, Any]] | None = None,
    migration: dict[str, Any] | None = None,
    smoke_test: dict[str, Any] | None = None,
    down_migration: dict[str, Any] | None = None,
    targets: list[dict[str, str]] | None = None,
    parity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Pipeline as the API server would store it."""
    spec: dict[str, Any] = {
        "imageRepository": REPO,
        "targets": targets or [{"deployment": "shop", "container": "web"}],
        "stages": stages
        or [
            {"name": "staging", "namespace": "shop-staging"},
            {"name": "prod", "namespace": "shop-prod", "requiresApproval": True},
        ],
    }
    if migration is not None:
        spec["migration"] = migration
    if smoke_test is not None:
        spec["smokeTest"] = smoke_test
    if down_migration is not None:
        spec["downMigration"] = down_migration
    if parity is not None:
        spec["parity"] = parity
    return {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pipeline(**kwargs: Any) -> Pipeline:
    """A Pipeline model (metadata filled for the pure core)."""
    obj = pipeline_dict(**kwargs)
    obj["metadata"].update(uid="uid-pipeline", generation=1, creationTimestamp=T0.isoformat())
    return Pipeline.model_validate(obj)


def release_dict(
    name: str,
    *,
    pipeline: str = "shop",
    namespace: str = "apps",
    label: str | None = None,
    digest_prefix: str = "",
    target_stage: str | None = None,
    requester: str | None = None,
) -> dict[str, Any]:
    """A Release as CI would create it (`requester`: a stamp, for unit tests; the API server stamps
    real ones)."""
    label = label or name
    spec: dict[str, Any] = {
        "pipeline": pipeline,
        "commit": commit_of(label),
        "digest": digest_of(label, digest_prefix),
        "source": {"repository": "https://github.com/acme/shop", "author": "Jo", "ciRunId": f"run-{label}"},
    }
    if target_stage:
        spec["targetStage"] = target_stage
    if requester:
        spec["requester"] = {"username": requester, "groups": ["system:authenticated"]}
    return {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def approval_dict(
    release_name: str, stage: str, *, uid: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """An Approval as a person creates it (the API server stamps the approver), bound to the
    release's uid when given; named <release>-<stage> unless told otherwise."""
    spec: dict[str, Any] = {"release": release_name, "stage": stage}
    if uid:
        spec["releaseUID"] = uid
    return {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name or f"{release_name}-{stage}"},
        "spec": spec,
    }


def release(
    name: str, *, created: datetime = T0, status: dict[str, Any] | None = None, **kwargs: Any
) -> Release:
    """A Release model created at `created`, requested by ci-bot unless told otherwise."""
    kwargs.setdefault("requester", "ci-bot")
    obj = release_dict(name, **kwargs)
    obj["metadata"].update(uid=f"uid-{name}", generation=1, creationTimestamp=created.isoformat())
    if status:
        obj["status"] = status
    return Release.model_validate(obj)


def approval(
    name: str,
    release_name: str,
    stage: str,
    *,
    created: datetime = T0 + timedelta(seconds=1),  # a second after release()'s default
    approver: str | None = "alice",
    groups: tuple[str, ...] = ("conveyor:approvers",),
    seen: datetime | None = None,
) -> Approval:
    """An Approval model, stamped with `approver` (None: not stamped); `seen`: when Conveyor first
    saw it (None: not yet)."""
    spec: dict[str, Any] = {"release": release_name, "stage": stage}
    if approver is not None:
        spec["approver"] = {"username": approver, "groups": [*groups, "system:authenticated"]}
    return Approval.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "apps",
                "uid": f"uid-{name}",
                "generation": 1,
                "creationTimestamp": created.isoformat(),
            },
            "spec": spec,
            "status": {"seenAt": seen.isoformat()} if seen else {},
        }
    )


def deployment_view(
    image: str,
    *,
    release_name: str | None = None,
    replicas: int = 2,
    generation: int = 2,
    rolled_out: bool = True,
    deadline_exceeded: bool = False,
    name: str = "shop",
    container: str = "web",
) -> DeploymentView:
    """A Deployment view: rolled out (or not) on `image`, annotated with `release_name`."""
    return DeploymentView(
        name=name,
        generation=generation,
        images={container: image},
        release_annotation=release_name,
        template_release_annotation=release_name,
        replicas=replicas,
        observed_generation=generation,
        updated_replicas=replicas if rolled_out else 0,
        available_replicas=replicas if rolled_out else 0,
        ready_replicas=replicas if rolled_out else 0,
        total_replicas=replicas,
        unavailable_replicas=0 if rolled_out else replicas,
        progress_deadline_exceeded=deadline_exceeded,
    )


def world(
    *,
    staging: DeploymentView | None = None,
    prod: DeploymentView | None = None,
    jobs: dict[str, JobView] | None = None,
    missing_namespace: str | None = None,
    identity_enforced: bool = True,
) -> World:
    """A two-stage world; Deployments default to an older image, rolled out."""
    old = deployment_view(f"{REPO}@{digest_of('old')}")
    w = World(identity_enforced=identity_enforced)
    for stage, ns, dep in (("staging", "shop-staging", staging or old), ("prod", "shop-prod", prod or old)):
        sw = StageWorld(namespace=ns, deployments={"shop": dep})
        if missing_namespace == ns:
            sw = StageWorld(namespace=ns, namespace_exists=False, deployments={"shop": None})
        sw.jobs = {k: v for k, v in (jobs or {}).items() if f"-{stage}-" in k}
        w.stages[stage] = sw
    return w


def job(name: str, *, complete: bool = False, failed: bool = False, reason: str = "") -> JobView:
    """A Job view."""
    return JobView(name=name, complete=complete, failed=failed, failure_reason=reason)


def later(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def verified_in(*stages: str, at: float = 0, deployed: bool = True) -> dict[str, Any]:
    """A release status: verified in each of `stages` at T0+`at` seconds (Succeeded at the last)."""
    recs = []
    for s in stages:
        rec: dict[str, Any] = {
            "name": s,
            "phase": "Verified",
            "startedAt": later(at).isoformat(),
            "verifiedAt": later(at + 1).isoformat(),
            "finishedAt": later(at + 1).isoformat(),
        }
        if deployed:
            rec["deployedAt"] = later(at + 0.5).isoformat()
        recs.append(rec)
    return {"phase": "Succeeded", "currentStage": stages[-1], "stages": recs}


def rollback(
    name: str,
    *,
    stage: str | None = "prod",
    to: str | None = None,
    created: datetime = T0,
    status: dict[str, Any] | None = None,
    verify: bool = True,
) -> Any:
    """A Rollback model."""
    from conveyor.api.rollback import Rollback

    spec: dict[str, Any] = {"pipeline": "shop", "reason": "bad deploy", "verify": verify}
    if stage:
        spec["stage"] = stage
    if to:
        spec["toRelease"] = to
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "apps",
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": created.isoformat(),
        },
        "spec": spec,
    }
    if status:
        obj["status"] = status
    return Rollback.model_validate(obj)


def created_again(name: str, at: datetime, uid: str = "") -> Release:
    """A release created again under `name` after retention deleted it (Argo CD's self-heal
    re-applying its file): the same name and digest, another uid (default uid-<name>-again)."""
    r = release(name, created=at)
    r.metadata.uid = uid or f"uid-{name}-again"
    return r


def keeping(n: int, stages: list[dict[str, Any]] | None = None) -> Pipeline:
    """A pipeline (one prod stage unless told) whose retention keeps the newest `n` releases."""
    p = pipeline(stages=stages or [{"name": "prod", "namespace": "shop-prod"}])
    retention = p.spec.retention.model_copy(update={"keep_releases": n})
    return p.model_copy(update={"spec": p.spec.model_copy(update={"retention": retention})})


def with_retired(p: Pipeline, retired: list[Any]) -> Pipeline:
    """The pipeline with these retention records stored in its status (as a pass wrote them)."""
    return p.model_copy(update={"status": p.status.model_copy(update={"retired": retired})})


def retention_pass(
    pipeline_: Pipeline, releases: list[Release], approvals: list[Approval], w: World, now: datetime
):  # type: ignore[no-untyped-def]
    """Retention takes two passes: the first records what it will delete (the Pipeline's
    status.retired, so a re-creation is recognised), the next deletes it. The second pass's plan."""
    from conveyor.core.promotion import reconcile

    first = reconcile(pipeline_, releases, approvals, w, now)
    assert not [a for a in first.actions if type(a).__name__ == "DeleteRelease"], "deleted before recorded"
    return reconcile(with_retired(pipeline_, first.pipeline.retired), releases, approvals, w, now)
