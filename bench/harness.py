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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
if not os.environ.get("CONVEYOR_CLUSTER_DIR"):  # make exports it empty when unset
    os.environ["CONVEYOR_CLUSTER_DIR"] = str(REPO / ".cluster" / "bench")

from kubernetes import client, config  # noqa: E402

from conveyor.api.common import GROUP, VERSION  # noqa: E402
from conveyor.api.crd import KINDS  # noqa: E402
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
                *(f"crd/{k.plural}.conveyor.dev" for k in KINDS),
            ],
            check=True,
            capture_output=True,
        )
        cluster_mod.wait_until_identities_are_stamped(self.custom)
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


def create_all(bench: Bench, plural: str, bodies: list[tuple[str, dict[str, Any]]], workers: int = 4) -> None:
    """Create (namespace, body) pairs a few at a time: `deployments`, or a Conveyor kind's plural."""
    from concurrent.futures import ThreadPoolExecutor

    def create(item: tuple[str, dict[str, Any]]) -> Any:
        ns, body = item
        if plural == "deployments":
            return bench.apps.create_namespaced_deployment(ns, body)
        return bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, bodies))


def median(values: list[float]) -> float:
    """The median (the machine is shared and noisy: never the mean)."""
    return statistics.median(values)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


class DeploymentWatcher:
    """Watches every Deployment of a namespace in a thread, so a benchmark can ask "when did all
    targets first show image X (spec) / finish rolling out on it" — measured the same way for
    Conveyor and for the baseline script."""

    def __init__(self, apps: client.AppsV1Api, namespace: str) -> None:
        import threading

        from kubernetes import watch

        self.apps, self.namespace = apps, namespace
        self.state: dict[str, Any] = {}
        self.cond = threading.Condition()
        self._stop = False
        self._watch = watch.Watch()
        listing = apps.list_namespaced_deployment(namespace)
        for d in listing.items:
            self.state[d.metadata.name] = d
        self._rv = listing.metadata.resource_version
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time as _time

        while not self._stop:
            try:
                for ev in self._watch.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    resource_version=self._rv,
                    timeout_seconds=60,
                ):
                    d = ev["object"]
                    self._rv = d.metadata.resource_version
                    with self.cond:
                        self.state[d.metadata.name] = d
                        self.cond.notify_all()
                    if self._stop:
                        return
            except Exception:  # watch expired (410) or connection reset: list again and go on
                if self._stop:
                    return
                listing = self.apps.list_namespaced_deployment(self.namespace)
                with self.cond:
                    for d in listing.items:
                        self.state[d.metadata.name] = d
                    self._rv = listing.metadata.resource_version
                    self.cond.notify_all()
                _time.sleep(0.05)  # back off a failed watch before reconnecting

    def wait(self, names: list[str], predicate: Any, what: str, timeout: float = 60) -> float:
        """Block until predicate(deployment) holds for every name; return time.monotonic() then."""
        import time as _time

        deadline = _time.monotonic() + timeout
        with self.cond:
            while True:
                if all(n in self.state and predicate(self.state[n]) for n in names):
                    return _time.monotonic()
                remaining = deadline - _time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                self.cond.wait(remaining)

    def close(self) -> None:
        """Stop watching."""
        self._stop = True
        self._watch.stop()


def image_is(image: str) -> Any:
    """Predicate: the Deployment's first container is on `image` (spec)."""
    return lambda d: d.spec.template.spec.containers[0].image == image


def rolled_out_on(image: str) -> Any:
    """Predicate: on `image` and fully rolled out (observed, updated, available)."""

    def check(d: Any) -> bool:
        s = d.status
        return bool(
            image_is(image)(d)
            and s
            and (s.observed_generation or 0) >= d.metadata.generation
            and (s.updated_replicas or 0) == d.spec.replicas
            and (s.available_replicas or 0) == d.spec.replicas
            and (s.replicas or 0) == d.spec.replicas
            and not s.unavailable_replicas
        )

    return check


def deployment(name: str, container: str, replicas: int = 2) -> dict[str, Any]:
    """A Deployment on a base image, for benchmarks."""
    from support.builders import REPO as IMAGE_REPO
    from support.builders import digest_of

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": container, "image": f"{IMAGE_REPO}@{digest_of('base')}"}]},
            },
        },
    }
