"""NotificationChannel: where and when Conveyor tells people what happened — and the message it sends.

A channel is one small namespaced object beside the pipelines it watches (GitOps: one more file in
the repository). It says *where* (a Slack, Teams or generic webhook whose URL lives only in a
Secret), *what* (the triggers, the stages, the pipelines by label) and records in its own status what
it delivered — the ledger that makes "once" survive restarts. Nothing else writes a channel's status,
and nothing about a channel is ever written to a Pipeline or Release.

`Notification` is the message itself, version 1: the `data` of the CloudEvent a webhook receives and
the facts the Slack and Teams renderings are made from. Changes within v1 are additive only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from conveyor.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    Condition,
    KubeModel,
    Message,
    Name,
    ObjectMeta,
    cel,
    latest,
)

LEDGER_LIMIT = 500
SCHEMA_VERSION = "v1"
# The label a Secret must carry before Conveyor reads it for a channel: without it, anyone who may
# create channels (but not read Secrets) could point one at a database password and have Conveyor
# send it to a host of their choosing.
SECRET_LABEL = "conveyor.dev/notification-secret"  # noqa: S105 (a label name, not a secret)


class ChannelType(StrEnum):
    """Who receives the message, and so how it is written."""

    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class Trigger(StrEnum):
    """What happened. Each is sent at most once per object (and stage) per channel."""

    APPROVAL_NEEDED = "approvalNeeded"
    STAGE_VERIFIED = "stageVerified"
    RELEASE_SUCCEEDED = "releaseSucceeded"
    RELEASE_FAILED = "releaseFailed"
    ROLLBACK_STARTED = "rollbackStarted"
    ROLLBACK_COMPLETED = "rollbackCompleted"
    ROLLBACK_REFUSED = "rollbackRefused"
    ROLLBACK_FAILED = "rollbackFailed"
    PARITY_LOST = "parityLost"


class SecretKeyRef(KubeModel):
    """A key of a Secret in the channel's namespace. The Secret must carry the label
    conveyor.dev/notification-secret: "true"."""

    name: str = Field(description="Secret name (same namespace).", max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(
        default="url",
        description="Key in the Secret's data (default url).",
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


class PipelineSelector(KubeModel):
    """Which pipelines of the namespace the channel speaks for."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Pipelines whose labels include all of these (empty: every pipeline in the namespace).",
        json_schema_extra={"maxProperties": 16},
    )


class NotificationChannelSpec(KubeModel):
    """Where to send, what to send, for which pipelines and stages."""

    type: ChannelType = Field(
        description="slack (incoming webhook, Block Kit), teams (Workflows webhook, Adaptive Card) or "
        "webhook (JSON: a CloudEvents 1.0 envelope around a Notification v1). Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "type is immutable: create a new channel instead")
            ]
        },
    )
    url_secret_ref: SecretKeyRef = Field(
        description="The Secret key holding the webhook URL. The URL is read when a message is sent and "
        "appears nowhere else: not in a spec, status, Event, log line or metric."
    )
    pipeline_selector: PipelineSelector = Field(
        default_factory=PipelineSelector,
        description="Which pipelines of this namespace (default: all of them).",
    )
    triggers: list[Trigger] = Field(
        min_length=1,
        max_length=9,
        description="The triggers to send: approvalNeeded, stageVerified, releaseSucceeded, "
        "releaseFailed, rollbackStarted, rollbackCompleted, rollbackRefused, rollbackFailed, parityLost.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    stages: list[Annotated[str, Field(max_length=30, pattern=DNS_LABEL)]] = Field(
        default_factory=list,
        max_length=20,
        description="Only these stages (default: every stage). Triggers about no stage (release "
        "succeeded, parity lost) are always sent.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    dashboard_url: str | None = Field(
        default=None,
        description="Base address of the Conveyor dashboard, for links in messages (not a secret).",
        max_length=512,
        pattern=r"^https?://[^\s@<>|\"`\\]+$",
    )
    max_delay_seconds: int = Field(
        default=3600,
        ge=60,
        le=86400,
        description="A message not delivered this long after what it tells happened is given up, "
        "recorded Expired and counted (default 1 hour: an approval request a day late is noise).",
    )
    suspend: bool = Field(
        default=False,
        description="Send nothing while true. What happens meanwhile is not sent later.",
    )


