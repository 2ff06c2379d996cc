"""Scale (issue #11): many pipelines, several releases each created at once, against one operator.

Usage: .venv/bin/python bench/scale.py [--teams 20] [--apps 10] [--releases 2] [--replicas 2]
                                       [--approvals] [--lone-runs 3] [--deadline 900] [--out PATH]
                                       [--results PATH]

TEAMS x APPS pipelines (200 by default). Each team has a namespace for its Pipelines and Releases and
shares one staging and one prod namespace among its APPS applications (one Deployment of REPLICAS
pods per application and stage). Two stages, a smoke-test Job each; with --approvals prod requires
an approval, which the bench creates right after each release, bound to its uid as `kubectl
conveyor approve` does.

The operator runs as `conveyor run` with the Helm chart's ServiceAccount (a TokenRequest token, the
chart's RBAC), so the API server's audit log tells its requests from the bench's admin ones. It
serves every namespace (one watch per kind), as a platform would run it; --namespaced lists the
bench's namespaces instead (one watch per kind and namespace, the chart's least-privilege form).
The cluster is started with the audit log (CONVEYOR_AUDIT_LOG=1) unless one already runs; without
it only the operator's own counts are reported.

It measures, in one run:
  lone   a release on an extra one-app pipeline, created -> Succeeded, alone (LONE_RUNS times)
  burst  RELEASES releases per pipeline, all created at once, until every one ends (or the deadline)

and reports end-to-end p50/p99 (burst vs lone), stage promotions per minute, the releases that ended
wrongly (per pipeline the newest must be Succeeded and in prod, the others Superseded or Succeeded),
the operator's peak RSS and CPU seconds (/proc), and API requests per stage promotion by verb and
resource, from the operator's conveyor_api_requests_total and from the audit log. The results go to
<cluster folder>/results/scale.json (--out) and a Markdown summary is printed at the end; the headline
numbers and one row per goal of issue #11 (all correct, p99 <= 3x lone, <= 15 requests per stage
promotion, RSS < 150 MB) replace the "scale" section of the benchmarks' one results file (--results;
bench/results.py). `make bench` runs it at the issue's shape: --teams 20 --apps 10 --releases 5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import watch

from harness import REPO, Bench, create_all, deployment, median
from results import record, section
from scalestats import (
    SEGMENTS,
    AuditRecord,
    Key,
    audit_events,
    audit_files,
    audit_records,
    audit_requests,
    operator_requests,
    per_promotion_table,
    percentile,
    proc_cpu_seconds,
    proc_memory_kb,
    scale_goals,
    time_breakdown,
    wrong_end_states,
)
from support.builders import REPO as IMAGE_REPO
from support.builders import approval_dict, pipeline_dict, release_dict
from support.cluster import kubectl_binary
from support.operator import OperatorProcess

GROUP, VERSION = "conveyor.dev", "v1alpha1"
LABEL = "conveyor.dev/bench-scale"
TERMINAL = {"Succeeded", "Failed", "Superseded", "RolledBack", "Cancelled", "Vetoed"}


class Deadline:
    """The run's global deadline: every wait gets at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        remaining = max(0.0, self.end - time.monotonic())
        return remaining if cap is None else min(cap, remaining)


