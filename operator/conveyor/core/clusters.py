"""Which Kubernetes cluster a stage lives in, and how a cluster Secret names one.

Every object Conveyor reads or writes for a stage — its target Deployments, its Jobs, the Secrets
parity compares, the Job controller's Events — is addressed by (cluster, namespace, name), so that
objects of the same namespace and name in two clusters can never be taken for one another.
`CONTROL_CLUSTER` ("") is the cluster the operator runs in; a stage names another with
`stage.cluster`. Conveyor's own objects (Pipelines, Releases, Approvals, Rollbacks, their Events)
are always in the control cluster: identity and the audit trail stay there.

A stage's cluster is reached through a Secret in Conveyor's own namespace, in Argo CD's
cluster-Secret format (so teams can reuse theirs) plus a label and an annotation:

    metadata.labels:      conveyor.dev/cluster-secret: "true"      (no label, no read)
    metadata.annotations: conveyor.dev/pipeline-namespaces: "shop,payments" (or "*")
    data.name:            the name stages use
    data.server:          https://… (the API server)
    data.config:          {"bearerToken": …, "tlsClientConfig": {"caData": base64 PEM, "serverName": …}}
    data.namespaces:      optional: the only stage namespaces allowed in that cluster

`parse_cluster_secret` judges one such Secret and `resolve` picks the one a stage may use. Pure: no
I/O, and no message ever carries a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conveyor.api.common import DNS_LABEL

CONTROL_CLUSTER = ""  # the cluster the operator runs in
CONTROL_NAME = "control"  # how status and messages call it

SECRET_LABEL = "conveyor.dev/cluster-secret"  # noqa: S105 (a label key, not a password)
ALLOWED_ANNOTATION = "conveyor.dev/pipeline-namespaces"

# Reasons a stage's cluster cannot be used now (docs/multi-cluster.md says what each means).
NOT_FOUND = "ClusterNotFound"  # no labelled Secret names it
AMBIGUOUS = "ClusterAmbiguous"  # two labelled Secrets name it
NOT_ALLOWED = "ClusterNotAllowed"  # the Secret does not admit this pipeline's namespace / stage namespace
INVALID = "ClusterSecretInvalid"  # unreadable: no server, bad JSON, no token, not https
UNSUPPORTED = "ClusterSecretUnsupported"  # a way of authenticating Conveyor refuses (exec, AWS, basic)
CONNECTING = "ClusterConnecting"  # not listed yet: nothing is decided on a half-seen stage
UNREACHABLE = "ClusterUnreachable"  # refused, timed out, DNS, 502/503/504
CERTIFICATE = "ClusterCertificateInvalid"  # TLS verification failed
CREDENTIALS = "ClusterCredentialsInvalid"  # 401: the token is wrong or expired
FORBIDDEN = "ClusterForbidden"  # 403: the target role lacks a right

TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token is made of
NAME_MAX = 63  # Stage.cluster's bound: a name longer than that could never be named by a stage


@dataclass(frozen=True)
class ClusterProblem:
    """Why a stage's cluster cannot be seen now: a stage with a problem decides nothing."""

    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one cluster (the bearer token never leaves this object but into a client)."""

    name: str
    server: str
    token: str = field(default="", repr=False)  # never in a repr, a log line or a message
    ca_data: str = ""  # PEM
    server_name: str = ""  # TLS server name, when the certificate names another host than `server`
    insecure: bool = False
    allowed: frozenset[str] = frozenset()  # pipeline namespaces; "*" admits every one
    namespaces: frozenset[str] | None = None  # stage namespaces allowed (None: any)
    secret: str = ""  # the Secret it came from (for messages)

    def fingerprint(self) -> tuple[str, str, str, str, bool]:
        """What a connection is built from: when it changes, the connection is rebuilt."""
        return (self.server, self.token, self.ca_data, self.server_name, self.insecure)

    def admits(self, pipeline_namespace: str, stage_namespace: str) -> ClusterProblem | None:
        """None when a Pipeline of `pipeline_namespace` may use this cluster for `stage_namespace`."""
        if "*" not in self.allowed and pipeline_namespace not in self.allowed:
            return ClusterProblem(
                NOT_ALLOWED,
                f"cluster {self.name} (Secret {self.secret}) does not admit Pipelines of namespace "
                f'{pipeline_namespace}: its annotation {ALLOWED_ANNOTATION} must list it (or be "*")',
            )
        if self.namespaces is not None and stage_namespace not in self.namespaces:
            return ClusterProblem(
                NOT_ALLOWED,
                f"cluster {self.name} (Secret {self.secret}) does not list namespace {stage_namespace} "
                "in its data.namespaces",
            )
        return None


def stage_cluster(stage: Any) -> str:
    """The cluster a stage's namespace is in (a Stage, or a stage as the raw Pipeline holds it):
    CONTROL_CLUSTER unless the stage names one."""
    value = stage.get("cluster") if isinstance(stage, Mapping) else getattr(stage, "cluster", None)
    return str(value or CONTROL_CLUSTER)


def display(cluster: str) -> str:
    """A cluster as status and messages name it."""
    return cluster or CONTROL_NAME


def _decoded(data: Mapping[str, str], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _list(value: str | None) -> frozenset[str]:
    return frozenset(p.strip() for p in (value or "").split(",") if p.strip())


def parse_cluster_secret(
    secret: str,
    annotations: Mapping[str, str],
    data: Mapping[str, str],
    *,
    allow_insecure: bool = False,
) -> ClusterConfig | tuple[str, ClusterProblem]:
    """One labelled Secret (its `data` still base64, as the API server returns it): the cluster it
    describes, or (the name it claims, why it cannot be used)."""
    name = (_decoded(data, "name") or "").strip()
    server = (_decoded(data, "server") or "").strip().rstrip("/")
    where = f"Secret {secret}"

    def bad(reason: str, why: str) -> tuple[str, ClusterProblem]:
        return name, ClusterProblem(reason, f"{where}: {why}")

    if len(name) > NAME_MAX or not re.fullmatch(DNS_LABEL, name):
        # Argo CD names a nameless cluster by its server URL; a stage names clusters with a DNS
        # label, and a URL (whose path could hold anything) never becomes a name in a message.
        name = ""
        return bad(INVALID, "data.name must be a DNS label (the name stages use, e.g. prod-eu)")

    if not server:
        return bad(INVALID, "data.server is missing (the API server's https:// URL)")
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        return bad(INVALID, "data.server must be an https:// URL")
    if parts.username or parts.password:
        return bad(
            INVALID, "data.server must not carry credentials (user:password@): put a bearerToken in config"
        )
    raw = _decoded(data, "config")
    if raw is None:
        return bad(INVALID, "data.config is missing (JSON with bearerToken and tlsClientConfig.caData)")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        return bad(INVALID, "data.config is not JSON")
    if not isinstance(config, dict):
        return bad(INVALID, "data.config is not a JSON object")
    for key, why in (
        ("execProviderConfig", "it would run a command chosen by whoever writes the Secret"),
        ("awsAuthConfig", "AWS IAM authentication is not supported yet"),
        ("username", "basic authentication was removed from Kubernetes"),
        ("password", "basic authentication was removed from Kubernetes"),
        ("proxyUrl", "proxies are not supported yet"),
    ):
        if config.get(key):
            return bad(UNSUPPORTED, f"config.{key} is not accepted ({why}); use a bearerToken")
    tls = config.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        return bad(INVALID, "config.tlsClientConfig is not a JSON object")
    if tls.get("certData") or tls.get("keyData"):
        return bad(UNSUPPORTED, "client certificates are not supported yet; use a bearerToken")
    insecure = bool(tls.get("insecure"))
    if insecure and not allow_insecure:
        return bad(UNSUPPORTED, "tlsClientConfig.insecure is refused: give caData (the cluster's CA)")
    token = config.get("bearerToken")
    if not isinstance(token, str) or not token.strip():
        return bad(INVALID, "config.bearerToken is missing")
    if not TOKEN_CHARACTERS.fullmatch(token.strip()):
        # A line break (a wrapped paste), a space or a control character: no HTTP header can carry
        # it, and the client's error would print the header — the token — in the message.
        return bad(INVALID, "config.bearerToken has characters a token never has (a line break, a space?)")
    ca = ""
    if tls.get("caData"):
        try:
            ca = base64.b64decode(str(tls["caData"]), validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return bad(INVALID, "tlsClientConfig.caData is not base64 of a PEM certificate")
        if "-----BEGIN CERTIFICATE-----" not in ca:
            return bad(INVALID, "tlsClientConfig.caData is not base64 of a PEM certificate")
    namespaces = _list(_decoded(data, "namespaces")) if "namespaces" in data else None
    return ClusterConfig(
        name=name,
        server=server,
        token=token.strip(),
        ca_data=ca,
        server_name=str(tls.get("serverName") or ""),
        insecure=insecure,
        allowed=_list(annotations.get(ALLOWED_ANNOTATION)),
        namespaces=namespaces or None,
        secret=secret,
    )


Parsed = ClusterConfig | tuple[str, ClusterProblem]


def index(parsed: Iterable[Parsed]) -> dict[str, ClusterConfig | ClusterProblem]:
    """Cluster name -> its config, or why it cannot be used (two Secrets naming it: ambiguous)."""
    out: dict[str, ClusterConfig | ClusterProblem] = {}
    secrets: dict[str, list[str]] = {}
    for item in parsed:
        name, value = (item.name, item) if isinstance(item, ClusterConfig) else item
        if not name:
            continue
        secrets.setdefault(name, []).append(
            value.secret
            if isinstance(value, ClusterConfig)
            else value.message.split(":")[0].removeprefix("Secret ")
        )
        out[name] = value
    for name, names in secrets.items():
        if len(names) > 1:
            out[name] = ClusterProblem(
                AMBIGUOUS,
                f"{len(names)} cluster Secrets have data.name {name} (Secrets {', '.join(sorted(names))}): "
                "neither is used",
            )
    return out


def resolve(
    clusters: Mapping[str, ClusterConfig | ClusterProblem],
    name: str,
    pipeline_namespace: str,
    stage_namespace: str,
    secret_namespace: str,
) -> ClusterConfig | ClusterProblem:
    """The cluster a stage of a Pipeline in `pipeline_namespace` may use, or why it may not."""
    found = clusters.get(name)
    if found is None:
        return ClusterProblem(
            NOT_FOUND,
            f"no Secret in namespace {secret_namespace} labelled {SECRET_LABEL}=true has data.name {name}",
        )
    if isinstance(found, ClusterProblem):
        return found
    return found.admits(pipeline_namespace, stage_namespace) or found


def placement(stages: Iterable[tuple[str, str, ClusterProblem | None]]) -> str:
    """`staging=control prod=prod-eu`, a cluster that cannot be seen marked with its reason."""
    return " ".join(
        f"{name}={display(cluster)}" + (f"({problem.reason})" if problem else "")
        for name, cluster, problem in stages
    )
