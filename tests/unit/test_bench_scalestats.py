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


# --- the two-cluster variant (--clusters 2) -------------------------------------------------------


def test_cluster_secret_is_argo_cds_format_with_the_ca_base64_and_the_pipeline_namespaces():
    import base64

    from scalestats import cluster_secret

    body = cluster_secret(
        "prod-b",
        secret_name="cluster-prod-b",
        server="https://127.0.0.1:6443",
        token="T",
        ca_pem=b"-----BEGIN CERTIFICATE-----\n",
        pipeline_namespaces=["team-a", "team-b"],
    )
    assert body["metadata"]["labels"] == {"conveyor.dev/cluster-secret": "true"}
    assert body["metadata"]["annotations"] == {"conveyor.dev/pipeline-namespaces": "team-a,team-b"}
    data = body["stringData"]
    assert (data["name"], data["server"]) == ("prod-b", "https://127.0.0.1:6443")
    config = json.loads(data["config"])
    assert config["bearerToken"] == "T"
    assert base64.b64decode(config["tlsClientConfig"]["caData"]) == b"-----BEGIN CERTIFICATE-----\n"


def staged(name: str, pipeline: str, *stages: dict) -> dict:
    return {
        "metadata": {"namespace": "t", "name": name},
        "spec": {"pipeline": pipeline},
        "status": {"stages": list(stages)},
    }


def test_outage_is_due_once_half_the_pipelines_have_a_release_in_the_remote_stage():
    from scalestats import outage_due

    in_prod = {"name": "prod", "startedAt": "2026-11-27T10:00:00Z"}
    waiting = {"name": "prod"}  # a record without startedAt has not entered the stage
    releases = [
        staged("r0-a", "a", {"name": "staging", "startedAt": "x"}, in_prod),
        staged("r1-a", "a", in_prod),  # the same pipeline counts once
        staged("r0-b", "b", {"name": "staging", "startedAt": "x"}),
        staged("r0-c", "c", waiting),
    ]
    assert not outage_due(releases, "prod", 4)  # 1 of 4 pipelines
    assert outage_due(releases, "prod", 2)  # 1 of 2
    assert outage_due([*releases, staged("r0-d", "d", in_prod)], "prod", 4)  # 2 of 4
    assert not outage_due([], "prod", 0)


def test_promotions_and_requests_per_cluster():
    from scalestats import requests_by_cluster, stage_promotions_by_stage

    verified = {"phase": "Verified"}
    releases = [
        staged("r0", "a", {"name": "staging"} | verified, {"name": "prod"} | verified),
        staged("r1", "a", {"name": "staging"} | verified, {"name": "prod", "phase": "RollingOut"}),
        {},  # a release never seen
    ]
    by_stage = stage_promotions_by_stage(releases)
    assert by_stage == Counter({"staging": 2, "prod": 1})
    out = requests_by_cluster({"control": 30, "prod-b": 3}, 3, {"control": 2, "prod-b": 1})
    assert out["control"] == {
        "requests": 30,
        "per_promotion": 10.0,
        "stage_promotions_here": 2,
        "per_promotion_here": 15.0,
    }
    assert out["prod-b"]["per_promotion"] == 1.0
    assert out["prod-b"]["per_promotion_here"] == 3.0
    none = requests_by_cluster({"prod-b": 3}, 0, {})
    assert none["prod-b"]["per_promotion"] is None
    assert none["prod-b"]["per_promotion_here"] is None


def test_after_the_outage_first_progress_in_the_stage_and_first_request_of_the_identity():
    from scalestats import AuditRecord, first_after, first_request_after

    back = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)
    releases = [
        staged(
            "r0",
            "a",
            {"name": "prod", "deployedAt": "2026-11-27T10:00:10Z", "rolledOutAt": "2026-11-27T10:01:20Z"},
            {"name": "staging", "verifiedAt": "2026-11-27T10:00:40Z"},  # another stage: not counted
        ),
        staged("r1", "a", {"name": "prod", "smokeTestStartedAt": "2026-11-27T10:01:00.5Z"}),
        {},
    ]
    assert first_after(releases, "prod", back) == datetime(2026, 11, 27, 10, 1, 0, 500000, tzinfo=UTC)
    assert first_after(releases, "prod", back, keys=("rolledOutAt",)) == datetime(
        2026, 11, 27, 10, 1, 20, tzinfo=UTC
    )
    assert first_after(releases, "qa", back) is None
    records = [
        AuditRecord(datetime(2026, 11, 27, 10, 0, 31, tzinfo=UTC), "other", "x", "list", "pods"),
        AuditRecord(datetime(2026, 11, 27, 10, 0, 33, tzinfo=UTC), "sa", "conveyor", "list", "jobs"),
        AuditRecord(datetime(2026, 11, 27, 10, 0, 32, tzinfo=UTC), "sa", "conveyor", "list", "deployments"),
        AuditRecord(datetime(2026, 11, 27, 10, 0, 29, tzinfo=UTC), "sa", "conveyor", "patch", "deployments"),
    ]
    assert first_request_after(records, "sa", back) == datetime(2026, 11, 27, 10, 0, 32, tzinfo=UTC)
    assert first_request_after(records, "nobody", back) is None


