"""CustomResourceDefinitions generated from the pydantic models (what controller-gen does for Go).

The models carry descriptions, defaults, patterns and CEL rules; this module turns their JSON Schema
into the structural OpenAPI v3 schema the API server wants (no $ref, no anyOf-null, no titles) and
adds what only a CRD has: names, printer columns, selectable fields, the status subresource.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonDict

from conveyor.api.approval import ApprovalSpec, ApprovalStatus
from conveyor.api.common import GROUP, VERSION, cel
from conveyor.api.notification import NotificationChannelSpec, NotificationChannelStatus
from conveyor.api.pipeline import PipelineSpec, PipelineStatus
from conveyor.api.release import ReleaseSpec, ReleaseStatus
from conveyor.api.rollback import RollbackSpec, RollbackStatus

# Keywords a structural schema may carry; everything else pydantic emits (title, $defs…) is dropped.
_KEEP = {
    "type", "description", "default", "enum", "pattern", "format", "minLength", "maxLength",
    "minimum", "maximum", "minItems", "maxItems", "minProperties", "maxProperties", "items", "properties",
    "required", "additionalProperties", "nullable",
}  # fmt: skip


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $refs, collapse Optional's anyOf-null, drop non-structural keywords, recurse."""
    schema = dict(schema)
    if "$ref" in schema:
        ref = defs[schema.pop("$ref").rsplit("/", 1)[-1]]
        schema = {**ref, **schema}  # the field's own description/default win over the model's
    if "anyOf" in schema:
        options = [o for o in schema.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"only Optional[X] unions are supported, got {options}")
        inner = _structural(options[0], defs)
        if "properties" in schema:  # the field spells out the object (e.g. dict[str, Any] | None)
            inner.pop("x-kubernetes-preserve-unknown-fields", None)
        schema = {**inner, **{k: v for k, v in schema.items() if k != "default" or v is not None}}
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEEP or (key == "default" and value is None):
            continue
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            continue
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("required") == []:
        del out["required"]
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, camelCase, with descriptions and CEL rules."""
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


@dataclass(frozen=True)
class Kind:
    """Everything about one kind that is not in its models."""

    kind: str
    plural: str
    short_names: list[str]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: list[dict[str, Any]]
    immutable_spec: bool = False
    selectable_fields: list[str] = field(default_factory=list)
    root_rules: list[JsonDict] = field(default_factory=list)


_NAME_FITS_A_LABEL = cel(
    "self.metadata.name.size() <= 63",
    "name must be at most 63 characters (it is used in label values and Job names)",
)


def _col(name: str, path: str, *, type_: str = "string", priority: int = 0, desc: str = "") -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if desc:
        col["description"] = desc
    return col


AGE = _col("Age", ".metadata.creationTimestamp", type_="date")

KINDS: list[Kind] = [
    Kind(
        kind="Pipeline",
        plural="pipelines",
        short_names=["pl", "pipe"],
        spec=PipelineSpec,
        status=PipelineStatus,
        description="One application's road to production: its image repository, the workloads to "
        "update, ordered stages, and the migration and smoke-test Jobs shared by every stage.",
        columns=[
            _col("Production", ".status.productionCommit", desc="Commit verified in the last stage"),
            _col("Stages", ".status.summary", desc="Each stage's commit"),
            _col(
                "Clusters",
                ".status.placement",
                desc="Where each stage lives (control: the cluster Conveyor runs in)",
            ),
            _col("Ready", '.status.conditions[?(@.type=="Ready")].status', desc="Every target resolves"),
            _col(
                "InParity",
                '.status.conditions[?(@.type=="InParity")].status',
                desc="Staging is production's twin",
            ),
            _col(
                "Tracked",
                '.status.conditions[?(@.type=="Tracked")].status',
                desc="Every stage runs an image a live release names",
            ),
            AGE,
            _col("Repository", ".spec.imageRepository", priority=1),
        ],
        root_rules=[_NAME_FITS_A_LABEL],
    ),
    Kind(
        kind="Release",
        plural="releases",
        short_names=["rel"],
        spec=ReleaseSpec,
        status=ReleaseStatus,
        description="One commit's immutable image on its way through a Pipeline. The spec is a record "
        "and cannot change; the status says where it is and how it got there.",
        columns=[
            _col("Pipeline", ".spec.pipeline"),
            _col("Commit", ".status.shortCommit"),
            _col("Stage", ".status.currentStage", desc="Stage the release is in or waiting for"),
            _col("Phase", ".status.phase"),
            _col("Vetoed", ".status.vetoed", type_="boolean", desc="Rolled away from: never promoted again"),
            AGE,
            _col("Digest", ".spec.digest", priority=1),
            _col("CI Run", ".spec.source.ciRunId", priority=1),
            _col("Approver", ".status.approvedBy", priority=1),
            _col("Message", ".status.message", priority=1),
        ],
        immutable_spec=True,
        selectable_fields=[".spec.pipeline"],
        root_rules=[_NAME_FITS_A_LABEL],
    ),
    Kind(
        kind="Approval",
        plural="approvals",
        short_names=["appr"],
        spec=ApprovalSpec,
        status=ApprovalStatus,
        description="One person's consent for one release to enter one stage. Immutable.",
        columns=[
            _col("Release", ".spec.release"),
            _col("Stage", ".spec.stage"),
            _col("Counted", ".status.counted", type_="boolean"),
            _col("Reason", '.status.conditions[?(@.type=="Counted")].reason'),
            AGE,
            _col("Comment", ".spec.comment", priority=1),
        ],
        immutable_spec=True,
        selectable_fields=[".spec.release"],
    ),
    Kind(
        kind="Rollback",
        plural="rollbacks",
        short_names=["rb"],
        spec=RollbackSpec,
        status=RollbackStatus,
        description="A request to put a stage back on an earlier release (by default the previous one "
        "verified there). The status records the plan, the from/to commits and digests, timings and "
        "the verdict. Immutable.",
        columns=[
            _col("Pipeline", ".spec.pipeline"),
            _col("Stage", ".status.plan.stage"),
            _col("From", ".status.fromShortCommit"),
            _col("To", ".status.toShortCommit"),
            _col("Plan", ".status.plan.action"),
            _col("Phase", ".status.phase"),
            _col("Duration", ".status.durationSeconds", type_="number", desc="Seconds, planned to finished"),
            AGE,
            _col("Reason", ".spec.reason", priority=1),
            _col("Message", ".status.message", priority=1),
        ],
        immutable_spec=True,
        selectable_fields=[".spec.pipeline"],
        root_rules=[_NAME_FITS_A_LABEL],
    ),
    Kind(
        kind="NotificationChannel",
        plural="notificationchannels",
        short_names=["nch"],
        spec=NotificationChannelSpec,
        status=NotificationChannelStatus,
        description="Where Conveyor tells people what happened to this namespace's pipelines (Slack, "
        "Teams, a webhook; the URL only in a Secret), which triggers, and — in status — what it "
        "delivered, so each message goes once across restarts.",
        columns=[
            _col("Type", ".spec.type"),
            _col("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            _col("Delivering", '.status.conditions[?(@.type=="Delivering")].reason'),
            _col("Backlog", ".status.backlog", type_="integer", desc="Messages due, not yet delivered"),
            _col("Delivered", ".status.delivered", type_="integer", desc="Messages delivered"),
            _col("Last", ".status.lastDeliveredAt", type_="date", desc="Last delivery"),
            AGE,
            _col("Message", '.status.conditions[?(@.type=="Delivering")].message', priority=1),
        ],
    ),
]


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = schema_of(kind.spec)
    spec_schema["description"] = (kind.spec.__doc__ or "").strip()
    if kind.immutable_spec:
        spec_schema.setdefault("x-kubernetes-validations", []).append(
            cel(
                "self == oldSelf",
                f"spec is immutable: {'an' if kind.kind[0] in 'AEIOU' else 'a'} {kind.kind} is a record; "
                "create a new one instead",
            )
        )
    status_schema = schema_of(kind.status)
    status_schema["description"] = (kind.status.__doc__ or "").strip()
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if kind.root_rules:
        root["x-kubernetes-validations"] = copy.deepcopy(kind.root_rules)
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": kind.columns,
        "schema": {"openAPIV3Schema": root},
    }
    if kind.selectable_fields:
        version["selectableFields"] = [{"jsonPath": p} for p in kind.selectable_fields]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": kind.short_names,
                "categories": ["conveyor"],
            },
            "versions": [version],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind."""
    return {f"{GROUP}_{k.plural}.yaml": crd(k) for k in KINDS}
