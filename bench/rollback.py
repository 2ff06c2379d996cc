"""Rollback latency: Rollback created -> every target Deployment patched, and -> rolled out.

Usage: .venv/bin/python bench/rollback.py [--rollbacks N] [--results PATH]   (default 50)

A one-stage pipeline (prod) with two target Deployments of 2 replicas each. Each round promotes a
fresh release, then takes prod back to r0 twice over, side by side (every rollback vetoes the
release it leaves, so the previous verified release is always r0):

  conveyor  create a Rollback (verify: false, the fastest path), as a person or automation would
  script    a plain script: patch both Deployments to the previous image, wait for the rollout

Both are timed by the same watch on the namespace's Deployments, from just before the create/patch
call. Issue #11's goal: p99 <= 100 ms from Rollback created to every target patched (the brief's:
rolled back in under five minutes); both are rows of this benchmark's section of the one results
file (bench/results.py).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

from harness import Bench, DeploymentWatcher, deployment, image_is, median, pct, rolled_out_on
from results import goal, record, section
from support.builders import REPO as IMAGE_REPO
from support.builders import digest_of, pipeline_dict, release_dict
from support.wait import has_condition, wait_for_object

GROUP, VERSION = "conveyor.dev", "v1alpha1"
TARGETS = ["web", "worker"]


def image(label: str) -> str:
    return f"{IMAGE_REPO}@{digest_of(label)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollbacks", type=int, default=50)
    parser.add_argument(
        "--results",
        type=Path,
        help="the benchmarks' one results file, whose 'rollback' section this run replaces "
        "(default: CONVEYOR_BENCH_RESULTS, else bench/results/bench.json)",
    )
    args = parser.parse_args()
    b = Bench()
    pns, prod = b.namespace("bench-rb-pipe"), b.namespace("bench-rb-prod")
    for name in TARGETS:
        b.apps.create_namespaced_deployment(prod, deployment(name, "app"))
    watcher = DeploymentWatcher(b.apps, prod)
    watcher.wait(TARGETS, rolled_out_on(image("base")), "initial rollout")
    op = b.operator(pns, prod)
    releases = functools.partial(b.custom.list_namespaced_custom_object, GROUP, VERSION, pns, "releases")
    rollbacks = functools.partial(b.custom.list_namespaced_custom_object, GROUP, VERSION, pns, "rollbacks")
    body = pipeline_dict(
        "shop",
        pns,
        targets=[{"deployment": n, "container": "app"} for n in TARGETS],
        stages=[{"name": "prod", "namespace": prod}],
    )
    b.custom.create_namespaced_custom_object(GROUP, VERSION, pns, "pipelines", body)

    def promote(label: str) -> None:
        b.custom.create_namespaced_custom_object(
            GROUP, VERSION, pns, "releases", release_dict(label, namespace=pns)
        )
        wait_for_object(releases, label, has_condition("Ready"), what=f"release {label} Ready", timeout=120)

    c_patch, c_done, s_patch, s_done, server_patch = [], [], [], [], []
    try:
        promote("r0")
        for i in range(args.rollbacks):
            # Every rollback vetoes the release it leaves, so "the previous verified release" is r0 each time.
            new, old = f"r{i + 1}", "r0"
            promote(new)
            # Conveyor: Rollback created -> both Deployments on the old image (spec) -> rolled out.
            t0 = time.monotonic()
            b.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                pns,
                "rollbacks",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Rollback",
                    "metadata": {"name": f"rb-{i}"},
                    "spec": {"pipeline": "shop", "verify": False, "reason": "bench"},
                },
            )
            t_patch = watcher.wait(TARGETS, image_is(image(old)), "conveyor patch")
            t_done = watcher.wait(TARGETS, rolled_out_on(image(old)), "conveyor rollout")
            rb = wait_for_object(
                rollbacks,
                f"rb-{i}",
                lambda o: (o or {}).get("status", {}).get("phase") == "Succeeded",
                what=f"rollback rb-{i} Succeeded",
                timeout=60,
            )
            c_patch.append(t_patch - t0)
            c_done.append(t_done - t0)
            st = rb["status"]
            server_patch.append(_seconds(st["patchedAt"]) - _seconds(st["plannedAt"]))
            # The plain script: the same revert by hand, forward to the new image and back again.
            patch_all(b, prod, image(new))
            watcher.wait(TARGETS, rolled_out_on(image(new)), "script forward")
            t0 = time.monotonic()
            patch_all(b, prod, image(old))
            t_patch = watcher.wait(TARGETS, image_is(image(old)), "script patch")
            t_done = watcher.wait(TARGETS, rolled_out_on(image(old)), "script rollout")
            s_patch.append(t_patch - t0)
            s_done.append(t_done - t0)
            # Conveyor's pin still holds prod on `old` — what the script just restored.
            print(
                f"rollback {i + 1}/{args.rollbacks}: conveyor patched {c_patch[-1] * 1000:.0f} ms, "
                f"rolled out {c_done[-1] * 1000:.0f} ms | script patched {s_patch[-1] * 1000:.0f} ms, "
                f"rolled out {s_done[-1] * 1000:.0f} ms",
                flush=True,
            )
    finally:
        watcher.close()
        op.stop()
        b.close()
    n = len(c_patch)
    print()
    print(f"rollback latency over {n} rollbacks (2 Deployments x 2 replicas), milliseconds:")
    print(f"  {'':34}{'p50':>8}{'p99':>8}{'max':>8}")
    series = {
        "conveyor: created -> all patched": c_patch,
        "script:   patch call -> all patched": s_patch,
        "conveyor: created -> rolled out": c_done,
        "script:   patch call -> rolled out": s_done,
        "conveyor status: planned -> patched": server_patch,
    }
    for label, values in series.items():
        print(
            f"  {label:34}{median(values) * 1000:8.0f}{pct(values, 99) * 1000:8.0f}{max(values) * 1000:8.0f}"
        )
    print(f"  goal: p99 created -> patched <= 100 ms: {'met' if pct(c_patch, 99) <= 0.1 else 'NOT met'}")

    def ms(values: list[float]) -> str:
        return f"p50 {median(values) * 1000:.0f} ms, p99 {pct(values, 99) * 1000:.0f} ms"

    body = section(
        script=__file__,
        parameters={"rollbacks": args.rollbacks, "targets": len(TARGETS), "replicas": 2},
        results={
            key: {"p50_s": median(values), "p99_s": pct(values, 99), "max_s": max(values), "n": len(values)}
            for key, values in zip(
                (
                    "conveyor_created_to_patched",
                    "script_patch_to_patched",
                    "conveyor_created_to_rolled_out",
                    "script_patch_to_rolled_out",
                    "conveyor_planned_to_patched",
                ),
                series.values(),
                strict=True,
            )
        },
        goals=[
            goal(
                f"Rollback created -> every target Deployment patched ({len(TARGETS)} Deployments, "
                f"{n} rollbacks)",
                "p99 <= 100 ms",
                f"{ms(c_patch)} (plain script's patch: {ms(s_patch)}; planned -> patched {ms(server_patch)})",
                pct(c_patch, 99) <= 0.1,
            ),
            goal(
                f"Rollback created -> rolled out ({len(TARGETS)} Deployments x 2 replicas)",
                "< 5 minutes",
                f"{ms(c_done)} (plain script: {ms(s_done)})",
                pct(c_done, 99) < 300,
            ),
        ],
    )
    print(f"results file: {record('rollback', body, args.results)}")


def patch_all(b: Bench, namespace: str, img: str) -> None:
    for name in TARGETS:
        b.apps.patch_namespaced_deployment(
            name,
            namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": img}]}}}},
            _content_type="application/strategic-merge-patch+json",
        )


def _seconds(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    main()
