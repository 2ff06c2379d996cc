"""A second cluster for the multi-cluster stories (issue #16): the one a Pipeline stage names with
`cluster:`, which Conveyor, running in the control cluster (A), reaches with a bearer token from a
cluster Secret in A.

Locally it is a second control plane started by `hack/cluster up` in a folder next to the test
cluster's: CONVEYOR_CLUSTER_DIR_B when set, else `<test cluster folder>-b` (with the default
.cluster/test: .cluster/test-b). Like the first (support/cluster.acquire/release), it is reused when
it runs already and stopped at the end of the session only when this session started it. It runs
with the API server's audit log of EVERY request (`all`, not `writes` as A): what the stories count
in B are reads as well as writes — no request of any kind for a pipeline that may not use B, no 403
for the target ServiceAccount, a watch included. B serves only these stories, so the log stays small.

Against an external cluster (CONVEYOR_TEST_KUBECONFIG) the stories need a second one too:
CONVEYOR_TEST_KUBECONFIG_B, an admin kubeconfig of a cluster whose API server the first cluster's
operator can reach at the address that kubeconfig names (its CA inline or as a file). Without it
they are skipped, saying so. An external B has no audit log here: the audit checks are skipped with
a warning.

In B, Conveyor acts only as the ServiceAccount `conveyor-target` (namespace `conveyor-target`),
whose rights the chart renders with `mode: target` (install_target_rbac: `helm template` applied
with kubectl, as a platform team without Helm in the target would); a TokenRequest token of it
(create_token) goes into A as an Argo CD-style cluster Secret (cluster_secret / apply_secret).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from support.cluster import REPO, Cluster, audit_log, kubectl_binary, local_paths, test_cluster_dir
from support.invariants import audit_log_events
from support.sim import apply_merge_patch

CHART = REPO / "charts" / "conveyor"
TARGET_RELEASE = "conveyor-target"  # helm release name = the ServiceAccount's name
TARGET_NAMESPACE = "conveyor-target"
TARGET_USER = f"system:serviceaccount:{TARGET_NAMESPACE}:{TARGET_RELEASE}"
# The cluster Secret's label and annotation (the operator's contract, issue #16).
SECRET_LABEL = "conveyor.dev/cluster-secret"
PIPELINES_ANNOTATION = "conveyor.dev/pipeline-namespaces"
# B's audit policy (hack/cluster): every request, reads included (see the module's docstring).
B_AUDIT_POLICY = "all"


# --- the second control plane ------------------------------------------------------------------


def second_cluster_dir() -> Path:
    """B's folder: CONVEYOR_CLUSTER_DIR_B when set, else next to the test cluster's, `<A>-b`."""
    folder = os.environ.get("CONVEYOR_CLUSTER_DIR_B") or f"{test_cluster_dir()}-b"
    return local_paths(folder)[0]


def _hack_cluster(cdir: Path, *args: str, check: bool = True, **env: str) -> int:
    return subprocess.run(
        [REPO / "hack" / "cluster", *args],
        env={**os.environ, "CONVEYOR_CLUSTER_DIR": str(cdir), **env},
        capture_output=not check,
        check=check,
    ).returncode


def acquire_second() -> Cluster:
    """The second cluster: CONVEYOR_TEST_KUBECONFIG_B when the first is external (skip without it),
    else the local control plane in second_cluster_dir(), started (with the audit log) or reused."""
    if os.environ.get("CONVEYOR_TEST_KUBECONFIG"):
        external = os.environ.get("CONVEYOR_TEST_KUBECONFIG_B")
        if not external:
            pytest.skip(
                "multi-cluster stories on an external cluster (CONVEYOR_TEST_KUBECONFIG) need a second one: "
                "set CONVEYOR_TEST_KUBECONFIG_B to an admin kubeconfig of it"
            )
        return Cluster(Path(external), local=False, cluster_dir=None, started_here=False)
    cdir, kubeconfig = local_paths(second_cluster_dir())
    running = _hack_cluster(cdir, "status", check=False) == 0
    if not running:
        t0 = time.monotonic()
        _hack_cluster(cdir, "up", CONVEYOR_AUDIT_LOG=B_AUDIT_POLICY)
        print(f"\nsecond cluster up in {cdir} in {time.monotonic() - t0:.1f}s")
    return Cluster(kubeconfig, local=True, cluster_dir=cdir, started_here=not running)


def release_second(b: Cluster) -> None:
    """Stop B if this session started it."""
    if b.started_here and b.cluster_dir:
        _hack_cluster(b.cluster_dir, "down")


def _kubeconfig_parts(kubeconfig: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cluster, user) entries of the kubeconfig's current context (YAML or JSON)."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cl = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    return cl, user


def server_of(b: Cluster) -> str:
    """B's API server URL as its kubeconfig names it (locally https://127.0.0.1:<port>)."""
    return str(_kubeconfig_parts(b.kubeconfig)[0]["server"]).rstrip("/")


