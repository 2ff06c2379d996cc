"""The notifier: one task per NotificationChannel, sending what is due, recording what ended.

It never sits on a pipeline's path. Pipeline workers write status as they always did; the notifier
reads the same watch stream (every Release, Rollback and Pipeline event, status echoes included —
those are exactly the transitions it tells) and works out per channel, with the pure core
(core/notifications.py), which messages are due. Only the leader sends (a standby keeps watching,
so a new leader knows at once what is owed), and a send is fenced like a write.

"Once": a message is recorded in the channel's status.ledger right after the receiver accepted it
(one status write per message that ends), and ids already recorded are never due again. Killed
between the receiver's answer and that write, the next leader sends it again with the same id —
the one window, documented in docs/notifications.md. The other order (record, then send) would lose
a message for good when the send then fails.

Channels are independent tasks: a dead receiver backs off its own channel only. Within a channel
messages go in the order things happened; a message being retried holds the ones after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from conveyor.api.common import Condition
from conveyor.api.notification import (
    SECRET_LABEL,
    DeliveryResult,
    LedgerEntry,
    NotificationChannel,
)
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core import notifications as core
from conveyor.core.conditions import get_condition, set_condition
from conveyor.core.notify_render import body as render_body
from conveyor.handlers.cache import Cache
from conveyor.handlers.metrics import NOTIFICATION_BACKLOG, NOTIFICATION_LATENCY, NOTIFICATIONS
from conveyor.kube import faults
from conveyor.kube.client import Kube
from conveyor.kube.fence import NotLeader
from conveyor.kube.notify import Answer, Sender
from conveyor.kube.record import announce

log = logging.getLogger("conveyor.notify")

PLURAL = "notificationchannels"
KIND = "NotificationChannel"
# Secrets are not watched (Conveyor may only `get` them): a channel looks at its Secret again this
# often, and at once when its spec changes or something is due.
SECRET_RECHECK_SECONDS = 60.0
# A Secret problem is looked at again soon — the fix (a label, a key) should heal it in seconds —
# and, once it has lasted a while, less often (a forgotten broken channel must not poll for ever).
SECRET_PROBLEM_RECHECK_SECONDS = 5.0
SECRET_PROBLEM_SLOW_RECHECK_SECONDS = 30.0
SECRET_PROBLEM_FAST_FOR_SECONDS = 120.0
# Time-based ends (maxDelaySeconds passing) need no event: each channel looks at least this often.
IDLE_LOOK_SECONDS = 30.0
ERROR_BACKOFF_SECONDS = 5.0
COALESCE_SECONDS = 0.1

Key = tuple[str, str]  # (namespace, channel name)
Obj = dict[str, Any]
MODELS: dict[str, type[Release] | type[Rollback] | type[Pipeline]] = {
    "releases": Release,
    "rollbacks": Rollback,
    "pipelines": Pipeline,
}
OCCURRENCES: dict[str, Callable[[Any], list[core.Occurrence]]] = {
    "releases": core.release_occurrences,
    "rollbacks": core.rollback_occurrences,
    "pipelines": core.pipeline_occurrences,
}


def utcnow() -> datetime:
    """Now, in UTC (the clock history entries are written with)."""
    return datetime.now(UTC)


def _rv(obj: Mapping[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class _Parsed:
    """One object version, parsed once: the model (None: unreadable) and what it tells."""

    model: Any
    occurrences: list[core.Occurrence]


@dataclass
class Snapshot:
    """A namespace as a pass sees it: the parsed objects, what they tell, the pipelines' labels."""

    models: dict[tuple[str, str], Any] = field(default_factory=dict)  # (plural, name) -> model
    occurrences: list[core.Occurrence] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def model(self, plural: str, name: str) -> Any:
        """The parsed object, or None."""
        return self.models.get((plural, name))


