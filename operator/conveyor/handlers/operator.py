"""The operator process: kopf settings, the watches that wake pipeline workers, startup and shutdown.

Handlers here only route: a watch event says which pipeline should look again. Decisions happen in
the core; reading and writing happen in one reconcile pass per pipeline (handlers/reconcile.py).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from conveyor import __version__
from conveyor.api.common import GROUP, VERSION
from conveyor.core.clusters import CONTROL_CLUSTER, stage_cluster
from conveyor.core.jobs import MANAGED_BY, PIPELINE_LABEL, PIPELINE_NAMESPACE_ANNOTATION
from conveyor.core.leader import Timings
from conveyor.handlers import cache as cache_mod
from conveyor.handlers import health as health_mod
from conveyor.handlers.clusters import Clusters
from conveyor.handlers.leader import Elector, NoElection
from conveyor.handlers.metrics import serve as serve_metrics
from conveyor.handlers.notify import Notifier
from conveyor.handlers.reconcile import (
    reconcile_pipeline,
    report_orphan_approval,
    report_orphan_release,
    report_orphan_rollback,
    report_pass_failure,
)
from conveyor.handlers.workers import NewsFilter, PipelineWorkers
from conveyor.kube import faults
from conveyor.kube.client import Kube, load_api_client
from conveyor.kube.fence import Fence, Unfenced
from conveyor.kube.lease import LeaseStore
from conveyor.kube.notify import Sender
from conveyor.kube.record import JsonFormatter

log = logging.getLogger("conveyor")

# kopf keeps per-handler progress and the last-handled spec in annotations. The prefix is ours from
# day one: changing it later would make kopf re-run every handler on every object.
ANNOTATION_PREFIX = "conveyor.dev"
RECONCILE_THREADS = 16
# kopf retries a failed API request (a watch, too) after 1, 1, 2, 3, 5, 8, 13 and 21 s, then lets
# the error escalate. Through a 20 s API server outage that meant resuming up to 13 s after the
# server was back (measured: tests/e2e/test_outages.py). Conveyor retries every API_RETRY_CAP_SECONDS
# for API_RETRY_FOR_SECONDS — an outage's length — and then lets kopf escalate, so an error no retry
# heals (kopf retries 403s and 500s too: RBAC missing, a broken webhook) is not retried in silence for
# ever.
API_RETRY_CAP_SECONDS = 2.0
API_RETRY_FOR_SECONDS = 600.0


class PatientRetries:
    """kopf's `error_backoffs`: 0.5 s, 1 s, then API_RETRY_CAP_SECONDS until API_RETRY_FOR_SECONDS
    have passed. A re-iterable (not an iterator): kopf starts a fresh iteration for every request."""

    def __iter__(self) -> Iterator[float]:
        yield 0.5
        yield 1.0
        yield from itertools.repeat(API_RETRY_CAP_SECONDS, int(API_RETRY_FOR_SECONDS / API_RETRY_CAP_SECONDS))


def _targets(body: Any) -> set[tuple[str, str, str]]:
    """(stage cluster, stage namespace, Deployment) of every target in every stage: the Deployments
    whose changes concern this pipeline."""
    spec = body.get("spec") or {}
    deployments = {t.get("deployment", "") for t in spec.get("targets") or []}
    return {
        (stage_cluster(s), s.get("namespace", ""), d) for s in spec.get("stages") or [] for d in deployments
    }


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Apply Conveyor's kopf settings, connect, and log that the operator is alive. kopf passes the
    (still empty) indexes here too: the cache keeps them, and kopf fills them before any pass."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # kopf would otherwise turn its own log lines into Events on every watched object (Deployments!).
    settings.posting.enabled = False
    # Watches that go quiet are restarted rather than trusted forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 330
    settings.networking.error_backoffs = PatientRetries()
    kube: Kube = memo.kube
    fence: Fence = kube.fence
    cache = cache_mod.Cache()
    cache.bind(kwargs)
    executor = ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="reconcile")
    memo.executor = executor
    memo.news = NewsFilter()
    memo.cache = cache
    memo.deferred_orphans = {}
    gate = asyncio.Event()

    def fenced_pass(ns: str, name: str, live: bool) -> tuple[bool, float | None]:
        fence.bind()  # the pass's writes belong to this leadership term only
        return reconcile_pipeline(kube, ns, name, cache=cache, live=live)

    def fenced_report(ns: str, name: str, error: str) -> None:
        fence.bind()
        report_pass_failure(kube, ns, name, error, cache=cache)

    memo.workers = PipelineWorkers(fenced_pass, executor, report=fenced_report, gate=gate)
    _connect_clusters(memo, cache, asyncio.get_running_loop())
    # Notifications have their own tasks and threads: a slow receiver never delays a pass.
    memo.notifier = Notifier(kube, Sender(memo.notify_allowed_hosts), cache, gate=gate)
    elector: Elector | NoElection = memo.elector

    def started_leading() -> None:
        gate.set()
        memo.workers.wake_all_live()
        memo.notifier.wake_all()
        asyncio.get_running_loop().create_task(_replay_orphans(memo))

    elector.on_started = started_leading
    elector.on_stopped = gate.clear
    memo.elector_task = asyncio.get_running_loop().create_task(elector.run(), name="leader election")
    memo.health.bind(memo.workers.passes_started)
    fault = faults.armed()
    if fault is not None:
        log.warning(
            "CONVEYOR_FAULT_POINT is set: this process kills itself at fault point %s (time %d); a "
            "test-only switch, never for production",
            *fault,
        )
    log.info("conveyor %s is alive", __version__)


def _connect_clusters(memo: kopf.Memo, cache: cache_mod.Cache, loop: asyncio.AbstractEventLoop) -> None:
    """Other clusters' watches feed the same cache and wake the same workers as kopf's (their
    callbacks come from their threads: handed over to the event loop)."""
    clusters: Clusters = memo.clusters
    workers: PipelineWorkers = memo.workers
    cache.remote = clusters

    def wake(key: tuple[str, str]) -> None:
        loop.call_soon_threadsafe(workers.wake, key)

    def wake_deployment(cluster: str, namespace: str, name: str) -> None:
        loop.call_soon_threadsafe(workers.wake_deployment, cluster, namespace, name)

    def gone(kind: str, namespace: str, name: str, uid: str, cluster: str) -> None:
        cache.overlay.gone(kind, namespace, name, uid, cluster=cluster)  # thread-safe: it has a lock

    clusters.wake, clusters.wake_deployment, clusters.gone = wake, wake_deployment, gone


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    """Let a notification in flight record its answer, stop writing and free the lease (the
    standby takes over at once), then stop the workers; a pass in flight simply ends (the next
    leader redoes it safely)."""
    await memo.notifier.quiesce()  # a message a receiver just accepted is recorded before we stop
    await memo.elector.release(drain=memo.workers.idle)
    memo.elector_task.cancel()
    await memo.workers.stop()
    await memo.notifier.stop()
    memo.clusters.stop()
    memo.executor.shutdown(wait=False, cancel_futures=True)


@kopf.on.event(GROUP, VERSION, "pipelines")
async def pipeline_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Pipeline appeared, changed or went away: start, wake or stop its worker."""
    memo.notifier.observe(body.metadata.namespace or "")
    if not _news(event, body, memo, "pipelines"):
        return
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if event["type"] == "DELETED":
        memo.workers.forget(key)
        memo.clusters.declare(key, set())  # its watches in other clusters stop when no one else uses them
        return
    memo.workers.ensure(key, _targets(body))


