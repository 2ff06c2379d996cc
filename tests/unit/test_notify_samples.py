"""The sample objects of tests/support/notify_samples.py are what the operator records: the same
release or rollback, driven through the real reconciler (core/promotion.py, core/rollback.py) over
the same instants and an observed world in which its Jobs and rollouts finish (or fail), ends with
the same status — history, stage records, plan and all.
(The samples' messages are made by the core from those objects: test_notify_render.py.)"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from conveyor.api.approval import Approval
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.promotion import reconcile
from conveyor.core.world import JobView, World
from support import notify_samples as ns
from support.builders import approval, deployment_view, job, world

Step = tuple[float, World]


def drive(sample: Release, steps: list[Step], approvals: dict[int, list[Approval]] | None = None) -> Release:
    """`sample`'s spec, as CI created it, through one reconcile pass per (seconds after AT, world);
    `approvals`: those that exist from the pass of that index on."""
    release = Release.model_validate({**sample.model_dump(by_alias=True, exclude_none=True), "status": {}})
    given: list[Approval] = []
    for i, (seconds, observed) in enumerate(steps):
        given += (approvals or {}).get(i, [])
        plan = reconcile(ns.pipeline(), [release], given, observed, ns.at(seconds))
        release = release.model_copy(update={"status": plan.releases[release.metadata.name]})
    return release


def stage_run(  # noqa: PLR0917 (one stage's run)
    sample: Release,
    stage: str,
    start: float,
    seconds: tuple[float, float, float],
    before: dict[str, Any],
    smoke_failed: bool = False,
) -> list[Step]:
    """The passes of one stage run, and the world each sees: nothing yet; the migration done; the
    rollout done; the smoke test done (or failed). `seconds`: migration, rollout, smoke test;
    `before`: the world of the stages run already (deployments and jobs)."""
    name, uid = sample.metadata.name, sample.metadata.uid
    migration = job_name(name, uid, stage, JobKind.MIGRATION)
    smoke = job_name(name, uid, stage, JobKind.SMOKE_TEST)
    jobs: dict[str, JobView] = {**before.get("jobs", {}), migration: job(migration, complete=True)}
    rolled = {**before, stage: deployment_view(f"{ns.REPOSITORY}@{sample.spec.digest}", release_name=name)}
    rolled.pop("jobs", None)
    tested = job(smoke, complete=not smoke_failed, failed=smoke_failed, reason="BackoffLimitExceeded")
    migrate, roll, test = seconds
    return [
        (start, world(**before)),
        (start + migrate, world(**{**before, "jobs": jobs})),
        (start + migrate + roll, world(**rolled, jobs=jobs)),
        (start + migrate + roll + test, world(**rolled, jobs={**jobs, smoke: tested})),
    ]


def done(sample: Release, stage: str) -> dict[str, Any]:
    """The world once `sample` ran in `stage`: its image there, its Jobs complete."""
    name, uid = sample.metadata.name, sample.metadata.uid
    jobs = [job_name(name, uid, stage, kind) for kind in (JobKind.MIGRATION, JobKind.SMOKE_TEST)]
    return {
        stage: deployment_view(f"{ns.REPOSITORY}@{sample.spec.digest}", release_name=name),
        "jobs": {j: job(j, complete=True) for j in jobs},
    }


def same(driven: Release, sample: Release) -> None:
    assert driven.status.history == sample.status.history
    assert driven.status.stages == sample.status.stages
    assert (driven.status.phase, driven.status.message) == (sample.status.phase, sample.status.message)


# The sample's runs (notify_samples.released): staging from AT, approved 1840.5 s after the gate.
STAGING = (0.0, (12.4, 48.0, 9.2))
APPROVED = 69.6 + 1840.5
PROD = (APPROVED, (10.1, 52.3, 8.8))


def test_the_release_waiting_at_prods_gate_is_what_the_reconciler_records() -> None:
    sample = ns.released(waiting=True)
    same(drive(sample, stage_run(sample, "staging", *STAGING, before={})), sample)


def test_the_released_release_is_what_the_reconciler_records() -> None:
    sample = ns.released()
    a = approval("shop-3f9c2a1-prod", "shop-3f9c2a1", "prod", created=ns.at(APPROVED - 0.8))
    a.metadata.namespace = ns.NAMESPACE
    steps = stage_run(sample, "staging", *STAGING, before={})
    steps += stage_run(sample, "prod", *PROD, before=done(sample, "staging"))
    driven = drive(sample, steps, approvals={4: [a]})
    same(driven, sample)
    assert driven.status.approved_by == sample.status.approved_by == "alice"


def test_the_failed_release_is_what_the_reconciler_records() -> None:
    sample = ns.failed()
    start = (sample.metadata.creation_timestamp - ns.AT).total_seconds()
    steps = stage_run(sample, "staging", start, (11.8, 47.2, 21.5), before={}, smoke_failed=True)
    same(drive(sample, steps), sample)


# --- rollbacks (core/rollback.py, through the same reconciler)

CURRENT = deployment_view(f"{ns.REPOSITORY}@{ns.DIGEST}", release_name="shop-3f9c2a1")
BACK = deployment_view(f"{ns.REPOSITORY}@{ns.OLD_DIGEST}", release_name="shop-a1b2c3d")
# Patched, one of two replicas updated and available: a rollout that never finishes.
HALF = dataclasses.replace(
    BACK, updated_replicas=1, available_replicas=1, ready_replicas=1, unavailable_replicas=1
)


def status(rollback: Rollback) -> dict[str, Any]:
    """Its status but the conditions (the samples leave them out: no message reads them)."""
    return rollback.status.model_dump(exclude={"conditions"})


def drive_rollback(sample: Rollback, steps: list[tuple[float, World]]) -> Rollback:
    """`sample`'s spec, as alice created it, through one reconcile pass per (seconds, world)."""
    rollback = Rollback.model_validate({**sample.model_dump(by_alias=True, exclude_none=True), "status": {}})
    releases = [ns.released(), ns.previous(), ns.unverified()]
    for seconds, observed in steps:
        plan = reconcile(ns.pipeline(), releases, [], observed, ns.at(seconds), rollbacks=[rollback])
        rollback = rollback.model_copy(update={"status": plan.rollbacks[rollback.metadata.name]})
    return rollback


@pytest.mark.parametrize("rolling", [True, False])
def test_the_rollback_is_what_the_reconciler_records(rolling: bool) -> None:
    sample = ns.rolled_back(rolling=rolling)
    smoke = job_name(sample.metadata.name, sample.metadata.uid, "prod", JobKind.SMOKE_TEST)
    start = 2 * 3600.0 + 900
    steps = [(start, world(prod=CURRENT)), (start + 0.4, world(prod=HALF))]
    if not rolling:
        steps += [
            (start + 31.6, world(prod=BACK)),
            (start + 41.3, world(prod=BACK, jobs={smoke: job(smoke, complete=True)})),
        ]
    assert status(drive_rollback(sample, steps)) == status(sample)


def test_the_failed_rollback_is_what_the_reconciler_records() -> None:
    sample = ns.rolled_back(rollout_fails=True)
    start = 2 * 3600.0 + 300
    steps = [(start, world(prod=CURRENT)), (start + 0.4, world(prod=HALF)), (start + 120.4, world(prod=HALF))]
    assert status(drive_rollback(sample, steps)) == status(sample)


def test_the_refused_rollback_is_what_the_reconciler_records() -> None:
    sample = ns.refused()
    assert status(drive_rollback(sample, [(2 * 3600.0, world(prod=CURRENT))])) == status(sample)
