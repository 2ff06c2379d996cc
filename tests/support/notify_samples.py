"""One sample Notification per trigger, as Conveyor sends it for the quickstart's shop pipeline: the
inputs of the golden renderings (tests/unit/test_notify_render.py), of the payloads in
docs/notifications.md and of the Slack screenshots (hack/notification-shots).

    from support.notify_samples import SAMPLES, hostile
    SAMPLES["approvalNeeded"]   # a Notification

True by construction: no sample is written by hand. This module builds the API objects as the
operator leaves them — a Pipeline, Releases and Rollbacks with their status: stage records, plans
and history entries with the reasons, messages and actors core/release_step.py and core/rollback.py
record (the Job names, short commits, parity differences and the InParity condition come from the
core's own functions) — and each sample is what the notifier makes of them (handlers/notify.py
`_send_one`), at the first moment it could (objects(), SHOWN_BY): the object's occurrences
(core.release_occurrences / rollback_occurrences / pipeline_occurrences), then core.notification
with the release only for a release's occurrence, the rollback only for a rollback's, always the
pipeline, and the channel's dashboardUrl.

Two tests keep it so: tests/unit/test_notify_render.py (test_samples_are_what_the_core_produces)
makes every sample again from the objects; tests/unit/test_notify_samples.py drives each release's
and rollback's spec through the real reconciler over the same instants and checks that it ends
with the very status built here. A change in what the core records or says shows up in the
goldens, the docs and the screenshots (regenerate them), never as a silent drift.

Everything is fixed (uids, times), so the output is deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from conveyor.api.notification import Notification, Trigger
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core import notifications as core
from conveyor.core.jobs import JobKind, job_name, short_commit
from conveyor.core.notify_render import cloudevent, slack, teams
from conveyor.core.parity import StageObjects, compare
from conveyor.core.pipeline_status import set_parity
from conveyor.core.plan import CONVEYOR
from support.builders import pipeline_dict, release_dict

NAMESPACE = "default"
PIPELINE = "shop"
DASHBOARD = "https://conveyor.example.com"
REPOSITORY = "ghcr.io/acme/shop"
SOURCE = "https://github.com/acme/shop"
PIPELINE_UID = "c27a95e4-6b18-4d03-a9f5-71e3b0d8c246"
RELEASE_UID = "5b0c7a3e-1d2f-4e8a-9c61-2f7d0e4b9a10"  # shop-3f9c2a1: the release that reached prod
OLD_RELEASE_UID = "0f8e2d61-7c4b-4a95-8e13-6b2a9d5c3e70"  # shop-a1b2c3d: the one before it
UNVERIFIED_RELEASE_UID = "a6d2e8f0-4b71-4c3e-9f85-0e7b1d6c2a49"  # shop-9e1b0c2: never reached prod
FAILED_RELEASE_UID = "e4a7c1d9-5b3f-4c28-96e0-8d1f2a7b3c54"  # shop-7e4d9b2: fails its smoke test
ROLLBACK_UID = "9d41f0b2-3a6c-4e57-b812-c4e0a7f95d23"  # back to shop-a1b2c3d: started, completed
FAILED_ROLLBACK_UID = "3b8e6f14-0c9a-4d72-a5e1-f6d2c8b04a97"  # the same, whose rollout fails
REFUSED_ROLLBACK_UID = "71c5d3a8-e92b-4f06-8b4d-2a9e7c1f5b36"  # to a release never verified in prod
COMMIT = "3f9c2a1e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"
OLD_COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
FAILED_COMMIT = "7e4d9b2c1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d"
UNVERIFIED_COMMIT = "9e1b0c2d3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c"
DIGEST = "sha256:7d2f1c0b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4"
OLD_DIGEST = "sha256:19e8f7a6b5c4d3e2f10a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e"
UNVERIFIED_DIGEST = "sha256:5a4f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a291807"
FAILED_DIGEST = "sha256:c0ffee0b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4"
# The morning of the quickstart: shop-3f9c2a1 is accepted at AT and reaches prod after approval.
AT = datetime(2026, 11, 27, 10, 3, 24, 364318, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """AT plus some seconds."""
    return AT + timedelta(seconds=seconds)


def notification_id(uid: str, trigger: str, occurrence: str) -> str:
    """The idempotency key as docs/notifications.md states it: "cnv1_" + the first 26 characters of
    the lowercase base32 of sha256("v1|<uid>|<trigger>|<occurrence>")."""
    digest = hashlib.sha256(f"v1|{uid}|{trigger}|{occurrence}".encode()).digest()
    return "cnv1_" + base64.b32encode(digest).decode().lower()[:26]


# --- the objects


def _meta(obj: dict[str, Any], uid: str, created: datetime) -> dict[str, Any]:
    obj["metadata"].update(uid=uid, generation=1, creationTimestamp=created.isoformat())
    return obj


def _pod_spec(*, feature_flag: bool = False, sidecar: bool = False) -> dict[str, Any]:
    """The shop Deployment's pod template in a stage (prod has drifted: see parity_lost)."""
    env: list[dict[str, Any]] = [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}}}
    ]
    if feature_flag:
        env.append({"name": "FEATURE_X", "value": "on"})
    containers: list[dict[str, Any]] = [
        {"name": "web", "image": f"{REPOSITORY}@{DIGEST}", "env": env, "ports": [{"containerPort": 8080}]}
    ]
    if sidecar:
        containers.append({"name": "metrics", "image": "ghcr.io/acme/metrics-agent:1.4"})
    return {"containers": containers}


