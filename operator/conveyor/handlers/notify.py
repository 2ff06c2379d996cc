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
from conveyor.handlers.cache import strip
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
SECRET_PROBLEM_RECHECK_SECONDS = 5.0
# Time-based ends (maxDelaySeconds passing) need no event: each channel looks at least this often.
IDLE_LOOK_SECONDS = 30.0
ERROR_BACKOFF_SECONDS = 5.0

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
class _Seen:
    """One object as last watched, parsed once per version."""

    body: Obj
    model: Any = None
    occurrences: list[core.Occurrence] | None = None


class Objects:
    """The Releases, Rollbacks and Pipelines the notifier knows, per namespace (the watch's copies)."""

    def __init__(self) -> None:
        self._by_ns: dict[str, dict[tuple[str, str], _Seen]] = {}

    def put(self, plural: str, body: Obj) -> str:
        """Keep the newest copy of an object; its namespace."""
        meta = body.get("metadata") or {}
        ns = meta.get("namespace") or ""
        self._by_ns.setdefault(ns, {})[(plural, meta.get("name") or "")] = _Seen(body)
        return str(ns)

    def remove(self, plural: str, namespace: str, name: str) -> None:
        """Forget a deleted object (what it told and was not sent yet is not sent)."""
        self._by_ns.get(namespace, {}).pop((plural, name), None)

    def _parsed(self, plural: str, seen: _Seen) -> Any:
        if seen.model is None:
            try:
                seen.model = MODELS[plural].model_validate(seen.body)
            except ValidationError:
                seen.model = False  # unreadable: it tells nothing (its pipeline's pass reports it)
            seen.occurrences = OCCURRENCES[plural](seen.model) if seen.model else []
        return seen.model or None

    def model(self, plural: str, namespace: str, name: str) -> Any:
        """The parsed object, or None."""
        seen = self._by_ns.get(namespace, {}).get((plural, name))
        return self._parsed(plural, seen) if seen is not None else None

    def occurrences(self, namespace: str) -> list[core.Occurrence]:
        """Everything worth telling in the namespace."""
        out: list[core.Occurrence] = []
        for (plural, _), seen in list(self._by_ns.get(namespace, {}).items()):
            self._parsed(plural, seen)
            out.extend(seen.occurrences or [])
        return out

    def labels(self, namespace: str) -> dict[str, dict[str, str]]:
        """Pipeline name -> its labels."""
        return {
            name: dict(((seen.body.get("metadata") or {}).get("labels")) or {})
            for (plural, name), seen in list(self._by_ns.get(namespace, {}).items())
            if plural == "pipelines"
        }


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
    url: str | None = None
    url_problem: core.UrlProblem | None = None
    secret_checked: float = -1e9  # monotonic
    secret_generation: int = -1
    last_sent: float = -1e9
    failing: bool = False
    unwritten: list[LedgerEntry] = field(default_factory=list)
    gone: bool = False  # a write found it deleted (its DELETED event may never come: a relist)


