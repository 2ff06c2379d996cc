"""handlers/clusters.py's registry, with its Reflectors (kube/reflector.py) replaced by stand-ins
whose state the test sets: when a stage in another cluster counts as seen, and what a refused write,
a rotated Secret or a deleted pipeline do. (The Reflectors themselves meet real API servers in
tests/e2e/test_multicluster.py.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from conveyor.core import clusters as c
from conveyor.handlers import clusters as registry
from conveyor.handlers.metrics import CLUSTER_SEEN

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = ("apps", "shop")


class FakeReflector:
    """A Reflector whose listing and errors the test decides."""

    made: list[FakeReflector] = []

    def __init__(self, kube: Any, path: str, *, name: str, **kw: Any) -> None:
        self.kube, self.path, self.name = kube, path, name
        self.on_event, self.on_state = kw.get("on_event"), kw.get("on_state")
        self.listed, self.error, self.stopped, self.seen_again_at = False, None, False, None
        self.objects: dict[str, dict[str, Any]] = {}
        FakeReflector.made.append(self)

    def start(self) -> FakeReflector:
        return self

    def stop(self) -> None:
        self.stopped = True

    def interrupt(self) -> None:
        pass

    def settle(self, timeout: float) -> bool:
        del timeout  # listed or not, as the test set it: nothing to wait for
        return True

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def get(self, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    def list_now(self, **objects: dict[str, Any]) -> None:
        """The LIST succeeded with these objects."""
        self.objects, self.listed, self.error = dict(objects), True, None
        if self.on_state:
            self.on_state()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(token: str = "t0ken", server: str = "https://10.0.0.1:6443") -> dict[str, Any]:  # noqa: S107
    config = {"bearerToken": token, "tlsClientConfig": {"caData": b64(CA)}}
    return {
        "metadata": {"name": "cluster-prod-b", "annotations": {c.ALLOWED_ANNOTATION: "apps"}},
        "data": {"name": b64("prod-b"), "server": b64(server), "config": b64(json.dumps(config))},
    }


class FakeControl:
    fence = None
    api = type("Api", (), {"user_agent": "conveyor/test"})()


@pytest.fixture
def clusters() -> registry.Clusters:
    FakeReflector.made = []
    return registry.Clusters(FakeControl(), "conveyor", reflector=FakeReflector)  # type: ignore[arg-type]


def watches(path_part: str) -> list[FakeReflector]:
    return [r for r in FakeReflector.made if path_part in r.path and not r.stopped]


def seen_value(cluster: str) -> float | None:
    for metric in CLUSTER_SEEN.collect():
        for sample in metric.samples:
            if sample.labels.get("cluster") == cluster:
                return sample.value
    return None


def test_a_stage_is_seen_only_once_the_secret_and_both_watches_are_listed(clusters):
    clusters.declare(KEY, {("prod-b", "shop")})
    first = clusters.problem("apps", "prod-b", "shop")
    assert first.reason == c.CONNECTING  # the Secrets are not listed yet
    secrets = watches("/secrets")[0]
    secrets.list_now(s=secret())
    assert clusters.problem("apps", "prod-b", "shop").reason == c.CONNECTING  # watches not listed
    deployments, jobs = watches("/deployments")[0], watches("/jobs")[0]
    deployments.list_now()
    with pytest.raises(registry.ClusterUnavailable):  # half-listed: never read as empty
        clusters.jobs("prod-b", "shop")
    jobs.list_now()
    assert clusters.problem("apps", "prod-b", "shop") is None
    assert clusters.jobs("prod-b", "shop") == []
    assert seen_value("prod-b") == 1
    # Not admitted: the Pipeline's namespace is not in the annotation (and no watch is started).
    assert clusters.problem("other", "prod-b", "shop").reason == c.NOT_ALLOWED


def test_a_failed_listing_makes_the_stage_unseen_with_the_clusters_reason(clusters):
    clusters.declare(KEY, {("prod-b", "shop")})
    clusters.problem("apps", "prod-b", "shop")
    watches("/secrets")[0].list_now(s=secret())
    clusters.problem("apps", "prod-b", "shop")
    for r in watches("/deployments") + watches("/jobs"):
        r.list_now()
    watches("/jobs")[0].error = ApiException(status=401)
    assert clusters.problem("apps", "prod-b", "shop").reason == c.CREDENTIALS
    assert seen_value("prod-b") == 0
    with pytest.raises(registry.ClusterUnavailable):
        clusters.deployment("prod-b", "shop", "shop")


def test_a_refused_write_makes_the_stage_forbidden_for_a_while(clusters, monkeypatch):
    clusters.declare(KEY, {("prod-b", "shop")})
    clusters.problem("apps", "prod-b", "shop")
    watches("/secrets")[0].list_now(s=secret())
    clusters.problem("apps", "prod-b", "shop")
    for r in watches("/deployments") + watches("/jobs"):
        r.list_now()
    now = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: now[0])
    refusal = ApiException(
        status=403, reason='{"message": "jobs.batch is forbidden: cannot create resource"}'
    )
    clusters.refused("prod-b", "shop", refusal)
    problem = clusters.problem("apps", "prod-b", "shop")
    assert problem.reason == c.FORBIDDEN
    assert "cannot create resource" in problem.message
    now[0] += registry.REFUSED_SECONDS + 1  # then the next pass tries again
    assert clusters.problem("apps", "prod-b", "shop") is None


def test_a_rotated_secret_means_new_watches_and_a_deleted_pipeline_stops_them(clusters):
    clusters.declare(KEY, {("prod-b", "shop")})
    clusters.problem("apps", "prod-b", "shop")
    secrets = watches("/secrets")[0]
    secrets.list_now(s=secret())
    clusters.problem("apps", "prod-b", "shop")
    old = watches("/deployments")
    assert len(old) == 1
    secrets.list_now(s=secret(token="new-t0ken"))  # the token rotated
    assert old[0].stopped
    assert clusters.problem("apps", "prod-b", "shop").reason == c.CONNECTING  # new watches listing
    assert len(watches("/deployments")) == 1
    assert watches("/deployments")[0].kube.api.configuration.api_key["BearerToken"] == "new-t0ken"
    clusters.declare(KEY, set())  # the pipeline is gone: no one uses the cluster
    assert watches("/deployments") == []
    assert watches("/jobs") == []
    assert seen_value("prod-b") is None  # its series went with it
