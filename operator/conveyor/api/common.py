"""Building blocks shared by every Conveyor kind: the camelCase base model, conditions, metadata."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

GROUP = "conveyor.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Bounds of an authenticated identity. Kubernetes sets none; these are generous (a ServiceAccount's
# user name is at most 339 characters). A user in more or longer groups cannot create Approvals,
# Releases or Rollbacks, and the schema says why (spec.approver.groups: Too many ...).
USERNAME_MAX = 512
GROUP_MAX = 256
GROUPS_MAX = 256
UserName = Annotated[str, Field(max_length=USERNAME_MAX)]
GroupName = Annotated[str, Field(max_length=GROUP_MAX)]


def cel(rule: str, message: str | None = None, *, message_expression: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry: a CEL rule the API server enforces."""
    entry: JsonDict = {"rule": rule}
    if message:
        entry["message"] = message
    if message_expression:
        entry["messageExpression"] = message_expression
    return entry


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, unknown fields kept out."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=True,
        validate_default=True,
        # Assignments are validated too, so a status field set in the core is cut or refused where it
        # is set — never later by the API server, where one over-long message would wedge a pipeline.
        validate_assignment=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cut(value: Any, limit: int) -> Any:
    """A string longer than `limit` cut to it, the cut marked with an ellipsis; anything else as is."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def keep_latest(value: Any, limit: int) -> Any:
    """A list longer than `limit` cut to its last `limit` items; anything else as is. Status lists are
    bounded where they grow, and cut again where they are read, so an object written before a bound
    existed never becomes unreadable."""
    if isinstance(value, list) and len(value) > limit:
        return value[-limit:]
    return value


def latest(limit: int) -> Any:
    """Annotation for a bounded status list: `Annotated[list[X], latest(50)]` keeps the last 50."""
    return BeforeValidator(partial(keep_latest, limit=limit))


# Status strings Conveyor builds (messages, verdicts, names): cut to their bound rather than refused,
# so one long user-supplied value quoted in a message can never make a status unwritable.
MESSAGE_LIMIT = 1024
Message = Annotated[str, BeforeValidator(partial(cut, limit=MESSAGE_LIMIT)), Field(max_length=MESSAGE_LIMIT)]
LongMessage = Annotated[str, BeforeValidator(partial(cut, limit=4096)), Field(max_length=4096)]
Name = Annotated[str, BeforeValidator(partial(cut, limit=253)), Field(max_length=253)]

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KubeModel):
    """One aspect of the object's current state, per Kubernetes API conventions."""

    type: str = Field(description="Condition type, e.g. Ready, Progressing, Failed, AwaitingApproval.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: LongMessage = Field(default="", description="Human-readable details.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )
    last_transition_time: datetime = Field(description="When the status last changed.")


class ObjectMeta(KubeModel):
    """The few metadata fields Conveyor reads."""

    name: str = Field(description="Object name.")
    namespace: str = Field(default="", description="Object namespace.")
    uid: str = Field(default="", description="Object UID.")
    generation: int = Field(default=0, description="Spec generation.")
    resource_version: str = Field(default="", description="Resource version.")
    creation_timestamp: datetime | None = Field(default=None, description="Creation time.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    owner_references: list[dict[str, Any]] = Field(default_factory=list, description="Owners.")


class Identity(KubeModel):
    """An identity the API server authenticated, stamped at admission — never typed by a client."""

    username: str = Field(
        description="Authenticated user name (for a ServiceAccount: system:serviceaccount:NS:NAME).",
        max_length=USERNAME_MAX,
    )
    groups: list[GroupName] = Field(
        default_factory=list,
        max_length=GROUPS_MAX,
        description="Groups the API server placed the user in, in its order.",
    )


STAMP_DESCRIPTION = (
    "Stamped by the API server at creation from the authenticated identity of the request "
    "(MutatingAdmissionPolicy conveyor-stamp-identity); a value that differs from that identity is "
    "refused, and the spec is immutable."
)
