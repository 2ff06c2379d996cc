"""Dashboard: the board with 200 pipelines, loaded cold in headless Chromium, and its live path.

Usage: .venv/bin/python bench/dashboard.py [--teams 20] [--apps 10] [--loads 15] [--live 8]
                                           [--replicas 1] [--deadline 1200] [--results PATH]

The world is made by the real operator on the real API server, as `conveyor run` (cluster-wide, the
admin kubeconfig) writes it: TEAMS x APPS pipelines (200), each with a Deployment per stage (REPLICAS
pods, kwok) and a smoke-test Job per stage. Stages: staging -> prod, and staging -> qa -> prod for
apps 0, 3, 6, 9 of every team (80 of 200); prod requires an approval for even apps. Two waves:

  1  one release per pipeline (its prod approval created with it where needed): verified in every
     stage of every pipeline;
  2  a second release on some pipelines: every 8th waits at prod's gate (no approval), every 10th
     (from the 4th) is in flight (its image never gets Ready, staging's rollout deadline is the
     maximum, 3600 s), every 33rd (from the 6th) fails its smoke test, every 10th (from the 8th)
     is promoted all the way.

Then `kubectl conveyor dashboard` (DashboardProcess, the admin kubeconfig: every namespace) and
headless Chromium (tests/support/browser.py). Measured inside the page (performance.now(), since the
navigation started), LOADS times each, alternating:

  fresh   a Release's annotation is touched first and the dashboard's store has seen it, so the
          server computes /api/board anew; then a fresh navigation with the browser's cache cleared;
  cached  the same, with nothing changed since the last /api/board (the server's cached board).

Each: navigation start -> every .board-row in the DOM (a MutationObserver installed before the page's
own scripts run), the next frame after it, and the first /api/board fetch from the Resource Timing
entries (request sent -> first byte, -> last byte, bytes). Goal (the issue): the median of the fresh
loads under 1 s.

Live, LIVE times, the board open: a Release created on a settled pipeline (an image that never gets
Ready, so it stays in flight) -> the board shows it in flight in that pipeline's row (the page's
Date.now() when a MutationObserver saw it; the bench's time.time() when the create returned, same
clock). Also from when the bench's own watch saw the Pipeline's status name it in flight (the
dashboard's share). Reported against the live bound of 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dashboardstats import dashboard_goals, load_series, stats
from harness import Bench, create_all, deployment
from results import record, section
from scale import Deadline, Tracker, phase_of, rolled_out
from scalestats import proc_cpu_seconds
from support.browser import Browser, binaries
from support.builders import approval_dict, pipeline_dict, release_dict
from support.dashboard import DashboardProcess
from support.operator import OperatorProcess

GROUP, VERSION = "conveyor.dev", "v1alpha1"
LABEL = "conveyor.dev/bench-dashboard"
TOUCH = "conveyor.dev/bench-touch"

# Installed before the page's own scripts (CDP Page.addScriptToEvaluateOnNewDocument): when every
# row is in the DOM, performance.now() (milliseconds since this navigation started), then the next
# frame after it.
PROBE = """
(() => {
  if (location.protocol !== "http:") return;
  const want = %d;
  const ROWS = '.board-row[data-pipeline^="dash-"]';  // this world's rows (others may be on the board)
  const b = { want, rowsAt: null, paintedAt: null };
  window.__conveyorBench = b;
  b.done = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (b.rowsAt !== null || document.querySelectorAll(ROWS).length < want) return;
      b.rowsAt = performance.now();
      obs.disconnect();
      resolve();
    });
    obs.observe(document, { childList: true, subtree: true });
  });
  b.painted = b.done.then(() => new Promise((resolve) =>
    requestAnimationFrame(() => setTimeout(() => { b.paintedAt = performance.now(); resolve(); }, 0))));
})();
"""
COLLECT = """
const cb = arguments[arguments.length - 1];
const b = window.__conveyorBench;
if (!b) { cb({ error: "the probe is not in the page" }); return; }
const rows = () => document.querySelectorAll(".board-row").length;
const give_up = setTimeout(() => cb({ error: "timeout", rows: rows() }), 25000);
b.done
  .then(() => Promise.race([b.painted, new Promise((r) => setTimeout(r, 2000))]))
  .then(() => {
    clearTimeout(give_up);
    const pick = (e, keys) => (e ? Object.fromEntries(keys.map((k) => [k, e[k]])) : null);
    const nav = performance.getEntriesByType("navigation")[0];
    const boards = performance
      .getEntriesByType("resource")
      .filter((e) => new URL(e.name).pathname === "/api/board");
    cb({
      rowsAt: b.rowsAt,
      paintedAt: b.paintedAt,
      rows: rows(),
      nav: pick(nav, ["responseEnd", "domContentLoadedEventEnd", "loadEventEnd"]),
      board: pick(boards[0], [
        "startTime", "requestStart", "responseStart", "responseEnd",
        "transferSize", "encodedBodySize", "decodedBodySize",
      ]),
      boardFetches: boards.length,
    });
  });
