"""Verdict latency (issue #11): from a failure signal to Conveyor's verdict, idle and during a burst.

Usage: .venv/bin/python bench/verdict.py [--runs 20] [--rollout-deadline 5] [--burst-teams 20]
           [--burst-apps 10] [--burst-releases 2] [--burst-job-lanes 10] [--burst-deadline-lanes 2]
           [--deadline 1500] [--results PATH]

Two failure signals, each provoked on one-stage pipelines of their own (one 2-replica Deployment per
pipeline) that the same `conveyor run` serves as bench/scale.py's teams - the Helm chart's
ServiceAccount and RBAC, set up by scale.py's machinery:

  job       a release whose digest starts with 0bad: its Deployment rolls out, its smoke-test Job's
            pod fails (kwok) and the Job controller sets the Job's Failed condition. The signal is
            when this benchmark's own watch on the stage's Jobs receives that condition (local
            clock): the condition's lastTransitionTime has whole seconds only, too coarse for a
            sub-second goal - it is recorded beside each sample, never used for a latency.
  deadline  a release whose digest starts with dead: its pods never get Ready and the stage's
            rolloutDeadlineSeconds is short (--rollout-deadline, at least 5). The signal is the
            deadline itself: the stage record's deployedAt (when Conveyor set the image, on the
            operator's clock, sub-second; same machine, same clock) plus the deadline - exactly
            when the operator's own rule says the rollout has failed.

The verdict is when this benchmark's watches receive the Release with phase Failed (and the Failed
condition's reason: SmokeTestFailed, RolloutTimedOut) and the Warning Event of that reason on it; a
run's verdict latency is the later of the two. Each sample also splits the time at the stage's
finishedAt (the operator's clock when the deciding pass started): signal -> pass started (watch
delivery, queueing, requeue timing), pass started -> status received (the pass and its write).

Phases, on one operator:
  idle   RUNS releases per kind, one at a time (the burst's pipelines exist, idle).
  burst  scale.py's burst (--burst-teams x --burst-apps pipelines, --burst-releases each, created at
         once) in the background; once every burst release exists, verdict pipelines (lanes) each
         fail releases one after the other, RUNS per kind in all, until done or the burst has ended.
         A sample counts when its signal came before the last burst release ended. Under the burst
         a job-kind release needs one to two minutes to reach its smoke test (its rollout waits
         behind the burst's 200 rollouts in the controller-manager and kwok), so that kind gets
         many lanes (--burst-job-lanes) and few runs each; the deadline kind needs no Ready pods
         and spreads its runs over 2 lanes.

p50/p99 (nearest rank: of 20 samples, p99 is the largest) go to the one results file (section
"verdict") with the issue's goals: p99 < 1 s idle, < 2 s during the burst. The operator's own
conveyor_verdict_latency_seconds histogram is recorded too (its signal for a Job is the start of
the pass that saw it, so it reads low). Every wait is on a watch with a deadline naming what it waits
for; --deadline bounds the whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conveyor.core.jobs import JOB_KIND_LABEL, JobKind
from harness import Bench, deployment
from results import record, section
from scale import GROUP, VERSION, Deadline, Scale, Tracker, phase_of, rolled_out, scrape
from scalestats import parse_time
from support.builders import pipeline_dict, release_dict
from verdictstats import REASON, Sample, histogram_delta, summarize, verdict_goals

DIGEST_PREFIX = {"job": "0bad", "deadline": "dead"}
STEPS = ("startedAt", "deployedAt", "rolledOutAt", "smokeTestStartedAt", "finishedAt")
HISTOGRAM = "conveyor_verdict_latency_seconds"


def failed_condition(release: dict[str, Any]) -> dict[str, Any] | None:
    """The Release's Failed condition when it is True."""
    for c in (release.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return c
    return None


def outcome_of(release: dict[str, Any]) -> str:
    """'<phase>/<Failed reason>' (e.g. Failed/SmokeTestFailed); the phase alone otherwise."""
    cond = failed_condition(release)
    phase = phase_of(release) or "(none)"
    return f"{phase}/{cond.get('reason')}" if cond else phase


def job_failed(job: Any) -> bool:
    """A Job (client model) with its Failed condition True."""
    return any(c.type == "Failed" and c.status == "True" for c in (job.status.conditions or []))


def _wall(t: str | None) -> float | None:
    return parse_time(t).timestamp() if t else None


class Verdicts:
    """The verdict pipelines and the watches that time them: one per kind of object, namespaced,
    each with its own connection and thread, so their events never queue behind the burst's
    cluster-wide streams. They share this process (and its GIL) with those: under the burst a
    receive time can lag by some milliseconds - the operator was once seen starting its deciding
    pass 14 ms before this benchmark received the Job's Failed condition."""

    def __init__(self, b: Bench, args: argparse.Namespace, deadline: Deadline) -> None:
        self.b, self.args, self.deadline = b, args, deadline
        self.run_id = uuid.uuid4().hex[:6]
        self.home = b.namespace("verdict")
        self.stage_ns = {kind: b.namespace(f"verdict-{kind}") for kind in REASON}
        # Lanes per kind: one pipeline (and Deployment) each; the idle phase uses lane 0.
        self.lanes = {"job": max(1, args.burst_job_lanes), "deadline": max(1, args.burst_deadline_lanes)}
        # wall = monotonic + offset: the watches mark monotonic time, the deadline signal is wall time.
        self.offset = time.time() - time.monotonic()
        self.burst_info: dict[str, Any] | None = None

    @property
    def namespaces(self) -> list[str]:
        """Every namespace the operator must serve for these pipelines."""
        return [self.home, *self.stage_ns.values()]

    def pipeline_name(self, kind: str, lane: int) -> str:
        """The pipeline (and its Deployment) of a kind's lane."""
        return f"{kind}-{lane}"

    def create_deployments(self) -> None:
        """One Deployment per lane and kind, rolled out on the base image (before the operator runs)."""
        for kind, ns in self.stage_ns.items():
            for lane in range(self.lanes[kind]):
                self.b.apps.create_namespaced_deployment(
                    ns, deployment(self.pipeline_name(kind, lane), "web")
                )
        for kind, ns in self.stage_ns.items():
            deployments = Tracker(self.b.apps.list_namespaced_deployment, namespace=ns)
            try:
                deployments.wait(
                    lambda objs, n=self.lanes[kind]: sum(rolled_out(d) for d in objs.values()) >= n,
                    f"{self.lanes[kind]} Deployments of {kind} rolled out in {ns}",
                    self.deadline.left(120),
                )
            finally:
                deployments.close()

    def create_pipelines(self, pipelines: Tracker) -> None:
        """The one-stage pipelines (with the operator running); waits until each is reconciled."""
        keys = []
        for kind, ns in self.stage_ns.items():
            stage: dict[str, Any] = {"name": "staging", "namespace": ns}
            if kind == "deadline":
                stage["rolloutDeadlineSeconds"] = self.args.rollout_deadline
            for lane in range(self.lanes[kind]):
                name = self.pipeline_name(kind, lane)
                body = pipeline_dict(
                    name,
                    self.home,
                    targets=[{"deployment": name, "container": "web"}],
                    smoke_test={"command": ["smoke"]},
                    stages=[stage],
                )
                self.b.custom.create_namespaced_custom_object(GROUP, VERSION, self.home, "pipelines", body)
                keys.append((self.home, name))
        pipelines.wait(
            lambda objs: all(
                k in objs
                and (objs[k].get("status") or {}).get("observedGeneration", 0)
                >= objs[k]["metadata"]["generation"]
                for k in keys
            ),
            f"{len(keys)} verdict Pipelines reconciled",
            self.deadline.left(120),
        )

    def watch(self) -> None:
        """The timing watches: this namespace's Releases and Events, the stages' failing Jobs."""
        b = self.b
        self.releases = Tracker(
            b.custom.list_namespaced_custom_object,
            mark=lambda r: phase_of(r) == "Failed",
            group=GROUP,
            version=VERSION,
            namespace=self.home,
            plural="releases",
        )
        self.events = Tracker(b.core.list_namespaced_event, mark=lambda _: True, namespace=self.home)
        self.jobs = Tracker(
            b.batch.list_namespaced_job,
            mark=job_failed,
            namespace=self.stage_ns["job"],
            label_selector=f"{JOB_KIND_LABEL}={JobKind.SMOKE_TEST.value}",
        )

    def close(self) -> None:
        for t in ("releases", "events", "jobs"):
            if hasattr(self, t):
                getattr(self, t).close()

    def event_time(self, release: str, reason: str) -> float | None:
        """When the first Event of `reason` on the Release `release` was received (monotonic)."""
        with self.events.cond:
            times = [
                self.events.marked[key]
                for key, e in self.events.objects.items()
                if key in self.events.marked
                and e.reason == reason
                and e.involved_object.kind == "Release"
                and e.involved_object.name == release
            ]
        return min(times) if times else None

    def run_once(self, kind: str, phase: str, lane: int, i: int) -> Sample:
        """Create one failing release of `kind` and time its verdict."""
        name = f"{kind}-{phase}-{lane}-{i}"
        key = (self.home, name)
        reason = REASON[kind]
        created = time.time()
        self.b.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.home,
            "releases",
            release_dict(
                name,
                pipeline=self.pipeline_name(kind, lane),
                namespace=self.home,
                label=f"{self.run_id}-{name}",
                digest_prefix=DIGEST_PREFIX[kind],
            ),
        )
        # The slowest honest path: roll out (job) or the deadline (deadline), then a verdict.
        cap = self.args.rollout_deadline + 180
        self.releases.wait(
            lambda objs: phase_of(objs.get(key, {})) in ("Failed", "Succeeded", "Cancelled", "Superseded"),
            f"release {name} ({kind}) to end",
            self.deadline.left(cap),
        )
        with self.releases.cond:
            rel = self.releases.objects[key]
            failed_at = self.releases.marked.get(key)
        rec: dict[str, Any] = next(iter((rel.get("status") or {}).get("stages") or []), {})
        sample = Sample(
            kind=kind,
            phase=phase,
            release=name,
            outcome=outcome_of(rel),
            created=created,
            # Where a slow run's time went before its signal (the operator's clock, wall seconds).
            steps={k: _wall(rec.get(k)) for k in STEPS if rec.get(k)},
        )
        if not sample.expected:
            return sample
        self.events.wait(
            lambda _: self.event_time(name, reason) is not None,
            f"the {reason} Event on release {name}",
            self.deadline.left(60),
        )
        sample.judged = _wall(rec.get("finishedAt"))
        sample.status = failed_at + self.offset if failed_at is not None else None
        event = self.event_time(name, reason)
        sample.event = event + self.offset if event is not None else None
        if kind == "job":
            job_key = (self.stage_ns["job"], rec.get("smokeTestJob") or "")
            self.jobs.wait(
                lambda _: job_key in self.jobs.marked,
                f"smoke-test Job {job_key[1]} Failed (watch)",
                self.deadline.left(30),
            )
            with self.jobs.cond:
                sample.signal = self.jobs.marked[job_key] + self.offset
                job = self.jobs.objects[job_key]
            cond = next(c for c in job.status.conditions if c.type == "Failed")
            sample.job_condition_time = cond.last_transition_time.isoformat()
        else:
            deployed = _wall(rec.get("deployedAt"))
            if deployed is not None:
                sample.signal = deployed + self.args.rollout_deadline
        return sample

    def lane(self, kind: str, phase: str, lane: int, runs: int, stop: threading.Event | None) -> list[Sample]:
        """`runs` failing releases one after the other on one pipeline (until `stop` is set)."""
        out = []
        for i in range(runs):
            if stop is not None and stop.is_set():
                break
            s = self.run_once(kind, phase, lane, i)
            out.append(s)
            v = s.verdict_s
            print(
                f"{phase} {kind} lane {lane} {i + 1}/{runs}: {s.outcome}"
                + (f", verdict {v * 1000:.0f} ms" if v is not None else "")
                + (f" (signal {s.signal - s.created:.1f}s after created)" if s.signal and s.created else ""),
                flush=True,
            )
        return out


