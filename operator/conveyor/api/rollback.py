"""Rollback: put a stage back on an earlier release, migration-aware."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from conveyor.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    STAMP_DESCRIPTION,
    Condition,
    Identity,
    KubeModel,
    Message,
    ObjectMeta,
    latest,
)
from conveyor.api.release import HISTORY_LIMIT, HistoryEntry


class RollbackSpec(KubeModel):
    """What to roll back, where to, and why. Immutable."""

    pipeline: str = Field(
        description="Pipeline (same namespace) whose stage rolls back.", max_length=63, pattern=DNS_SUBDOMAIN
    )
    stage: str | None = Field(
        default=None,
        description="Stage to roll back (default: the last stage).",
        max_length=30,
        pattern=DNS_LABEL,
    )
    to_release: str | None = Field(
        default=None,
        description="Release to go back to; it must have been verified in that stage (default: the "
        "previous release verified there).",
        max_length=63,
        pattern=DNS_SUBDOMAIN,
    )
    reason: str = Field(
        default="", description="Why, in a sentence (kept in status and Events).", max_length=1024
    )
    verify: bool = Field(
        default=True,
        description="Run the pipeline's smoke test after rolling back (false: the fastest path).",
    )
    requester: Identity | None = Field(
        default=None, description="Who asked for the rollback. " + STAMP_DESCRIPTION
    )


class PlanAction(StrEnum):
    """How the rollback undoes the release it rolls away from."""

    IMAGE_ONLY = "ImageOnly"
    DOWN_MIGRATION_THEN_IMAGE = "DownMigrationThenImage"
    NOTHING = "Nothing"
    REFUSED = "Refused"


class RollbackPlan(KubeModel):
    """The plan, decided and recorded before anything changes."""

    action: PlanAction = Field(description="ImageOnly, DownMigrationThenImage, Nothing or Refused.")
    reason: Message = Field(description="Why this plan (for Refused: exactly what is missing).")
    stage: str | None = Field(default=None, description="Stage rolled back.")
    namespace: str | None = Field(default=None, description="That stage's namespace.")
    from_release: str | None = Field(default=None, description="Release rolled away from (it is vetoed).")
    from_commit: str | None = Field(default=None, description="Its commit.")
    from_digest: str | None = Field(default=None, description="Its image digest.")
    schema_change: str | None = Field(default=None, description="Its declared schema change.")
    to_release: str | None = Field(default=None, description="Release rolled back to.")
    to_commit: str | None = Field(default=None, description="Its commit.")
    to_digest: str | None = Field(default=None, description="Its image digest.")


class RollbackPhase(StrEnum):
    """Where a rollback is."""

    PENDING = "Pending"
    BLOCKED = "Blocked"
    MIGRATING_DOWN = "MigratingDown"
    ROLLING_BACK = "RollingBack"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REFUSED = "Refused"


# Refused is final: a refused rollback never acts later (only a Blocked one, whose cause the user can
# fix, is planned again).
ROLLBACK_TERMINAL = frozenset({RollbackPhase.SUCCEEDED, RollbackPhase.FAILED, RollbackPhase.REFUSED})


class RollbackStatus(KubeModel):
    """The plan, the steps with their times, and the verdict."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    phase: RollbackPhase | None = Field(
        default=None,
        description="Pending, Blocked (refused for a reason the user can fix, e.g. a missing "
        "downMigration: planned again when the pipeline changes), MigratingDown, RollingBack, Verifying, "
        "Succeeded, Failed, or Refused (final: it changed nothing and never will).",
    )
    plan: RollbackPlan | None = Field(default=None, description="What Conveyor decided to do, and why.")
    from_short_commit: str | None = Field(default=None, description="Commit rolled away from, 7 characters.")
    to_short_commit: str | None = Field(default=None, description="Commit rolled back to, 7 characters.")
    planned_at: datetime | None = Field(default=None, description="When the plan was recorded.")
    down_migration_job: str | None = Field(default=None, description="Name of the down-migration Job.")
    down_migrated_at: datetime | None = Field(default=None, description="When the down-migration finished.")
    patched_at: datetime | None = Field(default=None, description="When every target Deployment was patched.")
    rolled_out_at: datetime | None = Field(default=None, description="When every target was available.")
    smoke_test_job: str | None = Field(default=None, description="Name of the smoke-test Job.")
    smoke_test_started_at: datetime | None = Field(default=None, description="When the smoke test started.")
    verified_at: datetime | None = Field(default=None, description="When the smoke test passed.")
    finished_at: datetime | None = Field(default=None, description="When the rollback ended (either way).")
    duration_seconds: float | None = Field(default=None, description="planned -> finished, in seconds.")
    verdict: Message | None = Field(
        default=None, description="Succeeded, Failed or Refused, with the reason."
    )
    message: Message | None = Field(default=None, description="The latest word, in one line.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Failed, RollbackBlocked."
    )
    history: Annotated[list[HistoryEntry], latest(HISTORY_LIMIT)] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="The transitions (the latest 50)."
    )


class Rollback(KubeModel):
    """A Rollback object."""

    api_version: Literal["conveyor.dev/v1alpha1"] = "conveyor.dev/v1alpha1"
    kind: Literal["Rollback"] = "Rollback"
    metadata: ObjectMeta
    spec: RollbackSpec
    status: RollbackStatus = Field(default_factory=RollbackStatus)
