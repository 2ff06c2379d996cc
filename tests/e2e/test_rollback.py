"""Rollback stories, end to end, on the real control plane with the operator as users run it.

Most stories use a one-stage pipeline (prod, no approval gate) — a rollback's default stage is the
last one — and promote two or three releases first. Failures on purpose (docs/local-cluster.md):
digest `dead…` never gets Ready, digest `0bad…` fails its Jobs but runs fine.
"""

from __future__ import annotations

import pytest

from support.builders import commit_of
from support.story import Story, image_of, short, stage_record, status

pytestmark = pytest.mark.cluster
SMOKE = {"command": ["/app/smoke"]}
DOWN = {"command": ["/app/migrate", "down"]}


def prod_only(story: Story, **stage: object) -> list[dict]:
    return [{"name": "prod", "namespace": story.stage_ns["prod"], "rolloutDeadlineSeconds": 60, **stage}]


def given_prod_with_history(story: Story, *labels: str, **pipeline) -> None:
    """A one-stage pipeline whose prod saw each release in `labels`, in order (the last runs now)."""
    story.given_deployments(stages=["prod"])
    story.given_pipeline(stages=prod_only(story), **pipeline)
    story.given_operator()
    for label in labels:
        story.promote(f"shop-{label}", label=label)


def promote_with_schema(story: Story, label: str, schema: str) -> None:
    """A release declaring a schema change, promoted to prod."""
    from support.builders import release_dict

    body = release_dict(f"shop-{label}", namespace=story.ns, label=label)
    body["spec"]["schemaChange"] = schema
    story.create("releases", body)
    story.then_condition("releases", f"shop-{label}", "Ready", timeout=90)


def test_manual_rollback_to_the_previous_release(story: Story):
    # Given prod ran v1, then v2
    given_prod_with_history(story, "v1", "v2", smoke_test=SMOKE)
    assert story.deployment_image("prod") == image_of("v2")
    # When someone rolls prod back
    story.when_rollback("undo-v2", reason="checkout errors after v2")
    # Then prod runs v1 again, verified by the smoke test, and v2 is vetoed
    rb = story.then_rollback_phase("undo-v2", "Succeeded")
    plan = status(rb)["plan"]
    assert (plan["action"], plan["stage"], plan["fromRelease"], plan["toRelease"]) == (
        "ImageOnly",
        "prod",
        "shop-v2",
        "shop-v1",
    )
    assert (plan["fromCommit"], plan["toCommit"]) == (commit_of("v2"), commit_of("v1"))
    st = status(rb)
    assert st["plannedAt"] <= st["patchedAt"] <= st["rolledOutAt"] <= st["verifiedAt"] <= st["finishedAt"]
    assert st["durationSeconds"] > 0
    assert story.deployment_image("prod") == image_of("v1")
    assert story.jobs("prod")[-1] == story.job("undo-v2", "prod", "smoke", plural="rollbacks")
    v2 = story.get("releases", "shop-v2")
    assert status(v2)["vetoed"] is True
    assert v2["metadata"]["labels"]["conveyor.dev/vetoed"] == "true"
    assert "shop-v2" in story.kubectl("get", "releases", "-l", "conveyor.dev/vetoed=true", "-o", "name")
    row = next(line for line in story.kubectl("get", "releases").splitlines() if line.startswith("shop-v2 "))
    assert "true" in row.split()  # the Vetoed column
    pipeline = story.get("pipelines", "shop")
    assert status(pipeline)["productionCommit"] == short("v1")
    assert status(pipeline)["stages"][0]["pinnedBy"] == "undo-v2"
    story.then_event("undo-v2", "RollbackCompleted")
    assert {"RollbackStarted", "RollbackCompleted"} <= set(story.events("undo-v2"))
    assert "ReleaseVetoed" in story.events("shop-v2")


def test_rollback_to_an_explicit_older_release(story: Story):
    given_prod_with_history(story, "v1", "v2", "v3")
    story.when_rollback("to-v1", toRelease="shop-v1", verify=False)
    rb = story.then_rollback_phase("to-v1", "Succeeded")
    assert status(rb)["plan"]["fromRelease"] == "shop-v3"
    assert story.deployment_image("prod") == image_of("v1")
    assert status(story.get("releases", "shop-v3"))["vetoed"] is True
    assert not status(story.get("releases", "shop-v2")).get("vetoed")