"""
# On the open board: note Date.now() when an element matching the selector first appears.
WATCH_FOR = """
const sel = arguments[0];
const live = (window.__conveyorLive = window.__conveyorLive || {});
const entry = (live[sel] = { at: null });
entry.done = new Promise((resolve) => {
  const check = () => {
    if (entry.at !== null || !document.querySelector(sel)) return;
    entry.at = Date.now();
    obs.disconnect();
    resolve();
  };
  const obs = new MutationObserver(check);
  obs.observe(document, { childList: true, subtree: true, attributes: true });
  check();
});
"""
SEEN = """
const [sel, ms, cb] = arguments;
const entry = window.__conveyorLive[sel];
const t = setTimeout(() => cb(null), ms);
entry.done.then(() => { clearTimeout(t); cb(entry.at); });
"""


class World:
    """The teams' namespaces, Deployments and Pipelines, the operator, and the two waves."""

    def __init__(self, b: Bench, args: argparse.Namespace, deadline: Deadline) -> None:
        self.b, self.args, self.deadline = b, args, deadline
        self.pipelines: list[dict[str, Any]] = []  # home, name, stages [(name, namespace)], approval
        self.op: OperatorProcess | None = None
        self.trackers: list[Tracker] = []
        self.status_seen: dict[tuple[str, str], float] = {}  # pipeline -> time.time() its status showed
        self.wanted: dict[tuple[str, str], tuple[str, str]] = {}  # pipeline -> (stage, release in flight)

    def setup(self) -> None:
        a, b = self.args, self.b
        t0 = time.monotonic()
        deployments = []
        for t in range(a.teams):
            ns = {
                k: b.namespace(f"dash-t{t:02d}{suffix}")
                for k, suffix in (("home", ""), ("staging", "-stg"), ("qa", "-qa"), ("prod", "-prod"))
            }
            for j in range(a.apps):
                three = j % 3 == 0
                stages = ["staging", "qa", "prod"] if three else ["staging", "prod"]
                self.pipelines.append(
                    {
                        "home": ns["home"],
                        "name": f"app-{j:02d}",
                        "team": f"team-{t:02d}",
                        "stages": [(s, ns[s]) for s in stages],
                        "approval": j % 2 == 0,
                    }
                )
                for s in stages:
                    body = deployment(f"app-{j:02d}", "web", replicas=a.replicas)
                    body["metadata"]["labels"] = {LABEL: "true"}
                    deployments.append((ns[s], body))
        tracker = Tracker(self.b.apps.list_deployment_for_all_namespaces, label_selector=f"{LABEL}=true")
        self.trackers.append(tracker)
        create_all(b, "deployments", deployments)
        n = len(deployments)
        tracker.wait(
            lambda objs: sum(rolled_out(d) for d in objs.values()) >= n,
            f"{n} Deployments rolled out",
            self.deadline.left(600),
        )
        print(f"setup: {n} Deployments rolled out in {time.monotonic() - t0:.0f}s", flush=True)
        self.op = OperatorProcess(b.cluster.kubeconfig).start()  # cluster-wide, as a platform runs it
        self.op.wait_for_log("is alive", timeout=self.deadline.left(120))
        self.op.wait_healthy(timeout=self.deadline.left(120))
        self.pipeline_watch = Tracker(
            b.custom.list_cluster_custom_object,
            mark=self._status_shows,
            group=GROUP,
            version=VERSION,
            plural="pipelines",
            label_selector=f"{LABEL}=true",
        )
        self.releases = Tracker(
            b.custom.list_cluster_custom_object,
            group=GROUP,
            version=VERSION,
            plural="releases",
            label_selector=f"{LABEL}=true",
        )
        self.trackers += [self.pipeline_watch, self.releases]
        bodies = []
        for p in self.pipelines:
            stages: list[dict[str, Any]] = []
            for name, ns in p["stages"]:
                stage: dict[str, Any] = {"name": name, "namespace": ns}
                if name == "staging":
                    stage["rolloutDeadlineSeconds"] = 3600  # wave 2's in-flight releases stay in flight
                if name == "prod" and p["approval"]:
                    stage |= {"requiresApproval": True, "approval": {"fourEyes": False}}
                stages.append(stage)
            body = pipeline_dict(
                p["name"],
                p["home"],
                targets=[{"deployment": p["name"], "container": "web"}],
                smoke_test={"command": ["smoke"]},
                stages=stages,
            )
            body["metadata"]["labels"] = {LABEL: "true", "conveyor.dev/team": p["team"]}
            bodies.append((p["home"], body))
        create_all(b, "pipelines", bodies)
        self.pipeline_watch.wait(
            lambda objs: (
                sum(
                    (o.get("status") or {}).get("observedGeneration", 0) >= o["metadata"]["generation"]
                    for o in objs.values()
                )
                >= len(bodies)
            ),
            f"{len(bodies)} Pipelines reconciled",
            self.deadline.left(300),
        )
        print(f"setup: {len(bodies)} Pipelines reconciled ({time.monotonic() - t0:.0f}s in all)", flush=True)

    def _status_shows(self, obj: dict[str, Any]) -> bool:
        """Tracker mark for the live samples: the Pipeline's status names the wanted release in flight;
        notes time.time() then (the page's Date.now() is on the same clock)."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        want = self.wanted.get(key)
        if want is None:
            return False
        stage, release = want
        shown = any(
            s.get("name") == stage and s.get("inFlight") == release
            for s in (obj.get("status") or {}).get("stages") or []
        )
        if shown and key not in self.status_seen:
            self.status_seen[key] = time.time()
        return False  # the Tracker's own mark is not used: one pipeline may be wanted again

    def release(
        self, p: dict[str, Any], short: str, prefix: str = "", approve: bool = True
    ) -> dict[str, Any]:
        """Release <app>-<short> of pipeline p (with its prod approval when p needs one and `approve`)."""
        name = f"{p['name']}-{short}"
        body = release_dict(
            name, pipeline=p["name"], namespace=p["home"], label=f"{p['home']}-{name}", digest_prefix=prefix
        )
        body["metadata"]["labels"] = {LABEL: "true"}
        created = self.b.custom.create_namespaced_custom_object(GROUP, VERSION, p["home"], "releases", body)
        if approve and p["approval"]:
            self.b.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                p["home"],
                "approvals",
                approval_dict(name, "prod", uid=created["metadata"]["uid"]),
            )
        return created

    def wave(self, label: str, plan: list[tuple[dict[str, Any], str, str, bool, Any]]) -> float:
        """Create the releases (pipeline, name, digest prefix, approve, done(release)), wait for each
        to be `done`; the seconds it took."""
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda x: self.release(x[0], x[1], x[2], x[3]), plan))
        keys = {(p["home"], f"{p['name']}-{short}"): done for p, short, _, _, done in plan}
        try:
            self.releases.wait(
                lambda objs: all(k in objs and done(objs[k]) for k, done in keys.items()),
                f"wave {label}: {len(keys)} releases where they should be",
                self.deadline.left(900),
            )
        except TimeoutError:
            with self.releases.cond:
                late = [
                    f"{k[0]}/{k[1]} {phase_of(self.releases.objects.get(k, {}))}"
                    for k, done in keys.items()
                    if not done(self.releases.objects.get(k, {}))
                ]
            raise TimeoutError(f"wave {label}: not where they should be: {late[:10]}") from None
        took = time.monotonic() - t0
        print(f"wave {label}: {len(plan)} releases in {took:.0f}s", flush=True)
        return took

    def build(self) -> dict[str, Any]:
        """Both waves; what the world holds."""

        def succeeded(r: dict[str, Any]) -> bool:
            return phase_of(r) == "Succeeded"

        def gated(r: dict[str, Any]) -> bool:
            return phase_of(r) == "AwaitingApproval"

        def failed(r: dict[str, Any]) -> bool:
            return phase_of(r) == "Failed"

        def rolling(r: dict[str, Any]) -> bool:
            stages = (r.get("status") or {}).get("stages") or []
            return any(s.get("name") == "staging" and s.get("deployedAt") for s in stages)

        took1 = self.wave("1", [(p, "r1", "", True, succeeded) for p in self.pipelines])
        plan2: list[tuple[dict[str, Any], str, str, bool, Any]] = []
        kinds: dict[str, list[str]] = {"failed": [], "in_flight": [], "gated": [], "promoted_twice": []}
        self.settled: list[dict[str, Any]] = []
        for k, p in enumerate(self.pipelines):
            ref = f"{p['home']}/{p['name']}"
            if k % 33 == 5:
                plan2.append((p, "r2", "0bad", True, failed))
                kinds["failed"].append(ref)
            elif k % 10 == 3:
                plan2.append((p, "r2", "dead", True, rolling))
                kinds["in_flight"].append(ref)
            elif k % 8 == 0 and p["approval"]:
                plan2.append((p, "r2", "", False, gated))
                kinds["gated"].append(ref)
            elif k % 10 == 7:
                plan2.append((p, "r2", "", True, succeeded))
                kinds["promoted_twice"].append(ref)
            else:
                self.settled.append(p)
        took2 = self.wave("2", plan2)
        with self.releases.cond:
            phases: dict[str, int] = {}
            for r in self.releases.objects.values():
                phases[phase_of(r) or "(none)"] = phases.get(phase_of(r) or "(none)", 0) + 1
        return {
            "wave1_s": took1,
            "wave2_s": took2,
            "second_release": {k: len(v) for k, v in kinds.items()},
            "release_phases": phases,
            "pipelines_with_3_stages": sum(len(p["stages"]) == 3 for p in self.pipelines),
            "pipelines_with_approval": sum(p["approval"] for p in self.pipelines),
        }

    def close(self) -> None:
        for t in self.trackers:
            t.close()
        if self.op:
            self.op.stop()


def version(dash: DashboardProcess) -> int:
    """The dashboard store's version (bumped by every watch event)."""
    status, health = dash.request("GET", "/healthz")  # with the token: the details
    if status != 200:
        raise RuntimeError(f"dashboard /healthz: {status} {health}")
    return int(health["version"])


