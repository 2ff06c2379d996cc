"""The objects a person's action creates — one definition for `kubectl conveyor` and the dashboard,
so an approval or a rollback is the same object whichever way it was given."""

from __future__ import annotations

from typing import Any

from conveyor.api.common import GROUP, VERSION


def approval_body(
    release: dict[str, Any], stage: str, comment: str | None = None, reviewed_by: str | None = None
) -> dict[str, Any]:
    """An Approval for the release as it is now — its uid and digest, owned by it — so it never counts
    for other content (a re-created release of the same name). The approver is not in it: the API
    server stamps who created it."""
    name = release["metadata"]["name"]
    uid = release["metadata"]["uid"]
    spec: dict[str, Any] = {
        "release": name,
        "stage": stage,
        "releaseUID": uid,
        "digest": release["spec"]["digest"],
    }
    if comment:
        spec["comment"] = comment
    if reviewed_by:
        spec["reviewedBy"] = reviewed_by
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Approval",
        "metadata": {
            "generateName": f"{name}-{stage}-"[:58],
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Release", "name": name, "uid": uid}
            ],
        },
        "spec": spec,
    }


def rollback_body(
    pipeline: str,
    stage: str | None = None,
    to_release: str | None = None,
    reason: str | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """A Rollback of a pipeline's stage (default: its last), to a release (default: the previous one
    verified there). The requester is stamped by the API server."""
    spec: dict[str, Any] = {"pipeline": pipeline, "verify": verify}
    for key, value in (("stage", stage), ("toRelease", to_release), ("reason", reason)):
        if value:
            spec[key] = value
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollback",
        "metadata": {"generateName": f"{pipeline}-rollback-"[:58]},
        "spec": spec,
    }