class Objects:
    """The Releases, Rollbacks and Pipelines the notifier tells about: read from the operator's
    watch-fed cache (kopf lists every kind before any handler runs, so a channel's first pass
    already sees everything, in order), parsed once per resourceVersion."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._parsed: dict[tuple[str, str, str], _Parsed] = {}  # (plural, uid, resourceVersion)
        self._namespace: dict[tuple[str, str, str], str] = {}  # the same keys -> their namespace

    def snapshot(self, namespace: str) -> Snapshot:
        """The namespace now."""
        snap = Snapshot()
        seen: set[tuple[str, str, str]] = set()
        for plural in MODELS:
            for body in self._cache.everything(plural, namespace):
                meta = body.get("metadata") or {}
                key = (plural, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
                parsed = self._parsed.get(key)
                if parsed is None:
                    parsed = self._parsed[key] = self._parse(plural, body)
                seen.add(key)
                name = str(meta.get("name") or "")
                snap.models[(plural, name)] = parsed.model
                snap.occurrences.extend(parsed.occurrences)
                if plural == "pipelines":
                    snap.labels[name] = dict(meta.get("labels") or {})
        # Versions no longer current in this namespace are dropped: the memo stays one per object.
        for key in [k for k in self._parsed if k not in seen and self._namespace.get(k) == namespace]:
            del self._parsed[key]
            self._namespace.pop(key, None)
        for key in seen:
            self._namespace[key] = namespace
        return snap

    @staticmethod
    def _parse(plural: str, body: Obj) -> _Parsed:
        try:
            model = MODELS[plural].model_validate(body)
        except ValidationError:
            return _Parsed(None, [])  # unreadable: it tells nothing (its pipeline's pass reports it)
        return _Parsed(model, OCCURRENCES[plural](model))


@dataclass
class _Retry:
    attempts: int = 0
    next_at: float = 0.0  # monotonic
    answer: Answer | None = None


@dataclass
class _Channel:
    """What a channel's task knows between passes (memory only: all that must survive is in status)."""

    key: Key
    body: Obj
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    retries: dict[str, _Retry] = field(default_factory=dict)
    url: str | None = field(default=None, repr=False)  # a credential: never in a repr, log or status
    url_problem: core.UrlProblem | None = None
    refused_url: str | None = field(default=None, repr=False)  # the sender refused it (HostNotAllowed)
    problem_since: float = 0.0  # monotonic: when the current Secret/URL problem began
    secret_checked: float = -1e9  # monotonic
    secret_generation: int = -1
    last_sent: float = -1e9
    failing: bool = False
    unwritten: list[LedgerEntry] = field(default_factory=list)
    gone: bool = False  # a write found it deleted (its DELETED event may never come: a relist)
    term: int = -1  # the leadership term its copy was last read fresh in
    owed: set[str] = field(default_factory=set)  # ids due at the last pass (an edit keeps them owed)


class Conflict(Exception):
    """The channel kept changing under the ledger write (409 three times): the pass is retried, and
    what ended stays in memory until it is written."""


# What _send_one says when a message did not end: try again later, or the URL itself was refused.
RETRY = "retry"
REFUSED = "refused"


