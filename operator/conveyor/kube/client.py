"""The few Kubernetes API calls Conveyor makes, as plain dicts in and out.

Responses are decoded from JSON directly (no typed client models): faster, lighter, and what the
pydantic API models and the core's views consume anyway. Every call is synchronous — the operator
runs reconciles in worker threads, never on kopf's event loop.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conveyor.api.common import GROUP, VERSION
from conveyor.kube.apimetrics import instrumented

log = logging.getLogger("conveyor.kube")
FORBIDDEN = "conveyor.dev/forbidden"  # marks metadata Conveyor was not allowed to read


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from the in-cluster ServiceAccount, else the kubeconfig (KUBECONFIG or default)."""
    try:
        config.load_incluster_config()
        cfg = client.Configuration.get_default_copy()
    except config.ConfigException:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    # Many pipelines reconcile in parallel threads; let them share enough connections.
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def not_found(exc: BaseException) -> bool:
    """True for a 404 from the API server."""
    return isinstance(exc, ApiException) and exc.status == 404


def conflict(exc: BaseException) -> bool:
    """True for a 409 (AlreadyExists or Conflict) from the API server."""
    return isinstance(exc, ApiException) and exc.status == 409


class Kube:
    """Thin, dict-based access to the objects Conveyor reads and writes."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data)
        return data

    def _get_or_none(self, fn: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return self._json(fn(*args, _preload_content=False))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # --- Conveyor's own kinds

    @instrumented("get")
    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One Pipeline/Release/Approval, or None."""
        return self._get_or_none(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )

    @instrumented("list")
    def list_custom(
        self, plural: str, namespace: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Pipelines/Releases/Approvals of a namespace (optionally by a selectable field)."""
        kwargs: dict[str, Any] = {}
        if field_selector:
            kwargs["field_selector"] = field_selector
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kwargs)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    @instrumented("patch")
    def patch_custom_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource (missing object: ignored, it was deleted)."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": patch},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        except ApiException as e:
            if e.status != 404:
                raise

    @instrumented("create")
    def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Conveyor object; False when it already exists (deterministic names)."""
        try:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, body, _preload_content=False
            )
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    @instrumented("delete")
    def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        """Delete a Conveyor object (already gone: fine)."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _preload_content=False
            )
        except ApiException as e:
            if e.status != 404:
                raise

    @instrumented("patch")
    def label_custom(self, plural: str, namespace: str, name: str, labels: dict[str, str]) -> None:
        """Merge labels into a Conveyor object's metadata (never its spec)."""
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"metadata": {"labels": labels}},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )

    @instrumented("get")
    def admission_object(self, plural: str, name: str) -> bool:
        """True when the admissionregistration.k8s.io/v1 policy or binding exists."""
        read = {
            "mutatingadmissionpolicies": self.admission.read_mutating_admission_policy,
            "mutatingadmissionpolicybindings": self.admission.read_mutating_admission_policy_binding,
            "validatingadmissionpolicies": self.admission.read_validating_admission_policy,
            "validatingadmissionpolicybindings": self.admission.read_validating_admission_policy_binding,
        }[plural]
        return self._get_or_none(read, name) is not None

    @instrumented("get", "secrets")
    def secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret's metadata only (PartialObjectMetadata): its data never leaves the API server."""
        try:
            response = self.core.read_namespaced_secret(
                name,
                namespace,
                _headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
                _preload_content=False,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            if e.status == 403:  # least privilege: the chart grants no Secret access by default
                return {FORBIDDEN: True}
            raise
        meta: dict[str, Any] = self._json(response).get("metadata", {})
        return meta

    @instrumented("get", "externalsecrets")
    def external_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An ExternalSecret (external-secrets.io, v1 then v1beta1), or None when absent or unreadable."""
        for version in ("v1", "v1beta1"):
            try:
                obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                    "external-secrets.io", version, namespace, "externalsecrets", name
                )
                return obj
            except ApiException as e:
                if e.status not in (403, 404):
                    raise
        return None

    # --- workloads

    @instrumented("get", "deployments")
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment, or None."""
        return self._get_or_none(self.apps.read_namespaced_deployment, name, namespace)

    @instrumented("patch", "deployments")
    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Strategic-merge-patch a Deployment (containers merge by name)."""
        self.apps.patch_namespaced_deployment(
            name,
            namespace,
            patch,
            _content_type="application/strategic-merge-patch+json",
            _preload_content=False,
        )

    @instrumented("get", "namespaces")
    def namespace_exists(self, name: str) -> bool:
        """True when the namespace exists."""
        return self._get_or_none(self.core.read_namespace, name) is not None

    @instrumented("get", "jobs")
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Job, or None."""
        return self._get_or_none(self.batch.read_namespaced_job, name, namespace)

    @instrumented("create", "jobs")
    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """Create a Job; False when it already exists (a deterministic name: an earlier pass made it)."""
        try:
            self.batch.create_namespaced_job(namespace, manifest, _preload_content=False)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    # --- events

    @instrumented("create", "events")
    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        """Create a core/v1 Event."""
        self.core.create_namespaced_event(namespace, body, _preload_content=False)
