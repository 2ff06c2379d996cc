"""bench/verdictstats.py: the verdict benchmark's samples, their statistics and goal rows, and the
operator's own verdict histogram between two scrapes (no cluster)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from verdictstats import Sample, histogram_delta, summarize, verdict_goals


def sample(kind: str, phase: str, signal: float, status: float, event: float, **kw) -> Sample:
    reason = {"job": "SmokeTestFailed", "deadline": "RolloutTimedOut"}[kind]
    defaults = {
        "release": f"{kind}-{phase}-{signal}",
        "outcome": f"Failed/{reason}",
        "signal": signal,
        "judged": signal + 0.01,
        "status": status,
        "event": event,
    }
    return Sample(kind=kind, phase=phase, **(defaults | kw))


def test_verdict_is_the_later_of_status_and_event_and_splits_at_the_deciding_pass():
    s = sample("job", "idle", 100.0, 100.05, 100.08)
    assert s.expected
    assert s.verdict_s == pytest.approx(0.08)
    assert s.noticed_s == pytest.approx(0.01)
    assert s.written_s == pytest.approx(0.04)
    assert sample("job", "idle", 100.0, 100.05, 100.02).verdict_s == pytest.approx(0.05)
    assert Sample(kind="job", phase="idle", release="x", outcome="Succeeded").verdict_s is None


def test_summary_and_goals_count_only_expected_verdicts_signalled_during_the_burst():
    samples = [sample("job", "idle", float(i), i + 0.1, i + 0.2) for i in range(20)]
    samples += [sample("deadline", "idle", float(i), i + 0.5, i + 1.5) for i in range(20)]  # p99 1.5 s
    samples += [sample("job", "burst", float(i), i + 1.0, i + 1.9, in_burst=True) for i in range(5)]
    samples += [sample("job", "burst", 50.0, 59.0, 59.0, in_burst=False)]  # after the burst
    samples += [sample("deadline", "burst", 1.0, 1.1, 1.2, in_burst=True)]
    samples += [sample("deadline", "burst", 2.0, 2.1, 2.2, in_burst=True, outcome="Failed/ImageChanged")]
    summary = summarize(samples)
    assert summary["idle"]["job"]["verdict_s"]["n"] == 20
    assert summary["idle"]["job"]["verdict_s"]["p99"] == pytest.approx(0.2)
    assert summary["burst"]["job"]["verdict_s"]["n"] == 5
    assert summary["burst"]["job"]["after_burst"] == 1
    assert summary["burst"]["deadline"]["unexpected"] == [
        {"release": "deadline-burst-2.0", "outcome": "Failed/ImageChanged"}
    ]
    rows = verdict_goals(summary, "2x2")
    # idle job (p99 0.2 s), idle deadline (1.5 s: over 1 s), burst job (1.9 s), burst deadline (wrong)
    assert [("burst" in r["what"], "Smoke" in r["what"], r["met"]) for r in rows] == [
        (False, True, True),
        (False, False, False),
        (True, True, True),
        (True, False, False),
    ]
    assert rows[2]["goal"] == "p99 < 2 s"
    assert "during a burst of 2x2" in rows[2]["what"]
    assert "1 after the burst, not counted" in rows[2]["measured"]
    assert "1 ended otherwise" in rows[3]["measured"]


def test_operator_histogram_difference_for_one_namespace():
    name = "conveyor_verdict_latency_seconds"
    before = f'{name}_bucket{{le="0.5",namespace="v",pipeline="job-0"}} 1.0\n'
    after = (
        f'{name}_bucket{{le="0.5",namespace="v",pipeline="job-0"}} 4.0\n'
        f'{name}_bucket{{le="+Inf",namespace="v",pipeline="job-0"}} 5.0\n'
        f'{name}_bucket{{le="0.5",namespace="other",pipeline="job-0"}} 9.0\n'
    )
    assert histogram_delta(before, after, name, "v") == {"job-0": {"0.5": 3.0, "+Inf": 5.0}}