class Tracker:
    """One cluster-wide watch (label-selected) in a thread: the latest object per (namespace, name),
    and when each first satisfied `mark` (time.monotonic(), as seen by this watch)."""

    def __init__(self, list_fn: Any, mark: Any = None, **kwargs: Any) -> None:
        self.list_fn, self.kwargs, self.mark = list_fn, kwargs, mark
        self.objects: dict[tuple[str, str], Any] = {}
        self.marked: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self._stop = False
        self._watch = watch.Watch()
        self._rv = self._relist()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _key(obj: Any) -> tuple[str, str]:
        meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
        if isinstance(meta, dict):
            return meta["namespace"], meta["name"]
        return meta.namespace, meta.name

    @staticmethod
    def _rv_of(obj: Any) -> str:
        meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
        return meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version

    def _put(self, obj: Any, deleted: bool = False) -> None:
        key = self._key(obj)
        with self.cond:
            if deleted:
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
                if self.mark and key not in self.marked and self.mark(obj):
                    self.marked[key] = time.monotonic()
            self.cond.notify_all()

    def _relist(self) -> str:
        listing = self.list_fn(**self.kwargs)
        items = listing["items"] if isinstance(listing, dict) else listing.items
        for obj in items:
            self._put(obj)
        meta = listing["metadata"] if isinstance(listing, dict) else listing.metadata
        return meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version

    def _run(self) -> None:
        while not self._stop:
            try:
                for ev in self._watch.stream(
                    self.list_fn, resource_version=self._rv, timeout_seconds=120, **self.kwargs
                ):
                    if ev["type"] == "ERROR":
                        raise RuntimeError(str(ev["object"]))
                    if ev["type"] == "BOOKMARK":
                        continue
                    self._rv = self._rv_of(ev["object"])
                    self._put(ev["object"], deleted=ev["type"] == "DELETED")
                    if self._stop:
                        return
            except Exception:  # expired (410) or reset: list again and watch on
                if self._stop:
                    return
                time.sleep(0.2)  # back off a failed watch before relisting
                with contextlib.suppress(Exception):  # the API server is busy: the next round retries
                    self._rv = self._relist()

    def wait(self, done: Any, what: str, timeout: float) -> None:
        """Block until done(objects) holds; TimeoutError naming `what` after `timeout` seconds."""
        end = time.monotonic() + timeout
        with self.cond:
            while not done(self.objects):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.cond.wait(remaining)

    def close(self) -> None:
        self._stop = True
        self._watch.stop()


def rolled_out(d: Any) -> bool:
    s = d.status
    return bool(
        s
        and (s.observed_generation or 0) >= d.metadata.generation
        and (s.updated_replicas or 0) == d.spec.replicas
        and (s.available_replicas or 0) == d.spec.replicas
        and not s.unavailable_replicas
    )


def phase_of(release: dict[str, Any]) -> str:
    return (release.get("status") or {}).get("phase") or ""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def now_utc() -> datetime:
    return datetime.now(UTC)


