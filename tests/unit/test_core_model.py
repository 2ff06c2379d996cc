"""A model of the core that finds the next bugs (issue #10).

A hypothesis `RuleBasedStateMachine` drives the pure core — through the shell's own reconcile pass
(handlers/reconcile.py, reading a watch-fed cache with its overlay of own writes) — in a simulated
cluster (tests/support/sim.py): releases created (names re-used after deletion, artifacts
re-released), approvals (valid, forged — refused by admission —, forged-looking, stale, expiring,
from the requester, floods of them), rollbacks (any target, several at once), Job outcomes, rollouts
that complete, stall and fail, images set by hand, Deployments deleted and applied again, deletions,
operator crashes between two status writes and restarts (a new cache, listed anew), an operator
clock skewed from the API server's, and watches that lag: each kind's changes reach the operator's
cache only when a `deliver` rule says so (in resourceVersion order, never later than
sim.MAX_LAG_SECONDS). After every step it checks (tests/support/invariants.py):

- core-never-raises: a pass never raises.
- released-digests: a Deployment only ever runs a digest some Release named; a gated stage (the
  last) only one verified in the stage before and that entered it on a valid gate; a rollback only
  one verified in that stage.
- gate: a release enters a stage that requires approval only on approvals that count at that moment:
  stamped, allowed approver, not the requester (four eyes), created at/after the release, bound to
  its uid and digest when they say so, not expired (counted from when Conveyor first saw them), by
  enough distinct people; and only after its verification in the stage before.
- one-at-a-time: at most one release in flight and at most one rollback acting per stage.
- no-fights: one owner sets a Deployment per pass, and no release or rollback sets a Deployment twice.
- migrations-once: each migration (and down-migration) Job is created at most once per owner and stage.
- job-names-unique: no two releases (or rollbacks) share a Job name, ever.
- final-rollbacks: a refused (finally) or finished rollback never acts, vetoes or changes afterwards;
  an acting rollback keeps the fromRelease it was first planned against.
- noop-rollbacks: a rollback whose plan is Nothing vetoes, pins, stops and sets nothing.
- schema-valid: every status written validates through its pydantic model and the generated CRD's
  openAPIV3Schema (types, enums, required, maxLength, maxItems, patterns, no pruned fields).
- stage-truth: what the pipeline status says runs in a stage is what the Deployments run.
- tracked: the Tracked condition, when the core writes one, matches the truth.
- retention: retention never deletes the release a stage runs (as the pass saw it, nor truly).
- jobs-once: no Job of any kind is created twice for the same owner, stage and kind. (A migration
  Job created by a pass that died before recording it, then deleted, used to be created again: now
  it is recorded before it is created — test_core_regressions.py.)
- events-once: no Event is posted twice for the same transition (same reason about the same object
  and release, by uid, in the same stage; pipeline states that come and go excepted).
- fresh-writes: no status (or owners) write is computed from data older than a write Conveyor made
  before that pass — the overlay's promise.
- right-object: a write by name lands on the object (uid) the pass decided it for (status writes
  carry the resourceVersion the pass read: the API server refuses them on any other version).
- fair-verdicts: a verdict that something is gone, late or changed (JobMissing, TimedOut,
  ImageChanged) given on cached reads is one a decision on the true state would give too.

Budget: a bounded run by default (part of `make test`); `make fuzz` (CONVEYOR_FUZZ=1) runs many
more examples. CONVEYOR_MODEL_INVARIANTS=a,b / CONVEYOR_MODEL_SKIP=a,b choose the invariants.
Every failure found is kept as a plain story in test_core_regressions.py.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from support.invariants import Invariants
from support.sim import USERS, WATCHED, Refused, SimCluster

settings.register_profile(
    "conveyor-model",
    max_examples=int(os.environ.get("CONVEYOR_MODEL_EXAMPLES", "60")),
    stateful_step_count=40,
    # `make test` explores the same examples every run: a red CI always means a change broke the
    # core, never an unlucky draw. `make fuzz` explores new ground each time.
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "conveyor-fuzz",
    max_examples=int(os.environ.get("CONVEYOR_MODEL_EXAMPLES", "1000")),
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
PROFILE = "conveyor-fuzz" if os.environ.get("CONVEYOR_FUZZ") == "1" else "conveyor-model"
# Shrinking a failure takes minutes: on by default under `make fuzz`, off in `make test` (the failing
# steps are printed unshrunk; re-run with CONVEYOR_MODEL_SHRINK=1 to get the shortest story).
SHRINK = os.environ.get("CONVEYOR_MODEL_SHRINK", "1" if PROFILE == "conveyor-fuzz" else "0") == "1"
PHASES = [p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)]

NAMES = ["r1", "r2", "r3", "r4-" + "x" * 60]  # the last: a 63-character name, the API's limit
ARTIFACTS = [f"a{i}" for i in range(5)]  # a re-used artifact is the same digest, released again
PEOPLE = ["alice", "bob", "mallory", "ci-bot"]
TICKS = [0, 0.25, 1, 5, 30, 130, 400]


class CoreModel(RuleBasedStateMachine):
    """The simulated cluster, mutated by users and controllers, reconciled by the pure core."""

    sim: SimCluster
    inv: Invariants

    @initialize(
        three=st.booleans(),
        migration=st.booleans(),
        smoke=st.booleans(),
        down=st.booleans(),
        on_failure=st.sampled_from(["hold", "rollback"]),
        min_approvals=st.sampled_from([1, 2]),
        expires=st.sampled_from([None, 300]),
        keep=st.sampled_from([2, 50]),
        skew=st.sampled_from([0.0, -90.5, 37.25]),
    )
    def configure(  # noqa: PLR0917 — hypothesis passes the drawn values by keyword
        self,
        three: bool,
        migration: bool,
        smoke: bool,
        down: bool,
        on_failure: str,
        min_approvals: int,
        expires: int | None,
        keep: int,
        skew: float,
    ) -> None:
        approval: dict[str, Any] = {
            "approvers": {"groups": ["conveyor:approvers"]},
            "minApprovals": min_approvals,
        }
        if expires is not None:
            approval["expiresAfterSeconds"] = expires
        stages: list[dict[str, Any]] = [{"name": "staging", "namespace": "shop-staging"}]
        if three:
            stages.insert(0, {"name": "dev", "namespace": "shop-dev"})
        stages.append(
            {
                "name": "prod",
                "namespace": "shop-prod",
                "requiresApproval": True,
                "approval": approval,
                "onFailure": on_failure,
            }
        )
        self.sim = SimCluster(
            stages=stages,
            migration=migration,
            smoke_test=smoke,
            down_migration=down,
            keep_releases=keep,
            skew_seconds=skew,
            watch_lag=True,
        )
        self.inv = Invariants(self.sim)
        self.counter = 0
        self.floods = 0

    def stage(self, i: int) -> dict[str, Any]:
        stages = self.sim.pipeline["spec"]["stages"]
        return stages[i % len(stages)]

    def next_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    # --- people -------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        artifact=st.sampled_from(ARTIFACTS),
        schema=st.sampled_from(["none", "backwardCompatible", "breaking"]),
        first_stage_only=st.booleans(),
        user=st.sampled_from(["ci-bot", "ci-bot", "alice"]),
    )
    def create_release(
        self, name: str, artifact: str, schema: str, first_stage_only: bool, user: str
    ) -> None:
        target = self.stage(0)["name"] if first_stage_only else None
        with contextlib.suppress(Refused):
            self.sim.create_release(
                name, user=user, artifact=artifact, schema_change=schema, target_stage=target
            )

    @rule(
        name=st.sampled_from(NAMES),
        stage=st.sampled_from([0, 1, 2, 2, 2]),  # 2: the last stage, the one gated
        user=st.sampled_from(PEOPLE),
        bound=st.booleans(),
        looks_forged=st.booleans(),
    )
    def approve(self, name: str, stage: int, user: str, bound: bool, looks_forged: bool) -> None:
        s = self.stage(-1 if stage == 2 else stage)["name"]
        approval = self.next_name(f"{name[:40]}-{s}")
        with contextlib.suppress(Refused):
            self.sim.create_approval(
                approval,
                name,
                s,
                user=user,
                bound=bound,
                # Forged-looking: says someone else approved, where only the stamp counts.
                reviewed_by="alice" if looks_forged else None,
                comment="approved by alice on behalf of the release manager" if looks_forged else None,
            )

    @rule(name=st.sampled_from(NAMES), user=st.sampled_from(PEOPLE), victim=st.sampled_from(PEOPLE))
    def forge_approval(self, name: str, user: str, victim: str) -> None:
        claim = {"username": victim, "groups": list(USERS[victim])}
        before = dict(self.sim.approvals)
        try:
            self.sim.create_approval(self.next_name("forged"), name, "prod", user=user, claim=claim)
        except Refused:
            assert user != victim, "a truthful stamp was refused"
            assert self.sim.approvals == before
        else:
            assert user == victim, "admission let a forged approver through"

    # Two floods per story are past the records' bound already; more only slow every later pass.
    @precondition(lambda self: self.floods < 2)
    @rule(name=st.sampled_from(NAMES))
    def flood_approvals(self, name: str) -> None:
        self.floods += 1
        for _ in range(55):
            self.sim.create_approval(self.next_name("flood"), name, "prod", user="mallory")

    @rule(
        stage=st.sampled_from([None, 0, 1, 2]),
        to=st.sampled_from([None, *NAMES]),
        user=st.sampled_from(["alice", "bob"]),
        verify=st.booleans(),
        count=st.sampled_from([1, 1, 2, 3]),
    )
    def rollback(self, stage: int | None, to: str | None, user: str, verify: bool, count: int) -> None:
        s = None if stage is None else self.stage(-1 if stage == 2 else stage)["name"]
        for _ in range(count):
            self.sim.create_rollback(self.next_name("rb"), user=user, stage=s, to_release=to, verify=verify)

    @rule(name=st.sampled_from(NAMES))
    def delete_release(self, name: str) -> None:
        self.sim.delete("releases", name)

    @precondition(lambda self: bool(self.sim.rollbacks))
    @rule(i=st.integers(0, 10))
    def delete_rollback(self, i: int) -> None:
        names = sorted(self.sim.rollbacks)
        self.sim.delete("rollbacks", names[i % len(names)])

    @precondition(lambda self: bool(self.sim.approvals))
    @rule(i=st.integers(0, 10))
    def delete_approval(self, i: int) -> None:
        names = sorted(self.sim.approvals)
        self.sim.delete("approvals", names[i % len(names)])

    @rule(stage=st.integers(0, 2), artifact=st.sampled_from([*ARTIFACTS, "hand-built"]))
    def set_image_by_hand(self, stage: int, artifact: str) -> None:
        from support.builders import REPO, digest_of

        self.sim.set_image_by_hand(self.stage(stage)["namespace"], f"{REPO}@{digest_of(artifact)}")

    @rule(stage=st.integers(0, 2))
    def delete_deployments(self, stage: int) -> None:
        self.sim.delete_deployments(self.stage(stage)["namespace"])

    @precondition(lambda self: bool(self.sim.removed))
    @rule(stage=st.integers(0, 2))
    def restore_deployments(self, stage: int) -> None:
        self.sim.restore_deployments(self.stage(stage)["namespace"])

    # --- controllers and time -----------------------------------------------------------------

    @precondition(lambda self: bool(self.sim.running_jobs()))
    @rule(
        i=st.integers(0, 10), outcome=st.sampled_from(["complete", "complete", "fail", "deadline", "delete"])
    )
    def job_outcome(self, i: int, outcome: str) -> None:
        jobs = self.sim.running_jobs()
        ns, name = jobs[i % len(jobs)]
        self.sim.finish_job(ns, name, outcome)

    @rule(stage=st.integers(0, 2), outcome=st.sampled_from(["complete", "complete", "stall", "fail"]))
    def rollout(self, stage: int, outcome: str) -> None:
        self.sim.rollout(self.stage(stage)["namespace"], outcome)

    @rule(seconds=st.sampled_from(TICKS))
    def tick(self, seconds: float) -> None:
        self.sim.tick(seconds)

    # --- the watches --------------------------------------------------------------------------

    @rule()
    def deliver_all(self) -> None:
        """Every watch catches up (the operator's cache is current)."""
        self.sim.deliver()

    @rule(kind=st.sampled_from(WATCHED), count=st.sampled_from([None, 1, 1, 2]))
    def deliver(self, kind: str, count: int | None) -> None:
        """One watch delivers its next `count` changes (None: all), in resourceVersion order."""
        self.sim.deliver(kind, count)

    # --- the operator -------------------------------------------------------------------------

    @rule()
    def reconcile(self) -> None:
        self.sim.reconcile()

    @rule(writes=st.integers(0, 3))
    def crash(self, writes: int) -> None:
        """Killed after the actions and `writes` status writes; restarted (all state is in the API)."""
        self.sim.reconcile(crash_after=writes)

    @rule(
        name=st.sampled_from(NAMES),
        artifact=st.sampled_from(ARTIFACTS),
        approver=st.sampled_from(["alice", "bob"]),
    )
    def release_to_production(self, name: str, artifact: str, approver: str) -> None:
        """CI releases, everything goes well, someone approves as `kubectl conveyor approve` does."""
        try:
            self.sim.create_release(name, artifact=artifact)
        except Refused:
            return
        self.sim.settle(passes=4)
        for who in ("alice", "bob") if approver == "bob" else ("alice",):
            self.sim.create_approval(self.next_name(f"{name[:40]}-prod"), name, "prod", user=who, bound=True)
        self.sim.settle(passes=4)

    @rule(held=st.sampled_from([None, None, *WATCHED]))
    def everything_goes_well(self, held: str | None) -> None:
        """A few passes in which every Job and rollout succeeds: reach the later stages — while one
        watch (`held`) may lag behind the others all along."""
        self.sim.settle(passes=4, held=held)

    @invariant()
    def invariants_hold(self) -> None:
        self.inv.check()


CoreModel.TestCase.settings = settings(settings.get_profile(PROFILE), phases=PHASES)
TestCoreModel = CoreModel.TestCase
