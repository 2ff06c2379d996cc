"""Fixtures shared by every test layer.

Unit tests use none of these. Integration and e2e tests ask for `kube` (an API client) or
`namespace` (a fresh namespace per test, deleted afterwards); the first such request starts the
local control plane once per session (or uses CONVEYOR_TEST_KUBECONFIG); the multi-cluster
stories ask for `second_cluster` too (a second one beside it, or CONVEYOR_TEST_KUBECONFIG_B).
Browser tests ask for `browser`: one headless Chromium per session (support/browser.py;
hack/ensure-browser installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from conveyor.api.crd import KINDS
from support import cluster as cluster_mod
from support import multicluster
from support.browser import browser, screenshot_on_failure  # noqa: F401 (browser: the fixture)
from support.story import Story
from support.wait import wait_for_object


@pytest.fixture(scope="session")
def cluster() -> Iterator[cluster_mod.Cluster]:
    """The cluster under test, started (or reused) once per session."""
    c = cluster_mod.acquire()
    yield c
    cluster_mod.release(c)


@pytest.fixture(scope="session")
def second_cluster(cluster: cluster_mod.Cluster) -> Iterator[cluster_mod.Cluster]:
    """A second cluster for the multi-cluster stories (support/multicluster.py), started (or reused)
    once per session beside the first, and stopped with the session if this one started it. With
    CONVEYOR_TEST_KUBECONFIG it is CONVEYOR_TEST_KUBECONFIG_B, and the stories skip without it."""
    b = multicluster.acquire_second()
    yield b
    multicluster.release_second(b)


@pytest.fixture(scope="session")
def api_client(cluster: cluster_mod.Cluster) -> client.ApiClient:
    """An admin API client for the cluster under test."""
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    """CoreV1Api on the cluster under test."""
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    """AppsV1Api on the cluster under test."""
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    """BatchV1Api on the cluster under test."""
    return client.BatchV1Api(api_client)


def make_namespace(core: client.CoreV1Api, prefix: str) -> str:
    """Create a uniquely named namespace and wait for its default ServiceAccount (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"conveyor.dev/test": "true"}))
    )
    wait_for_object(
        core.list_namespaced_service_account,
        "default",
        lambda sa: sa is not None,
        namespace=name,
        what=f"the default ServiceAccount of namespace {name}",
        timeout=60,
    )
    return name


@pytest.fixture
def namespace(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (deletion is not awaited)."""
    prefix = "t-" + re.sub("[^a-z0-9-]+", "-", request.node.name.lower())[:30].strip("-")
    name = make_namespace(core, prefix)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def crds(api_client: client.ApiClient, cluster: cluster_mod.Cluster) -> None:
    """Conveyor's CRDs and identity admission policies (crds/), and the RBAC roles of
    examples/rbac, applied server-side; returns once the API server stamps identities."""
    kubectl = [cluster_mod.kubectl_binary(), "--kubeconfig", str(cluster.kubeconfig)]
    for path in (cluster_mod.REPO / "crds", cluster_mod.REPO / "examples" / "rbac"):
        subprocess.run(
            [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            *[f"crd/{k.plural}.conveyor.dev" for k in KINDS],
            "--timeout=60s",
        ],
        check=True,
        capture_output=True,
    )
    cluster_mod.wait_until_identities_are_stamped(client.CustomObjectsApi(api_client))


@pytest.fixture
def story(
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    cluster: cluster_mod.Cluster,
    crds: None,
    request: pytest.FixtureRequest,
) -> Iterator[Story]:
    """A Given/When/Then story with its own pipeline, staging and prod namespaces."""
    base = re.sub("[^a-z0-9-]+", "-", request.node.name.lower())[:24].strip("-")
    names = {role: make_namespace(core, f"{base}-{role[:4]}") for role in ("pipeline", "staging", "prod")}
    s = Story(
        api_client,
        cluster.kubeconfig,
        names,
        users_dir=cluster.cluster_dir / "users" if cluster.cluster_dir else None,
    )
    s.grant_team_roles()
    yield s
    capture = os.environ.get("CONVEYOR_CAPTURE_DIR")
    if capture:  # keep the real objects this story made (e.g. fixtures for the Argo CD health checks)
        s.capture(Path(capture), request.node.name)
    for other in s.others:  # a failed test must not leave a process behind
        other.stop()
    if s.operator is not None:
        s.operator.stop()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print("\n--- operator output (last 80 lines) ---\n" + "\n".join(s.operator.lines[-80:]))
    for ns in names.values():
        core.delete_namespace(ns)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The multi-cluster stories run last (in their order), so the second cluster the session
    starts for them (`second_cluster`) runs only while they do: it stops with the session."""
    last = [item for item in items if item.get_closest_marker("multicluster")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("multicluster")] + last


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the item, so fixtures can show operator logs on failure; a
    failed test that uses the `browser` fixture leaves a screenshot of the page (support/browser.py)."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    screenshot_on_failure(item, rep)
    return rep


@pytest.fixture
def audit(cluster: cluster_mod.Cluster) -> Path | None:
    """The API server's audit log; None (the count skipped, saying why) on an external cluster. A
    local control plane without one fails the drill: it cannot count what it exists to count."""
    if not cluster.local:
        warnings.warn(
            "CONVEYOR_TEST_KUBECONFIG: an external cluster has no audit log here; Job creates not counted",
            stacklevel=1,
        )
        return None
    path = cluster_mod.audit_log(cluster)
    if path is None:
        pytest.fail(
            f"the local control plane in {cluster.cluster_dir} runs without the API server's audit log, "
            "where the crash drills count Job creates. Restart it with the log: "
            f"CONVEYOR_CLUSTER_DIR={cluster.cluster_dir} hack/cluster down && "
            f"CONVEYOR_CLUSTER_DIR={cluster.cluster_dir} CONVEYOR_AUDIT_LOG=writes hack/cluster up "
            "(make test and the test harness start it that way)"
        )
    return path
