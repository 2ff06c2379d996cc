"""Is the operator wedged? The liveness decision, from what the shell measured (no I/O here).

A living process is not enough: a pass stuck on a call that never returns, or watches that stopped
delivering anything (not even the API server's periodic bookmarks, nor the reconnects kopf makes
after each server-side timeout), leave a process that answers but does nothing. Restarting it is
the cure, so liveness fails — but only far beyond what a healthy operator ever shows, because a
wrong restart costs a failover.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every API call is bounded (30 s read) and a pass makes a handful in a row: a pass running for
# 5 minutes is stuck, not slow.
STUCK_PASS_SECONDS = 300.0
# kopf's watches end server-side every 300 s (and on inactivity at 330 s) and reconnect; the API
# server sends a bookmark on an idle watch about every minute. Ten minutes with no event, bookmark
# or (re)connect on a watch is far beyond both.
DEAD_WATCH_SECONDS = 600.0


@dataclass(frozen=True)
class Activity:
    """What the shell saw, as monotonic times: when each pass in flight started, and per watch
    (a name) when it last delivered anything or (re)connected."""

    passes_started: tuple[float, ...]
    watches_seen: dict[str, float]


def wedged(activity: Activity, now: float) -> list[str]:
    """Why the operator is wedged (empty: it is not). Watches not yet started are not judged;
    readiness covers the start."""
    reasons = []
    if activity.passes_started:
        oldest = min(activity.passes_started)
        if now - oldest > STUCK_PASS_SECONDS:
            reasons.append(
                f"a reconcile pass has run for {now - oldest:.0f}s (limit {STUCK_PASS_SECONDS:.0f}s)"
            )
    for watch, seen in sorted(activity.watches_seen.items()):
        if now - seen > DEAD_WATCH_SECONDS:
            reasons.append(
                f"the {watch} watch delivered nothing for {now - seen:.0f}s (limit {DEAD_WATCH_SECONDS:.0f}s)"
            )
    return reasons


def ready(*, caches_synced: bool, leading: bool, lease_seen_ago: float | None, lease_duration: float) -> bool:
    """Readiness: the caches are filled and this replica takes part in the election — it leads, or it
    stands by having read the Lease within a lease duration (so it could take over). Both replicas
    are ready in a healthy pair: the PodDisruptionBudget then lets a drain evict either, and the
    metrics Service reaches both."""
    if not caches_synced:
        return False
    return leading or (lease_seen_ago is not None and lease_seen_ago <= lease_duration)
