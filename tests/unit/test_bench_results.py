"""The benchmarks' one results file (bench/results.py), its table (bench/report.py), and the scale
benchmark's goal rows (bench/scalestats.py): no cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import BEGIN, END, replace_block, table
from results import command, describe_machine, goal, machine, record, results_path
from scalestats import scale_goals


def section(goals: list[dict], when: str = "2026-11-27T03:00:00+00:00") -> dict:
    return {
        "when": when,
        "commit": "abc123",
        "command": "hack/bench bench/x.py",
        "run_by": "",
        "machine": {"cpus": 2, "kernel": "6.1", "python": "3.11.7"},
        "parameters": {},
        "goals": goals,
        "results": {},
    }


def test_record_replaces_its_own_section_and_keeps_the_others(tmp_path: Path):
    path = tmp_path / "results" / "bench.json"
    record("promotion", section([goal("p", "<= 1.1x", "1.08x", True)]), path)
    record("verdict", section([goal("v", "p99 < 1 s", "20 ms", True)]), path)
    record("promotion", section([goal("p", "<= 1.1x", "1.2x", False)]), path)
    data = json.loads(path.read_text())
    assert sorted(data) == ["promotion", "verdict"]
    assert data["promotion"]["goals"][0]["met"] is False
    assert data["verdict"]["goals"][0]["measured"] == "20 ms"
    assert not [
        p for p in path.parent.iterdir() if p.name.startswith(".bench.json.") and not p.name.endswith(".lock")
    ]  # no temporary file left behind


def test_results_path_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("CONVEYOR_BENCH_RESULTS", raising=False)
    assert results_path().parts[-3:] == ("bench", "results", "bench.json")
    monkeypatch.setenv("CONVEYOR_BENCH_RESULTS", str(tmp_path / "env.json"))
    assert results_path() == tmp_path / "env.json"
    assert results_path(tmp_path / "cli.json") == tmp_path / "cli.json"


def test_command_reproduces_the_run_through_hack_bench():
    assert command("/x/bench/verdict.py", ["--runs", "5", "--note", "a b"]) == (
        "hack/bench bench/verdict.py --runs 5 --note 'a b'"
    )


def test_machine_note(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONVEYOR_BENCH_MACHINE", "shared build machine")
    m = machine()
    assert m["cpus"] >= 1
    assert describe_machine(m).endswith(" - shared build machine")


def test_table_one_row_per_goal_in_a_fixed_order_with_each_run_below():
    data = {
        "scale": section([goal("s", "<= 15", "332 (a | b)", False)]),
        "verdict": section([goal("v", "p99 < 1 s", "20 ms", True), goal("w", "p99 < 2 s", "-", None)]),
    }
    data["scale"]["run_by"] = "make bench"
    text = table(data)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[1] for r in rows] == ["v", "w", "s"]  # verdict first
    assert rows[0].endswith("| met |")
    assert rows[1].endswith("| - |")
    assert rows[2].endswith("| **NOT met** |")
    assert "332 (a \\| b)" in rows[2]  # a pipe in a cell does not break the table
    assert "commit `abc123`, `hack/bench bench/x.py`, as part of `make bench`" in text
    assert table({}).startswith("No benchmark results yet")


def test_readme_block_is_replaced_between_the_markers_only():
    text = f"# T\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n"
    out = replace_block(text, "| new |\n")
    assert out == f"# T\n\nbefore\n{BEGIN}\n| new |\n{END}\nafter\n"
    assert replace_block(out, "| new |\n") == out  # idempotent
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers", "x")


def scale_result(**burst_changes: object) -> dict:
    burst = {
        "releases": 1000,
        "timed_out": False,
        "phases": {"Succeeded": 400, "Superseded": 600},
        "wrong_end_states": [],
        "end_to_end_s_newest": {"n": 200, "p50": 5.0, "p99": 9.0, "max": 9.5},
        "stage_promotions": 100,
        "operator_requests": [{"verb": "get", "resource": "releases", "count": 2000}],
        "audit_requests": [{"verb": "get", "resource": "releases", "count": 1400}],
    } | burst_changes
    return {
        "parameters": {"pipelines": 200, "releases_per_pipeline": 5},
        "lone": {"end_to_end_s": {"n": 3, "p50": 2.0, "p99": 3.0, "max": 3.0}},
        "burst": burst,
        "operator": {"rss_peak_mb": 120.0, "rss_idle_mb": 70.0},
    }


def test_scale_goals_judge_each_of_the_issues_bars():
    rows = scale_goals(scale_result())
    assert [r["goal"] for r in rows] == ["all correct", "<= 3x lone", "<= 15", "< 150 MB"]
    assert [r["met"] for r in rows] == [True, True, True, True]
    assert rows[1]["measured"].startswith("9.0 s vs 3.0 s = 3.0x")
    assert "audit log" in rows[2]["what"]
    assert rows[2]["measured"].startswith("14 (1400 requests")
    wrong = scale_goals(scale_result(timed_out=True, audit_requests=[], wrong_end_states=[{"x": 1}]))
    assert wrong[0]["met"] is False
    assert "DEADLINE HIT" in wrong[0]["measured"]
    assert "operator's own count" in wrong[2]["what"]
    assert wrong[2]["met"] is False  # 20 per promotion by the operator's own count
