"""The invariants of issue #10, checked on a `SimCluster` after every step (see test_core_model.py),
and (at the end) the checks the crash drills make on a real cluster: Job creates counted in the API
server's audit log, ReplicaSet images, history entries and their Events, no stuck finalizer.

`Invariants(sim).check()` looks at the passes made since the last check and the cluster's state,
and raises `Violation` (naming the invariant) at the first one broken. Each invariant can be turned
off: CONVEYOR_MODEL_INVARIANTS=a,b (only those) or CONVEYOR_MODEL_SKIP=a,b.

The ground truth is the sim's, never the core's: true creation times, uids, digests, the approvals'
releaseUID/digest as created, which Jobs were created and which images were set.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.common import KubeModel
from conveyor.api.pipeline import PipelineStatus, Stage
from conveyor.api.release import TERMINAL_PHASES, Release, ReleaseStatus, StagePhase
from conveyor.api.rollback import RollbackStatus
from support.crdschema import status_errors
from support.sim import PassRecord, SimCluster, Write

ALL = (
    "core-never-raises",  # a pass never raises (one bad object must not wedge a pipeline)
    "released-digests",  # Deployments run digests of Releases; a gated stage only verified, approved ones
    "gate",  # a release enters a gated stage only on valid approvals (per policy, at entry, for that digest)
    "one-at-a-time",  # at most one release in flight and at most one rollback acting per stage
    "no-fights",  # one owner per Deployment per pass; nobody sets a Deployment twice
    "migrations-once",  # each migration (and down-migration) runs at most once per owner and stage
    "job-names-unique",  # no two releases/rollbacks share a Job name
    "final-rollbacks",  # a refused or finished rollback never changes anything; a plan keeps its fromRelease
    "noop-rollbacks",  # a rollback with nothing to do vetoes, pins and stops nothing
    "schema-valid",  # every status written is valid under the model and the CRD schema (sizes included)
    "stage-truth",  # what the pipeline says runs in a stage is what its Deployments run
    "tracked",  # the Tracked condition (when present) is True exactly when every touched image is a release's
    "retention",  # retention never deletes the release a stage runs (as seen, nor truly)
    "jobs-once",  # no Job (of any kind) is created twice for the same owner, stage and kind
    "events-once",  # no Event is posted twice for the same transition
    "fresh-writes",  # no write is computed from data older than Conveyor's own previous write to it
    "right-object",  # a write by name lands on the object the pass decided it for
    "fair-verdicts",  # "gone", "late" and "changed" verdicts hold on the true state when given
)
# Pipeline Events that announce a state that can come and go (each time it comes, one Event).
RECURRING = {"UntrackedImage", "ParityLost", "ParityRestored"}

ACTING = {"Pending", "MigratingDown", "RollingBack", "Verifying"}
FIXABLE_BLOCKS = {"NoDownMigration", "PipelineNotFound"}
MODELS: dict[str, type[KubeModel]] = {
    "releases": ReleaseStatus,
    "approvals": ApprovalStatus,
    "rollbacks": RollbackStatus,
    "pipelines": PipelineStatus,
}


class Violation(AssertionError):
    """An invariant broken."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(f"[{invariant}] {message}")
        self.invariant = invariant


def enabled_from_env() -> set[str]:
    only = [s for s in os.environ.get("CONVEYOR_MODEL_INVARIANTS", "").split(",") if s]
    skip = {s for s in os.environ.get("CONVEYOR_MODEL_SKIP", "").split(",") if s}
    unknown = (set(only) | skip) - set(ALL)
    if unknown:
        raise ValueError(f"unknown invariants {sorted(unknown)}; known: {', '.join(ALL)}")
    return (set(only) or set(ALL)) - skip


def _digest(image: str | None) -> str | None:
    return image.split("@", 1)[1] if image and "@" in image else None


def _cond(conditions: list[Any], ctype: str) -> Any:
    return next((c for c in conditions if c.type == ctype), None)


