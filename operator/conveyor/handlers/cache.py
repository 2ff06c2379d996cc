"""Watch-fed caches: what a reconcile pass reads, kept current by one watch per kind.

kopf already runs one watch per kind Conveyor routes events from (Pipelines, Releases, Approvals,
Rollbacks, Deployments, Conveyor's Jobs). The `@kopf.index` functions below keep each object —
stripped of what no decision reads — in kopf's in-memory indexes, keyed the way passes look them
up. kopf fills every index from its initial listing before it calls any other handler, so no pipeline
worker (they start from `on.event`) ever passes over a half-listed cache.

Passes read the cache and write to the API server. A watch delivers Conveyor's own writes a little
later, so the cache alone could show a pass data older than the last pass's writes — and the pass
would repeat them (the same Event twice, a Job created again). `Overlay` closes that gap: every
object a write returns is kept until the watch has delivered that version (or a newer one: compared
by resourceVersion), and every object Conveyor deleted is hidden until the watch says it is gone.

Reads come from pass threads while kopf updates the indexes (its index functions run in its
thread pool, the stores change on its event loop). Each read copies what it needs at once (one dict
lookup, one `list()`), retried if a store changed mid-copy; nothing read is ever mutated (index
values are fresh dicts per event).

kopf never reports an object deleted while its watch was down (after "410 Gone" it lists again and
keeps what it had): each pipeline's periodic resync therefore reads the API server itself, and hides
from the cache whatever it found gone (`Overlay.deleted`).

Deployments and Jobs are keyed with their cluster (core/clusters.py) as well as their namespace, in
the indexes and in the overlay, so objects of the same namespace and name in two clusters never
collide. kopf watches only the control cluster (`CONTROL_CLUSTER`), which also holds every
Conveyor object; other clusters' Deployments and Jobs come from their own watches
(handlers/clusters.py, `Cache.remote`), through the same overlay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import kopf

from conveyor.api.common import GROUP, VERSION
from conveyor.core.clusters import CONTROL_CLUSTER
from conveyor.core.jobs import MANAGED_BY, PIPELINE_LABEL, PIPELINE_NAMESPACE_ANNOTATION

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
OVERLAY_SECONDS = 300.0  # an own write the watch never confirmed is forgotten after this long

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]


def strip(obj: Mapping[str, Any], *, template: bool = True) -> Obj:
    """A copy without what no decision reads: managedFields, kubectl's last-applied copy of the
    object, and (template=False: Jobs) the pod template. Keeps the memory per object small."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out["metadata"] = meta
    if not template and isinstance(out.get("spec"), Mapping):
        out["spec"] = {k: v for k, v in out["spec"].items() if k != "template"}
    return out


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def resource_version(obj: Mapping[str, Any] | None) -> int | None:
    """The resourceVersion as a number (etcd's revision, which the API server itself compares), or
    None when absent or not a number (then the watch's copy is trusted over Conveyor's own)."""
    if obj is None:
        return None
    try:
        return int(_meta(obj).get("resourceVersion") or "")
    except ValueError:
        return None


@dataclass
class _Entry:
    uid: str  # "": whatever object is under this name
    version: int | None
    obj: Obj | None  # None: Conveyor deleted it (or found it gone)
    at: float


