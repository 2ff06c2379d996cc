"""Notifications: how soon a message follows its transition, that each goes once, what it costs the
API server — and that a dead receiver does not slow promotions down.

Usage: .venv/bin/python bench/notifications.py [--pipelines 20] [--rounds 3] [--deadline 900]
                                               [--results PATH]

One `conveyor run` (with --notify-allowed-host for a receiver on 127.0.0.1, tests/support/receiver.py)
serves PIPELINES one-stage pipelines in one namespace (a 2-replica Deployment each, kwok). Each round
runs three phases, in turn, each a wave of one release per pipeline created at once:

  none     no NotificationChannel: the baseline promotion time;
  healthy  a webhook channel and a Slack channel (stageVerified, releaseSucceeded), the receiver
           answering 200 at once;
  dead     the same two channels, the receiver holding every request unanswered (each send times
           out after 5 s and is retried with backoff).

Measured per release: promotion time, the bench's create call -> the release's ReleaseSucceeded history
entry (the operator's clock; same machine, same clock). Per webhook message (healthy): latency, the
transition's time (the message's own `time`, from the history entry) -> the receiver got it.
Duplicates: requests per id beyond the first (healthy phase). API cost: the operator's
`conveyor_api_requests_total` for NotificationChannels (status writes, reads) per message delivered.

Results (section "notifications"): medians and p90s per phase, and the ratio dead/none and
healthy/none of the median promotion time (goal: a dead receiver never delays a promotion, ratio
≤ 1.2 on this noisy machine); latency goal: median < 1 s.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor.api.common import GROUP, VERSION
from harness import Bench, create_all, deployment, median, pct
from results import record, section
from scale import scrape
from support.builders import pipeline_dict, release_dict
from support.operator import OperatorProcess
from support.receiver import Hold, Receiver
from support.wait import wait_for_list

TRIGGERS = ["stageVerified", "releaseSucceeded"]


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def api_requests(metrics: str, kind: str) -> float:
    """conveyor_api_requests_total summed over verbs and codes for one kind."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("conveyor_api_requests_total{") and f'kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipelines", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole run")
    p.add_argument("--results", default=None)
    args = p.parse_args(argv)
    started = time.monotonic()

    def left() -> float:
        remaining = args.deadline - (time.monotonic() - started)
        if remaining <= 0:
            raise SystemExit(f"bench/notifications.py: over its deadline of {args.deadline:.0f} s")
        return remaining

    bench = Bench()
    receiver = Receiver()
    op: OperatorProcess | None = None
    try:
        ns, stage = bench.namespace("nbench"), bench.namespace("nbench-stg")
        apps = [f"app-{i}" for i in range(args.pipelines)]
        create_all(bench, "deployments", [(stage, deployment(a, "web")) for a in apps])
        create_all(
            bench,
            "pipelines",
            [
                (
                    ns,
                    pipeline_dict(
                        a,
                        ns,
                        stages=[{"name": "staging", "namespace": stage}],
                        targets=[{"deployment": a, "container": "web"}],
                    ),
                )
                for a in apps
            ],
        )
        op = OperatorProcess(
            bench.cluster.kubeconfig, "-n", ns, "-n", stage, "--notify-allowed-host", receiver.host
        ).start()
        op.wait_for_log("is alive")
        op.wait_healthy()
        hold = Hold(200, limit=120.0)  # released at the end: the dead phase's requests never answered
        promotion: dict[str, list[float]] = {"none": [], "healthy": [], "dead": []}
        latency: list[float] = []
        duplicates = 0
        delivered = 0
        channel_requests = 0.0
        wave = 0

        def run_wave(phase: str) -> list[str]:
            nonlocal wave
            wave += 1
            names = [f"{a}-w{wave}" for a in apps]
            created: dict[str, float] = {}
            for a, name in zip(apps, names, strict=True):
                body = release_dict(name, pipeline=a, namespace=ns, label=f"{name}-{uuid.uuid4().hex[:6]}")
                created[name] = time.time()
                bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "releases", body)
            done = wait_for_list(
                bench.custom.list_namespaced_custom_object,
                lambda items: all(
                    any(
                        r["metadata"]["name"] == n and (r.get("status") or {}).get("phase") == "Succeeded"
                        for r in items
                    )
                    for n in names
                ),
                what=f"{phase}: every release of wave {wave} Succeeded",
                timeout=min(300.0, left()),
                group=GROUP,
                version=VERSION,
                namespace=ns,
                plural="releases",
            )
            for r in done:
                name = r["metadata"]["name"]
                if name in created:
                    end = next(h["time"] for h in r["status"]["history"] if h["reason"] == "ReleaseSucceeded")
                    promotion[phase].append(ts(end) - created[name])
            return names

        def channels_until(predicate: Any, what: str) -> None:
            wait_for_list(
                bench.custom.list_namespaced_custom_object,
                predicate,
                what=what,
                timeout=min(60.0, left()),
                group=GROUP,
                version=VERSION,
                namespace=ns,
                plural="notificationchannels",
            )

        def channels(path: str, *answers: Any) -> None:
            for type_ in ("webhook", "slack"):
                url = receiver.url(f"{path}/{type_}", *answers)
                bench.core.create_namespaced_secret(
                    ns,
                    {
                        "metadata": {"name": type_, "labels": {"conveyor.dev/notification-secret": "true"}},
                        "data": {"url": base64.b64encode(url.encode()).decode()},
                    },
                )
                bench.custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    ns,
                    "notificationchannels",
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "NotificationChannel",
                        "metadata": {"name": type_},
                        "spec": {"type": type_, "urlSecretRef": {"name": type_}, "triggers": TRIGGERS},
                    },
                )
            channels_until(
                lambda items: (
                    len(items) == 2
                    and all(
                        any(
                            c["type"] == "Ready" and c["status"] == "True"
                            for c in (i.get("status") or {}).get("conditions") or []
                        )
                        for i in items
                    )
                ),
                "both channels Ready",
            )

        def no_channels() -> None:
            for type_ in ("webhook", "slack"):
                bench.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, ns, "notificationchannels", type_
                )
                bench.core.delete_namespaced_secret(type_, ns)
            channels_until(lambda items: not items, "the channels gone")

        def healthy(rnd: int) -> None:
            nonlocal duplicates, delivered, channel_requests
            path = f"/ok/{rnd}"
            channels(path)
            before = api_requests(scrape(op.metrics_port), "notificationchannels")
            run_wave("healthy")
            want = len(apps) * len(TRIGGERS)
            for type_ in ("webhook", "slack"):
                at = f"{path}/{type_}"
                receiver.wait(
                    f"round {rnd}: {want} messages to the {type_} channel",
                    lambda _, at=at, want=want: (
                        len({r.id for r in receiver.at(at) if r.answered == 200}) >= want
                    ),
                    timeout=min(300.0, left()),
                )
                got = [r for r in receiver.at(at) if r.answered == 200]
                ids = [r.id for r in got]
                duplicates += len(ids) - len(set(ids))
                delivered += len(set(ids))
                if type_ == "webhook":
                    latency.extend(r.at - ts(r.json()["time"]) for r in got)
            no_channels()
            channel_requests += api_requests(scrape(op.metrics_port), "notificationchannels") - before

        def dead(rnd: int) -> None:
            channels(f"/dead/{rnd}", hold)
            run_wave("dead")
            no_channels()

        def none(_rnd: int) -> None:
            run_wave("none")

        phases = [none, healthy, dead]
        for rnd in range(args.rounds):
            # Each round in another order: the namespace fills with releases as waves pass, so a
            # fixed order would give the last phase the most.
            for i in range(len(phases)):
                phases[(i + rnd) % len(phases)](rnd)
        hold.released.set()

        base = median(promotion["none"])
        results: dict[str, Any] = {
            "promotion_seconds": {
                phase: {"median": round(median(v), 3), "p90": round(pct(v, 90), 3), "n": len(v)}
                for phase, v in promotion.items()
            },
            "ratio_healthy_to_none": round(median(promotion["healthy"]) / base, 3),
            "ratio_dead_to_none": round(median(promotion["dead"]) / base, 3),
            "latency_seconds": {
                "median": round(median(latency), 3),
                "p90": round(pct(latency, 90), 3),
                "max": round(max(latency), 3),
                "n": len(latency),
            },
            "messages_delivered": delivered,
            "duplicates": duplicates,
            "channel_api_requests_per_message": round(channel_requests / max(1, delivered), 2),
        }
        lat = results["latency_seconds"]
        goals = [
            {
                "what": "transition → webhook delivery (median, p90)",
                "goal": "median < 1 s",
                "measured": f"{lat['median']} s, p90 {lat['p90']} s (n={lat['n']})",
                "met": lat["median"] < 1.0,
            },
            {
                "what": "promotion time with a dead receiver ÷ with no channel (medians)",
                "goal": "≤ 1.2",
                "measured": f"{results['ratio_dead_to_none']} "
                f"(healthy ÷ none: {results['ratio_healthy_to_none']})",
                "met": results["ratio_dead_to_none"] <= 1.2,
            },
            {
                "what": "messages delivered twice",
                "goal": "0",
                "measured": f"{duplicates} of {delivered}",
                "met": duplicates == 0,
            },
        ]
        body = section(
            script="bench/notifications.py",
            parameters={"pipelines": args.pipelines, "rounds": args.rounds},
            results=results,
            goals=goals,
            argv=sys.argv,
        )
        path_written = record("notifications", body, Path(args.results) if args.results else None)
        print(re.sub(r"\s+", " ", str(results)))
        print(f"written to {path_written}")
        return 0
    finally:
        receiver.__exit__(None, None, None)
        if op is not None:
            op.stop()
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
