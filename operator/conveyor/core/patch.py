"""Minimal JSON merge patches (RFC 7386): write only what changed, and remove what disappeared."""

from __future__ import annotations

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning `old` into `new` ({} when they are equal).

    Keys missing from `new` become null (deleted); nested objects are diffed; lists are replaced
    whole, as merge patch semantics require.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch
