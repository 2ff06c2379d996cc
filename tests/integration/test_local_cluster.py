"""The local control plane behaves like a real cluster in everything Conveyor relies on.

Each test states what it proves; all of them run against the real API server, controllers,
scheduler and kwok nodes (or against CONVEYOR_TEST_KUBECONFIG's cluster).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from support.cluster import kubectl_binary
from support.wait import condition, has_condition, wait_for_object

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/app@sha256:" + "1" * 64
IMAGE_2 = "registry.example/app@sha256:" + "2" * 64


def deployment(
    name: str,
    image: str,
    *,
    replicas: int = 2,
    progress_deadline: int = 600,
    labels: dict[str, str] | None = None,
) -> client.V1Deployment:
    """A small Deployment; `labels` go on the pod template (e.g. conveyor.dev/simulate)."""
    pod_labels = {"app": name, **(labels or {})}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            progress_deadline_seconds=progress_deadline,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
            ),
        ),
    )


def job(name: str, *, labels: dict[str, str] | None = None) -> client.V1Job:
    """A Job with one pod and no retries; `labels` go on the pod template."""
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels or {}),
                spec=client.V1PodSpec(
                    restart_policy="Never", containers=[client.V1Container(name="job", image=IMAGE)]
                ),
            ),
        ),
    )


def available(dep: client.V1Deployment | None) -> bool:
    """Deployment fully rolled out: observed, all replicas updated and available."""
    if dep is None or dep.status is None:
        return False
    s = dep.status
    return (
        (s.observed_generation or 0) >= dep.metadata.generation
        and (s.updated_replicas or 0) == dep.spec.replicas
        and (s.available_replicas or 0) == dep.spec.replicas
        and (s.replicas or 0) == dep.spec.replicas
        and has_condition("Available")(dep)
    )


def test_api_server_reports_the_pinned_version(cluster, api_client):
    if not cluster.local:
        pytest.skip("the pinned version applies to the local control plane only")
    pinned = dict(
        line.split("=", 1)
        for line in (REPO / "hack" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )["KUBERNETES_VERSION"]
    version = client.VersionApi(api_client).get_code()
    assert version.git_version == pinned


def test_deployment_becomes_available_on_kwok_nodes(apps, core, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web", IMAGE))
    wait_for_object(
        apps.list_namespaced_deployment,
        "web",
        available,
        namespace=namespace,
        what="Deployment web Available with 2/2 replicas",
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name.startswith("kwok-node-")
        assert condition(pod, "Ready").status == "True"


def test_changed_image_rolls_out(apps, namespace):
    apps.create_namespaced_deployment(namespace, deployment("web", IMAGE))
    wait_for_object(
        apps.list_namespaced_deployment,
        "web",
        available,
        namespace=namespace,
        what="Deployment web Available",
    )
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE_2}]}}}},
    )
    dep = wait_for_object(
        apps.list_namespaced_deployment,
        "web",
        lambda d: available(d) and d.spec.template.spec.containers[0].image == IMAGE_2,
        namespace=namespace,
        what="Deployment web rolled out to the second image",
    )
    assert dep.status.updated_replicas == 2


def test_pods_that_never_get_ready_exceed_the_progress_deadline(apps, namespace):
    apps.create_namespaced_deployment(
        namespace,
        deployment("stuck", IMAGE, progress_deadline=3, labels={"conveyor.dev/simulate": "never-ready"}),
    )
    dep = wait_for_object(
        apps.list_namespaced_deployment,
        "stuck",
        has_condition("Progressing", "False", reason="ProgressDeadlineExceeded"),
        namespace=namespace,
        what="Deployment stuck Progressing=False/ProgressDeadlineExceeded",
        timeout=90,
    )
    assert not dep.status.available_replicas


def test_an_image_digest_starting_dead_never_gets_ready(apps, namespace):
    apps.create_namespaced_deployment(
        namespace, deployment("bad-image", "registry.example/app@sha256:dead" + "0" * 60, progress_deadline=3)
    )
    wait_for_object(
        apps.list_namespaced_deployment,
        "bad-image",
        has_condition("Progressing", "False", reason="ProgressDeadlineExceeded"),
        namespace=namespace,
        what="Deployment bad-image to exceed its progress deadline",
        timeout=90,
    )


def test_job_completes(batch, namespace):
    batch.create_namespaced_job(namespace, job("ok"))
    wait_for_object(
        batch.list_namespaced_job,
        "ok",
        has_condition("Complete"),
        namespace=namespace,
        what="Job ok Complete",
    )


def test_job_fails_on_purpose_when_its_pod_is_labelled(batch, namespace):
    batch.create_namespaced_job(namespace, job("boom", labels={"conveyor.dev/simulate": "fail"}))
    j = wait_for_object(
        batch.list_namespaced_job,
        "boom",
        has_condition("Failed"),
        namespace=namespace,
        what="Job boom Failed",
    )
    assert not has_condition("Complete")(j)


def test_new_namespace_gets_its_default_service_account(core, namespace):
    # The `namespace` fixture already waited for it; read it back to be explicit.
    assert core.read_namespaced_service_account("default", namespace).metadata.name == "default"


def test_garbage_collection_removes_owned_objects(core, namespace):
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="child",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            )
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)
    wait_for_object(
        core.list_namespaced_config_map,
        "child",
        lambda cm: cm is None,
        namespace=namespace,
        what="ConfigMap child garbage-collected after its owner was deleted",
    )


def test_kubectl_works_with_the_kubeconfig(cluster, namespace):
    kubectl = kubectl_binary()
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "serviceaccount",
            "default",
            "-n",
            namespace,
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "serviceaccount/default"


def test_an_image_digest_starting_0bad_fails_jobs_but_runs_deployments(apps, batch, namespace):
    bad = "registry.example/app@sha256:0bad" + "0" * 60
    apps.create_namespaced_deployment(namespace, deployment("runs", bad))
    j = job("smoke")
    j.spec.template.spec.containers[0].image = bad
    batch.create_namespaced_job(namespace, j)
    wait_for_object(
        batch.list_namespaced_job,
        "smoke",
        has_condition("Failed"),
        namespace=namespace,
        what="Job smoke (image 0bad…) Failed",
    )
    wait_for_object(
        apps.list_namespaced_deployment,
        "runs",
        available,
        namespace=namespace,
        what="Deployment runs (image 0bad…) Available",
    )


def test_an_image_digest_starting_5bad_fails_the_smoke_test_only(batch, namespace):
    bad = "registry.example/app@sha256:5bad" + "0" * 60
    for name, container in (("smoke", "smoke-test"), ("migrate", "migration")):
        j = job(name)
        j.spec.template.spec.containers[0].image = bad
        j.spec.template.spec.containers[0].name = container  # the names Conveyor's Jobs use
        batch.create_namespaced_job(namespace, j)
    wait_for_object(
        batch.list_namespaced_job,
        "smoke",
        has_condition("Failed"),
        namespace=namespace,
        what="Job smoke (container smoke-test, image 5bad…) Failed",
    )
    wait_for_object(
        batch.list_namespaced_job,
        "migrate",
        has_condition("Complete"),
        namespace=namespace,
        what="Job migrate (container migration, image 5bad…) Complete",
    )
