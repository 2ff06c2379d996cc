"""bench/dashboardstats.py: what the dashboard benchmark's page samples add up to, and its goal rows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from dashboardstats import dashboard_goals, load_series, percentile, stats


def sample(rows_ms: float, first_byte_ms: float = 40, last_byte_ms: float = 60) -> dict[str, Any]:
    return {
        "rowsAt": rows_ms,
        "paintedAt": rows_ms + 16,
        "board": {
            "startTime": 100.0,
            "requestStart": 102.0,
            "responseStart": 102.0 + first_byte_ms,
            "responseEnd": 102.0 + last_byte_ms,
            "decodedBodySize": 400 * 1024,
            "encodedBodySize": 400 * 1024,
        },
    }


def test_percentile_is_nearest_rank_and_stats_of_nothing_are_none():
    assert percentile(list(range(1, 21)), 90) == 18
    assert percentile([5.0], 90) == 5.0
    assert stats([]) == {"n": 0, "median": None, "p90": None, "min": None, "max": None}


def test_a_load_series_is_in_seconds_from_the_pages_milliseconds():
    series = load_series([sample(500), sample(700, 50, 90), sample(600)])
    assert series["rows_in_dom_s"]["median"] == 0.6
    assert series["next_frame_s"]["median"] == 0.616
    assert series["api_board_first_byte_s"]["median"] == 0.04
    assert series["api_board_response_s"]["p90"] == 0.09
    assert series["api_board_bytes"] == 400 * 1024


def test_a_load_without_its_board_fetch_entry_still_counts_its_rows():
    lone = sample(300)
    lone["board"] = None
    series = load_series([lone])
    assert series["rows_in_dom_s"]["n"] == 1
    assert series["api_board_response_s"]["n"] == 0
    assert series["api_board_bytes"] is None


def results(fresh_ms: list[float], live_s: list[float]) -> dict[str, Any]:
    return {
        "parameters": {"pipelines": 200, "stages_shown": 480},
        "loads_fresh": load_series([sample(x) for x in fresh_ms]),
        "loads_cached": load_series([sample(x / 2) for x in fresh_ms]),
        "live": {"created_to_board_s": stats(live_s), "status_to_board_s": stats([x / 2 for x in live_s])},
    }


def test_the_goal_is_the_median_of_the_fresh_loads_under_a_second():
    met, missed = (
        dashboard_goals(results([400, 900, 1500], [0.3]))[0],
        dashboard_goals(results([1100, 1200, 300], [0.3]))[0],
    )
    assert met["met"] is True
    assert "median 900 ms, p90 1500 ms (n=3" in met["measured"]
    assert "400 KiB" in met["measured"]
    assert missed["met"] is False


def test_what_the_machine_was_doing_is_in_the_row():
    res = results([400], [0.3]) | {
        "machine_during": {"cpus_busy_pct": 87.4, "load_before": [6.4, 3, 1], "kube_apiservers_running": 3}
    }
    assert (
        "CPUs 87% busy while measuring (load 6.4, 3 API servers running)"
        in dashboard_goals(res)[0]["measured"]
    )


def test_the_live_row_is_judged_against_two_seconds_and_no_sample_judges_nothing():
    live = dashboard_goals(results([400], [0.3, 2.5, 2.6]))[1]
    assert live["met"] is False
    assert "median 2500 ms" in live["measured"]
    empty = dashboard_goals(results([], []))
    assert [row["met"] for row in empty] == [None, None]
