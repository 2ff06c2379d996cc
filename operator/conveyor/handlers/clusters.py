"""The clusters stages live in: their Secrets, connections and watches, and whether each can be seen.

One `Clusters` per operator process. Its watches start when a pass first needs them (a standby,
which runs no pass, starts them when it leads; the first pass waits a moment for their listing).

- **Secrets.** A Reflector follows the Secrets labelled `conveyor.dev/cluster-secret=true` in
  Conveyor's cluster-secret namespace (never a Pipeline's namespace: a Pipeline author names a
  cluster, never a Secret). Every change is judged again (core/clusters.py); a cluster whose server,
  token or CA changed gets a new connection and new watches — a rotated token works without a
  restart.
- **Watches.** For every (cluster, stage namespace) some pipeline uses, two Reflectors follow the
  Deployments and Conveyor's Jobs there, per namespace (so a Role in the target cluster is enough).
  Their stores are what passes read for those stages (`Cache.deployment`/`Cache.jobs`), their
  events wake the pipelines concerned, and a DELETED event ends the overlay's entry, as kopf's
  events do for the control cluster.
- **The Ready gate.** A stage in another cluster is seen only once both of its Reflectors have listed
  since they last failed. Until then `problem()` says why not (ClusterConnecting, Unreachable,
  CredentialsInvalid, …) and the core decides nothing there: a restarted operator with an empty store
  never takes "no Job" for "the Job is missing".
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from conveyor.core import clusters as c
from conveyor.core.jobs import MANAGED_BY, PIPELINE_LABEL, PIPELINE_NAMESPACE_ANNOTATION
from conveyor.handlers.cache import strip
from conveyor.handlers.metrics import CLUSTER_SEEN
from conveyor.kube.client import Kube, api_unavailable
from conveyor.kube.reflector import Reflector
from conveyor.kube.remote import RemoteKube, connect, problem_of

log = logging.getLogger("conveyor.clusters")

Key = tuple[str, str]  # (pipeline namespace, pipeline name)
Pair = tuple[str, str]  # (cluster, stage namespace)


# How long a pass waits for a just-started watch's first listing (a cluster that does not answer
# costs the pass this once; after that its state is known at once).
SETTLE_SECONDS = 3.0
REFUSED_SECONDS = 30.0  # a stage whose write was refused (403/401) is unseen this long, then tried again
REPORT_SECONDS = 5.0  # a pass's failed request makes the cluster's watches list again this often at most


class ClusterUnavailable(Exception):
    """A request for a cluster that cannot be used now (the pass's action fails and is retried)."""


def _strip_job(obj: Mapping[str, Any]) -> dict[str, Any]:
    return strip(obj, template=False)


def _secret_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "metadata": {
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "annotations": dict(meta.get("annotations") or {}),
        },
        "data": dict(obj.get("data") or {}),
    }


def _nothing(*_: Any) -> None:
    """The callbacks until the operator sets them."""