class Overlay:
    """Conveyor's own writes the watches have not delivered yet (see the module docstring).

    An entry ends when the watch's copy is at least as new (same uid, resourceVersion >= ours), when
    the watch reports the object deleted (`gone`, from the DELETED event), or after OVERLAY_SECONDS —
    except a deletion recorded with its uid, which hides the object for as long as the cache still
    holds that uid (a watch restarted after "410 Gone" never reports what was deleted in the gap: a
    live resync that finds an object gone records it here, and it stays hidden). A deletion by name
    alone ends with the time limit: its DELETED event may have come first, and what the cache holds
    under the name may since be another object.

    Entries are keyed (cluster, kind, namespace, name); `cluster` defaults to the control cluster,
    where Conveyor's own objects always are."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[tuple[str, str, str, str], _Entry] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def wrote(self, kind: str, obj: Mapping[str, Any] | None, *, cluster: str = CONTROL_CLUSTER) -> None:
        """Conveyor wrote this object in `cluster`; `obj` is the API server's answer (None: nothing
        was written)."""
        if not obj:
            return
        meta = _meta(obj)
        key = (cluster, kind, meta.get("namespace") or "", meta.get("name") or "")
        entry = _Entry(meta.get("uid") or "", resource_version(obj), strip(obj), self._clock())
        with self._lock:
            old = self._entries.get(key)
            if old is None or old.uid != entry.uid or (old.version or 0) <= (entry.version or 0):
                self._entries[key] = entry

    def deleted(
        self, kind: str, namespace: str, name: str, uid: str = "", *, cluster: str = CONTROL_CLUSTER
    ) -> None:
        """Conveyor deleted this object, or found it gone (uid "": whatever is under this name):
        hide it until the watch says it is gone."""
        with self._lock:
            self._entries[(cluster, kind, namespace, name)] = _Entry(uid, None, None, self._clock())

    def gone(self, kind: str, namespace: str, name: str, uid: str, *, cluster: str = CONTROL_CLUSTER) -> None:
        """The watch reported the object deleted: an entry for it (not for a newer object of the
        same name) has done its job."""
        key = (cluster, kind, namespace, name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.uid in ("", uid):
                del self._entries[key]

    def resolve(
        self, kind: str, namespace: str, name: str, cached: Obj | None, *, cluster: str = CONTROL_CLUSTER
    ) -> Obj | None:
        """The newer of the watch's copy and Conveyor's own last write (None: absent)."""
        key = (cluster, kind, namespace, name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return cached
            winner, done = self._judge(entry, cached)
            if done:  # the watch caught up (or the entry is too old to trust): it has done its job
                del self._entries[key]
            return winner

    def _judge(self, entry: _Entry, cached: Obj | None) -> tuple[Obj | None, bool]:
        """(what a pass should see, whether the entry is done)."""
        cached_uid = (_meta(cached).get("uid") or "") if cached is not None else None
        if entry.obj is None:  # a deletion
            if cached is None or (entry.uid and cached_uid != entry.uid):
                return cached, True  # gone, or a new object under the same name
            if not entry.uid and self._clock() - entry.at > OVERLAY_SECONDS:
                # By name only: the DELETED event may have come before the entry, and what the
                # cache holds now may be an object re-created since. Trust the watch, in time.
                return cached, True
            return None, False
        expired = self._clock() - entry.at > OVERLAY_SECONDS
        if cached is None:
            # Not delivered yet (a DELETED event would have ended the entry).
            return (None, True) if expired else (entry.obj, False)
        cached_version = resource_version(cached)
        if expired or entry.version is None or cached_version is None or cached_version >= entry.version:
            return cached, True
        return entry.obj, False

    def created(
        self,
        kind: str,
        namespace: str,
        known: Iterable[str],
        match: Predicate,
        *,
        cluster: str = CONTROL_CLUSTER,
    ) -> list[Obj]:
        """Objects Conveyor wrote in `namespace` of `cluster` that the watch has not delivered and
        `match` accepts (objects it created a moment ago). Only matching entries are looked at:
        resolving another pipeline's entry here must never end it."""
        names = set(known)
        with self._lock:
            keys = [
                k
                for k, e in self._entries.items()
                if k[:3] == (cluster, kind, namespace)
                and k[3] not in names
                and e.obj is not None
                and match(e.obj)
            ]
        out = []
        for key in keys:
            obj = self.resolve(kind, namespace, key[3], None, cluster=cluster)
            if obj is not None:
                out.append(obj)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _copy(store: Iterable[Obj] | None) -> list[Obj]:
    """Copy a kopf store's values; retried when the event loop changed it mid-copy."""
    for _ in range(5):
        try:
            return list(store or ())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return list(store or ())