def pipeline() -> Pipeline:
    """The quickstart's pipeline: staging, then prod behind a four-eyes approval by
    conveyor:approvers; a migration and a smoke test in every stage. Its InParity condition turned
    False when prod drifted from staging."""
    obj = pipeline_dict(
        PIPELINE,
        NAMESPACE,
        stages=[
            {"name": "staging", "namespace": "shop-staging"},
            {
                "name": "prod",
                "namespace": "shop-prod",
                "requiresApproval": True,
                "approval": {"approvers": {"groups": ["conveyor:approvers"]}, "minApprovals": 1},
            },
        ],
        migration={"command": ["./manage.py", "migrate"]},
        smoke_test={"command": ["./smoke.sh"]},
    )
    obj["metadata"]["labels"] = {"app": "shop"}
    p = Pipeline.model_validate(_meta(obj, PIPELINE_UID, at(-30 * 86400)))
    # The parity check as the operator runs it (core/parity.py), on the two stages' pod templates.
    diffs = compare(
        p,
        [
            StageObjects("staging", "shop-staging", {"shop": _pod_spec()}),
            StageObjects("prod", "shop-prod", {"shop": _pod_spec(feature_flag=True, sidecar=True)}),
        ],
    )
    # InParity as core/pipeline_status.py's set_parity keeps it: True since the day before, False
    # since the check found prod's drift. (A pass's context, for the things it reads there.)
    for when, found in ((at(-86400), []), (at(3 * 3600 + 4 * 60), diffs)):
        ctx = SimpleNamespace(parity=found, parity_unseen=False, emit=lambda *_, **__: None)
        set_parity(p.status, p, ctx, when)  # type: ignore[arg-type]
    return p


def _release(
    name: str, uid: str, commit: str, digest: str, created: datetime, **source: Any
) -> dict[str, Any]:
    obj = release_dict(name, pipeline=PIPELINE, namespace=NAMESPACE, requester="ci-bot")
    obj["spec"].update(commit=commit, digest=digest)
    obj["spec"]["source"] = {"repository": SOURCE, **source}
    return _meta(obj, uid, created)