def section_of(duration: float, p50: float, p99: float, **params: object) -> dict:
    shape = {
        "teams": 2,
        "apps": 3,
        "releases_per_pipeline": 2,
        "replicas": 2,
        "approvals": False,
        "namespaces_served": 6,
    }
    return {
        "when": "2026-11-27T10:00:00+00:00",
        "commit": "abc",
        "parameters": shape | params,
        "results": {"burst": {"duration_s": duration, "end_to_end_s_newest": {"p50": p50, "p99": p99}}},
    }


def test_extra_delay_only_against_a_run_of_the_same_shape():
    from scalestats import extra_delay

    outage, baseline = section_of(92.0, 90.0, 92.0, outage_s=20), section_of(8.0, 7.5, 7.9)
    assert extra_delay(outage, baseline) == {
        "baseline_when": "2026-11-27T10:00:00+00:00",
        "baseline_commit": "abc",
        "duration_s": 84.0,
        "newest_p50_s": 82.5,
        "newest_p99_s": 84.1,
    }
    assert extra_delay(outage, None) is None
    assert extra_delay(outage, section_of(8.0, 7.5, 7.9, teams=20)) is None


def test_two_cluster_goals_judge_the_outage_and_the_request_row_counts_both_clusters():
    from scalestats import scale_goals, two_cluster_goals

    res = {
        "parameters": {"pipelines": 6, "releases_per_pipeline": 2},
        "lone": {"end_to_end_s": {"n": 1, "p50": 2.5, "p99": 2.5, "max": 2.5}},
        "burst": {
            "releases": 12,
            "timed_out": False,
            "phases": {"Succeeded": 12},
            "wrong_end_states": [],
            "end_to_end_s_newest": {"n": 6, "p50": 7.0, "p99": 7.5, "max": 7.5},
            "stage_promotions": 24,
            "operator_requests": [{"verb": "patch", "resource": "releases", "count": 300}],
            "audit_requests": [{"verb": "patch", "resource": "releases/status", "count": 336}],
        },
        "operator": {"rss_peak_mb": 77.0, "rss_idle_mb": 74.0},
        "clusters": {
            "remote": "prod-b",
            "burst_requests_by_cluster": {
                "control": {"requests": 336, "per_promotion": 14.0},
                "prod-b": {"requests": 24, "per_promotion": 1.0},
            },
            "outage": None,
        },
    }
    requests = scale_goals(res)[2]
    assert "both clusters' audit logs" in requests["what"]
    assert requests["measured"] == "15 (360 requests / 24 promotions; control 14.0, prod-b 1.0)"
    assert requests["met"] is True
    assert two_cluster_goals(res) == []  # no outage drill
    res["clusters"]["outage"] = {"down_s": 20}  # asked for, never started
    assert two_cluster_goals(res)[0]["met"] is None
    res["clusters"]["outage"] = {
        "down_s": 22.9,
        "stopped_at": "2026-11-27T10:00:00+00:00",
        "resumed_after_s": 63.4,
        "extra_delay": {"duration_s": 84.2, "newest_p99_s": 84.2},
    }
    (row,) = two_cluster_goals(res)
    assert row["met"] is True
    assert "down 23 s" in row["what"]
    assert row["measured"] == (
        "0 wrong; work in prod-b resumed 63.4 s after it was back; burst +84.2 s, newest p99 +84.2 s "
        "vs the run without it"
    )
    res["burst"]["wrong_end_states"] = [{"release": "t/r0"}]
    assert two_cluster_goals(res)[0]["met"] is False
