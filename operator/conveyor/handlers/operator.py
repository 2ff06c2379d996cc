"""Operator process: kopf settings and the startup that announces the operator is alive."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from conveyor import __version__

log = logging.getLogger("conveyor")

# kopf keeps per-handler progress and the last-handled spec in annotations. The prefix is ours from
# day one: changing it later would make kopf re-run every handler on every object.
ANNOTATION_PREFIX = "conveyor.dev"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Apply Conveyor's kopf settings and log that the operator is alive."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.reporting_component = "conveyor"
    # Watches that go quiet are restarted rather than trusted forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 330
    log.info("conveyor %s is alive", __version__)


def run_operator(*, namespaces: list[str], liveness_endpoint: str | None, metrics_port: int) -> None:
    """Run the operator in the foreground until interrupted."""
    del metrics_port  # metrics arrive with the metrics issue; the flag is accepted already.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness_endpoint,
        )
    )
