"""Parity, decided without a cluster: what counts as a difference, what does not, and what
enforcement does to a release at production's door."""

from __future__ import annotations

import copy

from conveyor.api.release import Phase
from conveyor.core.parity import StageObjects, compare
from conveyor.core.promotion import reconcile
from conveyor.core.secrets import SecretInfo
from support.builders import REPO, deployment_view, digest_of, later, pipeline, release, verified_in, world

POD = {
    "serviceAccountName": "shop",
    "containers": [
        {
            "name": "web",
            "image": "ghcr.io/acme/shop@sha256:aaa",
            "env": [
                {"name": "BASE_URL", "value": "https://staging.example"},
                {
                    "name": "DB_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}},
                },
            ],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            "resources": {"requests": {"cpu": "100m"}},
        }
    ],
}
PLAIN = {"shop-db": SecretInfo(exists=True)}


def stages(staging: dict, prod: dict, staging_secrets=PLAIN, prod_secrets=PLAIN) -> list[StageObjects]:
    return [
        StageObjects("staging", "shop-staging", {"shop": staging}, dict(staging_secrets)),
        StageObjects("prod", "shop-prod", {"shop": prod}, dict(prod_secrets)),
    ]


def prod_variant(change) -> dict:
    pod = copy.deepcopy(POD)
    change(pod)
    return pod


def paths(diffs) -> list[str]:
    return [d.path for d in diffs]


def test_identical_stages_are_in_parity_even_with_different_urls_images_and_resources():
    def scale_and_url(pod):
        c = pod["containers"][0]
        c["env"][0]["value"] = "https://shop.example"
        c["image"] = "ghcr.io/acme/shop@sha256:bbb"  # the promoted container: Conveyor's to differ
        c["resources"] = {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}

    assert compare(pipeline(), stages(POD, prod_variant(scale_and_url))) == []


def test_an_extra_env_var_in_prod_only():
    diffs = compare(
        pipeline(),
        stages(
            POD,
            prod_variant(lambda p: p["containers"][0]["env"].append({"name": "FEATURE_X", "value": "on"})),
        ),
    )
    assert paths(diffs) == ["deployment[shop].containers[web].env[FEATURE_X]"]
    assert (diffs[0].shape_a, diffs[0].shape_b) == ("absent", "literal")


def test_a_literal_in_staging_where_prod_reads_a_secret_and_no_value_is_ever_shown():
    literal = prod_variant(
        lambda p: p["containers"][0]["env"].__setitem__(
            1, {"name": "DB_PASSWORD", "value": "hunter2-planted"}
        )
    )
    diffs = compare(pipeline(), stages(literal, POD))
    assert paths(diffs) == ["deployment[shop].containers[web].env[DB_PASSWORD]"]
    assert diffs[0].shape_a == "literal"
    assert diffs[0].shape_b == "Secret key password via plain Secret"
    assert "hunter2" not in repr(diffs)


def test_a_different_secret_mechanism():
    external = {
        "shop-db": SecretInfo(
            exists=True,
            owner_kind="ExternalSecret",
            store_kind="ClusterSecretStore",
            remote_keys=("apps/shop-prod/db",),
        )
    }
    diffs = compare(pipeline(), stages(POD, POD, PLAIN, external))
    assert paths(diffs) == ["deployment[shop].containers[web].env[DB_PASSWORD]"]
    assert "ExternalSecret(store=ClusterSecretStore keys=apps/<stage>/db)" in diffs[0].shape_b
    # The same mechanism in both, with the stage in the key path normalised: in parity.
    ext_staging = {
        "shop-db": SecretInfo(
            exists=True,
            owner_kind="ExternalSecret",
            store_kind="ClusterSecretStore",
            remote_keys=("apps/shop-staging/db",),
        )
    }
    assert compare(pipeline(), stages(POD, POD, ext_staging, external)) == []


def test_a_different_probe_and_an_ignored_path():
    other = prod_variant(
        lambda p: p["containers"][0]["readinessProbe"].update({"httpGet": {"path": "/ready", "port": 8080}})
    )
    assert paths(compare(pipeline(), stages(POD, other))) == [
        "deployment[shop].containers[web].readinessProbe"
    ]
    p = pipeline()
    p = p.model_copy(
        update={
            "spec": p.spec.model_copy(
                update={
                    "parity": p.spec.parity.model_copy(
                        update={"ignore": ["deployment[shop].containers[*].readinessProbe"]}
                    )
                }
            )
        }
    )
    assert compare(p, stages(POD, other)) == []


def test_a_stage_variable_that_shadows_a_template_env_var_is_an_override():
    p = pipeline(
        migration={
            "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "u"}}}]
        },
        stages=[
            {"name": "staging", "namespace": "shop-staging"},
            {"name": "prod", "namespace": "shop-prod", "variables": {"DATABASE_URL": "postgres://x"}},
        ],
    )
    diffs = compare(p, stages(POD, POD))
    assert "stage.overridesTemplateEnv" in paths(diffs)
    assert "stage.variables" in paths(diffs)


def test_enforce_holds_a_release_at_the_last_stage_and_warn_only_records():
    def run(policy: str):
        p = pipeline(
            stages=[
                {"name": "staging", "namespace": "shop-staging"},
                {"name": "prod", "namespace": "shop-prod"},
            ]
        )
        p = p.model_copy(
            update={
                "spec": p.spec.model_copy(
                    update={"parity": p.spec.parity.model_copy(update={"policy": policy})}
                )
            }
        )
        r = release("r1", status=verified_in("staging"))
        r = r.model_copy(update={"status": r.status.model_copy(update={"phase": Phase.PROGRESSING})})
        img = f"{REPO}@{digest_of('r1')}"
        staging = deployment_view(img, release_name="r1")
        prod = deployment_view(img)
        object.__setattr__(staging, "pod_spec", POD)
        object.__setattr__(prod, "pod_spec", prod_variant(lambda p: p["containers"][0]["env"].pop()))
        return reconcile(p, [r], [], world(staging=staging, prod=prod), later(5))

    plan = run("enforce")
    assert plan.releases["r1"].phase == Phase.WAITING
    blocked = next(c for c in plan.releases["r1"].conditions if c.type == "Ready")
    assert blocked.reason == "ParityBlocked"
    assert "env[DB_PASSWORD]" in blocked.message
    in_parity = next(c for c in plan.pipeline.conditions if c.type == "InParity")
    assert (in_parity.status, in_parity.reason) == ("False", "StagesDiffer")
    assert plan.pipeline.parity.in_parity is False
    warn = run("warn")
    assert warn.releases["r1"].phase == Phase.PROGRESSING
    assert warn.pipeline.parity.in_parity is False