def ca_pem_of(b: Cluster) -> str:
    """The PEM of the CA that signed B's serving certificate (from its kubeconfig)."""
    cl, _ = _kubeconfig_parts(b.kubeconfig)
    if cl.get("certificate-authority-data"):
        return base64.b64decode(cl["certificate-authority-data"]).decode()
    path = Path(cl["certificate-authority"])
    if not path.is_absolute():
        path = b.kubeconfig.parent / path
    return path.read_text()


def audit_log_b(b: Cluster) -> Path | None:
    """B's audit log of every request; None (a warning said why) on an external cluster. A local B
    running without it, or with the writes-only policy, fails: what the stories count is not there."""
    if not b.local:
        warnings.warn(
            "CONVEYOR_TEST_KUBECONFIG_B: an external second cluster has no audit log here; "
            "its requests are not counted",
            stacklevel=2,
        )
        return None
    path = audit_log(b)
    state = json.loads((b.cluster_dir / "state.json").read_text()) if b.cluster_dir else {}
    if path is None or state.get("audit_policy") != B_AUDIT_POLICY:
        pytest.fail(
            f"the second cluster in {b.cluster_dir} runs without the audit log of every request "
            f"(policy: {state.get('audit_policy')}); restart it: CONVEYOR_CLUSTER_DIR={b.cluster_dir} "
            f"hack/cluster down && CONVEYOR_CLUSTER_DIR={b.cluster_dir} CONVEYOR_AUDIT_LOG={B_AUDIT_POLICY} "
            "hack/cluster up (the test harness starts it that way)"
        )
    return path


def kubectl(b: Cluster, *args: str, input_: str | None = None, check: bool = True) -> str:
    """kubectl against B as its admin; stdout (raises with stderr on failure when `check`)."""
    out = subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(b.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=input_,
        check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {out.stdout}\n{out.stderr}")
    return out.stdout


def helm_binary() -> str:
    out = subprocess.run(
        [REPO / "hack" / "build-binaries", "--print"], capture_output=True, text=True, check=True
    )
    return str(Path(dict(line.split("=", 1) for line in out.stdout.split())["HELM_BIN"]) / "helm")


# --- Conveyor's rights in B --------------------------------------------------------------------


def server_version(b: Cluster) -> str:
    """B's Kubernetes version (1.36.3): `helm template` checks the chart's kubeVersion against it."""
    version = json.loads(kubectl(b, "version", "-o", "json"))["serverVersion"]["gitVersion"]
    return str(version).lstrip("v")


def render_target_rbac(namespaces: Iterable[str], kube_version: str) -> str:
    """`helm template conveyor-target charts/conveyor --namespace conveyor-target --set mode=target
    --set target.namespaces={...}`, for B's `kube_version` (the chart checks its kubeVersion)."""
    out = subprocess.run(
        [
            helm_binary(),
            "template",
            TARGET_RELEASE,
            str(CHART),
            "--kube-version",
            kube_version,
            "--namespace",
            TARGET_NAMESPACE,
            "--set",
            "mode=target",
            "--set",
            f"target.namespaces={{{','.join(namespaces)}}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"helm template of the chart's mode target: {out.stderr}"
    return out.stdout


def install_target_rbac(b: Cluster, namespaces: Iterable[str]) -> None:
    """Create the namespaces (and conveyor-target) in B and apply Conveyor's rights there, as the
    chart's `mode: target` renders them."""
    names = list(namespaces)
    for ns in (TARGET_NAMESPACE, *names):
        if not kubectl(b, "get", "namespace", ns, "--ignore-not-found", "-o", "name"):
            kubectl(b, "create", "namespace", ns)
    kubectl(b, "apply", "-f", "-", input_=render_target_rbac(names, server_version(b)))


def create_token(b: Cluster, duration: str = "2h") -> str:
    """A TokenRequest token of the target ServiceAccount in B."""
    return kubectl(
        b, "create", "token", TARGET_RELEASE, "-n", TARGET_NAMESPACE, f"--duration={duration}"
    ).strip()


def token_kubeconfig(b: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for B holding only `token` (no client certificate: with both, the API server
    would authenticate the certificate's admin first)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "b",
                "cluster": {
                    "server": server_of(b),
                    "certificate-authority-data": base64.b64encode(ca_pem_of(b).encode()).decode(),
                },
            }
        ],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "b", "context": {"cluster": "b", "user": "token"}}],
        "current-context": "b",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def can_i(kubeconfig: Path, verb: str, what: str, namespace: str | None = None) -> bool:
    """`kubectl auth can-i` as the kubeconfig's identity: the API server's answer."""
    ns = ["-n", namespace] if namespace else []
    out = subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, what, *ns],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() == "yes"


# --- the cluster Secret in A -------------------------------------------------------------------