def test_automatic_rollback_after_a_smoke_test_failure(story: Story):
    # Given staging rolls back by itself on failure
    story.given_deployments()
    story.given_pipeline(
        smoke_test=SMOKE,
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"], "onFailure": "rollback"},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    story.given_operator()
    story.promote("shop-good", label="good")
    # When a release whose smoke test fails reaches staging (its pods run; its Jobs fail)
    story.when_release("shop-buggy", label="buggy", digest_prefix="0bad")
    story.then_condition("releases", "shop-buggy", "Failed", reason="SmokeTestFailed")
    # Then Conveyor created one Rollback itself, and staging runs the good release again
    rb = story.then_rollback_phase(story.auto_rollback("shop-buggy", "staging"), "Succeeded")
    assert status(rb)["plan"]["toRelease"] == "shop-good"
    assert rb["metadata"]["labels"]["conveyor.dev/automatic"] == "true"
    assert "automatic" in rb["spec"]["reason"]
    assert story.deployment_image("staging") == image_of("good")
    assert story.deployment_image("prod") == image_of("good")  # prod never saw the buggy one
    rollbacks = story.custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, "rollbacks")
    assert len(rollbacks["items"]) == 1


def test_automatic_rollback_after_the_rollout_deadline(story: Story):
    story.given_deployments(stages=["prod"])
    story.given_pipeline(stages=prod_only(story, onFailure="rollback", rolloutDeadlineSeconds=8))
    story.given_operator()
    story.promote("shop-v1", label="v1")
    story.when_release("shop-v2", label="v2", digest_prefix="dead")
    story.then_condition("releases", "shop-v2", "Failed", reason="RolloutTimedOut", timeout=60)
    story.then_rollback_phase(story.auto_rollback("shop-v2", "prod"), "Succeeded")
    assert story.deployment_image("prod") == image_of("v1")
    story.wait_deployment_available(story.stage_ns["prod"], "shop")


def test_breaking_schema_runs_the_down_migration_once_then_rolls_back(story: Story):
    given_prod_with_history(story, "v1", down_migration=DOWN)
    promote_with_schema(story, "v2", "breaking")
    story.when_rollback("undo-breaking", verify=False)
    rb = story.then_rollback_phase("undo-breaking", "Succeeded")
    assert status(rb)["plan"]["action"] == "DownMigrationThenImage"
    assert status(rb)["downMigratedAt"] <= status(rb)["patchedAt"]
    down_job = story.job("undo-breaking", "prod", "down", plural="rollbacks")
    assert story.jobs("prod") == [down_job]
    down = story.batch.read_namespaced_job(down_job, story.stage_ns["prod"])
    assert down.spec.template.spec.containers[0].image == image_of("v2")  # the newer image undoes itself
    assert down.spec.template.spec.containers[0].command == DOWN["command"]
    assert story.deployment_image("prod") == image_of("v1")


def test_breaking_schema_without_a_down_migration_is_blocked_until_the_pipeline_has_one(story: Story):
    given_prod_with_history(story, "v1")
    promote_with_schema(story, "v2", "breaking")
    story.when_rollback("undo-breaking")
    rb = story.then_condition("rollbacks", "undo-breaking", "RollbackBlocked", reason="NoDownMigration")
    assert "spec.downMigration" in status(rb)["message"]
    assert story.deployment_image("prod") == image_of("v2")  # nothing changed
    story.then_event("undo-breaking", "RollbackBlocked")
    # When the platform team adds the down-migration, the same Rollback proceeds by itself
    pipeline = story.get("pipelines", "shop")
    pipeline["spec"]["downMigration"] = DOWN
    story.custom.replace_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", story.ns, "pipelines", "shop", pipeline
    )
    story.then_rollback_phase("undo-breaking", "Succeeded")
    assert story.deployment_image("prod") == image_of("v1")


