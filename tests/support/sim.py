"""A simulated cluster that drives the operator's own reconcile pass (issue #10's model test).

`SimCluster` is the API server, the watches and the controllers the operator depends on, in memory:

- Pipeline, Release, Approval and Rollback objects as the API server stores them (wire dicts), with
  uids, resourceVersions (one etcd-like counter for every kind, bumped on every change) and
  creationTimestamps at one-second granularity; an admission step that stamps `requester`/`approver`
  from the acting user and refuses a forged stamp (as the ValidatingAdmissionPolicy does), and a
  garbage collector for ownerReferences.
- Deployments with images, annotations and replica progress (the Deployment controller is driven by
  `rollout(...)`); Jobs with outcomes (driven by `finish_job(...)`); namespaces.
- A true clock (the API server's, with microseconds) and an operator clock that may be skewed from it.
- Watches: every change is queued per kind, in resourceVersion order, and reaches the operator's
  cache only when `deliver(...)` says so (`watch_lag=True`; otherwise before every pass). A watch
  never lags more than MAX_LAG_SECONDS of true time: `tick` delivers what is older.

`reconcile()` is one wake-up of the operator's pipeline worker, and runs the shell's own code:
`conveyor.handlers.reconcile.reconcile_pipeline` with `SimKube` (this API server behind the `Kube`
methods the shell calls) and `SimCache` (a real `conveyor.handlers.cache.Cache`, its indexes filled
by the real kopf index functions from the delivered objects, its real `Overlay` fed by the shell's
own writes). So a pass reads the cache, re-reads live when the core asks for it (`plan.refresh`),
and passes again at once on `plan.again`, exactly as the operator does. The core's decisions are
watched through the shell's `decide` parameter.

`reconcile(crash_after=k)` is an operator killed at its (k+1)-th status write or first Event of the
wake-up (or at its end): it restarts with an empty overlay and a cache listed anew.
Every pass is kept as a `PassRecord` for the invariants (tests/support/invariants.py).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core import plan as plan_mod
from conveyor.core.jobs import MANAGED_BY
from conveyor.core.plan import Plan
from conveyor.core.promotion import reconcile as core_reconcile
from conveyor.core.world import World
from conveyor.handlers import cache as cache_mod
from conveyor.handlers.reconcile import LiveReads, observe, reconcile_pipeline, report_orphan_approval
from conveyor.handlers.workers import NewsFilter
from support.builders import REPO, T0, digest_of, pipeline_dict, release_dict

NAMESPACE = "apps"
PIPELINE = "shop"
OPERATOR = "system:serviceaccount:conveyor:conveyor"
USERS: dict[str, list[str]] = {
    "ci-bot": ["ci", "system:authenticated"],
    "alice": ["conveyor:approvers", "system:authenticated"],
    "bob": ["conveyor:approvers", "system:authenticated"],
    "mallory": ["system:authenticated"],
    OPERATOR: ["system:serviceaccounts", "system:serviceaccounts:conveyor", "system:authenticated"],
}
PLURALS = ("releases", "approvals", "rollbacks")
WATCHED = ("pipelines", "releases", "approvals", "rollbacks", "deployments", "jobs")
# A watch delivers a change within this much true time. Well under the overlay's OVERLAY_SECONDS:
# the overlay forgets an own write the watch never confirmed after that long, by design.
MAX_LAG_SECONDS = 60.0
# The operator's kopf indexes, per kind: the real index functions fill the sim's cache.
INDEXES: dict[str, tuple[Callable[..., Any], ...]] = {
    "pipelines": (cache_mod.conveyor_pipelines,),
    "releases": (cache_mod.conveyor_releases, cache_mod.conveyor_release_names),
    "approvals": (cache_mod.conveyor_approvals,),
    "rollbacks": (cache_mod.conveyor_rollbacks,),
    "deployments": (cache_mod.conveyor_deployments,),
    "jobs": (cache_mod.conveyor_jobs,),
}
# Verdicts that say something is gone, late or changed: given on cache lag alone they would be
# wrong, so they must hold on the true state at the moment they are given.
LAG_SENSITIVE = (
    "disappeared before it finished",
    "ran past",
    "not available within",
    "not rolled out within",
)

Key = tuple[str, str]  # (namespace, name)


class Refused(Exception):
    """The sim API server refused a request (admission, or the name exists)."""


class Crash(BaseException):
    """The operator process dies here (BaseException: no `except Exception` in the shell stops it)."""


def _not_found(what: str) -> ApiException:
    return ApiException(status=404, reason=f"{what} not found")


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = apply_merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _ts(moment: datetime) -> str:
    """A creationTimestamp: the API server keeps whole seconds."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _rv(obj: dict[str, Any] | None) -> int:
    return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)


@dataclass
class Write:
    """One status merge-patch the pass made (or would have made, had it not crashed)."""

    plural: str
    name: str
    uid: str  # the object the pass computed it for
    status: dict[str, Any]  # the full new status, wire form
    applied: bool
    landed_on: str | None = None  # the uid of the object the API server applied it to (None: 404)


@dataclass
class Applied:
    """One action the shell performed, with what it meant."""

    action: Any
    owner_uid: str | None  # uid of the release/rollback named by action.owner, at the pass's read
    result: str  # "ok", "exists", "not-found", "conflict" (a uid precondition failed)
    meant: str | None = None  # uid of the object the pass decided a write by name for
    landed_on: str | None = None  # uid of the object the API server applied it to


@dataclass
class Posted:
    """One Event the shell posted."""

    pass_index: int
    kind: str
    name: str
    uid: str  # the object's, as the shell named it
    reason: str
    stage: str | None
    release: str | None
    release_uid: str | None  # the uid of the release the Event is about, as the pass read it
    message: str
    event_time: str | None = None  # the Event's eventTime (its transition's time)


