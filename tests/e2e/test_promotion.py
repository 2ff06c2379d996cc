"""Promotion stories, end to end: the operator runs as users run it (`conveyor run`, its own
process) against the real API server, controllers, scheduler and kwok nodes.

Failures are made on purpose through kwok (docs/local-cluster.md): an image digest starting
`dead` never becomes Ready; a Job pod labelled conveyor.dev/simulate=fail, or with the env var
CONVEYOR_SIMULATE=fail (a stage variable), exits 1.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from support.builders import commit_of
from support.story import OLD_IMAGE, Story, image_of, short, stage_record, status

pytestmark = pytest.mark.cluster

MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_happy_path_staging_then_approval_then_prod(story: Story):
    # Given a pipeline with migrations and smoke tests, and its Deployments in staging and prod
    story.given_deployments()
    story.given_pipeline(migration=MIGRATION, smoke_test=SMOKE)
    story.given_operator()

    # When CI creates a release
    story.when_release("shop-v1", label="v1")

    # Then it is verified in staging and waits at production's door
    rel = story.then_release_phase("shop-v1", "AwaitingApproval")
    assert status(rel)["currentStage"] == "prod"
    assert stage_record(rel, "staging")["phase"] == "Verified"
    assert story.deployment_image("staging") == image_of("v1")
    assert story.deployment_image("prod") != image_of("v1")
    assert story.jobs("prod") == []

    # When someone approves production
    story.when_approved("shop-v1", "prod")

    # Then `kubectl wait --for=condition=Ready` passes, as a CI gate would
    story.kubectl("wait", "--for=condition=Ready", "release/shop-v1", "--timeout=60s")
    rel = story.get("releases", "shop-v1")
    assert status(rel)["phase"] == "Succeeded"
    assert story.deployment_image("prod") == image_of("v1")
    assert story.jobs("prod") == [
        story.job("shop-v1", "prod", "migrate"),
        story.job("shop-v1", "prod", "smoke"),
    ]
    prod = stage_record(rel, "prod")
    # Every step is timestamped, in order, with sub-second precision.
    steps = [ts(prod[k]) for k in ("startedAt", "migratedAt", "deployedAt", "rolledOutAt", "verifiedAt")]
    assert steps == sorted(steps)
    assert "." in prod["verifiedAt"]
    assert prod["approval"] == "shop-v1-prod"

    # And `kubectl get pipelines` answers which commit is in production
    out = story.kubectl("get", "pipelines", "shop")
    header, row = out.strip().splitlines()
    assert header.split()[:3] == ["NAME", "PRODUCTION", "STAGES"]
    assert row.split()[1] == short("v1")
    assert f"staging={short('v1')} prod={short('v1')}" in row
    wide = story.kubectl("get", "releases", "-o", "wide")
    assert "sha256:" in wide
    assert "run-v1" in wide  # the CI run column
    assert short("v1") in story.kubectl("get", "releases")

    # And every transition is an Event, a history line, and a JSON audit line
    story.then_event("shop-v1", "ReleaseSucceeded")
    reasons = story.events("shop-v1")
    for expected in (
        "ReleaseAccepted",
        "MigrationSucceeded",
        "RolloutSucceeded",
        "SmokeTestSucceeded",
        "StageVerified",
        "AwaitingApproval",
        "ApprovalGranted",
        "ReleaseSucceeded",
    ):
        assert expected in reasons
    history = [h["reason"] for h in status(rel)["history"]]
    assert history[0] == "ReleaseAccepted"
    assert history[-1] == "ReleaseSucceeded"
    story.audit_event("ReleaseSucceeded")  # logged after prod's StageVerified
    verified = [a for a in story.audit_event("StageVerified") if a["stage"] == "prod"]
    assert verified
    assert verified[0]["commit"] == commit_of("v1")
    assert story.get("approvals", "shop-v1-prod")["status"]["counted"] is True


def test_rollout_failure_is_decided_by_the_stage_deadline(story: Story):
    # Given a stage whose rollout deadline is 8 seconds
    story.given_deployments()
    story.given_pipeline(
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 8},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ]
    )
    story.given_operator()

    # When a release's image never becomes Ready (its digest starts with dead)
    story.when_release("shop-bad", label="bad", digest_prefix="dead")

    # Then it fails at staging with RolloutTimedOut, not after Kubernetes' 10 minutes
    rel = story.then_condition("releases", "shop-bad", "Failed", reason="RolloutTimedOut", timeout=60)
    staging = stage_record(rel, "staging")
    assert status(rel)["phase"] == "Failed"
    assert status(rel)["currentStage"] == "staging"
    assert (ts(staging["finishedAt"]) - ts(staging["deployedAt"])).total_seconds() >= 8
    assert "replicas updated" in status(rel)["message"]
    # And later stages never start
    assert stage_record(rel, "prod") == {}
    assert story.deployment_image("prod") != image_of("bad", "dead")
    story.then_event("shop-bad", "RolloutTimedOut")


def test_progress_deadline_exceeded_fails_the_rollout(story: Story):
    # Given Deployments that give up quickly themselves (progressDeadlineSeconds: 3)
    story.given_deployments(progress_deadline=3)
    story.given_pipeline()
    story.given_operator()
    # When the release's pods never get Ready
    story.when_release("shop-stuck", label="stuck", digest_prefix="dead")
    # Then Kubernetes' own verdict ends the release
    rel = story.then_condition("releases", "shop-stuck", "Failed", reason="RolloutFailed", timeout=60)
    assert "ProgressDeadlineExceeded" in status(rel)["message"]


def test_smoke_test_failure_fails_the_stage(story: Story):
    # Given a smoke test that fails in staging (a stage variable tells kwok to fail its pod)
    story.given_deployments()
    story.given_pipeline(
        smoke_test=SMOKE,
        stages=[
            {
                "name": "staging",
                "namespace": story.stage_ns["staging"],
                "variables": {"CONVEYOR_SIMULATE": "fail", "BASE_URL": "https://staging.example"},
            },
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    story.given_operator()
    # When a release arrives
    story.when_release("shop-v2", label="v2")
    # Then the smoke test's failure is the verdict, and prod never sees the release
    rel = story.then_condition("releases", "shop-v2", "Failed", reason="SmokeTestFailed")
    staging = stage_record(rel, "staging")
    assert staging["smokeTestResult"] == "Failed"
    assert staging["rolledOutAt"]
    assert stage_record(rel, "prod") == {}
    assert story.jobs("prod") == []
    # The smoke test got the stage's variables and Conveyor's own
    job = story.batch.read_namespaced_job(story.job("shop-v2", "staging", "smoke"), story.stage_ns["staging"])
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["BASE_URL"] == "https://staging.example"
    assert env["CONVEYOR_COMMIT"] == commit_of("v2")
    assert env["CONVEYOR_STAGE"] == "staging"
    assert job.spec.template.spec.containers[0].image == image_of("v2")


def test_migration_failure_stops_before_any_rollout(story: Story):
    # Given a migration whose pod fails
    story.given_deployments()
    story.given_pipeline(migration={**MIGRATION, "labels": {"conveyor.dev/simulate": "fail"}})
    story.given_operator()
    # When a release arrives
    story.when_release("shop-v3", label="v3")
    # Then it fails with MigrationFailed and the Deployment still runs the old image
    rel = story.then_condition("releases", "shop-v3", "Failed", reason="MigrationFailed")
    assert "rollout did not start" in status(rel)["message"]
    assert story.deployment_image("staging") != image_of("v3")
    assert "deployedAt" not in stage_record(rel, "staging")


def test_one_release_at_a_time_and_newer_waiting_releases_supersede_older_ones(story: Story):
    # Given a release stuck rolling out in staging (its image never gets Ready; deadline 20 s)
    story.given_deployments()
    story.given_pipeline(
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 20},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ]
    )
    story.given_operator()
    story.when_release("shop-1", label="one", digest_prefix="dead")
    story.then_release(
        "shop-1",
        lambda o: o is not None and stage_record(o, "staging").get("deployedAt") is not None,
        "image set in staging",
    )
    # When two more releases arrive while it is in flight
    story.when_release("shop-2", label="two")
    story.when_release("shop-3", label="three")
    # Then the older waiting one is superseded, the newest waits its turn
    story.then_release_phase("shop-2", "Superseded")
    rel3 = story.then_release_phase("shop-3", "Waiting")
    assert "shop-1" in status(rel3)["message"]
    story.then_event("shop-2", "Superseded")
    # And the in-flight release is not interrupted: it ends by its own verdict, then the newest goes
    story.then_condition("releases", "shop-1", "Failed", reason="RolloutTimedOut", timeout=60)
    story.then_release_phase("shop-3", "Succeeded", timeout=60)
    assert story.deployment_image("prod") == image_of("three")
    assert "deployedAt" not in stage_record(story.get("releases", "shop-2"), "staging")


@pytest.mark.parametrize("phase", ["Migrating", "RollingOut", "SmokeTesting", "AwaitingApproval"])
def test_operator_killed_mid_phase_finishes_correctly_after_restart(story: Story, phase: str):
    # Given a pipeline with migrations and smoke tests
    story.given_deployments()
    story.given_pipeline(migration=MIGRATION, smoke_test=SMOKE)
    story.given_operator()
    # When the operator is SIGKILLed as soon as the release is seen in this phase, and restarted
    story.when_release("shop-k", label=f"kill-{phase}")
    story.then_release(
        "shop-k",
        lambda o: (
            o is not None
            and phase in {s.get("phase") for s in status(o).get("stages", [])} | {status(o).get("phase")}
        ),
        f"a stage in phase {phase}",
    )
    story.restart_operator()
    story.then_release_phase("shop-k", "AwaitingApproval")
    story.when_approved("shop-k", "prod")
    rel = story.then_release_phase("shop-k", "Succeeded")
    # Then every stage ran exactly once: one migration and one smoke Job each, one new ReplicaSet
    for stage in ("staging", "prod"):
        assert story.jobs(stage) == [
            story.job("shop-k", stage, "migrate"),
            story.job("shop-k", stage, "smoke"),
        ]
    for stage in ("staging", "prod"):
        rs = story.apps.list_namespaced_replica_set(story.stage_ns[stage]).items
        assert sorted(r.spec.template.spec.containers[0].image for r in rs) == sorted(
            [image_of(f"kill-{phase}"), OLD_IMAGE]
        )
        assert stage_record(rel, stage)["phase"] == "Verified"
    history = [h["reason"] for h in status(rel)["history"]]
    assert history.count("StageVerified") == 2
    assert history.count("MigrationStarted") == 2


def test_schema_refuses_what_it_can_judge_with_field_level_messages(story: Story):
    from kubernetes.client.exceptions import ApiException

    def refused(plural: str, body: dict) -> str:
        with pytest.raises(ApiException) as err:
            story.create(plural, body)
        assert err.value.status == 422
        return str(err.value.body)

    base = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "r"},
        "spec": {"pipeline": "shop", "commit": commit_of("x"), "digest": "sha256:" + "a" * 64},
    }
    msg = refused("releases", {**base, "spec": {**base["spec"], "digest": "latest"}})
    assert "spec.digest" in msg
    assert "latest above all" in msg
    msg = refused("releases", {**base, "spec": {**base["spec"], "digest": "ghcr.io/acme/shop:v1"}})
    assert "tags are refused" in msg
    msg = refused("releases", {**base, "spec": {**base["spec"], "commit": "abc123"}})
    assert "spec.commit" in msg
    assert "40-character" in msg
    msg = refused("releases", {**base, "spec": {"pipeline": "shop", "commit": commit_of("x")}})
    assert "spec.digest" in msg
    assert "Required" in msg
    ns = story.stage_ns
    dup = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {
            "imageRepository": "ghcr.io/acme/shop",
            "targets": [{"deployment": "a", "container": "b"}],
            "stages": [
                {"name": "staging", "namespace": ns["staging"]},
                {"name": "staging", "namespace": ns["prod"]},
            ],
        },
    }
    msg = refused("pipelines", dup)
    assert "spec.stages[1]" in msg
    assert "Duplicate" in msg
    bad_name = {**dup, "spec": {**dup["spec"], "stages": [{"name": "Prod_1", "namespace": ns["prod"]}]}}
    assert "spec.stages[0].name" in refused("pipelines", bad_name)
    tagged = {
        **dup,
        "spec": {
            **dup["spec"],
            "imageRepository": "ghcr.io/acme/shop:latest",
            "stages": [{"name": "prod", "namespace": ns["prod"]}],
        },
    }
    assert "spec.imageRepository" in refused("pipelines", tagged)
    one_stage = {**dup["spec"], "stages": [{"name": "prod", "namespace": ns["prod"]}]}
    for job in ({"command": []}, {}):  # nothing to run but the application itself
        msg = refused("pipelines", {**dup, "spec": {**one_stage, "migration": job}})
        assert "spec.migration" in msg
        assert "the application itself" in msg
    story.create("pipelines", {**dup, "spec": {**one_stage, "migration": {"args": ["migrate"]}}})

    # A Release's and an Approval's spec are immutable
    story.create("releases", base)
    edited = story.get("releases", "r")
    edited["spec"]["digest"] = "sha256:" + "b" * 64
    with pytest.raises(ApiException) as err:
        story.custom.replace_namespaced_custom_object(
            "conveyor.dev", "v1alpha1", story.ns, "releases", "r", edited
        )
    assert err.value.status == 422
    assert "spec is immutable" in str(err.value.body)
    story.when_approved("r", "prod", name="a")
    approval = story.get("approvals", "a")
    approval["spec"]["stage"] = "staging"
    with pytest.raises(ApiException) as err:
        story.custom.replace_namespaced_custom_object(
            "conveyor.dev", "v1alpha1", story.ns, "approvals", "a", approval
        )
    assert "spec is immutable" in str(err.value.body)


def test_what_only_the_cluster_can_judge_becomes_a_condition_and_heals(story: Story):
    story.given_operator()
    # A release for a pipeline that does not exist (yet)
    story.when_release("early", label="early")
    rel = story.then_condition("releases", "early", "Ready", status="False", reason="PipelineNotFound")
    assert "no Pipeline 'shop'" in status(rel)["message"]
    # An approval for a release that does not exist
    story.when_approved("nobody", "prod", name="orphan", bind=False)
    story.then_condition("approvals", "orphan", "Counted", status="False", reason="UnknownRelease")

    # The pipeline appears, but staging's Deployment does not exist yet
    story.given_pipeline()
    story.then_condition("releases", "early", "Progressing", status="False", reason="DeploymentNotFound")
    story.then_condition("pipelines", "shop", "Ready", status="False", reason="DeploymentNotFound")
    # An approval for a stage the pipeline does not have
    story.when_approved("early", "qa", name="wrong-stage")
    story.then_condition("approvals", "wrong-stage", "Counted", status="False", reason="WrongStage")

    # The Deployment exists but lacks the container the pipeline names
    story.create_deployment(story.stage_ns["staging"], "shop", containers=("api",))
    story.then_condition("releases", "early", "Progressing", status="False", reason="ContainerNotFound")

    # Fix the world: the right Deployment everywhere. The release heals and moves on by itself.
    story.apps.delete_namespaced_deployment("shop", story.stage_ns["staging"])
    story.given_deployments()
    story.then_release_phase("early", "AwaitingApproval", timeout=90)
    story.then_condition("pipelines", "shop", "Ready", status="True")


def test_a_missing_stage_namespace_blocks_only_its_own_pipeline(story: Story):
    # Given two pipelines: one whose prod namespace does not exist, one healthy
    story.given_deployments(stages=["staging"])
    missing = "conveyor-missing-ns-" + story.ns[-6:]
    story.given_pipeline(
        "broken",
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {"name": "prod", "namespace": missing},
        ],
    )
    story.create_deployment(story.stage_ns["prod"], "shop")
    story.given_pipeline("healthy", stages=[{"name": "prod", "namespace": story.stage_ns["prod"]}])
    story.given_operator()
    # When each gets a release
    story.when_release("broken-1", pipeline="broken", label="b1")
    story.when_release("healthy-1", pipeline="healthy", label="h1")
    # Then the broken one says why it waits, and the healthy one is not held up
    story.then_release_phase("healthy-1", "Succeeded")
    rel = story.then_condition(
        "releases", "broken-1", "Progressing", status="False", reason="NamespaceNotFound"
    )
    assert missing in status(rel)["message"]
    story.then_condition("pipelines", "broken", "Ready", status="False", reason="NamespaceNotFound")


def test_kubectl_explain_short_names_and_the_conveyor_category(story: Story):
    out = " ".join(story.kubectl("explain", "release.spec.digest").split())
    assert "Tags are refused" in out
    out = " ".join(story.kubectl("explain", "pipeline.spec.stages.rolloutDeadlineSeconds").split())
    assert "default 2 minutes" in out
    story.given_pipeline()
    story.when_release("shop-x", label="x")
    out = story.kubectl("get", "conveyor", "-o", "name")
    assert "pipeline.conveyor.dev/shop" in out
    assert "release.conveyor.dev/shop-x" in out
    assert "shop-x" in story.kubectl("get", "rel", "-o", "name")
    assert "shop" in story.kubectl("get", "pl", "-o", "name")
