"""The cluster under test: the local control plane, or any cluster named by CONVEYOR_TEST_KUBECONFIG."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    """Where the tests' cluster is and how it was obtained."""

    kubeconfig: Path
    local: bool  # True: our hack/cluster control plane (kwok nodes, static test users)
    cluster_dir: Path | None
    started_here: bool

    def user_token(self, name: str) -> str:
        """The static bearer token of a test identity (local control plane only)."""
        if not self.cluster_dir:
            raise RuntimeError("test identities exist only on the local control plane")
        return (self.cluster_dir / "users" / f"{name}.token").read_text().strip()


def local_paths(folder: str | Path | None = None) -> tuple[Path, Path]:
    """(cluster folder, admin kubeconfig), absolute, of the local control plane in `folder` (default:
    CONVEYOR_CLUSTER_DIR when set, else .cluster/test, apart from the demo's .cluster so both can
    run). hack/cluster resolves them (`hack/cluster env`): one rule for every script and the tests."""
    folder = folder or os.environ.get("CONVEYOR_CLUSTER_DIR") or REPO / ".cluster" / "test"
    out = subprocess.run(
        [REPO / "hack" / "cluster", "env"],
        env={**os.environ, "CONVEYOR_CLUSTER_DIR": str(folder)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"hack/cluster env: {out.stderr.strip() or out.stdout.strip()}")
    # Lines of `export NAME=value`, shell-quoted.
    exported = dict(shlex.split(line)[1].split("=", 1) for line in out.stdout.splitlines() if line)
    return Path(exported["CONVEYOR_CLUSTER_DIR"]), Path(exported["KUBECONFIG"])


def test_cluster_dir() -> Path:
    """The local test cluster's folder (see local_paths)."""
    return local_paths()[0]


def acquire() -> Cluster:
    """Use CONVEYOR_TEST_KUBECONFIG when set, else start (or reuse) the local control plane."""
    external = os.environ.get("CONVEYOR_TEST_KUBECONFIG")
    if external:
        return Cluster(Path(external), local=False, cluster_dir=None, started_here=False)
    cdir, kubeconfig = local_paths()
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cdir)}
    running = (
        subprocess.run(
            [REPO / "hack" / "cluster", "status"], env=env, capture_output=True, check=False
        ).returncode
        == 0
    )
    if not running:
        # With the API server's audit log of writes (hack/cluster's "writes" policy): the crash
        # drills count Conveyor's create requests there (a second create hides behind a 409).
        env.setdefault("CONVEYOR_AUDIT_LOG", "writes")
        subprocess.run([REPO / "hack" / "cluster", "up"], env=env, check=True)
    return Cluster(kubeconfig, local=True, cluster_dir=cdir, started_here=not running)


def audit_log(cluster: Cluster) -> Path | None:
    """The API server's audit log of the local control plane, or None when it runs without one."""
    if not cluster.cluster_dir:
        return None
    try:
        state = json.loads((cluster.cluster_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    path = state.get("audit_log")
    return Path(path) if path else None


def release(cluster: Cluster) -> None:
    """Stop the local control plane if this test session started it."""
    if cluster.started_here and cluster.cluster_dir:
        env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cluster.cluster_dir)}
        subprocess.run([REPO / "hack" / "cluster", "down"], env=env, check=True)


def kubectl_binary() -> str:
    """kubectl from the binary cache (the API server's version), else whatever is on PATH."""
    out = subprocess.run(
        [REPO / "hack" / "build-binaries", "--print"], capture_output=True, text=True, check=True
    )
    kube = Path(dict(line.split("=", 1) for line in out.stdout.split())["KUBE_BIN"]) / "kubectl"
    return str(kube) if kube.exists() else "kubectl"


def wait_until_identities_are_stamped(custom: client.CustomObjectsApi, timeout: float = 60) -> None:
    """A MutatingAdmissionPolicy over a just-created CRD answers 503 until the API server has its
    schema; dry-run an Approval until the response carries the stamp (deadline: `timeout`)."""
    body = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "probe"},
        "spec": {"release": "probe", "stage": "probe"},
    }
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            out = custom.create_namespaced_custom_object(
                "conveyor.dev", "v1alpha1", "default", "approvals", body, dry_run="All"
            )
            if out.get("spec", {}).get("approver"):
                return
            last = out.get("spec")
        except ApiException as e:
            last = e.status
        time.sleep(0.2)  # nothing to watch: admission readiness is only visible by asking
    raise AssertionError(f"the API server did not stamp identities within {timeout}s (last: {last})")
