"""Fixtures shared by every test layer.

Unit tests use none of these. Integration and e2e tests ask for `kube` (an API client) or
`namespace` (a fresh namespace per test, deleted afterwards); the first such request starts the
local control plane once per session (or uses CONVEYOR_TEST_KUBECONFIG).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from support import cluster as cluster_mod
from support.wait import wait_for_object


@pytest.fixture(scope="session")
def cluster() -> Iterator[cluster_mod.Cluster]:
    """The cluster under test, started (or reused) once per session."""
    c = cluster_mod.acquire()
    yield c
    cluster_mod.release(c)


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
