"""Prometheus metrics on the operator's metrics port.

Controller health uses controller-runtime's names, so existing dashboards and alerts fit. Delivery
(DORA) metrics are derived from Conveyor's own transitions — the same stream that becomes Events,
status history and audit log lines — so they cannot disagree with the record. Labels are bounded:
namespace, pipeline, stage, result, kind, verb — never a release, commit or user (the one
exception, the info metric of the commit in each stage, keeps exactly one series per stage).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from conveyor.api.pipeline import Pipeline, PipelineStatus
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core.plan import Emit
from conveyor.kube.apimetrics import API_LATENCY, API_REQUESTS

CONTROLLER = "pipeline"

# --- controller health (controller-runtime names) ---------------------------------------------------
RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Reconciliations by controller and result.",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total", "Reconciliation errors by controller.", ["controller"]
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Time per reconciliation.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Per pipeline, so a hot loop shows as one pipeline's rate (a pass with nothing new to do is cheap, but
# thousands a minute of them starve the others). Bounded: one series per live pipeline, removed with it.
PIPELINE_PASSES = Counter(
    "conveyor_pipeline_passes_total",
    "Reconcile passes per pipeline (successful or not).",
    ["namespace", "pipeline"],
)
# --- notifications (handlers/notify.py): bounded labels, one series per channel x trigger x result.
NOTIFICATIONS = Counter(
    "conveyor_notifications_total",
    "Notification attempts and their ends, by channel (namespace/name), trigger and result: delivered, "
    "retried (an attempt failed and will be repeated), rejected, expired, skipped.",
    ["channel", "trigger", "result"],
)
NOTIFICATION_LATENCY = Histogram(
    "conveyor_notification_latency_seconds",
    "From the transition a message tells (Conveyor's clock) to its delivery, by channel type.",
    ["type"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
NOTIFICATION_BACKLOG = Gauge(
    "conveyor_notification_backlog", "Messages due and not yet delivered, per channel.", ["channel"]
)
ACTIVE_WORKERS = Gauge("controller_runtime_active_workers", "Reconciliations running now.", ["controller"])
CLUSTER_SEEN = Gauge(
    "conveyor_cluster_seen",
    "1 while the stages in this other cluster can be seen (its Secret is usable, its watches listed), "
    "else 0; alert on 0 for long (docs/multi-cluster.md).",
    ["cluster"],
)
LEADER = Gauge("conveyor_leader", "1 while this replica holds the Lease and acts, else 0 (standby).")
LEADER_TRANSITIONS = Counter(
    "conveyor_leader_transitions_total",
    "Times this replica started leading (to=leader) or stopped (to=standby).",
    ["to"],
)
RELEASES_IN_FLIGHT = Gauge(
    "conveyor_releases_in_flight", "Releases not yet finished, per pipeline.", ["namespace", "pipeline"]
)

# --- delivery (DORA) --------------------------------------------------------------------------------
DEPLOYMENTS = Counter(
    "conveyor_deployments_total",
    "Stage promotions by result (verified or failed).",
    ["namespace", "pipeline", "stage", "result"],
)
PRODUCTION_CHANGES = Counter(
    "conveyor_production_changes_total",
    "Releases that changed the last stage, by outcome: ok, failed, rolled_back (change failure rate = "
    "(failed + rolled_back) / all).",
    ["namespace", "pipeline", "outcome"],
)
LEAD_TIME = Histogram(
    "conveyor_lead_time_seconds",
    "Lead time for changes: commit time to verified in the last stage.",
    ["namespace", "pipeline"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800),
)
TIME_TO_RESTORE = Histogram(
    "conveyor_time_to_restore_seconds",
    "Failure (or rollback requested) to rollback completed.",
    ["namespace", "pipeline"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
VERDICT_LATENCY = Histogram(
    "conveyor_verdict_latency_seconds",
    "Failure signal (deadline reached, or the change observed) to verdict recorded.",
    ["namespace", "pipeline"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
STAGE_INFO = Gauge(
    "conveyor_stage_info",
    "The commit verified in each stage now (value 1).",
    ["namespace", "pipeline", "stage", "commit"],
)
IN_PARITY = Gauge(
    "conveyor_pipeline_in_parity", "1 when every stage has the same shape, else 0.", ["namespace", "pipeline"]
)
PARITY_DIFFERENCES = Gauge(
    "conveyor_pipeline_parity_differences",
    "Differences between the pipeline's stages.",
    ["namespace", "pipeline"],
)

__all__ = ["API_LATENCY", "API_REQUESTS", "record_pass", "serve"]

_FAILURES = {
    "MigrationFailed",
    "MigrationJobMissing",
    "RolloutFailed",
    "RolloutTimedOut",
    "SmokeTestFailed",
    "SmokeTestTimedOut",
    "SmokeTestJobMissing",
    "JobNameConflict",
}
_stage_commit: dict[tuple[str, str, str], str] = {}


Probe = Callable[[], tuple[bool, str]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no log line each
        pass


def serve(port: int, probes: dict[str, Probe] | None = None) -> WSGIServer | None:
    """Serve /metrics on all interfaces (0: do not serve), and each probe at its path (/healthz,
    /readyz): 200 with its reason when it holds, 503 when not."""
    if not port:
        return None
    metrics_app = make_wsgi_app()
    probes = probes or {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        ok, why = probe()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [f"{'ok' if ok else 'failing'}: {why}\n".encode()]

    server = make_server("0.0.0.0", port, app, handler_class=_Quiet)  # noqa: S104 (a pod's probes)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


def record_pass(
    pipeline: Pipeline,
    status: PipelineStatus,
    events: Iterable[Emit],
    releases: list[Release],
    rollbacks: list[Rollback],
    *,
    pass_started: datetime,
    recorded: datetime,
) -> None:
    """Update delivery metrics from one pass's transitions (called once they are written)."""
    ns, name = pipeline.metadata.namespace, pipeline.metadata.name
    last = pipeline.spec.stages[-1].name
    by_name = {r.metadata.name: r for r in releases}
    for e in events:
        release = by_name.get(e.release or "")
        if e.kind == "Release" and e.reason == "StageVerified" and e.stage:
            DEPLOYMENTS.labels(ns, name, e.stage, "verified").inc()
            if e.stage == last and release is not None:
                PRODUCTION_CHANGES.labels(ns, name, "ok").inc()
                start = release.spec.source.commit_time or release.metadata.creation_timestamp
                if start is not None:
                    LEAD_TIME.labels(ns, name).observe(max(0.0, (recorded - start).total_seconds()))
        elif e.kind == "Release" and e.reason in _FAILURES and e.stage:
            DEPLOYMENTS.labels(ns, name, e.stage, "failed").inc()
            if e.stage == last:
                PRODUCTION_CHANGES.labels(ns, name, "failed").inc()
            signal = pass_started
            if e.reason == "RolloutTimedOut" and release is not None:
                rec = next((r for r in release.status.stages if r.name == e.stage), None)
                stage = pipeline.stage(e.stage)
                if rec is not None and rec.deployed_at and stage is not None:
                    from datetime import timedelta

                    signal = rec.deployed_at + timedelta(seconds=stage.rollout_deadline_seconds)
            VERDICT_LATENCY.labels(ns, name).observe(max(0.0, (recorded - signal).total_seconds()))
        elif e.kind == "Rollback" and e.reason == "RollbackCompleted":
            rb = next((r for r in rollbacks if r.metadata.name == e.name), None)
            if rb is not None and rb.status.plan and rb.status.plan.stage == last:
                PRODUCTION_CHANGES.labels(ns, name, "rolled_back").inc()
            if rb is not None:
                start = rb.metadata.creation_timestamp or pass_started
                failed = by_name.get(rb.status.plan.from_release or "") if rb.status.plan else None
                rec = (
                    next((r for r in failed.status.stages if r.name == rb.status.plan.stage), None)
                    if failed and rb.status.plan
                    else None
                )
                if rec is not None and rec.phase == "Failed" and rec.finished_at:
                    start = min(start, rec.finished_at)
                TIME_TO_RESTORE.labels(ns, name).observe(max(0.0, (recorded - start).total_seconds()))
    live = sum(
        1
        for r in releases
        if r.status.phase
        not in (None, "Succeeded", "Failed", "Superseded", "RolledBack", "Cancelled", "Vetoed")
    )
    RELEASES_IN_FLIGHT.labels(ns, name).set(live)
    for state in status.stages:
        key = (ns, name, state.name)
        commit = state.short_commit or "none"
        old = _stage_commit.get(key)
        if old != commit:
            if old is not None:
                STAGE_INFO.remove(ns, name, state.name, old)
            STAGE_INFO.labels(ns, name, state.name, commit).set(1)
            _stage_commit[key] = commit
    if status.parity.in_parity is not None:
        IN_PARITY.labels(ns, name).set(1 if status.parity.in_parity else 0)
        PARITY_DIFFERENCES.labels(ns, name).set(len(status.parity.differences))