@dataclass
class PassRecord:
    """Everything one operator pass saw, decided and did."""

    index: int
    true_time: datetime
    now: datetime  # the operator's clock, at the decision
    pipeline: Pipeline
    releases: list[Release]
    approvals: list[Approval]
    rollbacks: list[Rollback]
    world: World
    plan: Plan | None
    error: BaseException | None = None
    applied: list[Applied] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    crashed: bool = False
    fresh: bool = True  # the final decision was made on live reads (the refresh, or no cache)
    refreshed: bool = False  # the core asked for live reads (plan.refresh) and got them
    events: list[Posted] = field(default_factory=list)
    stale_writes: list[str] = field(default_factory=list)  # writes computed from data older than ours
    unfair: list[str] = field(default_factory=list)  # verdicts that do not hold on the true state
    true_digests: set[str | None] = field(default_factory=set)  # what the Deployments truly run
    failed: set[str] = field(default_factory=set)  # owners whose action the API server refused

    def release(self, name: str) -> Release | None:
        return next((r for r in self.releases if r.metadata.name == name), None)

    def rollback(self, name: str) -> Rollback | None:
        return next((r for r in self.rollbacks if r.metadata.name == name), None)

    def owner_uid(self, owner: str) -> str | None:
        obj = self.release(owner) or self.rollback(owner)
        return obj.metadata.uid if obj is not None else None

    def read_version(self, plural: str, name: str) -> tuple[str, int] | None:
        """(uid, resourceVersion) of the object this pass read under `name`."""
        if plural == "pipelines":
            return self.pipeline.metadata.uid, int(self.pipeline.metadata.resource_version or 0)
        objs: list[Any] = {
            "releases": self.releases,
            "approvals": self.approvals,
            "rollbacks": self.rollbacks,
        }[plural]
        obj = next((o for o in objs if o.metadata.name == name), None)
        return (obj.metadata.uid, int(obj.metadata.resource_version or 0)) if obj is not None else None


@dataclass
class JobCreation:
    """A Job the sim API server created (never forgotten, even once deleted)."""

    namespace: str
    name: str
    owner_uid: str
    kind: str
    stage: str
    pass_index: int


@dataclass
class ImageSet:
    """A Deployment patch Conveyor made."""

    namespace: str
    deployment: str
    images: dict[str, str]
    owner: str
    owner_uid: str | None
    pass_index: int


@dataclass
class WatchEvent:
    """One change, as a watch of its kind will deliver it (obj None: DELETED)."""

    rv: int
    at: datetime  # true time of the change
    key: Key
    obj: dict[str, Any] | None


class SimCache(cache_mod.Cache):
    """The operator's `Cache`, unchanged, over indexes the sim fills from delivered objects. Its
    overlay runs on the sim's true clock. A pass starts by reading its Pipeline from the cache: that
    read opens the sim's record of the pass."""

    def __init__(self, sim: SimCluster) -> None:
        super().__init__()
        self.overlay = cache_mod.Overlay(clock=sim.monotonic)
        self.sim = sim

    def pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.sim.pass_begins()
        return super().pipeline(namespace, name)


