"""What the operator observed of the cluster, reduced to the facts decisions need.

The shell reads Deployments, Jobs and Namespaces as plain dicts and builds these views with the
`from_object` constructors; the core decides on the views only. Nothing here performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.clusters import CONTROL_CLUSTER, ClusterProblem
from conveyor.core.secrets import SecretInfo

RELEASE_ANNOTATION = "conveyor.dev/release"
PIPELINE_ANNOTATION = "conveyor.dev/pipeline"  # <namespace>/<name> of the pipeline that promotes it
COMMIT_ANNOTATION = "conveyor.dev/commit"


@dataclass(frozen=True)
class DeploymentView:
    """A Deployment's rollout-relevant facts."""

    name: str
    generation: int
    images: dict[str, str]  # container name -> image
    release_annotation: str | None
    template_release_annotation: str | None
    replicas: int
    observed_generation: int
    updated_replicas: int
    available_replicas: int
    ready_replicas: int
    total_replicas: int
    unavailable_replicas: int
    progress_deadline_exceeded: bool
    progressing_message: str = ""
    pipeline_annotation: str | None = None
    pod_spec: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> DeploymentView:
        """Build the view from a Deployment as the API server returns it."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        template = spec.get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        progressing = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None
        )
        exceeded = bool(
            progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        )
        return cls(
            name=meta.get("name", ""),
            generation=int(meta.get("generation") or 0),
            images={c.get("name", ""): c.get("image", "") for c in containers},
            release_annotation=(meta.get("annotations") or {}).get(RELEASE_ANNOTATION),
            template_release_annotation=((template.get("metadata") or {}).get("annotations") or {}).get(
                RELEASE_ANNOTATION
            ),
            replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
            observed_generation=int(status.get("observedGeneration") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            total_replicas=int(status.get("replicas") or 0),
            unavailable_replicas=int(status.get("unavailableReplicas") or 0),
            progress_deadline_exceeded=exceeded,
            progressing_message=(progressing or {}).get("message", ""),
            pipeline_annotation=(meta.get("annotations") or {}).get(PIPELINE_ANNOTATION),
            pod_spec=template.get("spec") or {},
        )

    def rolled_out(self) -> bool:
        """The latest spec is observed and every replica runs it and is available (kubectl's test)."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.total_replicas <= self.updated_replicas
            and self.available_replicas >= self.replicas
            and self.unavailable_replicas == 0
        )

    def cluster_lag(self) -> str:
        """Why a rollout that is not done is waiting on Kubernetes' controllers rather than on the
        release's pods ("" when it is not): the Deployment controller has not observed the change
        yet, or every new replica runs and is available and only old ones are still going away."""
        if self.observed_generation < self.generation:
            return f"{self.name}: the Deployment controller has not yet observed generation {self.generation}"
        if (
            self.updated_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and self.unavailable_replicas == 0
            and not self.progress_deadline_exceeded
        ):
            # No counts in the message: it lands in status, and a count would rewrite it per pod.
            return f"{self.name}: every new replica is available, old ones are still terminating"
        return ""

    def rollout_failed(self) -> bool:
        """Kubernetes itself gave up on the latest spec (ProgressDeadlineExceeded)."""
        return self.observed_generation >= self.generation and self.progress_deadline_exceeded


@dataclass(frozen=True)
class JobView:
    """A Job's outcome."""

    name: str
    complete: bool
    failed: bool
    failure_reason: str = ""
    failure_message: str = ""
    release_uid: str | None = None  # the uid of the Release or Rollback that created it

    @property
    def finished(self) -> bool:
        """Complete or failed: the Job controller is done with it."""
        return self.complete or self.failed

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> JobView:
        """Build the view from a Job as the API server returns it."""
        conditions = (obj.get("status") or {}).get("conditions") or []

        def true(kind: str) -> dict[str, Any] | None:
            return next((c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None)

        failed = true("Failed")
        meta = obj.get("metadata") or {}
        return cls(
            name=meta.get("name", ""),
            complete=true("Complete") is not None,
            failed=failed is not None,
            failure_reason=(failed or {}).get("reason", ""),
            failure_message=(failed or {}).get("message", ""),
            release_uid=(meta.get("annotations") or {}).get("conveyor.dev/release-uid"),
        )


@dataclass
class StageWorld:
    """One stage's namespace as observed: does it exist, its target Deployments, Conveyor's Jobs."""

    namespace: str
    cluster: str = CONTROL_CLUSTER  # the cluster the namespace is in (core/clusters.py)
    namespace_exists: bool = True
    deployments: dict[str, DeploymentView | None] = field(default_factory=dict)  # None: not found
    jobs: dict[str, JobView] = field(default_factory=dict)  # every Job of this pipeline there
    secrets: dict[str, SecretInfo] = field(default_factory=dict)  # for parity: how each Secret is made
    # Read from the API server just now (False: from a watch-fed cache). Deadline verdicts — "timed
    # out", "the Job is gone" — are given only on fresh data; on cached data the core asks for it.
    fresh: bool = True
    # Jobs the Job controller created a Pod for (its SuccessfulCreate Events, which outlive a deleted
    # Job by about an hour); None: not looked at. A recorded (down-)migration Job that is not there
    # is created only when it never had a Pod: it never ran (Plan.traces asks for this).
    started_jobs: set[str] | None = None
    # The stage's cluster cannot be seen now (unreachable, credentials refused, not configured): the
    # shell read nothing there, so nothing is decided that needs this stage — no Job, no image, no
    # verdict. It waits, and goes on from where it stood when the cluster can be seen again.
    problem: ClusterProblem | None = None
    # When the stage's cluster was seen again after it could not be (None: no outage known): its own
    # controllers were cut off too, so deadlines that ran out meanwhile get time from here.
    seen_again_at: datetime | None = None


@dataclass
class World:
    """Every stage of one pipeline, as observed in one reconcile pass."""

    stages: dict[str, StageWorld] = field(default_factory=dict)
    # The admission policies that stamp authenticated identities are installed; without them no
    # Approval counts (Conveyor refuses to trust a name it cannot attribute).
    identity_enforced: bool = False

    def stage(self, name: str, namespace: str) -> StageWorld:
        """The observed stage (an empty, existing namespace when it was not observed)."""
        return self.stages.get(name) or StageWorld(namespace=namespace)