class _History:
    """A release's or rollback's status.history, appended as core/plan.py's Pass.emit does."""

    def __init__(self, subject: dict[str, Any] | None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.facts = {}
        if subject is not None:
            spec = subject["spec"]
            self.facts = {"commit": spec["commit"], "digest": spec["digest"]}
            if spec["source"].get("ciRunId"):
                self.facts["ciRun"] = spec["source"]["ciRunId"]

    def emit(
        self,
        when: datetime,
        reason: str,
        message: str,
        stage: str | None = None,
        *,
        warning: bool = False,
        actor: str = CONVEYOR,
    ) -> None:
        entry: dict[str, Any] = {
            "time": when.isoformat(),
            "actor": actor,
            "reason": reason,
            "message": message,
        }
        if stage:
            entry["stage"] = stage
        entry.update(self.facts)
        if warning:
            entry["warning"] = True
        self.entries.append(entry)


def _stage_run(  # noqa: PLR0917 (one stage's story)
    h: _History,
    release: dict[str, Any],
    stage: str,
    namespace: str,
    start: float,
    seconds: Iterable[float],
    *,
    smoke_fails: str | None = None,
) -> dict[str, Any]:
    """One stage run as core/release_step.py records it: StageStarted, the migration Job, the
    rollout, the smoke-test Job, StageVerified (or the smoke test's failure, `smoke_fails` its Job's
    failure reason). `seconds`: migration, rollout, smoke test. Returns the stage record."""
    name, uid, commit = release["metadata"]["name"], release["metadata"]["uid"], release["spec"]["commit"]
    image = f"{REPOSITORY}@{release['spec']['digest']}"
    migrate, roll, smoke = seconds
    migration = job_name(name, uid, stage, JobKind.MIGRATION)
    smoke_job = job_name(name, uid, stage, JobKind.SMOKE_TEST)
    t = start
    h.emit(
        at(t), "StageStarted", f"promoting {short_commit(commit)} into {stage} (namespace {namespace})", stage
    )
    h.emit(at(t), "MigrationStarted", f"migration Job {migration} started in {namespace}", stage)
    h.emit(at(t + migrate), "MigrationSucceeded", f"migration Job {migration} completed", stage)
    h.emit(at(t + migrate), "RolloutStarted", f"set shop to {image}", stage)
    h.emit(
        at(t + migrate + roll),
        "RolloutSucceeded",
        f"every target available in {stage} after {roll:.1f}s",
        stage,
    )
    h.emit(
        at(t + migrate + roll),
        "SmokeTestStarted",
        f"smoke test Job {smoke_job} started in {namespace}",
        stage,
    )
    end = t + migrate + roll + smoke
    rec: dict[str, Any] = {
        "name": stage,
        "startedAt": at(t).isoformat(),
        "migrationJob": migration,
        "migrationResult": "Succeeded",
        "migratedAt": at(t + migrate).isoformat(),
        "deployedAt": at(t + migrate).isoformat(),
        "rolledOutAt": at(t + migrate + roll).isoformat(),
        "smokeTestJob": smoke_job,
        "smokeTestStartedAt": at(t + migrate + roll).isoformat(),
        "finishedAt": at(end).isoformat(),
    }
    if smoke_fails:
        detail = f"Job {namespace}/{smoke_job} failed: {smoke_fails}"
        h.emit(at(end), "SmokeTestFailed", detail, stage, warning=True)
        rec.update(phase="Failed", smokeTestResult="Failed", message=detail)
        return rec
    h.emit(at(end), "SmokeTestSucceeded", f"smoke test Job {smoke_job} completed", stage)
    h.emit(at(end), "StageVerified", f"{short_commit(commit)} verified in {stage}", stage)
    rec.update(phase="Verified", smokeTestResult="Succeeded", verifiedAt=at(end).isoformat())
    return rec


def _accepted(h: _History, release: dict[str, Any]) -> None:
    image = f"{REPOSITORY}@{release['spec']['digest']}"
    h.emit(
        _time(release),
        "ReleaseAccepted",
        f"commit {short_commit(release['spec']['commit'])} ({image}) will travel staging -> prod",
    )


def _time(obj: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obj["metadata"]["creationTimestamp"])


def _status(
    release: dict[str, Any], phase: str, h: _History, stages: list[dict[str, Any]], **more: Any
) -> Release:
    release["status"] = {
        "observedGeneration": 1,
        "phase": phase,
        "acceptedAt": _time(release).isoformat(),
        "currentStage": stages[-1]["name"],
        "shortCommit": short_commit(release["spec"]["commit"]),
        "image": f"{REPOSITORY}@{release['spec']['digest']}",
        "stages": stages,
        "history": h.entries,
        **more,
    }
    return Release.model_validate(release)


def released(*, waiting: bool = False) -> Release:
    """shop-3f9c2a1 (commit 3f9c2a1, by dana, built by CI run 8812345678): verified in staging,
    waited for approval to enter prod, approved by alice, verified in prod: Succeeded. `waiting`: as
    it was while it waited at prod's gate."""
    obj = _release(
        "shop-3f9c2a1",
        RELEASE_UID,
        COMMIT,
        DIGEST,
        AT,
        commitTime="2026-11-27T09:41:07+01:00",
        author="dana",
        ciRunId="8812345678",
        ciRunUrl="https://github.com/acme/shop/actions/runs/8812345678",
    )
    h = _History(obj)
    _accepted(h, obj)
    staging = _stage_run(h, obj, "staging", "shop-staging", 0.0, (12.4, 48.0, 9.2))
    gated = 69.6
    h.emit(at(gated), "AwaitingApproval", "stage prod needs 1 approval(s) for release shop-3f9c2a1", "prod")
    if waiting:
        gate = {"name": "prod", "phase": "AwaitingApproval"}
        msg = f"0 of 1 approval(s) to promote {short_commit(COMMIT)} into prod: create an Approval with "
        return _status(
            obj, "AwaitingApproval", h, [staging, gate], message=msg + "release=shop-3f9c2a1 stage=prod"
        )
    approved = gated + 1840.5
    h.emit(
        at(approved),
        "ApprovalGranted",
        f"alice approved {short_commit(COMMIT)} for prod (shop-3f9c2a1-prod)",
        "prod",
        actor="alice",
    )
    prod = _stage_run(h, obj, "prod", "shop-prod", approved, (10.1, 52.3, 8.8))
    prod.update(
        approval="shop-3f9c2a1-prod",
        approvals=["shop-3f9c2a1-prod"],
        approvers=["alice"],
        approvedAt=at(approved - 0.8).isoformat(),
    )
    h.emit(
        datetime.fromisoformat(prod["verifiedAt"]),
        "ReleaseSucceeded",
        "verified in every stage up to prod",
        "prod",
    )
    return _status(obj, "Succeeded", h, [staging, prod], approvedBy="alice", message="verified in prod")


def previous() -> Release:
    """shop-a1b2c3d: the release prod ran before shop-3f9c2a1 (verified there the day before)."""
    obj = _release("shop-a1b2c3d", OLD_RELEASE_UID, OLD_COMMIT, OLD_DIGEST, at(-86400), author="dana")
    obj["status"] = {
        "phase": "Succeeded",
        "currentStage": "prod",
        "stages": [
            {"name": "prod", "phase": "Verified", "verifiedAt": at(-80000).isoformat()},
        ],
    }
    return Release.model_validate(obj)


def unverified() -> Release:
    """shop-9e1b0c2, the commit before shop-3f9c2a1: verified in staging, superseded there before it
    reached prod (so no rollback may go back to it)."""
    obj = _release(
        "shop-9e1b0c2", UNVERIFIED_RELEASE_UID, UNVERIFIED_COMMIT, UNVERIFIED_DIGEST, at(-3600), author="dana"
    )
    obj["status"] = {
        "phase": "Superseded",
        "currentStage": "prod",
        "stages": [{"name": "staging", "phase": "Verified", "verifiedAt": at(-3500).isoformat()}],
    }
    return Release.model_validate(obj)


def failed() -> Release:
    """shop-7e4d9b2, the next commit: its smoke test fails in staging (the Job's pod exits non-zero
    once: BackoffLimitExceeded)."""
    start = 3 * 3600.0
    obj = _release(
        "shop-7e4d9b2",
        FAILED_RELEASE_UID,
        FAILED_COMMIT,
        FAILED_DIGEST,
        at(start),
        commitTime="2026-11-27T12:58:40+01:00",
        author="dana",
        ciRunId="8812399120",
        ciRunUrl="https://github.com/acme/shop/actions/runs/8812399120",
    )
    h = _History(obj)
    _accepted(h, obj)
    staging = _stage_run(
        h, obj, "staging", "shop-staging", start, (11.8, 47.2, 21.5), smoke_fails="BackoffLimitExceeded"
    )
    return _status(obj, "Failed", h, [staging], message=f"staging: {staging['message']}")


def _rollback(
    uid: str,
    name: str,
    created: datetime,
    *,
    to_release: str | None = None,
    status: dict[str, Any],
) -> Rollback:
    spec: dict[str, Any] = {
        "pipeline": PIPELINE,
        "stage": "prod",
        "reason": "checkout errors up 4x since the rollout",
        "verify": True,
        "requester": {"username": "alice", "groups": ["conveyor:approvers", "system:authenticated"]},
    }
    if to_release:
        spec["toRelease"] = to_release
    return Rollback.model_validate(
        {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "Rollback",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": uid,
                "generation": 1,
                "creationTimestamp": created.isoformat(),
            },
            "spec": spec,
            "status": status,
        }
    )