class Notifier:
    """Every channel's task, and the objects they tell about."""

    def __init__(
        self,
        kube: Kube,
        sender: Sender,
        cache: Cache,
        *,
        gate: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.sender = sender
        self.objects = Objects(cache)
        # Its own threads: Secret reads, ledger writes and Events never queue before pipeline passes.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
        self._gate = gate
        self._clock = clock
        self._channels: dict[Key, _Channel] = {}
        self._stopping = False
        self._quiescing = False
        self._in_flight = 0  # sends whose ledger write has not happened yet
        self._idle = asyncio.Event()
        self._idle.set()

    # --- fed by the watches (operator.py)

    def observe(self, namespace: str) -> None:
        """A Release, Rollback or Pipeline of the namespace changed (status included: status is what
        the notifier tells): its channels look again."""
        for key, ch in self._channels.items():
            if key[0] == namespace:
                ch.wake.set()

    def channel_event(self, event_type: str | None, body: Obj) -> None:
        """A NotificationChannel appeared, changed or went away."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        ch = self._channels.get(key)
        if event_type == "DELETED":
            if ch is not None and _uid(ch.body) == meta.get("uid"):
                self._forget(key)
            return
        if ch is not None and (_uid(ch.body) != meta.get("uid") or ch.gone):
            self._forget(key)  # deleted and re-created under the name: a new channel, a new ledger
            ch = None
        if ch is None:
            ch = _Channel(key, dict(body))
            self._channels[key] = ch
            ch.task = asyncio.get_running_loop().create_task(self._run(ch), name=f"notify {key[0]}/{key[1]}")
        elif _rv(body) > _rv(ch.body):  # the watch may trail the channel's own last write
            ch.body = dict(body)
        ch.wake.set()

    def wake_all(self) -> None:
        """Every channel looks again (this replica just started leading)."""
        for ch in self._channels.values():
            ch.wake.set()

    def _forget(self, key: Key) -> None:
        ch = self._channels.pop(key, None)
        if ch is not None and ch.task is not None:
            ch.task.cancel()
        with contextlib.suppress(KeyError):
            NOTIFICATION_BACKLOG.remove(f"{key[0]}/{key[1]}")

    async def quiesce(self, timeout: float = 22.0) -> None:
        """Begin no new send, and let those in flight record what they delivered (operator
        shutdown, before the lease is given up: otherwise a receiver's 2xx would land after this
        replica stopped writing, and the next leader would send the message again)."""
        self._quiescing = True
        if self._in_flight:
            log.info(
                "waiting for %d notification(s) in flight to be recorded before stepping down",
                self._in_flight,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)

    async def stop(self) -> None:
        """Cancel every channel's task and close the connection pool (operator shutdown)."""
        self._stopping = True
        tasks = [ch.task for ch in self._channels.values() if ch.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sender.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- one channel

    async def _run(self, ch: _Channel) -> None:
        while not self._stopping and self._channels.get(ch.key) is ch and not ch.gone:
            ch.wake.clear()
            if self._gate is not None and not self._gate.is_set():
                await self._gate.wait()  # standing by: a standby sends nothing
            try:
                delay = await self._pass(ch)
            except NotLeader as e:
                log.info("channel %s/%s: pass dropped: %s", *ch.key, e)
                delay = IDLE_LOOK_SECONDS
            except ApiException as e:
                # The API server's answer (a Secret's data is never in an error body).
                log.warning("channel %s/%s: pass failed: HTTP %s %s", *ch.key, e.status, e.reason)
                delay = ERROR_BACKOFF_SECONDS
            except Exception as e:
                # Only the type: nothing that held the URL may reach a log line.
                log.warning("channel %s/%s: pass failed: %s", *ch.key, type(e).__name__)
                delay = ERROR_BACKOFF_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ch.wake.wait(), timeout=max(0.05, min(delay, IDLE_LOOK_SECONDS)))
            if ch.wake.is_set():
                # Woken by the watches: a promotion is a burst of status writes, and one look after
                # it costs the event loop (shared with every pipeline's watch) far less than one per
                # write. A debounce, not synchronisation.
                await asyncio.sleep(COALESCE_SECONDS)

    async def _in_thread(self, term: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking call on the notifier's threads, its writes fenced to the pass's term."""

        def run() -> Any:
            self.kube.fence.bind(term)
            return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def _check_term(self, term: int) -> None:
        """Raise NotLeader unless this replica leads, in the term the pass began in (a pass that
        spans a lost and regained leadership decided on what another leader may have changed)."""
        self.kube.fence.check("send a notification")
        if self.kube.fence.term != term:
            raise NotLeader(f"a notifier pass of leadership term {term} (now {self.kube.fence.term})")

    async def _pass(self, ch: _Channel) -> float:
        """Send what is due, in order, until done or a message must wait; the seconds until the next
        look is needed."""
        namespace, name = ch.key
        term = self.kube.fence.term
        if ch.term != term:
            # First pass of this process or leadership term: the channel as stored now — the watch's
            # copy may trail the previous leader's last ledger write.
            fresh = await self._in_thread(term, self.kube.get_custom, PLURAL, namespace, name)
            if fresh is None or _uid(fresh) != _uid(ch.body):
                ch.gone = True
                return IDLE_LOOK_SECONDS
            if _rv(fresh) >= _rv(ch.body):
                ch.body = fresh
            ch.term = term
            # A receiver failing before a restart or failover is not news again (ChannelFailing).
            delivering = get_condition(
                NotificationChannel.model_validate(ch.body).status.conditions, "Delivering"
            )
            ch.failing = delivering is not None and delivering.reason in ("ReceiverFailing", "Unreachable")
        channel = NotificationChannel.model_validate(ch.body)
        now = self._clock()
        generation = channel.metadata.generation
        conditions = list(channel.status.conditions)
        if channel.status.since is None:
            # First seen: from now on. Nothing that happened before is ever sent (a channel created
            # for an old namespace does not replay its history).
            problem = await self._check_secret(ch, channel, term, force=True)
            conditions = self._secret_conditions(ch, conditions, problem, generation, now)
            await self._finish(ch, term, [], conditions, backlog=0, generation=generation, since=now)
            return 0.0
        if channel.spec.suspend:
            conditions = set_condition(
                conditions,
                "Ready",
                "False",
                "Suspended",
                "spec.suspend is true: nothing is sent, and nothing of what happens meanwhile later",
                generation=generation,
                now=now,
            )
            await self._finish(ch, term, [], conditions, backlog=0, generation=generation)
            return IDLE_LOOK_SECONDS
        moved, keep_owed = core.horizon_moves(channel, now)
        owed = ch.owed if keep_owed else set()
        if moved is not None:
            channel.status.horizon = max(channel.status.horizon or moved, moved)
        done = {e.id for e in channel.status.ledger} | {e.id for e in ch.unwritten}
        snap = self.objects.snapshot(namespace)
        plan = core.due(channel, snap.occurrences, snap.labels, done, now, owed)
        ch.owed = {o.id for o in plan.send}
        due_ids = {o.id for o in plan.send} | {o.id for o in plan.expire}
        ch.retries = {k: v for k, v in ch.retries.items() if k in due_ids}  # gone, or ended elsewhere
        if plan.expire or moved is not None:
            expired = []
            for occ in plan.expire:
                gave_up = ch.retries.pop(occ.id, _Retry())
                code = gave_up.answer.code if gave_up.answer else None
                expired.append(core.ledger_entry(occ, DeliveryResult.EXPIRED, code, gave_up.attempts, now))
            written = await self._finish(
                ch, term, expired, conditions, backlog=len(plan.send), generation=generation, horizon=moved
            )
            if written is None:
                return IDLE_LOOK_SECONDS
            channel, conditions = written, list(written.status.conditions)
            for occ in plan.expire:  # counted and said once they are recorded
                self._count(ch, occ, "expired")
            if plan.expire:
                self._event(
                    channel,
                    "NotificationExpired",
                    f"{len(plan.expire)} message(s) not delivered within {channel.spec.max_delay_seconds}s "
                    f"were given up (the first: {plan.expire[0].trigger} for {plan.expire[0].subject})",
                    warning=True,
                    now=now,
                    term=term,
                )
        # Something to send: the Secret is read now (a rotated webhook is used at once).
        problem = await self._check_secret(ch, channel, term, force=bool(plan.send))
        conditions = self._secret_conditions(ch, conditions, problem, generation, now)
        pending = list(plan.send)
        wait = IDLE_LOOK_SECONDS
        if problem is not None:
            wait = self._problem_recheck(ch)
        while problem is None and ch.url is not None and pending and not self._quiescing:
            if _generation(ch.body) != generation or ch.gone:
                wait = 0.0  # the spec changed (suspended, triggers): look again from the top
                break
            occ = pending[0]
            retry = ch.retries.get(occ.id)
            mono = time.monotonic()
            if retry is not None and retry.next_at > mono:
                wait = retry.next_at - mono
                break
            pace = ch.last_sent + core.PACE_SECONDS[channel.spec.type] - mono
            if pace > 0:
                await asyncio.sleep(pace)  # pacing a burst to the receiver's rate, not synchronisation
            self._begin()
            try:
                result = await self._send_one(ch, channel, occ, term, snap)
                if result == REFUSED:  # the URL itself (its host resolves into the cluster)
                    ch.problem_since = time.monotonic()
                    conditions = self._secret_conditions(ch, conditions, ch.url_problem, generation, now)
                    wait = SECRET_PROBLEM_RECHECK_SECONDS
                    break
                if isinstance(result, str):  # to be retried: it holds the ones after it
                    retry = ch.retries[occ.id]
                    wait = max(0.0, retry.next_at - time.monotonic())
                    conditions = self._delivering(ch, channel, conditions, retry, generation, now, term)
                    break
                pending.pop(0)
                conditions = self._ended_conditions(ch, channel, conditions, result, generation, term)
                # Recorded before the next send: each message that ends costs one status write.
                written = await self._finish(
                    ch, term, [result], conditions, backlog=len(pending), generation=generation
                )
            finally:
                self._end()
            if written is None:
                return IDLE_LOOK_SECONDS
            channel, conditions = written, list(written.status.conditions)
        await self._finish(ch, term, [], conditions, backlog=len(pending), generation=generation)
        return wait

    def _begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _send_one(
        self, ch: _Channel, channel: NotificationChannel, occ: core.Occurrence, term: int, snap: Snapshot
    ) -> LedgerEntry | str:
        """One attempt at one message: its ledger entry when it ended (delivered, rejected, skipped);
        RETRY when it is to be tried again; REFUSED when the URL itself may not be used."""
        namespace = ch.key[0]
        now = self._clock()
        release = snap.model("releases", occ.name) if occ.kind == "releases" else None
        if core.obsolete(occ, release):
            self._count(ch, occ, "skipped")
            return core.ledger_entry(occ, DeliveryResult.SKIPPED, None, 0, now)
        message = core.notification(
            occ,
            namespace=namespace,
            release=release,
            rollback=snap.model("rollbacks", occ.name) if occ.kind == "rollbacks" else None,
            pipeline=snap.model("pipelines", occ.pipeline),
            dashboard_url=channel.spec.dashboard_url,
        )
        data = render_body(channel.spec.type, message)
        retry = ch.retries.setdefault(occ.id, _Retry())
        self._check_term(term)
        url = ch.url
        assert url is not None
        answer = await self.sender.post(
            url,
            data,
            {"Idempotency-Key": occ.id, "webhook-id": occ.id, "X-Conveyor-Trigger": occ.trigger},
        )
        if answer.error in ("HostNotAllowed", "InvalidURL"):
            # Judged where the sender connected (what the name resolves to, how the URL parses): the
            # URL, not this message, is the problem. Nothing left the operator.
            ch.refused_url, ch.url = url, None
            ch.url_problem = core.UrlProblem(
                answer.error,
                f"{_where(channel)}: "
                + (
                    "its host resolves to a private or loopback address; list it with "
                    "--notify-allowed-host (chart: notifications.allowedHosts) if that is intended"
                    if answer.error == "HostNotAllowed"
                    else "the URL cannot be used to connect"
                ),
            )
            return REFUSED
        retry.attempts += 1
        retry.answer = answer
        ch.last_sent = time.monotonic()
        outcome = core.classify(answer.code)
        fields = {
            "channel": f"{namespace}/{ch.key[1]}",
            "id": occ.id,
            "trigger": occ.trigger,
            "subject": occ.subject,
            "result": outcome,
            "code": answer.code,
            "error": answer.error,
            "attempt": retry.attempts,
            "latency": round(answer.seconds, 3),
        }
        log.info(
            "notification %s", outcome, extra={"fields": {k: v for k, v in fields.items() if v is not None}}
        )
        if outcome == core.Outcome.RETRY:
            retry.next_at = time.monotonic() + core.backoff(retry.attempts, answer.retry_after, now)
            self._count(ch, occ, "retried")
            return RETRY
        faults.reached("after-notification-send")
        if outcome == core.Outcome.DELIVERED:
            ch.retries.pop(occ.id, None)
            self._count(ch, occ, "delivered")
            NOTIFICATION_LATENCY.labels(channel.spec.type).observe(max(0.0, (now - occ.at).total_seconds()))
            return core.ledger_entry(occ, DeliveryResult.DELIVERED, answer.code, retry.attempts, now)
        # Refused. A rotated webhook (the old one revoked, the Secret already updated) is not a
        # reason to lose the message: the Secret is read again, and a new URL gets it at once.
        await self._check_secret(ch, channel, term, force=True)
        if ch.url is not None and ch.url != url:
            retry.next_at = 0.0
            return RETRY
        ch.retries.pop(occ.id, None)
        self._count(ch, occ, "rejected")
        self._event(
            channel,
            "NotificationRejected",
            f"the receiver answered {answer.words} to {occ.trigger} for {occ.subject} ({occ.id}); "
            "not retried",
            warning=True,
            now=now,
            term=term,
        )
        return core.ledger_entry(occ, DeliveryResult.REJECTED, answer.code, retry.attempts, now)

    # --- the Secret

    async def _check_secret(
        self, ch: _Channel, channel: NotificationChannel, term: int, *, force: bool = False
    ) -> core.UrlProblem | None:
        """Read the URL (when forced: something is to be sent; else at most every minute, every 5 s
        while there is a problem, and at once when the spec changed); the problem, if any."""
        generation = channel.metadata.generation
        every = SECRET_RECHECK_SECONDS if ch.url_problem is None else self._problem_recheck(ch)
        fresh = generation == ch.secret_generation and time.monotonic() - ch.secret_checked < every
        if fresh and not force:
            return ch.url_problem
        ref = channel.spec.url_secret_ref
        url, problem = None, None
        try:
            found = await self._in_thread(term, self.kube.secret_key, ch.key[0], ref.name, ref.key)
        except ApiException as e:
            if e.status != 403:
                ch.secret_checked = -1e9  # not judged: asked again on the next pass
                raise
            found, problem = (
                None,
                core.UrlProblem(
                    "SecretForbidden",
                    f"Conveyor may not read Secret {ref.name} (chart value notifications.enabled grants "
                    "get on Secrets)",
                ),
            )
        if problem is None:
            if found is None:
                problem = core.UrlProblem(
                    "SecretNotFound", f"Secret {ref.name} does not exist in {ch.key[0]}"
                )
            elif found[0].get(SECRET_LABEL) != "true":
                problem = core.UrlProblem(
                    "SecretNotLabelled",
                    f"Secret {ref.name} lacks the label {SECRET_LABEL}=true: Conveyor sends to URLs only "
                    "from Secrets labelled for it",
                )
            elif found[1] is None:
                problem = core.UrlProblem("SecretKeyMissing", f"Secret {ref.name} has no key {ref.key}")
            else:
                url = found[1].strip()
                problem = core.check_url(channel.spec.type, url, _where(channel), self.sender.allowed_hosts)
                if problem is None and url == ch.refused_url and ch.url_problem is not None:
                    problem = ch.url_problem  # the sender refused this very URL: still refused
        ch.url = url if problem is None else None
        if problem is not None and ch.url_problem is None:
            ch.problem_since = time.monotonic()
        ch.url_problem = problem
        if problem is None:
            ch.refused_url = None
        ch.secret_checked, ch.secret_generation = time.monotonic(), generation
        return problem

    @staticmethod
    def _problem_recheck(ch: _Channel) -> float:
        lasted = time.monotonic() - ch.problem_since
        if lasted < SECRET_PROBLEM_FAST_FOR_SECONDS:
            return SECRET_PROBLEM_RECHECK_SECONDS
        return SECRET_PROBLEM_SLOW_RECHECK_SECONDS

    def _secret_conditions(
        self,
        ch: _Channel,
        conditions: list[Condition],
        problem: core.UrlProblem | None,
        generation: int,
        now: datetime,
    ) -> list[Condition]:
        if problem is not None:
            return set_condition(
                conditions, "Ready", "False", problem.reason, problem.message, generation=generation, now=now
            )
        if ch.url is None:
            return conditions
        if get_condition(conditions, "Delivering") is None:
            conditions = set_condition(
                conditions,
                "Delivering",
                "Unknown",
                "Idle",
                "nothing sent yet",
                generation=generation,
                now=now,
            )
        return set_condition(
            conditions,
            "Ready",
            "True",
            "Ready",
            "the URL is readable and may be used",
            generation=generation,
            now=now,
        )

    # --- conditions, Events, metrics

    def _delivering(  # noqa: PLR0917 (private; every argument is needed)
        self,
        ch: _Channel,
        channel: NotificationChannel,
        conditions: list[Condition],
        retry: _Retry,
        generation: int,
        now: datetime,
        term: int,
    ) -> list[Condition]:
        answer = retry.answer
        words = answer.words if answer else "no answer"
        reason = "ReceiverFailing" if answer is not None and answer.code is not None else "Unreachable"
        message = f"{words} (attempt {retry.attempts}); retrying with backoff until maxDelaySeconds"
        if retry.attempts >= 3 and not ch.failing:
            ch.failing = True
            self._event(
                channel,
                "ChannelFailing",
                f"{words}, {retry.attempts} attempts in a row",
                warning=True,
                now=now,
                term=term,
            )
        return set_condition(
            conditions, "Delivering", "False", reason, message, generation=generation, now=now
        )

    def _ended_conditions(  # noqa: PLR0917 (private; every argument is needed)
        self,
        ch: _Channel,
        channel: NotificationChannel,
        conditions: list[Condition],
        entry: LedgerEntry,
        generation: int,
        term: int,
    ) -> list[Condition]:
        now = self._clock()
        if entry.result == DeliveryResult.DELIVERED:
            if ch.failing:
                ch.failing = False
                self._event(
                    channel,
                    "ChannelRecovered",
                    "the receiver accepts messages again",
                    warning=False,
                    now=now,
                    term=term,
                )
            return set_condition(
                conditions,
                "Delivering",
                "True",
                "Delivered",
                f"accepted (HTTP {entry.code})",
                generation=generation,
                now=now,
            )
        if entry.result == DeliveryResult.REJECTED:
            return set_condition(
                conditions,
                "Delivering",
                "False",
                "Rejected",
                f"the receiver refused the last message with HTTP {entry.code}; not retried on that "
                "answer: check the URL in the Secret",
                generation=generation,
                now=now,
            )
        return conditions

    def _count(self, ch: _Channel, occ: core.Occurrence, result: str) -> None:
        NOTIFICATIONS.labels(f"{ch.key[0]}/{ch.key[1]}", occ.trigger, result).inc()

    def _event(
        self,
        channel: NotificationChannel,
        reason: str,
        message: str,
        *,
        warning: bool,
        now: datetime,
        term: int,
    ) -> None:
        """An Event on the channel (on changes only, never per attempt); posted off the loop, best
        effort, fenced to the pass's term."""
        meta = channel.metadata

        def post() -> None:
            self.kube.fence.bind(term)
            announce(
                self.kube,
                namespace=meta.namespace,
                kind=KIND,
                name=meta.name,
                uid=meta.uid,
                type_="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                pipeline="",
                now=now,
            )

        self._executor.submit(post)

    # --- status

    async def _finish(
        self,
        ch: _Channel,
        term: int,
        ended: list[LedgerEntry],
        conditions: list[Condition],
        *,
        backlog: int,
        generation: int,
        since: datetime | None = None,
        horizon: datetime | None = None,
    ) -> NotificationChannel | None:
        """Write what changed (ledger, counters, conditions, backlog, since, horizon) on the version
        last seen — the ledger is written whole, so a write based on an older copy must not land;
        nothing when nothing changed. The channel as stored; None when it is gone."""
        NOTIFICATION_BACKLOG.labels(f"{ch.key[0]}/{ch.key[1]}").set(backlog)
        # Ended but not yet written (a write that failed): never due again in this process, and
        # written with the next write.
        ch.unwritten.extend(ended)
        namespace, name = ch.key
        for _ in range(3):
            channel = NotificationChannel.model_validate(ch.body)
            st = channel.status
            now = self._clock()
            recorded = {e.id for e in st.ledger}
            new = [e for e in ch.unwritten if e.id not in recorded]
            patch: dict[str, Any] = {}
            hz = st.horizon
            if new:
                ledger, hz = core.record(channel, new, now)
                patch["ledger"] = [e.wire() for e in ledger]
                delivered = [e for e in new if e.result == DeliveryResult.DELIVERED]
                if delivered:
                    patch["delivered"] = st.delivered + len(delivered)
                    patch["lastDeliveredAt"] = _stamp(now)
            if horizon is not None and (hz is None or horizon > hz):
                hz = horizon
            if hz is not None and hz != st.horizon:
                patch["horizon"] = _stamp(hz)
            if since is not None and st.since is None:
                patch["since"] = _stamp(since)
            if backlog != st.backlog:
                patch["backlog"] = backlog
            if st.observed_generation != generation:
                patch["observedGeneration"] = generation
            if not patch and _same(conditions, st.conditions):
                ch.unwritten.clear()
                return channel
            patch["conditions"] = [c.wire() for c in conditions]
            try:
                obj = await self._in_thread(
                    term,
                    self.kube.patch_custom_status,
                    PLURAL,
                    namespace,
                    name,
                    patch,
                    resource_version=ch.body.get("metadata", {}).get("resourceVersion"),
                )
            except ApiException as e:
                if e.status != 409:
                    raise
                # A spec or metadata change bumped the version: read it, and write on top of it.
                fresh = await self._in_thread(term, self.kube.get_custom, PLURAL, namespace, name)
                if fresh is None or _uid(fresh) != _uid(ch.body):
                    ch.gone = True  # deleted (perhaps re-created: that one is another channel)
                    return None
                ch.body = fresh
                continue
            if obj is None:
                ch.gone = True
                return None
            if _rv(obj) >= _rv(ch.body):
                ch.body = obj
            ch.unwritten.clear()
            return NotificationChannel.model_validate(ch.body)
        raise Conflict(f"channel {namespace}/{name} changed under three ledger writes in a row")


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _where(channel: NotificationChannel) -> str:
    ref = channel.spec.url_secret_ref
    return f"Secret {ref.name} key {ref.key}"


def _same(a: list[Condition], b: list[Condition]) -> bool:
    def key(cs: list[Condition]) -> set[tuple[str, str, str, str]]:
        return {(c.type, c.status, c.reason, c.message) for c in cs}

    return key(a) == key(b)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