class Scale:
    """The teams, their Deployments and Pipelines, and one operator serving them (the chart's RBAC).

    bench/verdict.py reuses it for its background burst: `extra_namespaces` are served by the same
    operator, `track_releases` and `burst_plan` give it the burst without the lone runs."""

    def __init__(
        self,
        b: Bench,
        args: argparse.Namespace,
        deadline: Deadline,
        extra_namespaces: Sequence[str] = (),
    ) -> None:
        self.b, self.args, self.deadline = b, args, deadline
        self.extra_namespaces = list(extra_namespaces)
        self.teams: list[dict[str, str]] = []
        self.op: OperatorProcess | None = None
        self.identity = ""
        self.helm_release = ""
        self.helm_ns = ""
        self.audit_log: Path | None = None
        state = (
            json.loads((b.cluster.cluster_dir / "state.json").read_text()) if b.cluster.cluster_dir else {}
        )
        if state.get("audit_log"):
            self.audit_log = Path(state["audit_log"])
        self.apiserver_pid = state.get("pids", {}).get("kube-apiserver")
        self._audit: list[AuditRecord] | None = None
        self.operator_started = now_utc()

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        a, b = self.args, self.b
        t0 = time.monotonic()
        for i in range(a.teams + 1):  # the last one is the lone baseline's
            tag = "lone" if i == a.teams else f"t{i:02d}"
            self.teams.append(
                {
                    "home": b.namespace(f"scale-{tag}"),
                    "staging": b.namespace(f"scale-{tag}-stg"),
                    "prod": b.namespace(f"scale-{tag}-prod"),
                    "apps": "1" if i == a.teams else str(a.apps),
                }
            )
        self.deployments = Tracker(b.apps.list_deployment_for_all_namespaces, label_selector=f"{LABEL}=true")
        jobs = []
        for team in self.teams:
            for j in range(int(team["apps"])):
                for stage in ("staging", "prod"):
                    body = deployment(f"app-{j:02d}", "web", replicas=a.replicas)
                    body["metadata"]["labels"] = {LABEL: "true"}
                    jobs.append((team[stage], body))
        create_all(b, "deployments", jobs)
        n = len(jobs)
        self.deployments.wait(
            lambda objs: sum(rolled_out(d) for d in objs.values()) >= n,
            f"{n} Deployments rolled out",
            self.deadline.left(600),
        )
        print(
            f"setup: {len(self.teams) * 3} namespaces, {n} Deployments rolled out "
            f"in {time.monotonic() - t0:.0f}s",
            flush=True,
        )
        self.start_operator()
        self.pipelines = Tracker(
            b.custom.list_cluster_custom_object, group=GROUP, version=VERSION, plural="pipelines"
        )
        bodies = []
        for team in self.teams:
            for j in range(int(team["apps"])):
                stages: list[dict[str, Any]] = [
                    {"name": "staging", "namespace": team["staging"]},
                    {"name": "prod", "namespace": team["prod"]},
                ]
                if a.approvals:
                    # the bench approves as the admin that releases: no four eyes here
                    stages[1] |= {"requiresApproval": True, "approval": {"fourEyes": False}}
                body = pipeline_dict(
                    f"app-{j:02d}",
                    team["home"],
                    targets=[{"deployment": f"app-{j:02d}", "container": "web"}],
                    smoke_test={"command": ["smoke"]},
                    stages=stages,
                )
                bodies.append((team["home"], body))
        create_all(b, "pipelines", bodies)

        def reconciled(objs: dict[tuple[str, str], Any]) -> bool:
            ok = [
                p
                for p in objs.values()
                if (p.get("status") or {}).get("observedGeneration", 0) >= p["metadata"]["generation"]
            ]
            return len(ok) >= len(bodies)

        self.pipelines.wait(reconciled, f"{len(bodies)} Pipelines reconciled", self.deadline.left(300))
        print(
            f"setup: operator up as {self.identity}; {len(bodies)} Pipelines reconciled "
            f"({time.monotonic() - t0:.0f}s in all)",
            flush=True,
        )

    def start_operator(self) -> None:
        """The chart's ServiceAccount and RBAC for every namespace; `conveyor run` with its token."""
        b = self.b
        self.helm_ns = b.namespace("scale-op")
        self.helm_release = "conveyor-scale"
        served = [team[k] for team in self.teams for k in ("home", "staging", "prod")]
        served += self.extra_namespaces
        helm = helm_binary()
        kube = ["--kubeconfig", str(b.cluster.kubeconfig)]
        subprocess.run(
            [
                helm,
                "install",
                self.helm_release,
                str(REPO / "charts" / "conveyor"),
                "-n",
                self.helm_ns,
                *(["--set", f"namespaces={{{','.join(served)}}}"] if self.args.namespaced else []),
                "--set",
                "crds.install=false",
                "--set",
                "admissionPolicies.install=false",
                "--set",
                "metrics.service.enabled=false",
                *kube,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        token = subprocess.run(
            [
                kubectl_binary(),
                "create",
                "token",
                self.helm_release,
                "-n",
                self.helm_ns,
                "--duration",
                "4h",
                *kube,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        admin = json.loads(b.cluster.kubeconfig.read_text())
        sa_config = dict(
            admin,
            users=[{"name": "sa", "user": {"token": token}}],
            contexts=[{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}],
            **{"current-context": "sa"},
        )
        path = b.cluster.kubeconfig.parent / "scale-operator.kubeconfig"
        path.write_text(json.dumps(sa_config))
        path.chmod(0o600)
        self.identity = f"system:serviceaccount:{self.helm_ns}:{self.helm_release}"
        self.operator_started = now_utc()
        served_args = [x for ns in served for x in ("-n", ns)] if self.args.namespaced else []
        # The chart's Role allows the Lease it names, in the chart's namespace, and no other.
        self.op = OperatorProcess(
            path, *served_args, lease_name=f"{self.helm_release}-leader", lease_namespace=self.helm_ns
        ).start()
        self.op.wait_for_log("is alive", timeout=self.deadline.left(120))
        self.op.wait_healthy(timeout=self.deadline.left(120))

    # --- measuring ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        assert self.op
        assert self.op.proc
        pid = self.op.proc.pid
        snap: dict[str, Any] = {
            "t": time.monotonic(),
            "wall": now_utc(),
            "metrics": scrape(self.op.metrics_port),
            "cpu": proc_cpu_seconds(pid),
            **proc_memory_kb(pid),
        }
        if self.apiserver_pid:
            snap["apiserver_cpu"] = proc_cpu_seconds(self.apiserver_pid)
        return snap

    def create_release(self, home: str, pipeline: str, name: str) -> float:
        """Create a release (and its prod approval with --approvals); the monotonic time before."""
        b = self.b
        t0 = time.monotonic()
        created = b.custom.create_namespaced_custom_object(
            GROUP, VERSION, home, "releases", release_dict(name, pipeline=pipeline, namespace=home)
        )
        if self.args.approvals:
            b.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                home,
                "approvals",
                approval_dict(name, "prod", uid=created["metadata"]["uid"]),
            )
        return t0

    def phase(self, label: str, releases: list[tuple[str, str, str]], parallel: int) -> dict[str, Any]:
        """Create `releases` (home, pipeline, name) - per pipeline in order, pipelines in parallel -
        and wait until every one has ended or the deadline passes."""
        created: dict[tuple[str, str], float] = {}
        by_pipeline: dict[tuple[str, str], list[str]] = {}
        for home, pipeline, name in releases:
            by_pipeline.setdefault((home, pipeline), []).append(name)
        before = self.snapshot()

        def run(item: tuple[tuple[str, str], list[str]]) -> None:
            (home, pipeline), names = item
            for name in names:
                created[home, name] = self.create_release(home, pipeline, name)

        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(run, by_pipeline.items()))
        t_created = time.monotonic()
        keys = set(created)
        timed_out = False
        try:
            self.releases.wait(
                lambda objs: all(phase_of(objs.get(k, {})) in TERMINAL for k in keys),
                f"{len(keys)} releases ({label}) to end",
                self.deadline.left(),
            )
        except TimeoutError as e:
            print(f"{label}: {e}", flush=True)
            timed_out = True
        after = self.snapshot()
        with self.releases.cond:
            final = {k: self.releases.objects.get(k, {}) for k in keys}
            marked = {k: self.releases.marked.get(k) for k in keys}
        return {
            "before": before,
            "after": after,
            "created": created,
            "final": final,
            "marked": marked,
            "create_seconds": t_created - before["t"],
            "timed_out": timed_out,
        }

    def track_releases(self) -> None:
        """Watch every Release of the cluster, marking when each first ends (phase() waits on it)."""
        self.releases = Tracker(
            self.b.custom.list_cluster_custom_object,
            mark=lambda r: phase_of(r) in TERMINAL,
            group=GROUP,
            version=VERSION,
            plural="releases",
        )

    def burst_plan(self) -> list[tuple[str, str, str]]:
        """The burst's releases (home, pipeline, name): RELEASES per pipeline of every team but the
        lone baseline's, release k of every pipeline before release k+1 of any."""
        return [
            (team["home"], f"app-{j:02d}", f"r{k}-app-{j:02d}")
            for k in range(self.args.releases)
            for team in self.teams[:-1]
            for j in range(int(team["apps"]))
        ]

    def run(self) -> dict[str, Any]:
        a = self.args
        self.track_releases()
        idle = self.snapshot()
        lone_team = self.teams[-1]
        lone_runs = []
        for k in range(a.lone_runs):
            lone_runs.append(self.phase("lone", [(lone_team["home"], "app-00", f"lone-{k}")], 1))
            res = lone_runs[-1]
            ((key, t0),) = res["created"].items()
            end = res["marked"][key]
            print(
                f"lone {k + 1}/{a.lone_runs}: {phase_of(res['final'][key]) or 'not ended'} "
                f"in {(end - t0) if end else float('nan'):.2f}s",
                flush=True,
            )
        burst = self.burst_plan()
        print(f"burst: creating {len(burst)} releases on {a.teams * a.apps} pipelines", flush=True)
        res = self.phase("burst", burst, a.parallel)
        return {"idle": idle, "lone": lone_runs, "burst": res}

    # --- results --------------------------------------------------------------------------------

    def prod_images(self) -> dict[tuple[str, str], str]:
        out = {}
        team_of = {team["prod"]: team["home"] for team in self.teams}
        with self.deployments.cond:
            for (ns, name), d in self.deployments.objects.items():
                if ns in team_of:
                    out[team_of[ns], name] = d.spec.template.spec.containers[0].image
        return out

    def deployment_summary(self, namespace: str, name: str) -> str:
        with self.deployments.cond:
            d = self.deployments.objects.get((namespace, name))
        if d is None:
            return "(not seen)"
        st = d.status
        return (
            f"generation {d.metadata.generation} observed {st.observed_generation}, replicas {st.replicas} "
            f"updated {st.updated_replicas} ready {st.ready_replicas} available {st.available_replicas} "
            f"unavailable {st.unavailable_replicas}, image ...{d.spec.template.spec.containers[0].image[-8:]}"
        )

    def audit(self, start: datetime, end: datetime, by_agent: bool = False) -> dict[str, Counter[Key]]:
        if not self.audit_log:
            return {}
        if self._audit is None:  # read once: the log holds every request of the run
            self._audit = audit_records(audit_events(audit_files(self.audit_log)))
        return audit_requests(self._audit, start, end, by_agent=by_agent)

    def report(self, measured: dict[str, Any]) -> dict[str, Any]:
        a = self.args
        lone_e2e = []
        lone_promotions = 0
        lone_ops: Counter[Key] = Counter()
        lone_audit: Counter[Key] = Counter()
        for res in measured["lone"]:
            for key, t0 in res["created"].items():
                if res["marked"][key] and phase_of(res["final"][key]) == "Succeeded":
                    lone_e2e.append(res["marked"][key] - t0)
            lone_promotions += verified_stages(res["final"].values())
            lone_ops += operator_requests(res["before"]["metrics"], res["after"]["metrics"])
            lone_audit += self.audit(res["before"]["wall"], res["after"]["wall"]).get(
                self.identity, Counter()
            )
        burst = measured["burst"]
        finals = list(burst["final"].values())
        promotions = verified_stages(finals)
        duration = burst["after"]["t"] - burst["before"]["t"]
        newest_by_pipeline: dict[tuple[str, str], tuple[str, str]] = {}
        from scalestats import order_key

        for (ns, _name), r in burst["final"].items():
            if not r:
                continue
            key = (ns, r["spec"]["pipeline"])
            if key not in newest_by_pipeline or order_key(r) > order_key(
                burst["final"][newest_by_pipeline[key]]
            ):
                newest_by_pipeline[key] = (ns, r["metadata"]["name"])
        newest = set(newest_by_pipeline.values())
        e2e_all, e2e_newest = [], []
        for key, t0 in burst["created"].items():
            end = burst["marked"].get(key)
            if end is None:
                continue
            e2e_all.append(end - t0)
            if key in newest and phase_of(burst["final"][key]) == "Succeeded":
                e2e_newest.append(end - t0)
        missing = [
            {"release": f"{ns}/{name}", "phase": "(not seen)", "why": "never observed", "message": ""}
            for (ns, name), r in burst["final"].items()
            if not r
        ]
        wrong = missing + wrong_end_states([r for r in finals if r], self.prod_images(), IMAGE_REPO)
        for w in wrong:  # what its Deployments show now: was the rollout really unfinished?
            ns, name = w["release"].split("/", 1)
            r = burst["final"].get((ns, name)) or {}
            team = next((t for t in self.teams if t["home"] == ns), None)
            if team and r:
                w["deployments_now"] = {
                    stage: self.deployment_summary(team[stage], r["spec"]["pipeline"])
                    for stage in ("staging", "prod")
                }
        phases = Counter(phase_of(r) or "(none)" for r in finals)
        ops = operator_requests(burst["before"]["metrics"], burst["after"]["metrics"])
        audit_all = self.audit(burst["before"]["wall"], burst["after"]["wall"], by_agent=True)
        audit_op: Counter[Key] = Counter()
        for who, counts in audit_all.items():
            if who.startswith(self.identity + " ("):
                audit_op += counts
        users = {
            u: sum(c.values()) for u, c in sorted(audit_all.items(), key=lambda uc: -sum(uc[1].values()))
        }
        # The operator's whole life so far: its watches are opened at startup, before either phase.
        lifetime = self.audit(self.operator_started, burst["after"]["wall"]).get(self.identity, Counter())
        watches = {r: n for (v, r), n in lifetime.items() if v == "watch"}
        after = burst["after"]

        def stats(values: list[float]) -> dict[str, float | None]:
            if not values:
                return {"n": 0, "p50": None, "p99": None, "max": None}
            return {
                "n": len(values),
                "p50": median(values),
                "p99": percentile(values, 99),
                "max": max(values),
            }

        def table(c: Counter[Key]) -> list[dict[str, Any]]:
            return [{"verb": v, "resource": r, "count": n} for (v, r), n in c.most_common()]

        return {
            "when": now_utc().isoformat(timespec="seconds"),
            "parameters": {
                "teams": a.teams,
                "apps": a.apps,
                "pipelines": a.teams * a.apps,
                "releases_per_pipeline": a.releases,
                "replicas": a.replicas,
                "approvals": a.approvals,
                "lone_runs": a.lone_runs,
                "deadline_s": a.deadline,
                "operator_identity": self.identity,
                "audit_log": str(self.audit_log) if self.audit_log else None,
                "namespaces_served": 3 * len(self.teams),
            },
            "lone": {
                "end_to_end_s": stats(lone_e2e),
                "stage_promotions": lone_promotions,
                "operator_requests": table(lone_ops),
                "audit_requests": table(lone_audit),
            },
            "burst": {
                "releases": len(burst["created"]),
                "timed_out": burst["timed_out"],
                "create_seconds": burst["create_seconds"],
                "duration_s": duration,
                "phases": dict(phases),
                "end_to_end_s_newest": stats(e2e_newest),
                "end_to_end_s_all": stats(e2e_all),
                "stage_promotions": promotions,
                "stage_promotions_per_minute": promotions / duration * 60 if duration else None,
                "wrong_end_states": wrong,
                "operator_requests": table(ops),
                "audit_requests": table(audit_op),
                "audit_requests_by_user": users,
                "operator_watches_opened_since_start": watches,
                # Where the newest releases' time went, per stage (median / p99 seconds).
                "time_breakdown_newest": {
                    stage: {name: stats(v) for name, v in segs.items()}
                    for stage, segs in time_breakdown(
                        burst["final"][k] for k in sorted(newest) if burst["final"].get(k)
                    ).items()
                },
            },
            "lone_time_breakdown": {
                stage: {name: stats(v) for name, v in segs.items()}
                for stage, segs in time_breakdown(
                    r for res in measured["lone"] for r in res["final"].values() if r
                ).items()
            },
            "operator": {
                "rss_idle_mb": measured["idle"]["VmRSS"] / 1024,
                "rss_peak_mb": after["VmHWM"] / 1024,
                "rss_end_mb": after["VmRSS"] / 1024,
                "cpu_s_setup": measured["idle"]["cpu"],
                "cpu_s_burst": after["cpu"] - burst["before"]["cpu"],
                "apiserver_cpu_s_burst": (
                    after.get("apiserver_cpu", 0) - burst["before"].get("apiserver_cpu", 0)
                )
                if self.apiserver_pid
                else None,
            },
        }

    def close(self) -> None:
        for t in ("releases", "pipelines", "deployments"):
            if hasattr(self, t):
                getattr(self, t).close()
        if self.op:
            self.op.stop()
        if self.helm_release:  # its ClusterRole and binding; the namespaced rest goes with the namespaces
            subprocess.run(
                [
                    helm_binary(),
                    "uninstall",
                    self.helm_release,
                    "-n",
                    self.helm_ns,
                    "--kubeconfig",
                    str(self.b.cluster.kubeconfig),
                ],
                capture_output=True,
                check=False,
            )


def helm_binary() -> str:
    out = subprocess.run(
        [REPO / "hack" / "build-binaries", "--print"], capture_output=True, text=True, check=True
    ).stdout
    return str(Path(dict(line.split("=", 1) for line in out.split())["HELM_BIN"]) / "helm")


def verified_stages(releases: Any) -> int:
    """Stage promotions done: stage records Verified across these releases."""
    return sum(
        1
        for r in releases
        if r
        for s in (r.get("status") or {}).get("stages") or []
        if s.get("phase") == "Verified"
    )


def summary(res: dict[str, Any], details: Path) -> dict[str, Any]:
    """The scale section of the one results file: the headline numbers; every release's end state
    and the request tables stay in the run's own JSON (`details`)."""
    lone, burst = res["lone"], res["burst"]

    def total(rows: list[dict[str, Any]]) -> int:
        return sum(r["count"] for r in rows)

    def per(rows: list[dict[str, Any]], promotions: int) -> float | None:
        return total(rows) / promotions if rows and promotions else None

    return {
        "details": str(details),
        "lone": {
            "end_to_end_s": lone["end_to_end_s"],
            "stage_promotions": lone["stage_promotions"],
            "requests_per_promotion": {
                "operator": per(lone["operator_requests"], lone["stage_promotions"]),
                "audit_log": per(lone["audit_requests"], lone["stage_promotions"]),
            },
        },
        "burst": {
            **{
                k: burst[k]
                for k in (
                    "releases",
                    "timed_out",
                    "duration_s",
                    "phases",
                    "end_to_end_s_newest",
                    "end_to_end_s_all",
                    "stage_promotions",
                    "stage_promotions_per_minute",
                )
            },
            "wrong_end_states": len(burst["wrong_end_states"]),
            "requests_per_promotion": {
                "operator": per(burst["operator_requests"], burst["stage_promotions"]),
                "audit_log": per(burst["audit_requests"], burst["stage_promotions"]),
            },
        },
        "operator": res["operator"],
    }


def markdown(res: dict[str, Any]) -> str:
    p, lone, burst, op = res["parameters"], res["lone"], res["burst"], res["operator"]

    def s(v: float | None, unit: str = " s") -> str:
        return "-" if v is None else f"{v:.2f}{unit}"

    lines = [
        f"### Scale: {p['teams']} teams x {p['apps']} apps = {p['pipelines']} pipelines, "
        f"{p['releases_per_pipeline']} releases each at once ({burst['releases']}), "
        f"{p['replicas']} replicas, approvals {'on' if p['approvals'] else 'off'}",
        "",
        "| what | value |",
        "|---|---|",
        f"| lone release end to end, p50 / p99 (n={lone['end_to_end_s']['n']}) | "
        f"{s(lone['end_to_end_s']['p50'])} / {s(lone['end_to_end_s']['p99'])} |",
        f"| burst, newest per pipeline created -> Succeeded, p50 / p99 "
        f"(n={burst['end_to_end_s_newest']['n']}) | "
        f"{s(burst['end_to_end_s_newest']['p50'])} / {s(burst['end_to_end_s_newest']['p99'])} |",
        f"| burst, every release created -> ended, p50 / p99 / max (n={burst['end_to_end_s_all']['n']}) | "
        f"{s(burst['end_to_end_s_all']['p50'])} / {s(burst['end_to_end_s_all']['p99'])} / "
        f"{s(burst['end_to_end_s_all']['max'])} |",
    ]
    lone_e2e, newest = lone["end_to_end_s"], burst["end_to_end_s_newest"]
    if lone_e2e["p50"] and newest["p50"]:
        lines.append(
            f"| burst / lone, p50 / p99 | {newest['p50'] / lone_e2e['p50']:.1f}x / "
            f"{newest['p99'] / lone_e2e['p99']:.1f}x |"
        )
    hit = " - DEADLINE HIT" if burst["timed_out"] else ""
    lines += [
        f"| burst wall time (creating took {burst['create_seconds']:.1f} s){hit} | "
        f"{burst['duration_s']:.1f} s |",
        f"| stage promotions (Verified) / per minute | {burst['stage_promotions']} / "
        f"{s(burst['stage_promotions_per_minute'], '')} |",
        f"| end phases | {', '.join(f'{k} {v}' for k, v in sorted(burst['phases'].items()))} |",
        f"| wrong end states | {len(burst['wrong_end_states'])} |",
        f"| operator RSS idle / peak / end | {op['rss_idle_mb']:.0f} / {op['rss_peak_mb']:.0f} / "
        f"{op['rss_end_mb']:.0f} MB |",
        f"| operator CPU: setup+idle / burst | {op['cpu_s_setup']:.1f} s / {op['cpu_s_burst']:.1f} s |",
        f"| kube-apiserver CPU during the burst | {s(op['apiserver_cpu_s_burst'])} |",
        "",
    ]
    breakdown = burst.get("time_breakdown_newest") or {}
    if breakdown:
        lone_bd = res.get("lone_time_breakdown") or {}
        lines += [
            "Where the newest releases' time went, per stage (seconds; lone p50 in brackets):",
            "",
            "| stage | segment | p50 | p99 | lone |",
            "|---|---|---|---|---|",
        ]
        for stage, segs in breakdown.items():
            for name, _why in SEGMENTS:
                st = segs.get(name) or {}
                if not st.get("n"):
                    continue
                lone_p50 = ((lone_bd.get(stage) or {}).get(name) or {}).get("p50")
                lines.append(
                    f"| {stage} | {name} | {s(st['p50'], '')} | {s(st['p99'], '')} | {s(lone_p50, '')} |"
                )
        lines += ["", *(f"- {name}: {why}" for name, why in SEGMENTS), ""]
    for w in burst["wrong_end_states"][:20]:
        lines.append(f"- wrong: {w['release']} ({w['phase']}): {w['why']} - {w['message']}")
        for stage, summary in (w.get("deployments_now") or {}).items():
            lines.append(f"  - {stage} Deployment at the end: {summary}")
    if burst["wrong_end_states"]:
        lines.append("")

    def counter(rows: list[dict[str, Any]]) -> Counter[Key]:
        return Counter({(r["verb"], r["resource"]): r["count"] for r in rows})

    for label, part, n in (
        ("burst", burst, burst["stage_promotions"]),
        ("lone", lone, lone["stage_promotions"]),
    ):
        sources = {
            "operator metrics": counter(part["operator_requests"]),
            "audit log": counter(part["audit_requests"]),
        }
        total = {k: sum(c.values()) for k, c in sources.items()}
        lines += [
            f"API requests per stage promotion, {label} ({n} promotions; operator's own count "
            f"{total['operator metrics'] / max(n, 1):.1f}, audit log {total['audit log'] / max(n, 1):.1f}):",
            "",
            "| verb | resource | operator metrics | audit log |",
            "|---|---|---|---|",
        ]
        for verb, resource, values in per_promotion_table(sources, n):
            lines.append(f"| {verb} | {resource} | {values[0]:.2f} | {values[1]:.2f} |")
        lines.append("")
    if burst["operator_watches_opened_since_start"]:
        w = burst["operator_watches_opened_since_start"]
        lines += [
            f"Watches the operator opened since it started ({p['namespaces_served']} namespaces served): "
            + ", ".join(f"{r} {n}" for r, n in sorted(w.items()))
            + f" - {sum(w.values())} in all",
            "",
        ]
    if burst["audit_requests_by_user"]:
        lines += ["Audit log, every request during the burst by user:", ""]
        lines += [f"- {u}: {n}" for u, n in list(burst["audit_requests_by_user"].items())[:8]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--apps", type=int, default=10, help="applications (pipelines) per team")
    parser.add_argument("--releases", type=int, default=2, help="releases per pipeline, created at once")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--approvals", action="store_true", help="prod requires an approval (bound to the uid)"
    )
    parser.add_argument(
        "--namespaced",
        action="store_true",
        help="the operator serves the bench's namespaces only (one watch per kind and namespace; "
        "default: cluster-wide, one watch per kind)",
    )
    parser.add_argument("--lone-runs", type=int, default=3, help="lone releases measured first (baseline)")
    parser.add_argument("--parallel", type=int, default=8, help="client threads creating releases")
    parser.add_argument("--deadline", type=float, default=900, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, help="results JSON (default: <cluster>/results/scale.json)")
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'scale' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    # Before the harness acquires the cluster: a cluster this run starts gets the audit log.
    os.environ.setdefault("CONVEYOR_AUDIT_LOG", "1")
    deadline = Deadline(args.deadline)
    b = Bench()
    sc = Scale(b, args, deadline)
    if not sc.audit_log:
        print(
            "note: the cluster runs without the audit log (hack/cluster down; CONVEYOR_AUDIT_LOG=1 "
            "hack/cluster up): only the operator's own request counts are reported",
            flush=True,
        )
    try:
        sc.setup()
        measured = sc.run()
        results = sc.report(measured)
    finally:
        sc.close()
        b.close()
    out = args.out or (b.cluster.cluster_dir or REPO / ".cluster" / "bench") / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(markdown(results))
    print()
    print(f"results: {out}")
    body = section(
        script=__file__,
        parameters=results["parameters"],
        results=summary(results, out),
        goals=scale_goals(results),
    )
    print(f"results file: {record('scale', body, args.results)}")


if __name__ == "__main__":
    main()