def test_rollback_while_a_release_is_in_flight_stops_it(story: Story):
    given_prod_with_history(story, "v1")
    story.when_release("shop-stuck", label="stuck", digest_prefix="dead")
    story.then_release(
        "shop-stuck",
        lambda o: o is not None and stage_record(o, "prod").get("deployedAt"),
        "image set in prod",
    )
    story.when_rollback("abort", verify=False)
    story.then_rollback_phase("abort", "Succeeded")
    stuck = story.get("releases", "shop-stuck")
    assert status(stuck)["phase"] == "RolledBack"
    assert status(stuck)["vetoed"] is True
    assert story.deployment_image("prod") == image_of("v1")
    story.then_event("shop-stuck", "ReleaseRolledBack")


def test_a_vetoed_release_reapplied_changes_nothing_and_a_newer_one_lifts_the_pin(story: Story):
    given_prod_with_history(story, "v1", "v2")
    story.when_rollback("undo", verify=False)
    story.then_rollback_phase("undo", "Succeeded")
    # Argo CD re-applies the vetoed Release: unchanged; recreated: Vetoed, and prod stays on v1
    story.kubectl("apply", "-f", "-", input_=_release_yaml(story, "shop-v2", "v2"))
    assert status(story.get("releases", "shop-v2"))["phase"] == "Succeeded"
    story.custom.delete_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, "releases", "shop-v2")
    story.kubectl("apply", "-f", "-", input_=_release_yaml(story, "shop-v2", "v2"))
    story.then_release_phase("shop-v2", "Vetoed")
    assert story.deployment_image("prod") == image_of("v1")
    # A newer release goes through as usual
    story.promote("shop-v3", label="v3")
    assert story.deployment_image("prod") == image_of("v3")


def _release_yaml(story: Story, name: str, label: str) -> str:
    import json

    from support.builders import release_dict

    return json.dumps(release_dict(name, namespace=story.ns, label=label))


def test_operator_killed_mid_rollback_finishes_the_same_plan(story: Story):
    given_prod_with_history(story, "v1", down_migration=DOWN, smoke_test=SMOKE)
    promote_with_schema(story, "v2", "breaking")
    story.when_rollback("undo", verify=True)
    story.then_rollback_phase("undo", "MigratingDown")
    story.restart_operator()
    rb = story.then_rollback_phase("undo", "Succeeded")
    assert status(rb)["plan"]["action"] == "DownMigrationThenImage"
    downs = [j for j in story.jobs("prod") if "-down-" in j]
    assert downs == [story.job("undo", "prod", "down", plural="rollbacks")]  # at most once
    assert story.deployment_image("prod") == image_of("v1")


def test_bad_rollbacks_are_refused_with_clear_messages(story: Story):
    given_prod_with_history(story, "v1")
    story.when_release("shop-never", label="never", target_stage="prod", digest_prefix="dead")
    story.when_rollback("no-pipeline", pipeline="nope")
    rb = story.then_condition("rollbacks", "no-pipeline", "RollbackBlocked", reason="PipelineNotFound")
    assert "no Pipeline 'nope'" in status(rb)["message"]
    assert status(rb)["phase"] == "Blocked"  # heals if the pipeline appears
    story.when_rollback("no-stage", stage="qa")
    rb = story.then_condition("rollbacks", "no-stage", "RollbackBlocked", reason="UnknownStage")
    assert "no stage 'qa'" in status(rb)["message"]
    assert status(rb)["phase"] == "Refused"  # final
    story.when_rollback("no-release", toRelease="shop-ghost")
    story.then_condition("rollbacks", "no-release", "RollbackBlocked", reason="UnknownRelease")
    story.when_rollback("not-verified", toRelease="shop-never")
    rb = story.then_condition("rollbacks", "not-verified", "RollbackBlocked", reason="NotVerifiedInStage")
    assert "never verified in prod" in status(rb)["message"]
    for name in ("no-pipeline", "no-stage", "no-release", "not-verified"):
        assert "patchedAt" not in status(story.get("rollbacks", name))  # refused: nothing changed
    assert not status(story.get("releases", "shop-v1")).get("vetoed")
