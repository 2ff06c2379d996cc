"""Scale (issue #11): many pipelines, several releases each created at once, against one operator.

Usage: .venv/bin/python bench/scale.py [--teams 20] [--apps 10] [--releases 2] [--replicas 2]
                                       [--approvals] [--lone-runs 3] [--deadline 900] [--out PATH]
                                       [--results PATH] [--clusters 1|2 [--outage]]

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

--clusters 2 (issue #16, stages in other clusters): a second local control plane (hack/cluster in
<the bench cluster's folder>-b, --second-cluster-dir; started with the audit log unless it runs, and
then left running) holds every team's prod namespace and Deployments; each Pipeline's prod stage names
it (`cluster: prod-b`). It gets the chart's target role (`mode=target` for the prod namespaces) and
the operator a TokenRequest token of its ServiceAccount, in a cluster Secret (Argo CD's format) in the
operator's own namespace (the chart's `clusters.enabled`, `--cluster-secret-namespace`). Besides the
numbers above it reports API requests per stage promotion per cluster (each cluster's audit log, the
operator's identity there: the chart's ServiceAccount here, the target ServiceAccount there), and
writes the 'scale-2clusters' section (details: <cluster folder>/results/scale-2clusters.json, with
the operator's log beside it). --outage stops the second cluster's kube-apiserver for
--outage-seconds (20) once half the pipelines have a release in prod, starts it again, and reports
the releases that ended wrongly (must be 0), when the operator worked there again, and the extra
delay against the last 'scale-2clusters' run of the same shape in the results file; its section is
'scale-2clusters-outage'. The one-cluster run (--clusters 1, the default) is unchanged.
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
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from harness import REPO, Bench, create_all, deployment, median
from results import load, record, results_path, section
from scalestats import (
    SEGMENTS,
    AuditRecord,
    Key,
    audit_events,
    audit_files,
    audit_records,
    audit_requests,
    cluster_secret,
    extra_delay,
    first_after,
    first_request_after,
    operator_requests,
    outage_due,
    per_promotion_table,
    percentile,
    proc_cpu_seconds,
    proc_memory_kb,
    requests_by_cluster,
    scale_goals,
    stage_promotions_by_stage,
    time_breakdown,
    two_cluster_goals,
    wrong_end_states,
)
from support import cluster as cluster_mod
from support.builders import REPO as IMAGE_REPO
from support.builders import approval_dict, pipeline_dict, release_dict
from support.cluster import kubectl_binary
from support.operator import OperatorProcess
from support.wait import wait_for_object

GROUP, VERSION = "conveyor.dev", "v1alpha1"
LABEL = "conveyor.dev/bench-scale"
TERMINAL = {"Succeeded", "Failed", "Superseded", "RolledBack", "Cancelled", "Vetoed"}


def service_account_token(name: str, namespace: str, kube: list[str]) -> str:
    """A TokenRequest token (4 h) of ServiceAccount `namespace/name`, as `kubectl create token` makes it."""
    return subprocess.run(
        [kubectl_binary(), "create", "token", name, "-n", namespace, "--duration", "4h", *kube],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


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


class ClusterB:
    """The second local control plane of --clusters 2 (issue #16): every team's prod namespace and
    Deployments live here, and the operator (in the first cluster) reaches it as the chart's target
    identity (`mode=target`, a TokenRequest token) through a cluster Secret in its own namespace.
    Started with the audit log unless it already runs (then reused, and left running)."""

    NAME = "prod-b"  # stages[].cluster
    TARGET_RELEASE = "conveyor-target"  # the Helm release, and its ServiceAccount's name

    def __init__(self, folder: Path) -> None:
        self.cluster_dir, self.kubeconfig = cluster_mod.local_paths(folder)
        self.env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(self.cluster_dir)}
        self.env.setdefault("CONVEYOR_AUDIT_LOG", "1")
        running = self._cluster("status", check=False).returncode == 0
        if not running:
            self._cluster("up", capture=False)
        self.started_here = not running
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.audit_log: Path | None = None
        state = self.state()
        if state.get("audit_log"):
            self.audit_log = Path(state["audit_log"])
        self.namespaces: list[str] = []
        self.target_ns = ""
        self.identity = ""
        self.installed = False
        self._audit: list[AuditRecord] | None = None

    def _cluster(
        self, *argv: str, check: bool = True, capture: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "hack" / "cluster"), *argv],
            env=self.env,
            check=check,
            capture_output=capture,
            text=True,
        )

    def state(self) -> dict[str, Any]:
        return json.loads((self.cluster_dir / "state.json").read_text())

    def apiserver_pid(self) -> int | None:
        return self.state().get("pids", {}).get("kube-apiserver")

    def namespace(self, name: str) -> str:
        """Create namespace `name` here (with its default ServiceAccount, which pods need)."""
        self.core.create_namespace({"metadata": {"name": name, "labels": {"conveyor.dev/bench": "true"}}})
        self.namespaces.append(name)
        wait_for_object(
            self.core.list_namespaced_service_account,
            "default",
            lambda sa: sa is not None,
            namespace=name,
            what=f"default ServiceAccount in {name} (cluster {self.NAME})",
        )
        return name

    def install_target(self, namespaces: list[str]) -> str:
        """The chart's target role for `namespaces` (Roles there, a ServiceAccount in a namespace of
        its own); a token of that ServiceAccount."""
        self.target_ns = self.namespace(f"scale-target-{uuid.uuid4().hex[:6]}")
        kube = ["--kubeconfig", str(self.kubeconfig)]
        subprocess.run(
            [
                helm_binary(),
                "install",
                self.TARGET_RELEASE,
                str(REPO / "charts" / "conveyor"),
                "-n",
                self.target_ns,
                "--set",
                "mode=target",
                "--set",
                f"target.namespaces={{{','.join(namespaces)}}}",
                *kube,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        self.installed = True
        self.identity = f"system:serviceaccount:{self.target_ns}:{self.TARGET_RELEASE}"
        return service_account_token(self.TARGET_RELEASE, self.target_ns, kube)

    def secret(self, token: str, pipeline_namespaces: list[str]) -> dict[str, Any]:
        """The cluster Secret for the operator's cluster (Argo CD's format)."""
        admin = json.loads(self.kubeconfig.read_text())
        return cluster_secret(
            self.NAME,
            secret_name=f"cluster-{self.NAME}",
            server=admin["clusters"][0]["cluster"]["server"],
            token=token,
            ca_pem=(self.cluster_dir / "pki" / "ca.crt").read_bytes(),
            pipeline_namespaces=pipeline_namespaces,
        )

    def stop_apiserver(self) -> None:
        self._cluster("stop", "kube-apiserver")

    def start_apiserver(self) -> None:
        """Start it again; returns once it serves (/readyz and every CRD)."""
        self._cluster("start", "kube-apiserver")

    def audit(self, start: datetime, end: datetime, by_agent: bool = False) -> dict[str, Counter[Key]]:
        return audit_requests(self.records(), start, end, by_agent=by_agent) if self.audit_log else {}

    def records(self) -> list[AuditRecord]:
        if not self.audit_log:
            return []
        if self._audit is None:  # read once, at report time: the log holds every request of the run
            self._audit = audit_records(audit_events(audit_files(self.audit_log)))
        return self._audit

    def close(self) -> None:
        """The target role's cluster-wide part, the namespaces; the cluster if this run started it."""
        if self.installed:
            subprocess.run(
                [
                    helm_binary(),
                    "uninstall",
                    self.TARGET_RELEASE,
                    "-n",
                    self.target_ns,
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                capture_output=True,
                check=False,
            )
        for ns in self.namespaces:
            with contextlib.suppress(Exception):
                self.core.delete_namespace(ns)
        if self.started_here:
            self._cluster("down", check=False, capture=False)


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
        remote: ClusterB | None = None,
    ) -> None:
        self.b, self.args, self.deadline = b, args, deadline
        self.remote = remote  # --clusters 2: every prod namespace and Deployment lives there
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
                    "prod": (
                        self.remote.namespace(f"scale-{tag}-prod-{uuid.uuid4().hex[:6]}")
                        if self.remote
                        else b.namespace(f"scale-{tag}-prod")
                    ),
                    "apps": "1" if i == a.teams else str(a.apps),
                }
            )
        self.deployments = Tracker(b.apps.list_deployment_for_all_namespaces, label_selector=f"{LABEL}=true")
        if self.remote:
            self.remote_deployments = Tracker(
                self.remote.apps.list_deployment_for_all_namespaces, label_selector=f"{LABEL}=true"
            )
        jobs: list[tuple[str, dict[str, Any]]] = []
        remote_jobs: list[tuple[str, dict[str, Any]]] = []
        for team in self.teams:
            for j in range(int(team["apps"])):
                for stage in ("staging", "prod"):
                    body = deployment(f"app-{j:02d}", "web", replicas=a.replicas)
                    body["metadata"]["labels"] = {LABEL: "true"}
                    (remote_jobs if self.remote and stage == "prod" else jobs).append((team[stage], body))
        create_all(b, "deployments", jobs)
        if self.remote:
            apps = self.remote.apps
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda job: apps.create_namespaced_deployment(*job), remote_jobs))
        n = len(jobs) + len(remote_jobs)
        self.deployments.wait(
            lambda objs: sum(rolled_out(d) for d in objs.values()) >= len(jobs),
            f"{len(jobs)} Deployments rolled out",
            self.deadline.left(600),
        )
        if self.remote:
            self.remote_deployments.wait(
                lambda objs: sum(rolled_out(d) for d in objs.values()) >= len(remote_jobs),
                f"{len(remote_jobs)} Deployments rolled out in cluster {self.remote.NAME}",
                self.deadline.left(600),
            )
        where = f" (prod's {len(remote_jobs)} in cluster {self.remote.NAME})" if self.remote else ""
        print(
            f"setup: {len(self.teams) * 3} namespaces, {n} Deployments rolled out{where} "
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
                if self.remote:
                    stages[1]["cluster"] = self.remote.NAME
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
        # With --clusters 2 the prod namespaces are in the other cluster: not served here.
        stages_here = ("home", "staging") if self.remote else ("home", "staging", "prod")
        served = [team[k] for team in self.teams for k in stages_here]
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
                # --clusters 2: the Role on the cluster Secrets of its own namespace
                *(["--set", "clusters.enabled=true"] if self.remote else []),
                *kube,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        token = service_account_token(self.helm_release, self.helm_ns, kube)
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
        if self.remote:
            token_b = self.remote.install_target([team["prod"] for team in self.teams])
            b.core.create_namespaced_secret(
                self.helm_ns, self.remote.secret(token_b, [team["home"] for team in self.teams])
            )
            served_args += ["--cluster-secret-namespace", self.helm_ns]
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
        if self.remote:
            remote_pid = self.remote.apiserver_pid()
            snap["remote_apiserver_pid"] = remote_pid
            with contextlib.suppress(OSError):  # stopped by the outage drill right now
                snap["remote_apiserver_cpu"] = proc_cpu_seconds(remote_pid) if remote_pid else None
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
        outage: dict[str, Any] = {}
        drill = None
        if getattr(a, "outage", False) and self.remote:
            drill = threading.Thread(target=self.outage, args=(burst, outage), daemon=True)
            drill.start()
        res = self.phase("burst", burst, a.parallel)
        if drill:
            drill.join(self.deadline.left(120))
        return {"idle": idle, "lone": lone_runs, "burst": res, "outage": outage}

    def outage(self, burst: list[tuple[str, str, str]], out: dict[str, Any]) -> None:
        """The outage drill (--outage): once half the burst's pipelines have a release in prod (the
        other cluster's stage), stop that cluster's kube-apiserver for --outage-seconds, then start
        it again. Notes when (wall clock) in `out`; nothing when the burst ended first."""
        assert self.remote
        keys = {(home, name) for home, _, name in burst}
        pipelines = len({(home, pipeline) for home, pipeline, _ in burst})

        def due_or_over(objs: dict[tuple[str, str], Any]) -> bool:
            mine = [objs[k] for k in keys if k in objs]
            if len(mine) == len(keys) and all(phase_of(r) in TERMINAL for r in mine):
                return True
            return outage_due(mine, "prod", pipelines)

        try:
            self.releases.wait(due_or_over, "the middle of the burst", self.deadline.left())
        except TimeoutError:
            return
        with self.releases.cond:
            mine = [self.releases.objects[k] for k in keys if k in self.releases.objects]
        if all(phase_of(r) in TERMINAL for r in mine) and len(mine) == len(keys):
            print("outage: the burst ended before its middle was seen; no outage", flush=True)
            return
        out["ended_before"] = sum(phase_of(r) in TERMINAL for r in mine)
        out["stopped_at"] = now_utc()
        try:
            self.remote.stop_apiserver()
            print(f"outage: cluster {self.remote.NAME}'s kube-apiserver stopped", flush=True)
            time.sleep(self.args.outage_seconds)  # the outage itself: a fixed length, nothing to wait on
        finally:  # whatever happened, the cluster gets its API server back
            out["start_at"] = now_utc()
            self.remote.start_apiserver()
            out["back_at"] = now_utc()
        print(
            f"outage: back after {(out['back_at'] - out['stopped_at']).total_seconds():.1f}s "
            f"(restart took {(out['back_at'] - out['start_at']).total_seconds():.1f}s)",
            flush=True,
        )

    # --- results --------------------------------------------------------------------------------

    def prod_images(self) -> dict[tuple[str, str], str]:
        out = {}
        team_of = {team["prod"]: team["home"] for team in self.teams}
        tracker = self.remote_deployments if self.remote else self.deployments
        with tracker.cond:
            for (ns, name), d in tracker.objects.items():
                if ns in team_of:
                    out[team_of[ns], name] = d.spec.template.spec.containers[0].image
        return out

    def deployment_summary(self, namespace: str, name: str) -> str:
        tracker = self.deployments
        if self.remote and any(team["prod"] == namespace for team in self.teams):
            tracker = self.remote_deployments
        with tracker.cond:
            d = tracker.objects.get((namespace, name))
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

        result: dict[str, Any] = {
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
        if self.remote:
            self.report_remote(result, measured, lone_promotions)
        return result

    def report_remote(self, res: dict[str, Any], measured: dict[str, Any], lone_promotions: int) -> None:
        """--clusters 2: what the operator asked of the other cluster (its audit log, the target
        identity), requests per stage promotion per cluster, and the outage drill's timeline."""
        remote = self.remote
        assert remote
        a, lone, burst = self.args, res["lone"], res["burst"]
        here = "control"  # the operator's own cluster
        lone_remote: Counter[Key] = Counter()
        for run in measured["lone"]:
            lone_remote += remote.audit(run["before"]["wall"], run["after"]["wall"]).get(
                remote.identity, Counter()
            )
        m = measured["burst"]
        burst_remote = remote.audit(m["before"]["wall"], m["after"]["wall"]).get(remote.identity, Counter())
        lone["audit_requests_remote"] = [
            {"verb": v, "resource": r, "count": n} for (v, r), n in lone_remote.most_common()
        ]
        burst["audit_requests_remote"] = [
            {"verb": v, "resource": r, "count": n} for (v, r), n in burst_remote.most_common()
        ]
        by_stage = stage_promotions_by_stage(m["final"].values())
        lone_by_stage = stage_promotions_by_stage(
            r for run in measured["lone"] for r in run["final"].values()
        )

        def by_cluster(
            rows_here: list[dict[str, Any]], there: Counter[Key], promotions: int, stages: Any
        ) -> Any:
            if not self.audit_log or not remote.audit_log:
                return {}
            return requests_by_cluster(
                {here: sum(r["count"] for r in rows_here), remote.NAME: sum(there.values())},
                promotions,
                {here: stages.get("staging", 0), remote.NAME: stages.get("prod", 0)},
            )

        before, after = m["before"], m["after"]
        same_pid = before.get("remote_apiserver_pid") == after.get("remote_apiserver_pid")
        cpu_b = (
            after["remote_apiserver_cpu"] - before["remote_apiserver_cpu"]
            if same_pid
            and after.get("remote_apiserver_cpu") is not None
            and before.get("remote_apiserver_cpu")
            else None
        )
        res["operator"]["remote_apiserver_cpu_s_burst"] = cpu_b
        res["parameters"] |= {
            "clusters": 2,
            "remote_cluster": remote.NAME,
            "remote_cluster_dir": str(remote.cluster_dir),
            "remote_identity": remote.identity,
            "remote_audit_log": str(remote.audit_log) if remote.audit_log else None,
            "namespaces_served": 2 * len(self.teams),
            "remote_namespaces": len(self.teams),
            "outage_s": a.outage_seconds if a.outage else None,
        }
        outage = None
        drill = measured.get("outage")
        if a.outage:
            outage = {"down_s": a.outage_seconds}
            if drill and drill.get("back_at"):
                back = drill["back_at"]
                finals = [r for r in m["final"].values() if r]
                first_req = first_request_after(remote.records(), remote.identity, back)
                first_work = first_after(finals, "prod", back)
                first_rollout = first_after(finals, "prod", back, keys=("rolledOutAt",))
                outage |= {
                    "stopped_at": drill["stopped_at"].isoformat(),
                    "back_at": back.isoformat(),
                    "down_s": (back - drill["stopped_at"]).total_seconds(),
                    "restart_s": (back - drill["start_at"]).total_seconds(),
                    "releases_ended_before": drill["ended_before"],
                    "first_request_after_s": (first_req - back).total_seconds() if first_req else None,
                    "resumed_after_s": (first_work - back).total_seconds() if first_work else None,
                    # when the operator first saw a rollout there done: the cluster's own recovery
                    # (its controller-manager, kwok) is in this, not only Conveyor's
                    "first_rollout_done_after_s": (first_rollout - back).total_seconds()
                    if first_rollout
                    else None,
                }
        # Its Reflectors there since it started: a list and a watch per kind and stage namespace,
        # and again after each failure (the outage drill).
        lifetime = remote.audit(self.operator_started, m["after"]["wall"]).get(remote.identity, Counter())
        res["clusters"] = {
            "control": here,
            "remote": remote.NAME,
            "remote_lists_and_watches_since_start": {
                f"{v} {r}": n for (v, r), n in sorted(lifetime.items()) if v in ("list", "watch")
            },
            "lone_stage_promotions_by_stage": dict(lone_by_stage),
            "burst_stage_promotions_by_stage": dict(by_stage),
            "lone_requests_by_cluster": by_cluster(
                lone["audit_requests"], lone_remote, lone_promotions, lone_by_stage
            ),
            "burst_requests_by_cluster": by_cluster(
                burst["audit_requests"], burst_remote, burst["stage_promotions"], by_stage
            ),
            "outage": outage,
        }

    def close(self, operator_log: Path | None = None) -> None:
        if operator_log and self.op:  # --clusters 2: what it said of the other cluster
            operator_log.parent.mkdir(parents=True, exist_ok=True)
            operator_log.write_text("\n".join(self.op.lines) + "\n")
        for t in ("releases", "pipelines", "deployments", "remote_deployments"):
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

    out: dict[str, Any] = {
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
    if "clusters" in res:  # --clusters 2
        mc = res["clusters"]
        out["clusters"] = {
            "remote": mc["remote"],
            "requests_per_promotion_by_cluster": {
                "lone": mc["lone_requests_by_cluster"],
                "burst": mc["burst_requests_by_cluster"],
            },
            "burst_stage_promotions_by_stage": mc["burst_stage_promotions_by_stage"],
            "outage": mc["outage"],
        }
    return out


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
    ]
    mc = res.get("clusters")
    if mc:  # --clusters 2
        lines.insert(0, f"Two clusters: every prod stage in cluster {mc['remote']}.")
        lines.insert(1, "")
        cpu_b = op["remote_apiserver_cpu_s_burst"]
        lines.append(f"| {mc['remote']}'s kube-apiserver CPU during the burst | {s(cpu_b)} |")
        for label, by in (
            ("burst", mc["burst_requests_by_cluster"]),
            ("lone", mc["lone_requests_by_cluster"]),
        ):
            for name, v in by.items():
                lines.append(
                    f"| {label}: API requests to {name} per stage promotion / "
                    "per promotion of a stage there | "
                    f"{s(v['per_promotion'], '')} / {s(v['per_promotion_here'], '')} "
                    f"({v['requests']} requests, {v['stage_promotions_here']} promotions there) |"
                )
        o = mc.get("outage")
        if o is not None and o.get("stopped_at"):
            lines += [
                f"| outage: {mc['remote']}'s kube-apiserver down "
                f"(incl. its restart, {o['restart_s']:.1f} s) | "
                f"{o['down_s']:.1f} s, {o['releases_ended_before']} releases had ended before |",
                "| outage, after it was back: the operator's first request there / first stage progress "
                "there / first rollout there seen done | "
                f"{s(o['first_request_after_s'])} / {s(o['resumed_after_s'])} / "
                f"{s(o.get('first_rollout_done_after_s'))} |",
            ]
            extra = o.get("extra_delay")
            if extra:
                lines.append(
                    f"| outage: extra delay vs the run without it ({extra['baseline_when']}): "
                    "burst wall time / "
                    f"newest p50 / p99 | {s(extra['duration_s'])} / {s(extra['newest_p50_s'])} / "
                    f"{s(extra['newest_p99_s'])} |"
                )
            else:
                lines.append(
                    "| outage: extra delay | - (no two-cluster run of this shape without it recorded) |"
                )
        elif o is not None:
            lines.append("| outage | never started: the burst ended before its middle was seen |")
        lw = mc.get("remote_lists_and_watches_since_start") or {}
        lines.append(
            f"| the operator's lists and watches in {mc['remote']} since it started "
            f"({p['remote_namespaces']} stage namespaces there) | "
            + (", ".join(f"{k} {n}" for k, n in lw.items()) or "-")
            + " |"
        )
    lines.append("")
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
        if mc:  # the operator's own count holds both clusters' requests (it has no cluster label)
            sources[f"audit log, {mc['remote']}"] = counter(part["audit_requests_remote"])
        total = {k: sum(c.values()) for k, c in sources.items()}
        lines += [
            f"API requests per stage promotion, {label} ({n} promotions; operator's own count "
            f"{total['operator metrics'] / max(n, 1):.1f}, audit log {total['audit log'] / max(n, 1):.1f}"
            + "".join(f", {k} {v / max(n, 1):.1f}" for k, v in list(total.items())[2:])
            + "):",
            "",
            "| verb | resource | " + " | ".join(sources) + " |",
            "|---|---|" + "---|" * len(sources),
        ]
        for verb, resource, values in per_promotion_table(sources, n):
            lines.append(f"| {verb} | {resource} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
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
        "('scale-2clusters' with --clusters 2, 'scale-2clusters-outage' with --outage) "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: every prod stage in a second local control plane (stages[].cluster, issue #16), "
        "recorded as the 'scale-2clusters' section",
    )
    parser.add_argument(
        "--second-cluster-dir",
        type=Path,
        help="--clusters 2: the second cluster's folder (default: <the bench cluster's folder>-b)",
    )
    parser.add_argument(
        "--outage",
        action="store_true",
        help="--clusters 2: stop the second cluster's kube-apiserver in the middle of the burst "
        "(recorded as 'scale-2clusters-outage')",
    )
    parser.add_argument("--outage-seconds", type=float, default=20, help="how long --outage lasts")
    args = parser.parse_args()
    if args.outage and args.clusters != 2:
        parser.error("--outage needs --clusters 2")
    key = {1: "scale", 2: "scale-2clusters"}[args.clusters] + ("-outage" if args.outage else "")
    # Before the harness acquires the cluster: a cluster this run starts gets the audit log.
    os.environ.setdefault("CONVEYOR_AUDIT_LOG", "1")
    deadline = Deadline(args.deadline)
    b = Bench()
    remote = None
    if args.clusters == 2:
        if not b.cluster.cluster_dir:
            b.close()
            raise SystemExit("--clusters 2 needs the local control plane (not CONVEYOR_TEST_KUBECONFIG)")
        try:
            remote = ClusterB(args.second_cluster_dir or Path(f"{b.cluster.cluster_dir}-b"))
        except BaseException:
            b.close()
            raise
        print(f"second cluster {remote.NAME}: {remote.cluster_dir}", flush=True)
    sc = Scale(b, args, deadline, remote=remote)
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
        out = args.out or (b.cluster.cluster_dir or REPO / ".cluster" / "bench") / "results" / f"{key}.json"
        sc.close(out.with_suffix(".operator.log") if remote else None)
        if remote:
            remote.close()
        b.close()
    body = section(
        script=__file__,
        parameters=results["parameters"],
        results=summary(results, out),
        goals=[],
    )
    outage = (results.get("clusters") or {}).get("outage")
    if outage is not None and outage.get("stopped_at"):
        # What the outage cost: against the two-cluster run of the same shape without it, if recorded.
        outage["extra_delay"] = extra_delay(body, load(results_path(args.results)).get("scale-2clusters"))
    body["goals"] = scale_goals(results) + (two_cluster_goals(results) if "clusters" in results else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(markdown(results))
    print()
    print(f"results: {out}")
    print(f"results file: {record(key, body, args.results)}")


if __name__ == "__main__":
    main()
