"""Pure helpers of bench/verdict.py (no cluster, no client): the latency statistics of its samples,
the operator's own verdict histogram between two scrapes, and the goal rows of the results file.
Unit-tested in tests/unit/test_bench_verdict.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scalestats import prometheus_counter

# The signal kinds, the reason each must end with, and the goals (seconds) for the verdict's
# p99: idle, and during a burst.
REASON = {"job": "SmokeTestFailed", "deadline": "RolloutTimedOut"}
GOAL_S = {"idle": 1.0, "burst": 2.0}
SIGNAL = {"job": "smoke-test Job Failed (seen by a watch)", "deadline": "rollout deadline passed"}


@dataclass
class Sample:
    """One failing release, its signal and the verdict, on the wall clock (seconds since the epoch).

    `signal`: the job kind's is when the benchmark's watch received the Job's Failed condition; the
    deadline kind's is the deadline itself. `judged`: the stage's finishedAt, the operator's clock
    at the pass that decided. `status`/`event`: when the benchmark's watches received the Release
    with phase Failed and the Warning Event. `outcome`: the phase and the Failed condition's reason.
    """

    kind: str
    phase: str  # "idle" or "burst"
    release: str
    outcome: str
    signal: float | None = None
    judged: float | None = None
    status: float | None = None
    event: float | None = None
    job_condition_time: str | None = None  # the Job's Failed lastTransitionTime (whole seconds)
    created: float | None = None  # just before the benchmark created the release
    steps: dict[str, float | None] = field(default_factory=dict)  # the stage record's timestamps
    in_burst: bool | None = None  # burst phase: did the signal come before the burst had ended?

    @property
    def expected(self) -> bool:
        """The verdict was the one this kind provokes (Failed with its reason)."""
        return self.outcome == f"Failed/{REASON[self.kind]}"

    @property
    def status_s(self) -> float | None:
        """Signal -> the Release's Failed status received."""
        return _minus(self.status, self.signal)

    @property
    def event_s(self) -> float | None:
        """Signal -> the Event received."""
        return _minus(self.event, self.signal)

    @property
    def verdict_s(self) -> float | None:
        """Signal -> both the status and the Event received: the verdict as a user sees it."""
        if self.status_s is None or self.event_s is None:
            return None
        return max(self.status_s, self.event_s)

    @property
    def noticed_s(self) -> float | None:
        """Signal -> the deciding pass started (watch delivery, queueing, requeue timing)."""
        return _minus(self.judged, self.signal)

    @property
    def written_s(self) -> float | None:
        """Deciding pass started -> its status write received (the pass and the write)."""
        return _minus(self.status, self.judged)

    def as_dict(self) -> dict[str, Any]:
        """The sample with its derived latencies, for the results file."""
        return asdict(self) | {
            "expected": self.expected,
            **{k: getattr(self, k) for k in ("status_s", "event_s", "verdict_s", "noticed_s", "written_s")},
        }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank (as bench/harness.py's pct): of 20 samples, p99 is the max."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """n, p50, p99 and max of the values that exist."""
    vs = [v for v in values if v is not None]
    if not vs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(vs), "p50": statistics.median(vs), "p99": percentile(vs, 99), "max": max(vs)}


def counted(samples: list[Sample], kind: str, phase: str) -> list[Sample]:
    """The samples of a kind and phase that count: the expected verdict, and in the burst phase a
    signal that came while the burst was still in flight."""
    return [
        s
        for s in samples
        if s.kind == kind and s.phase == phase and s.expected and (phase != "burst" or s.in_burst)
    ]


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Per phase and kind: the latencies' statistics, and the samples that did not count."""
    out: dict[str, Any] = {}
    for phase in ("idle", "burst"):
        for kind in REASON:
            mine = [s for s in samples if s.kind == kind and s.phase == phase]
            if not mine:
                continue
            ok = counted(samples, kind, phase)
            out.setdefault(phase, {})[kind] = {
                "runs": len(mine),
                "unexpected": [{"release": s.release, "outcome": s.outcome} for s in mine if not s.expected],
                "after_burst": sum(1 for s in mine if s.expected and phase == "burst" and not s.in_burst),
                **{
                    k: stats(getattr(s, k) for s in ok)
                    for k in ("verdict_s", "status_s", "event_s", "noticed_s", "written_s")
                },
            }
    return out


def histogram_delta(before: str, after: str, name: str, namespace: str) -> dict[str, dict[str, float]]:
    """The operator's histogram `name` between two /metrics scrapes, for one namespace: per pipeline,
    {le: observations at most le} (cumulative, as Prometheus keeps them)."""
    b = prometheus_counter(before, name + "_bucket")
    a = prometheus_counter(after, name + "_bucket")
    out: dict[str, dict[str, float]] = {}
    for labels, value in a.items():
        d = dict(labels)
        if d.get("namespace") != namespace:
            continue
        out.setdefault(d.get("pipeline", "?"), {})[d.get("le", "?")] = value - b.get(labels, 0.0)
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def verdict_goals(summary: dict[str, Any], burst_shape: str) -> list[dict[str, Any]]:
    """Issue #11's verdict goals, one row per phase and kind: p99 of signal -> status and Event both
    received < 1 s idle, < 2 s during the burst. A run that ended with another verdict fails the row
    (a wrong verdict is no fast verdict); so does a phase with no counted sample."""
    rows = []
    for phase, limit in GOAL_S.items():
        for kind, reason in REASON.items():
            part = (summary.get(phase) or {}).get(kind)
            if part is None:
                continue
            v, st, ev = part["verdict_s"], part["status_s"], part["event_s"]
            where = "idle" if phase == "idle" else f"during a burst of {burst_shape}"
            measured = (
                f"p50 {_ms(v['p50'])}, p99 {_ms(v['p99'])} (n={v['n']}; status p99 {_ms(st['p99'])}, "
                f"Event p99 {_ms(ev['p99'])})"
            )
            extra = []
            if part["unexpected"]:
                extra.append(f"{len(part['unexpected'])} ended otherwise")
            if part["after_burst"]:
                extra.append(f"{part['after_burst']} after the burst, not counted")
            if extra:
                measured += "; " + ", ".join(extra)
            met = None if v["p99"] is None else v["p99"] < limit and not part["unexpected"]
            if v["p99"] is None and part["runs"]:
                met = False
            rows.append(
                {
                    "what": f"verdict, {where}: {SIGNAL[kind]} -> Release Failed ({reason}) and its Event",
                    "goal": f"p99 < {limit:.0f} s",
                    "measured": measured,
                    "met": met,
                }
            )
    return rows