class Clusters:
    """See the module docstring. Thread-safe: passes, Reflector threads and the event loop call it."""

    def __init__(
        self,
        control: Kube,
        secret_namespace: str,
        *,
        allow_insecure: bool = False,
        reflector: Callable[..., Reflector] = Reflector,
    ) -> None:
        self.control = control
        self.secret_namespace = secret_namespace
        self.allow_insecure = allow_insecure
        self._reflector = reflector
        self._lock = threading.RLock()
        self._configs: dict[str, c.ClusterConfig | c.ClusterProblem] = {}
        self._conns: dict[str, RemoteKube] = {}
        self._watches: dict[Pair, tuple[Reflector, Reflector]] = {}
        self._users: dict[Pair, set[Key]] = {}
        self._declared: dict[Key, set[Pair]] = {}
        self._secrets: Reflector | None = None
        self._configured = False  # the Secrets' first listing has been judged (_secrets_changed)
        self._stopped = False
        self._reported: dict[str, float] = {}  # cluster -> when a pass last reported it failing
        self._refused: dict[Pair, tuple[float, c.ClusterProblem]] = {}  # a write refused there
        self._metered: set[str] = set()  # clusters with a conveyor_cluster_seen series
        # Set by the operator (called from Reflector threads; they hand over to the event loop).
        self.wake: Callable[[Key], None] = _nothing
        self.wake_deployment: Callable[[str, str, str], None] = _nothing
        self.gone: Callable[[str, str, str, str, str], None] = _nothing

    # --- lifecycle

    def start(self) -> None:
        """Start following the cluster Secrets — once, when a stage first names another cluster (an
        operator whose pipelines all live in its own cluster reads no Secret, and needs no right to)."""
        if self._secrets is not None or self._stopped:
            return
        path = f"/api/v1/namespaces/{quote(self.secret_namespace)}/secrets"
        self._secrets = self._reflector(
            self.control,
            path,
            name=f"cluster Secrets in {self.secret_namespace}",
            label_selector=f"{c.SECRET_LABEL}=true",
            strip=_secret_view,
            on_event=lambda *_: self._secrets_changed(),
            on_state=self._secrets_changed,
        )
        self._secrets.start()  # after the assignment: its first callback reads self._secrets

    def stop(self) -> None:
        """Stop every Reflector (operator shutdown)."""
        with self._lock:
            self._stopped = True  # a pass still running starts nothing now
            reflectors = [r for pair in self._watches.values() for r in pair]
            self._watches.clear()
            if self._secrets is not None:
                reflectors.append(self._secrets)
        for r in reflectors:
            r.stop()

    # --- what passes ask

    def declare(self, key: Key, pairs: set[Pair]) -> None:
        """The (cluster, namespace) pairs pipeline `key` uses now (empty: it is gone). Watches no
        pipeline uses any more are stopped."""
        with self._lock:
            for pair in self._declared.pop(key, set()) - pairs:
                users = self._users.get(pair, set())
                users.discard(key)
                if not users:
                    self._users.pop(pair, None)
                    self._unwatch(pair)
            if pairs:
                self._declared[key] = set(pairs)
            for pair in pairs:
                self._users.setdefault(pair, set()).add(key)
            used = {cluster for cluster, _ in self._users}
            for cluster in list(self._metered - used):
                # No stage names it any more: its series goes (an alert on 0 must be able to clear).
                with contextlib.suppress(KeyError):
                    CLUSTER_SEEN.remove(cluster)
            self._metered &= used

    def problem(self, pipeline_namespace: str, cluster: str, namespace: str) -> c.ClusterProblem | None:
        """Why a stage of a Pipeline in `pipeline_namespace`, in `namespace` of `cluster`, cannot be
        seen now; None: it can (its Deployments and Jobs are listed and watched)."""
        with self._lock:
            self.start()
            secrets = self._secrets
        if secrets is not None:
            secrets.settle(SETTLE_SECONDS)
        with self._lock:
            if self._stopped:
                return c.ClusterProblem(c.CONNECTING, "the operator is stopping")
            if self._secrets is None or not self._configured:
                error = self._secrets.error if self._secrets is not None else None
                why = f": {problem_of(error, 'control').message}" if error is not None else ""
                return c.ClusterProblem(
                    c.CONNECTING, f"the cluster Secrets in {self.secret_namespace} are not listed yet{why}"
                )
            found = c.resolve(self._configs, cluster, pipeline_namespace, namespace, self.secret_namespace)
            if isinstance(found, c.ClusterProblem):
                if found.reason != c.NOT_ALLOWED:  # about this pipeline, not about the cluster
                    self._meter(cluster, 0)
                return found
            refused = self._refused.get((cluster, namespace))
            if refused is not None and time.monotonic() - refused[0] < REFUSED_SECONDS:
                self._meter(cluster, 0)
                return refused[1]
            self._refused.pop((cluster, namespace), None)
            watches = self._watch((cluster, namespace), found)
        for r in watches:
            # Started a moment ago (first use, a restart, a rotated Secret): the first listing is a
            # few milliseconds away — waited for, rather than the stage said to be connecting.
            r.settle(SETTLE_SECONDS)
        problem = next((problem_of(r.error, cluster) for r in watches if r.error is not None), None)
        if problem is None and not all(r.listed for r in watches):
            problem = c.ClusterProblem(
                c.CONNECTING, f"listing {namespace}'s Deployments and Jobs in cluster {cluster}"
            )
        self._meter(cluster, 0 if problem else 1)
        return problem

    def kube(self, cluster: str) -> RemoteKube:
        """The connection to `cluster`; ClusterUnavailable when there is none (not configured)."""
        with self._lock:
            conn = self._conns.get(cluster)
        if conn is None:
            raise ClusterUnavailable(f"no connection to cluster {cluster}")
        return conn

    def deployment(self, cluster: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as the watch last saw it (None: not there). ClusterUnavailable when the
        namespace is not watched and listed right now (a Secret rotated since the pass looked):
        an empty store must never read as "no Deployment"."""
        return self._seen(cluster, namespace)[0].get(name)

    def jobs(self, cluster: str, namespace: str) -> list[dict[str, Any]]:
        """Conveyor's Jobs in `namespace` of `cluster` as the watch last saw them (ClusterUnavailable
        as for `deployment`)."""
        return self._seen(cluster, namespace)[1].items()

    def seen_again_at(self, cluster: str, namespace: str) -> datetime | None:
        """When the stage's watches last listed after failing (None: they never failed)."""
        with self._lock:
            watches = self._watches.get((cluster, namespace), ())
        times = [r.seen_again_at for r in watches if r.seen_again_at is not None]
        return max(times) if times else None

    def report(self, cluster: str) -> None:
        """A pass could not reach `cluster`: its watches list again at once (at most every
        REPORT_SECONDS), and so confirm the failure (the stage is then unseen) or clear it."""
        now = time.monotonic()
        with self._lock:
            if now - self._reported.get(cluster, -REPORT_SECONDS) < REPORT_SECONDS:
                return
            self._reported[cluster] = now
            watches = [r for (name, _), pair in self._watches.items() if name == cluster for r in pair]
        for r in watches:
            r.interrupt()

    def refused(self, cluster: str, namespace: str, error: BaseException) -> None:
        """A write to `namespace` of `cluster` was refused (403, 401): the stage is unseen, with that
        reason, for REFUSED_SECONDS; then the pass that follows tries again."""
        status = getattr(error, "status", None)
        if status not in (401, 403):
            if status is None or api_unavailable(error):
                self.report(cluster)
            return
        with self._lock:
            self._refused[(cluster, namespace)] = (time.monotonic(), problem_of(error, cluster))
        log.warning("cluster %s refused a write in %s: %s", cluster, namespace, problem_of(error, cluster))

    def _meter(self, cluster: str, value: int) -> None:
        with self._lock:
            self._metered.add(cluster)
        CLUSTER_SEEN.labels(cluster).set(value)

    def _seen(self, cluster: str, namespace: str) -> tuple[Reflector, Reflector]:
        with self._lock:
            watches = self._watches.get((cluster, namespace))
        if watches is None or any(r.stopped or not r.listed or r.error is not None for r in watches):
            raise ClusterUnavailable(f"cluster {cluster}: {namespace} is not watched right now")
        return watches

    # --- inside

    def _watch(self, pair: Pair, config: c.ClusterConfig) -> tuple[Reflector, Reflector]:
        """The pair's Reflectors, started when missing (with the lock held)."""
        cluster, namespace = pair
        conn = self._conns.get(cluster)
        if conn is None:
            conn = connect(config, self.control.fence, self.control.api.user_agent)
            self._conns[cluster] = conn
        existing = self._watches.get(pair)
        if existing is not None:
            return existing
        ns = quote(namespace)

        def on_state() -> None:
            with self._lock:
                keys = list(self._users.get(pair, ()))
            for key in keys:
                self.wake(key)

        def on_deployment(kind: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if kind == "DELETED":
                self.gone("deployments", namespace, meta.get("name", ""), meta.get("uid", ""), cluster)
            self.wake_deployment(cluster, namespace, meta.get("name", ""))

        def on_job(kind: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if kind == "DELETED":
                self.gone("jobs", namespace, meta.get("name", ""), meta.get("uid", ""), cluster)
            pipeline_ns = (meta.get("annotations") or {}).get(PIPELINE_NAMESPACE_ANNOTATION, "")
            self.wake((pipeline_ns, (meta.get("labels") or {}).get(PIPELINE_LABEL, "")))

        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        pair_watches = (
            self._reflector(
                conn,
                f"/apis/apps/v1/namespaces/{ns}/deployments",
                name=f"cluster {cluster}: Deployments in {namespace}",
                strip=strip,
                on_event=on_deployment,
                on_state=on_state,
            ).start(),
            self._reflector(
                conn,
                f"/apis/batch/v1/namespaces/{ns}/jobs",
                name=f"cluster {cluster}: Conveyor's Jobs in {namespace}",
                label_selector=selector,
                strip=_strip_job,
                on_event=on_job,
                on_state=on_state,
            ).start(),
        )
        self._watches[pair] = pair_watches
        return pair_watches

    def _unwatch(self, pair: Pair) -> None:
        for r in self._watches.pop(pair, ()):
            r.stop()

    def _secrets_changed(self) -> None:
        """Judge every cluster Secret again; a cluster whose connection changed starts afresh."""
        if self._secrets is None or not self._secrets.listed:
            return
        parsed = []
        for obj in self._secrets.items():
            meta = obj.get("metadata") or {}
            parsed.append(
                c.parse_cluster_secret(
                    meta.get("name", ""),
                    meta.get("annotations") or {},
                    obj.get("data") or {},
                    allow_insecure=self.allow_insecure,
                )
            )
        for item in parsed:
            if isinstance(item, tuple) and not item[0]:  # no name a stage could use: said here only
                log.warning("cluster Secret ignored: %s", item[1].message)
        configs = c.index(parsed)
        woken: set[Key] = set()
        with self._lock:
            before = self._configs
            self._configs = configs
            for name in set(before) | set(configs):
                old, new = before.get(name), configs.get(name)
                same = (
                    isinstance(old, c.ClusterConfig)
                    and isinstance(new, c.ClusterConfig)
                    and old.fingerprint() == new.fingerprint()
                )
                if same and old == new:
                    continue
                if not same:
                    # New credentials, CA or server (or no longer usable): new connection, new watches.
                    self._conns.pop(name, None)
                    for pair in [p for p in self._watches if p[0] == name]:
                        self._unwatch(pair)
                    if isinstance(new, c.ClusterConfig):
                        log.info("cluster %s: connection configured from Secret %s", name, new.secret)
                    elif isinstance(new, c.ClusterProblem):
                        log.warning("cluster %s: %s", name, new)
                for pair, users in self._users.items():
                    if pair[0] == name:
                        woken |= users
            if not self._configured:  # the first listing: every stage waiting on it looks again
                woken |= {k for users in self._users.values() for k in users}
            self._configured = True
        for key in woken:
            self.wake(key)
