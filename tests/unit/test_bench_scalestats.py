"""bench/scalestats.py: the pure helpers of the scale benchmark (request counts, /proc, end states)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from scalestats import (
    audit_events,
    audit_files,
    audit_records,
    audit_requests,
    operator_requests,
    parse_time,
    proc_cpu_seconds,
    proc_memory_kb,
    wrong_end_states,
)

METRICS = """\
# HELP conveyor_api_requests_total Kubernetes API requests by verb, kind and code.
# TYPE conveyor_api_requests_total counter
conveyor_api_requests_total{code="200",kind="releases",verb="list"} 10.0
conveyor_api_requests_total{code="404",kind="deployments",verb="get"} 1.0
conveyor_api_requests_created{code="200",kind="releases",verb="list"} 1.7e9
"""


def test_operator_requests_are_the_difference_between_scrapes_all_codes_together():
    after = METRICS.replace("} 10.0", "} 14.0") + (
        'conveyor_api_requests_total{code="200",kind="deployments",verb="get"} 3.0\n'
    )
    assert operator_requests(METRICS, after) == Counter({("list", "releases"): 4, ("get", "deployments"): 3})


def event(aid: str, stage: str, at: str, user: str = "op", verb: str = "get", **ref: str) -> dict:
    return {
        "auditID": aid,
        "stage": stage,
        "requestReceivedTimestamp": at,
        "user": {"username": user},
        "userAgent": "conveyor/0.1 python",
        "verb": verb,
        "objectRef": ref,
        "requestURI": "/readyz",
    }


def test_audit_counts_each_request_once_in_its_window_by_subresource(tmp_path: Path):
    log = tmp_path / "audit.log"
    rotated = tmp_path / "audit-2026-11-27T01-00-00.000.log"
    rotated.write_text(
        json.dumps(event("a", "ResponseComplete", "2026-11-27T01:00:00.5Z", resource="jobs")) + "\n"
    )
    lines = [
        # a watch: one line when it starts, one when it ends
        event("w", "ResponseStarted", "2026-11-27T01:00:01.000000001Z", verb="watch", resource="releases"),
        event("w", "ResponseComplete", "2026-11-27T01:00:01.000000001Z", verb="watch", resource="releases"),
        event(
            "s",
            "ResponseComplete",
            "2026-11-27T01:00:02Z",
            verb="patch",
            resource="releases",
            subresource="status",
        ),
        event("x", "ResponseComplete", "2026-11-27T01:00:02Z", user="admin"),
        event("late", "ResponseComplete", "2026-11-27T01:00:09Z", resource="jobs"),
    ]
    log.write_text("\n".join(json.dumps(e) for e in lines) + "\n{torn")
    assert audit_files(log) == [rotated, log]
    records = audit_records(audit_events(audit_files(log)))
    start, end = parse_time("2026-11-27T01:00:00Z"), parse_time("2026-11-27T01:00:05Z")
    counts = audit_requests(records, start, end)
    assert counts["op"] == Counter(
        {("get", "jobs"): 1, ("watch", "releases"): 1, ("patch", "releases/status"): 1}
    )
    assert counts["admin"] == Counter({("get", "/readyz"): 1})
    assert set(audit_requests(records, start, end, by_agent=True)) == {"op (conveyor)", "admin (conveyor)"}


def test_proc_readings_of_this_process():
    mem = proc_memory_kb(os.getpid())
    assert mem["VmHWM"] >= mem["VmRSS"] > 0
    assert proc_cpu_seconds(os.getpid()) > 0


def test_proc_stat_with_a_command_name_holding_spaces_and_parentheses(tmp_path: Path):
    (tmp_path / "7").mkdir()
    fields = ["S"] + ["0"] * 10 + ["300", "100"] + ["0"] * 30
    (tmp_path / "7" / "stat").write_text("7 (a (b) c) " + " ".join(fields))
    assert proc_cpu_seconds(7, proc=tmp_path) == 400 / os.sysconf("SC_CLK_TCK")


def release(name: str, phase: str, created: str, accepted: str | None = None, pipeline: str = "app") -> dict:
    status: dict = {"phase": phase, "message": f"{name} says"}
    if accepted:
        status["acceptedAt"] = accepted
    return {
        "metadata": {"namespace": "t", "name": name, "creationTimestamp": created},
        "spec": {"pipeline": pipeline, "digest": f"sha256:{name}"},
        "status": status,
    }


def test_end_states_newest_by_the_operators_order_must_be_in_prod_others_superseded_or_succeeded():
    # Same second: the one accepted later is the newer, whatever its name.
    older = release("r1", "Superseded", "2026-11-27T01:00:00Z", "2026-11-27T01:00:00.1Z")
    newer = release("r0", "Succeeded", "2026-11-27T01:00:00Z", "2026-11-27T01:00:00.2Z")
    prod = {("t", "app"): "repo@sha256:r0"}
    assert wrong_end_states([older, newer], prod, "repo") == []
    assert wrong_end_states([older, newer], {("t", "app"): "repo@sha256:r1"}, "repo")[0]["release"] == "t/r0"
    failed = release("r2", "Failed", "2026-11-27T00:59:00Z")
    wrong = wrong_end_states([older, newer, failed], prod, "repo")
    assert wrong == [
        {"release": "t/r2", "phase": "Failed", "why": "older release ended Failed", "message": "r2 says"}
    ]


def test_parse_time_takes_nanoseconds_and_offsets():
    assert parse_time("2026-11-27T01:00:00.123456789Z") == datetime(2026, 11, 27, 1, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("2026-11-27T02:00:00+01:00") == datetime(2026, 11, 27, 1, tzinfo=UTC)


def test_time_breakdown_splits_each_verified_stage_into_queue_rollout_handoff_and_smoke_test():
    from scalestats import time_breakdown

    def at(s: float) -> str:
        return f"2026-11-27T10:00:{s:09.6f}Z"

    release = {
        "metadata": {"creationTimestamp": "2026-11-27T10:00:00Z"},
        "status": {
            "stages": [
                {
                    "name": "staging",
                    "phase": "Verified",
                    "startedAt": at(1),
                    "deployedAt": at(1.5),
                    "rolledOutAt": at(4),
                    "smokeTestStartedAt": at(4.25),
                    "verifiedAt": at(6),
                },
                {
                    "name": "prod",
                    "phase": "Verified",
                    "startedAt": at(10),
                    "deployedAt": at(10),
                    "rolledOutAt": at(12),
                    "verifiedAt": at(12),
                },
                {"name": "never", "phase": "RollingOut", "startedAt": at(13)},
            ]
        },
    }
    out = time_breakdown([release])
    assert set(out) == {"staging", "prod"}  # a stage not verified is not counted
    assert out["staging"] == {"queued": [1.0], "rollout": [2.5], "smoke_test": [1.75], "handoff": [0.25]}
    assert out["prod"]["queued"] == [4.0]  # counted from staging's verification
    assert out["prod"]["rollout"] == [2.0]
    assert out["prod"]["smoke_test"] == []
