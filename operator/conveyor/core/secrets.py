"""What Conveyor may know of a Secret: who makes it — never its data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SecretInfo:
    """The mechanism behind one Secret."""

    exists: bool
    owner_kind: str | None = None  # e.g. ExternalSecret, SealedSecret; None: a plain Secret
    store_kind: str | None = None  # ExternalSecret: spec.secretStoreRef.kind
    remote_keys: tuple[str, ...] = ()  # ExternalSecret: remote key paths, as written

    @classmethod
    def from_objects(cls, metadata: dict[str, Any] | None, external: dict[str, Any] | None) -> SecretInfo:
        """From a Secret's metadata (PartialObjectMetadata) and, when it has one, its ExternalSecret."""
        if metadata is None:
            return cls(exists=False)
        if metadata.get("conveyor.dev/forbidden"):
            # Not allowed to read Secrets: an ExternalSecret of the same name still tells the mechanism.
            if external is None:
                return cls(exists=True, owner_kind="unknown (no Secret access)")
            metadata = {"ownerReferences": [{"kind": "ExternalSecret", "controller": True}]}
        owner, _ = owner_of(metadata)
        if owner != "ExternalSecret" or external is None:
            return cls(exists=True, owner_kind=owner)
        spec = external.get("spec") or {}
        keys = [d.get("remoteRef", {}).get("key", "") for d in spec.get("data") or []]
        keys += [(d.get("extract") or d.get("find") or {}).get("key", "") for d in spec.get("dataFrom") or []]
        return cls(
            exists=True,
            owner_kind=owner,
            store_kind=(spec.get("secretStoreRef") or {}).get("kind"),
            remote_keys=tuple(k for k in keys if k),
        )


def owner_of(metadata: dict[str, Any]) -> tuple[str | None, str | None]:
    """(kind, name) of the object that controls this one, if any."""
    refs = metadata.get("ownerReferences") or []
    ref = next((o for o in refs if o.get("controller")), refs[0] if refs else None)
    return (ref.get("kind"), ref.get("name")) if ref else (None, None)
