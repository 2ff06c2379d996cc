"""`hack/cluster up` twice is safe, and `down` leaves no process and no port behind — checked on a
second, throwaway cluster in its own folder (the suite's own cluster keeps running)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CONVEYOR_TEST_KUBECONFIG")), reason="the local control plane only"
)


def cluster(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "hack" / "cluster"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CONVEYOR_CLUSTER_DIR": str(folder)},
    )


def processes_mentioning(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def port_is_free(port: int) -> bool:
    """Nobody listens on it (SO_REUSEADDR: connections lingering in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_up_twice_is_a_no_op_and_down_leaves_nothing_behind(tmp_path: Path):
    folder = tmp_path / "cluster"
    first = cluster(folder, "up")
    assert first.returncode == 0, first.stderr
    state = json.loads((folder / "state.json").read_text())
    try:
        again = cluster(folder, "up")
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert json.loads((folder / "state.json").read_text())["pids"] == state["pids"]
        assert cluster(folder, "status").returncode == 0
    finally:
        down = cluster(folder, "down")
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(folder) == []
    assert port_is_free(state["port"])
    assert port_is_free(state["etcd_port"])
    assert cluster(folder, "status").returncode == 1
