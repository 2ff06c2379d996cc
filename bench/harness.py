"""Shared by the benchmarks: the cluster, the operator process, namespaces, medians.

Benchmarks reuse the test support code (tests/support) for the cluster, the operator process and
watch-based waits, so a benchmark waits exactly the way a test does.
"""

from __future__ import annotations

import os
import statistics
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("CONVEYOR_CLUSTER_DIR", str(REPO / ".cluster" / "bench"))

from kubernetes import client, config  # noqa: E402

from support import cluster as cluster_mod  # noqa: E402
from support.operator import OperatorProcess  # noqa: E402
from support.wait import wait_for_object  # noqa: E402


class Bench:
    """The cluster under benchmark, with CRDs installed and an API client."""

    def __init__(self) -> None:
        self.cluster = cluster_mod.acquire()
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        import subprocess

        kubectl = cluster_mod.kubectl_binary()
        subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                str(REPO / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "wait",
                "--for=condition=Established",
                "-f",
                str(REPO / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        self.namespaces: list[str] = []

    def namespace(self, prefix: str) -> str:
        """A fresh namespace (with its default ServiceAccount)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace({"metadata": {"name": name, "labels": {"conveyor.dev/bench": "true"}}})
        wait_for_object(
            self.core.list_namespaced_service_account,
            "default",
            lambda sa: sa is not None,
            namespace=name,
            what=f"default ServiceAccount in {name}",
        )
        self.namespaces.append(name)
        return name

    def operator(self, *namespaces: str) -> OperatorProcess:
        """`conveyor run` scoped to these namespaces, healthy."""
        args = [a for ns in namespaces for a in ("-n", ns)]
        op = OperatorProcess(self.cluster.kubeconfig, *args).start()
        op.wait_for_log("is alive")
        op.wait_healthy()
        return op

    def close(self) -> None:
        """Delete the namespaces made, and stop the cluster if this run started it."""
        for ns in self.namespaces:
            self.core.delete_namespace(ns)
        cluster_mod.release(self.cluster)


def median(values: list[float]) -> float:
    """The median (the machine is shared and noisy: never the mean)."""
    return statistics.median(values)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
