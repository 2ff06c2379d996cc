"""Pure helpers of bench/scale.py (no cluster, no client): counting API requests from the operator's
own metrics and from the API server's audit log, reading a process's memory and CPU from /proc, and
judging where each release ended. Unit-tested in tests/unit/test_bench_scalestats.py.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

Key = tuple[str, str]  # (verb, resource), e.g. ("patch", "releases/status")

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prometheus_counter(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of counter `name` in a Prometheus text exposition: {sorted label pairs: value}."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m["name"] != name:
            continue
        labels = tuple(sorted(_LABEL.findall(m["labels"])))
        out[labels] = float(m["value"])
    return out


def operator_requests(before: str, after: str) -> Counter[Key]:
    """Requests the operator counted itself (conveyor_api_requests_total) between two scrapes of its
    /metrics, by (verb, kind) - all response codes together."""
    name = "conveyor_api_requests_total"
    b, a = prometheus_counter(before, name), prometheus_counter(after, name)
    out: Counter[Key] = Counter()
    for labels, value in a.items():
        delta = value - b.get(labels, 0.0)
        if delta:
            d = dict(labels)
            out[d.get("verb", "?"), d.get("kind", "?")] += round(delta)
    return out


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp (the API server's, 'Z' or offset, any fraction) as an aware datetime."""
    value = value.replace("Z", "+00:00")
    # Python 3.11 takes at most 6 fractional digits; the API server writes up to 9.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    return datetime.fromisoformat(value)


