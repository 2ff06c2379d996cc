"""Parity stories: is staging production's twin? Real Deployments, Secrets and an ExternalSecret
in two stage namespaces; the operator judges their shapes (never their values)."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from kubernetes.client.exceptions import ApiException

from support.story import Story, status

pytestmark = pytest.mark.cluster
PLANTED = "PLANTED-s3cr3t-7f1d9c"  # a recognisable secret value: it must appear nowhere Conveyor writes

POD = {
    "serviceAccountName": "default",
    "containers": [
        {
            "name": "web",
            "image": "ghcr.io/acme/shop@sha256:" + "1" * 64,
            "env": [
                {"name": "BASE_URL", "value": "https://example"},
                {
                    "name": "DB_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}},
                },
            ],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        }
    ],
}


def secret(story: Story, stage: str, *, owner: dict | None = None) -> None:
    meta = {"name": "shop-db"}
    if owner:
        meta["ownerReferences"] = [owner]
    story.core.create_namespaced_secret(
        story.stage_ns[stage], {"metadata": meta, "stringData": {"password": PLANTED}}
    )


def given_stages(
    story: Story, staging: dict, prod: dict, *, policy: str = "enforce", ignore=(), replicas=(1, 1)
):
    secret(story, "staging")
    secret(story, "prod")
    story.deployment_with("staging", staging, replicas=replicas[0])
    story.deployment_with("prod", prod, replicas=replicas[1])
    story.given_pipeline(
        parity={"policy": policy, "ignore": list(ignore)},
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    story.given_operator()


def variant(change) -> dict:
    pod = copy.deepcopy(POD)
    change(pod["containers"][0])
    return pod


def in_parity(story: Story, flag: str, reason: str | None = None) -> dict:
    return story.then_condition("pipelines", "shop", "InParity", status=flag, reason=reason)


def diff_paths(pipeline: dict) -> list[str]:
    return [d["path"] for d in status(pipeline)["parity"]["differences"]]


def test_identical_stages_are_in_parity(story: Story):
    given_stages(story, POD, POD)
    p = in_parity(story, "True")
    assert status(p)["parity"]["inParity"] is True
    assert "True" in story.kubectl("get", "pipeline", "shop").splitlines()[1].split()


def test_replicas_and_resources_differing_are_still_in_parity(story: Story):
    prod = variant(lambda c: c.update(resources={"requests": {"cpu": "2", "memory": "4Gi"}}))
    given_stages(story, POD, prod, replicas=(1, 3))
    in_parity(story, "True")


def test_an_extra_env_var_in_prod_only(story: Story):
    given_stages(story, POD, variant(lambda c: c["env"].append({"name": "FEATURE_X", "value": "on"})))
    p = in_parity(story, "False", "StagesDiffer")
    assert diff_paths(p) == ["deployment[shop].containers[web].env[FEATURE_X]"]


def test_a_literal_in_staging_where_prod_reads_a_secret(story: Story):
    staging = variant(
        lambda c: c["env"].__setitem__(1, {"name": "DB_PASSWORD", "value": "literal-in-staging"})
    )
    given_stages(story, staging, POD)
    p = in_parity(story, "False")
    d = status(p)["parity"]["differences"][0]
    assert d["path"] == "deployment[shop].containers[web].env[DB_PASSWORD]"
    assert (d["shapeA"], d["shapeB"]) == ("literal", "Secret key password via plain Secret")
    assert "literal-in-staging" not in json.dumps(p)


def test_a_different_secret_mechanism(story: Story):
    # prod's Secret is made by an ExternalSecret (a minimal CRD stands in for external-secrets.io)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "externalsecrets.external-secrets.io"},
        "spec": {
            "group": "external-secrets.io",
            "scope": "Namespaced",
            "names": {"kind": "ExternalSecret", "plural": "externalsecrets", "singular": "externalsecret"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    from kubernetes import client

    ext = client.ApiextensionsV1Api(story.api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
    from support.wait import has_condition, wait_for_object

    wait_for_object(
        ext.list_custom_resource_definition,
        "externalsecrets.external-secrets.io",
        has_condition("Established"),
        what="ExternalSecret CRD Established",
    )
    es = story.custom.create_namespaced_custom_object(
        "external-secrets.io",
        "v1",
        story.stage_ns["prod"],
        "externalsecrets",
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "shop-db"},
            "spec": {
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"},
                "data": [
                    {"secretKey": "password", "remoteRef": {"key": f"apps/{story.stage_ns['prod']}/db"}}
                ],
            },
        },
    )
    owner = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "name": "shop-db",
        "uid": es["metadata"]["uid"],
        "controller": True,
    }
    secret(story, "staging")
    story.core.create_namespaced_secret(
        story.stage_ns["prod"],
        {"metadata": {"name": "shop-db", "ownerReferences": [owner]}, "stringData": {"password": PLANTED}},
    )
    story.deployment_with("staging", POD)
    story.deployment_with("prod", POD)
    story.given_pipeline(
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ]
    )
    story.given_operator()
    p = in_parity(story, "False")
    d = status(p)["parity"]["differences"][0]
    assert d["shapeA"] == "Secret key password via plain Secret"
    assert (
        d["shapeB"] == "Secret key password via ExternalSecret(store=ClusterSecretStore keys=apps/<stage>/db)"
    )


def test_a_different_probe_then_the_same_path_ignored(story: Story):
    other = variant(lambda c: c["readinessProbe"]["httpGet"].update(path="/ready"))
    given_stages(story, POD, other)
    p = in_parity(story, "False")
    assert diff_paths(p) == ["deployment[shop].containers[web].readinessProbe"]
    pipeline = story.get("pipelines", "shop")
    pipeline["spec"]["parity"]["ignore"] = ["deployment[shop].containers[*].readinessProbe"]
    story.custom.replace_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", story.ns, "pipelines", "shop", pipeline
    )
    in_parity(story, "True")
    story.then_event("shop", "ParityRestored")


def test_enforce_blocks_production_until_parity_returns(story: Story):
    given_stages(story, POD, variant(lambda c: c["env"].append({"name": "FEATURE_X", "value": "on"})))
    story.when_release("shop-v1", label="v1")
    rel = story.then_condition("releases", "shop-v1", "Ready", status="False", reason="ParityBlocked")
    assert status(rel)["phase"] == "Waiting"
    assert "env[FEATURE_X]" in status(rel)["message"]
    assert status(rel)["currentStage"] == "prod"
    # Fix prod (remove the extra variable): the release moves on by itself
    dep = story.apps.read_namespaced_deployment("shop", story.stage_ns["prod"])
    dep.spec.template.spec.containers[0].env = [
        e for e in dep.spec.template.spec.containers[0].env if e.name != "FEATURE_X"
    ]
    story.apps.replace_namespaced_deployment("shop", story.stage_ns["prod"], dep)
    story.then_condition("releases", "shop-v1", "Ready", timeout=90)
    in_parity(story, "True")


def test_warn_records_only(story: Story):
    given_stages(
        story, POD, variant(lambda c: c["env"].append({"name": "FEATURE_X", "value": "on"})), policy="warn"
    )
    story.when_release("shop-v1", label="v1")
    story.then_condition("releases", "shop-v1", "Ready", timeout=90)
    in_parity(story, "False")


def test_credential_looking_literals_are_refused_at_admission(story: Story):
    base = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "leaky"},
        "spec": {
            "imageRepository": "ghcr.io/acme/shop",
            "targets": [{"deployment": "shop", "container": "web"}],
            "stages": [{"name": "prod", "namespace": story.stage_ns["prod"]}],
        },
    }
    leaky = copy.deepcopy(base)
    leaky["spec"]["migration"] = {
        "command": ["/app/migrate"],
        "env": [{"name": "DB_PASSWORD", "value": "hunter2"}],
    }
    with pytest.raises(ApiException) as err:
        story.create("pipelines", leaky)
    assert err.value.status == 422
    assert "secretKeyRef" in str(err.value.body)
    assert "spec.migration.env[0]" in str(err.value.body)
    leaky = copy.deepcopy(base)
    leaky["spec"]["stages"][0]["variables"] = {"API_TOKEN": "abc"}
    with pytest.raises(ApiException) as err:
        story.create("pipelines", leaky)
    assert "spec.stages[0].variables" in str(err.value.body)
    fine = copy.deepcopy(base)
    fine["spec"]["migration"] = {
        "command": ["/app/migrate"],
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
    }
    story.create("pipelines", fine)


def test_the_planted_secret_value_appears_nowhere_conveyor_writes(story: Story):
    staging = variant(lambda c: c["env"].__setitem__(1, {"name": "DB_PASSWORD", "value": "literal"}))
    given_stages(story, staging, POD)
    story.when_release("shop-v1", label="v1")
    story.then_release_phase("shop-v1", "Waiting")
    in_parity(story, "False")
    story.when_rollback("rb", stage="staging", as_user="alice")
    story.then_condition("rollbacks", "rb", "RollbackBlocked")
    needles = [PLANTED, base64.b64encode(PLANTED.encode()).decode()]
    written = [
        json.dumps(story.custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, plural))
        for plural in ("pipelines", "releases", "approvals", "rollbacks")
    ]
    for ns in (story.ns, *story.stage_ns.values()):
        written += [
            json.dumps(story.api.sanitize_for_serialization(e))
            for e in story.core.list_namespaced_event(ns).items
        ]
        written += [
            json.dumps(story.api.sanitize_for_serialization(j))
            for j in story.batch.list_namespaced_job(ns).items
        ]
    assert story.operator is not None
    written += story.operator.lines
    assert len(written) > 10
    for text in written:
        for needle in needles:
            assert needle not in text
