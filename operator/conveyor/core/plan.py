"""What a reconcile pass decides (the `Plan`), and the state one pass shares between the objects it
walks. Pure data and small helpers; promotion.py and rollback.py make the decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.pipeline import ParityDifference, Pipeline, PipelineStatus, RetiredRecord, Stage, VetoRecord
from conveyor.api.release import HISTORY_LIMIT, HistoryEntry, Release, StagePhase
from conveyor.api.rollback import Rollback, RollbackStatus
from conveyor.core.clusters import CONTROL_CLUSTER
from conveyor.core.conditions import truncate
from conveyor.core.world import World

CONVEYOR = "conveyor"  # the actor of transitions Conveyor makes on its own
BLOCKED_RETRY_SECONDS = 15.0


@dataclass(frozen=True)
class CreateJob:
    """Create a Job (AlreadyExists means an earlier pass did: fine)."""

    owner: str  # the release or rollback this action serves
    namespace: str
    manifest: dict[str, Any]
    # Created only after the owner's status, which names the Job, is written: a (down-)migration
    # must run at most once, so its Job is recorded before it exists. A recorded Job that is not
    # there is created again only if it never had a Pod (the operator died between the write and
    # the create); a Job created first and lost with its status write was created anew once deleted.
    record_first: bool = False
    cluster: str = CONTROL_CLUSTER  # where `namespace` is (core/clusters.py)


@dataclass(frozen=True)
class SetImage:
    """Point containers of one Deployment at an image, and annotate whose image it is."""

    owner: str
    namespace: str
    deployment: str
    images: dict[str, str]  # container -> image
    annotations: dict[str, str | None]  # None removes the annotation
    cluster: str = CONTROL_CLUSTER  # where `namespace` is (core/clusters.py)


@dataclass(frozen=True)
class CreateRollback:
    """Create a Rollback object (automatic rollback; a deterministic name makes it once)."""

    owner: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class LabelRelease:
    """Set labels on a Release's metadata (never its spec)."""

    owner: str
    release: str
    labels: dict[str, str]


@dataclass(frozen=True)
class DeleteRelease:
    """Delete an old, finished Release (retention) — that object only (`uid`): one re-created under
    the same name since is another Release."""

    owner: str
    release: str
    uid: str = ""


@dataclass(frozen=True)
class DeleteJob:
    """Delete a finished Job whose result is recorded (after the TTL), or one whose owner is gone."""

    owner: str  # the Job itself: a failed deletion never holds back its release's status
    namespace: str
    name: str
    why: str
    cluster: str = CONTROL_CLUSTER  # where `namespace` is (core/clusters.py)


@dataclass(frozen=True)
class OwnApproval:
    """Make a Release the owner of an Approval given for it, so the garbage collector removes the
    Approval with its Release (a re-created release of the same name never inherits it)."""

    owner: str  # the approval (a failure holds back only its own status)
    approval: str
    release: str
    release_uid: str
    others: tuple[dict[str, Any], ...] = ()  # owners it already has: a merge patch replaces the list


Action = CreateJob | SetImage | CreateRollback | LabelRelease | DeleteRelease | DeleteJob | OwnApproval


@dataclass(frozen=True)
class StopRelease:
    """Effect of a rollback on a release in flight in its stage: it ends there (RolledBack when it
    changed the stage, Cancelled when it had not)."""

    release: str
    stage: str
    rollback: str
    actor: str


@dataclass(frozen=True)
class VetoRelease:
    """Effect of a rollback on the release it rolls away from: never promoted again."""

    release: str
    rollback: str
    actor: str


Effect = StopRelease | VetoRelease
Kind = Literal["Release", "Pipeline", "Approval", "Rollback"]


@dataclass(frozen=True)
class Emit:
    """One transition to announce: an Event on the object, and a JSON audit log line."""

    kind: Kind
    name: str
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    stage: str | None = None
    release: str | None = None
    commit: str | None = None
    digest: str | None = None
    ci_run: str | None = None
    actor: str = "conveyor"


