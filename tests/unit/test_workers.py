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

    def reconcile_pass(namespace: str, name: str) -> tuple[bool, float | None]:
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