@dataclass
class Invariants:
    """Checks a SimCluster's passes and state; keeps what it derived between checks."""

    sim: SimCluster
    enabled: set[str] = field(default_factory=enabled_from_env)
    checked: int = 0  # passes already checked
    verified: dict[str, set[str]] = field(default_factory=dict)  # stage -> digests verified there
    approved: dict[str, set[str]] = field(
        default_factory=dict
    )  # stage -> digests that entered it on a valid gate
    seen: dict[str, datetime] = field(default_factory=dict)  # approval uid -> true time Conveyor first saw it
    final: dict[str, int] = field(default_factory=dict)  # rollback uid -> pass index it became final
    first_from: dict[str, str] = field(default_factory=dict)  # rollback uid -> first recorded fromRelease
    noop: set[str] = field(default_factory=set)  # rollback uids whose plan was Nothing
    sets: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    job_owner: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, job) -> owner uid
    posted: dict[tuple[Any, ...], int] = field(default_factory=dict)  # transition -> pass that posted it
    handler_writes: int = 0  # sim.handler_writes already checked

    def fail(self, invariant: str, message: str) -> None:
        if invariant in self.enabled:
            raise Violation(invariant, message)

    # --- entry point --------------------------------------------------------------------------

    def check(self) -> None:
        while self.checked < len(self.sim.passes):
            record = self.sim.passes[self.checked]
            self.checked += 1
            self.after_pass(record)
        self.handlers()

    def after_pass(self, r: PassRecord) -> None:
        if r.error is not None:
            self.fail("core-never-raises", f"pass {r.index} raised {type(r.error).__name__}: {r.error}")
            return
        assert r.plan is not None
        self.schema(r)
        self.track_verified(r)
        self.gate(r)
        self.images(r)
        self.one_at_a_time(r)
        self.jobs(r)
        self.rollbacks(r)
        self.stage_truth(r)
        self.retention(r)
        self.track_seen(r)
        self.events(r)
        self.cache_safety(r)

    # --- helpers ------------------------------------------------------------------------------

    def after(self, r: PassRecord) -> dict[str, Release]:
        """The releases as this pass decided them (the statuses it planned, written or not)."""
        assert r.plan is not None
        return {
            x.metadata.name: x.model_copy(update={"status": r.plan.releases.get(x.metadata.name, x.status)})
            for x in r.releases
        }

    def rb_after(self, r: PassRecord) -> dict[str, RollbackStatus]:
        assert r.plan is not None
        return {x.metadata.name: r.plan.rollbacks.get(x.metadata.name, x.status) for x in r.rollbacks}

    def stage_list(self, r: PassRecord) -> list[Stage]:
        return list(r.pipeline.spec.stages)

    # --- schema-valid -------------------------------------------------------------------------

    def schema(self, r: PassRecord) -> None:
        for w in r.writes:
            self.schema_of(w, f"pass {r.index}")

    def schema_of(self, w: Write, where: str) -> None:
        try:
            MODELS[w.plural].model_validate(w.status)
        except Exception as e:
            self.fail("schema-valid", f"{where}: {w.plural}/{w.name} status fails its model: {e}")
        problems = status_errors(w.plural, w.status)
        if problems:
            self.fail(
                "schema-valid",
                f"{where}: {w.plural}/{w.name} status breaks the CRD schema: " + "; ".join(problems[:5]),
            )

    def handlers(self) -> None:
        """What the operator's other handlers wrote (an orphan Approval's status)."""
        for w in self.sim.handler_writes[self.handler_writes :]:
            self.schema_of(w, "the approval handler")
        self.handler_writes = len(self.sim.handler_writes)
        for message in self.sim.handler_stale:
            self.fail("fresh-writes", f"the approval handler: {message}")

    # --- gate / released-digests --------------------------------------------------------------

    def track_verified(self, r: PassRecord) -> None:
        for rel in self.after(r).values():
            for rec in rel.status.stages:
                if rec.verified_at is not None:
                    self.verified.setdefault(rec.name, set()).add(rel.spec.digest)

    def track_seen(self, r: PassRecord) -> None:
        for a in r.approvals:
            uid = a.metadata.uid
            if uid in self.seen:
                continue
            wrote = [w for w in r.writes if w.plural == "approvals" and w.uid == uid]
            if any(w.applied for w in wrote) or (not wrote and not r.crashed):
                self.seen[uid] = r.true_time

    def approval_counts(self, a: Approval, release: Release, stage: Stage, r: PassRecord) -> tuple[bool, str]:
        """The design's rule for one approval, judged at the moment `release` enters `stage`."""
        facts = self.sim.facts.get(a.metadata.uid, {}).get("spec", {})
        who = a.spec.approver
        if a.spec.release != release.metadata.name or a.spec.stage != stage.name:
            return False, f"{a.metadata.name} names {a.spec.release}/{a.spec.stage}"
        if who is None:
            return False, f"{a.metadata.name} has no stamped approver"
        allowed = stage.approval.approvers
        listed = who.username in allowed.users or set(who.groups) & set(allowed.groups)
        if (allowed.users or allowed.groups) and not listed:
            return False, f"{a.metadata.name}: {who.username} is not an approver"
        requester = release.spec.requester
        if stage.approval.four_eyes and (requester is None or requester.username == who.username):
            return False, f"{a.metadata.name}: {who.username} requested {release.metadata.name} (four eyes)"
        created_a, created_r = a.metadata.creation_timestamp, release.metadata.creation_timestamp
        if created_a is None or created_r is None or created_a < created_r:
            return False, f"{a.metadata.name} was created ({created_a}) before this release ({created_r})"
        if facts.get("releaseUID") not in (None, release.metadata.uid):
            return False, f"{a.metadata.name} was made for another release uid ({facts.get('releaseUID')})"
        if facts.get("digest") not in (None, release.spec.digest):
            return (
                False,
                f"{a.metadata.name} approves digest {facts.get('digest')}, not {release.spec.digest}",
            )
        expires = stage.approval.expires_after_seconds
        if expires is not None:
            seen = self.seen.get(a.metadata.uid, r.true_time)
            age = r.true_time - seen
            if age >= timedelta(seconds=expires + 1):
                return False, (
                    f"{a.metadata.name} expired: first seen {age.total_seconds():.0f}s before the entry, "
                    f"expiresAfterSeconds {expires}"
                )
        return True, ""

    def gate(self, r: PassRecord) -> None:
        stages = self.stage_list(r)
        by_approval = {a.metadata.name: a for a in r.approvals}
        before = {x.metadata.name: x for x in r.releases}
        for name, rel in self.after(r).items():
            for i, stage in enumerate(stages):
                rec = next((x for x in rel.status.stages if x.name == stage.name), None)
                old = next((x for x in before[name].status.stages if x.name == stage.name), None)
                if rec is None or rec.started_at is None or (old is not None and old.started_at is not None):
                    continue
                # `rel` enters `stage` in this pass.
                if i > 0:
                    prev = next((x for x in rel.status.stages if x.name == stages[i - 1].name), None)
                    if prev is None or prev.phase != StagePhase.VERIFIED:
                        self.fail(
                            "gate",
                            f"pass {r.index}: {name} entered {stage.name} unverified in the stage before",
                        )
                if not stage.requires_approval:
                    self.approved.setdefault(stage.name, set()).add(rel.spec.digest)
                    continue
                names = rec.approvals or ([rec.approval] if rec.approval else [])
                valid: set[str] = set()
                for an in names:
                    a = by_approval.get(an)
                    if a is None:
                        self.fail(
                            "gate",
                            f"pass {r.index}: {name} entered {stage.name} on {an}, which no longer exists",
                        )
                        continue
                    ok, why = self.approval_counts(a, before[name], stage, r)
                    if not ok:
                        self.fail(
                            "gate",
                            f"pass {r.index}: {name} entered {stage.name} on an approval that "
                            f"does not count: {why}",
                        )
                    elif a.spec.approver is not None:
                        valid.add(a.spec.approver.username)
                if len(valid) < stage.approval.min_approvals:
                    self.fail(
                        "gate",
                        f"pass {r.index}: {name} entered {stage.name} with {len(valid)} valid approver(s) "
                        f"({sorted(valid)}), {stage.approval.min_approvals} needed",
                    )
                else:
                    self.approved.setdefault(stage.name, set()).add(rel.spec.digest)

    def images(self, r: PassRecord) -> None:
        stages = self.stage_list(r)
        by_ns = {s.namespace: (i, s) for i, s in enumerate(stages)}
        named = {x.spec.digest for x in r.releases}
        repo = r.pipeline.spec.image_repository
        owners_per_dep: dict[tuple[str, str], set[str]] = {}
        rollback_names = {x.metadata.name for x in r.rollbacks}
        for applied in r.applied:
            a = applied.action
            if type(a).__name__ != "SetImage" or applied.result != "ok":
                continue
            owners_per_dep.setdefault((a.namespace, a.deployment), set()).add(a.owner)
            key = (applied.owner_uid or a.owner, a.namespace, a.deployment)
            if self.sets[key]:
                self.fail(
                    "no-fights", f"pass {r.index}: {a.owner} set {a.namespace}/{a.deployment} a second time"
                )
            # It counts once Conveyor recorded it (a crash before the owner's status write forgets it).
            if any(w.applied and w.uid == applied.owner_uid for w in r.writes):
                self.sets[key] += 1
            for image in a.images.values():
                digest = _digest(image)
                if not image.startswith(repo + "@") or digest not in named:
                    self.fail(
                        "released-digests", f"pass {r.index}: {a.owner} set {image}, which no Release names"
                    )
                    continue
                i, stage = by_ns[a.namespace]
                if a.owner in rollback_names:
                    if digest not in self.verified.get(stage.name, set()):
                        self.fail(
                            "released-digests",
                            f"pass {r.index}: rollback {a.owner} set {stage.name} to {digest}, "
                            "never verified there",
                        )
                    continue
                if i > 0 and digest not in self.verified.get(stages[i - 1].name, set()):
                    self.fail(
                        "released-digests",
                        f"pass {r.index}: {a.owner} set {stage.name} to {digest}, "
                        f"not verified in {stages[i - 1].name}",
                    )
                if stage.requires_approval and digest not in self.approved.get(stage.name, set()):
                    self.fail(
                        "released-digests",
                        f"pass {r.index}: {a.owner} set {stage.name} to {digest}, "
                        "which never entered it approved",
                    )
        for (ns, dep), owners in owners_per_dep.items():
            if len(owners) > 1:
                self.fail("no-fights", f"pass {r.index}: {sorted(owners)} all set {ns}/{dep} in one pass")

    # --- one-at-a-time ------------------------------------------------------------------------

    def one_at_a_time(self, r: PassRecord) -> None:
        flying: dict[str, list[str]] = {}
        for name, rel in self.after(r).items():
            if rel.status.phase in TERMINAL_PHASES:
                continue
            for rec in rel.status.stages:
                if rec.started_at and rec.phase not in (StagePhase.VERIFIED, StagePhase.FAILED):
                    flying.setdefault(rec.name, []).append(name)
        acting: dict[str, list[str]] = {}
        for name, st in self.rb_after(r).items():
            if st.phase in ACTING and st.plan is not None and st.plan.stage:
                acting.setdefault(st.plan.stage, []).append(name)
        for stage, names in flying.items():
            if len(names) > 1:
                self.fail("one-at-a-time", f"pass {r.index}: releases {names} are all in flight in {stage}")
        for stage, names in acting.items():
            if len(names) > 1:
                self.fail("one-at-a-time", f"pass {r.index}: rollbacks {names} all act on {stage}")

    # --- jobs ---------------------------------------------------------------------------------

    def jobs(self, r: PassRecord) -> None:
        runs = Counter(
            (j.kind, j.owner_uid, j.stage) for j in self.sim.jobs_created if j.kind in ("migrate", "down")
        )
        for (kind, uid, stage), n in runs.items():
            if n > 1:
                self.fail(
                    "migrations-once",
                    f"pass {r.index}: the {kind} Job of {uid} in {stage} was created {n} times",
                )
        every = Counter((j.kind, j.owner_uid, j.stage) for j in self.sim.jobs_created)
        for (kind, uid, stage), n in every.items():
            if n > 1:
                passes = [
                    j.pass_index
                    for j in self.sim.jobs_created
                    if (j.kind, j.owner_uid, j.stage) == (kind, uid, stage)
                ]
                self.fail(
                    "jobs-once",
                    f"pass {r.index}: the {kind} Job of {uid} in {stage} was created {n} times "
                    f"(by passes {passes})",
                )
        for name, rel in self.after(r).items():
            reasons = {c.reason for c in rel.status.conditions}
            if "JobNameConflict" in reasons:
                self.fail(
                    "job-names-unique",
                    f"pass {r.index}: {name} failed on a Job name another owner took: {rel.status.message}",
                )
        for applied in r.applied:
            a = applied.action
            if type(a).__name__ != "CreateJob":
                continue
            meta = a.manifest["metadata"]
            key = (a.namespace, meta["name"])
            uid = (meta.get("annotations") or {}).get("conveyor.dev/release-uid", "")
            known = self.job_owner.setdefault(key, uid)
            if known != uid:
                self.fail(
                    "job-names-unique",
                    f"pass {r.index}: Job {key[0]}/{key[1]} of {a.owner} ({uid}) has the name of {known}'s",
                )

    # --- rollbacks ----------------------------------------------------------------------------

    def rollbacks(self, r: PassRecord) -> None:
        assert r.plan is not None
        before = {x.metadata.name: x for x in r.rollbacks}
        after = self.rb_after(r)
        for name, rb in before.items():
            uid = rb.metadata.uid
            st = after[name]
            # Final before this pass: nothing it owns may change.
            if uid in self.final and self.final[uid] < r.index:
                if name in r.plan.rollbacks and r.plan.rollbacks[name].wire() != rb.status.wire():
                    self.fail(
                        "final-rollbacks",
                        f"pass {r.index}: {name} changed after it was final ({rb.status.phase})",
                    )
                self.nothing_by(
                    r, name, uid, "final-rollbacks", f"{name}, final since pass {self.final[uid]},"
                )
            # Its plan is Nothing: decided in this pass, or recorded by an earlier one (a plan a
            # crash kept from being recorded binds no later pass).
            if uid in self.noop or (st.plan is not None and st.plan.action == "Nothing"):
                self.nothing_by(r, name, uid, "noop-rollbacks", f"{name}, whose plan is Nothing,")
            first = self.first_from.get(uid)
            acting = st.plan is not None and st.plan.from_release and st.phase in ACTING
            if acting and first is not None and st.plan is not None and first != st.plan.from_release:
                self.fail(
                    "final-rollbacks",
                    f"pass {r.index}: {name} acts away from {st.plan.from_release}, planned against {first}",
                )
        # Which rollbacks are final now, and what each was first planned against (as written: a
        # plan a crash kept from being recorded binds nothing).
        for w in r.writes:
            if w.plural != "rollbacks" or not w.applied or w.landed_on != w.uid:
                continue  # not written, or not to this rollback (gone: 404)
            st = RollbackStatus.model_validate(w.status)
            if st.plan is not None and st.plan.from_release:
                self.first_from.setdefault(w.uid, st.plan.from_release)
            if st.plan is not None and st.plan.action == "Nothing":
                self.noop.add(w.uid)
            blocked = _cond(st.conditions, "RollbackBlocked")
            final = st.phase in ("Succeeded", "Failed", "Refused") or (
                st.phase == "Blocked" and blocked is not None and blocked.reason not in FIXABLE_BLOCKS
            )
            if final:
                self.final.setdefault(w.uid, r.index)

    def nothing_by(self, r: PassRecord, name: str, uid: str, invariant: str, who: str) -> None:
        assert r.plan is not None
        for applied in r.applied:
            if applied.action.owner == name and applied.owner_uid == uid:
                self.fail(invariant, f"pass {r.index}: {who} still acts: {type(applied.action).__name__}")
        before = {x.metadata.name: x for x in r.releases}
        rollback = next((x for x in r.rollbacks if x.metadata.name == name), None)
        plan = rollback.status.plan if rollback else None
        vetoed_digest = plan.from_digest if plan is not None and plan.action != "Nothing" else None
        for rel_name, st in r.plan.releases.items():
            old = before[rel_name].status
            # A new release of the artifact it rolled away from ends Vetoed by design (a vetoed digest
            # is never promoted again, under any name): that is the veto standing, not a new act.
            reapplied = vetoed_digest is not None and before[rel_name].spec.digest == vetoed_digest
            if st.vetoed_by == name and old.vetoed_by != name and not reapplied:
                self.fail(invariant, f"pass {r.index}: {who} vetoes {rel_name}")
            stopped = f"by rollback {name}"
            if (
                st.phase in ("RolledBack", "Cancelled")
                and old.phase != st.phase
                and stopped in (st.message or "")
            ):
                self.fail(invariant, f"pass {r.index}: {who} stops {rel_name}")
        old_vetoes = {(v.digest, v.rollback) for v in r.pipeline.status.vetoed}
        for v in r.plan.pipeline.vetoed:
            # Its recorded plan's veto, written late (a crash lost the pipeline's status write when
            # it was decided): the veto standing, not a new act.
            standing = v.digest == vetoed_digest
            if v.rollback == name and (v.digest, v.rollback) not in old_vetoes and not standing:
                self.fail(invariant, f"pass {r.index}: {who} vetoes digest {v.digest}")
        if invariant == "noop-rollbacks":
            for s in r.plan.pipeline.stages:
                if s.pinned_by == name:
                    self.fail(invariant, f"pass {r.index}: {who} pins {s.name}")

    # --- what runs ----------------------------------------------------------------------------

    def stage_truth(self, r: PassRecord) -> None:
        assert r.plan is not None
        acting = {
            st.plan.stage for st in self.rb_after(r).values() if st.phase in ACTING and st.plan is not None
        }
        live = {x.spec.digest for x in r.releases}
        untracked: list[str] = []
        for s in self.stage_list(r):
            sw = r.world.stages.get(s.name)
            if sw is None:
                continue
            images = {
                _digest(view.images.get(t.container))
                for t in r.pipeline.spec.targets
                if (view := sw.deployments.get(t.deployment)) is not None
            }
            touched = any(v is not None and v.release_annotation is not None for v in sw.deployments.values())
            if touched and any(d not in live for d in images):
                untracked.append(s.name)
            state = next((x for x in r.plan.pipeline.stages if x.name == s.name), None)
            if state is None or len(images) != 1:
                continue
            (runs,) = images
            running = getattr(state, "running", None)
            if running is not None:
                if getattr(running, "digest", None) != runs:
                    self.fail(
                        "stage-truth",
                        f"pass {r.index}: the pipeline says {s.name} runs "
                        f"{getattr(running, 'digest', None)}; "
                        f"its Deployments run {runs}",
                    )
            elif (
                not hasattr(state, "running")
                and state.in_flight is None
                and s.name not in acting
                and state.digest is not None
                and state.digest != runs
            ):
                self.fail(
                    "stage-truth",
                    f"pass {r.index}: the pipeline says {s.name} runs {state.release} ({state.digest}); "
                    f"its Deployments run {runs}",
                )
        tracked = _cond(r.plan.pipeline.conditions, "Tracked")
        if tracked is not None and (tracked.status == "True") != (not untracked):
            self.fail(
                "tracked",
                f"pass {r.index}: Tracked={tracked.status} ({tracked.reason}) "
                f"but untracked images run in {untracked}",
            )

    def retention(self, r: PassRecord) -> None:
        runs: set[str | None] = set()
        for sw in r.world.stages.values():
            for v in sw.deployments.values():
                if v is not None:
                    runs |= {_digest(i) for i in v.images.values()}
        for applied in r.applied:
            a = applied.action
            if type(a).__name__ != "DeleteRelease":
                continue
            rel = r.release(a.release)
            deleted = {x.action.release for x in r.applied if type(x.action).__name__ == "DeleteRelease"}
            others = [
                x
                for x in r.releases
                if rel is not None and x.metadata.name not in deleted and x.spec.digest == rel.spec.digest
            ]
            if rel is not None and rel.spec.digest in runs and not others:
                self.fail(
                    "retention", f"pass {r.index}: retention deleted {a.release}, whose image runs in a stage"
                )
            if rel is not None and rel.spec.digest in r.true_digests and not others:
                self.fail(
                    "retention",
                    f"pass {r.index}: retention deleted {a.release}, whose image truly runs in a stage "
                    "(the pass's cached view of the Deployments said otherwise)",
                )

    # --- events -------------------------------------------------------------------------------

    def events(self, r: PassRecord) -> None:
        """One Event per transition: the same reason about the same object (by uid), in the same
        stage, about the same release (by uid), is posted once — unless it announces a state that
        can come back (RECURRING)."""
        for e in r.events:
            if e.kind == "Pipeline" and e.reason in RECURRING:
                continue
            key = (e.kind, e.uid, e.reason, e.stage, e.release_uid)
            first = self.posted.setdefault(key, r.index)
            if (
                first != r.index
                or sum(1 for x in r.events if (x.kind, x.uid, x.reason, x.stage, x.release_uid) == key) > 1
            ):
                self.fail(
                    "events-once",
                    f"pass {r.index}: {e.reason} about {e.kind} {e.name} (stage {e.stage}, release "
                    f"{e.release}) was already posted by pass {first}: {e.message}",
                )

    # --- reading a cache ----------------------------------------------------------------------

    def cache_safety(self, r: PassRecord) -> None:
        for message in r.stale_writes:
            self.fail("fresh-writes", f"pass {r.index}: {message}")
        for applied in r.applied:
            if applied.meant is not None and applied.landed_on not in (None, applied.meant):
                self.fail(
                    "right-object",
                    f"pass {r.index}: {type(applied.action).__name__} for {applied.action.owner} was decided "
                    f"for {applied.meant} but reached {applied.landed_on} (a new object of the same name)",
                )
        for w in r.writes:
            if w.applied and w.uid and w.landed_on not in (None, w.uid):
                self.fail(
                    "right-object",
                    f"pass {r.index}: the status of {w.plural}/{w.name} was computed for {w.uid} but "
                    f"written to {w.landed_on} (a new object of the same name)",
                )
        for message in r.unfair:
            self.fail("fair-verdicts", f"pass {r.index}: {message}")


