"""What the dashboard knows: Conveyor's four kinds, kept current by list+watch with the viewer's own
credentials — what their RBAC lets them list is what they see.

One thread per (kind, scope) lists, then watches (with bookmarks) until the server ends the watch,
then watches on from the last resourceVersion; a 410 Gone relists. Every change bumps `version` and
calls `on_change`, which the server turns into a push to every open page. Objects are parsed into the
API models once, when they change, so a page of 200 pipelines costs no parsing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError

from conveyor.api.approval import Approval
from conveyor.api.common import GROUP, VERSION
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.kube.client import Kube

log = logging.getLogger("conveyor.dashboard")

KINDS: dict[str, type[BaseModel]] = {
    "pipelines": Pipeline,
    "releases": Release,
    "approvals": Approval,
    "rollbacks": Rollback,
}
WATCH_SECONDS = 290  # the API server ends a watch by then; we watch on from where it stopped
# A watch on a hung API server (stopped, not refusing) would be silent for minutes: a cheap probe
# of /readyz (open to every authenticated user by default RBAC) says within seconds that it is away.
PROBE_EVERY = 5.0
# Bookmarks arrive about once a minute on a live watch: silence for two means a dead connection
# (a half-open one after an API server failover, say), and the watch is made again.
WATCH_TIMEOUT = urllib3.Timeout(connect=5.0, read=120.0)
PROBE_TIMEOUT = (2.0, 3.0)
API_SERVER = ("api-server", None)  # the errors key of "the API server does not answer"
AWAY = "the API server does not answer"


def collection(plural: str, namespace: str | None) -> str:
    """The REST path of a kind, cluster-wide (None) or in one namespace."""
    base = f"/apis/{GROUP}/{VERSION}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


@dataclass
class Scope:
    """Which namespaces the dashboard watches: every one (None), or these."""

    namespaces: list[str] | None
    why: str = ""


def choose_scope(kube: Kube, requested: list[str], fallback: str) -> Scope:
    """All namespaces when none are requested and the viewer may list Pipelines cluster-wide; else
    the requested namespaces, else the kubeconfig context's namespace."""
    if requested:
        return Scope(sorted(set(requested)), "the namespaces asked for")
    try:
        kube.request("GET", collection("pipelines", None), query={"limit": 1})
        return Scope(None, "every namespace (your RBAC allows listing Pipelines cluster-wide)")
    except ApiException as e:
        if e.status not in (401, 403):
            raise
    return Scope([fallback], f"namespace {fallback} only (your RBAC does not allow listing cluster-wide)")


