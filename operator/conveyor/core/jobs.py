"""Deterministic names and manifests of the Jobs Conveyor runs (migration, smoke test)."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from conveyor.api.pipeline import JobTemplate, Pipeline, Stage
from conveyor.api.release import Release

MANAGED_BY = {"app.kubernetes.io/managed-by": "conveyor"}
PIPELINE_LABEL = "conveyor.dev/pipeline"
RELEASE_LABEL = "conveyor.dev/release"
STAGE_LABEL = "conveyor.dev/stage"
JOB_KIND_LABEL = "conveyor.dev/job"
RELEASE_UID_ANNOTATION = "conveyor.dev/release-uid"
PIPELINE_NAMESPACE_ANNOTATION = "conveyor.dev/pipeline-namespace"


class JobKind(StrEnum):
    """The Jobs Conveyor runs in a stage."""

    MIGRATION = "migrate"
    SMOKE_TEST = "smoke"
    DOWN_MIGRATION = "down"


ROLLBACK_LABEL = "conveyor.dev/rollback"
_CONTAINER = {
    JobKind.MIGRATION: "migration",
    JobKind.SMOKE_TEST: "smoke-test",
    JobKind.DOWN_MIGRATION: "down-migration",
}


def short_commit(commit: str) -> str:
    """The 7-character form people read."""
    return commit[:7]


def image_ref(pipeline: Pipeline, release: Release) -> str:
    """The one immutable image a release promotes: repository@digest."""
    return f"{pipeline.spec.image_repository}@{release.spec.digest}"


# Kubernetes deletes a finished Job this long after it finished even if Conveyor never does (say,
# it was uninstalled); Conveyor itself deletes it retention.finishedJobsSeconds after recording it.
JOB_BACKSTOP_TTL_SECONDS = 7 * 24 * 3600


def uid_tag(uid: str) -> str:
    """Six hex characters standing for an object's uid in a child's name (a hash of the whole uid,
    so even uids that share a prefix get different tags)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:6]


def job_name(owner: str, owner_uid: str, stage: str, kind: JobKind) -> str:
    """`<owner>-<stage>-<kind>-<uid tag>` (owner: a release or a rollback), shortened with a hash
    past 63 characters. Deterministic, so a restarted operator finds the Job it created instead of
    creating another; the owner's uid in it means a re-created release of the same name never meets
    the Jobs of the one before."""
    return bounded_name(owner, f"{stage}-{kind.value}-{uid_tag(owner_uid)}")


def bounded_name(prefix: str, suffix: str, limit: int = 63) -> str:
    """`<prefix>-<suffix>`, with the prefix cut and a hash added when it would pass `limit`."""
    name = f"{prefix}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{prefix[:keep].rstrip('-.')}-{digest}-{suffix}"


def _env_var(var: dict[str, Any]) -> dict[str, Any]:
    """A template's env var as the Job's: a resourceFieldRef's containerName left out — the Job has
    one container, the default, and a name that is not its own would get the Job refused (and its
    release held mid-stage)."""
    ref = (var.get("valueFrom") or {}).get("resourceFieldRef")
    if isinstance(ref, dict) and "containerName" in ref:
        var = {
            **var,
            "valueFrom": {"resourceFieldRef": {k: v for k, v in ref.items() if k != "containerName"}},
        }
    return var


def _env(template: JobTemplate, stage: Stage, release: Release) -> list[dict[str, Any]]:
    """Template env, then stage variables, then CONVEYOR_* (each later source wins on a name)."""
    merged: dict[str, dict[str, Any]] = {e.name: _env_var(e.wire()) for e in template.env}
    for name, value in sorted(stage.variables.items()):
        merged[name] = {"name": name, "value": value}
    for name, value in (
        ("CONVEYOR_COMMIT", release.spec.commit),
        ("CONVEYOR_DIGEST", release.spec.digest),
        ("CONVEYOR_STAGE", stage.name),
        ("CONVEYOR_RELEASE", release.metadata.name),
    ):
        merged[name] = {"name": name, "value": value}
    return list(merged.values())


def template_for(pipeline: Pipeline, kind: JobKind) -> JobTemplate | None:
    """The pipeline's template for a kind of Job."""
    return {
        JobKind.MIGRATION: pipeline.spec.migration,
        JobKind.SMOKE_TEST: pipeline.spec.smoke_test,
        JobKind.DOWN_MIGRATION: pipeline.spec.down_migration,
    }[kind]


def job_manifest(
    pipeline: Pipeline,
    release: Release,
    stage: Stage,
    kind: JobKind,
    *,
    rollback: str | None = None,
    owner_uid: str | None = None,
) -> dict[str, Any]:
    """The Job to create for `kind` in `stage`, running `release`'s image and facts.

    A rollback's Jobs are named after the rollback (a release's own smoke-test Job already exists)
    and owned by its uid (`owner_uid`).
    """
    template = template_for(pipeline, kind)
    if template is None:
        raise ValueError(f"pipeline {pipeline.metadata.name} defines no {kind.value} Job")
    deadline = stage.smoke_test_deadline_seconds if kind is JobKind.SMOKE_TEST else template.deadline_seconds
    labels = {
        **MANAGED_BY,
        PIPELINE_LABEL: pipeline.metadata.name,
        RELEASE_LABEL: release.metadata.name,
        STAGE_LABEL: stage.name,
        JOB_KIND_LABEL: kind.value,
    }
    if rollback:
        labels[ROLLBACK_LABEL] = rollback
    container: dict[str, Any] = {
        "name": _CONTAINER[kind],
        "image": template.image or image_ref(pipeline, release),
        "env": _env(template, stage, release),
    }
    if template.command:
        container["command"] = list(template.command)
    if template.args:
        container["args"] = list(template.args)
    if template.env_from:
        container["envFrom"] = list(template.env_from)
    if template.resources:
        container["resources"] = dict(template.resources)
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(
                rollback or release.metadata.name, owner_uid or release.metadata.uid, stage.name, kind
            ),
            "namespace": stage.namespace,
            "labels": labels,
            "annotations": {
                RELEASE_UID_ANNOTATION: owner_uid or release.metadata.uid,
                PIPELINE_NAMESPACE_ANNOTATION: pipeline.metadata.namespace,
                "conveyor.dev/commit": release.spec.commit,
            },
        },
        "spec": {
            "backoffLimit": template.backoff_limit,
            "ttlSecondsAfterFinished": JOB_BACKSTOP_TTL_SECONDS,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": {"labels": {**template.labels, **labels}},
                "spec": pod_spec,
            },
        },
    }