class Notifier:
    """Every channel's task, and the objects they tell about."""

    def __init__(
        self,
        kube: Kube,
        executor: ThreadPoolExecutor,
        sender: Sender,
        *,
        gate: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.sender = sender
        self.objects = Objects()
        self._executor = executor
        self._gate = gate
        self._clock = clock
        self._channels: dict[Key, _Channel] = {}
        self._stopping = False

    # --- fed by the watches (operator.py)

    def observe(self, plural: str, event_type: str | None, body: Obj) -> None:
        """A Release, Rollback or Pipeline changed (status included): channels of its namespace look."""
        meta = body.get("metadata") or {}
        ns = str(meta.get("namespace") or "")
        if event_type == "DELETED":
            self.objects.remove(plural, ns, str(meta.get("name") or ""))
            return
        self.objects.put(plural, strip(body))
        for key, ch in self._channels.items():
            if key[0] == ns:
                ch.wake.set()

    def channel_event(self, event_type: str | None, body: Obj) -> None:
        """A NotificationChannel appeared, changed or went away."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        ch = self._channels.get(key)
        if event_type == "DELETED":
            if ch is not None and ch.body.get("metadata", {}).get("uid") == meta.get("uid"):
                self._forget(key)
            return
        if ch is not None and ch.body.get("metadata", {}).get("uid") != meta.get("uid"):
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

    async def stop(self) -> None:
        """Cancel every channel's task and close the connection pool (operator shutdown)."""
        self._stopping = True
        tasks = [ch.task for ch in self._channels.values() if ch.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sender.close()

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
                # Only the type: nothing that held the URL may reach a log line (the sender never
                # raises, but a message's text is not worth the risk).
                log.warning("channel %s/%s: pass failed: %s", *ch.key, type(e).__name__)
                delay = ERROR_BACKOFF_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ch.wake.wait(), timeout=max(0.05, min(delay, IDLE_LOOK_SECONDS)))

    async def _in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            self.kube.fence.bind()
            return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def _pass(self, ch: _Channel) -> float:
        """Send what is due, in order, until done or a message must wait; the seconds until the next
        look is needed."""
        namespace = ch.key[0]
        channel = NotificationChannel.model_validate(ch.body)
        now = self._clock()
        generation = int(ch.body.get("metadata", {}).get("generation") or 0)
        conditions = list(channel.status.conditions)
        if channel.status.since is None:
            # First seen: from now on. Nothing that happened before is ever sent (a channel created
            # for an old namespace does not replay its history).
            conditions = self._secret_conditions(
                ch, conditions, await self._check_secret(ch, channel), generation, now
            )
            await self._write(ch, {"since": _stamp(now), "observedGeneration": generation}, conditions)
            return 0.0
        if channel.spec.suspend:
            conditions = set_condition(
                conditions,
                "Ready",
                "False",
                "Suspended",
                "spec.suspend is true: nothing is sent",
                generation=generation,
                now=now,
            )
            await self._finish(ch, channel, [], conditions, backlog=0, generation=generation)
            return IDLE_LOOK_SECONDS
        done = {e.id for e in channel.status.ledger} | {e.id for e in ch.unwritten}
        plan = core.due(
            channel, self.objects.occurrences(namespace), self.objects.labels(namespace), done, now
        )
        ended: list[LedgerEntry] = []
        for occ in plan.expire:
            gave_up = ch.retries.pop(occ.id, _Retry())
            code = gave_up.answer.code if gave_up.answer else None
            ended.append(core.ledger_entry(occ, DeliveryResult.EXPIRED, code, gave_up.attempts, now))
            self._count(ch, occ, "expired")
        if plan.expire:
            self._event(
                channel,
                "NotificationExpired",
                f"{len(plan.expire)} message(s) not delivered within {channel.spec.max_delay_seconds}s "
                f"were given up (the first: {plan.expire[0].trigger} for {plan.expire[0].subject})",
                warning=True,
                now=now,
            )
        problem = (
            await self._check_secret(ch, channel)
            if plan.send or generation != ch.secret_generation or ch.url_problem is not None
            else ch.url_problem
        )
        conditions = self._secret_conditions(ch, conditions, problem, generation, now)
        pending = list(plan.send)
        wait = IDLE_LOOK_SECONDS
        if problem is None and ch.url is not None:
            while pending:
                occ = pending[0]
                retry = ch.retries.get(occ.id)
                mono = time.monotonic()
                if retry is not None and retry.next_at > mono:
                    wait = retry.next_at - mono
                    break
                pace = ch.last_sent + core.PACE_SECONDS[channel.spec.type] - mono
                if pace > 0:
                    await asyncio.sleep(pace)  # pacing a burst to the receiver's rate, not synchronisation
                result = await self._send_one(ch, channel, occ)
                if result is None:  # to be retried: it holds the ones after it
                    wait = ch.retries[occ.id].next_at - time.monotonic()
                    conditions = self._delivering(
                        ch, channel, conditions, ch.retries[occ.id], generation, now
                    )
                    break
                pending.pop(0)
                ended.append(result)
                conditions = self._ended_conditions(ch, channel, conditions, result, generation)
                # Recorded before the next send: each message that ends costs one status write.
                written = await self._finish(
                    ch, channel, ended, conditions, backlog=len(pending), generation=generation
                )
                if written is None:
                    return IDLE_LOOK_SECONDS
                channel, conditions, ended = written, list(written.status.conditions), []
        elif ch.url_problem is not None:
            wait = SECRET_PROBLEM_RECHECK_SECONDS
        await self._finish(ch, channel, ended, conditions, backlog=len(pending), generation=generation)
        return wait

    async def _send_one(
        self, ch: _Channel, channel: NotificationChannel, occ: core.Occurrence
    ) -> LedgerEntry | None:
        """One attempt at one message: its ledger entry when it ended (delivered, rejected, skipped),
        None when it is to be retried."""
        namespace = ch.key[0]
        now = self._clock()
        release = self.objects.model("releases", namespace, occ.name) if occ.kind == "releases" else None
        if core.obsolete(occ, release):
            self._count(ch, occ, "skipped")
            return core.ledger_entry(occ, DeliveryResult.SKIPPED, None, 0, now)
        message = core.notification(
            occ,
            namespace=namespace,
            release=release,
            rollback=self.objects.model("rollbacks", namespace, occ.name)
            if occ.kind == "rollbacks"
            else None,
            pipeline=self.objects.model("pipelines", namespace, occ.pipeline),
            dashboard_url=channel.spec.dashboard_url,
        )
        data = render_body(channel.spec.type, message)
        retry = ch.retries.setdefault(occ.id, _Retry())
        self.kube.fence.check("send a notification")
        assert ch.url is not None
        answer = await self.sender.post(
            ch.url,
            data,
            {"Idempotency-Key": occ.id, "webhook-id": occ.id, "X-Conveyor-Trigger": occ.trigger},
        )
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
            return None
        ch.retries.pop(occ.id, None)
        faults.reached("after-notification-send")
        if outcome == core.Outcome.DELIVERED:
            self._count(ch, occ, "delivered")
            NOTIFICATION_LATENCY.labels(channel.spec.type).observe(max(0.0, (now - occ.at).total_seconds()))
            return core.ledger_entry(occ, DeliveryResult.DELIVERED, answer.code, retry.attempts, now)
        self._count(ch, occ, "rejected")
        self._event(
            channel,
            "NotificationRejected",
            f"the receiver answered {answer.words} to {occ.trigger} for {occ.subject} ({occ.id}); "
            "not retried",
            warning=True,
            now=now,
        )
        return core.ledger_entry(occ, DeliveryResult.REJECTED, answer.code, retry.attempts, now)

    # --- the Secret

    async def _check_secret(self, ch: _Channel, channel: NotificationChannel) -> core.UrlProblem | None:
        """Read the URL (at most once a minute unless the spec changed); the problem, if any."""
        generation = int(ch.body.get("metadata", {}).get("generation") or 0)
        if (
            generation == ch.secret_generation
            and time.monotonic() - ch.secret_checked < SECRET_RECHECK_SECONDS
        ):
            return ch.url_problem
        ref = channel.spec.url_secret_ref
        where = f"Secret {ref.name} key {ref.key}"
        ch.url, ch.url_problem = None, None
        try:
            found = await self._in_thread(self.kube.secret_key, ch.key[0], ref.name, ref.key)
        except ApiException as e:
            if e.status != 403:
                raise
            found, ch.url_problem = (
                None,
                core.UrlProblem(
                    "SecretForbidden",
                    f"Conveyor may not read Secret {ref.name} (chart value notifications.enabled grants "
                    "get on Secrets)",
                ),
            )
        if ch.url_problem is None:
            if found is None:
                ch.url_problem = core.UrlProblem(
                    "SecretNotFound", f"Secret {ref.name} does not exist in {ch.key[0]}"
                )
            elif found[0].get(SECRET_LABEL) != "true":
                ch.url_problem = core.UrlProblem(
                    "SecretNotLabelled",
                    f"Secret {ref.name} lacks the label {SECRET_LABEL}=true: Conveyor sends to URLs only "
                    "from Secrets labelled for it",
                )
            elif found[1] is None:
                ch.url_problem = core.UrlProblem(
                    "SecretKeyMissing", f"Secret {ref.name} has no key {ref.key}"
                )
            else:
                url = found[1].strip()
                ch.url_problem = core.check_url(channel.spec.type, url, where, self.sender.allowed_hosts)
                if ch.url_problem is None and await self.sender.resolves_private(url):
                    ch.url_problem = core.UrlProblem(
                        "HostNotAllowed",
                        f"{where}: its host resolves to a private or loopback address; list it with "
                        "--notify-allowed-host (chart: notifications.allowedHosts) if that is intended",
                    )
                if ch.url_problem is None:
                    ch.url = url
        ch.secret_checked, ch.secret_generation = time.monotonic(), generation
        return ch.url_problem

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
            )
        return set_condition(
            conditions, "Delivering", "False", reason, message, generation=generation, now=now
        )

    def _ended_conditions(
        self,
        ch: _Channel,
        channel: NotificationChannel,
        conditions: list[Condition],
        entry: LedgerEntry,
        generation: int,
    ) -> list[Condition]:
        now = self._clock()
        if entry.result == DeliveryResult.DELIVERED:
            if ch.failing:
                ch.failing = False
                self._event(
                    channel, "ChannelRecovered", "the receiver accepts messages again", warning=False, now=now
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
        self, channel: NotificationChannel, reason: str, message: str, *, warning: bool, now: datetime
    ) -> None:
        """An Event on the channel (on changes only, never per attempt); posted off the loop, best effort."""
        meta = channel.metadata
        self._executor.submit(
            announce,
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

    # --- status

    async def _finish(
        self,
        ch: _Channel,
        channel: NotificationChannel,
        ended: list[LedgerEntry],
        conditions: list[Condition],
        *,
        backlog: int,
        generation: int,
    ) -> NotificationChannel | None:
        """Write what changed (ledger, counters, conditions, backlog): nothing when nothing did."""
        NOTIFICATION_BACKLOG.labels(f"{ch.key[0]}/{ch.key[1]}").set(backlog)
        st = channel.status
        patch: dict[str, Any] = {}
        now = self._clock()
        # Ended but not yet written (a write that failed): kept, never due again in this process, and
        # written with the next write.
        ch.unwritten.extend(ended)
        ended = [e for e in ch.unwritten if e.id not in {x.id for x in st.ledger}]
        if ended:
            ledger, horizon = core.record(channel, ended, now)
            patch["ledger"] = [e.wire() for e in ledger]
            if horizon is not None:
                patch["horizon"] = _stamp(horizon)
            delivered = [e for e in ended if e.result == DeliveryResult.DELIVERED]
            if delivered:
                patch["delivered"] = st.delivered + len(delivered)
                patch["lastDeliveredAt"] = _stamp(now)
        if backlog != st.backlog:
            patch["backlog"] = backlog
        if st.observed_generation != generation:
            patch["observedGeneration"] = generation
        if not patch and _same(conditions, st.conditions):
            ch.unwritten.clear()
            return channel
        written = await self._write(ch, patch, conditions)
        ch.unwritten.clear()  # written, or the channel is gone
        return written

    async def _write(
        self, ch: _Channel, patch: dict[str, Any], conditions: list[Condition]
    ) -> NotificationChannel | None:
        """Merge-patch the channel's status on the version last seen (the ledger is written whole:
        a write based on an older copy must not land); None when the channel is gone."""
        namespace, name = ch.key
        patch = {**patch, "conditions": [c.wire() for c in conditions]}
        for _ in range(3):
            try:
                obj = await self._in_thread(
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
                # Not expected (nothing else writes a channel's status) but a spec change bumps the
                # version too: read it, and write what ended on top of what is there now.
                fresh = await self._in_thread(self.kube.get_custom, PLURAL, namespace, name)
                uid = ch.body.get("metadata", {}).get("uid")
                if fresh is None or fresh.get("metadata", {}).get("uid") != uid:
                    ch.gone = True  # deleted (perhaps re-created: that one is another channel)
                    return None
                ch.body = fresh
                if "ledger" in patch:
                    merged = {e["id"]: e for e in (fresh.get("status") or {}).get("ledger") or []}
                    merged.update({e["id"]: e for e in patch["ledger"]})
                    patch["ledger"] = sorted(merged.values(), key=lambda e: e["at"])
                continue
            if obj is None:
                ch.gone = True
                return None
            if _rv(obj) >= _rv(ch.body):
                ch.body = obj
            return NotificationChannel.model_validate(ch.body)
        return None


def _same(a: list[Condition], b: list[Condition]) -> bool:
    def key(cs: list[Condition]) -> set[tuple[str, str, str, str]]:
        return {(c.type, c.status, c.reason, c.message) for c in cs}

    return key(a) == key(b)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