@dataclass
class Store:
    """The objects, by kind then (namespace, name), each parsed once."""

    kube: Kube
    scope: Scope
    on_change: Callable[[], None] = lambda: None
    version: int = 0
    objects: dict[str, dict[tuple[str, str], Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    synced: set[tuple[str, str | None]] = field(default_factory=set)
    errors: dict[tuple[str, str | None], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """One watcher thread per kind and namespace in scope."""
        for plural in KINDS:
            scopes: list[str | None] = list(self.scope.namespaces) if self.scope.namespaces else [None]
            for ns in scopes:
                t = threading.Thread(
                    target=self._run, args=(plural, ns), name=f"watch-{plural}-{ns}", daemon=True
                )
                t.start()
                self.threads.append(t)
        t = threading.Thread(target=self._probe, name="probe-api-server", daemon=True)
        t.start()
        self.threads.append(t)

    @property
    def away(self) -> bool:
        """True while the API server does not answer (the probe, or a watch, said so)."""
        return API_SERVER in self.errors

    def _probe(self) -> None:
        while not self.stop.wait(PROBE_EVERY):
            try:
                self.kube.request("GET", "/readyz", accept="text/plain", timeout=PROBE_TIMEOUT)
                answered = True
            except ApiException as e:
                answered = bool(e.status) and e.status < 500  # it answered, if only "no"
            except ValueError:
                answered = True  # "ok" as text, not JSON: an answer
            except Exception:  # refused, reset, timed out: away
                answered = False
            if answered and self.errors.pop(API_SERVER, None) is not None:
                log.info("the API server answers again")
                self._changed()
            elif not answered:
                self._failed(*API_SERVER, AWAY)

    def close(self) -> None:
        """Stop watching (threads end within one watch read)."""
        self.stop.set()

    def wait_synced(self, timeout: float) -> bool:
        """True once every watcher has listed once (the page then shows everything it may)."""
        deadline = time.monotonic() + timeout
        want = len(KINDS) * len(self.scope.namespaces or [None])
        while time.monotonic() < deadline:
            if len(self.synced) + len(self.errors.keys() - {API_SERVER}) >= want:
                return True
            self.stop.wait(0.05)
        return False

    def all(self, plural: str) -> list[Any]:
        """Every parsed object of a kind."""
        with self.lock:
            return list(self.objects[plural].values())

    def get(self, plural: str, namespace: str, name: str) -> Any | None:
        """One parsed object, or None."""
        with self.lock:
            return self.objects[plural].get((namespace, name))

    # --- the watch loop

    def _changed(self) -> None:
        with self.lock:  # many watcher threads: a lost increment would serve a stale cached board
            self.version += 1
        try:
            self.on_change()
        except Exception:  # a closed loop at shutdown must not kill a watcher
            log.debug("on_change failed", exc_info=True)

    def _parse(self, plural: str, obj: dict[str, Any]) -> tuple[tuple[str, str], Any | None]:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        try:
            return key, KINDS[plural].model_validate(obj)
        except ValidationError:
            # An object the models cannot read (the operator marks it InvalidSpec): not shown.
            return key, None

    def _put(self, plural: str, obj: dict[str, Any]) -> None:
        key, parsed = self._parse(plural, obj)
        with self.lock:
            if parsed is None:
                self.objects[plural].pop(key, None)
            else:
                self.objects[plural][key] = parsed

    def _list(self, plural: str, ns: str | None) -> str:
        result = self.kube.request("GET", collection(plural, ns))
        fresh = dict(self._parse(plural, obj) for obj in result.get("items", []))
        with self.lock:
            # Swapped in whole: a relist never shows a page half-empty.
            kept = {k: v for k, v in self.objects[plural].items() if ns is not None and k[0] != ns}
            self.objects[plural] = kept | {k: v for k, v in fresh.items() if v is not None}
        self.synced.add((plural, ns))
        self.errors.pop((plural, ns), None)
        self._changed()
        return str(result.get("metadata", {}).get("resourceVersion", ""))

    def _run(self, plural: str, ns: str | None) -> None:
        failures = 0
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._list(plural, ns)
                rv = self._watch(plural, ns, rv)
                failures = 0
            except ApiException as e:
                if e.status == 410:
                    rv = None  # too old: list again
                    continue
                failures += 1
                if e.status in (401, 403):
                    self._failed(plural, ns, f"your RBAC does not let you list {plural} ({e.status})")
                else:
                    self._failed(plural, ns, f"{e.status} {e.reason}")
            except Exception:  # connection refused, reset, timeout: the API server is away
                failures += 1
                self._failed(plural, ns, AWAY)
                rv = None
            self.stop.wait(min(0.5 * 2**failures, 10.0) if failures else 0)

    def _failed(self, plural: str, ns: str | None, error: str) -> None:
        # Said once per new error, not once per retry (a forbidden kind stays forbidden); open pages
        # are told (a change), so none of them goes on saying "live" while the API server is away.
        if self.errors.get((plural, ns)) != error:
            log.warning("watching %s in %s: %s (retrying)", plural, ns or "all namespaces", error)
            self.errors[(plural, ns)] = error
            self._changed()

    def _watch(self, plural: str, ns: str | None, rv: str) -> str:
        """Follow changes from `rv` until the server ends the watch; the last resourceVersion seen."""
        api = self.kube.api
        query = {
            "watch": "true",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SECONDS,
        }
        headers: dict[str, Any] = {"Accept": "application/json", "User-Agent": api.user_agent}
        queries = list(query.items())
        path = collection(plural, ns)
        api.update_params_for_auth(headers, queries, ["BearerToken"], path, "GET", None)
        url = api.configuration.host + path + f"?{urlencode(queries)}"
        response = api.rest_client.pool_manager.request(
            "GET", url, headers=headers, preload_content=False, timeout=WATCH_TIMEOUT
        )
        try:
            if response.status >= 400:
                raise ApiException(status=response.status, reason=response.reason)
            # Watching again: a passing error (a 429, a 503) is over, without waiting for a relist.
            if self.errors.pop((plural, ns), None) is not None:
                self._changed()
            buffer = b""
            for chunk in response.stream(65536):
                if self.stop.is_set():
                    return rv
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        rv = self._event(plural, json.loads(line)) or rv
        finally:
            response.release_conn()
        return rv

    def _event(self, plural: str, event: dict[str, Any]) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            raise ApiException(status=code or 500, reason=obj.get("message", "watch error"))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(rv) if rv else None
        if kind == "DELETED":
            meta = obj.get("metadata") or {}
            with self.lock:
                self.objects[plural].pop((meta.get("namespace", ""), meta.get("name", "")), None)
        else:
            self._put(plural, obj)
        self._changed()
        return str(rv) if rv else None