@dataclass
class Plan:
    """Everything one reconcile pass decided."""

    actions: list[Action] = field(default_factory=list)
    releases: dict[str, Any] = field(default_factory=dict)  # name -> ReleaseStatus
    approvals: dict[str, ApprovalStatus] = field(default_factory=dict)
    rollbacks: dict[str, RollbackStatus] = field(default_factory=dict)
    pipeline: PipelineStatus = field(default_factory=PipelineStatus)
    events: list[Emit] = field(default_factory=list)
    requeue_after: float | None = None
    errors: list[str] = field(default_factory=list)  # objects a pass could not decide for, and why
    # A deadline verdict is due but the world was read from a cache: pass again on fresh reads.
    refresh: bool = False
    # Stage namespaces, as (cluster, namespace), whose Jobs' Pod creations (StageWorld.started_jobs)
    # a verdict needs: the shell lists them and the pass decides again.
    traces: set[tuple[str, str]] = field(default_factory=set)
    # Rollbacks whose plan this pass recorded: the next pass acts on them. The shell writes just those
    # plans and passes again at once, instead of waiting for a wake-up.
    again: set[str] = field(default_factory=set)

    def requeue(self, seconds: float | None) -> None:
        """Ask to be called again within `seconds` (the earliest request wins)."""
        if seconds is None:
            return
        seconds = max(0.05, seconds)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def order_key(obj: Release | Rollback) -> tuple[datetime, datetime, str]:
    """Creation order. The API server's timestamps have one-second granularity, so within a second
    the moment Conveyor first accepted a release decides (one not yet accepted is the newest), then
    the name."""
    created = obj.metadata.creation_timestamp or EPOCH
    accepted = getattr(obj.status, "accepted_at", None) or NEVER
    return (created, accepted, obj.metadata.name)


def recreated(release: Release, retired: dict[str, RetiredRecord]) -> bool:
    """A release retention deleted, created again (Argo CD's self-heal, a re-apply): the same name
    and digest under another uid — an old build, never promoted again."""
    rec = retired.get(release.metadata.name)
    return rec is not None and rec.digest == release.spec.digest and rec.uid != (release.metadata.uid or "")


def accepted_by(release: Release, moment: datetime) -> bool:
    """True when Conveyor had accepted the release by `moment` — both on the operator's clock (the API
    server's creationTimestamp is never compared with the operator's time)."""
    accepted = release.status.accepted_at
    return accepted is not None and accepted <= moment


def path_of(pipeline: Pipeline, release: Release) -> list[Stage] | None:
    """The stages this release travels: up to its targetStage (None when that stage is unknown)."""
    stages = pipeline.spec.stages
    if release.spec.target_stage is None:
        return list(stages)
    names = [s.name for s in stages]
    if release.spec.target_stage not in names:
        return None
    return list(stages[: names.index(release.spec.target_stage) + 1])


def current_index(release: Release, path: list[Stage]) -> int:
    """Index of the first stage of `path` not yet verified (len(path) when all are)."""
    verified = {r.name for r in release.status.stages if r.phase == StagePhase.VERIFIED}
    return next((i for i, s in enumerate(path) if s.name not in verified), len(path))


def stage_record(release: Release, stage: str) -> Any:
    """The release's record of a stage, or None."""
    return next((r for r in release.status.stages if r.name == stage), None)


@dataclass
class Pin:
    """A stage put back on a release by a completed rollback: older releases no longer enter it."""

    rollback: str
    release: str
    since: datetime


@dataclass
class Pass:
    """State shared by one reconcile pass over a pipeline."""

    pipeline: Pipeline
    world: World
    approvals: list[Approval]
    now: datetime
    plan: Plan
    releases: dict[str, Release]  # working copies: statuses change as the pass goes
    rollbacks: list[Rollback]
    in_flight: dict[str, str] = field(default_factory=dict)  # stage -> release in it
    position: dict[str, int] = field(default_factory=dict)  # release -> current stage index
    holds: dict[str, str] = field(default_factory=dict)  # stage -> active rollback
    pins: dict[str, Pin] = field(default_factory=dict)  # stage -> completed rollback
    vetoed: dict[str, VetoRecord] = field(default_factory=dict)  # digest -> veto
    retired: dict[str, RetiredRecord] = field(default_factory=dict)  # release -> what retention deleted
    parity: list[ParityDifference] = field(default_factory=list)  # differences between stages now
    parity_unseen: bool = False  # a stage's cluster cannot be seen: `parity` is the last verdict
    effects: list[Effect] = field(default_factory=list)  # cross-object effects, applied in one place

    def emit(
        self,
        kind: Kind,
        name: str,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        stage: str | None = None,
        subject: Release | None = None,
        actor: str = CONVEYOR,
        history: list[HistoryEntry] | None = None,
    ) -> None:
        """Announce a transition (Event + audit line) about `subject` (the release concerned), and
        append it to `history` when given."""
        message = truncate(message)
        facts = {}
        if subject is not None:
            facts = {
                "release": subject.metadata.name,
                "commit": subject.spec.commit,
                "digest": subject.spec.digest,
                "ci_run": subject.spec.source.ci_run_id,
            }
        self.plan.events.append(
            Emit(
                kind=kind,
                name=name,
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                stage=stage,
                actor=actor,
                **facts,
            )
        )
        if history is not None:
            history.append(
                HistoryEntry(
                    time=self.now,
                    actor=actor,
                    reason=reason,
                    stage=stage,
                    message=message,
                    commit=facts.get("commit"),
                    digest=facts.get("digest"),
                    ci_run=facts.get("ci_run"),
                    warning=True if warning else None,
                )
            )
            del history[:-HISTORY_LIMIT]
