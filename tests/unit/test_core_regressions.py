"""Failures the model of the core (test_core_model.py) found, each kept as a short story (issue #10).

Each story drives the pure core through the simulated cluster (tests/support/sim.py), asserts what
the hardening design says must happen, and checks the invariant the model caught it with. They are
marked xfail(strict) while the core is the old one; remove a mark when its fix lands.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.builders import REPO, digest_of
from support.invariants import Invariants
from support.sim import SimCluster


def holds(sim: SimCluster, *invariants: str) -> None:
    """The named invariants held over every pass so far."""
    Invariants(sim, enabled=set(invariants)).check()


def phase(sim: SimCluster, plural: str, name: str) -> str | None:
    return sim.status(plural, name).get("phase")


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), {})


def stage_state(sim: SimCluster, stage: str) -> dict[str, Any]:
    return next(s for s in sim.status("pipelines", "shop").get("stages", []) if s["name"] == stage)


def to_production(sim: SimCluster, name: str, *, artifact: str | None = None) -> None:
    """CI releases `name`; it is verified in staging; alice approves it; it is verified in prod."""
    sim.create_release(name, artifact=artifact)
    sim.settle()
    sim.create_approval(f"{name}-prod", name, "prod", user="alice", bound=True)
    sim.settle()
    assert phase(sim, "releases", name) == "Succeeded"


def image(artifact: str) -> str:
    return f"{REPO}@{digest_of(artifact)}"


# --- rollbacks --------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue #10: a refused rollback is re-planned and acts later")
def test_a_refused_rollback_stays_refused_when_the_stage_changes_later():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_rollback("rb1", stage="staging")  # nothing ever ran there: nothing to roll back
    sim.reconcile()
    sim.create_release("r1", target_stage="staging")
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Refused"
    assert sim.image_of("shop-staging", "shop", "web") == image("r1")
    assert not sim.status("releases", "r1").get("vetoed")
    holds(sim, "final-rollbacks")


@pytest.mark.xfail(strict=True, reason="issue #10: a rollback to what the stage already runs vetoes it")
def test_rolling_back_to_what_the_stage_already_runs_vetoes_nothing():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="a1", target_stage="staging")
    sim.settle()
    sim.create_rollback("rb1", stage="staging", to_release="r1")
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Succeeded"
    assert not sim.status("releases", "r1").get("vetoed")
    assert "conveyor.dev/vetoed" not in sim.releases["r1"]["metadata"].get("labels", {})
    assert sim.status("pipelines", "shop").get("vetoed", []) == []
    assert stage_state(sim, "staging").get("pinnedBy") is None
    # Re-releasing the same artifact afterwards ends Succeeded, not Vetoed.
    sim.create_release("r2", artifact="a1", target_stage="staging")
    sim.settle()
    assert phase(sim, "releases", "r2") == "Succeeded"
    holds(sim, "noop-rollbacks")


# --- what runs --------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue #10: the pipeline says what was verified, not what runs")
def test_the_pipeline_says_what_runs_after_an_image_is_set_by_hand():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", target_stage="staging")
    sim.settle()
    sim.set_image_by_hand("shop-staging", image("hand-built"))
    sim.reconcile()
    staging = stage_state(sim, "staging")
    assert staging["release"] == "r1"  # still the last one verified there
    assert staging["running"]["image"] == image("hand-built")
    assert staging["running"].get("release") in (None, "")
    tracked = condition(sim.status("pipelines", "shop"), "Tracked")
    assert (tracked.get("status"), tracked.get("reason")) == ("False", "UntrackedImage")
    holds(sim, "stage-truth", "tracked")


@pytest.mark.xfail(strict=True, reason="issue #10: after a failed rollout the pipeline names the old release")
def test_the_pipeline_says_prod_runs_the_release_that_failed_there():
    sim = SimCluster(migration=False, smoke_test=False)
    to_production(sim, "r1")
    sim.create_release("r2")
    sim.settle()
    sim.create_approval("r2-prod", "r2", "prod", user="alice", bound=True)
    sim.reconcile()  # r2 enters prod and sets its image
    sim.rollout("shop-prod", "fail")  # ProgressDeadlineExceeded: r2 fails, onFailure hold
    sim.reconcile()
    assert phase(sim, "releases", "r2") == "Failed"
    prod = stage_state(sim, "prod")
    assert prod["release"] == "r1"  # last verified
    assert prod["running"]["release"] == "r2"  # what the Deployment runs
    holds(sim, "stage-truth")


# --- approvals --------------------------------------------------------------------------------


def approval_verdict(sim: SimCluster, release: str, approval: str) -> str | None:
    records = sim.status("releases", release).get("approvals", [])
    return next((a.get("verdict") for a in records if a["name"] == approval), None)


@pytest.mark.xfail(strict=True, reason="issue #10: an approval created before its release counts by name")
def test_an_approval_created_before_its_release_does_not_count():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_approval("r1-prod", "r1", "prod", user="alice")  # no release r1 yet
    sim.tick(1)
    sim.create_release("r1")
    sim.settle()
    assert phase(sim, "releases", "r1") == "AwaitingApproval"
    assert sim.image_of("shop-prod", "shop", "web") != image("r1")
    assert approval_verdict(sim, "r1", "r1-prod") == "StaleApproval"
    counted = condition(sim.status("approvals", "r1-prod"), "Counted")
    assert (counted.get("status"), counted.get("reason")) == ("False", "StaleApproval")
    holds(sim, "gate", "released-digests")


@pytest.mark.xfail(strict=True, reason="issue #10: a deleted release's approval counts for its re-creation")
def test_an_approval_of_a_deleted_release_does_not_count_for_a_new_one_of_the_same_name():
    sim = SimCluster(migration=False, smoke_test=False)
    sim.create_release("r1", artifact="good")
    sim.settle()
    sim.create_approval("r1-prod", "r1", "prod", user="alice")  # a plain `kubectl create`: no uid, no owner
    sim.delete("releases", "r1")  # before the operator saw the approval
    sim.tick(1)
    sim.create_release("r1", artifact="other")  # the same name, another artifact
    sim.settle()
    assert sim.image_of("shop-prod", "shop", "web") != image("other")
    assert phase(sim, "releases", "r1") == "AwaitingApproval"
    holds(sim, "gate", "released-digests")


@pytest.mark.xfail(strict=True, reason="issue #10: two rollbacks of one stage both act")
def test_of_two_rollbacks_of_one_stage_only_the_first_acts():
    sim = SimCluster(migration=False, smoke_test=False)
    to_production(sim, "r1")
    to_production(sim, "r2")
    sim.create_rollback("rb1", stage="prod", user="alice")
    sim.create_rollback("rb2", stage="prod", user="bob")  # the same second: both see r2 running
    sim.settle()
    assert phase(sim, "rollbacks", "rb1") == "Succeeded"
    assert phase(sim, "rollbacks", "rb2") == "Refused"
    blocked = condition(sim.status("rollbacks", "rb2"), "RollbackBlocked")
    assert blocked.get("reason") == "RollbackInProgress"
    assert "rb1" in blocked.get("message", "")
    assert sim.image_of("shop-prod", "shop", "web") == image("r1")
    holds(sim, "one-at-a-time", "no-fights")
