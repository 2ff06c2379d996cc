"""Wall time of one staging -> prod promotion, and how much of it is Conveyor's own overhead.

Usage: .venv/bin/python bench/promotion.py [--runs N] [--results PATH]

Each run promotes one release through two stages (migration Job, image rollout of a 2-replica
Deployment, smoke-test Job, per stage; production approved as soon as the release exists) twice, side by side:

  script   a hand-written script making the same API calls as fast as it can, waiting on watches
  conveyor the operator (`conveyor run`), from Release created to Ready=True observed

It reports medians, the ratio conveyor/script (issue #11's goal: <= 1.1x), and, from the release's
own status timestamps, how the conveyor time splits into waiting on Jobs and rollouts versus the
operator's own work; its section of the benchmarks' one results file (bench/results.py) carries the
same, with the goal row.
"""

from __future__ import annotations

import argparse
import functools
import time
from datetime import datetime
from pathlib import Path

from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.core.jobs import JobKind, job_manifest
from harness import Bench, deployment, median
from results import goal, record, section
from support.builders import REPO as IMAGE_REPO
from support.builders import pipeline_dict, release_dict
from support.wait import has_condition, wait_for_object

GROUP, VERSION = "conveyor.dev", "v1alpha1"


def rolled_out(dep) -> bool:
    s = dep.status if dep else None
    return bool(
        s
        and (s.observed_generation or 0) >= dep.metadata.generation
        and (s.updated_replicas or 0) == dep.spec.replicas
        and (s.available_replicas or 0) == dep.spec.replicas
        and (s.replicas or 0) == dep.spec.replicas
        and not s.unavailable_replicas
    )


def setup_stages(b: Bench, tag: str) -> dict[str, str]:
    stages = {"staging": b.namespace(f"bench-{tag}-stg"), "prod": b.namespace(f"bench-{tag}-prod")}
    for ns in stages.values():
        b.apps.create_namespaced_deployment(ns, deployment("shop", "web"))
    for ns in stages.values():
        wait_for_object(
            b.apps.list_namespaced_deployment,
            "shop",
            rolled_out,
            namespace=ns,
            what=f"{ns}/shop rolled out",
            timeout=60,
        )
    return stages


def pipeline_body(ns: str, stages: dict[str, str]) -> dict:
    return pipeline_dict(
        "shop",
        ns,
        migration={"command": ["migrate"]},
        smoke_test={"command": ["smoke"]},
        stages=[
            {"name": "staging", "namespace": stages["staging"]},
            {
                "name": "prod",
                "namespace": stages["prod"],
                "requiresApproval": True,
                # the bench approves as the same admin that releases: no four eyes here
                "approval": {"fourEyes": False},
            },
        ],
    )