# --- on a real cluster: what the crash drills check (tests/e2e/test_crash_drills.py) -----------


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if value is not None else None
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value).replace("Z", "+00:00"))
    return datetime.fromisoformat(text).astimezone(UTC)


def _server_refused(ev: dict[str, Any]) -> bool:
    """The API server answered 429 or 5xx: unavailable, not a verdict on the request."""
    code = int((ev.get("responseStatus") or {}).get("code") or 0)
    return code == 429 or code >= 500


def audit_log_events(log: Path, *needles: str) -> Iterator[dict[str, Any]]:
    """The API server's audit events, from its rotated backups and `log`, oldest first: each request
    once (by auditID), torn lines skipped; only lines holding every `needle` are parsed (fast)."""
    seen: set[str] = set()
    for path in [*sorted(log.parent.glob(f"{log.stem}-*{log.suffix}")), log]:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not all(n in line for n in needles):
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                if ev.get("stage") not in ("ResponseComplete", "Panic") or ev.get("auditID") in seen:
                    continue
                seen.add(ev.get("auditID", ""))
                yield ev


def audit_job_creates(log: Path, namespaces: Iterable[str]) -> Counter[tuple[str, str]]:
    """Create requests on Jobs made by Conveyor (user agent conveyor/...) in `namespaces`, per
    (namespace, Job), from the API server's audit log and its rotated backups: answered 201 or 409
    alike — deterministic names hide a second attempt behind a 409. A request the server answered
    429 or 5xx does not count: it created nothing the operator could know of, and retrying it is
    right (if it did land, as a 504 may, the retry's 409 is the one counted)."""
    wanted = set(namespaces)
    out: Counter[tuple[str, str]] = Counter()
    for ev in audit_log_events(log, '"jobs"', '"create"'):
        ref = ev.get("objectRef") or {}
        if (
            ev.get("verb") != "create"
            or ref.get("resource") != "jobs"
            or ref.get("subresource")
            or ref.get("namespace") not in wanted
            or not str(ev.get("userAgent", "")).startswith("conveyor/")
            or _server_refused(ev)
        ):
            continue
        out[ref["namespace"], ref.get("name", "")] += 1
    return out


