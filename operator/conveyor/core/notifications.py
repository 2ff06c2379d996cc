"""Notifications, decided: what happened (from durable status), what is due for a channel, what a
receiver's answer means, and the message itself. Pure: no I/O, no clock but the `now` passed in.

Every notification comes from a transition a pass already recorded in status — a Release's or
Rollback's history entry, a Pipeline's InParity condition — never from "a condition is true now".
Status is written before anything is announced, so it is the outbox: after a crash the notifier
works out again, from the API server, what is due. A channel's own status (its ledger) records what
ended; an occurrence whose id is there is never due again.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from conveyor.api.notification import (
    LEDGER_LIMIT,
    ApprovalFacts,
    ChannelType,
    DeliveryResult,
    FailureFacts,
    LedgerEntry,
    Notification,
    NotificationChannel,
    ObjectRef,
    Ref,
    ReleaseFacts,
    RollbackFacts,
    Timings,
    Trigger,
)
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import HistoryEntry, Phase, Release, StagePhase, StageRecord
from conveyor.api.rollback import Rollback
from conveyor.core.conditions import get_condition
from conveyor.core.jobs import short_commit

# History reasons that are notifications, per kind.
RELEASE_TRIGGERS = {
    "AwaitingApproval": Trigger.APPROVAL_NEEDED,
    "StageVerified": Trigger.STAGE_VERIFIED,
    "ReleaseSucceeded": Trigger.RELEASE_SUCCEEDED,
}
ROLLBACK_TRIGGERS = {
    "RollbackStarted": Trigger.ROLLBACK_STARTED,
    "RollbackCompleted": Trigger.ROLLBACK_COMPLETED,
    "RollbackRefused": Trigger.ROLLBACK_REFUSED,
    "RollbackFailed": Trigger.ROLLBACK_FAILED,
}
# Retry: doubling from 1 s to a minute; a receiver's Retry-After is honoured up to 5 minutes.
BACKOFF_START_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
RETRY_AFTER_CAP_SECONDS = 300.0
# Messages to one channel are paced: Slack takes about one a second per webhook.
PACE_SECONDS = {ChannelType.SLACK: 1.0, ChannelType.TEAMS: 0.5, ChannelType.WEBHOOK: 0.0}
# Where Slack and Teams (Workflows) webhooks live. Anything else for those types is a mistake (or an
# attempt to send the channel's messages elsewhere).
SLACK_HOSTS = ("hooks.slack.com",)
TEAMS_HOST_SUFFIXES = (".logic.azure.com", ".api.powerplatform.com", ".powerautomate.com")
MAX_DIFFERENCES = 10


@dataclass(frozen=True)
class Occurrence:
    """One transition worth telling: which object, what, when (Conveyor's clock)."""

    id: str
    trigger: Trigger
    at: datetime
    kind: str  # releases | rollbacks | pipelines
    name: str
    pipeline: str
    stage: str | None
    reason: str
    message: str
    actor: str | None
    seq: int = 0  # its place in the object's history: orders transitions recorded at the same instant

    @property
    def subject(self) -> str:
        """releases/NAME[/STAGE], rollbacks/NAME or pipelines/NAME."""
        return f"{self.kind}/{self.name}" + (
            f"/{self.stage}" if self.stage and self.kind == "releases" else ""
        )


def event_id(uid: str, trigger: str, occurrence: str) -> str:
    """The idempotency key: the same for every attempt, restart, replica and channel; a new object
    under an old name (a new uid) gets new keys."""
    digest = hashlib.sha256(f"v1|{uid}|{trigger}|{occurrence}".encode()).digest()
    return "cnv1_" + base64.b32encode(digest).decode().lower()[:26]


def _occurrence(  # noqa: PLR0917 (one private constructor, called three times)
    uid: str, kind: str, name: str, pipeline: str, trigger: Trigger, key: str, h: HistoryEntry, seq: int
) -> Occurrence:
    return Occurrence(
        id=event_id(uid, trigger, key),
        trigger=trigger,
        at=h.time,
        kind=kind,
        name=name,
        pipeline=pipeline,
        stage=h.stage,
        reason=h.reason,
        message=h.message,
        actor=h.actor,
        seq=seq,
    )


def release_occurrences(release: Release) -> list[Occurrence]:
    """A release's notifications: approval needed and verified per stage (the first entry of each),
    succeeded, and failed (the failing stage's warning entry, once per release)."""
    meta, spec, status = release.metadata, release.spec, release.status
    out: dict[str, Occurrence] = {}
    for seq, h in enumerate(status.history):
        trigger = RELEASE_TRIGGERS.get(h.reason)
        if trigger is None:
            continue
        key = "" if trigger == Trigger.RELEASE_SUCCEEDED else h.stage or ""
        occ = _occurrence(meta.uid, "releases", meta.name, spec.pipeline, trigger, key, h, seq)
        out.setdefault(occ.id, occ)
    if status.phase == Phase.FAILED:
        failed = {s.name for s in status.stages if s.phase == StagePhase.FAILED}
        failing = [i for i, h in enumerate(status.history) if h.warning and h.stage in failed]
        if failing:
            h = status.history[failing[-1]]
            occ = _occurrence(
                meta.uid, "releases", meta.name, spec.pipeline, Trigger.RELEASE_FAILED, "", h, failing[-1]
            )
            out.setdefault(occ.id, occ)
    return list(out.values())


def rollback_occurrences(rollback: Rollback) -> list[Occurrence]:
    """A rollback's notifications: started, completed, refused, failed (each at most once)."""
    meta = rollback.metadata
    out: dict[str, Occurrence] = {}
    stage = rollback.status.plan.stage if rollback.status.plan else rollback.spec.stage
    for seq, h in enumerate(rollback.status.history):
        trigger = ROLLBACK_TRIGGERS.get(h.reason)
        if trigger is None:
            continue
        occ = _occurrence(meta.uid, "rollbacks", meta.name, rollback.spec.pipeline, trigger, "", h, seq)
        if occ.stage is None and stage:
            occ = Occurrence(**{**occ.__dict__, "stage": stage})
        out.setdefault(occ.id, occ)
    return list(out.values())


def pipeline_occurrences(pipeline: Pipeline) -> list[Occurrence]:
    """Parity lost: the InParity condition turned False (one per transition)."""
    cond = get_condition(pipeline.status.conditions, "InParity")
    if cond is None or cond.status != "False":
        return []
    meta = pipeline.metadata
    at = cond.last_transition_time
    return [
        Occurrence(
            id=event_id(meta.uid, Trigger.PARITY_LOST, at.isoformat()),
            trigger=Trigger.PARITY_LOST,
            at=at,
            kind="pipelines",
            name=meta.name,
            pipeline=meta.name,
            stage=None,
            reason=cond.reason,
            message=cond.message,
            actor=None,
        )
    ]


# --- What is due


def selected(
    channel: NotificationChannel, occ: Occurrence, pipeline_labels: Mapping[str, str] | None
) -> bool:
    """Whether the channel speaks about this occurrence: its trigger, its stage, its pipeline's labels
    (a pipeline that is gone has no labels: only a channel without a selector still speaks for it)."""
    spec = channel.spec
    if occ.trigger not in spec.triggers:
        return False
    if spec.stages and occ.stage is not None and occ.stage not in spec.stages:
        return False
    labels = pipeline_labels or {}
    return all(labels.get(k) == v for k, v in spec.pipeline_selector.match_labels.items())


@dataclass
class Due:
    """A channel's work now: messages to send (oldest first) and messages given up."""

    send: list[Occurrence] = field(default_factory=list)
    expire: list[Occurrence] = field(default_factory=list)


def due(  # noqa: PLR0917 (the channel, the world, what ended, now, what stays owed)
    channel: NotificationChannel,
    occurrences: Iterable[Occurrence],
    labels: Mapping[str, Mapping[str, str]],
    done: set[str],
    now: datetime,
    owed: frozenset[str] | set[str] = frozenset(),
) -> Due:
    """What the channel owes: selected occurrences after it was first seen and past its horizon (but
    `owed`: due before the horizon last moved — an edit moves it — and still selected), not ended
    yet (`done`: the ledger's ids and those ended since), split into those still worth sending and
    those older than maxDelaySeconds. Nothing is due before `since` is recorded."""
    st = channel.status
    if st.since is None:
        return Due()
    floor = max(st.since, st.horizon) if st.horizon else st.since
    late = now - timedelta(seconds=channel.spec.max_delay_seconds)
    out = Due()
    for occ in sorted(occurrences, key=lambda o: (o.at, o.seq, o.id)):
        behind = occ.at <= st.since or (occ.at <= floor and occ.id not in owed)
        if behind or occ.id in done or not selected(channel, occ, labels.get(occ.pipeline)):
            continue
        (out.expire if occ.at < late else out.send).append(occ)
    return out


def horizon_moves(channel: NotificationChannel, now: datetime) -> tuple[datetime | None, bool]:
    """Where a channel starts over, and whether what it owed stays owed. Resumed (its Ready
    condition still says Suspended): from now, owing nothing — what happened while suspended, or
    still waited, is never sent. Edited (a generation it has not acted on: a trigger added, the
    selector widened): from now, but what it already owed stays owed — an edit does not reach back.
    Otherwise: nothing moves."""
    st = channel.status
    ready = get_condition(st.conditions, "Ready")
    if ready is not None and ready.reason == "Suspended":
        return now, False
    if st.observed_generation not in (None, channel.metadata.generation):
        return now, True
    return None, True


def obsolete(occ: Occurrence, release: Release | None) -> bool:
    """An approval request whose gate is no longer waiting (approved, superseded, cancelled) by the
    time it could be sent: telling approvers now would send them to a gate that is not there."""
    if occ.trigger != Trigger.APPROVAL_NEEDED or release is None:
        return False
    rec = _stage(release, occ.stage)
    return (
        rec is None
        or rec.phase != StagePhase.AWAITING_APPROVAL
        or release.status.phase
        in (
            Phase.SUPERSEDED,
            Phase.CANCELLED,
            Phase.VETOED,
        )
    )


def record(
    channel: NotificationChannel, entries: list[LedgerEntry], now: datetime
) -> tuple[list[LedgerEntry], datetime | None]:
    """The ledger with `entries` added, and the horizon: entries that ended more than
    maxDelaySeconds ago are dropped (what they tell happened even earlier, so it can no longer be
    due: the horizon moves past it — an Expired entry stays a maxDelay after it expired), and beyond
    LEDGER_LIMIT the oldest go the same way."""
    st = channel.status
    seen = {e.id for e in st.ledger}
    ledger = [*st.ledger, *(e for e in entries if e.id not in seen)]
    horizon = st.horizon
    late = now - timedelta(seconds=channel.spec.max_delay_seconds)

    def ended(e: LedgerEntry) -> datetime:
        return e.finished_at or e.at

    keep = [e for e in ledger if ended(e) >= late]
    dropped = [e for e in ledger if ended(e) < late]
    if len(keep) > LEDGER_LIMIT:
        keep.sort(key=lambda e: e.at)
        dropped += keep[:-LEDGER_LIMIT]
        keep = keep[-LEDGER_LIMIT:]
    if dropped:
        newest = max(e.at for e in dropped)
        horizon = max(horizon, newest) if horizon else newest
    return keep, horizon


# --- Answers and retries


class Outcome:
    """What a receiver's answer means."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def classify(code: int | None) -> str:
    """2xx (Teams' Workflows answer 202) delivered; no answer, 408, 425, 429 and 5xx retried; any
    other answer (400, 403, 404, 410, a redirect: never followed) rejected — retrying cannot help."""
    if code is None or code in (408, 425, 429) or code >= 500:
        return Outcome.RETRY
    if 200 <= code < 300:
        return Outcome.DELIVERED
    return Outcome.REJECTED


def backoff(
    attempts: int, retry_after: str | None, now: datetime, rand: random.Random | None = None
) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from 1 s to a minute,
    jittered down by up to a half (receivers recovering are not hit by every operator at once), or
    the receiver's Retry-After (seconds or an HTTP date) up to 5 minutes when it says longer."""
    base = min(BACKOFF_CAP_SECONDS, BACKOFF_START_SECONDS * 2 ** min(16, max(0, attempts - 1)))
    delay = base * (rand or random).uniform(0.5, 1.0)
    asked = retry_after_seconds(retry_after, now)
    return max(delay, min(asked, RETRY_AFTER_CAP_SECONDS)) if asked is not None else delay


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


# --- Where messages may go


@dataclass(frozen=True)
class UrlProblem:
    """Why a channel's URL is not used: a condition reason and a message that never quotes the URL."""

    reason: str
    message: str


def host_port(url: str) -> tuple[str, str]:
    """(host, host:port) of a URL, lowercase; ("", "") when it has none."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "", ""
    return host, f"{host}:{port}"


def allowed(host: str, hostport: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether the operator was told (--notify-allowed-host) that this host may be reached although
    private or over http."""
    listed = {h.lower().strip("[]") for h in allowed_hosts} | {h.lower() for h in allowed_hosts}
    return host in listed or hostport in listed


# A host name as DNS has it (IDNA names in their xn-- form; a trailing dot allowed).
_HOST = re.compile(
    r"^(?=.{1,253}\.?$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$"
)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


# IPv6 ranges that carry an IPv4 address (NAT64, the IPv4-compatible ::/96): judged by that address.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.ip_network("::/96")


def private_address(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata lives there), unspecified, reserved or
    multicast — also when an IPv6 address carries such an IPv4 address (mapped, 6to4, NAT64,
    IPv4-compatible; Teredo is refused outright). Not an address: False (names are judged by the
    addresses they resolve to, when connecting)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return True
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and (ip in _COMPATIBLE or any(ip in net for net in _NAT64)):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return private_address(str(inner))
    return not ip.is_global or ip.is_multicast


def check_url(
    channel_type: ChannelType, url: str, where: str, allowed_hosts: Iterable[str]
) -> UrlProblem | None:
    """Whether a URL read from a Secret may be used, before any DNS lookup (the sender checks the
    addresses a name resolves to as well). `where` names the Secret key, for messages: the URL
    itself is never repeated — it is a credential."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return UrlProblem("InvalidURL", f"{where} does not hold a valid URL")
    host, hostport = host_port(url)
    if parts.scheme not in ("http", "https") or not host:
        return UrlProblem("InvalidURL", f"{where} does not hold an http(s) URL with a host")
    numeric_tld = host.rstrip(".").rsplit(".", 1)[-1].isdigit()  # 2130706433, 127.1: inet_aton forms
    if (not _HOST.match(host) or numeric_tld) and not _is_address(host):
        # Anything else (a backslash, a space, an empty label) is read differently by different URL
        # parsers — the one judging here and the one connecting must see the same host.
        return UrlProblem("InvalidURL", f"{where} holds a URL whose host is not a valid DNS name or address")
    if parts.username or parts.password:
        return UrlProblem(
            "InvalidURL", f"{where} holds a URL with user information; put the token in the path"
        )
    if allowed(host, hostport, allowed_hosts):
        return None
    if parts.scheme != "https":
        return UrlProblem(
            "InvalidURL",
            f"{where} holds a plain-http URL; only https is used (an in-cluster receiver: list it with "
            "--notify-allowed-host, chart: notifications.allowedHosts)",
        )
    bare = host.rstrip(".")
    if bare == "localhost" or bare.endswith(".localhost") or private_address(bare):
        return UrlProblem(
            "HostNotAllowed",
            f"{where} points to a private or loopback address; list it with --notify-allowed-host "
            "(chart: notifications.allowedHosts) if that is intended",
        )
    if channel_type == ChannelType.SLACK and host not in SLACK_HOSTS:
        return UrlProblem("HostNotAllowed", f"{where}: a slack channel posts to hooks.slack.com only")
    if channel_type == ChannelType.TEAMS and not host.endswith(TEAMS_HOST_SUFFIXES):
        retired = host.endswith(".webhook.office.com")
        return UrlProblem(
            "HostNotAllowed",
            f"{where}: "
            + (
                "Office 365 connectors are retired; create a Teams Workflows webhook"
                if retired
                else "a teams channel posts to a Workflows webhook (*.logic.azure.com, "
                "*.api.powerplatform.com, *.powerautomate.com) only"
            ),
        )
    return None


# --- The message


def _stage(release: Release, name: str | None) -> StageRecord | None:
    return next((s for s in release.status.stages if s.name == name), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def _release_facts(release: Release) -> ReleaseFacts:
    spec = release.spec
    return ReleaseFacts(
        release=release.metadata.name,
        commit=spec.commit,
        short_commit=short_commit(spec.commit),
        digest=spec.digest,
        image=release.status.image,
        repository=spec.source.repository,
        author=spec.source.author,
        ci_run_id=spec.source.ci_run_id,
        requester=spec.requester.username if spec.requester else None,
        target_stage=spec.target_stage,
    )


def _timings(release: Release, rec: StageRecord | None, lead: bool) -> Timings:
    t = Timings()
    if rec is not None:
        t.migration_seconds = _seconds(rec.started_at, rec.migrated_at) if rec.migration_job else None
        t.rollout_seconds = _seconds(rec.deployed_at, rec.rolled_out_at)
        t.smoke_test_seconds = _seconds(rec.smoke_test_started_at, rec.verified_at)
        t.stage_seconds = _seconds(rec.started_at, rec.verified_at)
    if lead and rec is not None:
        t.lead_time_seconds = _seconds(release.spec.source.commit_time, rec.verified_at)
    return t


def _failure(release: Release, occ: Occurrence, pipeline: Pipeline | None) -> FailureFacts:
    """Which step failed and what to look at: the failed Job, or the stage's first Deployment."""
    rec = _stage(release, occ.stage)
    stage = pipeline.stage(occ.stage) if pipeline is not None and occ.stage else None
    facts = FailureFacts(step="Stage", reason=occ.reason, message=occ.message)
    job = None
    if (
        rec is not None
        and rec.smoke_test_job
        and (rec.smoke_test_result == "Failed" or "SmokeTest" in occ.reason)
    ):
        facts.step, job = "SmokeTest", rec.smoke_test_job
    elif (
        rec is not None
        and rec.migration_job
        and (rec.migration_result == "Failed" or "Migration" in occ.reason)
    ):
        facts.step, job = "Migration", rec.migration_job
    elif occ.reason.startswith("Rollout"):
        facts.step = "Rollout"
    if stage is None:
        return facts
    if job:
        facts.object = ObjectRef(kind="Job", namespace=stage.namespace, name=job)
        facts.hint = f"kubectl logs -n {stage.namespace} job/{job}"
    elif pipeline is not None and pipeline.spec.targets:
        target = pipeline.spec.targets[0].deployment
        facts.object = ObjectRef(kind="Deployment", namespace=stage.namespace, name=target)
        facts.hint = f"kubectl describe deployment -n {stage.namespace} {target}"
    return facts


def notification(
    occ: Occurrence,
    *,
    namespace: str,
    release: Release | None = None,
    rollback: Rollback | None = None,
    pipeline: Pipeline | None = None,
    dashboard_url: str | None = None,
) -> Notification:
    """The message for an occurrence, from the objects as they are now (status only grows: what
    the occurrence tells is still there)."""
    stage = pipeline.stage(occ.stage) if pipeline is not None and occ.stage else None
    n = Notification(
        id=occ.id,
        trigger=occ.trigger,
        time=occ.at,
        namespace=namespace,
        pipeline=occ.pipeline,
        subject=occ.subject,
        stage=occ.stage,
        title="",
        reason=occ.reason,
        message=occ.message,
        actor=occ.actor,
    )
    if release is not None:
        n.release = _release_facts(release)
        if release.spec.source.ci_run_url and release.spec.source.ci_run_url.startswith(
            ("https://", "http://")
        ):
            n.links.ci_run = release.spec.source.ci_run_url
        if dashboard_url:
            n.links.dashboard = f"{dashboard_url.rstrip('/')}/#/release/{namespace}/{release.metadata.name}"
    elif dashboard_url:
        n.links.dashboard = f"{dashboard_url.rstrip('/')}/#/pipeline/{namespace}/{occ.pipeline}"
    short = n.release.short_commit if n.release else ""
    trigger = occ.trigger
    if trigger == Trigger.APPROVAL_NEEDED:
        policy = stage.approval if stage is not None else None
        n.approval = ApprovalFacts(
            users=list(policy.approvers.users) if policy else [],
            groups=list(policy.approvers.groups) if policy else [],
            min_approvals=policy.min_approvals if policy else 1,
            four_eyes=policy.four_eyes if policy else True,
            command=f"kubectl conveyor approve {occ.name} --stage {occ.stage} -n {namespace}",
        )
        n.title = f"{occ.pipeline}: {short} waits for approval to enter {occ.stage}"
    elif trigger == Trigger.STAGE_VERIFIED and release is not None:
        rec = _stage(release, occ.stage)
        n.timings = _timings(release, rec, lead=False)
        n.title = f"{occ.pipeline}: {short} verified in {occ.stage}"
    elif trigger == Trigger.RELEASE_SUCCEEDED and release is not None:
        rec = _stage(release, occ.stage)
        n.timings = _timings(release, rec, lead=True)
        n.title = f"{occ.pipeline}: {short} released — verified up to {occ.stage}"
    elif trigger == Trigger.RELEASE_FAILED and release is not None:
        n.failure = _failure(release, occ, pipeline)
        n.title = f"{occ.pipeline}: {short} failed in {occ.stage} ({occ.reason})"
    elif rollback is not None:
        n.rollback = _rollback_facts(rollback)
        verb = {
            Trigger.ROLLBACK_STARTED: "rolling back",
            Trigger.ROLLBACK_COMPLETED: "rolled back",
            Trigger.ROLLBACK_REFUSED: "rollback refused",
            Trigger.ROLLBACK_FAILED: "rollback failed",
        }.get(trigger, "rollback")
        path = ""
        if n.rollback.from_ and n.rollback.to:
            # A refused rollback's asked-for target may be known by name only (no plan named it).
            ends = [ref.short_commit or ref.release for ref in (n.rollback.from_, n.rollback.to)]
            path = f": {ends[0]} → {ends[1]}"
        n.title = f"{occ.pipeline}: {occ.stage or 'stage'} {verb}{path}"
    elif trigger == Trigger.PARITY_LOST and pipeline is not None:
        parity = pipeline.status.parity
        n.differences = [
            f"{d.path}: {d.stage_a} {d.shape_a}, {d.stage_b} {d.shape_b}"
            for d in (parity.differences if parity is not None else [])[:MAX_DIFFERENCES]
        ]
        n.title = f"{occ.pipeline}: stages no longer in parity"
    if not n.title:
        n.title = f"{occ.pipeline}: {occ.reason}"
    return n


def _rollback_facts(rb: Rollback) -> RollbackFacts:
    plan, st = rb.status.plan, rb.status
    facts = RollbackFacts(
        name=rb.metadata.name,
        requester=rb.spec.requester.username if rb.spec.requester else None,
        reason=rb.spec.reason or None,
        duration_seconds=st.duration_seconds,
    )
    if rb.spec.to_release:  # what was asked for, even when refused before a plan named it
        facts.to = Ref(release=rb.spec.to_release)
    if plan is not None:
        facts.plan = plan.action
        facts.plan_reason = plan.reason
        if plan.from_release or plan.from_commit:
            facts.from_ = Ref(
                release=plan.from_release,
                commit=plan.from_commit,
                short_commit=st.from_short_commit,
                digest=plan.from_digest,
            )
        if plan.to_release or plan.to_commit:
            facts.to = Ref(
                release=plan.to_release,
                commit=plan.to_commit,
                short_commit=st.to_short_commit,
                digest=plan.to_digest,
            )
    return facts


def ledger_entry(
    occ: Occurrence, result: DeliveryResult, code: int | None, attempts: int, now: datetime
) -> LedgerEntry:
    """The record that an occurrence's message ended."""
    return LedgerEntry(
        id=occ.id,
        trigger=occ.trigger,
        subject=occ.subject,
        at=occ.at,
        result=result,
        code=code,
        attempts=attempts,
        finished_at=now,
    )
