"""List, then watch, one kind in one namespace of one cluster, in a thread of its own.

kopf watches the control cluster only (one credentials vault per operator: see
docs/proposals/multi-cluster.md), so the Deployments and Jobs of stages in other clusters — and the
cluster Secrets themselves — are followed here. A Reflector keeps a store of the objects (name ->
object, stripped like the cache's) and says whether it can be trusted:

- `listed` only after a LIST succeeded, and the store is *replaced* by every LIST (after a "410 Gone"
  or a reconnect), so an object deleted while the watch was down is never kept as a ghost;
- `error` is the last failure (connection refused, a timeout, 401, 403, a TLS failure) until a LIST
  succeeds again. Retries back off 1, 2, 4 s (capped), so a cluster that comes back is seen within
  a few seconds and a dead one costs one connection attempt per few seconds.

Threads, not kopf's event loop: the official client blocks, and a remote cluster's outage must not
hold anything but its own reflectors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client.exceptions import ApiException

from conveyor.kube.client import Kube

log = logging.getLogger("conveyor.reflector")

WATCH_SECONDS = 120  # the API server ends each watch after about this long; the Reflector resumes it
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
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                self._watch(version)
            except Gone:
                continue
            except Exception as e:  # every failure is a state, never the end of the loop
                if self._stop.is_set():
                    return
                failures += 1
                first = self.error is None or type(self.error) is not type(e)
                self.error = e
                if first:  # a new state: said once, and the pipelines concerned look again
                    log.warning("%s: %s", self.name, _describe(e))
                    self._changed()
                self._settled.set()
                delay = min(BACKOFF_CAP_SECONDS, 0.5 * 2**failures) * random.uniform(0.8, 1.0)  # noqa: S311
                self._stop.wait(delay)

    def _list(self) -> str:
        result = self.kube.request(
            "GET",
            self.path,
            query={"labelSelector": self.label_selector},
            timeout=(CONNECT_SECONDS, 30.0),
        )
        fresh = {(o.get("metadata") or {}).get("name", ""): self._strip(o) for o in result.get("items") or []}
        with self._lock:
            old, self._store = self._store, fresh
        was = (self.listed, self.error)
        self.listed, self.error = True, None
        changed = was != (True, None)
        if changed:
            log.info("%s: listed (%d objects)", self.name, len(fresh))
        # What the LIST replaced: objects gone while the watch was down are reported DELETED, the
        # rest as they are now (a pass may be waiting for any of them).
        for name, obj in old.items():
            if name not in fresh:
                self._emit("DELETED", obj)
        for obj in fresh.values():
            self._emit("MODIFIED", obj)
        if changed:
            self._changed()
        self._settled.set()
        return str((result.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> None:
        for kind, obj in self._events(version):
            name = (obj.get("metadata") or {}).get("name", "")
            if kind == "BOOKMARK":
                continue
            stripped = self._strip(obj)
            with self._lock:
                if kind == "DELETED":
                    self._store.pop(name, None)
                else:
                    self._store[name] = stripped
            self._emit(kind, stripped)

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
            timeout=urllib3.Timeout(connect=CONNECT_SECONDS, read=WATCH_SECONDS + 15),
            retries=False,
        )
        self._response = response
        try:
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
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()

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


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status}: {str(error.reason)[:300]}"
    return f"{type(error).__name__}: {str(error)[:300]}"
