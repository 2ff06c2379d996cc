"""Failover: two replicas on one Lease; kill -9 the leader mid-promotion, N times.

Usage: .venv/bin/python bench/failover.py [--kills N] [--results PATH]

Each kill: a fresh pipeline (migration Job, 2-replica rollout, smoke-test Job per stage; production
approved up front) and two `conveyor run` processes campaigning for a fresh Lease. As soon as the
staging migration runs, the leader gets SIGKILL. Measured from the kill, on the survivor's own log
clock: the standby holds the Lease ("is the leader now"), and its first action (its first audit line:
a transition it wrote). Then the promotion must finish with no action done twice: each migration
and smoke-test Job created once (the staging migration the very Job the old leader created, same
uid), each Deployment's spec changed once (generation 2, one new ReplicaSet), each transition once
in the release's history. Goal (issue #12): the standby acts < 15 s after the kill, nothing twice.
"""

from __future__ import annotations

import argparse
import functools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import Bench, median, pct
from promotion import pipeline_body, setup_stages
from results import goal, record, section
from support.builders import release_dict
from support.operator import OperatorProcess
from support.wait import has_condition, wait_for_object

GROUP, VERSION = "conveyor.dev", "v1alpha1"
GOAL_SECONDS = 15.0
LEADS = r"is the leader now"
AUDIT = r'"logger": "conveyor.audit"'


def migrating(o: dict[str, Any] | None) -> bool:
    stages = ((o or {}).get("status") or {}).get("stages") or []
    return any(s.get("phase") == "Migrating" for s in stages)


def once(b: Bench, pns: str, stages: dict[str, str], label: str, uid_before: str) -> list[str]:
    """What was done more than once (empty: nothing)."""
    problems = []
    rel = b.custom.get_namespaced_custom_object(GROUP, VERSION, pns, "releases", label)
    for stage, ns in stages.items():
        jobs = b.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/managed-by=conveyor").items
        if len(jobs) != 2:
            problems.append(f"{stage}: {len(jobs)} Jobs, expected 2 (migration, smoke test)")
        for j in jobs:
            if stage == "staging" and "-migrate-" in j.metadata.name and j.metadata.uid != uid_before:
                problems.append("the staging migration Job was created again")
        generation = b.apps.read_namespaced_deployment("shop", ns).metadata.generation
        if generation != 2:
            problems.append(f"{stage}: Deployment generation {generation}, expected 2 (image set once)")
    history = [h["reason"] for h in rel["status"]["history"]]
    for reason in ("MigrationStarted", "RolloutStarted", "SmokeTestStarted", "StageVerified"):
        if history.count(reason) != 2:
            problems.append(f"{reason} {history.count(reason)} times in the history, expected 2")
    return problems


def one_kill(b: Bench, i: int) -> tuple[float, float, list[str]]:
    """One failover; (kill -> standby leads, kill -> its first action, what was done twice)."""
    stages = setup_stages(b, f"f{i}")
    pns = b.namespace(f"bench-f{i}-pipe")
    args = [a for ns in (pns, *stages.values()) for a in ("-n", ns)]
    lease = f"bench-failover-{uuid.uuid4().hex[:6]}"
    a = OperatorProcess(b.cluster.kubeconfig, *args, lease_name=lease, identity=f"kill{i}-a").start()
    standby: OperatorProcess | None = None
    try:
        a.wait_for_log(LEADS)
        standby = OperatorProcess(
            b.cluster.kubeconfig, *args, lease_name=lease, identity=f"kill{i}-b"
        ).start()
        standby.wait_probe("/readyz")  # caches synced, the Lease read: a warm standby
        b.custom.create_namespaced_custom_object(GROUP, VERSION, pns, "pipelines", pipeline_body(pns, stages))
        created = b.custom.create_namespaced_custom_object(
            GROUP, VERSION, pns, "releases", release_dict(f"f{i}", namespace=pns)
        )
        b.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            pns,
            "approvals",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Approval",
                "metadata": {"name": f"f{i}-prod"},
                "spec": {"release": f"f{i}", "stage": "prod", "releaseUID": created["metadata"]["uid"]},
            },
        )
        releases = functools.partial(b.custom.list_namespaced_custom_object, GROUP, VERSION, pns, "releases")
        wait_for_object(releases, f"f{i}", migrating, what=f"release f{i} migrating in staging", timeout=60)
        jobs = b.batch.list_namespaced_job(
            stages["staging"], label_selector="app.kubernetes.io/managed-by=conveyor"
        )
        uid_before = jobs.items[0].metadata.uid
        killed = datetime.now(UTC)
        a.kill()
        standby.wait_for_log(LEADS, timeout=60)
        standby.wait_for_log(AUDIT, timeout=60)
        acquired = (standby.log_time(LEADS) - killed).total_seconds()
        acted = (standby.log_time(AUDIT) - killed).total_seconds()
        wait_for_object(releases, f"f{i}", has_condition("Ready"), what=f"release f{i} Ready", timeout=180)
        return acquired, acted, once(b, pns, stages, f"f{i}", uid_before)
    finally:
        a.kill()
        if standby is not None:
            standby.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'failover' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    b = Bench()
    acquired: list[float] = []
    acted: list[float] = []
    twice: list[str] = []
    try:
        for i in range(args.kills):
            lead, act, problems = one_kill(b, i)
            acquired.append(lead)
            acted.append(act)
            twice += [f"kill {i + 1}: {p}" for p in problems]
            print(
                f"kill {i + 1}/{args.kills}: standby leads after {lead:.2f}s, acts after {act:.2f}s"
                + (f"; DONE TWICE: {problems}" if problems else ""),
                flush=True,
            )
    finally:
        b.close()
    print()
    print(f"failover, {args.kills} kills of the leader mid-promotion:")
    print(f"  kill -> standby leads      p50 {median(acquired):5.2f} s   p99 {pct(acquired, 99):5.2f} s")
    print(f"  kill -> its first action   p50 {median(acted):5.2f} s   p99 {pct(acted, 99):5.2f} s")
    print(f"  actions done twice: {len(twice)}")
    body = section(
        script=__file__,
        parameters={"kills": args.kills},
        results={"acquired_s": acquired, "first_action_s": acted, "done_twice": twice},
        goals=[
            goal(
                f"failover: kill -9 the leader mid-promotion (staging migration running), "
                f"{args.kills} times; two replicas on one Lease (10 s, renewed every 2 s)",
                f"standby acts < {GOAL_SECONDS:.0f} s, no action done twice",
                f"kill -> standby leads p50 {median(acquired):.1f} s, p99 {pct(acquired, 99):.1f} s; "
                f"kill -> first action p50 {median(acted):.1f} s, p99 {pct(acted, 99):.1f} s; "
                f"{len(twice)} actions done twice (n={args.kills})",
                pct(acted, 99) < GOAL_SECONDS and not twice,
            )
        ],
    )
    print(f"results file: {record('failover', body, args.results)}")


if __name__ == "__main__":
    main()
