"""The operator starts as users start it, talks to the real API server, and stops cleanly."""

from __future__ import annotations

import subprocess

import pytest

from support.operator import REPO, OperatorProcess

pytestmark = pytest.mark.cluster


def test_conveyor_version_prints_the_package_version():
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "conveyor"), "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("conveyor ")


def test_operator_starts_against_the_cluster_reports_alive_and_stops_on_sigterm(cluster):
    op = OperatorProcess(cluster.kubeconfig).start()
    try:
        op.wait_for_log(r"conveyor .* is alive")
        # kopf's liveness endpoint answers only once the operator has connected and is running.
        op.wait_healthy()
    finally:
        code = op.stop()
    assert code == 0, "\n".join(op.lines[-30:])
