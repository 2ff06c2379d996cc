"""Approval: one person's consent for one release to enter one stage."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from conveyor.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    STAMP_DESCRIPTION,
    Condition,
    Identity,
    KubeModel,
    ObjectMeta,
)


class ApprovalSpec(KubeModel):
    """What is approved. Immutable."""

    release: str = Field(
        description="Name of the Release (same namespace) approved.", max_length=63, pattern=DNS_SUBDOMAIN
    )
    stage: str = Field(description="Stage the release may enter.", max_length=30, pattern=DNS_LABEL)
    release_uid: str | None = Field(
        default=None,
        alias="releaseUID",
        description="The uid of the Release approved (filled in by `kubectl conveyor approve`): the "
        "approval then counts for that very object only, never for a re-created release of the same name.",
        max_length=64,
    )
    digest: str | None = Field(
        default=None,
        description="The image digest approved (filled in by `kubectl conveyor approve`): the approval "
        "counts only while the release names exactly this digest.",
        max_length=71,
        pattern=r"^sha256:[0-9a-f]{64}$",
    )
    comment: str | None = Field(default=None, description="Why, in a sentence.", max_length=1024)
    approver: Identity | None = Field(default=None, description="Who approved. " + STAMP_DESCRIPTION)
    reviewed_by: str | None = Field(
        default=None,
        description="Declared, not verified: the review behind this approval (e.g. the merged pull request "
        "that a GitOps flow turns into this Approval). Never confused with `approver`.",
        max_length=512,
    )


class ApprovalStatus(KubeModel):
    """Whether Conveyor counted the approval, and why (not)."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    counted: bool | None = Field(
        default=None, description="True when this approval opened (or will open) the stage."
    )
    commit: str | None = Field(default=None, description="Commit of the approved release.")
    used_at: datetime | None = Field(default=None, description="When the release entered the stage on it.")
    seen_at: datetime | None = Field(
        default=None,
        description="When Conveyor first saw this Approval; expiresAfterSeconds counts from here (the "
        "operator's clock is never compared with the API server's).",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Counted: True, or False with the reason it does not count."
    )


class Approval(KubeModel):
    """An Approval object."""

    api_version: Literal["conveyor.dev/v1alpha1"] = "conveyor.dev/v1alpha1"
    kind: Literal["Approval"] = "Approval"
    metadata: ObjectMeta
    spec: ApprovalSpec
    status: ApprovalStatus = Field(default_factory=ApprovalStatus)
