"""Announce transitions: a Kubernetes Event with machine-readable annotations, and one JSON log line.

Events expire (about an hour); the JSON log line is the durable stream cluster logging keeps, and the
object's status history is the record that travels with it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

from conveyor.api.common import API_VERSION
from conveyor.core.conditions import cut_bytes
from conveyor.kube.client import Kube

audit = logging.getLogger("conveyor.audit")
log = logging.getLogger("conveyor.kube")

COMPONENT = "conveyor"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus any `fields` passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def announce(
    kube: Kube,
    *,
    namespace: str,
    kind: str,
    name: str,
    uid: str,
    type_: str,
    reason: str,
    message: str,
    pipeline: str,
    stage: str | None = None,
    release: str | None = None,
    commit: str | None = None,
    digest: str | None = None,
    ci_run: str | None = None,
    actor: str = "conveyor",
    now: datetime,
    recovered: bool = False,
) -> None:
    """Post an Event about the object and write the matching JSON audit line. Never raises.
    `recovered`: a transition recorded before a crash lost its Event, announced now (the audit line
    says so; `now` is the transition's own time)."""
    fields = {
        "event": reason,
        "type": type_,
        "actor": actor,
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "pipeline": pipeline,
        "stage": stage,
        "release": release,
        "commit": commit,
        "digest": digest,
        "ciRun": ci_run,
        "recovered": True if recovered else None,
    }
    audit.info(message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})
    annotations = {
        f"conveyor.dev/{key}": value
        for key, value in (
            ("actor", actor),
            ("pipeline", pipeline),
            ("stage", stage),
            ("release", release),
            ("commit", commit),
        )
        if value
    }
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{secrets.token_hex(8)}",
            "namespace": namespace,
            "annotations": annotations,
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": type_,
        "reason": reason,
        "message": cut_bytes(message),  # the Event API counts bytes: a multi-byte message still posts
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": INSTANCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": reason,
        "count": 1,
    }
    try:
        kube.create_event(namespace, body)
    except Exception:  # an Event is best effort; status and the audit line above are the record
        log.warning("could not post Event %s on %s/%s", reason, kind, name, exc_info=True)