class DeliveryResult(StrEnum):
    """How a message ended."""

    DELIVERED = "Delivered"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    SKIPPED = "Skipped"


class LedgerEntry(KubeModel):
    """One message that reached its end: the durable record that it is not to be sent again."""

    id: str = Field(description="The message's idempotency key.", max_length=64)
    trigger: Trigger = Field(description="What it told.")
    subject: Name = Field(
        description="What it was about: releases/NAME[/STAGE], rollbacks/NAME, pipelines/NAME."
    )
    at: datetime = Field(description="When what it told happened (Conveyor's clock).")
    result: DeliveryResult = Field(
        description="Delivered; Rejected (the receiver refused it); Expired (not delivered within "
        "maxDelaySeconds); Skipped (an approval request whose gate had closed before it could go).",
    )
    code: int | None = Field(default=None, description="The receiver's last HTTP status, if any.")
    attempts: int = Field(default=1, ge=0, description="Requests made.")
    finished_at: datetime | None = Field(default=None, description="When it ended.")


class NotificationChannelStatus(KubeModel):
    """What the channel delivered, and whether it can."""

    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    since: datetime | None = Field(
        default=None,
        description="When Conveyor first saw this channel: nothing that happened before is sent.",
    )
    ledger: Annotated[list[LedgerEntry], latest(LEDGER_LIMIT)] = Field(
        default_factory=list,
        max_length=LEDGER_LIMIT,
        description=f"Messages that ended, oldest first (the latest {LEDGER_LIMIT}; older ones are past "
        "maxDelaySeconds and never due again).",
    )
    horizon: datetime | None = Field(
        default=None,
        description="Nothing that happened at or before this time is sent (moved forward as the ledger "
        "is trimmed).",
    )
    backlog: int = Field(default=0, ge=0, description="Messages due and not yet delivered.")
    delivered: int = Field(default=0, ge=0, description="Messages delivered since the channel was created.")
    last_delivered_at: datetime | None = Field(
        default=None, description="When the last message was delivered."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (the Secret and URL are usable) and Delivering (the receiver accepts messages).",
    )


class NotificationChannel(KubeModel):
    """A NotificationChannel object."""

    api_version: Literal["conveyor.dev/v1alpha1"] = "conveyor.dev/v1alpha1"
    kind: Literal["NotificationChannel"] = "NotificationChannel"
    metadata: ObjectMeta
    spec: NotificationChannelSpec
    status: NotificationChannelStatus = Field(default_factory=NotificationChannelStatus)


# --- The message, version 1


class Ref(KubeModel):
    """A release as a message names it."""

    release: str | None = Field(default=None, description="Release name.")
    commit: str | None = Field(default=None, description="Full commit SHA.")
    short_commit: str | None = Field(default=None, description="Commit, 7 characters.")
    digest: str | None = Field(default=None, description="Image digest.")


class ReleaseFacts(Ref):
    """The release a message is about."""

    image: str | None = Field(default=None, description="repository@digest.")
    repository: str | None = Field(default=None, description="Source repository (declared by CI).")
    author: str | None = Field(default=None, description="Commit author (declared by CI).")
    ci_run_id: str | None = Field(default=None, description="CI run (declared by CI).")
    requester: str | None = Field(default=None, description="Who created the Release (authenticated).")
    target_stage: str | None = Field(default=None, description="Last stage it goes to.")


class ApprovalFacts(KubeModel):
    """Who may open the gate, and how."""

    users: list[str] = Field(
        default_factory=list, description="Users who may approve (empty: anyone RBAC lets)."
    )
    groups: list[str] = Field(default_factory=list, description="Groups whose members may approve.")
    min_approvals: int = Field(default=1, description="Distinct approvals needed.")
    four_eyes: bool = Field(default=True, description="The requester may not approve.")
    command: str = Field(description="The exact command that approves.")


