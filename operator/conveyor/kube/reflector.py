"""List, then watch, one kind in one namespace of one cluster, in a thread of its own.

kopf watches the control cluster only (one credentials vault per operator: see
docs/proposals/multi-cluster.md), so the Deployments and Jobs of stages in other clusters — and the
cluster Secrets themselves — are followed here. A Reflector keeps a store of the objects (name ->
object, stripped like the cache's) and says whether it can be trusted:

- `listed` only after a LIST succeeded, and the store is *replaced* by every LIST (after a "410 Gone"
  or a broken watch), so an object deleted while the watch was down is never kept as a ghost;
- `error` is the last failed LIST (connection refused, a timeout, 401, 403, a TLS failure) until a
  LIST succeeds again. A watch the server ends is resumed from the last version seen; one that
  breaks is followed by a LIST, which alone judges whether the cluster can be seen. Retries back off
  1, 2, 4 s (capped), so a cluster that comes back is seen within a few seconds and a dead one costs
  one connection attempt per few seconds.

Threads, not kopf's event loop: the official client blocks, and a remote cluster's outage must not
hold anything but its own reflectors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client.exceptions import ApiException

from conveyor.kube.client import Kube
from conveyor.kube.remote import redact

log = logging.getLogger("conveyor.reflector")

# The API server ends each watch after this long and the Reflector resumes it from its version: an
# idle watch gets no bytes, so a silent network cut is noticed only when a read times out — kept
# short (WATCH_SECONDS + READ_SLACK_SECONDS), at one cheap request per kind and namespace per period.
WATCH_SECONDS = 25
READ_SLACK_SECONDS = 10
STEADY_SECONDS = 15.0  # a watch that lasted this long was no failure: the backoff starts over
QUICK_SECONDS = 1.0  # a watch ended by the server sooner than this is treated as a failure
BACKOFF_CAP_SECONDS = 4.0
CONNECT_SECONDS = 3.0

Obj = dict[str, Any]
OnEvent = Callable[[str, Obj], None]  # (ADDED | MODIFIED | DELETED, object)
OnState = Callable[[], None]


class Gone(Exception):
    """The watch's resourceVersion is too old ("410 Gone"): list again."""


