"""Release: one commit's immutable image on its way to production."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, WithJsonSchema

from conveyor.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    STAMP_DESCRIPTION,
    Condition,
    Identity,
    KubeModel,
    Message,
    Name,
    ObjectMeta,
    cel,
    latest,
)

HISTORY_LIMIT = 50
APPROVAL_RECORDS_LIMIT = 50
APPROVERS_LIMIT = 20


class SchemaChange(StrEnum):
    """How the release changes the database schema; decides how a rollback undoes it."""

    NONE = "none"
    BACKWARD_COMPATIBLE = "backwardCompatible"
    BREAKING = "breaking"


# RFC 3339 with an explicit offset, as a string: not `format: date-time`, under which the API server
# admits a list (found by the hostile-input fuzzing: `commitTime: [{}]` was stored, and the Release
# could then never be read, so never answered). Offset required: a time without one is no instant.
DECLARED_TIME = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _declared_time(value: Any) -> Any:
    """A declared time as a datetime with an offset. What the pattern admits but no datetime holds (30
    February, year 0) is no time at all — declared, not verified, it is dropped rather than making the
    whole Release unreadable; one stored without an offset (before the pattern) is taken as UTC."""
    if isinstance(value, str):
        try:
            value = _DATETIME.validate_python(value)
        except ValidationError:
            return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)
DeclaredTime = Annotated[
    datetime | None,
    BeforeValidator(_declared_time),
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": DECLARED_TIME}),
]


class Source(KubeModel):
    """Facts CI declares about where the artifact came from (declared, not verified)."""

    repository: str | None = Field(default=None, description="Source repository URL.", max_length=512)
    commit_time: DeclaredTime = Field(
        default=None,
        description="When the commit was made: an RFC 3339 time with its offset (git log --format=%cI), "
        "e.g. 2026-11-27T05:00:00+01:00.",
    )
    author: str | None = Field(default=None, description="Commit author as CI reports it.", max_length=256)
    ci_run_id: str | None = Field(default=None, description="CI run identifier.", max_length=128)
    ci_run_url: str | None = Field(default=None, description="Link to the CI run.", max_length=1024)


class ReleaseSpec(KubeModel):
    """The artifact and its facts. Immutable: a Release is a record."""

    pipeline: str = Field(
        description="Name of the Pipeline (same namespace) this release travels.",
        max_length=63,
        pattern=DNS_SUBDOMAIN,
    )
    commit: str = Field(
        description="Full 40-character git commit SHA the image was built from.",
        max_length=40,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.matches('^[0-9a-f]{40}$')", "must be the full 40-character lowercase hex commit SHA"
                )
            ]
        },
    )
    digest: str = Field(
        description="Image digest (sha256:<64 hex>) in the pipeline's repository. Tags are refused: "
        "the bytes verified in staging are the bytes that reach production.",
        max_length=128,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.matches('^sha256:[0-9a-f]{64}$')",
                    message_expression="'must be an image digest, sha256: followed by 64 lowercase hex "
                    "characters; tags are refused' + (self == 'latest' || self.endsWith(':latest') "
                    "? ' (latest above all: it names a different image tomorrow)' : '')",
                )
            ]
        },
    )
    source: Source = Field(default_factory=Source, description="Where the artifact came from.")
    schema_change: SchemaChange = Field(
        default=SchemaChange.NONE,
        description="Database schema change: none, backwardCompatible, or breaking (needs a "
        "down-migration to roll back).",
    )
    target_stage: str | None = Field(
        default=None,
        description="Stop after this stage (default: the pipeline's last stage).",
        max_length=30,
        pattern=DNS_LABEL,
    )
    requester: Identity | None = Field(
        default=None, description="Who created the release. " + STAMP_DESCRIPTION
    )


class Phase(StrEnum):
    """Where a release is in its life."""

    PENDING = "Pending"
    WAITING = "Waiting"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"
    ROLLED_BACK = "RolledBack"
    CANCELLED = "Cancelled"
    VETOED = "Vetoed"


TERMINAL_PHASES = frozenset(
    {Phase.SUCCEEDED, Phase.FAILED, Phase.SUPERSEDED, Phase.ROLLED_BACK, Phase.CANCELLED, Phase.VETOED}
)


class StagePhase(StrEnum):
    """Where a release is within one stage."""

    AWAITING_APPROVAL = "AwaitingApproval"
    MIGRATING = "Migrating"
    ROLLING_OUT = "RollingOut"
    SMOKE_TESTING = "SmokeTesting"
    VERIFIED = "Verified"
    FAILED = "Failed"


class StageRecord(KubeModel):
    """One stage of one release: what happened, when (sub-second timestamps), with which Jobs."""

    name: str = Field(description="Stage name.")
    phase: StagePhase | None = Field(default=None, description="Where the release is in this stage.")
    approval: str | None = Field(default=None, description="Approval that opened this stage (the first).")
    approvals: Annotated[list[Name], latest(APPROVERS_LIMIT)] = Field(
        default_factory=list, max_length=APPROVERS_LIMIT, description="The Approvals counted to open it."
    )
    approvers: Annotated[list[Name], latest(APPROVERS_LIMIT)] = Field(
        default_factory=list, max_length=APPROVERS_LIMIT, description="Their authenticated approvers."
    )
    approved_at: datetime | None = Field(
        default=None, description="When the latest of those Approvals was created."
    )
    started_at: datetime | None = Field(default=None, description="When the release entered the stage.")
    migration_job: str | None = Field(default=None, description="Name of the migration Job.")
    migration_result: str | None = Field(default=None, description="Succeeded or Failed.")
    migrated_at: datetime | None = Field(default=None, description="When the migration finished.")
    deployed_at: datetime | None = Field(default=None, description="When Conveyor set the image.")
    rolled_out_at: datetime | None = Field(default=None, description="When every target was available.")
    smoke_test_job: str | None = Field(default=None, description="Name of the smoke-test Job.")
    smoke_test_started_at: datetime | None = Field(default=None, description="When the smoke test started.")
    smoke_test_result: str | None = Field(default=None, description="Succeeded or Failed.")
    verified_at: datetime | None = Field(default=None, description="When the stage was verified.")
    finished_at: datetime | None = Field(default=None, description="When the stage ended (either way).")
    message: Message | None = Field(default=None, description="Last word on this stage.")


class HistoryEntry(KubeModel):
    """One transition, kept in status (Events expire; this does not). Append-only, bounded."""

    time: datetime = Field(description="When it happened.")
    actor: str | None = Field(
        default=None,
        description="Who caused it: an authenticated identity (approver, requester) or conveyor itself.",
    )
    reason: Name = Field(description="The action: a CamelCase reason, the same as the Event's.")
    stage: str | None = Field(default=None, description="Stage concerned, if any.")
    commit: str | None = Field(default=None, description="Commit concerned.")
    digest: str | None = Field(default=None, description="Image digest concerned.")
    ci_run: str | None = Field(default=None, description="CI run of that commit (declared).")
    message: Message = Field(default="", description="What happened.")
    warning: bool | None = Field(
        default=None, description="True when its Event is a Warning (re-posted alike after a crash)."
    )


class ApprovalRecord(KubeModel):
    """One Approval Conveyor considered for this release, and its verdict."""

    name: str = Field(description="The Approval.")
    stage: str = Field(description="Stage it names.")
    approver: str | None = Field(default=None, description="Authenticated approver (None: not stamped).")
    at: datetime | None = Field(default=None, description="When it was created.")
    counted: bool = Field(description="Whether it counts.")
    verdict: Name = Field(
        description="Used, Accepted, NotAnApprover, SelfApproval, Expired, StaleApproval, OtherRelease, "
        "DigestMismatch, WrongStage, ..."
    )
    message: Message = Field(default="", description="Why.")


class ReleaseStatus(KubeModel):
    """Where the release is and how it got there."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    phase: Phase | None = Field(
        default=None,
        description="Pending, Waiting, AwaitingApproval, Progressing, Succeeded, Failed, Superseded, "
        "RolledBack (stopped by a rollback after changing a stage), Cancelled (stopped before) or "
        "Vetoed (its artifact was rolled away from).",
    )
    accepted_at: datetime | None = Field(
        default=None,
        description="When Conveyor first accepted the release (orders releases within a second).",
    )
    current_stage: str | None = Field(default=None, description="Stage the release is in or waiting for.")
    short_commit: str | None = Field(default=None, description="Commit, first 7 characters.")
    image: str | None = Field(default=None, description="repository@digest, the image promoted.")
    approved_by: str | None = Field(default=None, description="Who approved the latest gated stage.")
    message: Message | None = Field(default=None, description="The latest word, in one line.")
    approvals: Annotated[list[ApprovalRecord], latest(APPROVAL_RECORDS_LIMIT)] = Field(
        default_factory=list,
        max_length=APPROVAL_RECORDS_LIMIT,
        description=f"The Approvals considered for this release, with their verdicts (the latest "
        f"{APPROVAL_RECORDS_LIMIT}).",
    )
    vetoed: bool | None = Field(
        default=None, description="True once a rollback rolled away from it: never promoted again."
    )
    vetoed_by: str | None = Field(default=None, description="The Rollback that vetoed it.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Failed, AwaitingApproval."
    )
    stages: list[StageRecord] = Field(default_factory=list, description="Per-stage records, in order.")
    history: Annotated[list[HistoryEntry], latest(HISTORY_LIMIT)] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description=f"The latest transitions, oldest first (at most {HISTORY_LIMIT}).",
    )


class Release(KubeModel):
    """A Release object."""

    api_version: Literal["conveyor.dev/v1alpha1"] = "conveyor.dev/v1alpha1"
    kind: Literal["Release"] = "Release"
    metadata: ObjectMeta
    spec: ReleaseSpec
    status: ReleaseStatus = Field(default_factory=ReleaseStatus)