def audit_events(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Audit events from JSON-lines audit logs (a torn last line is skipped)."""
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def audit_files(log: Path) -> list[Path]:
    """The audit log and its rotated backups (audit-<timestamp>.log), oldest first."""
    backups = sorted(log.parent.glob(f"{log.stem}-*{log.suffix}"))
    return [*backups, log] if log.exists() else backups


def resource_of(event: dict[str, Any]) -> str:
    """'releases', 'releases/status', or the non-resource path ('/readyz')."""
    ref = event.get("objectRef") or {}
    if not ref.get("resource"):
        return (event.get("requestURI") or "?").split("?", 1)[0]
    return ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")


class AuditRecord(NamedTuple):
    """One request, as the audit log saw it (only what the counts need)."""

    received: datetime
    user: str
    agent: str  # the program, from the user agent ("conveyor", "kube-controller-manager", ...)
    verb: str
    resource: str


def audit_records(events: Iterable[dict[str, Any]]) -> list[AuditRecord]:
    """Each request once (a watch logs when it starts and when it ends, with the same auditID)."""
    seen: set[str] = set()
    out = []
    for ev in events:
        aid = ev.get("auditID", "")
        received = ev.get("requestReceivedTimestamp")
        if (
            aid in seen
            or not received
            or ev.get("stage") not in ("ResponseStarted", "ResponseComplete", "Panic")
        ):
            continue
        seen.add(aid)
        out.append(
            AuditRecord(
                parse_time(received),
                (ev.get("user") or {}).get("username", "?"),
                (ev.get("userAgent") or "?").split("/", 1)[0],
                ev.get("verb", "?"),
                resource_of(ev),
            )
        )
    return out


def audit_requests(
    records: Iterable[AuditRecord], start: datetime, end: datetime, *, by_agent: bool = False
) -> dict[str, Counter[Key]]:
    """Requests received in [start, end), per user (`by_agent`: "user (program)"), by (verb, resource)."""
    out: dict[str, Counter[Key]] = {}
    for r in records:
        if start <= r.received < end:
            who = f"{r.user} ({r.agent})" if by_agent else r.user
            out.setdefault(who, Counter())[r.verb, r.resource] += 1
    return out


def proc_memory_kb(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def proc_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU time a process used so far, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    stat = (proc / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def order_key(release: dict[str, Any]) -> tuple[datetime, datetime, str]:
    """The operator's creation order (conveyor.core.plan.order_key): creationTimestamp (seconds), then
    when Conveyor accepted it, then the name."""
    meta, status = release["metadata"], release.get("status") or {}
    accepted = status.get("acceptedAt")
    return (
        parse_time(meta["creationTimestamp"]),
        parse_time(accepted) if accepted else NEVER,
        meta["name"],
    )


def wrong_end_states(
    releases: list[dict[str, Any]], prod_image: dict[tuple[str, str], str], image_repo: str
) -> list[dict[str, str]]:
    """Releases that did not end as they should, with why. Per pipeline: the newest (order_key) is
    Succeeded and its image is what prod's Deployment runs (`prod_image`: (namespace, pipeline) ->
    image); every other release is Superseded or Succeeded. Nothing else (Failed, still running)."""
    by_pipeline: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in releases:
        by_pipeline.setdefault((r["metadata"]["namespace"], r["spec"]["pipeline"]), []).append(r)
    wrong = []
    for key, rels in sorted(by_pipeline.items()):
        rels.sort(key=order_key)
        for r in rels:
            status = r.get("status") or {}
            phase = status.get("phase") or "(none)"
            name = f"{key[0]}/{r['metadata']['name']}"
            why = None
            if r is rels[-1]:
                image = f"{image_repo}@{r['spec']['digest']}"
                if phase != "Succeeded":
                    why = f"newest of its pipeline, but {phase}"
                elif prod_image.get(key) != image:
                    why = f"newest and Succeeded, but prod runs {prod_image.get(key)}"
            elif phase not in ("Superseded", "Succeeded"):
                why = f"older release ended {phase}"
            if why:
                wrong.append(
                    {"release": name, "phase": phase, "why": why, "message": status.get("message") or ""}
                )
    return wrong


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank (as bench/harness.py's pct)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def per_promotion_table(
    sources: dict[str, Counter[Key]], promotions: int, top: int = 25
) -> list[tuple[str, str, list[float]]]:
    """Rows (verb, resource, [requests per stage promotion, one per source]), busiest first."""
    keys: Counter[Key] = Counter()
    for counts in sources.values():
        keys.update(counts)
    rows = []
    for (verb, resource), _ in keys.most_common(top):
        rows.append(
            (verb, resource, [c.get((verb, resource), 0) / max(promotions, 1) for c in sources.values()])
        )
    return rows


def scale_goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #11's goals for the scale run, one row each (bench/results.py's goal rows), from the
    results scale.py writes: all releases correct, p99 <= 3x lone, <= 15 API requests per stage
    promotion (the audit log's count when the run had it, else the operator's own), RSS < 150 MB."""
    p, lone, burst, op = res["parameters"], res["lone"], res["burst"], res["operator"]
    shape = f"{p['pipelines']} pipelines x {p['releases_per_pipeline']} releases ({burst['releases']})"
    wrong = len(burst["wrong_end_states"])
    hit = "; DEADLINE HIT" if burst["timed_out"] else ""
    phases = ", ".join(f"{k} {v}" for k, v in sorted(burst["phases"].items()))
    rows = [
        {
            "what": f"scale {shape}: every release ends correctly",
            "goal": "all correct",
            "measured": f"{wrong} wrong ({phases}){hit}",
            "met": wrong == 0 and not burst["timed_out"],
        }
    ]
    newest, alone = burst["end_to_end_s_newest"], lone["end_to_end_s"]
    if newest["p99"] is not None and alone["p99"]:
        ratio = newest["p99"] / alone["p99"]
        rows.append(
            {
                "what": f"scale {shape}: newest per pipeline created -> Succeeded, p99 vs a lone release",
                "goal": "<= 3x lone",
                "measured": f"{newest['p99']:.1f} s vs {alone['p99']:.1f} s = {ratio:.1f}x "
                f"(n={newest['n']}, lone n={alone['n']})",
                "met": ratio <= 3,
            }
        )
    else:
        rows.append(
            {
                "what": f"scale {shape}: newest per pipeline created -> Succeeded, p99 vs a lone release",
                "goal": "<= 3x lone",
                "measured": f"no sample (burst n={newest['n']}, lone n={alone['n']})",
                "met": False if burst["releases"] else None,
            }
        )
    promotions = burst["stage_promotions"]
    source = "audit log" if burst["audit_requests"] else "operator's own count"
    rows_of = burst["audit_requests"] or burst["operator_requests"]
    total = sum(r["count"] for r in rows_of)
    split = ""
    by = (res.get("clusters") or {}).get("burst_requests_by_cluster")
    if by:  # --clusters 2: both audit logs, the operator's identity in each
        source = "both clusters' audit logs"
        total = sum(v["requests"] for v in by.values())
        split = "; " + ", ".join(
            f"{name} {v['per_promotion']:.1f}" for name, v in by.items() if v["per_promotion"] is not None
        )
    per = total / promotions if promotions else None
    rows.append(
        {
            "what": f"scale {shape}: API requests per stage promotion, writes and Events included ({source})",
            "goal": "<= 15",
            "measured": f"{per:.0f} ({total} requests / {promotions} promotions{split})"
            if per is not None
            else f"no promotion ({total} requests)",
            "met": per is not None and per <= 15,
        }
    )
    rows.append(
        {
            "what": f"scale {shape}: operator peak RSS",
            "goal": "< 150 MB",
            "measured": f"{op['rss_peak_mb']:.0f} MB (idle {op['rss_idle_mb']:.0f} MB)",
            "met": op["rss_peak_mb"] < 150,
        }
    )
    return rows