class SimCluster:
    """The API server, its watches, the Deployment and Job controllers and the garbage collector."""

    def __init__(
        self,
        *,
        stages: list[dict[str, Any]] | None = None,
        migration: bool = True,
        smoke_test: bool = True,
        down_migration: bool = False,
        keep_releases: int = 50,
        skew_seconds: float = 0.0,
        replicas: int = 2,
        targets: list[dict[str, str]] | None = None,
        watch_lag: bool = False,
    ) -> None:
        self.t = T0 + timedelta(microseconds=123_456)
        self.skew = timedelta(seconds=skew_seconds)
        self.watch_lag = watch_lag
        self._uids = itertools.count(1)
        self._rv = itertools.count(1)
        self.passes: list[PassRecord] = []
        self.jobs_created: list[JobCreation] = []
        self.image_sets: list[ImageSet] = []
        self.events: list[Posted] = []
        self.handler_writes: list[Write] = []  # status writes outside passes (the orphan handler)
        self.handler_stale: list[str] = []  # such writes computed from data older than our own
        self.refusals: list[str] = []
        self.true_created: dict[str, datetime] = {}  # uid -> true creation time (µs)
        self.facts: dict[str, dict[str, Any]] = {}  # uid -> the object as created (any kind, forever)
        self.deleted: set[str] = set()  # uids
        # uid -> (resourceVersion, pass index or -1 for a handler) of Conveyor's latest write to it
        self.own_writes: dict[str, tuple[int, int]] = {}
        self.namespaces: set[str] = {NAMESPACE}
        self.deployments: dict[Key, dict[str, Any]] = {}
        self.removed: dict[Key, dict[str, Any]] = {}  # Deployments deleted by someone (restorable)
        self.jobs: dict[Key, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PLURALS}
        # Watches: pending changes per kind; what they delivered; the index entries made from it.
        self.pending: dict[str, list[WatchEvent]] = {k: [] for k in WATCHED}
        self.delivered: dict[str, dict[Key, dict[str, Any]]] = {k: {} for k in WATCHED}
        self._entries: dict[str, dict[Key, dict[Any, Any]]] = {
            fn.__name__: {} for fns in INDEXES.values() for fn in fns
        }
        self.kube = SimKube(self)
        self.cache = SimCache(self)
        self.news = NewsFilter()  # what the operator's event handlers count as news
        self._record: PassRecord | None = None
        self._wakeup: list[PassRecord] = []
        stages = stages or [
            {"name": "staging", "namespace": "shop-staging"},
            {"name": "prod", "namespace": "shop-prod", "requiresApproval": True},
        ]
        spec_pipeline = pipeline_dict(
            stages=stages,
            migration={"command": ["/app/migrate"]} if migration else None,
            smoke_test={"command": ["/app/smoke"]} if smoke_test else None,
            down_migration={"command": ["/app/migrate", "down"]} if down_migration else None,
            targets=targets,
        )
        spec_pipeline["spec"]["retention"] = {"keepReleases": keep_releases}
        self.pipeline = self._stored(spec_pipeline)
        self._changed("pipelines", (NAMESPACE, PIPELINE), self.pipeline)
        self.initial_image = f"{REPO}@{digest_of('before-conveyor')}"
        for s in stages:
            self.namespaces.add(s["namespace"])
            for t in spec_pipeline["spec"]["targets"]:
                key = (s["namespace"], t["deployment"])
                self.deployments[key] = self._deployment(
                    s["namespace"], t["deployment"], t["container"], replicas
                )
                self._changed("deployments", key, self.deployments[key])
        self.deliver()  # the operator starts on a full listing (kopf fills its indexes first)

    # --- clocks ---------------------------------------------------------------------------------

    def operator_now(self) -> datetime:
        return self.t + self.skew

    def monotonic(self) -> float:
        """The operator's monotonic clock (the overlay's), in true seconds."""
        return (self.t - T0).total_seconds()

    def tick(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        # Watches lag, but not for ever: what changed more than MAX_LAG_SECONDS ago has arrived.
        cutoff = self.t - timedelta(seconds=MAX_LAG_SECONDS)
        for kind in WATCHED:
            late = sum(1 for ev in self.pending[kind] if ev.at <= cutoff)
            if late:
                self.deliver(kind, late)

    # --- watches --------------------------------------------------------------------------------

    def _changed(self, kind: str, key: Key, obj: dict[str, Any] | None) -> None:
        """The API server stored a change: a new resourceVersion, and an event for the kind's watch."""
        rv = next(self._rv)
        if obj is not None:
            obj["metadata"]["resourceVersion"] = str(rv)
        snapshot = copy.deepcopy(obj) if obj is not None else None
        self.pending[kind].append(WatchEvent(rv, self.t, key, snapshot))

    def deliver(self, kind: str | None = None, count: int | None = None) -> None:
        """The watch of `kind` (None: every kind) delivers its next `count` changes (None: all)."""
        orphan_checks: list[dict[str, Any]] = []
        for k in WATCHED if kind is None else (kind,):
            queue = self.pending[k]
            n = len(queue) if count is None else min(count, len(queue))
            events, self.pending[k] = queue[:n], queue[n:]
            for ev in events:
                self._index(k, ev.key, ev.obj)
                if k == "approvals" and ev.obj is not None and self._news(ev.obj):
                    orphan_checks.append(ev.obj)
        self._bind()
        for obj in orphan_checks:
            self._approval_event(obj)

    def _index(self, kind: str, key: Key, obj: dict[str, Any] | None) -> None:
        """What kopf does with one event: the object's index entries replaced (or dropped)."""
        if obj is None:
            self.delivered[kind].pop(key, None)
        else:
            self.delivered[kind][key] = obj
        for fn in INDEXES[kind]:
            entries = self._entries[fn.__name__]
            entries.pop(key, None)
            labels = (obj or {}).get("metadata", {}).get("labels") or {}
            if obj is None or (kind == "jobs" and not MANAGED_BY.items() <= labels.items()):
                continue  # deleted, or not one the label-filtered watch sees
            entries[key] = fn(body=kopf.Body(obj), memo=SimpleNamespace(cache=self.cache))

    def _bind(self) -> None:
        """Hand the cache kopf-shaped indexes (key -> the values of every object under it)."""
        indexes: dict[str, dict[Any, list[Any]]] = {}
        for name, entries in self._entries.items():
            index: dict[Any, list[Any]] = {}
            for entry in entries.values():
                for k, v in entry.items():
                    index.setdefault(k, []).append(v)
            indexes[name] = index
        self.cache.bind(indexes)

    def _news(self, obj: dict[str, Any]) -> bool:
        """The operator's NewsFilter: the echo of Conveyor's own write (same generation) is no news."""
        meta = obj["metadata"]
        return self.news.news("MODIFIED", meta["uid"], meta.get("generation"))

    def _approval_event(self, obj: dict[str, Any]) -> None:
        """The operator's approval handler: an Approval whose Release the cache does not know says so
        in its status, computed from the newest Conveyor knows of it and written through the overlay
        (handlers/operator.py: approval_changed -> _report_orphan -> report_orphan_approval)."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        if self.cache.release_pipeline(meta["namespace"], spec.get("release", "")) is not None:
            return
        overlay = self.cache.overlay
        current = overlay.resolve("approvals", meta["namespace"], meta["name"], copy.deepcopy(obj))
        if current is None:
            return
        self.kube.handler_read = (current["metadata"]["uid"], _rv(current))
        try:
            report_orphan_approval(
                self.kube,  # type: ignore[arg-type]
                current,
                clock=self.operator_now,
                overlay=overlay,
            )
        finally:
            self.kube.handler_read = None

    def restart(self) -> None:
        """A new operator process: no overlay, no news seen, and watches that start from a listing
        of what exists now (not a replay of the changes the old process had not received)."""
        self.cache = SimCache(self)
        self.news = NewsFilter()
        for kind in WATCHED:
            self.pending[kind] = []
            for key in list(self.delivered[kind]):
                self._index(kind, key, None)
            for key, obj in self._listing(kind).items():
                self._index(kind, key, copy.deepcopy(obj))
        self._bind()
        for obj in list(self.delivered["approvals"].values()):  # the listing's events: all news
            if self._news(obj):
                self._approval_event(obj)

    def _listing(self, kind: str) -> dict[Key, dict[str, Any]]:
        """What a LIST of the kind returns now."""
        if kind == "pipelines":
            return {(NAMESPACE, PIPELINE): self.pipeline}
        if kind == "deployments":
            return dict(self.deployments)
        if kind == "jobs":
            return dict(self.jobs)
        return {(NAMESPACE, name): obj for name, obj in self.objects[kind].items()}

    # --- objects --------------------------------------------------------------------------------

    def _stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", NAMESPACE)
        uid = f"uid-{next(self._uids):04d}-{meta['name']}"[:36]
        meta.update(uid=uid, generation=1, creationTimestamp=_ts(self.t))
        self.true_created[uid] = self.t
        self.facts[uid] = copy.deepcopy(obj)
        return obj

    def _stamp(self, spec: dict[str, Any], key: str, user: str) -> None:
        """Admission: stamp the authenticated identity; refuse a supplied one that differs."""
        real = {"username": user, "groups": list(USERS[user])}
        claim = spec.get(key)
        if claim is not None and (
            claim.get("username") != user or sorted(claim.get("groups") or []) != sorted(USERS[user])
        ):
            self.refusals.append(f"{key} forged by {user}")
            raise Refused(f"{key} must be the requesting user ({user})")
        spec[key] = real

    def _create(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        if name in self.objects[plural]:
            raise Refused(f"{plural} {name} already exists")
        stored = self._stored(obj)
        self.objects[plural][name] = stored
        self._changed(plural, (NAMESPACE, name), stored)
        return stored

    @property
    def releases(self) -> dict[str, dict[str, Any]]:
        return self.objects["releases"]

    @property
    def approvals(self) -> dict[str, dict[str, Any]]:
        return self.objects["approvals"]

    @property
    def rollbacks(self) -> dict[str, dict[str, Any]]:
        return self.objects["rollbacks"]

    def create_release(
        self,
        name: str,
        *,
        user: str = "ci-bot",
        artifact: str | None = None,
        schema_change: str = "none",
        target_stage: str | None = None,
        claim: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """CI creates a Release of artifact `artifact` (a label: the same label, the same digest)."""
        obj = release_dict(name, label=artifact or name, target_stage=target_stage)
        obj["spec"]["schemaChange"] = schema_change
        if claim is not None:
            obj["spec"]["requester"] = claim
        self._stamp(obj["spec"], "requester", user)
        return self._create("releases", obj)

    def create_approval(
        self,
        name: str,
        release: str,
        stage: str,
        *,
        user: str = "alice",
        bound: bool = False,
        claim: dict[str, Any] | None = None,
        reviewed_by: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Someone approves `release` for `stage`. `bound`: as `kubectl conveyor approve` does it —
        naming the release's uid and digest, and owned by the Release."""
        spec: dict[str, Any] = {"release": release, "stage": stage}
        if comment is not None:
            spec["comment"] = comment
        if reviewed_by is not None:
            spec["reviewedBy"] = reviewed_by
        if claim is not None:
            spec["approver"] = claim
        obj: dict[str, Any] = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "Approval",
            "metadata": {"name": name},
            "spec": spec,
        }
        target = self.releases.get(release)
        if bound and target is not None:
            spec["releaseUID"] = target["metadata"]["uid"]
            spec["digest"] = target["spec"]["digest"]
            obj["metadata"]["ownerReferences"] = [self._owner_ref(target)]
        self._stamp(spec, "approver", user)
        return self._create("approvals", obj)

    def create_rollback(
        self,
        name: str,
        *,
        user: str = "alice",
        stage: str | None = None,
        to_release: str | None = None,
        verify: bool = True,
        reason: str = "bad deploy",
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"pipeline": PIPELINE, "reason": reason, "verify": verify}
        if stage is not None:
            spec["stage"] = stage
        if to_release is not None:
            spec["toRelease"] = to_release
        obj = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "Rollback",
            "metadata": {"name": name},
            "spec": spec,
        }
        self._stamp(spec, "requester", user)
        return self._create("rollbacks", obj)

    @staticmethod
    def _owner_ref(target: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": target.get("kind", "Release"),
            "name": target["metadata"]["name"],
            "uid": target["metadata"]["uid"],
        }

    def delete(self, plural: str, name: str) -> bool:
        """Delete an object; the garbage collector deletes what it owns (Approvals of a Release)."""
        obj = self.objects[plural].pop(name, None)
        if obj is None:
            return False
        uid = obj["metadata"]["uid"]
        self.deleted.add(uid)
        self._changed(plural, (NAMESPACE, name), None)
        for other_plural in PLURALS:
            for other_name, other in list(self.objects[other_plural].items()):
                refs = other["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    self.delete(other_plural, other_name)
        return True

    def _collect_garbage(self, plural: str, name: str) -> None:
        """The garbage collector on one object's owners: owners that no longer exist are dropped, and
        an object none of whose owners exists is deleted."""
        obj = self.objects[plural].get(name)
        refs = (obj or {}).get("metadata", {}).get("ownerReferences") or []
        if obj is None or not refs:
            return
        live = {o["metadata"]["uid"] for p in PLURALS for o in self.objects[p].values()}
        solid = [r for r in refs if r.get("uid") in live]
        if not solid:
            self.delete(plural, name)
        elif len(solid) < len(refs):
            obj["metadata"]["ownerReferences"] = solid
            self._changed(plural, (NAMESPACE, name), obj)

    def live_digests(self) -> set[str]:
        return {r["spec"]["digest"] for r in self.releases.values()}

    def uid_of(self, plural: str, name: str) -> str | None:
        obj = self.objects[plural].get(name)
        return obj["metadata"]["uid"] if obj else None

    # --- Deployments ----------------------------------------------------------------------------

    def _deployment(self, namespace: str, name: str, container: str, replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{next(self._uids):04d}-deployment-{name}"[:36],
                "generation": 1,
                "annotations": {},
            },
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"annotations": {}},
                    "spec": {"containers": [{"name": container, "image": self.initial_image}]},
                },
            },
            "status": self._rollout_status(1, replicas, "complete"),
        }

    @staticmethod
    def _rollout_status(generation: int, replicas: int, state: str) -> dict[str, Any]:
        if state == "pending":  # the controller has not seen the new spec yet
            return {
                "observedGeneration": generation - 1,
                "replicas": replicas,
                "updatedReplicas": 0,
                "availableReplicas": replicas,
                "readyReplicas": replicas,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
            }
        if state == "complete":
            return {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "readyReplicas": replicas,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
            }
        progressing = (
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            if state == "stall"
            else {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
            }
        )
        return {
            "observedGeneration": generation,
            "replicas": replicas + 1,
            "updatedReplicas": 1,
            "availableReplicas": replicas,
            "readyReplicas": replicas,
            "unavailableReplicas": 1,
            "conditions": [progressing],
        }

    def image_of(self, namespace: str, deployment: str, container: str) -> str | None:
        dep = self.deployments.get((namespace, deployment))
        if dep is None:
            return None
        return next(
            (c["image"] for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == container),
            None,
        )

    def _patch_deployment(
        self, namespace: str, name: str, images: dict[str, str], annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        dep = self.deployments.get((namespace, name))
        if dep is None:
            raise KeyError(f"Deployment {namespace}/{name} not found")
        before = copy.deepcopy(dep)
        for obj in (dep["metadata"], dep["spec"]["template"]["metadata"]):
            ann = obj.setdefault("annotations", {})
            for k, v in annotations.items():
                if v is None:
                    ann.pop(k, None)
                else:
                    ann[k] = v
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["name"] in images:
                c["image"] = images[c["name"]]
        if dep["spec"]["template"] != before["spec"]["template"]:
            dep["metadata"]["generation"] += 1
            dep["status"] = self._rollout_status(
                dep["metadata"]["generation"], dep["spec"]["replicas"], "pending"
            )
        if dep != before:  # a patch that changes nothing stores nothing (no new resourceVersion)
            self._changed("deployments", (namespace, name), dep)
        return dep

    def rollout(self, namespace: str, outcome: str = "complete") -> None:
        """The Deployment controller acts on every Deployment of a namespace that is not rolled out:
        complete, stall (a pod never becomes available), or fail (ProgressDeadlineExceeded)."""
        for (ns, name), dep in self.deployments.items():
            if ns != namespace:
                continue
            st = dep["status"]
            done = (
                st.get("observedGeneration") == dep["metadata"]["generation"]
                and st.get("updatedReplicas") == dep["spec"]["replicas"]
                and not st.get("unavailableReplicas")
            )
            if not done:
                status = self._rollout_status(dep["metadata"]["generation"], dep["spec"]["replicas"], outcome)
                if status != st:
                    dep["status"] = status
                    self._changed("deployments", (ns, name), dep)

    def delete_deployments(self, namespace: str) -> None:
        """Someone deletes the namespace's Deployments (kept aside: `restore_deployments` brings them
        back as new objects, on the image they ran)."""
        for key in [k for k in self.deployments if k[0] == namespace]:
            dep = self.deployments.pop(key)
            self.deleted.add(dep["metadata"]["uid"])
            self.removed[key] = dep
            self._changed("deployments", key, None)

    def restore_deployments(self, namespace: str) -> None:
        """The namespace's deleted Deployments are applied again (new uids, rolled out)."""
        for key in [k for k in self.removed if k[0] == namespace]:
            dep = self.removed.pop(key)
            dep["metadata"]["uid"] = f"uid-{next(self._uids):04d}-deployment-{key[1]}"[:36]
            dep["metadata"]["generation"] = 1
            dep["status"] = self._rollout_status(1, dep["spec"]["replicas"], "complete")
            self.deployments[key] = dep
            self._changed("deployments", key, dep)

    def set_image_by_hand(self, namespace: str, image: str) -> None:
        """Someone runs `kubectl set image` (annotations stay as they were)."""
        for (ns, name), dep in self.deployments.items():
            if ns == namespace:
                container = dep["spec"]["template"]["spec"]["containers"][0]["name"]
                self._patch_deployment(ns, name, {container: image}, {})

    # --- Jobs -----------------------------------------------------------------------------------

    def finish_job(self, namespace: str, name: str, outcome: str) -> None:
        """complete, fail (BackoffLimitExceeded), deadline (DeadlineExceeded) or delete."""
        job = self.jobs.get((namespace, name))
        if job is None:
            return
        if outcome == "delete":
            del self.jobs[(namespace, name)]
            self.deleted.add(job["metadata"]["uid"])
            self._changed("jobs", (namespace, name), None)
            return
        if job["status"].get("conditions"):
            return  # already finished
        if outcome == "complete":
            cond = {"type": "Complete", "status": "True"}
        else:
            reason = "DeadlineExceeded" if outcome == "deadline" else "BackoffLimitExceeded"
            cond = {"type": "Failed", "status": "True", "reason": reason, "message": "Job failed"}
        job["status"] = {"conditions": [cond]}
        self._changed("jobs", (namespace, name), job)

    def running_jobs(self) -> list[tuple[str, str]]:
        return sorted(k for k, j in self.jobs.items() if not j["status"].get("conditions"))

    def true_world(self, pipeline: Pipeline) -> World:
        """What a pass would observe on live reads right now (the shell's own `observe`)."""
        return observe(self.kube, pipeline, LiveReads(self.kube))  # type: ignore[arg-type]

    # --- the operator ---------------------------------------------------------------------------

    def reconcile(self, *, crash_after: int | None = None) -> PassRecord | None:
        """One wake-up of the pipeline's worker: the shell's `reconcile_pipeline` (one pass, or a few
        when a pass recorded what the next acts on). `crash_after=k`: the process dies at its
        (k+1)-th status write or first Event (or at the end of the wake-up), then restarts.
        Returns the last pass's record."""
        if not self.watch_lag:
            self.deliver()
        self.kube.crash_after = crash_after
        self.kube.status_writes = 0
        self._wakeup = []
        crashed = crash_after is not None
        try:
            reconcile_pipeline(
                self.kube,  # type: ignore[arg-type]
                NAMESPACE,
                PIPELINE,
                clock=self.operator_now,
                cache=self.cache,
                decide=self._decide,
            )
        except Crash:
            crashed = True
        except Exception as e:  # a pass that raises is a finding (one bad object wedges a pipeline)
            if self._record is not None:
                self._record.error = e
        finally:
            self.kube.crash_after = None
        record, self._record = self._record, None
        if crashed:
            if record is not None:
                record.crashed = True
            self.restart()
        return record

    def pass_begins(self) -> None:
        """The shell reads its Pipeline: a new pass (its record is filled when the core decides)."""
        self._record = None

    def _decide(
        self,
        pipeline: Pipeline,
        releases: list[Release],
        approvals: list[Approval],
        world: World,
        now: datetime,
        **kwargs: Any,
    ) -> Plan:
        """The core's `reconcile`, called by the shell; records what the pass saw and decided."""
        fresh = all(sw.fresh for sw in world.stages.values())
        record = self._record
        if record is None:  # the pass's first decision (on the cache)
            record = PassRecord(
                index=len(self.passes),
                true_time=self.t,
                now=now,
                pipeline=pipeline,
                releases=releases,
                approvals=approvals,
                rollbacks=list(kwargs.get("rollbacks") or []),
                world=world,
                plan=None,
                fresh=fresh,
            )
            self.passes.append(record)
            self._record = record
        else:  # the core asked for fresh reads: the shell decides again on them
            record.refreshed = True
        record.world, record.now, record.fresh = world, now, fresh
        record.true_digests = {
            _digest(c.get("image"))
            for dep in self.deployments.values()
            for c in dep["spec"]["template"]["spec"]["containers"]
        }
        try:
            plan = core_reconcile(pipeline, releases, approvals, world, now, **kwargs)
        except Exception as e:
            record.error = e
            raise
        record.plan = plan
        if not fresh and not plan.refresh:
            record.unfair = self._unfair(record, plan, kwargs)
        return plan

    def _unfair(self, record: PassRecord, plan: Plan, kwargs: dict[str, Any]) -> list[str]:
        """Verdicts of a decision on cached data that a decision on the true state would not give."""
        given = _lag_sensitive_verdicts(record, plan)
        if not given:
            return []
        world = self.true_world(record.pipeline)
        truth = core_reconcile(
            record.pipeline, record.releases, record.approvals, world, record.now, **kwargs
        )
        fair = _verdicts(truth)
        return [
            f"{kind} {name}: {reason} ({message}), but on the true state: "
            f"{fair.get((kind, name), ('no verdict', ''))[0]}"
            for (kind, name), (reason, message) in given.items()
            if fair.get((kind, name), ("", ""))[0] != reason
        ]

    # --- convenience for stories ----------------------------------------------------------------

    def status(self, plural: str, name: str) -> dict[str, Any]:
        if plural == "pipelines":
            return self.pipeline.get("status") or {}
        return (self.objects[plural].get(name) or {}).get("status") or {}

    def settle(self, passes: int = 8, outcome: str = "complete", held: str | None = None) -> None:
        """Let everything finish well: Jobs complete, rollouts complete, watches deliver (all but
        the `held` kind's, which only MAX_LAG_SECONDS brings), and the operator passes."""
        for _ in range(passes):
            for kind in WATCHED:
                if kind != held:
                    self.deliver(kind)
            self.reconcile()
            for ns, name in self.running_jobs():
                self.finish_job(ns, name, outcome)
            for ns in sorted(self.namespaces):
                self.rollout(ns)
            self.tick(1)


def _digest(image: str | None) -> str | None:
    return image.split("@", 1)[1] if image and "@" in image else None


def _verdicts(plan: Plan) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, name) -> (reason, message) of every failure verdict in a plan."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for name, st in plan.releases.items():
        failed = next((c for c in st.conditions if c.type == "Failed" and c.status == "True"), None)
        if st.phase == "Failed" and failed is not None:
            out[("Release", name)] = (failed.reason, failed.message or "")
    for name, rst in plan.rollbacks.items():
        if rst.phase == "Failed" and rst.verdict:
            out[("Rollback", name)] = (rst.verdict, rst.message or "")
    return out


