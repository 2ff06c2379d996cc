"""Outages on purpose: a component of a local control plane (the test cluster, or the second one of
the multi-cluster stories) killed and started again with `hack/cluster stop|start COMPONENT` run
with that cluster's CONVEYOR_CLUSTER_DIR. Against an external cluster the drill is skipped."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from support.cluster import REPO, Cluster
from support.soak import scaled

# How long a component stays down: long enough that every watch, every pass in flight and every
# retry of the operator meets the outage (its request timeouts are 5 s / 30 s). `make soak` holds
# it past a minute: longer than kopf's own retries last (~54 s) before they give up.
OUTAGE_SECONDS = scaled(20.0, 70.0)


@contextmanager
def outage(cluster: Cluster, component: str, seconds: float | None = None) -> Iterator[dict[str, float]]:
    """Kill `component` of `cluster` on entry; on exit, hold it down until `seconds` (default
    OUTAGE_SECONDS) have passed, start it again and wait until it serves. Yields timings: `down`
    and `back` (time.monotonic()), and the same as wall-clock times, `down_at` and `back_at`
    (time.time(), to compare with the audit log's timestamps)."""
    if not cluster.local or cluster.cluster_dir is None:
        pytest.skip("stopping control-plane components needs the local control plane")
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cluster.cluster_dir)}
    hold = OUTAGE_SECONDS if seconds is None else seconds
    timings: dict[str, float] = {}

    def run(cmd: str) -> None:
        subprocess.run([REPO / "hack" / "cluster", cmd, component], env=env, check=True)

    run("stop")
    timings["down"], timings["down_at"] = time.monotonic(), time.time()
    try:
        yield timings
        held = time.monotonic() - timings["down"]
        # The outage's length is the scenario itself, not a wait for something to happen.
        time.sleep(max(0.0, hold - held))
    finally:
        run("start")  # waits until etcd /health or kube-apiserver /readyz answers
        timings["back"], timings["back_at"] = time.monotonic(), time.time()


def restart_controllers(cluster: Cluster) -> None:
    """Restart kube-controller-manager and kube-scheduler of a local control plane whose API server
    just came back. Their watches back off after an outage (seen after 20 s: a Pod bound 18 s late,
    a Job's completion recorded 42 s late); a story that measures Conveyor, not them, restarts them
    so they list afresh. (kwok runs a Pod about 20 s late after an outage, restarted or not.)"""
    if not cluster.local or cluster.cluster_dir is None:
        return
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cluster.cluster_dir)}
    for component in ("kube-controller-manager", "kube-scheduler"):
        for cmd in ("stop", "start"):
            subprocess.run([REPO / "hack" / "cluster", cmd, component], env=env, check=True)
