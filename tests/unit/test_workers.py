"""The pipeline workers' failure path: a pass that keeps failing is said on the Pipeline (through the
reporter), and a failing pipeline never holds up another one."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from conveyor.handlers.workers import REPORT_AFTER_FAILURES, PipelineWorkers


def test_a_pass_that_keeps_failing_is_reported_and_other_pipelines_go_on():
    reports: list[tuple[str, str, str]] = []
    healthy_passes = threading.Event()

    def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
        if name == "broken":
            raise RuntimeError("status write refused")
        healthy_passes.set()
        return True, None

    async def scenario() -> None:
        reported = asyncio.Event()
        loop = asyncio.get_running_loop()

        def report(namespace: str, name: str, error: str) -> None:
            reports.append((namespace, name, error))
            loop.call_soon_threadsafe(reported.set)

        with ThreadPoolExecutor(max_workers=2) as pool:
            workers = PipelineWorkers(reconcile_pass, pool, report=report)
            workers.ensure(("apps", "broken"), {"staging"})
            workers.ensure(("apps", "healthy"), {"staging"})
            # Deadline: the first failure backs off 1 s, the second reports.
            await asyncio.wait_for(reported.wait(), timeout=10)
            await workers.stop()

    asyncio.run(scenario())
    assert healthy_passes.is_set()
    namespace, name, error = reports[0]
    assert (namespace, name) == ("apps", "broken")
    assert f"{REPORT_AFTER_FAILURES} passes in a row failed" in error
    assert "RuntimeError: status write refused" in error


def test_a_deployment_change_wakes_only_the_pipelines_that_target_it():
    # Two pipelines share a stage namespace; each targets its own Deployment there.
    passes: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
            with lock:
                passes[name] += 1
            loop.call_soon_threadsafe(changed.set)
            return True, None  # no requeue: only a wake-up runs another pass

        async def until(predicate, what: str) -> None:
            async def loop_until() -> None:
                while True:
                    changed.clear()
                    with lock:
                        if predicate():
                            return
                    await changed.wait()

            try:
                await asyncio.wait_for(loop_until(), timeout=10)
            except TimeoutError:
                raise AssertionError(f"timed out after 10s waiting for {what}: passes {passes}") from None

        with ThreadPoolExecutor(max_workers=2) as pool:
            workers = PipelineWorkers(reconcile_pass, pool)
            workers.ensure(("apps", "a"), {("", "team", "app-a")})
            workers.ensure(("apps", "b"), {("", "team", "app-b")})
            await until(lambda: passes == {"a": 1, "b": 1}, "each pipeline's first pass")
            workers.wake_deployment("", "team", "app-a")
            await until(lambda: passes["a"] == 2, "pipeline a's pass after its Deployment changed")
            workers.wake_deployment("", "team", "unrelated")
            workers.wake_deployment("elsewhere", "team", "app-b")  # same namespace/name, another cluster
            workers.forget(("apps", "a"))
            workers.wake_deployment("", "team", "app-a")  # forgotten: wakes nobody
            await workers.stop()

    asyncio.run(scenario())
    assert passes == {"a": 2, "b": 1}


def test_the_echo_of_conveyors_own_status_write_is_no_news():
    from conveyor.handlers.workers import NewsFilter

    news = NewsFilter()
    assert news.news(None, "u1", 1)  # listed at start: a pass has not seen it
    assert not news.news("MODIFIED", "u1", 1)  # a status write (the generation stays)
    assert news.news("MODIFIED", "u1", 2)  # a spec change
    assert news.news("DELETED", "u1", 2)
    assert news.news("ADDED", "u1", 2)  # the same uid again after a deletion is news


def test_the_periodic_resync_reads_live_and_event_passes_read_the_cache(monkeypatch):
    # The watch-fed cache never learns what was deleted while a watch was down (kopf relists after
    # "410 Gone" without reporting deletions): the resync pass reads the API server itself.
    from conveyor.handlers import workers as workers_mod

    monkeypatch.setattr(workers_mod, "RESYNC_SECONDS", 0.3)
    seen: list[bool] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        live_pass = asyncio.Event()

        def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
            seen.append(live)
            if live:
                loop.call_soon_threadsafe(live_pass.set)
            return True, None

        with ThreadPoolExecutor(max_workers=1) as pool:
            workers = PipelineWorkers(reconcile_pass, pool)
            workers.ensure(("apps", "shop"), set())
            # Deadline: the resync comes within 1.2 x RESYNC_SECONDS of the start.
            await asyncio.wait_for(live_pass.wait(), timeout=10)
            await workers.stop()

    asyncio.run(scenario())
    assert seen[0] is False, "the first pass reads the cache (kopf listed everything before it)"
    assert True in seen


def test_a_standby_runs_no_pass_and_a_new_leader_passes_every_pipeline_live():
    calls: list[tuple[str, bool]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        passed = asyncio.Event()

        def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
            calls.append((name, live))
            if len(calls) >= 2:
                loop.call_soon_threadsafe(passed.set)
            return True, None

        gate = asyncio.Event()  # standing by
        with ThreadPoolExecutor(max_workers=2) as pool:
            workers = PipelineWorkers(reconcile_pass, pool, gate=gate)
            workers.ensure(("apps", "a"), set())
            workers.ensure(("apps", "b"), set())
            workers.wake(("apps", "a"))
            # While standing by, wake-ups queue but no pass runs: give the loop a few turns.
            for _ in range(50):
                await asyncio.sleep(0)
            assert calls == []
            gate.set()  # leading now
            workers.wake_all_live()
            await asyncio.wait_for(passed.wait(), timeout=10)
            await workers.stop()

    asyncio.run(scenario())
    first = dict(reversed(calls))  # each pipeline's first pass
    assert first == {"a": True, "b": True}


def test_a_pass_refused_as_not_leader_is_dropped_quietly_and_the_next_pass_is_live():
    from conveyor.kube.fence import NotLeader

    calls: list[bool] = []
    reports: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        second = asyncio.Event()

        def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
            calls.append(live)
            if len(calls) == 1:
                raise NotLeader("lease lost")
            loop.call_soon_threadsafe(second.set)
            return True, None

        with ThreadPoolExecutor(max_workers=1) as pool:
            workers = PipelineWorkers(reconcile_pass, pool, report=lambda _ns, _n, e: reports.append(e))
            workers.ensure(("apps", "a"), set())
            while len(calls) < 1:
                await asyncio.sleep(0.01)  # the first pass runs in the pool; nothing else to await
            while not workers.idle():
                await asyncio.sleep(0.01)
            workers.wake(("apps", "a"))
            await asyncio.wait_for(second.wait(), timeout=10)
            await workers.stop()

    asyncio.run(scenario())
    assert calls == [False, True]
    assert reports == []


def test_liveness_sees_a_pass_in_flight_and_no_longer_once_it_ends():
    release = threading.Event()
    started = threading.Event()

    def reconcile_pass(namespace: str, name: str, live: bool = False) -> tuple[bool, float | None]:
        started.set()
        release.wait(timeout=10)
        return True, None

    async def scenario() -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            workers = PipelineWorkers(reconcile_pass, pool)
            workers.ensure(("apps", "stuck"), set())
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            assert len(workers.passes_started()) == 1
            assert not workers.idle()
            release.set()
            while not workers.idle():
                await asyncio.sleep(0.01)  # the pass ends in the pool; nothing else to await
            assert workers.passes_started() == ()
            await workers.stop()

    asyncio.run(scenario())


def test_failed_passes_back_off_to_a_minute_but_only_seconds_while_the_api_server_is_away():
    from conveyor.handlers.workers import MAX_BACKOFF_SECONDS, MAX_UNAVAILABLE_BACKOFF_SECONDS, retry_delay

    assert [retry_delay(n, unavailable=False) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert retry_delay(50, unavailable=False) == MAX_BACKOFF_SECONDS
    for n in (1, 5, 50):
        assert retry_delay(n, unavailable=True) <= MAX_UNAVAILABLE_BACKOFF_SECONDS * 1.2


def test_what_counts_as_the_api_server_being_away():
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from conveyor.kube.client import api_unavailable

    assert api_unavailable(ApiException(status=503))
    assert not api_unavailable(ApiException(status=429))  # shedding load: the normal backoff
    assert not api_unavailable(ApiException(status=500))
    assert api_unavailable(urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    assert api_unavailable(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"))  # type: ignore[arg-type]
    assert not api_unavailable(ApiException(status=422))
    assert not api_unavailable(ApiException(status=409))
    assert not api_unavailable(RuntimeError("a bug"))


def test_kopf_retries_api_errors_through_an_outage_but_not_for_ever():
    from conveyor.handlers.operator import API_RETRY_CAP_SECONDS, API_RETRY_FOR_SECONDS, PatientRetries

    backoffs = list(PatientRetries())
    assert max(backoffs) == API_RETRY_CAP_SECONDS
    assert API_RETRY_FOR_SECONDS <= sum(backoffs) <= API_RETRY_FOR_SECONDS + 2
    assert list(PatientRetries()) == backoffs  # every request starts afresh
