"""The few Kubernetes API calls Conveyor makes, as plain dicts in and out.

Requests go through the official client's ApiClient (configuration, authentication, TLS,
connection pool) but not through its generated API classes: in client v37 each of those builds
pydantic validators for hundreds of methods — instantiating CoreV1Api alone costs about 80 MB of
memory — and Conveyor needs a dozen REST paths, as dicts, which is what the pydantic API models and
the core's views consume anyway. Every call is synchronous: the operator runs reconciles in worker
threads, never on kopf's event loop.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conveyor import __version__
from conveyor.api.common import GROUP, VERSION
from conveyor.kube.apimetrics import instrumented
from conveyor.kube.fence import Fence, Unfenced

log = logging.getLogger("conveyor.kube")
FORBIDDEN = "conveyor.dev/forbidden"  # marks metadata Conveyor was not allowed to read
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
# Every call is bounded: (connect, read) seconds. A hung API server costs one pass a retry, never a
# thread forever (the pool is shared by every pipeline).
REQUEST_TIMEOUT = (5.0, 30.0)


# Answers that say "the API server (or etcd behind it) cannot serve right now": bad gateway,
# unavailable, gateway timeout. Not 429 (the server is shedding load: retrying sooner adds to it) nor
# 500 (often a broken webhook or conversion that no retry heals): those take the normal backoff.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


def api_unavailable(error: BaseException) -> bool:
    """True when `error` says the API server could not be reached or could not serve (an outage, a
    restart, etcd away), so retrying soon is right; False for answers about the request itself."""
    if isinstance(error, ApiException):
        return error.status in UNAVAILABLE_STATUSES or not error.status
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def load_api_client(kubeconfig: str | None = None, *, in_cluster_first: bool = False) -> client.ApiClient:
    """An API client in kubectl's order: the kubeconfig given, else $KUBECONFIG, else ~/.kube/config
    when it exists, else the in-cluster ServiceAccount. A person's kubeconfig wins inside a Pod too
    (a toolbox or CI runner Pod): `kubectl conveyor approve` must act as them, never as the Pod.
    `in_cluster_first`: the operator's own order — in its Pod it is its ServiceAccount, whatever
    files or variables the image or the Pod spec happen to carry."""
    cfg: client.Configuration | None = None
    if in_cluster_first:
        try:
            config.load_incluster_config()
            cfg = client.Configuration.get_default_copy()
        except config.ConfigException:
            cfg = None
    if cfg is None:
        from_env = (os.environ.get("KUBECONFIG") or "").strip()  # empty means unset, as for kubectl
        home = Path("~/.kube/config").expanduser()
        if kubeconfig or from_env or home.is_file():
            cfg = client.Configuration()
            # $KUBECONFIG as it is now (the library's own default was read at import); a
            # colon-separated list is merged by the library, as kubectl does.
            config_file = kubeconfig or from_env or str(home)
            config.load_kube_config(config_file=config_file, client_configuration=cfg)
        else:
            config.load_incluster_config()
            cfg = client.Configuration.get_default_copy()
    # Many pipelines reconcile in parallel threads; let them share enough connections.
    cfg.connection_pool_maxsize = 32
    api = client.ApiClient(cfg)
    # Named in the API server's audit log (the crash drills count Conveyor's own creates by it).
    api.user_agent = f"conveyor/{__version__}"
    return api


def context_namespace() -> str:
    """The namespace of the kubeconfig's current context ("default" when it names none)."""
    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def _custom(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


class Kube:
    """Thin, dict-based access to the objects Conveyor reads and writes."""

    def __init__(self, api_client: client.ApiClient, fence: Fence | None = None) -> None:
        self.api = api_client
        # Asked before every write (raises NotLeader): only the leader writes (kube/fence.py).
        self.fence = fence or Unfenced()
        # The connections to the other clusters stages live in (handlers/clusters.py); None: the
        # control cluster is the only one.
        self.clusters: Any = None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """One REST call; the decoded JSON answer. Raises ApiException (with .status) on errors.
        `timeout` (connect, read) overrides REQUEST_TIMEOUT."""
        headers: dict[str, Any] = {"Accept": accept, "User-Agent": self.api.user_agent}
        if body is not None:
            headers["Content-Type"] = content_type
        queries = [(k, v) for k, v in (query or {}).items() if v is not None]
        self.api.update_params_for_auth(headers, queries, ["BearerToken"], path, method, body)
        url = self.api.configuration.host + path + (f"?{urlencode(queries)}" if queries else "")
        response = self.api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout or REQUEST_TIMEOUT
        )
        data = response.read()
        if response.status >= 400:
            raise ApiException.from_response(
                http_resp=response, body=data.decode(errors="replace"), data=None
            )
        decoded: dict[str, Any] = json.loads(data) if data else {}
        return decoded

    def _get_or_none(self, path: str, accept: str = "application/json") -> dict[str, Any] | None:
        try:
            return self.request("GET", path, accept=accept)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # --- Conveyor's own kinds

    @instrumented("get")
    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One Pipeline/Release/Approval/Rollback, or None."""
        return self._get_or_none(_custom(namespace, plural, name))

    @instrumented("list")
    def list_custom(
        self, plural: str, namespace: str, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Pipelines/Releases/Approvals/Rollbacks of a namespace (optionally by a selectable field)."""
        result = self.request("GET", _custom(namespace, plural), query={"fieldSelector": field_selector})
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    @instrumented("patch")
    def patch_custom_metadata(
        self, plural: str, namespace: str, name: str, metadata: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch an object's metadata (labels, ownerReferences; never its spec); the object as
        stored, or None when it is gone."""
        self.fence.check("patch metadata")
        try:
            return self.request(
                "PATCH",
                _custom(namespace, plural, name),
                body={"metadata": metadata},
                content_type=MERGE_PATCH,
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return None

    @instrumented("patch")
    def patch_custom_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; the object as stored (None: it was deleted). With
        `resource_version` the write happens only on that version of the object (else ApiException
        409): a status computed from an older read — or for an object since deleted and re-created
        under the same name — never lands."""
        self.fence.check("patch status")
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return self.request(
                "PATCH",
                _custom(namespace, plural, name) + "/status",
                body=body,
                content_type=MERGE_PATCH,
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return None

    @instrumented("create")
    def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Conveyor object; the object as stored, or None when it already exists
        (deterministic names: an earlier pass made it)."""
        self.fence.check("create")
        try:
            return self.request("POST", _custom(namespace, plural), body=body)
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    @instrumented("create")
    def create_custom_object(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Conveyor object and return it as the API server stored it (stamps included)."""
        self.fence.check("create")
        return self.request("POST", _custom(namespace, plural), body=body)

    @instrumented("delete")
    def delete_custom(self, plural: str, namespace: str, name: str, uid: str = "") -> None:
        """Delete a Conveyor object (already gone: fine); with `uid`, only that object (409: the
        name now holds another one, which is left alone)."""
        self.fence.check("delete")
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.request("DELETE", _custom(namespace, plural, name), body=body)
        except ApiException as e:
            if e.status == 409 and uid:
                return
            if e.status != 404:
                raise

    @instrumented("patch")
    def label_custom(self, plural: str, namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """Merge labels into a Conveyor object's metadata (never its spec); the object as stored."""
        self.fence.check("label")
        return self.request(
            "PATCH",
            _custom(namespace, plural, name),
            body={"metadata": {"labels": labels}},
            content_type=MERGE_PATCH,
        )

    def watch_one(self, plural: str, namespace: str, name: str, resource_version: str, timeout: int) -> None:
        """Block until the named object changes after `resource_version`, or `timeout` seconds pass."""
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout,
        }
        headers: dict[str, Any] = {"Accept": "application/json"}
        queries = list(query.items())
        path = _custom(namespace, plural)
        self.api.update_params_for_auth(headers, queries, ["BearerToken"], path, "GET", None)
        url = self.api.configuration.host + path + f"?{urlencode(queries)}"
        response = self.api.rest_client.pool_manager.request(
            "GET", url, headers=headers, preload_content=False, timeout=timeout + 5
        )
        try:
            for _ in response.stream(1024):  # the first bytes of an event are enough
                return
        finally:
            response.release_conn()

    # --- admission policies

    @instrumented("get")
    def admission_object(self, plural: str, name: str) -> bool:
        """True when the admissionregistration.k8s.io/v1 policy or binding exists."""
        return self._get_or_none(f"{ADMISSION}/{plural}/{quote(name)}") is not None

    # --- Secrets (metadata only) and ExternalSecrets

    @instrumented("get", "secrets")
    def secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret's metadata only (PartialObjectMetadata): its data never leaves the API server."""
        try:
            obj = self._get_or_none(
                f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}", accept=PARTIAL_METADATA
            )
        except ApiException as e:
            if e.status == 403:  # least privilege: the chart grants no Secret access by default
                return {FORBIDDEN: True}
            raise
        if obj is None:
            return None
        meta: dict[str, Any] = obj.get("metadata", {})
        return meta

    @instrumented("get", "secrets")
    def secret_key(self, namespace: str, name: str, key: str) -> tuple[dict[str, str], str | None] | None:
        """A Secret's labels and one key's value (decoded; None when the key is absent), or None when
        the Secret does not exist. Raises ApiException (403: not allowed). Used for a
        NotificationChannel's webhook URL only: the value goes to the sender and nowhere else."""
        obj = self._get_or_none(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")
        if obj is None:
            return None
        labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
        raw = (obj.get("data") or {}).get(key)
        if raw is None:
            return labels, None
        try:
            return labels, base64.b64decode(raw).decode()
        except (ValueError, UnicodeDecodeError):
            return labels, ""

    @instrumented("get", "externalsecrets")
    def external_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An ExternalSecret (external-secrets.io, v1 then v1beta1), or None when absent or unreadable."""
        for version in ("v1", "v1beta1"):
            try:
                obj = self._get_or_none(
                    f"/apis/external-secrets.io/{version}/namespaces/{quote(namespace)}/externalsecrets/{quote(name)}"
                )
            except ApiException as e:
                if e.status != 403:
                    raise
                return None
            if obj is not None:
                return obj
        return None

    # --- workloads

    @instrumented("get", "deployments")
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment, or None."""
        return self._get_or_none(f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}")

    @instrumented("patch", "deployments")
    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Strategic-merge-patch a Deployment (containers merge by name); the Deployment as stored."""
        self.fence.check("patch a Deployment")
        return self.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}",
            body=patch,
            content_type=STRATEGIC_MERGE_PATCH,
        )

    @instrumented("get", "namespaces")
    def namespace_exists(self, name: str) -> bool:
        """True when the namespace exists."""
        return self._get_or_none(f"/api/v1/namespaces/{quote(name)}") is not None

    @instrumented("list", "jobs")
    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The Jobs of a namespace that carry these labels."""
        result = self.request(
            "GET",
            f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs",
            query={"labelSelector": label_selector},
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    @instrumented("delete", "jobs")
    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; an already-gone Job is fine."""
        self.fence.check("delete a Job")
        try:
            self.request(
                "DELETE",
                f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs/{quote(name)}",
                body={"propagationPolicy": "Background"},
            )
        except ApiException as e:
            if e.status != 404:
                raise

    @instrumented("create", "jobs")
    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Job; the Job as stored, or None when it already exists (a deterministic name: an
        earlier pass made it)."""
        self.fence.check("create a Job")
        try:
            return self.request("POST", f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs", body=manifest)
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    # --- events

    @instrumented("list", "events")
    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        """The core/v1 Events of a namespace that match the field selector."""
        result = self.request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/events", query={"fieldSelector": field_selector}
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    @instrumented("create", "events")
    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        """Create a core/v1 Event."""
        self.fence.check("post an Event")
        self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=body)
