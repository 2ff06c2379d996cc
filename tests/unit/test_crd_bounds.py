"""Every user-supplied string and list in the CRDs is bounded (issue #10): one object must never be
big enough to wedge a pass, and CEL rules over bounded fields stay cheap. This walks the generated
schemas, so a new spec field without a bound fails here."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from conveyor.api.common import KubeModel
from conveyor.api.crd import KINDS, crd, schema_of


def unbounded(schema: dict[str, Any], path: str) -> list[str]:
    """Paths under `schema` whose strings, lists or maps have no upper bound."""
    found: list[str] = []
    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        found.append(f"{path}: free-form (x-kubernetes-preserve-unknown-fields); spell out its fields")
    if kind == "string" and "maxLength" not in schema and "enum" not in schema:
        found.append(f"{path}: string without maxLength")
    if schema.get("x-kubernetes-int-or-string") and "maxLength" not in schema:
        found.append(f"{path}: int-or-string without maxLength")
    if kind == "array":
        if "maxItems" not in schema:
            found.append(f"{path}: array without maxItems")
        found += unbounded(schema.get("items", {}), f"{path}[*]")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                found.append(f"{path}: map without maxProperties")
            found += unbounded(extra, f"{path}[*]")
        for name, sub in (schema.get("properties") or {}).items():
            found += unbounded(sub, f"{path}.{name}")
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_spec_string_list_and_map_is_bounded(kind):
    spec = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert unbounded(spec, "spec") == []


def test_the_walk_finds_a_field_without_a_bound():
    class Loose(KubeModel):
        note: str = ""
        tags: list[str] = Field(default_factory=list)
        labels: dict[str, str] = Field(default_factory=dict)
        bounded: list[str] = Field(default_factory=list, max_length=3)

    assert unbounded(schema_of(Loose), "spec") == [
        "spec.note: string without maxLength",
        "spec.tags: array without maxItems",
        "spec.tags[*]: string without maxLength",
        "spec.labels: map without maxProperties",
        "spec.labels[*]: string without maxLength",
        "spec.bounded[*]: string without maxLength",
    ]