def _image_only_plan() -> dict[str, Any]:
    # core/rollback.py's plan for a release whose schemaChange is none.
    return {
        "action": "ImageOnly",
        "reason": "shop-3f9c2a1's schema change is none: the older image works with the current schema",
        "stage": "prod",
        "namespace": "shop-prod",
        "fromRelease": "shop-3f9c2a1",
        "fromCommit": COMMIT,
        "fromDigest": DIGEST,
        "schemaChange": "none",
        "toRelease": "shop-a1b2c3d",
        "toCommit": OLD_COMMIT,
        "toDigest": OLD_DIGEST,
    }


def rolled_back(*, rollout_fails: bool = False, rolling: bool = False) -> Rollback:
    """alice rolls prod back from shop-3f9c2a1 to the release before (ImageOnly, verified by the smoke
    test): RollbackStarted, then RollbackCompleted (shop-prod-rollback, 12:18). `rollout_fails`: her
    attempt ten minutes before (shop-prod-rollback-2), RollbackStarted, then RollbackFailed: the old
    image's rollout did not finish within the stage's 120 s. `rolling`: as it was while prod rolled
    back (patched, not yet available)."""
    uid, name = (
        (FAILED_ROLLBACK_UID, "shop-prod-rollback-2")
        if rollout_fails
        else (ROLLBACK_UID, "shop-prod-rollback")
    )
    start = 2 * 3600.0 + (300 if rollout_fails else 900)
    plan = _image_only_plan()
    h = _History({"spec": {"commit": COMMIT, "digest": DIGEST, "source": {"ciRunId": "8812345678"}}})
    emit = lambda when, reason, msg, **kw: h.emit(at(when), reason, msg, "prod", actor="alice", **kw)  # noqa: E731
    emit(
        start,
        "RollbackStarted",
        f"prod: shop-3f9c2a1 ({COMMIT[:7]}) -> shop-a1b2c3d ({OLD_COMMIT[:7]}); plan ImageOnly: "
        f"{plan['reason']}; reason: checkout errors up 4x since the rollout",
    )
    image = f"{REPOSITORY}@{OLD_DIGEST}"
    emit(start + 0.4, "RollbackPatched", f"set prod's targets back to {image}")
    st: dict[str, Any] = {
        "observedGeneration": 1,
        "plan": plan,
        "fromShortCommit": COMMIT[:7],
        "toShortCommit": OLD_COMMIT[:7],
        "plannedAt": at(start).isoformat(),
        "patchedAt": at(start + 0.4).isoformat(),
    }
    if rolling:
        st.update(phase="RollingBack", message="rolling prod back to shop-a1b2c3d")
        st["history"] = h.entries
        return _rollback(uid, name, at(start - 1.5), status=st)
    if rollout_fails:
        end = start + 0.4 + 120.0
        msg = "not available within 120s (shop: 1/2 replicas updated, 1 unavailable)"
        emit(end, "RollbackFailed", msg, warning=True)
        duration = round(end - start, 3)
        st.update(
            phase="Failed",
            verdict="Failed: RollbackRolloutFailed",
            message=msg,
            finishedAt=at(end).isoformat(),
        )
    else:
        rolled = start + 0.4 + 31.2
        end = rolled + 9.7
        smoke = job_name(name, uid, "prod", JobKind.SMOKE_TEST)
        emit(rolled, "RollbackRolledOut", "every target of prod available on shop-a1b2c3d")
        duration = round(end - start, 3)
        emit(end, "RollbackCompleted", f"prod runs shop-a1b2c3d ({OLD_COMMIT[:7]}) again after {duration}s")
        st.update(
            phase="Succeeded",
            verdict="Succeeded",
            rolledOutAt=at(rolled).isoformat(),
            smokeTestJob=smoke,
            smokeTestStartedAt=at(rolled).isoformat(),
            verifiedAt=at(end).isoformat(),
            finishedAt=at(end).isoformat(),
            message=h.entries[-1]["message"],
        )
    st.update(durationSeconds=duration, history=h.entries)
    return _rollback(uid, name, at(start - 1.5), status=st)