class Timings(KubeModel):
    """How long the steps took, in seconds."""

    migration_seconds: float | None = Field(default=None, description="Migration Job.")
    rollout_seconds: float | None = Field(default=None, description="Image set -> every target available.")
    smoke_test_seconds: float | None = Field(default=None, description="Smoke-test Job.")
    stage_seconds: float | None = Field(default=None, description="Entered the stage -> verified.")
    lead_time_seconds: float | None = Field(
        default=None, description="Commit (declared time) -> verified in the last stage."
    )


class ObjectRef(KubeModel):
    """A Kubernetes object to look at."""

    kind: str = Field(description="Job or Deployment.")
    namespace: str = Field(description="Its namespace.")
    name: str = Field(description="Its name.")


class FailureFacts(KubeModel):
    """Where a release failed."""

    step: str = Field(description="Migration, Rollout, SmokeTest or Stage.")
    reason: str = Field(description="CamelCase reason, as in the Event.")
    message: Message = Field(default="", description="What went wrong.")
    object: ObjectRef | None = Field(default=None, description="The Job or Deployment to look at.")
    hint: str | None = Field(default=None, description="A command to start with.")


class RollbackFacts(KubeModel):
    """A rollback, from where to where."""

    name: str = Field(description="The Rollback.")
    plan: str | None = Field(
        default=None, description="ImageOnly, DownMigrationThenImage, Nothing or Refused."
    )
    plan_reason: Message | None = Field(default=None, description="Why this plan (or the refusal).")
    from_: Ref | None = Field(default=None, alias="from", description="Rolled away from.")
    to: Ref | None = Field(default=None, description="Rolled back to.")
    requester: str | None = Field(default=None, description="Who asked (authenticated).")
    reason: Message | None = Field(default=None, description="The reason they gave.")
    duration_seconds: float | None = Field(default=None, description="Planned -> finished.")


class Links(KubeModel):
    """Where to look next (only addresses that are not secret)."""

    dashboard: str | None = Field(
        default=None,
        description="The release's page on the dashboard (a rollback's or parity's: the pipeline's).",
    )
    ci_run: str | None = Field(default=None, description="The CI run (declared by CI).")


class Notification(KubeModel):
    """What Conveyor tells: one message, version 1. A webhook receives it as the `data` of a
    CloudEvents 1.0 envelope whose `id` is `id` here."""

    schema_version: Literal["v1"] = Field(default="v1", description="This schema's version.")
    id: str = Field(description="Idempotency key: the same for every attempt, replica and restart.")
    trigger: Trigger = Field(description="What happened.")
    time: datetime = Field(description="When it happened (Conveyor's clock).")
    namespace: str = Field(description="Namespace of the pipeline.")
    pipeline: str = Field(description="Pipeline name.")
    subject: str = Field(description="releases/NAME[/STAGE], rollbacks/NAME or pipelines/NAME.")
    stage: str | None = Field(default=None, description="Stage concerned, if any.")
    title: Message = Field(description="One line for a human.")
    reason: str = Field(description="The CamelCase reason of the transition (as in its Event).")
    message: Message = Field(default="", description="Conveyor's message about it (as in its Event).")
    actor: str | None = Field(default=None, description="Who caused it.")
    release: ReleaseFacts | None = Field(default=None, description="The release concerned.")
    approval: ApprovalFacts | None = Field(
        default=None, description="approvalNeeded: who may approve and how."
    )
    timings: Timings | None = Field(default=None, description="stageVerified, releaseSucceeded: durations.")
    failure: FailureFacts | None = Field(default=None, description="releaseFailed: where and why.")
    rollback: RollbackFacts | None = Field(default=None, description="rollback*: the plan, from and to.")
    differences: list[Message] = Field(
        default_factory=list, max_length=10, description="parityLost: how the stages differ (at most 10)."
    )
    links: Links = Field(default_factory=Links, description="Where to look.")