def cluster_secret(  # noqa: PLR0917 (the signature the stories were specified with)
    name: str,
    server: str,
    token: str,
    ca_pem: str,
    pipeline_namespaces: Iterable[str] | str,
    namespaces: Iterable[str] | None = None,
    *,
    config_overrides: dict[str, Any] | None = None,
    secret_name: str | None = None,
    data_overrides: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """A cluster Secret (Argo CD's format) naming cluster `name` at `server`, for the pipelines of
    `pipeline_namespaces` ("*": every one), optionally only for stage `namespaces` in it.

    `config_overrides` is merged into the `config` JSON ({"bearerToken", "tlsClientConfig":
    {"caData"}}); None removes a key: {"bearerToken": "wrong"}, {"tlsClientConfig": {"caData":
    other}}, {"bearerToken": None, "execProviderConfig": {...}}. `data_overrides` does the same to
    the data keys themselves (name, server, config, namespaces)."""
    config = apply_merge_patch(
        {"bearerToken": token, "tlsClientConfig": {"caData": base64.b64encode(ca_pem.encode()).decode()}},
        config_overrides or {},
    )
    allowed = pipeline_namespaces if isinstance(pipeline_namespaces, str) else ",".join(pipeline_namespaces)
    data: dict[str, str | None] = {"name": name, "server": server, "config": json.dumps(config)}
    if namespaces is not None:
        data["namespaces"] = ",".join(namespaces)
    data = {**data, **(data_overrides or {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name or f"cluster-{name}",
            "labels": {SECRET_LABEL: "true"},
            "annotations": {PIPELINES_ANNOTATION: allowed},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items() if v is not None},
    }


def apply_secret(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the Secret in A's `namespace`, or replace it (same name) in place: the operator must
    take the change without a restart."""
    name = body["metadata"]["name"]
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    try:
        return core.create_namespaced_secret(namespace, body).to_dict()
    except ApiException as e:
        if e.status != 409:
            raise
    current = core.read_namespaced_secret(name, namespace)
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    return core.replace_namespaced_secret(name, namespace, body).to_dict()


def secret_config(secret: client.V1Secret) -> dict[str, Any]:
    """The decoded `config` of a cluster Secret as stored."""
    return json.loads(base64.b64decode(secret.data["config"]))


# --- what B's audit log says -------------------------------------------------------------------


def requests_by(log: Path, username: str, namespaces: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every request `username` made in B (reads and watches too: B logs all), optionally only
    those on objects in `namespaces` (or on those namespaces themselves), oldest first."""
    wanted = set(namespaces) if namespaces is not None else None
    out = []
    for ev in audit_log_events(log, f'"{username}"'):
        if (ev.get("user") or {}).get("username") != username:
            continue
        ref = ev.get("objectRef") or {}
        touched = {ref.get("namespace")} | (
            {ref.get("name")} if ref.get("resource") == "namespaces" else set()
        )
        if wanted is None or touched & wanted:
            out.append(ev)
    return out


def _received(ev: dict[str, Any]) -> float:
    """When the API server received the request (wall clock, seconds)."""
    return datetime.fromisoformat(str(ev.get("requestReceivedTimestamp"))).timestamp()


def refused_requests(
    log: Path,
    username: str,
    *,
    since: float = 0.0,
    excluding: Iterable[tuple[float, float]] = (),
) -> Counter[str]:
    """B's 401/403 answers to `username` received after `since` (time.time()), outside the
    `excluding` windows, per "verb resource namespace/name code". A restarted API server serves
    before its authorizer has read RBAC (a 403 with no reason, before /readyz): pass the restart
    as a window, from the kill to `hack/cluster start`'s return."""
    windows = list(excluding)
    out: Counter[str] = Counter()
    for ev in audit_log_events(log, f'"{username}"'):
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        if (ev.get("user") or {}).get("username") != username or code not in (401, 403):
            continue
        at = _received(ev)
        if at < since or any(start <= at <= end for start, end in windows):
            continue
        ref = ev.get("objectRef") or {}
        out[f"{ev.get('verb')} {ref.get('resource')} {ref.get('namespace')}/{ref.get('name')} {code}"] += 1
    return out


def job_creates_by(log: Path, username: str, namespace: str) -> Counter[str]:
    """Create requests on Jobs `username` made in B's `namespace`, per Job: answered 2xx or 409
    alike (deterministic names hide a second attempt behind a 409); a 429 or 5xx created nothing
    and does not count (as support/invariants.audit_job_creates, which counts by user agent in A)."""
    out: Counter[str] = Counter()
    for ev in audit_log_events(log, f'"{username}"', '"jobs"', '"create"'):
        ref = ev.get("objectRef") or {}
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        if (
            (ev.get("user") or {}).get("username") != username
            or ev.get("verb") != "create"
            or ref.get("resource") != "jobs"
            or ref.get("subresource")
            or ref.get("namespace") != namespace
            or code == 429
            or code >= 500
        ):
            continue
        out[ref.get("name", "")] += 1
    return out