def refused() -> Rollback:
    """alice's first try (12:03, shop-prod-rollback-3): prod back to shop-9e1b0c2, which never reached
    prod — refused (NotVerifiedInStage), final: nothing was changed."""
    when = 2 * 3600.0
    msg = (
        "release shop-9e1b0c2 was never verified in prod: Conveyor only rolls back to a release proven there"
    )
    h = _History({"spec": {"commit": COMMIT, "digest": DIGEST, "source": {"ciRunId": "8812345678"}}})
    h.emit(at(when), "RollbackRefused", msg, "prod", warning=True, actor="alice")
    plan = {
        "action": "Refused",
        "reason": msg,
        "stage": "prod",
        "namespace": "shop-prod",
        "fromRelease": "shop-3f9c2a1",
        "fromCommit": COMMIT,
        "fromDigest": DIGEST,
    }
    return _rollback(
        REFUSED_ROLLBACK_UID,
        "shop-prod-rollback-3",
        at(when - 0.6),
        to_release="shop-9e1b0c2",
        status={
            "observedGeneration": 1,
            "phase": "Refused",
            "plan": plan,
            "fromShortCommit": COMMIT[:7],
            "finishedAt": at(when).isoformat(),
            "verdict": "Refused: NotVerifiedInStage",
            "message": msg,
            "history": h.entries,
        },
    )