def histogram(sc: Scale, before: str, v: Verdicts) -> dict[str, Any]:
    """The operator's own verdict histogram for the verdict pipelines since `before`."""
    return histogram_delta(before, scrape(sc.op.metrics_port) if sc.op else "", HISTOGRAM, v.home)


def run_burst(sc: Scale, v: Verdicts, args: argparse.Namespace) -> list[Sample]:
    """scale.py's burst in the background; the verdict lanes while it is in flight."""
    plan = sc.burst_plan()
    keys = {(home, name) for home, _, name in plan}
    result: dict[str, Any] = {}

    def burst() -> None:
        result.update(sc.phase("burst", plan, args.parallel))

    print(
        f"burst: creating {len(plan)} releases on {args.burst_teams * args.burst_apps} pipelines", flush=True
    )
    t0 = time.monotonic()
    background = threading.Thread(target=burst, daemon=True)
    background.start()
    sc.releases.wait(
        lambda objs: keys <= objs.keys(),
        f"all {len(keys)} burst releases created",
        sc.deadline.left(300),
    )
    print(
        f"burst: {len(keys)} releases created in {time.monotonic() - t0:.1f}s; verdict lanes start",
        flush=True,
    )
    stop = threading.Event()

    def watch_the_end() -> None:
        # The lanes stop starting releases once every burst release has ended.
        with contextlib.suppress(TimeoutError):  # the run's deadline: the lanes stop all the same
            sc.releases.wait(
                lambda _: keys <= sc.releases.marked.keys(), "the burst to end", sc.deadline.left()
            )
        stop.set()

    threading.Thread(target=watch_the_end, daemon=True).start()
    with ThreadPoolExecutor(sum(v.lanes.values())) as pool:
        futures = [
            # RUNS per kind in all, spread over its lanes (rounded up)
            pool.submit(v.lane, kind, "burst", lane, -(-args.runs // v.lanes[kind]), stop)
            for kind in REASON
            for lane in range(v.lanes[kind])
        ]
        samples = [s for f in futures for s in f.result()]
    background.join(sc.deadline.left())
    with sc.releases.cond:
        marks = [sc.releases.marked.get(k) for k in keys]
    # The burst ended when its last release did (or, cut by the deadline, when the run gave up).
    end = max(m for m in marks if m is not None) if all(m is not None for m in marks) else time.monotonic()
    for s in samples:
        s.in_burst = s.signal is not None and s.signal - v.offset < end
    ended = sum(m is not None for m in marks)
    print(
        f"burst: {ended}/{len(keys)} releases ended, {end - t0:.0f}s after the first was created"
        + ("" if not result.get("timed_out") else " (DEADLINE HIT)"),
        flush=True,
    )
    v.burst_info = {
        "releases": len(keys),
        "ended": ended,
        "duration_s": end - t0,
        "timed_out": bool(result.get("timed_out")),
        "phases": {
            p: sum(1 for r in (result.get("final") or {}).values() if phase_of(r) == p)
            for p in ("Succeeded", "Failed", "Superseded")
        },
    }
    return samples


def report(summary: dict[str, Any]) -> str:
    lines = ["", "verdict latency (signal -> Release Failed and its Event received), milliseconds:"]
    lines.append(
        f"  {'':28}{'n':>4}{'p50':>8}{'p99':>8}{'max':>8}"
        "   status p99  Event p99  noticed p50/p99  written p50/p99"
    )
    for phase, kinds in summary.items():
        for kind, part in kinds.items():
            vs, st, ev, no, wr = (
                part[k] for k in ("verdict_s", "status_s", "event_s", "noticed_s", "written_s")
            )

            def ms(x: float | None) -> str:
                return "-" if x is None else f"{x * 1000:.0f}"

            lines.append(
                f"  {phase + ' ' + kind:28}{vs['n']:>4}{ms(vs['p50']):>8}{ms(vs['p99']):>8}{ms(vs['max']):>8}"
                f"   {ms(st['p99']):>10}  {ms(ev['p99']):>9}  {ms(no['p50']):>6}/{ms(no['p99']):<8} "
                f"{ms(wr['p50']):>6}/{ms(wr['p99'])}"
            )
            if part["unexpected"]:
                lines.append(f"    ended otherwise: {part['unexpected']}")
            if part["after_burst"]:
                lines.append(f"    {part['after_burst']} samples after the burst had ended (not counted)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="failing releases per kind and phase")
    parser.add_argument(
        "--rollout-deadline", type=int, default=5, help="the deadline kind's rolloutDeadlineSeconds (>= 5)"
    )
    parser.add_argument(
        "--burst-teams",
        type=int,
        default=20,
        help="0: no burst phase (20 x 10: the brief's 200-pipeline burst)",
    )
    parser.add_argument("--burst-apps", type=int, default=10, help="pipelines per burst team")
    parser.add_argument("--burst-releases", type=int, default=2, help="releases per burst pipeline, at once")
    parser.add_argument(
        "--burst-job-lanes", type=int, default=10, help="job-kind verdict pipelines during the burst"
    )
    parser.add_argument(
        "--burst-deadline-lanes", type=int, default=2, help="deadline-kind verdict pipelines during the burst"
    )
    parser.add_argument("--parallel", type=int, default=8, help="client threads creating the burst")
    parser.add_argument("--deadline", type=float, default=1500, help="seconds for the whole run")
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'verdict' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    deadline = Deadline(args.deadline)
    b = Bench()
    shape = argparse.Namespace(
        teams=args.burst_teams,
        apps=args.burst_apps,
        releases=args.burst_releases,
        replicas=2,
        approvals=False,
        lone_runs=0,
        parallel=args.parallel,
        deadline=args.deadline,
        namespaced=False,  # cluster-wide, as bench/scale.py runs it
    )
    v = Verdicts(b, args, deadline)
    sc = Scale(b, shape, deadline, extra_namespaces=v.namespaces)
    samples: list[Sample] = []
    operator: dict[str, Any] = {}
    try:
        v.create_deployments()
        sc.setup()
        v.create_pipelines(sc.pipelines)
        sc.track_releases()
        v.watch()
        before = scrape(sc.op.metrics_port) if sc.op else ""
        for kind in REASON:
            samples += v.lane(kind, "idle", 0, args.runs, None)
        operator["idle_histogram"] = histogram(sc, before, v)
        if args.burst_teams and args.burst_apps and args.burst_releases:
            before = scrape(sc.op.metrics_port) if sc.op else ""
            samples += run_burst(sc, v, args)
            operator["burst_histogram"] = histogram(sc, before, v)
        snap = sc.snapshot()
        operator["rss_peak_mb"] = snap["VmHWM"] / 1024
        operator["cpu_s"] = snap["cpu"]
    finally:
        v.close()
        sc.close()
        b.close()
    summary = summarize(samples)
    print(report(summary))
    burst_shape = f"{args.burst_teams}x{args.burst_apps} pipelines x {args.burst_releases} releases"
    body = section(
        script=__file__,
        parameters={
            "runs": args.runs,
            "rollout_deadline_s": args.rollout_deadline,
            "burst": {
                "teams": args.burst_teams,
                "apps": args.burst_apps,
                "releases": args.burst_releases,
                "lanes": v.lanes,
            },
            "signal": {
                "job": "the benchmark's Job watch receiving Failed=True (local clock)",
                "deadline": "status.stages[].deployedAt + rolloutDeadlineSeconds (operator's clock)",
            },
            "verdict": "later of: the Release watch receiving phase Failed, the Event watch receiving "
            "the Event of the failure's reason",
        },
        results={
            "summary": summary,
            "burst": v.burst_info,
            "operator": operator,
            "samples": [s.as_dict() for s in samples],
        },
        goals=verdict_goals(summary, burst_shape),
    )
    print(f"results file: {record('verdict', body, args.results)}")


if __name__ == "__main__":
    main()