async def _ensure_pipeline(memo: kopf.Memo, namespace: str, name: str, *, live: bool = True) -> bool:
    """Wake the pipeline's worker, starting it if the pipeline exists; False when it does not (the
    cache says so, and — `live` — the API server confirms it)."""
    key = (namespace, name)
    if key in memo.workers:
        memo.workers.wake(key)
        return True
    obj = memo.cache.pipeline(namespace, name)
    if obj is None and not live:
        return False
    if obj is None:
        # Not in the cache: perhaps created a moment ago and not indexed yet. Asked before an
        # object is told its pipeline is missing (rare, so a GET is cheap).
        obj = await _in_thread(memo, memo.kube.get_custom, "pipelines", namespace, name)
        if obj is None:
            return False
    memo.workers.ensure(key, _targets(obj))
    return True


def _news(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, plural: str) -> bool:
    """False for the echo of Conveyor's own status (or metadata) write: nothing a pass has not seen.
    (Every event first tells the cache's overlay about deletions.)"""
    _deleted(event, body, memo, plural)
    return bool(memo.news.news(event["type"], body.metadata.uid or "", body.metadata.get("generation")))


def _deleted(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, plural: str, cluster: str = CONTROL_CLUSTER
) -> None:
    """A DELETED event ends the overlay's entry for that object (see handlers/cache.py). kopf's
    watches are all in the control cluster."""
    if event["type"] == "DELETED":
        memo.deferred_orphans.pop((plural, body.metadata.namespace or "", body.metadata.name or ""), None)
        memo.cache.overlay.gone(
            plural,
            body.metadata.namespace or "",
            body.metadata.name or "",
            body.metadata.uid or "",
            cluster=cluster,
        )