def audit_writes_by(log: Path, username: str, namespaces: Iterable[str]) -> Counter[tuple[str, str, str]]:
    """Writes `username` made in `namespaces` that the API server carried out (2xx), per (verb,
    resource, namespace/name), from the audit log and its rotated backups."""
    wanted = set(namespaces)
    out: Counter[tuple[str, str, str]] = Counter()
    for ev in audit_log_events(log, f'"{username}"'):
        ref = ev.get("objectRef") or {}
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        if (ev.get("user") or {}).get("username") != username or ref.get("namespace") not in wanted:
            continue
        if 200 <= code < 300 and not ref.get("subresource"):
            out[ev.get("verb", ""), ref.get("resource", ""), f"{ref['namespace']}/{ref.get('name', '')}"] += 1
    return out


def foreign_images(apps: Any, namespaces: Iterable[str], released: set[str]) -> list[str]:
    """Images in the namespaces' ReplicaSet history (every template ever rolled out) that no
    Release named and that are not in `released` (which holds the initial images too)."""
    out = []
    for ns in namespaces:
        for rs in apps.list_namespaced_replica_set(ns).items:
            for c in rs.spec.template.spec.containers:
                if c.image not in released:
                    out.append(f"ReplicaSet {ns}/{rs.metadata.name} ran {c.image}")
    return out


