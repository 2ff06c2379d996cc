"""The Lease (coordination.k8s.io/v1) Conveyor's replicas elect a leader with: read, create, and
replace it — every replace carrying the resourceVersion read, so of two candidates that saw the same
expired lease exactly one wins (the other gets 409 and stands by)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from conveyor.kube.client import Kube

# Lease calls are short: a renewal that cannot land within a few seconds is one the leader must
# not count on (the fence stops writes at the renew deadline anyway).
LEASE_TIMEOUT = (2.0, 4.0)


class LeaseTaken(Exception):
    """Another candidate changed or created the Lease first (409): this one did not win."""


def _path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
    return f"{path}/{quote(name)}" if name else path


def micro_time(now: datetime) -> str:
    """A MicroTime as the API server wants it."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStore:
    """One named Lease, read and written unfenced (it is how leadership is decided)."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name

    def get(self) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        try:
            return self.kube.request("GET", _path(self.namespace, self.name), timeout=LEASE_TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease with this spec; LeaseTaken when someone else created it first."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        try:
            return self.kube.request("POST", _path(self.namespace), body=body, timeout=LEASE_TIMEOUT)
        except ApiException as e:
            if e.status == 409:
                raise LeaseTaken(
                    f"lease {self.namespace}/{self.name} was created by another candidate"
                ) from e
            raise

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Replace the Lease's spec, only if it is still the version read (else LeaseTaken)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": spec,
        }
        try:
            return self.kube.request(
                "PUT", _path(self.namespace, self.name), body=body, timeout=LEASE_TIMEOUT
            )
        except ApiException as e:
            if e.status == 409:
                raise LeaseTaken(f"lease {self.namespace}/{self.name} changed since it was read") from e
            raise