async def _in_thread(memo: kopf.Memo, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call (the official client blocks) on the reconcile thread pool."""
    return await asyncio.get_running_loop().run_in_executor(memo.executor, fn, *args)


async def _report_orphan(memo: kopf.Memo, plural: str, body: kopf.Body, report: Callable[..., None]) -> None:
    """Let an object say what it is missing: computed from the newest Conveyor knows of it (the
    event's copy, or its own later write still in the overlay), and written through the overlay."""
    overlay = memo.cache.overlay
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if not memo.elector.leading:
        # A standby writes nothing; the new leader looks again at what it was told meanwhile.
        memo.deferred_orphans[(plural, namespace, name)] = (dict(body), report)
        return
    obj = overlay.resolve(plural, namespace, name, dict(body))
    if obj is not None:
        await _in_thread(memo, _bound(memo, functools.partial(report, overlay=overlay)), memo.kube, obj)


def _bound(memo: kopf.Memo, fn: Callable[..., None]) -> Callable[..., None]:
    """`fn`, run in a thread bound to the current leadership term (see kube/fence.py)."""

    def run(*args: Any) -> None:
        memo.kube.fence.bind()
        fn(*args)

    return run


async def _replay_orphans(memo: kopf.Memo) -> None:
    """A new leader: the objects told, while this replica stood by, that their pipeline or release
    was missing — asked again now (the old leader may have died before reporting them)."""
    deferred = dict(memo.deferred_orphans)
    memo.deferred_orphans.clear()  # cleared, not replaced: kopf gives each object a shallow copy of memo
    for (plural, namespace, _), (body, report) in deferred.items():
        try:
            if plural == "approvals":
                release = memo.cache.release_pipeline(namespace, body.get("spec", {}).get("release", ""))
                if release is not None:
                    continue
                missing = (
                    await _in_thread(
                        memo,
                        memo.kube.get_custom,
                        "releases",
                        namespace,
                        body.get("spec", {}).get("release", ""),
                    )
                    is None
                )
            else:
                missing = not await _ensure_pipeline(
                    memo, namespace, body.get("spec", {}).get("pipeline", "")
                )
            if missing:
                await _report_orphan(memo, plural, kopf.Body(body), report)
        except Exception:
            log.warning(
                "could not report %s %s/%s as orphaned",
                plural,
                namespace,
                body.get("metadata", {}).get("name"),
                exc_info=True,
            )


async def _wake_or_report_orphan(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, plural: str, report: Callable[..., None]
) -> None:
    """Wake the pipeline named in spec.pipeline, or — when it does not exist — let the object say so.
    (Every event, status echoes included, goes to the notifier first: status is what it tells.)"""
    memo.notifier.observe(body.metadata.namespace or "")
    if not _news(event, body, memo, plural):
        return
    namespace, pipeline = body.metadata.namespace or "", body.spec.get("pipeline", "")
    deleted = event["type"] == "DELETED"
    if await _ensure_pipeline(memo, namespace, pipeline, live=not deleted) or deleted:
        return
    await _report_orphan(memo, plural, body, report)


@kopf.on.event(GROUP, VERSION, "releases")
async def release_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Release changed: its pipeline looks again (or the release learns its pipeline is missing)."""
    await _wake_or_report_orphan(event, body, memo, "releases", report_orphan_release)


@kopf.on.event(GROUP, VERSION, "rollbacks")
async def rollback_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Rollback changed: its pipeline acts on it at once (or it learns its pipeline is missing)."""
    await _wake_or_report_orphan(event, body, memo, "rollbacks", report_orphan_rollback)


@kopf.on.event(GROUP, VERSION, "approvals")
async def approval_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Approval changed: the release's pipeline looks again (or the approval learns its release
    is missing)."""
    if not _news(event, body, memo, "approvals") or event["type"] == "DELETED":
        return
    namespace, release_name = body.metadata.namespace or "", body.spec.get("release", "")
    pipeline = memo.cache.release_pipeline(namespace, release_name)
    if pipeline is None:  # not in the cache: asked of the API server before the Approval is told
        release = await _in_thread(memo, memo.kube.get_custom, "releases", namespace, release_name)
        pipeline = (release or {}).get("spec", {}).get("pipeline")
    if pipeline is None:
        await _report_orphan(memo, "approvals", body, report_orphan_approval)
        return
    if not await _ensure_pipeline(memo, namespace, pipeline):
        # The release exists, its pipeline does not: no pass would ever judge this approval.
        report = functools.partial(report_orphan_approval, missing_pipeline=pipeline)
        await _report_orphan(memo, "approvals", body, report)


@kopf.on.event(GROUP, VERSION, "notificationchannels")
async def channel_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A NotificationChannel appeared, changed or went away: its task starts, looks again or stops."""
    memo.notifier.channel_event(event["type"], event["object"])


@kopf.on.event("apps", "v1", "deployments")
async def deployment_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment of the control cluster changed: the pipelines that target it look again."""
    _deleted(event, body, memo, "deployments", CONTROL_CLUSTER)
    memo.workers.wake_deployment(CONTROL_CLUSTER, body.metadata.namespace or "", body.metadata.name or "")


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)
async def job_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """One of Conveyor's Jobs in the control cluster changed: its pipeline looks again."""
    _deleted(event, body, memo, "jobs", CONTROL_CLUSTER)
    namespace = body.metadata.annotations.get(PIPELINE_NAMESPACE_ANNOTATION, "")
    pipeline = body.metadata.labels.get(PIPELINE_LABEL, "")
    memo.workers.wake((namespace, pipeline))


def configure_logging() -> None:
    """JSON lines on stderr for everything; kopf's per-object chatter only when it matters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kopf._core.reactor.observation").setLevel(logging.WARNING)


class _LateHealth(health_mod.Health):
    """Health whose pass tracker is bound once the workers exist (kopf's startup)."""

    def bind(self, passes: Callable[[], tuple[float, ...]]) -> None:
        self._passes = passes


def run_operator(
    *,
    namespaces: list[str],
    liveness_endpoint: str | None,
    metrics_port: int,
    leader_election: bool = True,
    lease_namespace: str | None = None,
    lease_name: str | None = None,
    identity: str | None = None,
    timings: Timings | None = None,
    notify_allowed_hosts: list[str] | None = None,
    cluster_secret_namespace: str | None = None,
    allow_insecure_clusters: bool = False,
) -> None:
    """Run the operator in the foreground until interrupted: campaigning for the lease (or, with
    `leader_election=False`, leading alone) and serving /metrics, /healthz and /readyz."""
    from conveyor.handlers.leader import DEFAULT_LEASE_NAME, default_identity, default_namespace

    configure_logging()
    timings = timings or Timings()
    api_client = load_api_client(in_cluster_first=True)  # in its Pod: its ServiceAccount
    elector: Elector | NoElection
    if leader_election:
        fence: Fence = Fence(timings)
        kube = Kube(api_client, fence)
        store = LeaseStore(kube, lease_namespace or default_namespace(), lease_name or DEFAULT_LEASE_NAME)
        identity = identity or default_identity()
        # Which replica made a request, in the API server's audit log: "conveyor/0.1.0 (pod name)".
        api_client.user_agent = f"{api_client.user_agent} ({identity})"
        elector = Elector(store, fence, identity, timings)
    else:
        kube = Kube(api_client, Unfenced())
        elector = NoElection()
    tracker = health_mod.WatchTracker()
    health_mod.install(tracker)
    health = _LateHealth(
        tracker,
        passes=lambda: (),
        leading=lambda: bool(elector.leading),
        lease_seen=lambda: elector.lease_seen_at,
        lease_duration=timings.lease_duration,
    )
    serve_metrics(metrics_port, {"/healthz": health.live, "/readyz": health.ready})
    # Stages in other clusters: their Secrets live beside the Lease unless told otherwise.
    clusters = Clusters(
        kube,
        cluster_secret_namespace or lease_namespace or default_namespace(),
        allow_insecure=allow_insecure_clusters,
    )
    kube.clusters = clusters
    memo = kopf.Memo(
        kube=kube,
        elector=elector,
        health=health,
        clusters=clusters,
        notify_allowed_hosts=list(notify_allowed_hosts or []),
    )
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness_endpoint,
            memo=memo,
        )
    )