def unrecorded_transitions(core: Any, custom: Any, namespace: str) -> list[str]:
    """Every history entry of every Release and Rollback in `namespace` has exactly one Event from
    Conveyor (same object uid, reason and time), and every such Event has its history entry."""
    events: Counter[tuple[str, str, datetime | None]] = Counter()
    for e in core.list_namespaced_event(namespace).items:
        if (e.reporting_component or (e.source.component if e.source else None)) != "conveyor":
            continue
        if e.involved_object.kind in ("Release", "Rollback"):
            events[e.involved_object.uid, e.reason, _time(e.event_time)] += 1
    problems: list[str] = []
    recorded: set[tuple[str, str, datetime | None]] = set()
    for plural in ("releases", "rollbacks"):
        listing = custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", namespace, plural)
        for obj in listing["items"]:
            uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
            for h in (obj.get("status") or {}).get("history") or []:
                key = (uid, h["reason"], _time(h["time"]))
                recorded.add(key)
                if events[key] != 1:
                    problems.append(f"{plural}/{name}: {h['reason']} at {h['time']} has {events[key]} Events")
    for key in events:
        if key not in recorded:
            problems.append(f"an Event {key[1]} at {key[2]} about uid {key[0]} has no history entry")
    return problems


def recorded_transitions_settle(core: Any, custom: Any, namespace: str, timeout: float = 30) -> list[str]:
    """`unrecorded_transitions` once its answer can no longer change for the better: Conveyor writes
    a history entry first and posts its Event right after, so an entry seen a moment ago may not have
    its Event yet. Missing Events are waited for (watching Events, never sleeping) until `timeout`;
    a duplicate Event or an Event without its entry is a verdict at once."""
    import time

    from kubernetes import watch

    deadline = time.monotonic() + timeout
    while True:
        # The resourceVersion first: an Event posted while we look is then seen by the watch below.
        rv = core.list_namespaced_event(namespace).metadata.resource_version
        problems = unrecorded_transitions(core, custom, namespace)
        missing_only = problems and all(p.endswith(" has 0 Events") for p in problems)
        left = deadline - time.monotonic()
        if not missing_only or left <= 0:
            return problems
        # The next Event in the namespace (or the deadline), then look again.
        for _ in watch.Watch().stream(
            core.list_namespaced_event, namespace, resource_version=rv, timeout_seconds=max(1, int(left))
        ):
            break