def wait_version(dash: DashboardProcess, above: int, timeout: float = 30) -> int:
    end = time.monotonic() + timeout
    while True:
        v = version(dash)
        if v > above:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"the dashboard's store did not move past version {above} in {timeout:.0f}s")
        time.sleep(0.02)  # polling the dashboard's counter between samples, not timing anything


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU so far (/proc/stat's first line)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_now(pids: dict[str, int]) -> dict[str, Any]:
    """What the machine is doing: the load average, how many API servers run on it (other sessions'
    clusters), every CPU's busy jiffies, and the CPU seconds of our own processes so far."""
    names = subprocess.run(["ps", "-eo", "comm", "--no-headers"], capture_output=True, text=True, check=False)
    return {
        "t": time.monotonic(),
        "load": [round(x, 2) for x in os.getloadavg()],
        "kube_apiservers_running": names.stdout.split().count("kube-apiserver"),
        "cpu_ticks": cpu_ticks(),
        "cpu_s": {k: proc_cpu_seconds(pid) for k, pid in pids.items()},
    }


def machine_during(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Over the measuring: how busy the machine's CPUs were (every process, ours and others'), how
    much of one CPU each of our processes used, the load average at both ends."""
    busy = after["cpu_ticks"][0] - before["cpu_ticks"][0]
    total = after["cpu_ticks"][1] - before["cpu_ticks"][1]
    wall = after["t"] - before["t"]
    return {
        "seconds": wall,
        "cpus_busy_pct": round(100 * busy / total, 1) if total else None,
        "our_processes_cpu_pct": {
            k: round(100 * (after["cpu_s"][k] - v) / wall, 1) for k, v in before["cpu_s"].items() if wall
        },
        "load_before": before["load"],
        "load_after": after["load"],
        "kube_apiservers_running": max(before["kube_apiservers_running"], after["kube_apiservers_running"]),
    }


def measure_loads(
    world: World, dash: DashboardProcess, browser: Browser, want: int, n: int
) -> dict[str, list[dict[str, Any]]]:
    """N fresh and N cached cold loads, alternating."""
    d = browser.driver
    d.set_script_timeout(40)
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE % want})
    out: dict[str, list[dict[str, Any]]] = {"fresh": [], "cached": []}
    # The printed address's token buys the session cookie once; each measured load is the board's
    # own address, as a person reloading it (no login redirect in the measurement).
    d.get(dash.url)
    d.execute_async_script(COLLECT)
    touched = [(p["home"], f"{p['name']}-r1") for p in world.settled]
    for i in range(n):
        for kind in ("fresh", "cached"):
            d.get("about:blank")
            d.execute_cdp_cmd("Network.clearBrowserCache", {})
            if kind == "fresh":
                home, name = touched[i % len(touched)]
                before = version(dash)
                world.b.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, home, "releases", name, {"metadata": {"annotations": {TOUCH: str(i)}}}
                )
                wait_version(dash, before)
            else:
                dash.request("GET", "/api/board")  # the server's board is computed for this version
            v0 = version(dash)
            d.get(dash.base + "/")
            sample = d.execute_async_script(COLLECT)
            sample["storeChanged"] = version(dash) != v0
            if sample.get("error"):
                raise RuntimeError(f"load {i + 1} ({kind}): {sample}")
            out[kind].append(sample)
            b = sample["board"] or {}
            print(
                f"load {i + 1}/{n} {kind:6}: rows {sample['rowsAt']:.0f} ms, "
                f"frame {sample['paintedAt'] or 0:.0f} ms, "
                f"/api/board {b.get('responseStart', 0) - b.get('requestStart', 0):.0f}/"
                f"{b.get('responseEnd', 0) - b.get('requestStart', 0):.0f} ms "
                f"{b.get('decodedBodySize', 0) / 1024:.0f} KiB"
                + (" (store changed during the load)" if sample["storeChanged"] else ""),
                flush=True,
            )
    return out


def measure_live(world: World, dash: DashboardProcess, browser: Browser, n: int) -> list[dict[str, Any]]:
    """N releases created on settled pipelines, the board open: created -> shown in flight."""
    d = browser.driver
    d.get(dash.url)
    d.execute_async_script(COLLECT)  # the board is drawn
    out = []
    for i, p in enumerate(world.settled[-n:]):
        name = f"{p['name']}-live-{i}"
        key = (p["home"], p["name"])
        world.wanted[key] = ("staging", name)
        sel = f'.board-row[data-pipeline="{p["home"]}/{p["name"]}"] [data-inflight="{name}"]'
        d.execute_script(WATCH_FOR, sel)
        sent = time.time()
        world.release(p, f"live-{i}", "dead")
        created = time.time()
        shown_ms = d.execute_async_script(SEEN, sel, 30000)
        if shown_ms is None:
            raise TimeoutError(f"live {i + 1}: {sel} not on the board within 30 s")
        shown = shown_ms / 1000
        status = world.status_seen.get(key)
        sample = {
            "pipeline": f"{p['home']}/{p['name']}",
            "create_request_s": created - sent,
            "created_to_board_s": shown - created,
            "status_to_board_s": (shown - status) if status else None,
        }
        out.append(sample)
        print(
            f"live {i + 1}/{n}: created -> board {sample['created_to_board_s'] * 1000:.0f} ms"
            + (f", status -> board {sample['status_to_board_s'] * 1000:.0f} ms" if status else ""),
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--apps", type=int, default=10, help="applications (pipelines) per team")
    parser.add_argument("--replicas", type=int, default=1, help="pods per Deployment")
    parser.add_argument("--loads", type=int, default=15, help="cold page loads per series (fresh, cached)")
    parser.add_argument("--live", type=int, default=8, help="live samples (releases created, board open)")
    parser.add_argument("--deadline", type=float, default=1200, help="seconds for building the world")
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'dashboard' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    if os.environ.get("CONVEYOR_SKIP_BROWSER") == "1":
        print(
            "CONVEYOR_SKIP_BROWSER=1: no browser, so no dashboard benchmark (its section is left as it was)"
        )
        return
    binaries()  # before building the world: BrowserMissing names hack/ensure-browser
    deadline = Deadline(args.deadline)
    b = Bench()
    world = World(b, args, deadline)
    dash: DashboardProcess | None = None
    try:
        t0 = time.monotonic()
        world.setup()
        built = world.build()
        built["world_s"] = time.monotonic() - t0
        pipelines = b.custom.list_cluster_custom_object(
            GROUP, VERSION, "pipelines", label_selector=f"{LABEL}=true"
        )["items"]
        want = len(pipelines)
        stages_shown = sum(len(p["spec"]["stages"]) for p in pipelines)
        dash = DashboardProcess(b.cluster.kubeconfig).start()
        pids = {k: p.proc.pid for k, p in (("dashboard", dash), ("operator", world.op)) if p and p.proc}
        state = b.cluster.cluster_dir / "state.json" if b.cluster.cluster_dir else None
        if state is not None and state.exists():  # our cluster's API server (not other sessions')
            pids["kube-apiserver"] = json.loads(state.read_text())["pids"]["kube-apiserver"]
        busy_before = machine_now(pids)
        with Browser(default_timeout=30) as browser:
            loads = measure_loads(world, dash, browser, want, args.loads)
            live = measure_live(world, dash, browser, args.live)
            console = browser.console_errors()
        busy_after = machine_now(pids)
    finally:
        if dash is not None:
            dash.stop()
        world.close()
        b.close()
    fresh, cached = load_series(loads["fresh"]), load_series(loads["cached"])
    results = {
        "world": built,
        "machine_during": machine_during(busy_before, busy_after),
        "loads_fresh": fresh,
        "loads_cached": cached,
        "fresh_loads_with_store_changing": sum(s["storeChanged"] for s in loads["fresh"]),
        "cached_loads_with_store_changing": sum(s["storeChanged"] for s in loads["cached"]),
        "live": {
            "created_to_board_s": stats([s["created_to_board_s"] for s in live]),
            "status_to_board_s": stats(
                [s["status_to_board_s"] for s in live if s["status_to_board_s"] is not None]
            ),
            "samples": live,
        },
        "samples": loads,
        "console_errors": console,
    }
    parameters = {
        "teams": args.teams,
        "apps": args.apps,
        "pipelines": want,
        "stages_shown": stages_shown,
        "replicas": args.replicas,
        "loads": args.loads,
        "live": args.live,
        "browser": "headless Chromium (tests/support/browser.py), 1400x900",
        "measured": "navigation start -> every .board-row in the DOM (performance.now() in the page); "
        "/api/board from Resource Timing; live: Release create returned -> the in-flight cell in the DOM",
    }
    print()
    for label, s in (("fresh (board computed)", fresh), ("cached (board unchanged)", cached)):
        r, api = s["rows_in_dom_s"], s["api_board_response_s"]
        print(
            f"{label:26} rows in DOM median {r['median'] * 1000:.0f} ms p90 {r['p90'] * 1000:.0f} ms; "
            f"/api/board median {api['median'] * 1000:.0f} ms p90 {api['p90'] * 1000:.0f} ms, "
            f"{s['api_board_bytes'] / 1024:.0f} KiB"
        )
    lv = results["live"]["created_to_board_s"]
    print(f"live: created -> board median {lv['median'] * 1000:.0f} ms p90 {lv['p90'] * 1000:.0f} ms")
    print(f"machine while measuring: {results['machine_during']}")
    body = section(
        script=__file__,
        parameters=parameters,
        results=results,
        goals=dashboard_goals({"parameters": parameters, **results}),
    )
    print(f"results file: {record('dashboard', body, args.results)}")


if __name__ == "__main__":
    main()
