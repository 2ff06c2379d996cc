"""Connections to the clusters stages name (core/clusters.py), and what their failures mean.

A remote connection is the same `Kube` as the control cluster's — the same Fence too, so only the
leader writes anywhere — with tighter time limits: a cluster that does not answer costs a pass a
few seconds, never the shared reconcile threads for half a minute.
"""

from __future__ import annotations

import json
import re
import ssl

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conveyor import __version__
from conveyor.core import clusters as c
from conveyor.kube.client import UNAVAILABLE_STATUSES, Kube
from conveyor.kube.fence import Fence

REMOTE_TIMEOUT = (3.0, 15.0)  # (connect, read) seconds


class RemoteKube(Kube):
    """A `Kube` for another cluster: every request bounded by REMOTE_TIMEOUT unless told otherwise."""

    cluster: str

    def request(self, method, path, *, timeout=None, **kwargs):  # type: ignore[no-untyped-def]
        """One REST call to the remote cluster (see Kube.request)."""
        return super().request(method, path, timeout=timeout or REMOTE_TIMEOUT, **kwargs)


def connect(config: c.ClusterConfig, fence: Fence | None, user_agent: str = "") -> RemoteKube:
    """A connection to the cluster `config` describes (no request is made here)."""
    cfg = client.Configuration()
    cfg.host = config.server
    cfg.api_key = {"BearerToken": config.token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    cfg.verify_ssl = not config.insecure
    cfg.ca_cert_data = config.ca_data or None
    cfg.tls_server_name = config.server_name or None
    cfg.retries = 0  # no retry in the request: the reflector retries (with backoff), and says so once
    cfg.connection_pool_maxsize = 16
    api = client.ApiClient(cfg)
    api.user_agent = user_agent or f"conveyor/{__version__}"
    kube = RemoteKube(api, fence)
    kube.cluster = config.name
    return kube


def problem_of(error: BaseException, cluster: str) -> c.ClusterProblem:
    """What a failed request to `cluster` says about the cluster (never the token)."""
    if isinstance(error, ApiException):
        detail = _api_message(error)
        if error.status == 401:
            return c.ClusterProblem(
                c.CREDENTIALS,
                f"cluster {cluster} refused the credentials (401 Unauthorized): renew its Secret's token",
            )
        if error.status == 403:
            return c.ClusterProblem(c.FORBIDDEN, f"cluster {cluster} forbids it: {detail}")
        if error.status in UNAVAILABLE_STATUSES or not error.status:
            return c.ClusterProblem(
                c.UNREACHABLE, f"cluster {cluster} cannot serve: HTTP {error.status} {detail}"
            )
        return c.ClusterProblem(c.UNREACHABLE, f"cluster {cluster} answered HTTP {error.status}: {detail}")
    reason = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        reason = error.reason
    if "CERTIFICATE_VERIFY_FAILED" in str(reason) or isinstance(reason, ssl.SSLCertVerificationError):
        # Only a failed verification: a connection closed during the handshake (a load balancer with
        # no backend, a server going down) is an SSLError too, and is the cluster being away.
        return c.ClusterProblem(
            c.CERTIFICATE,
            f"cluster {cluster}'s server certificate is not trusted (check caData and serverName in its "
            f"Secret): {_short(reason)}",
        )
    return c.ClusterProblem(c.UNREACHABLE, f"cluster {cluster} cannot be reached: {_short(reason)}")


# Whatever follows "Bearer" in a message is a credential: an error that quotes a header (urllib3's
# "Invalid header value b'Bearer …'") never carries it on.
_BEARER = re.compile(r"(?i)(bearer)[\s:=]+\S+")
# Request paths (urllib3's "with url: /…", the API server's 'cannot get path "/…"'): a server URL's
# path is the Secret writer's to choose, and could hold anything — a token included.
_URL = re.compile(r"(with url: )\S+")
_PATH = re.compile(r'(path )\\?"[^"\\]*\\?"')  # quoted, or quoted inside JSON


def redact(text: str) -> str:
    """`text` without anything that follows "Bearer" and without request paths."""
    return _PATH.sub(r'\1"…"', _URL.sub(r"\1…", _BEARER.sub(r"\1 <redacted>", text)))


def _short(error: BaseException) -> str:
    if not isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return type(error).__name__  # not a network error: its text is not known to be safe
    text = redact(str(error))
    # urllib3 wraps the cause in the pool's repr; the last part says what happened.
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1]
    text = text.strip()
    return f"{type(error).__name__}: {text if len(text) <= 200 else text[:199] + '…'}"


def _api_message(error: ApiException) -> str:
    text = error.body if isinstance(error.body, str) and error.body else str(error.reason or "")
    try:
        return redact(str(json.loads(text).get("message") or text))[:300]
    except (ValueError, AttributeError):
        return redact(text)[:300]
