"""Metrics, scraped from the operator's /metrics after real promotions, a failure and a rollback."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.story import Story, short

pytestmark = pytest.mark.cluster


def scrape(story: Story) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert story.operator is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{story.operator.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape_until(story: Story, predicate, timeout: float = 10.0) -> dict:
    """Scrape until `predicate` holds (the endpoint offers nothing to watch); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(story)
        if predicate(metrics) or time.monotonic() > deadline:
            return metrics
        time.sleep(0.1)  # polling an HTTP endpoint, bounded by the deadline above


def value(metrics: dict, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= set(ls))


def test_delivery_and_controller_metrics_after_promotions_a_failure_and_a_rollback(story: Story):
    story.given_deployments()
    story.given_pipeline(
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 5},
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ]
    )
    story.given_operator()
    story.promote("shop-v1", label="v1")
    story.promote("shop-v2", label="v2")
    story.when_release("shop-bad", label="bad", digest_prefix="dead")
    story.then_condition("releases", "shop-bad", "Failed", reason="RolloutTimedOut")
    story.when_rollback("undo", stage="prod", verify=False)
    story.then_rollback_phase("undo", "Succeeded")
    ns = {"namespace": story.ns, "pipeline": "shop"}

    # Metrics are recorded just after the status write the test saw: wait for the rollback's.
    m = scrape_until(story, lambda m: value(m, "conveyor_time_to_restore_seconds_count", **ns) >= 1)
    assert value(m, "conveyor_deployments_total", stage="staging", result="verified", **ns) == 2
    assert value(m, "conveyor_deployments_total", stage="prod", result="verified", **ns) == 2
    assert value(m, "conveyor_deployments_total", stage="staging", result="failed", **ns) == 1
    assert value(m, "conveyor_production_changes_total", outcome="ok", **ns) == 2
    assert value(m, "conveyor_production_changes_total", outcome="rolled_back", **ns) == 1
    assert value(m, "conveyor_lead_time_seconds_count", **ns) == 2
    assert value(m, "conveyor_time_to_restore_seconds_count", **ns) == 1
    assert value(m, "conveyor_verdict_latency_seconds_count", **ns) == 1
    # the commit in each stage, one series per stage
    assert value(m, "conveyor_stage_info", stage="prod", commit=short("v1"), **ns) == 1
    assert value(m, "conveyor_stage_info", stage="prod", commit=short("v2"), **ns) == 0
    assert value(m, "conveyor_stage_info", stage="staging", commit=short("v2"), **ns) == 1
    assert value(m, "conveyor_pipeline_in_parity", **ns) == 1
    assert value(m, "conveyor_releases_in_flight", **ns) == 0
    # controller health, named like controller-runtime's
    assert value(m, "controller_runtime_reconcile_total", controller="pipeline") > 5
    assert value(m, "controller_runtime_reconcile_time_seconds_count", controller="pipeline") > 5
    # one pipeline: at most one pass runs at a time (a watch event may have started one right now)
    assert value(m, "controller_runtime_active_workers", controller="pipeline") in (0, 1)
    # v1 and v2 set the image in both stages, the failed release in staging, the rollback in prod
    assert value(m, "conveyor_api_requests_total", verb="patch", kind="deployments", code="200") == 6
    assert value(m, "conveyor_api_request_duration_seconds_count", verb="patch", kind="deployments") == 6
    # passes read the watch-fed cache: no pass lists or gets Conveyor's own objects
    for verb in ("list", "get"):
        for plural in ("pipelines", "releases", "approvals", "rollbacks"):
            assert value(m, "conveyor_api_requests_total", verb=verb, kind=plural) == 0, (verb, plural)
