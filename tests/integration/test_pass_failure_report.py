"""A pipeline whose passes keep failing says so on itself — written through the real API server's
status subresource, with the condition conventions (transition time kept while it stays False)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.api.common import GROUP, VERSION
from conveyor.handlers.reconcile import report_pass_failure
from conveyor.kube.client import Kube
from support.builders import pipeline_dict

pytestmark = pytest.mark.cluster


def test_a_failing_pass_is_reported_on_the_pipeline_and_its_transition_time_kept(api_client, crds, namespace):
    kube = Kube(api_client)
    body = pipeline_dict("shop", namespace, stages=[{"name": "prod", "namespace": "shop-prod"}])
    kube.create_custom_object("pipelines", namespace, body)
    first = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    report_pass_failure(kube, namespace, "shop", "2 passes in a row failed: boom", clock=lambda: first)
    report_pass_failure(
        kube, namespace, "shop", "3 passes in a row failed: boom", clock=lambda: datetime.now(UTC)
    )
    stored = api_client_get(kube, namespace)
    condition = next(c for c in stored["status"]["conditions"] if c["type"] == "Reconciled")
    assert (condition["status"], condition["reason"]) == ("False", "ReconcileFailed")
    assert condition["message"] == "3 passes in a row failed: boom"
    assert condition["lastTransitionTime"].startswith("2026-11-27T01:00:00")  # still False since the first
    assert condition["observedGeneration"] == stored["metadata"]["generation"]


def api_client_get(kube: Kube, namespace: str) -> dict:
    obj = kube.get_custom("pipelines", namespace, "shop")
    assert obj is not None, f"{GROUP}/{VERSION} pipeline shop vanished"
    return obj
