"""One worker per Pipeline: the single writer for that pipeline's releases, approvals and status.

A worker sleeps until something relevant changes (a watch event wakes it) or a deadline it asked
for comes due, then runs one reconcile pass in a thread. Bursts of events coalesce into one pass.
Pipelines never wait for each other: each has its own task, and a failing pass only backs off its
own pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from conveyor.handlers.metrics import (
    ACTIVE_WORKERS,
    CONTROLLER,
    PIPELINE_PASSES,
    RECONCILE_ERRORS,
    RECONCILE_TIME,
    RECONCILE_TOTAL,
)
from conveyor.kube.client import api_unavailable
from conveyor.kube.fence import NotLeader

log = logging.getLogger("conveyor.workers")

Key = tuple[str, str]  # (namespace, pipeline name)
Target = tuple[str, str, str]  # (stage cluster, stage namespace, Deployment name)
Pass = Callable[[str, str, bool], tuple[bool, float | None]]  # (namespace, name, live) -> ...
Report = Callable[[str, str, str], None]  # (namespace, name, error): say it on the Pipeline

# A full look even when nothing announced a change, read from the API server itself rather than the
# watch-fed cache (which never learns what was deleted while a watch was down); jittered +-20 % so
# pipelines started together do not resync together.
RESYNC_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 60.0
# A pass that failed because the API server was away (an outage, a restart, etcd down) is retried at
# most this far apart: when the server returns, nothing may announce it (a resumed watch says nothing
# when nothing changed), and the pipeline should go on within seconds, not a minute.
MAX_UNAVAILABLE_BACKOFF_SECONDS = 4.0
REPORT_AFTER_FAILURES = 2  # a pass that fails again is no blip: the Pipeline says so


class PipelineWorkers:
    """The registry of pipeline workers and the Deployments each one promotes (so a Deployment's
    change wakes only the pipelines that target it — not every pipeline sharing its namespace)."""

    def __init__(
        self,
        reconcile_pass: Pass,
        executor: ThreadPoolExecutor,
        report: Report | None = None,
        *,
        gate: asyncio.Event | None = None,
    ) -> None:
        self._pass = reconcile_pass
        self._report = report
        self._executor = executor
        # Open while this replica leads: a standby keeps its workers (and kopf's caches) but runs
        # no pass. None: always open.
        self._gate = gate
        self._live_next: set[Key] = set()  # pipelines whose next pass reads the API server itself
        self._running: dict[Key, float] = {}  # pipelines with a pass in flight -> when it started
        self._stopping = False
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wakeups: dict[Key, asyncio.Event] = {}
        self._targets: dict[Key, set[Target]] = {}
        self._by_target: dict[Target, set[Key]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._tasks

    def ensure(self, key: Key, targets: set[Target]) -> None:
        """Start the pipeline's worker if needed, remember the Deployments it targets, and wake it."""
        self._index(key, targets)
        if key not in self._tasks or self._tasks[key].done():
            self._wakeups[key] = asyncio.Event()
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"pipeline {key[0]}/{key[1]}")
        self.wake(key)

    def wake(self, key: Key) -> None:
        """Ask for a pass soon (no-op for unknown pipelines)."""
        event = self._wakeups.get(key)
        if event is not None:
            event.set()

    def wake_deployment(self, cluster: str, namespace: str, name: str) -> None:
        """Wake the pipelines that target this Deployment (of `cluster`)."""
        for key in self._by_target.get((cluster, namespace, name), ()):
            self.wake(key)

    def wake_all_live(self) -> None:
        """Every known pipeline passes soon, reading the API server itself (a new leader does not
        trust what its caches say happened while it stood by)."""
        self._live_next.update(self._wakeups)
        for key in list(self._wakeups):
            self.wake(key)

    def passes_started(self) -> tuple[float, ...]:
        """When each pass in flight started (monotonic): liveness judges the oldest. (Read from the
        probe server's thread: a copy taken while the loop changes the dict is simply taken again.)"""
        for _ in range(5):
            try:
                return tuple(self._running.values())
            except RuntimeError:
                continue
        return ()

    def idle(self) -> bool:
        """True when no pass is in flight."""
        return not self._running

    def _index(self, key: Key, targets: set[Target]) -> None:
        for target in self._targets.pop(key, set()):
            self._by_target.get(target, set()).discard(key)
        self._targets[key] = set(targets)
        for target in targets:
            self._by_target.setdefault(target, set()).add(key)

    def forget(self, key: Key) -> None:
        """Stop the worker of a deleted pipeline."""
        task = self._tasks.pop(key, None)
        self._wakeups.pop(key, None)
        self._index(key, set())
        self._targets.pop(key, None)
        if task is not None:
            task.cancel()
        with contextlib.suppress(KeyError):  # the series goes with its pipeline (labels stay bounded)
            PIPELINE_PASSES.remove(*key)

    async def stop(self) -> None:
        """Cancel every worker (operator shutdown)."""
        # Also a flag: Python 3.11's wait_for can swallow a cancellation that arrives as its wake-up
        # does, and the worker would loop on.
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: Key) -> None:
        namespace, name = key
        loop = asyncio.get_running_loop()
        failures = 0
        next_live = time.monotonic() + _jittered(RESYNC_SECONDS)  # the cache is fresh at start
        while not self._stopping:
            wakeup = self._wakeups.get(key)
            if wakeup is None:
                return
            wakeup.clear()
            if self._gate is not None and not self._gate.is_set():
                await self._gate.wait()  # standing by: the wake-up waits for leadership
            started = time.monotonic()
            ACTIVE_WORKERS.labels(CONTROLLER).inc()
            PIPELINE_PASSES.labels(namespace, name).inc()
            live = started >= next_live or key in self._live_next
            self._live_next.discard(key)
            if live:
                next_live = started + _jittered(RESYNC_SECONDS)
            self._running[key] = started
            try:
                exists, requeue = await loop.run_in_executor(
                    self._executor, self._pass, namespace, name, live
                )
                failures = 0
                RECONCILE_TOTAL.labels(
                    CONTROLLER, "requeue_after" if requeue is not None else "success"
                ).inc()
            except NotLeader as e:
                # Leadership ended during the pass: nothing is wrong with the pipeline; the next
                # leader (maybe this replica again) passes it live.
                log.info("pipeline %s/%s: pass dropped: %s", namespace, name, e)
                exists, requeue = True, None
                self._live_next.add(key)
            except Exception as e:
                RECONCILE_TOTAL.labels(CONTROLLER, "error").inc()
                RECONCILE_ERRORS.labels(CONTROLLER).inc()
                failures += 1
                requeue = retry_delay(failures, unavailable=api_unavailable(e))
                exists = True
                log.exception(
                    "pipeline %s/%s: reconcile failed (attempt %d); retrying in %.1fs",
                    namespace,
                    name,
                    failures,
                    requeue,
                )
                if self._report is not None and failures >= REPORT_AFTER_FAILURES:
                    error = f"{failures} passes in a row failed; the last: {type(e).__name__}: {e}"
                    await loop.run_in_executor(self._executor, self._report, namespace, name, error)
            finally:
                self._running.pop(key, None)
                ACTIVE_WORKERS.labels(CONTROLLER).dec()
                RECONCILE_TIME.labels(CONTROLLER).observe(time.monotonic() - started)
            if not exists:
                log.info("pipeline %s/%s is gone; its worker stops", namespace, name)
                self.forget(key)
                return
            until_live = max(0.0, next_live - time.monotonic())
            timeout = min(requeue, until_live) if requeue is not None else until_live
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=timeout)


def retry_delay(failures: int, *, unavailable: bool) -> float:
    """Seconds before retrying a pipeline whose last `failures` passes failed: doubling from 1 s,
    capped at a minute — or at a few seconds (jittered) while the API server is unavailable."""
    delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 16))
    if unavailable:
        return min(delay, _jittered(MAX_UNAVAILABLE_BACKOFF_SECONDS))
    return delay


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)  # noqa: S311 (spreading load, not crypto)


class NewsFilter:
    """Which watch events on Conveyor's own kinds say something a pass has not seen.

    Only Conveyor writes their status, and the pass that wrote it already acted on what it decided
    (asking for a requeue when it wants to look again). A MODIFIED event that leaves the generation
    as it was is that write coming back — waking the pipeline for it would double every pipeline's
    passes. New objects, deletions and spec changes (a new generation) are news."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}

    def news(self, event_type: str | None, uid: str, generation: int | None) -> bool:
        """True when the event is worth a pass (and remember what was seen)."""
        if event_type == "DELETED":
            self._generations.pop(uid, None)
            return True
        if generation is not None and self._generations.get(uid) == generation:
            return False
        if generation is not None:
            self._generations[uid] = generation
        return True
