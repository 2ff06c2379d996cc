"""Validate a status against the generated CRD's openAPIV3Schema — the subset Conveyor's CRDs use.

What the API server would refuse (type, enum, required, maxLength/minLength, maxItems/minItems,
maxProperties, pattern, date-time format) is an error; so is a field the schema does not declare
(the API server would prune it silently: the status written is not the status stored).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"


@cache
def status_schema(plural: str) -> dict[str, Any]:
    """The openAPIV3Schema of `status` for a Conveyor kind (releases, approvals, rollbacks, pipelines)."""
    doc = yaml.safe_load((CRDS / f"conveyor.dev_{plural}.yaml").read_text())
    version = next(v for v in doc["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _date_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def errors(schema: dict[str, Any], value: Any, path: str = "status") -> list[str]:
    """Every way `value` breaks `schema` (empty: valid)."""
    out: list[str] = []
    if value is None:
        if not schema.get("nullable"):
            out.append(f"{path}: null is not allowed")
        return out
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return [f"{path}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: {len(value)} characters, more than maxLength {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: {len(value)} characters, fewer than minLength {schema['minLength']}")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _date_time(value):
            out.append(f"{path}: {value!r} is not a date-time")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: {len(value)} items, more than maxItems {schema['maxItems']}")
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: {len(value)} items, fewer than minItems {schema['minItems']}")
        items = schema.get("items") or {}
        for i, item in enumerate(value):
            out += errors(items, item, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(f"{path}: {len(value)} properties, more than maxProperties {schema['maxProperties']}")
        for req in schema.get("required") or []:
            if req not in value:
                out.append(f"{path}: required field {req} is missing")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                out += errors(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += errors(extra, item, f"{path}.{key}")
            elif not (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                out.append(f"{path}.{key}: not in the schema (the API server would prune it)")
    return out


def status_errors(plural: str, status: dict[str, Any]) -> list[str]:
    """Every way a status (wire form) breaks its CRD's schema."""
    return errors(status_schema(plural), status)
