"""The test-only fault points (operator/conveyor/kube/faults.py): parsed strictly, a no-op unset,
and a SIGKILL — after one log line — at the n-th time the armed point is reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conveyor.kube import faults

SCRIPT = """
import logging, sys
from conveyor.kube.record import JsonFormatter
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonFormatter())
logging.getLogger().addHandler(handler)
from conveyor.kube import faults
for i in range(3):
    faults.reached("after-status-write")
    faults.reached("after-job-create")
    print(f"alive after {i + 1}", flush=True)
"""


def run(point: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_FAULT_POINT"}
    if point is not None:
        env["CONVEYOR_FAULT_POINT"] = point
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def test_parse_names_a_known_point_and_a_count():
    assert faults.parse(None) is None
    assert faults.parse("") is None
    assert faults.parse("after-job-create") == ("after-job-create", 1)
    assert faults.parse("after-rollback-plan:3") == ("after-rollback-plan", 3)
    with pytest.raises(ValueError, match="unknown point"):
        faults.parse("after-job-creat")
    with pytest.raises(ValueError, match="at least 1"):
        faults.parse("after-job-create:0")


def test_unset_it_does_nothing():
    out = run(None)
    assert out.returncode == 0
    assert "alive after 3" in out.stdout


def test_armed_it_kills_the_process_at_the_nth_time_after_saying_so():
    out = run("after-job-create:2")
    assert out.returncode == -signal.SIGKILL
    assert "alive after 1" in out.stdout
    assert "alive after 2" not in out.stdout
    assert '"message": "fault point reached", "faultPoint": "after-job-create", "count": 2' in out.stdout