# --- the notifications, as the notifier makes them


def send(
    occ: core.Occurrence,
    pipeline: Pipeline,
    releases: dict[str, Release],
    rollbacks: dict[str, Rollback],
    dashboard_url: str = DASHBOARD,
) -> Notification:
    """The message for `occ` as handlers/notify.py `_send_one` makes it: the release only for a
    release's occurrence, the rollback only for a rollback's, the pipeline always."""
    return core.notification(
        occ,
        namespace=NAMESPACE,
        release=releases.get(occ.name) if occ.kind == "releases" else None,
        rollback=rollbacks.get(occ.name) if occ.kind == "rollbacks" else None,
        pipeline=pipeline,
        dashboard_url=dashboard_url,
    )


World = tuple[Pipeline, dict[str, Release], dict[str, Rollback]]


def objects(moment: str = "after") -> World:
    """The pipeline, its releases and its rollbacks, by name — as they are at the end of the story
    ("after"), or at a moment a message is sent from an object that has moved on since: "waiting"
    (shop-3f9c2a1 at prod's gate: once past it, its approval request is obsolete and skipped) and
    "rolling" (prod rolling back: the message says no duration yet)."""
    releases = [released(waiting=moment == "waiting"), previous(), unverified(), failed()]
    rollbacks = [rolled_back(rolling=moment == "rolling"), rolled_back(rollout_fails=True), refused()]
    return (
        pipeline(),
        {r.metadata.name: r for r in releases},
        {r.metadata.name: r for r in rollbacks},
    )


def occurrences(world: World) -> list[core.Occurrence]:
    """Every occurrence the objects hold, as the notifier finds them."""
    p, releases, rollbacks = world
    out = [o for r in releases.values() for o in core.release_occurrences(r)]
    out += [o for r in rollbacks.values() for o in core.rollback_occurrences(r)]
    return out + core.pipeline_occurrences(p)


# Which object's occurrence shows each trigger (several objects hold one of some triggers), and at
# which moment the notifier makes the message (the first chance it has: see objects()).
SHOWN_BY = {
    Trigger.APPROVAL_NEEDED: ("waiting", "shop-3f9c2a1"),
    Trigger.STAGE_VERIFIED: ("after", "shop-3f9c2a1"),  # in staging (it has one for prod too)
    Trigger.RELEASE_SUCCEEDED: ("after", "shop-3f9c2a1"),
    Trigger.RELEASE_FAILED: ("after", "shop-7e4d9b2"),
    Trigger.ROLLBACK_STARTED: ("rolling", "shop-prod-rollback"),
    Trigger.ROLLBACK_COMPLETED: ("after", "shop-prod-rollback"),
    Trigger.ROLLBACK_REFUSED: ("after", "shop-prod-rollback-3"),
    Trigger.ROLLBACK_FAILED: ("after", "shop-prod-rollback-2"),
    Trigger.PARITY_LOST: ("after", "shop"),
}


