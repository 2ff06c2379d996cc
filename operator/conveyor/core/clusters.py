"""Which Kubernetes cluster a stage lives in.

Every object Conveyor reads or writes for a stage — its target Deployments, its Jobs, the Secrets
parity compares, the Job controller's Events — is addressed by (cluster, namespace, name), so that
objects of the same namespace and name in two clusters can never be taken for one another.
`CONTROL_CLUSTER` ("") is the cluster the operator runs in. It is the only cluster there is so far:
a Stage cannot name another one yet, and `stage_cluster` is the one place that will read it when it
can. Conveyor's own objects (Pipelines, Releases, Approvals, Rollbacks, their Events) are always in
the control cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.api.pipeline import Stage

CONTROL_CLUSTER = ""  # the cluster the operator runs in


def stage_cluster(stage: Stage | Mapping[str, Any]) -> str:
    """The cluster a stage's namespace is in (a Stage, or a stage as the raw Pipeline holds it).
    Always the control cluster: a stage cannot name another one yet."""
    del stage  # nothing to read yet
    return CONTROL_CLUSTER
