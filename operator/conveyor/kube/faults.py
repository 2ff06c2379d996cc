"""Fault points: a test-only switch that SIGKILLs the operator right after a chosen write.

`CONVEYOR_FAULT_POINT=<name>[:<n>]` (read once, at import) kills the process — no cleanup, no
flush of anything but the one log line saying so — right after the n-th time (default: the first)
the point named is reached. Unset, `reached` is a no-op. The crash drills
(tests/e2e/test_crash_drills.py) start the operator with it to prove that a crash at each of these
instants loses and repeats nothing:

- after-job-create: a Job was created, before the status write that follows it
- after-deployment-patch: an image was patched, before the status write that records it
- after-status-write: a status was written, before its Events and audit lines
- after-rollback-plan: a rollback's plan was written, before its Deployment patch
- after-notification-send: a receiver accepted a notification, before the ledger write recording it

Each call site is one line right *after* its write, so other checks before writes stay apart.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

POINTS = (
    "after-job-create",
    "after-deployment-patch",
    "after-status-write",
    "after-rollback-plan",
    "after-notification-send",
)
log = logging.getLogger("conveyor.faults")


def parse(value: str | None) -> tuple[str, int] | None:
    """(point, n) from `<name>[:<n>]`; None when unset. Raises ValueError on an unknown point or a
    count below 1 (a typo must not silently disable a drill)."""
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in POINTS:
        raise ValueError(f"CONVEYOR_FAULT_POINT: unknown point {name!r}; known: {', '.join(POINTS)}")
    n = int(count) if count else 1
    if n < 1:
        raise ValueError(f"CONVEYOR_FAULT_POINT: the count must be at least 1 (got {n})")
    return name, n


_ARMED = parse(os.environ.get("CONVEYOR_FAULT_POINT"))
_seen = [0]  # times the armed point was reached (passes run in several threads: under _lock)
_lock = threading.Lock()


def armed() -> tuple[str, int] | None:
    """The armed (point, n), or None: the operator says so loudly at startup, so a switch leaked
    into a production environment is seen before it kills anything."""
    return _ARMED


def reached(point: str) -> None:
    """Mark that `point` was reached; SIGKILL the process when it is the armed point's n-th time."""
    if _ARMED is None or point != _ARMED[0]:
        return
    with _lock:
        _seen[0] += 1
        if _seen[0] != _ARMED[1]:
            return
        log.warning("fault point reached", extra={"fields": {"faultPoint": point, "count": _seen[0]}})
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