def _lag_sensitive_verdicts(record: PassRecord, plan: Plan) -> dict[tuple[str, str], tuple[str, str]]:
    """The failure verdicts this plan gives anew that say something is gone, late or changed."""
    before: dict[tuple[str, str], str | None] = {
        ("Release", r.metadata.name): r.status.phase for r in record.releases
    }
    before |= {("Rollback", r.metadata.name): r.status.phase for r in record.rollbacks}
    return {
        key: (reason, message)
        for key, (reason, message) in _verdicts(plan).items()
        if before.get(key) != "Failed"
        and ("ImageChanged" in reason or any(s in message for s in LAG_SENSITIVE))
    }


class SimKube:
    """The `Kube` methods the shell calls, answered as the API server would answer them: writes by
    name reach whatever object has the name now, a 404 where the shell's client raises one, the
    object as stored after each write. Each call is also matched to the plan action it performs."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.crash_after: int | None = None
        self.crash_before_create = False  # with crash_after: the process dies at its first Job create
        self.status_writes = 0
        self.handler_read: tuple[str, int] | None = None  # (uid, rv) of the body a handler acts on
        self.clusters = None  # one cluster: the control cluster (Kube.clusters)

    # --- reads

    def get_custom(self, plural: str, _namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.sim.pipeline if plural == "pipelines" else self.sim.objects[plural].get(name)
        return copy.deepcopy(obj) if obj else None

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.sim.deployments.get((namespace, name))
        return copy.deepcopy(obj) if obj else None

    def namespace_exists(self, name: str) -> bool:
        return name in self.sim.namespaces

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(",") if pair)
        return [
            copy.deepcopy(job)
            for (ns, _), job in sorted(self.sim.jobs.items())
            if ns == namespace and wanted.items() <= (job["metadata"].get("labels") or {}).items()
        ]

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        """Every Event the shell posted (Events do not expire in the sim) — or, asked for Jobs'
        Pod creations, one for every Job ever created in the namespace (a Job may have run the
        moment it exists)."""
        if "involvedObject.kind=Job" in field_selector:
            return [
                {"involvedObject": {"kind": "Job", "name": j.name}, "reason": "SuccessfulCreate"}
                for j in self.sim.jobs_created
                if j.namespace == namespace
            ]
        return [
            {"involvedObject": {"uid": e.uid}, "reason": e.reason, "eventTime": e.event_time}
            for e in self.sim.events
        ]

    def admission_object(self, _plural: str, _name: str) -> bool:
        return True  # the identity policies are installed

    def secret_metadata(self, _namespace: str, _name: str) -> dict[str, Any] | None:
        return None

    def external_secret(self, _namespace: str, _name: str) -> dict[str, Any] | None:
        return None

    # --- writes

    def _match(self, kind: str, matches: Callable[[Any], bool]) -> Any:
        """The plan action this call performs: the first of its kind not yet performed whose owner
        did not fail (the shell performs them in that order)."""
        record = self.sim._record
        if record is None or record.plan is None:
            return None
        done = {id(a.action) for a in record.applied}
        for action in record.plan.actions:
            if (
                type(action).__name__ == kind
                and id(action) not in done
                and action.owner not in record.failed
                and matches(action)
            ):
                return action
        return None

    def _did(
        self, action: Any, result: str, *, meant: str | None = None, landed_on: str | None = None
    ) -> None:
        record = self.sim._record
        if record is None or action is None:
            return
        record.applied.append(Applied(action, record.owner_uid(action.owner), result, meant, landed_on))
        if result == "not-found" and type(action).__name__ in ("SetImage", "LabelRelease", "CreateJob"):
            record.failed.add(action.owner)  # the client raised: the shell holds that owner's status

    def _meant(self, plural: str, name: str) -> str | None:
        record = self.sim._record
        read = record.read_version(plural, name) if record is not None else None
        return read[0] if read else None

    def _check_fresh(self, plural: str, name: str, what: str) -> None:
        """A write computed from what the pass read: never from data older than a write Conveyor
        made before this pass (the overlay's promise; this pass's own earlier writes to the object,
        its metadata, say, are not what the status was computed from)."""
        record = self.sim._record
        read = record.read_version(plural, name) if record is not None else self.handler_read
        if read is None:
            return
        uid, rv = read
        last = self.sim.own_writes.get(uid)
        if last is None or rv >= last[0] or (record is not None and last[1] == record.index):
            return
        message = (
            f"{what} of {plural}/{name} computed from resourceVersion {rv}, older than Conveyor's "
            f"own write {last[0]} (by {'pass ' + str(last[1]) if last[1] >= 0 else 'a handler'})"
        )
        if record is not None:
            record.stale_writes.append(message)
        else:
            self.sim.handler_stale.append(message)

    def _wrote(self, obj: dict[str, Any]) -> None:
        record = self.sim._record
        self.sim.own_writes[obj["metadata"]["uid"]] = (_rv(obj), record.index if record is not None else -1)

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        if self.crash_after is not None and self.crash_before_create:
            raise Crash("killed before creating a Job")
        name = manifest["metadata"]["name"]
        action = self._match(
            "CreateJob", lambda a: a.namespace == namespace and a.manifest["metadata"]["name"] == name
        )
        key = (namespace, name)
        if namespace not in self.sim.namespaces:
            self._did(action, "not-found")
            raise _not_found(f"namespace {namespace}")
        if key in self.sim.jobs:
            self._did(action, "exists")
            return None  # 409: the shell treats it as done
        job = self.sim._stored(manifest)
        job["status"] = {}
        self.sim.jobs[key] = job
        self.sim._changed("jobs", key, job)
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        record = self.sim._record
        self.sim.jobs_created.append(
            JobCreation(
                namespace=namespace,
                name=name,
                owner_uid=(meta.get("annotations") or {}).get("conveyor.dev/release-uid", ""),
                kind=labels.get("conveyor.dev/job", ""),
                stage=labels.get("conveyor.dev/stage", ""),
                pass_index=record.index if record is not None else -1,
            )
        )
        self._did(action, "ok")
        return copy.deepcopy(job)

    def delete_job(self, namespace: str, name: str) -> None:
        action = self._match("DeleteJob", lambda a: a.namespace == namespace and a.name == name)
        gone = self.sim.jobs.pop((namespace, name), None)
        if gone is not None:
            self.sim.deleted.add(gone["metadata"]["uid"])
            self.sim._changed("jobs", (namespace, name), None)
        self._did(action, "ok" if gone is not None else "not-found")

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        action = self._match("SetImage", lambda a: a.namespace == namespace and a.deployment == name)
        annotations = (patch.get("metadata") or {}).get("annotations") or {}
        containers = patch["spec"]["template"]["spec"]["containers"]
        images = {c["name"]: c["image"] for c in containers}
        try:
            dep = self.sim._patch_deployment(namespace, name, images, annotations)
        except KeyError:
            self._did(action, "not-found")
            raise _not_found(f"Deployment {namespace}/{name}") from None
        record = self.sim._record
        if action is not None and record is not None:
            owner_uid = record.owner_uid(action.owner)
            self.sim.image_sets.append(
                ImageSet(namespace, name, images, action.owner, owner_uid, record.index)
            )
        self._did(action, "ok")
        return copy.deepcopy(dep)

    def create_custom(self, plural: str, _namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        name = body["metadata"]["name"]
        action = self._match("CreateRollback", lambda a: a.manifest["metadata"]["name"] == name)
        obj = copy.deepcopy(body)
        self.sim._stamp(obj.setdefault("spec", {}), "requester", OPERATOR)  # admission stamps Conveyor
        try:
            stored = self.sim._create(plural, obj)
        except Refused:
            self._did(action, "exists")
            return None  # 409
        self._did(action, "ok")
        return copy.deepcopy(stored)

    def label_custom(self, plural: str, _namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
        action = self._match("LabelRelease", lambda a: a.release == name)
        meant = self._meant(plural, name)
        obj = self.sim.objects[plural].get(name)
        if obj is None:
            self._did(action, "not-found", meant=meant)
            raise _not_found(f"{plural} {name}")
        current = obj["metadata"].setdefault("labels", {})
        if not labels.items() <= current.items():
            current.update(labels)
            self.sim._changed(plural, (NAMESPACE, name), obj)
        self._wrote(obj)
        self._did(action, "ok", meant=meant, landed_on=obj["metadata"]["uid"])
        return copy.deepcopy(obj)

    def patch_custom_metadata(
        self, plural: str, _namespace: str, name: str, metadata: dict[str, Any]
    ) -> dict[str, Any] | None:
        action = self._match("OwnApproval", lambda a: a.approval == name)
        meant = self._meant(plural, name)
        obj = self.sim.objects[plural].get(name)
        if obj is None:
            self._did(action, "not-found", meant=meant)
            return None  # the client answers None for a 404
        self._check_fresh(plural, name, "the owners")
        patched = apply_merge_patch(obj["metadata"], metadata)
        if patched != obj["metadata"]:
            obj["metadata"] = patched
            self.sim._changed(plural, (NAMESPACE, name), obj)
        self._wrote(obj)
        self._did(action, "ok", meant=meant, landed_on=obj["metadata"]["uid"])
        answer = copy.deepcopy(obj)
        self.sim._collect_garbage(plural, name)
        return answer

    def delete_custom(self, plural: str, _namespace: str, name: str, uid: str = "") -> None:
        action = self._match("DeleteRelease", lambda a: a.release == name)
        meant = self._meant(plural, name)
        landed = self.sim.uid_of(plural, name)
        if uid and landed is not None and landed != uid:  # the uid precondition: 409, nothing deleted
            self._did(action, "conflict", meant=meant)  # nothing reached
            return
        gone = self.sim.delete(plural, name)
        self._did(action, "ok" if gone else "not-found", meant=meant, landed_on=landed)

    def patch_custom_status(
        self,
        plural: str,
        _namespace: str,
        name: str,
        patch: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        record = self.sim._record
        meant = self._meant(plural, name) or ""
        target = self.sim.pipeline if plural == "pipelines" else self.sim.objects[plural].get(name)
        if self.crash_after is not None and self.status_writes >= self.crash_after:
            if record is not None:
                record.writes.append(Write(plural, name, meant, self._planned(plural, name, patch), False))
            raise Crash(f"killed before writing the status of {plural}/{name}")
        self.status_writes += 1
        if (
            resource_version
            and target is not None
            and target["metadata"]["resourceVersion"] != resource_version
        ):
            # The API server's precondition: the write was computed from another version (409).
            raise ApiException(status=409, reason="Conflict")
        self._check_fresh(plural, name, "the status")
        landed = target["metadata"]["uid"] if target is not None else None
        write = Write(plural, name, meant, self._planned(plural, name, patch), True, landed)
        if record is not None:
            record.writes.append(write)
        else:
            write.uid = landed or ""
            self.sim.handler_writes.append(write)
        if target is None:
            return None  # 404: deleted meanwhile (the client answers None)
        status = apply_merge_patch(target.get("status") or {}, patch)
        if status != target.get("status"):
            target["status"] = status
            self.sim._changed(plural, (NAMESPACE, name), target)
        self._wrote(target)
        return copy.deepcopy(target)

    def _planned(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """The full status the pass computed for the object (what the patch was made from)."""
        record = self.sim._record
        plan = record.plan if record is not None else None
        planned: Any = None
        if plan is not None:
            planned = (
                plan.pipeline
                if plural == "pipelines"
                else {"releases": plan.releases, "approvals": plan.approvals, "rollbacks": plan.rollbacks}[
                    plural
                ].get(name)
            )
        if planned is not None:
            wire: dict[str, Any] = planned.wire()
            return wire
        target = self.sim.pipeline if plural == "pipelines" else self.sim.objects[plural].get(name)
        return apply_merge_patch((target or {}).get("status") or {}, patch)

    def create_event(self, _namespace: str, body: dict[str, Any]) -> None:
        if self.crash_after is not None:
            raise Crash("killed before posting the pass's Events")
        record = self.sim._record
        involved = body["involvedObject"]
        annotations = body["metadata"].get("annotations") or {}
        release = annotations.get("conveyor.dev/release")
        subject = record.release(release) if record is not None and release else None
        posted = Posted(
            pass_index=record.index if record is not None else -1,
            kind=involved["kind"],
            name=involved["name"],
            uid=involved["uid"],
            reason=body["reason"],
            stage=annotations.get("conveyor.dev/stage"),
            release=release,
            release_uid=subject.metadata.uid if subject is not None else None,
            message=body["message"],
            event_time=body.get("eventTime"),
        )
        self.sim.events.append(posted)
        if record is not None:
            record.events.append(posted)


def approval_status(obj: dict[str, Any]) -> ApprovalStatus:
    return ApprovalStatus.model_validate(obj.get("status") or {})


def utc(seconds: float) -> datetime:
    return datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC) + timedelta(seconds=seconds)


__all__ = ["OPERATOR", "USERS", "Crash", "PassRecord", "Refused", "SimCluster", "SimKube", "plan_mod"]