def source(trigger: str) -> tuple[core.Occurrence, World]:
    """The occurrence a trigger's sample tells, and the objects its message is made from."""
    moment, name = SHOWN_BY[Trigger(trigger)]
    world = objects(moment)
    occ = next(o for o in occurrences(world) if o.trigger == trigger and o.name == name)  # staging first
    return occ, world


def _samples() -> dict[str, Notification]:
    out = {}
    for trigger in Trigger:
        occ, (p, releases, rollbacks) = source(trigger.value)
        out[trigger.value] = send(occ, p, releases, rollbacks)
    return out


SAMPLES: dict[str, Notification] = _samples()
assert sorted(SAMPLES) == sorted(t.value for t in Trigger), "one sample per trigger"

# What someone able to name a release, write a message or declare a CI run might try.
HOSTILE_TEXT = (
    "<!channel> <!here> <@U024BE7LH> <#C024BE7LR> @channel "
    "<http://evil.example/login|Approve here> [Approve here](http://evil.example/login) "
    "**bold** ```code``` `tick` & &amp; </script>"
)


def hostile(trigger: str, size: int = 10_240) -> Notification:
    """The sample for `trigger` with every free text hostile and long (`size` characters) and links
    that must never be clickable (javascript:, data:)."""
    long = (HOSTILE_TEXT * (size // len(HOSTILE_TEXT) + 1))[:size]
    data = SAMPLES[trigger].model_dump(by_alias=True)
    data.update(title=long, message=long, actor=HOSTILE_TEXT, differences=[long] * 10)
    data["links"] = {"dashboard": "javascript:alert(1)", "ciRun": "data:text/html,<script>alert(1)</script>"}
    if data.get("release"):
        data["release"].update(release=HOSTILE_TEXT, author=long, requester=HOSTILE_TEXT)
    if data.get("approval"):
        data["approval"].update(users=[HOSTILE_TEXT] * 20, command=long)
    if data.get("failure"):
        data["failure"].update(message=long, hint=long, reason=HOSTILE_TEXT)
    if data.get("rollback"):
        data["rollback"].update(reason=long, planReason=long, requester=HOSTILE_TEXT)
    return Notification.model_validate(data)


# --- the generated parts of docs/notifications.md


def pretty(obj: object) -> str:
    """JSON as the goldens and the docs show it: indented, keys in the renderer's order, UTF-8."""
    return json.dumps(obj, indent=2, ensure_ascii=False)


def docs_sections() -> dict[str, str]:
    """The parts of docs/notifications.md made from the renderer's output for the samples, by name
    (the name in its `<!-- BEGIN generated:NAME -->` marker)."""
    payloads = []
    for trigger in Trigger:
        ce = cloudevent(SAMPLES[trigger.value])
        payloads.append(
            f"<details><summary><code>{trigger.value}</code> — <code>{ce['type']}</code></summary>\n\n"
            f"```json\n{pretty(ce)}\n```\n\n</details>"
        )
    return {
        "payloads": "\n\n".join(payloads),
        "slack": f"```json\n{pretty(slack(SAMPLES['approvalNeeded']))}\n```",
        "teams": f"```json\n{pretty(teams(SAMPLES['approvalNeeded']))}\n```",
    }


def marker(name: str) -> tuple[str, str]:
    """The comment lines around the generated part `name` of docs/notifications.md."""
    return (
        f"<!-- BEGIN generated:{name} (CONVEYOR_UPDATE_GOLDEN=1 pytest tests/unit/test_notify_render.py) -->",
        f"<!-- END generated:{name} -->",
    )


def with_sections(doc: str, sections: dict[str, str]) -> str:
    """`doc` with each generated part replaced by its current text (a part not found is an error)."""
    for name, text in sections.items():
        begin, end = marker(name)
        head, found, rest = doc.partition(begin + "\n")
        _, found_end, tail = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"docs/notifications.md has no {begin!r} … {end!r}")
        doc = f"{head}{begin}\n{text}\n{end}{tail}"
    return doc
