"""The sample objects of tests/support/notify_samples.py are what the operator records: the same
release, driven through the real reconciler (core/promotion.py) over the same instants and an
observed world in which its Jobs and rollout finish, ends with the same history and stage records.
(The samples' messages are made by the core from those objects: test_notify_render.py.)"""

from __future__ import annotations

from conveyor.api.release import Release
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.promotion import reconcile
from conveyor.core.world import World
from support import notify_samples as ns
from support.builders import deployment_view, job, world


def drive(sample: Release, steps: list[tuple[float, World]]) -> Release:
    """`sample`'s spec, as CI created it, through one reconcile pass per (seconds after AT, world)."""
    release = Release.model_validate({**sample.model_dump(by_alias=True, exclude_none=True), "status": {}})
    for seconds, observed in steps:
        plan = reconcile(ns.pipeline(), [release], [], observed, ns.at(seconds))
        release = release.model_copy(update={"status": plan.releases[release.metadata.name]})
    return release


def staging(sample: Release, smoke_failed: bool = False) -> tuple[World, World, World, World]:
    """The staging world at each pass: nothing yet; the migration done; the rollout done; the smoke
    test done (or failed)."""
    name, uid = sample.metadata.name, sample.metadata.uid
    migration = job_name(name, uid, "staging", JobKind.MIGRATION)
    smoke = job_name(name, uid, "staging", JobKind.SMOKE_TEST)
    migrated = {migration: job(migration, complete=True)}
    rolled = deployment_view(f"{ns.REPOSITORY}@{sample.spec.digest}", release_name=name)
    tested = job(smoke, complete=not smoke_failed, failed=smoke_failed, reason="BackoffLimitExceeded")
    return (
        world(),
        world(jobs=migrated),
        world(staging=rolled, jobs=migrated),
        world(staging=rolled, jobs={**migrated, smoke: tested}),
    )


def test_the_release_waiting_at_prods_gate_is_what_the_reconciler_records() -> None:
    sample = ns.released(waiting=True)
    at = [0.0, 12.4, 60.4, 69.6]  # the sample's staging run: migration 12.4 s, rollout 48, smoke 9.2
    driven = drive(sample, list(zip(at, staging(sample), strict=True)))
    assert driven.status.history == sample.status.history
    assert driven.status.stages[0] == sample.status.stages[0]
    assert (driven.status.phase, driven.status.message) == (sample.status.phase, sample.status.message)


def test_the_failed_release_is_what_the_reconciler_records() -> None:
    sample = ns.failed()
    start = (sample.metadata.creation_timestamp - ns.AT).total_seconds()
    at = [start, start + 11.8, start + 59.0, start + 80.5]  # migration 11.8 s, rollout 47.2, smoke 21.5
    driven = drive(sample, list(zip(at, staging(sample, smoke_failed=True), strict=True)))
    assert driven.status.history == sample.status.history
    assert driven.status.stages == sample.status.stages
    assert (driven.status.phase, driven.status.message) == (sample.status.phase, sample.status.message)