class Reflector:
    """One LIST+WATCH loop; see the module docstring."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        *,
        name: str,
        label_selector: str | None = None,
        strip: Callable[[Mapping[str, Any]], Obj] = dict,
        on_event: OnEvent | None = None,
        on_state: OnState | None = None,
    ) -> None:
        self.kube = kube
        self.path = path
        self.name = name  # for logs: "prod-b deployments in shop"
        self.label_selector = label_selector
        self._strip = strip
        self._on_event = on_event
        self._on_state = on_state
        self._store: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self.listed = False
        self.error: BaseException | None = None
        # When a LIST last succeeded after a failed one (None: none failed): the cluster's own
        # controllers were cut off too, and deadlines are counted again from here (core/steps.py).
        self.seen_again_at: datetime | None = None
        self._settled = threading.Event()  # set once the first LIST succeeded or failed
        self._thread = threading.Thread(target=self._run, name=f"reflector {name}", daemon=True)

    def start(self) -> Reflector:
        """Start the loop (returns at once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the loop: an open watch is shut at once; the thread ends on its own."""
        self._stop.set()
        self.interrupt()

    def interrupt(self) -> None:
        """End the current watch now: the loop lists again (someone saw the cluster fail)."""
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()

    def settle(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until the first LIST has succeeded or failed."""
        return self._settled.wait(timeout)

    @property
    def stopped(self) -> bool:
        """True once `stop` was called."""
        return self._stop.is_set()

    def items(self) -> list[Obj]:
        """The objects as last seen (a copy)."""
        with self._lock:
            return list(self._store.values())

    def get(self, name: str) -> Obj | None:
        """One object by name, or None."""
        with self._lock:
            return self._store.get(name)

    # --- the loop

    def _run(self) -> None:
        failures = 0  # in a row; reset once a watch has lasted STEADY_SECONDS
        version = ""  # "": list (again) before watching
        while not self._stop.is_set():
            listing = not version
            try:
                if listing:
                    version = self._list()
                    if self._stop.is_set():
                        return
                started = time.monotonic()
                version = self._watch(version)  # ended by the server: resumed from where it was
                lasted = time.monotonic() - started
                if lasted >= STEADY_SECONDS:
                    failures = 0
                    continue
                if lasted >= QUICK_SECONDS:
                    continue
                # Ended at once without an error (a proxy closing every response): not resumed in a
                # tight loop — it backs off like a failure.
            except Gone:
                version = ""  # too old: list again (what changed meanwhile is found by comparing)
            except Exception as e:  # every failure is a state, never the end of the loop
                if self._stop.is_set():
                    return
                version = ""
                if listing:
                    # Only a failed LIST says the cluster cannot be seen: a watch that broke (an
                    # idle proxy, a restarted server) lists again first, and only that LIST judges.
                    first = self.error is None or type(self.error) is not type(e)
                    self.error = e
                    if first:  # a new state: said once, and the pipelines concerned look again
                        log.warning("%s: %s", self.name, _describe(e))
                        self._changed()
                    self._settled.set()
                elif failures == 0:
                    log.info("%s: watch ended (%s); listing again", self.name, _describe(e))
            failures += 1
            if failures > 1:
                delay = min(BACKOFF_CAP_SECONDS, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.0)  # noqa: S311
                self._stop.wait(delay)

    def _list(self) -> str:
        result = self.kube.request(
            "GET",
            self.path,
            query={"labelSelector": self.label_selector},
            timeout=(CONNECT_SECONDS, 15.0),
        )
        fresh = {(o.get("metadata") or {}).get("name", ""): self._strip(o) for o in result.get("items") or []}
        with self._lock:
            old, self._store = self._store, fresh
        was = (self.listed, self.error)
        if was[1] is not None:
            self.seen_again_at = datetime.now(UTC)
        self.listed, self.error = True, None
        changed = was != (True, None)
        if changed:
            log.info("%s: listed (%d objects)", self.name, len(fresh))
        # What the LIST replaced: objects gone meanwhile are reported DELETED, and those that
        # changed (or are new) as MODIFIED — not the rest: a relisting wakes only whom it concerns.
        for name, obj in old.items():
            if name not in fresh:
                self._emit("DELETED", obj)
        for name, obj in fresh.items():
            if _version(old.get(name)) != _version(obj) or name not in old:
                self._emit("MODIFIED", obj)
        if changed:
            self._changed()
        self._settled.set()
        return str((result.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Watch from `version` until the server ends the watch; the last version seen."""
        for kind, obj in self._events(version):
            version = _version(obj) or version
            if kind == "BOOKMARK":
                continue
            name = (obj.get("metadata") or {}).get("name", "")
            stripped = self._strip(obj)
            with self._lock:
                if kind == "DELETED":
                    self._store.pop(name, None)
                else:
                    self._store[name] = stripped
            self._emit(kind, stripped)
        return version

    def _events(self, version: str) -> Iterator[tuple[str, Obj]]:
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SECONDS,
            "labelSelector": self.label_selector,
        }
        queries = [(k, v) for k, v in query.items() if v is not None]
        headers: dict[str, Any] = {"Accept": "application/json", "User-Agent": self.kube.api.user_agent}
        self.kube.api.update_params_for_auth(headers, queries, ["BearerToken"], self.path, "GET", None)
        url = self.kube.api.configuration.host + self.path + f"?{urlencode(queries)}"
        response = self.kube.api.rest_client.pool_manager.request(
            "GET",
            url,
            headers=headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=CONNECT_SECONDS, read=WATCH_SECONDS + READ_SLACK_SECONDS),
            retries=False,
        )
        with self._lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            if response.status >= 400:
                body = response.read().decode(errors="replace")
                if response.status == 410:
                    raise Gone()
                raise ApiException(status=response.status, reason=body[:500])
            buffer = b""
            for chunk in response.stream(65536):
                if self._stop.is_set():
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise Gone()
                        raise ApiException(status=status.get("code") or 500, reason=status.get("message"))
                    yield str(event.get("type") or ""), event.get("object") or {}
        finally:
            with self._lock:
                self._response = None
            # Closed, not returned to the pool: a shutdown() from interrupt() may race with the
            # end of the stream, and must never reach a connection a pass has since taken.
            with contextlib.suppress(Exception):
                response.close()

    def _emit(self, kind: str, obj: Obj) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, obj)
        except Exception:
            log.warning("%s: handling a %s event failed", self.name, kind, exc_info=True)

    def _changed(self) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state()
        except Exception:
            log.warning("%s: handling a state change failed", self.name, exc_info=True)


def _version(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _describe(error: BaseException) -> str:
    """The error for a log line: never what follows "Bearer", never the text of an unknown error."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status}: {redact(str(error.reason))[:300]}"
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return f"{type(error).__name__}: {redact(str(error))[:300]}"
    return type(error).__name__