def delete_all_and_wait_gone(custom: Any, namespace: str, timeout: float = 60) -> None:
    """Delete every Conveyor object in `namespace` and wait until each is gone: none is held by a
    finalizer the operator failed to remove."""
    from support.wait import wait_for_list

    for plural in ("approvals", "rollbacks", "releases", "pipelines"):
        listing = custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", namespace, plural)
        for obj in listing["items"]:
            custom.delete_namespaced_custom_object(
                "conveyor.dev", "v1alpha1", namespace, plural, obj["metadata"]["name"]
            )
    for plural in ("approvals", "rollbacks", "releases", "pipelines"):
        lister = functools.partial(
            custom.list_namespaced_custom_object, "conveyor.dev", "v1alpha1", namespace, plural
        )
        wait_for_list(
            lister,
            lambda items: not items,
            what=f"every {plural[:-1]} in {namespace} gone after deletion (a stuck finalizer holds it)",
            timeout=timeout,
        )


__all__ = [
    "ALL",
    "Invariants",
    "Violation",
    "audit_job_creates",
    "delete_all_and_wait_gone",
    "enabled_from_env",
    "foreign_images",
    "unrecorded_transitions",
]


def check_creates_once(
    story: Any, audit: Path | None, expected: set[str] | None = None
) -> Counter[tuple[str, str]]:
    """Every Job Conveyor created in the story's stage namespaces: created (requested) once, and
    (when given) exactly the `expected` names. Returns the counts."""
    if audit is None:
        return Counter()
    creates = audit_job_creates(audit, story.stage_ns.values())
    twice = {k: n for k, n in creates.items() if n > 1}
    assert not twice, f"Jobs created more than once (audit log): {twice}"
    if expected is not None:
        assert {name for _, name in creates} == expected, creates
    return creates
