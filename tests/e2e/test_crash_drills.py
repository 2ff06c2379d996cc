"""Crash drills on the real control plane (issue #12): the operator SIGKILLs itself right after a
chosen write (CONVEYOR_FAULT_POINT, operator/conveyor/kube/faults.py), is restarted without the
switch, and the release or rollback must end where it should — nothing lost, nothing repeated:

- each migration Job is CREATED at most once per release and stage, counted in the API server's
  audit log (create requests by Conveyor's user agent, 409s included: a deterministic name would hide
  a second attempt);
- the Deployments' ReplicaSet history holds only images some Release named;
- every transition has its history entry and exactly one Event.

The random-kill drill (test_random_kills) runs a bounded version here and the long one under
`make soak` (CONVEYOR_SOAK=1).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.builders import REPO, release_dict
from support.invariants import (
    check_creates_once,
    delete_all_and_wait_gone,
    foreign_images,
    recorded_transitions_settle,
)
from support.soak import soaking
from support.story import OLD_IMAGE, Story, image_of, stage_record, status
from support.wait import wait_for_object

pytestmark = pytest.mark.cluster

MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}
DOWN = {"command": ["/app/migrate", "down"]}


def check_records(story: Story, released: set[str]) -> None:
    """ReplicaSet images only released ones; every transition with its history entry and one Event."""
    assert foreign_images(story.apps, story.stage_ns.values(), released | {OLD_IMAGE}) == []
    problems = recorded_transitions_settle(story.core, story.custom, story.ns)
    assert problems == [], "\n".join(problems)


def released_images(story: Story) -> set[str]:
    """The image (repository@digest) of every Release in the story."""
    items = story.custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, "releases")
    return {f"{REPO}@{r['spec']['digest']}" for r in items["items"]}


def armed_after_pipeline_settled(story: Story, fault: str) -> None:
    """An operator runs until the pipeline's own status is written, then is replaced by one armed
    with `fault`: its first status write is then a release's, not the pipeline's first one."""
    story.given_operator()
    story.then_condition("pipelines", "shop", "Reconciled")
    assert story.operator is not None
    story.operator.stop()
    story.given_operator(fault=fault)


def release_with_breaking_schema(story: Story, name: str, **kwargs: Any) -> None:
    """CI creates a release that declares a breaking schema change (a rollback from it runs the
    pipeline's down-migration first)."""
    body = release_dict(name, namespace=story.ns, **kwargs)
    body["spec"]["schemaChange"] = "breaking"
    story.create("releases", body, as_user="ci-bot")


def two_stages(story: Story, **kwargs: Any) -> None:
    """Deployments in staging and prod, and a pipeline over them (prod behind an approval)."""
    story.given_deployments()
    story.given_pipeline(**kwargs)


# --- one story per fault point ------------------------------------------------------------------


def test_killed_after_a_job_create_the_migration_is_adopted_not_created_again(
    story: Story, audit: Path | None
):
    # Given a pipeline with migrations and smoke tests, and an operator that dies right after its
    # first Job create (the release's status already names the Job; the pipeline's, and Events, not)
    two_stages(story, migration=MIGRATION, smoke_test=SMOKE)
    story.given_operator(fault="after-job-create")
    story.when_release("shop-j", label="j")
    story.then_operator_dies_at("after-job-create")
    # When it is restarted without the switch and the release is approved
    story.given_operator()
    story.then_release_phase("shop-j", "AwaitingApproval")
    story.when_approved("shop-j", "prod")
    rel = story.then_release_phase("shop-j", "Succeeded")
    # Then every Job was created once: the staging migration was adopted, never requested again
    check_creates_once(
        story,
        audit,
        {story.job("shop-j", s, k) for s in ("staging", "prod") for k in ("migrate", "smoke")},
    )
    assert [h["reason"] for h in status(rel)["history"]].count("MigrationStarted") == 2
    check_records(story, {image_of("j")})


def test_killed_after_a_job_create_and_the_job_deleted_by_hand_the_migration_never_runs_again(
    story: Story, audit: Path | None
):
    # Given an operator that died right after creating the staging migration Job
    story.given_deployments()
    story.given_pipeline(
        migration=MIGRATION, stages=[{"name": "staging", "namespace": story.stage_ns["staging"]}]
    )
    story.given_operator(fault="after-job-create")
    story.when_release("shop-x", label="x")
    story.then_operator_dies_at("after-job-create")
    # When someone deletes the Job, after it started its Pod, before the operator is back
    job = story.job("shop-x", "staging", "migrate")
    story.then_job_event(job, "SuccessfulCreate")
    story.batch.delete_namespaced_job(job, story.stage_ns["staging"], propagation_policy="Background")
    story.given_operator()
    # Then the migration is not run a second time: the release fails, saying why
    rel = story.then_condition("releases", "shop-x", "Failed", reason="MigrationJobMissing")
    assert "never runs it twice" in status(rel)["message"]
    check_creates_once(story, audit, {job})  # once: requested by the crashed process only
    check_records(story, set())


def test_killed_after_a_deployment_patch_the_rollout_is_recorded_once(story: Story, audit: Path | None):
    # Given an operator that dies right after its first image patch, before the status saying so
    two_stages(story, migration=MIGRATION, smoke_test=SMOKE)
    story.given_operator(fault="after-deployment-patch")
    story.when_release("shop-d", label="d")
    story.then_operator_dies_at("after-deployment-patch")
    assert story.deployment_image("staging") == image_of("d")
    assert "deployedAt" not in stage_record(story.get("releases", "shop-d"), "staging")
    # When it is restarted
    story.given_operator()
    story.then_release_phase("shop-d", "AwaitingApproval")
    story.when_approved("shop-d", "prod")
    rel = story.then_release_phase("shop-d", "Succeeded")
    # Then the rollout was recorded once per stage and nothing ran twice
    history = [h["reason"] for h in status(rel)["history"]]
    assert history.count("RolloutStarted") == 2
    assert history.count("RolloutSucceeded") == 2
    check_creates_once(story, audit)
    check_records(story, {image_of("d")})


def test_killed_after_a_status_write_its_events_are_posted_after_the_restart(
    story: Story, audit: Path | None
):
    # Given an operator that dies right after its first status write — the release's, recording
    # its acceptance and the rollout it just started — before any Event or audit line for it
    story.given_deployments()
    story.given_pipeline(
        smoke_test=SMOKE,
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    armed_after_pipeline_settled(story, "after-status-write")
    story.when_release("shop-s", label="s")
    story.then_operator_dies_at("after-status-write")
    recorded = [h["reason"] for h in status(story.get("releases", "shop-s"))["history"]]
    assert "ReleaseAccepted" in recorded
    assert story.events("shop-s") == []  # the Events were lost with the process
    # When it is restarted
    story.given_operator()
    story.then_release_phase("shop-s", "Succeeded")
    # Then the lost transitions were announced (Event and audit line) once, with their own time
    story.then_event("shop-s", "ReleaseSucceeded")
    recovered = [a for a in story.audit_lines() if a.get("recovered") and a.get("name") == "shop-s"]
    assert sorted(a["event"] for a in recovered) == sorted(recorded)
    check_creates_once(story, audit)
    check_records(story, {image_of("s")})


def test_killed_between_recording_a_migration_and_creating_it_the_migration_runs_once(
    story: Story, audit: Path | None
):
    # Given an operator that dies right after the status write naming the staging migration Job,
    # before creating it (the Job is recorded before it is created)
    story.given_deployments()
    story.given_pipeline(
        migration=MIGRATION, stages=[{"name": "staging", "namespace": story.stage_ns["staging"]}]
    )
    armed_after_pipeline_settled(story, "after-status-write")
    story.when_release("shop-m", label="m")
    story.then_operator_dies_at("after-status-write")
    job = story.job("shop-m", "staging", "migrate")
    assert stage_record(story.get("releases", "shop-m"), "staging")["migrationJob"] == job
    assert story.jobs("staging") == []
    # When it is restarted
    story.given_operator()
    # Then the Job, which never had a Pod, is created — once — and the release goes on
    rel = story.then_release_phase("shop-m", "Succeeded")
    assert [h["reason"] for h in status(rel)["history"]].count("MigrationStarted") == 1
    check_creates_once(story, audit, {job})
    check_records(story, {image_of("m")})


def test_killed_between_a_rollback_plan_and_its_patch_the_rollback_finishes_once(
    story: Story, audit: Path | None
):
    # Given two releases promoted through both stages (no gate), with a down-migration
    story.given_deployments()
    story.given_pipeline(
        migration=MIGRATION,
        down_migration=DOWN,
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    story.given_operator()
    story.when_release("shop-1", label="one")
    story.then_release_phase("shop-1", "Succeeded")
    release_with_breaking_schema(story, "shop-2", label="two")
    story.then_release_phase("shop-2", "Succeeded")
    # And an operator that dies right after a rollback's plan is written, before it acts
    assert story.operator is not None
    story.operator.stop()
    story.given_operator(fault="after-rollback-plan")
    story.when_rollback("rb", stage="prod", reason="drill")
    story.then_operator_dies_at("after-rollback-plan")
    assert status(story.get("rollbacks", "rb")).get("plan")
    assert story.deployment_image("prod") == image_of("two")
    # When it is restarted
    story.given_operator()
    rb = story.then_rollback_phase("rb", "Succeeded")
    # Then prod runs the earlier release, its down-migration ran once, the newer one is vetoed
    assert story.deployment_image("prod") == image_of("one")
    assert status(rb)["plan"]["toRelease"] == "shop-1"
    assert status(rb)["plan"]["action"] == "DownMigrationThenImage"
    down = story.job("rb", "prod", "down", plural="rollbacks")
    creates = check_creates_once(story, audit)
    if audit is not None:
        assert creates[story.stage_ns["prod"], down] == 1
    assert status(story.get("releases", "shop-2"))["vetoed"] is True
    check_records(story, {image_of("one"), image_of("two")})


# --- random kills -------------------------------------------------------------------------------

SOAK = soaking()
RELEASES = int(os.environ.get("CONVEYOR_SOAK_RELEASES", "20"))
KILLS = int(os.environ.get("CONVEYOR_SOAK_KILLS", "20" if SOAK else "8"))


SHAPES: dict[str, dict[str, Any]] = {
    "p0": {"migration": MIGRATION, "smoke_test": SMOKE},
    "p1": {"smoke_test": SMOKE},
    "p2": {"migration": MIGRATION},
    "p3": {"migration": MIGRATION, "smoke_test": SMOKE},  # and prod behind an approval
    "p4": {"migration": MIGRATION, "down_migration": DOWN},  # and rolled back in prod
}


class Killer(threading.Thread):
    """SIGKILLs the story's operator at seeded random moments and starts a new one, `kills` times."""

    def __init__(self, story: Story, rng: random.Random, kills: int, gap: tuple[float, float]) -> None:
        super().__init__(daemon=True)
        self.story, self.rng, self.kills, self.gap = story, rng, kills, gap
        self.done = 0
        self.progress = threading.Condition()  # notified after each kill and restart
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.rollback_created = threading.Event()  # the last RESERVED kills wait for it

    RESERVED = 2

    def run(self) -> None:
        try:
            while self.done < self.kills and not self.stopped.is_set():
                if self.done == self.kills - self.RESERVED:
                    while not self.rollback_created.wait(1.0):  # a wait on the test's news
                        if self.stopped.is_set():
                            return
                # The kill moment itself is what is random (not a wait for anything): a seeded
                # delay after the operator came up.
                if self.stopped.wait(self.rng.uniform(*self.gap)):
                    return
                self.story.restart_operator()
                with self.progress:
                    self.done += 1
                    self.progress.notify_all()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            with self.progress:
                self.stopped.set()
                self.progress.notify_all()

    def wait_kills(self, count: int, timeout: float = 120) -> None:
        """Wait until `count` kills (and restarts) are done, or the killer stopped."""
        with self.progress:
            if not self.progress.wait_for(lambda: self.done >= count or self.stopped.is_set(), timeout):
                raise AssertionError(f"only {self.done} of {count} kills after {timeout:.0f}s")


TERMINAL = ("Succeeded", "Superseded", "Failed")


def test_random_kills_lose_and_repeat_nothing(story: Story, audit: Path | None):
    seed = int(os.environ.get("CONVEYOR_SOAK_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"random kills: seed {seed} (CONVEYOR_SOAK_SEED={seed} repeats the kill moments)")
    rng = random.Random(seed)  # noqa: S311 — kill moments, not secrets
    # Given five pipelines sharing the stage namespaces: migrations and smoke tests, smoke tests only,
    # migrations only, one behind an approval gate, and one that is rolled back
    names = [f"p{i}" for i in range(5)]
    for n in names:
        for ns in story.stage_ns.values():
            story.create_deployment(ns, n)
    for n in names:
        for ns in story.stage_ns.values():
            story.wait_deployment_available(ns, n)
    for n in names:
        story.given_pipeline(
            n,
            targets=[{"deployment": n, "container": "web"}],
            stages=[
                {"name": "staging", "namespace": story.stage_ns["staging"]},
                {"name": "prod", "namespace": story.stage_ns["prod"], "requiresApproval": n == "p3"},
            ],
            **SHAPES[n],
        )
    story.given_operator()
    per = max(2, RELEASES // len(names))
    releases: dict[str, list[str]] = {n: [f"{n}-r{i}" for i in range(per)] for n in names}
    # p4's first release is in prod before the kills begin: the rollback's target
    story.when_release("p4-r0", pipeline="p4", label="p4-0")
    story.then_release_phase("p4-r0", "Succeeded", timeout=60)
    killer = Killer(story, rng, KILLS, (1.0, 4.0) if not SOAK else (1.0, 6.0))
    started = time.monotonic()
    killer.start()
    try:
        rb = drive(story, releases, killer)
    finally:
        killer.stopped.set()
    assert killer.error is None, f"restarting the operator failed: {killer.error!r}"
    took = time.monotonic() - started
    count = per * len(names)
    print(f"random kills: {killer.done} kills, {count} releases over {len(names)} pipelines, {took:.0f}s")
    assert killer.done == KILLS
    creates = check_creates_once(story, audit)
    if audit is not None:
        print(f"random kills: {sum(creates.values())} Job create requests counted in the audit log")

    # Then every release ended rightly: Succeeded, or Superseded by a newer one
    succeeded: dict[str, list[str]] = {}
    for n in names:
        for name in releases[n]:
            rel = story.get("releases", name)
            st = status(rel)
            assert st.get("phase") in ("Succeeded", "Superseded"), (
                f"{name}: {st.get('phase')}: {st.get('message')}"
            )
            if st["phase"] == "Succeeded":
                succeeded.setdefault(n, []).append(name)
        if n != "p4":
            newest = succeeded[n][-1]
            assert story.deployment_image("prod", n) == image_of(f"{n}-{releases[n].index(newest)}")
    # And p4's rollback went from its newest release back to its first, its down-migration once
    rb_st = status(rb)
    assert rb_st["plan"]["fromRelease"] == succeeded["p4"][-1]
    assert rb_st["phase"] == "Succeeded", rb_st.get("message")
    assert story.deployment_image("prod", "p4") == image_of("p4-0")
    # Each migration Job created exactly once per release and stage that recorded it
    if audit is not None:
        for n in names:
            for name in releases[n] if "migration" in SHAPES[n] else []:
                rel = story.get("releases", name)
                for stage in ("staging", "prod"):
                    if stage_record(rel, stage).get("migrationJob"):
                        job = story.job(name, stage, "migrate")
                        assert creates[story.stage_ns[stage], job] == 1, (name, stage)
    check_records(story, released_images(story))
    # And nothing is held by a finalizer: every object goes when deleted
    delete_all_and_wait_gone(story.custom, story.ns)


def drive(story: Story, releases: dict[str, list[str]], killer: Killer) -> dict[str, Any]:
    """Releases in waves spread over the kills (p3's approved as they are created; p4's first is
    already in prod), each awaited to its end; then p4 rolled back in prod to its first release
    while the last kills go on. Returns the rollback, ended."""
    names = list(releases)
    per = len(releases[names[0]])
    for i in range(per):
        # Wave i begins once i/per of the free kills are done.
        killer.wait_kills(i * (killer.kills - killer.RESERVED) // per)
        for n in names:
            name = releases[n][i]
            if n == "p4" and i == 0:
                continue  # created before the kills
            if n == "p4" and i == per - 1:  # the release rolled back: its down-migration runs first
                release_with_breaking_schema(story, name, pipeline=n, label=f"{n}-{i}")
            else:
                story.when_release(name, pipeline=n, label=f"{n}-{i}")
            if n == "p3":
                story.when_approved(name, "prod")
    for n in names:
        for name in releases[n]:
            story.then_release(
                name,
                lambda o: o is not None and status(o).get("phase") in TERMINAL,
                "an end (Succeeded, Superseded or Failed)",
                timeout=240,
            )
    story.when_rollback("p4-back", pipeline="p4", stage="prod", toRelease="p4-r0", reason="random kills")
    killer.rollback_created.set()
    rb: dict[str, Any] = wait_for_object(
        story.lister("rollbacks"),
        "p4-back",
        lambda o: o is not None and status(o).get("phase") in ("Succeeded", "Failed", "Refused"),
        what="rollback p4-back ended",
        timeout=240,
    )
    killer.join(timeout=300)
    return rb