# Where a release's time goes, per stage, from the timestamps Conveyor records in its status
# (status.stages[]): the segments a user would ask about when the burst is slow.
SEGMENTS = (
    ("queued", "entered the stage after it was ready to (created, or verified in the stage before)"),
    ("rollout", "image set -> every target available (the cluster's controllers and kwok)"),
    ("smoke_test", "smoke-test Job started -> stage verified (the Job controller and kwok)"),
    ("handoff", "every target available -> smoke-test Job started (Conveyor)"),
)


def time_breakdown(releases: Iterable[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """stage -> segment -> seconds, over the releases verified in that stage. `queued` counts from
    the release's creation (whole seconds: creationTimestamp) for its first stage."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in releases:
        ready = parse_time(r["metadata"]["creationTimestamp"])
        for rec in (r.get("status") or {}).get("stages") or []:
            times = {
                k: parse_time(rec[k])
                for k in ("startedAt", "deployedAt", "rolledOutAt", "smokeTestStartedAt", "verifiedAt")
                if rec.get(k)
            }
            if rec.get("phase") != "Verified" or "verifiedAt" not in times:
                break
            seg = out.setdefault(rec["name"], {name: [] for name, _ in SEGMENTS})
            if "startedAt" in times:
                seg["queued"].append(max(0.0, (times["startedAt"] - ready).total_seconds()))
            if "deployedAt" in times and "rolledOutAt" in times:
                seg["rollout"].append((times["rolledOutAt"] - times["deployedAt"]).total_seconds())
            if "smokeTestStartedAt" in times:
                seg["smoke_test"].append((times["verifiedAt"] - times["smokeTestStartedAt"]).total_seconds())
                if "rolledOutAt" in times:
                    seg["handoff"].append(
                        (times["smokeTestStartedAt"] - times["rolledOutAt"]).total_seconds()
                    )
            ready = times["verifiedAt"]
    return out


# --- the two-cluster variant (--clusters 2, issue #16) -------------------------------------------

CLUSTER_SECRET_LABEL = "conveyor.dev/cluster-secret"  # noqa: S105 - a label, not a password
PIPELINE_NAMESPACES_ANNOTATION = "conveyor.dev/pipeline-namespaces"


def cluster_secret(
    name: str,
    *,
    secret_name: str,
    server: str,
    token: str,
    ca_pem: bytes,
    pipeline_namespaces: Iterable[str],
) -> dict[str, Any]:
    """The cluster Secret (Argo CD's format) through which the operator reaches cluster `name`: its
    API server, a bearer token, its CA (PEM), for Pipelines in `pipeline_namespaces` only."""
    import base64

    config = {"bearerToken": token, "tlsClientConfig": {"caData": base64.b64encode(ca_pem).decode()}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "labels": {CLUSTER_SECRET_LABEL: "true"},
            "annotations": {PIPELINE_NAMESPACES_ANNOTATION: ",".join(pipeline_namespaces)},
        },
        "type": "Opaque",
        "stringData": {"name": name, "server": server, "config": json.dumps(config)},
    }


def stage_started(release: dict[str, Any], stage: str) -> bool:
    """Whether the release has entered `stage` (its status.stages record has startedAt)."""
    return any(
        rec.get("name") == stage and rec.get("startedAt")
        for rec in (release.get("status") or {}).get("stages") or []
    )


def outage_due(releases: Iterable[dict[str, Any]], stage: str, pipelines: int, fraction: float = 0.5) -> bool:
    """The middle of the burst, for the outage drill: at least `fraction` of the `pipelines` have a
    release that entered `stage` (the one in the other cluster), so the rest are on their way there."""
    started = {
        (r["metadata"]["namespace"], r["spec"]["pipeline"]) for r in releases if r and stage_started(r, stage)
    }
    return pipelines > 0 and len(started) >= fraction * pipelines


def stage_promotions_by_stage(releases: Iterable[dict[str, Any]]) -> Counter[str]:
    """Stage promotions (records Verified) per stage name across these releases."""
    out: Counter[str] = Counter()
    for r in releases:
        for rec in ((r or {}).get("status") or {}).get("stages") or []:
            if rec.get("phase") == "Verified":
                out[rec.get("name", "?")] += 1
    return out


def requests_by_cluster(
    requests: dict[str, int], promotions: int, promotions_in: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per cluster: its API requests (from its audit log, the operator's identity there), per stage
    promotion of any stage, and per promotion of a stage living in that cluster."""
    out: dict[str, dict[str, Any]] = {}
    for cluster, n in requests.items():
        here = promotions_in.get(cluster, 0)
        out[cluster] = {
            "requests": n,
            "per_promotion": n / promotions if promotions else None,
            "stage_promotions_here": here,
            "per_promotion_here": n / here if here else None,
        }
    return out


PROGRESS = ("deployedAt", "rolledOutAt", "smokeTestStartedAt", "verifiedAt", "finishedAt")


def first_after(
    releases: Iterable[dict[str, Any]], stage: str, after: datetime, keys: tuple[str, ...] = PROGRESS
) -> datetime | None:
    """The first moment after `after` that a release's `stage` record shows progress (one of `keys`;
    by default any: the operator working there again)."""
    found = [
        t
        for r in releases
        if r
        for rec in (r.get("status") or {}).get("stages") or []
        if rec.get("name") == stage
        for k in keys
        if rec.get(k)
        for t in [parse_time(rec[k])]
        if t > after
    ]
    return min(found) if found else None


def first_request_after(records: Iterable[AuditRecord], user: str, after: datetime) -> datetime | None:
    """When `user`'s first request after `after` reached the API server (its audit log)."""
    times = [r.received for r in records if r.user == user and r.received > after]
    return min(times) if times else None


SAME_SHAPE = ("teams", "apps", "releases_per_pipeline", "replicas", "approvals", "namespaces_served")


def extra_delay(outage: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the outage cost, against a two-cluster run of the same shape without it (the results
    file's section, or None): burst wall time and newest-release p50/p99 differences, in seconds."""
    if not baseline:
        return None
    params, base_params = outage.get("parameters") or {}, baseline.get("parameters") or {}
    if any(params.get(k) != base_params.get(k) for k in SAME_SHAPE):
        return None
    ob, bb = outage["results"]["burst"], baseline["results"]["burst"]

    def diff(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    return {
        "baseline_when": baseline.get("when"),
        "baseline_commit": baseline.get("commit"),
        "duration_s": diff(ob["duration_s"], bb["duration_s"]),
        "newest_p50_s": diff(ob["end_to_end_s_newest"]["p50"], bb["end_to_end_s_newest"]["p50"]),
        "newest_p99_s": diff(ob["end_to_end_s_newest"]["p99"], bb["end_to_end_s_newest"]["p99"]),
    }


def two_cluster_goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the two-cluster variant beside scale_goals' (whose request row then counts both
    clusters): with the outage drill, every release correct, and what the outage cost."""
    p, burst, mc = res["parameters"], res["burst"], res["clusters"]
    shape = f"{p['pipelines']} pipelines x {p['releases_per_pipeline']} releases, prod in {mc['remote']}"
    rows: list[dict[str, Any]] = []
    outage = mc.get("outage")
    if outage is not None:
        wrong = len(burst["wrong_end_states"])
        if not outage.get("stopped_at"):
            rows.append(
                {
                    "what": f"scale {shape}: {mc['remote']}'s API server down mid-burst",
                    "goal": "0 wrong",
                    "measured": "the outage never started (the burst ended first)",
                    "met": None,
                }
            )
        else:
            extra = outage.get("extra_delay") or {}
            cost = (
                f"; burst {extra['duration_s']:+.1f} s, newest p99 {extra['newest_p99_s']:+.1f} s "
                "vs the run without it"
                if extra.get("duration_s") is not None and extra.get("newest_p99_s") is not None
                else ""
            )
            resumed = outage.get("resumed_after_s")
            rows.append(
                {
                    "what": f"scale {shape}: {mc['remote']}'s API server down {outage['down_s']:.0f} s "
                    "mid-burst: every release ends correctly",
                    "goal": "0 wrong",
                    "measured": f"{wrong} wrong"
                    + (
                        f"; work in {mc['remote']} resumed {resumed:.1f} s after it was back"
                        if resumed
                        else ""
                    )
                    + cost
                    + ("; DEADLINE HIT" if burst["timed_out"] else ""),
                    "met": wrong == 0 and not burst["timed_out"],
                }
            )
    return rows