def run_script(b: Bench, label: str) -> float:
    """The hand-written baseline: same Jobs, same patch, same waits, no bookkeeping."""
    stages = setup_stages(b, "s")
    pns = b.namespace("bench-s-pipe")
    pipeline = Pipeline.model_validate(
        {**pipeline_body(pns, stages), "metadata": {"name": "shop", "namespace": pns}}
    )
    release = Release.model_validate(
        {**release_dict(label, namespace=pns), "metadata": {"name": label, "namespace": pns, "uid": "x"}}
    )
    image = f"{IMAGE_REPO}@{release.spec.digest}"
    t0 = time.monotonic()
    for stage in pipeline.spec.stages:
        ns = stage.namespace
        for kind in (JobKind.MIGRATION, None, JobKind.SMOKE_TEST):
            if kind is None:
                annotations = {"conveyor.dev/release": label, "conveyor.dev/commit": release.spec.commit}
                b.apps.patch_namespaced_deployment(
                    "shop",
                    ns,
                    {
                        "metadata": {"annotations": annotations},
                        "spec": {
                            "template": {
                                "metadata": {"annotations": annotations},
                                "spec": {"containers": [{"name": "web", "image": image}]},
                            }
                        },
                    },
                    _content_type="application/strategic-merge-patch+json",
                )
                wait_for_object(
                    b.apps.list_namespaced_deployment,
                    "shop",
                    lambda d: rolled_out(d) and d.spec.template.spec.containers[0].image == image,
                    namespace=ns,
                    what="rollout",
                    timeout=120,
                )
                continue
            manifest = job_manifest(pipeline, release, stage, kind)
            b.batch.create_namespaced_job(ns, manifest)
            wait_for_object(
                b.batch.list_namespaced_job,
                manifest["metadata"]["name"],
                has_condition("Complete"),
                namespace=ns,
                what=f"Job {manifest['metadata']['name']}",
                timeout=120,
            )
    return time.monotonic() - t0


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_conveyor(b: Bench, label: str) -> tuple[float, float]:
    """Conveyor: Release created -> Ready observed. Returns (total, time spent waiting on the world)."""
    stages = setup_stages(b, "c")
    pns = b.namespace("bench-c-pipe")
    op = b.operator(pns, *stages.values())
    try:
        b.custom.create_namespaced_custom_object(GROUP, VERSION, pns, "pipelines", pipeline_body(pns, stages))
        t0 = time.monotonic()
        created = b.custom.create_namespaced_custom_object(
            GROUP, VERSION, pns, "releases", release_dict(label, namespace=pns)
        )
        # Production approved up front — right after the release exists, for its uid (as `kubectl
        # conveyor approve` does): an approval never counts for a namesake.
        b.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            pns,
            "approvals",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Approval",
                "metadata": {"name": f"{label}-prod"},
                "spec": {"release": label, "stage": "prod", "releaseUID": created["metadata"]["uid"]},
            },
        )
        rel = wait_for_object(
            functools.partial(b.custom.list_namespaced_custom_object, GROUP, VERSION, pns, "releases"),
            label,
            has_condition("Ready"),
            what=f"release {label} Ready",
            timeout=180,
        )
        total = time.monotonic() - t0
    finally:
        op.stop()
    waiting = 0.0
    for rec in rel["status"]["stages"]:
        waiting += (ts(rec["migratedAt"]) - ts(rec["startedAt"])).total_seconds()  # migration Job
        waiting += (ts(rec["rolledOutAt"]) - ts(rec["deployedAt"])).total_seconds()  # rollout
        waiting += (ts(rec["verifiedAt"]) - ts(rec["smokeTestStartedAt"])).total_seconds()  # smoke Job
    return total, waiting


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'promotion' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    b = Bench()
    script, conveyor, waiting = [], [], []
    try:
        for i in range(args.runs):
            # Alternate the order so neither side always runs on a warmer cluster.
            if i % 2 == 0:
                script.append(run_script(b, f"s{i}"))
                total, wait = run_conveyor(b, f"c{i}")
            else:
                total, wait = run_conveyor(b, f"c{i}")
                script.append(run_script(b, f"s{i}"))
            conveyor.append(total)
            waiting.append(wait)
            print(
                f"run {i + 1}/{args.runs}: script {script[-1]:.2f}s  conveyor {total:.2f}s "
                f"(waiting on Jobs/rollouts {wait:.2f}s)",
                flush=True,
            )
    finally:
        b.close()
    ms, mc, mw = median(script), median(conveyor), median(waiting)
    print()
    print(f"staging -> prod promotion, {args.runs} runs, medians:")
    print(f"  hand-written script        {ms:6.2f} s")
    print(
        f"  conveyor (operator)        {mc:6.2f} s   ratio {mc / ms:.2f}x (goal <= 1.1x), "
        f"overhead {mc - ms:+.2f} s"
    )
    print("  conveyor's time, from the release's status timestamps:")
    print(f"    inside steps (Job started -> done, image set -> rolled out): {mw:6.2f} s ({mw / mc:.0%})")
    print(
        f"    between steps (watch latency, deciding, status, Events):    {mc - mw:6.2f} s "
        f"({(mc - mw) / mc:.0%})"
    )
    body = section(
        script=__file__,
        parameters={"runs": args.runs},
        results={
            "script_s": script,
            "conveyor_s": conveyor,
            "conveyor_waiting_s": waiting,
            "median_script_s": ms,
            "median_conveyor_s": mc,
            "median_waiting_s": mw,
            "ratio": mc / ms,
        },
        goals=[
            goal(
                f"staging -> prod promotion (migration Job, 2-replica rollout, smoke-test Job per stage; "
                f"prod approved as the release is created), Conveyor vs the hand-written script making "
                f"the same API calls, medians of {args.runs}",
                "<= 1.1x the script",
                f"{mc:.2f} s vs {ms:.2f} s = {mc / ms:.2f}x (Conveyor between steps: {mc - mw:.2f} s)",
                mc / ms <= 1.1,
            )
        ],
    )
    print(f"results file: {record('promotion', body, args.results)}")


if __name__ == "__main__":
    main()