class Cache:
    """What passes read: kopf's indexes (bound at startup) merged with the overlay of own writes."""

    def __init__(self) -> None:
        self.overlay = Overlay()
        self._indices: Mapping[str, Any] = {}
        # Other clusters' Deployments and Jobs (handlers/clusters.py: watched per namespace there).
        self.remote: RemoteStores | None = None
        # (namespace, pipeline) whose recorded transitions were checked for lost Events since this
        # process (this cache) started: once each (reconcile.announce_recorded).
        self.recovered: set[tuple[str, str]] = set()
        # Conveyor's Events per namespace, listed once per process for that recovery (reconcile.py).
        self.posted_events: dict[str, set[tuple[str, str, datetime]]] = {}

    def bind(self, indices: Mapping[str, Any]) -> None:
        """Keep the operator's index objects (kopf passes them to the startup handler)."""
        self._indices = {k: v for k, v in indices.items() if k.startswith("conveyor_")}

    def _values(self, index: str, key: tuple[str, ...]) -> list[Obj]:
        idx = self._indices.get(index)
        return _copy(idx.get(key) if idx is not None else None)

    def _one(self, kind: str, index: str, cluster: str, key: tuple[str, ...]) -> Obj | None:
        """The object under `key` (ending in namespace, name) in `index`, through the overlay."""
        namespace, name = key[-2:]
        found = self._values(index, key)
        return self.overlay.resolve(kind, namespace, name, found[0] if found else None, cluster=cluster)

    def _many(
        self,
        kind: str,
        cached: list[Obj],
        namespace: str,
        match: Predicate,
        cluster: str = CONTROL_CLUSTER,
    ) -> list[Obj]:
        out = []
        for obj in cached:
            name = _meta(obj).get("name") or ""
            resolved = self.overlay.resolve(kind, namespace, name, obj, cluster=cluster)
            if resolved is not None:
                out.append(resolved)
        names = [_meta(o).get("name") or "" for o in cached]
        return out + self.overlay.created(kind, namespace, names, match, cluster=cluster)

    def pipeline(self, namespace: str, name: str) -> Obj | None:
        """The Pipeline, or None."""
        return self._one("pipelines", "conveyor_pipelines", CONTROL_CLUSTER, (namespace, name))

    def deployment(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """The Deployment in `cluster`, or None (not found)."""
        if cluster != CONTROL_CLUSTER:
            found = self.remote.deployment(cluster, namespace, name) if self.remote is not None else None
            return self.overlay.resolve("deployments", namespace, name, found, cluster=cluster)
        return self._one("deployments", "conveyor_deployments", cluster, (cluster, namespace, name))

    def release_pipeline(self, namespace: str, release: str) -> str | None:
        """The pipeline a Release belongs to (None: no such Release)."""
        found = self._values("conveyor_release_names", (namespace, release))
        return str(found[0]) if found else None

    def releases(self, namespace: str, pipeline: str) -> list[Obj]:
        """The pipeline's Releases."""
        cached = self._values("conveyor_releases", (namespace, pipeline))
        return self._many("releases", cached, namespace, _spec_is("pipeline", pipeline))

    def rollbacks(self, namespace: str, pipeline: str) -> list[Obj]:
        """The pipeline's Rollbacks."""
        cached = self._values("conveyor_rollbacks", (namespace, pipeline))
        return self._many("rollbacks", cached, namespace, _spec_is("pipeline", pipeline))

    def everything(self, plural: str, namespace: str) -> list[Obj]:
        """Every Pipeline, Release or Rollback of a namespace (the notifier reads a namespace
        whole). Own writes not yet watched are seen through the overlay, as passes see them."""
        index = _BY_NAMESPACE[plural]
        idx = self._indices.get(index)
        keys: list[tuple[str, ...]] = []
        for _ in range(5):
            try:
                keys = [k for k in list(idx or ()) if k and k[0] == namespace]
                break
            except RuntimeError:  # the index changed while being read: read again
                continue
        out = []
        for key in keys:
            for obj in self._values(index, key):
                resolved = self.overlay.resolve(plural, namespace, _meta(obj).get("name") or "", obj)
                if resolved is not None:
                    out.append(resolved)
        return out

    def approvals(self, namespace: str, releases: Iterable[str]) -> list[Obj]:
        """The Approvals that name one of these Releases."""
        out = []
        for release in releases:
            cached = self._values("conveyor_approvals", (namespace, release))
            out += self._many("approvals", cached, namespace, _spec_is("release", release))
        return out

    def jobs(self, cluster: str, namespace: str, pipeline_namespace: str, pipeline: str) -> list[Obj]:
        """Conveyor's Jobs in `namespace` of `cluster` made for this pipeline."""
        key = (cluster, namespace, pipeline_namespace, pipeline)
        if cluster != CONTROL_CLUSTER:
            every = self.remote.jobs(cluster, namespace) if self.remote is not None else []
            cached = [j for j in every if _job_key(cluster, j) == key]
        else:
            cached = self._values("conveyor_jobs", key)

        def mine(obj: Obj) -> bool:
            return _job_key(cluster, obj) == key

        return self._many("jobs", cached, namespace, mine, cluster)


class RemoteStores(Protocol):
    """What other clusters' watches hold (handlers/clusters.py)."""

    def deployment(self, cluster: str, namespace: str, name: str) -> Obj | None:
        """The Deployment, or None."""
        ...

    def jobs(self, cluster: str, namespace: str) -> list[Obj]:
        """Conveyor's Jobs in the namespace."""
        ...


# The index that holds every object of a kind, keyed by (namespace, …).
_BY_NAMESPACE = {
    "pipelines": "conveyor_pipelines",
    "releases": "conveyor_releases",
    "rollbacks": "conveyor_rollbacks",
}


def _spec_is(field: str, value: str) -> Predicate:
    return lambda obj: (obj.get("spec") or {}).get(field) == value


def _job_key(cluster: str, obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(cluster, namespace, pipeline namespace, pipeline) of one of Conveyor's Jobs in `cluster`."""
    meta = _meta(obj)
    return (
        cluster,
        meta.get("namespace") or "",
        (meta.get("annotations") or {}).get(PIPELINE_NAMESPACE_ANNOTATION, ""),
        (meta.get("labels") or {}).get(PIPELINE_LABEL, ""),
    )


# --- the indexes (one watch per kind: kopf shares each kind's watch with its on.event handler)


def _indexed(body: kopf.Body, *, template: bool = True) -> Obj:
    return strip(body, template=template)


def _where(body: kopf.Body, field: str | None = None) -> tuple[str, str]:
    """(namespace, name) — or (namespace, spec.<field>) — of an object."""
    namespace = body.metadata.namespace or ""
    if field is None:
        return namespace, body.metadata.name or ""
    return namespace, str(body.spec.get(field, ""))


@kopf.index(GROUP, VERSION, "pipelines")
def conveyor_pipelines(body: kopf.Body, **_: Any) -> Any:
    """Pipelines by (namespace, name)."""
    return {_where(body): _indexed(body)}


@kopf.index(GROUP, VERSION, "releases")
def conveyor_releases(body: kopf.Body, **_: Any) -> Any:
    """Releases by (namespace, pipeline)."""
    return {_where(body, "pipeline"): _indexed(body)}


@kopf.index(GROUP, VERSION, "releases")
def conveyor_release_names(body: kopf.Body, **_: Any) -> Any:
    """Each Release's pipeline, by (namespace, release name): routes Approval events."""
    return {_where(body): str(body.spec.get("pipeline", ""))}


@kopf.index(GROUP, VERSION, "approvals")
def conveyor_approvals(body: kopf.Body, **_: Any) -> Any:
    """Approvals by (namespace, release)."""
    return {_where(body, "release"): _indexed(body)}


@kopf.index(GROUP, VERSION, "rollbacks")
def conveyor_rollbacks(body: kopf.Body, **_: Any) -> Any:
    """Rollbacks by (namespace, pipeline)."""
    return {_where(body, "pipeline"): _indexed(body)}


@kopf.index("apps", "v1", "deployments")
def conveyor_deployments(body: kopf.Body, **_: Any) -> Any:
    """The control cluster's Deployments by (cluster, namespace, name)."""
    return {(CONTROL_CLUSTER, *_where(body)): _indexed(body)}


@kopf.index("batch", "v1", "jobs", labels=MANAGED_BY)
def conveyor_jobs(body: kopf.Body, **_: Any) -> Any:
    """The control cluster's Jobs of Conveyor's by (cluster, namespace, pipeline namespace,
    pipeline), without their pod template."""
    obj = _indexed(body, template=False)
    return {_job_key(CONTROL_CLUSTER, obj): obj}
