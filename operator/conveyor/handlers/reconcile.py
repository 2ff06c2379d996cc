"""One reconcile pass over one pipeline: read the world, ask the core, apply the plan, record it.

Synchronous (the official client blocks); the pipeline's worker runs it in a thread.
Order of writes: child objects first (Deployment patches, smoke-test Jobs), then status — each
(down-)migration Job right after the status that names it —, then Events. A crash between them is
safe: the next pass finds the child by its deterministic name (or the Deployment already on the
image) and records what the crashed pass could not; a migration recorded but not there is created
only if it never had a Pod (started_jobs), never run twice; Events a crash lost are posted by the
restarted operator's first pass from the history the status kept (announce_recorded).
`conveyor.kube.faults` kills the process at these instants in the crash drills.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from conveyor.api.admission import POLICY_OBJECTS
from conveyor.api.approval import Approval
from conveyor.api.common import Condition, KubeModel
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import TERMINAL_PHASES, Release
from conveyor.api.rollback import ROLLBACK_TERMINAL, Rollback
from conveyor.core.announcements import Recorded, recent, unannounced
from conveyor.core.clusters import CONNECTING, CONTROL_CLUSTER, NOT_FOUND, ClusterProblem, stage_cluster
from conveyor.core.conditions import unreadable_conditions, validation_summary
from conveyor.core.jobs import MANAGED_BY, PIPELINE_LABEL, PIPELINE_NAMESPACE_ANNOTATION
from conveyor.core.parity import referenced_secrets
from conveyor.core.patch import merge_patch
from conveyor.core.pipeline_status import reconciled
from conveyor.core.plan import (
    Action,
    CreateJob,
    CreateRollback,
    DeleteJob,
    DeleteRelease,
    Emit,
    LabelRelease,
    OwnApproval,
    Plan,
    SetImage,
)
from conveyor.core.promotion import (
    reconcile,
    unknown_pipeline_release,
    unknown_release_approval,
)
from conveyor.core.rollback import unknown_pipeline_rollback
from conveyor.core.secrets import SecretInfo, owner_of
from conveyor.core.world import DeploymentView, JobView, StageWorld, World
from conveyor.handlers.cache import Cache, Overlay
from conveyor.handlers.clusters import ClusterUnavailable
from conveyor.handlers.metrics import record_pass
from conveyor.kube import faults
from conveyor.kube.client import FORBIDDEN, Kube, api_unavailable
from conveyor.kube.record import announce
from conveyor.kube.remote import problem_of

log = logging.getLogger("conveyor.reconcile")
Clock = Callable[[], datetime]
# The decision a pass asks for: the core's `reconcile`. A parameter only so the model test
# (tests/support/sim.py) can watch what each pass of this very shell saw and decided.
Decide = Callable[..., Plan]


def utcnow() -> datetime:
    """Now, in UTC, with microseconds (status timestamps are sub-second)."""
    return datetime.now(UTC)


_PLURAL = {Release: "releases", Approval: "approvals", Rollback: "rollbacks"}


def _parse(
    model: type[KubeModel], obj: dict[str, Any], kube: Kube | None = None, overlay: Overlay | None = None
) -> Any:
    """The object as its model; None when it does not validate (the schema should have refused it:
    skipped rather than crash) — and, given `kube`, the object is told so on its own status."""
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        meta = obj.get("metadata", {})
        log.warning("ignoring %s %s/%s: %s", model.__name__, meta.get("namespace"), meta.get("name"), e)
        plural = _PLURAL.get(model)
        if kube is not None and plural is not None:
            errors = [
                (".".join(str(p) for p in err["loc"]), err["msg"]) for err in e.errors(include_input=False)
            ]
            answer_unreadable(kube, plural, obj, validation_summary(errors), overlay=overlay)
        return None


def answer_unreadable(
    kube: Kube,
    plural: str,
    obj: dict[str, Any],
    error: str,
    clock: Clock = utcnow,
    *,
    overlay: Overlay | None = None,
) -> None:
    """Write the InvalidSpec condition on an object Conveyor cannot read (when it is not there yet),
    so that an admitted object is always answered. Best effort: a refused write is logged, and the
    next pass tries again."""
    meta = obj.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    try:
        conditions = [Condition.model_validate(c) for c in (obj.get("status") or {}).get("conditions") or []]
    except ValidationError:
        conditions = []  # not Conveyor's own (or unreadable too): replaced
    updated = unreadable_conditions(plural, conditions, error, generation=generation, now=clock())
    if [c.wire() for c in updated] == [c.wire() for c in conditions]:
        return
    patch = {"observedGeneration": generation, "conditions": [c.wire() for c in updated]}
    try:
        written = kube.patch_custom_status(
            plural, meta.get("namespace") or "", meta.get("name") or "", patch, meta.get("resourceVersion")
        )
    except ApiException as e:  # 409: changed since read; the next pass sees the new version
        log.warning(
            "%s %s/%s: could not say it is unreadable: %s",
            plural,
            meta.get("namespace"),
            meta.get("name"),
            e.reason,
        )
        return
    WRITES.add("status_patch")
    if overlay is not None and written is not None:
        overlay.wrote(plural, written)


def kube_in(kube: Kube, cluster: str) -> Kube:
    """The connection to `cluster` (core/clusters.py): `kube` itself for the control cluster, else
    the one its cluster Secret configured (ClusterUnavailable when there is none)."""
    if cluster == CONTROL_CLUSTER:
        return kube
    if kube.clusters is None:
        raise ClusterUnavailable(f"no connection to cluster {cluster}: this operator has no cluster registry")
    conn: Kube = kube.clusters.kube(cluster)
    return conn


class Reads(Protocol):
    """Where a pass reads a stage's cluster from: the watch-fed cache, or the API server itself."""

    fresh: bool  # read from the API server just now (deadline verdicts need it)

    def deployment(self, cluster: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment, or None when it does not exist."""
        ...

    def jobs(self, cluster: str, namespace: str, pipeline: Pipeline) -> list[dict[str, Any]]:
        """Conveyor's Jobs for this pipeline in `namespace` of `cluster`."""
        ...

    def namespace_exists(self, cluster: str, namespace: str) -> bool:
        """True when the namespace exists in `cluster`."""
        ...


class LiveReads:
    """Reads from the API server: used for fresh verdicts (and where there is no cache)."""

    fresh = True

    def __init__(self, kube: Kube, cache: Cache | None = None) -> None:
        self.kube = kube  # the control cluster's connection (kube_in)
        self.cache = cache  # what the API server says is gone is hidden from it (hide_gone)
        self._listed: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def deployment(self, cluster: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET the Deployment."""
        obj = kube_in(self.kube, cluster).get_deployment(namespace, name)
        if self.cache is not None:
            cached = [self.cache.deployment(cluster, namespace, name)]
            hide_gone(self.cache, "deployments", namespace, cached, [obj], cluster=cluster)
        return obj

    def jobs(self, cluster: str, namespace: str, pipeline: Pipeline) -> list[dict[str, Any]]:
        """LIST the namespace's Jobs with the pipeline's labels (once per namespace per pass)."""
        name = pipeline.metadata.name
        key = (cluster, namespace, name)
        if key not in self._listed:
            selector = ",".join(f"{k}={v}" for k, v in {**MANAGED_BY, PIPELINE_LABEL: name}.items())
            self._listed[key] = [
                obj
                for obj in kube_in(self.kube, cluster).list_jobs(namespace, selector)
                # The same pipeline name may live in another namespace: only our pipeline's Jobs.
                if ((obj.get("metadata") or {}).get("annotations") or {}).get(PIPELINE_NAMESPACE_ANNOTATION)
                == pipeline.metadata.namespace
            ]
            if self.cache is not None:
                cached = self.cache.jobs(cluster, namespace, pipeline.metadata.namespace, name)
                hide_gone(self.cache, "jobs", namespace, cached, self._listed[key], cluster=cluster)
        return self._listed[key]

    def namespace_exists(self, cluster: str, namespace: str) -> bool:
        """GET the namespace."""
        return kube_in(self.kube, cluster).namespace_exists(namespace)


class CachedReads(LiveReads):
    """Reads from the watch-fed cache (namespaces — looked at only when a target is missing — live)."""

    fresh = False

    def __init__(self, kube: Kube, cache: Cache) -> None:
        super().__init__(kube, cache)
        self.cache: Cache = cache

    def deployment(self, cluster: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached Deployment."""
        return self.cache.deployment(cluster, namespace, name)

    def jobs(self, cluster: str, namespace: str, pipeline: Pipeline) -> list[dict[str, Any]]:
        """The cached Jobs of this pipeline in `namespace` of `cluster`."""
        return self.cache.jobs(cluster, namespace, pipeline.metadata.namespace, pipeline.metadata.name)


def hide_gone(
    cache: Cache,
    kind: str,
    namespace: str,
    cached: Sequence[dict[str, Any] | None],
    live: Sequence[Any],
    *,
    cluster: str = CONTROL_CLUSTER,
) -> None:
    """Objects the cache holds that `cluster`'s API server no longer has: hidden from then on. kopf
    never reports what was deleted while its watch was down (after "410 Gone"), so live reads are
    how such ghosts are found."""
    alive = {(o.get("metadata") or {}).get("uid") for o in live if o}
    for obj in cached:
        meta = (obj or {}).get("metadata") or {}
        if obj and meta.get("uid") not in alive:
            log.info(
                "%s %s/%s is gone (the watch never said so): no longer cached",
                kind,
                namespace,
                meta.get("name"),
            )
            cache.overlay.deleted(
                kind, namespace, meta.get("name") or "", meta.get("uid") or "", cluster=cluster
            )


class SecretLookups:
    """Secret metadata and ExternalSecrets for parity, each kept SECONDS: parity is checked on its own
    cadence (and when a Deployment changes), never by a GET per Secret per pass."""

    SECONDS = 30.0

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], tuple[float, SecretInfo]] = {}
        self._lock = threading.Lock()

    def __call__(self, kube: Kube, cluster: str, namespace: str, secret: str) -> SecretInfo:
        """How the Secret in `namespace` of `cluster` is made (read when not known or older than
        SECONDS)."""
        key = (cluster, namespace, secret)
        with self._lock:
            known = self._seen.get(key)
        if known is not None and time.monotonic() - known[0] < self.SECONDS:
            return known[1]
        kube = kube_in(kube, cluster)
        meta = kube.secret_metadata(namespace, secret)
        kind, owner = owner_of(meta) if meta else (None, None)
        if meta is not None and meta.get(FORBIDDEN):
            kind, owner = "ExternalSecret", secret  # ask the ExternalSecret of the same name
        external = kube.external_secret(namespace, owner) if kind == "ExternalSecret" and owner else None
        info = SecretInfo.from_objects(meta, external)
        with self._lock:
            if len(self._seen) > 10_000:  # bounded: forget everything rather than grow without end
                self._seen.clear()
            self._seen[key] = (time.monotonic(), info)
        return info


SECRETS = SecretLookups()


def observe(kube: Kube, pipeline: Pipeline, reads: Reads | None = None) -> World:
    """Each stage's target Deployments, Secrets (for parity) and this pipeline's Jobs. A stage in a
    cluster that cannot be seen now is observed as that problem alone (StageWorld.problem): the
    core decides nothing there, and the other stages go on."""
    reads = reads or LiveReads(kube)
    world = World()
    key = (pipeline.metadata.namespace, pipeline.metadata.name)
    remote = {(stage_cluster(s), s.namespace) for s in pipeline.spec.stages if stage_cluster(s)}
    if kube.clusters is not None:
        kube.clusters.declare(key, remote)
    for stage in pipeline.spec.stages:
        cluster = stage_cluster(stage)
        problem = _unseen(kube, pipeline, stage.namespace, cluster)
        if problem is None:
            try:
                sw = _observe_stage(kube, pipeline, stage.namespace, cluster, reads)
            except Exception as e:
                if cluster == CONTROL_CLUSTER:
                    raise  # the control cluster failing fails the pass (and is retried), as always
                problem = unreachable(kube, cluster, e)
        if problem is not None:
            log.debug("%s/%s: stage %s not seen: %s", *key, stage.name, problem)  # status says it
            sw = StageWorld(namespace=stage.namespace, cluster=cluster, fresh=reads.fresh, problem=problem)
        elif cluster != CONTROL_CLUSTER:
            sw.seen_again_at = kube.clusters.seen_again_at(cluster, stage.namespace)
        world.stages[stage.name] = sw
    return world


def _unseen(kube: Kube, pipeline: Pipeline, namespace: str, cluster: str) -> ClusterProblem | None:
    """Why `namespace` of `cluster` cannot be seen now (None: it can)."""
    if cluster == CONTROL_CLUSTER:
        return None
    if kube.clusters is None:
        return ClusterProblem(NOT_FOUND, "this operator runs without other clusters (no cluster registry)")
    problem: ClusterProblem | None = kube.clusters.problem(pipeline.metadata.namespace, cluster, namespace)
    return problem


def unreachable(kube: Kube, cluster: str, error: BaseException) -> ClusterProblem:
    """A request to `cluster` failed: what that says of the cluster. A failure to connect (or a
    refused token) makes its watches look again; anything but an API or connection error is a bug,
    raised as such rather than reported as an outage."""
    if isinstance(error, ClusterUnavailable):
        return ClusterProblem(CONNECTING, str(error))
    if not isinstance(error, (ApiException, urllib3.exceptions.HTTPError, OSError)):
        raise error
    if kube.clusters is not None and (api_unavailable(error) or getattr(error, "status", None) == 401):
        kube.clusters.report(cluster)
    return problem_of(error, cluster)


def _observe_stage(kube: Kube, pipeline: Pipeline, namespace: str, cluster: str, reads: Reads) -> StageWorld:
    sw = StageWorld(namespace=namespace, cluster=cluster, fresh=reads.fresh)
    for target in pipeline.spec.targets:
        if target.deployment not in sw.deployments:
            obj = reads.deployment(cluster, namespace, target.deployment)
            sw.deployments[target.deployment] = DeploymentView.from_object(obj) if obj else None
    if any(v is None for v in sw.deployments.values()):
        sw.namespace_exists = reads.namespace_exists(cluster, namespace)
    if pipeline.spec.parity.policy != "off":
        names = set().union(*(referenced_secrets(v.pod_spec) for v in sw.deployments.values() if v))
        for secret in sorted(names):
            sw.secrets[secret] = SECRETS(kube, cluster, namespace, secret)
    if sw.namespace_exists:
        for obj in reads.jobs(cluster, namespace, pipeline):
            sw.jobs[(obj.get("metadata") or {}).get("name", "")] = JobView.from_object(obj)
    return sw


def started_jobs(kube: Kube, world: World, namespaces: set[tuple[str, str]]) -> None:
    """Fill StageWorld.started_jobs for the stages in `namespaces`, (cluster, namespace) pairs: the
    Jobs the Job controller created a Pod for (SuccessfulCreate Events; one LIST per namespace)."""
    for cluster, ns in sorted(namespaces):
        stages = [sw for sw in world.stages.values() if (sw.cluster, sw.namespace) == (cluster, ns)]
        try:
            events = kube_in(kube, cluster).list_events(ns, "involvedObject.kind=Job,reason=SuccessfulCreate")
        except Exception as e:
            if cluster == CONTROL_CLUSTER:
                raise
            for sw in stages:  # not known: nothing is created on a guess; the stage waits
                sw.problem = unreachable(kube, cluster, e)
            continue
        names = {(e.get("involvedObject") or {}).get("name", "") for e in events}
        for sw in stages:
            sw.started_jobs = names


def _set_image_patch(action: SetImage) -> dict[str, Any]:
    return {
        "metadata": {"annotations": action.annotations},
        "spec": {
            "template": {
                "metadata": {"annotations": action.annotations},
                "spec": {"containers": [{"name": c, "image": i} for c, i in sorted(action.images.items())]},
            }
        },
    }


def _version(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def _perform(
    kube: Kube, namespace: str, action: Action, overlay: Overlay, versions: dict[tuple[str, str], str | None]
) -> None:
    """One action; what the API server answers goes into the overlay, so the next pass (which reads
    the cache) sees this write even before the watch delivers it — and, for Conveyor's own objects,
    into `versions`: the version its status write in this pass must find. Jobs and image patches go
    to their stage's cluster (kube_in); Conveyor's own objects are in the pipeline's `namespace`."""
    if isinstance(action, CreateJob):
        created = kube_in(kube, action.cluster).create_job(action.namespace, action.manifest)
        faults.reached("after-job-create")
        overlay.wrote("jobs", created, cluster=action.cluster)
        if created:
            WRITES.add("job_create")
    elif isinstance(action, SetImage):
        try:
            patched = kube_in(kube, action.cluster).patch_deployment(
                action.namespace, action.deployment, _set_image_patch(action)
            )
            faults.reached("after-deployment-patch")
        except ApiException as e:
            if e.status == 404:  # gone, whatever the cache says: the next pass sees it missing
                overlay.deleted("deployments", action.namespace, action.deployment, cluster=action.cluster)
            raise
        overlay.wrote("deployments", patched, cluster=action.cluster)
        WRITES.add("deployment_patch")
    elif isinstance(action, CreateRollback):
        created = kube.create_custom("rollbacks", namespace, action.manifest)
        overlay.wrote("rollbacks", created)
        if created:
            WRITES.add("rollback_create")
    elif isinstance(action, LabelRelease):
        labelled = kube.label_custom("releases", namespace, action.release, action.labels)
        overlay.wrote("releases", labelled)
        versions[("releases", action.release)] = _version(labelled)
        WRITES.add("release_label")
    elif isinstance(action, DeleteJob):
        kube_in(kube, action.cluster).delete_job(action.namespace, action.name)
        overlay.deleted("jobs", action.namespace, action.name, cluster=action.cluster)
        log.info("deleted Job %s/%s: %s", action.namespace, action.name, action.why)
        WRITES.add("job_delete")
    elif isinstance(action, OwnApproval):
        owner = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "Release",
            "name": action.release,
            "uid": action.release_uid,
        }
        owners = [*action.others, owner]
        owned = kube.patch_custom_metadata(
            "approvals", namespace, action.approval, {"ownerReferences": owners}
        )
        overlay.wrote("approvals", owned)
        versions[("approvals", action.approval)] = _version(owned)
        WRITES.add("approval_owner")
    else:
        kube.delete_custom("releases", namespace, action.release, action.uid)
        # Hidden by uid: the watch's DELETED event may be handled before this line, and an entry by
        # name alone would then hide a Release re-created under the name (Argo CD's self-heal).
        overlay.deleted("releases", namespace, action.release, action.uid)
        WRITES.add("release_delete")


class Counters:
    """API writes made by reconciles (the brief asks for them to be counted)."""

    def __init__(self) -> None:
        self.writes: dict[str, int] = defaultdict(int)

    def add(self, what: str) -> None:
        """Count one write of kind `what`."""
        self.writes[what] += 1


WRITES = Counters()


def apply_plan(
    kube: Kube,
    *,
    pipeline: Pipeline,
    releases: list[Release],
    approvals: list[Approval],
    rollbacks: list[Rollback],
    plan: Plan,
    now: datetime,
    overlay: Overlay | None = None,
    later: list[Announcement] | None = None,
    failed: set[str] | None = None,
) -> bool:
    """Perform the plan: child objects, then status (rollbacks' first: a plan is recorded before
    it is acted on), then Events — or, with `later`, hand the Events to the caller (who records
    them after a pass that must follow at once). Returns False when some write failed (the
    caller backs off). `failed` collects the owners whose writes did not happen (a 404 on a status:
    the object is gone)."""
    ns = pipeline.metadata.namespace
    overlay = overlay if overlay is not None else Overlay()
    versions: dict[tuple[str, str], str | None] = {}  # (plural, name) -> version after this pass's writes
    ok = True
    failed = (
        failed if failed is not None else set()
    )  # owners (release or rollback) whose actions failed: their status waits
    # Image patches first: they are what a rollback waits on; Jobs, Rollbacks and labels follow.
    order = {
        SetImage: 0,
        CreateJob: 1,
        CreateRollback: 2,
        LabelRelease: 3,
        OwnApproval: 4,
        DeleteRelease: 5,
        DeleteJob: 6,
    }
    # (Down-)migration Jobs wait for the status that names them (CreateJob.record_first).
    after: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        if isinstance(action, CreateJob) and action.record_first:
            after[action.owner].append(action)

    def act(action: Action) -> bool:
        try:
            _perform(kube, ns, action, overlay, versions)
            return True
        except Exception as e:
            log.warning(
                "%s/%s: %s failed; will retry", ns, action.owner, type(action).__name__, exc_info=True
            )
            remote = getattr(action, "cluster", CONTROL_CLUSTER)
            if remote != CONTROL_CLUSTER and kube.clusters is not None:
                # A write another cluster refused (403: the target role lacks it; 401) makes that
                # stage unseen for a while, saying why, rather than retried every pass in silence.
                kube.clusters.refused(remote, getattr(action, "namespace", ""), e)
            return False

    for action in sorted(plan.actions, key=lambda a: order[type(a)]):
        if action.owner in failed or (isinstance(action, CreateJob) and action.record_first):
            continue
        if not act(action):
            failed.add(action.owner)
            ok = False
    uids = {pipeline.metadata.name: pipeline.metadata.uid}
    uids.update({r.metadata.name: r.metadata.uid for r in releases})
    uids.update({r.metadata.name: r.metadata.uid for r in rollbacks})
    uids.update({a.metadata.name: a.metadata.uid for a in approvals})
    # (plural, name, uid, the version the pass read, status read, status decided)
    writes: list[tuple[str, str, str, str, KubeModel, KubeModel]] = []
    by_rb = {r.metadata.name: r for r in rollbacks}
    writes += [
        ("rollbacks", n, by_rb[n].metadata.uid, by_rb[n].metadata.resource_version, by_rb[n].status, st)
        for n, st in plan.rollbacks.items()
    ]
    current = {r.metadata.name: r for r in releases}
    writes += [
        ("releases", n, current[n].metadata.uid, current[n].metadata.resource_version, current[n].status, st)
        for n, st in plan.releases.items()
    ]
    by_appr = {a.metadata.name: a for a in approvals}
    writes += [
        ("approvals", n, by_appr[n].metadata.uid, by_appr[n].metadata.resource_version, by_appr[n].status, st)
        for n, st in plan.approvals.items()
    ]
    writes.append(
        (
            "pipelines",
            pipeline.metadata.name,
            pipeline.metadata.uid,
            pipeline.metadata.resource_version,
            pipeline.status,
            plan.pipeline,
        )
    )
    for plural, name, uid, read_version, old, new in writes:
        if name in failed:
            continue
        patch = merge_patch(old.wire(), new.wire())
        if not patch:
            # Already recorded (a Job the crashed process recorded and never created): create it.
            for action in after.pop(name, []):
                ok = act(action) and ok
            continue
        # The status was decided from `read_version` (or from this pass's own metadata write): it
        # lands only on that version. Anything newer — another writer, or the object deleted and
        # re-created under the same name — answers 409, and the pass is retried on fresher data.
        version = versions.get((plural, name), read_version) or None
        try:
            written = kube.patch_custom_status(plural, ns, name, patch, resource_version=version)
            faults.reached("after-status-write")
            WRITES.add("status_patch")
            if written is None:  # 404: deleted meanwhile — nothing to announce for it, nothing to act on
                overlay.deleted(plural, ns, name, uid)
                failed.add(name)
                continue
            overlay.wrote(plural, written)
            # Its status names them now: the migration Jobs follow at once (a crash in between
            # leaves a recorded Job that is not there: created later only if it never had a Pod).
            for action in after.pop(name, []):
                ok = act(action) and ok
        except ApiException as e:
            failed.add(name)
            ok = False
            if e.status == 409:  # changed since it was read: the retry reads it anew
                log.info("%s/%s: %s changed since the pass read it; the pass is retried", ns, name, plural)
            else:
                log.warning("%s/%s: writing the status of %s failed", ns, name, plural, exc_info=True)
        except Exception:
            # One object's refused write never stops the others' (nor their Events).
            log.warning("%s/%s: writing the status of %s failed", ns, name, plural, exc_info=True)
            failed.add(name)
            ok = False
    ready = [
        Announcement(
            e,
            uids.get(e.name, "") if e.kind != "Pipeline" else pipeline.metadata.uid,
            now,
            ns,
            pipeline.metadata.name,
        )
        for e in plan.events
        if e.name not in failed
    ]
    if later is not None:
        later.extend(ready)
    else:
        announce_all(kube, ready)
    return ok


@dataclass(frozen=True)
class Announcement:
    """An Event a pass decided, with its object's uid and the pass's time."""

    event: Emit
    uid: str
    now: datetime
    namespace: str
    pipeline: str
    recovered: bool = False  # recorded before a crash, its Event lost: announced after the restart


def announce_all(kube: Kube, announcements: list[Announcement]) -> None:
    """Record the Events (and audit lines), in the order they were decided."""
    for a in announcements:
        event = a.event
        announce(
            kube,
            namespace=a.namespace,
            kind=event.kind,
            name=event.name,
            uid=a.uid,
            type_=event.type,
            reason=event.reason,
            message=event.message,
            pipeline=a.pipeline,
            stage=event.stage,
            release=event.release,
            commit=event.commit,
            digest=event.digest,
            ci_run=event.ci_run,
            actor=event.actor,
            now=a.now,
            recovered=a.recovered,
        )
        WRITES.add("event")


def _parsed(
    model: type[KubeModel],
    objs: list[dict[str, Any]],
    *,
    invalid: list[str] | None = None,
    kube: Kube | None = None,
    overlay: Overlay | None = None,
) -> list[Any]:
    """Parsed objects; one that does not validate (stored before a schema bound existed, say) is
    skipped, told so on its own status (given `kube`), and named in `invalid` so the Pipeline's
    Reconciled condition says so."""
    out = []
    for obj in objs:
        parsed = _parse(model, obj, kube, overlay)
        if parsed is not None:
            out.append(parsed)
        elif invalid is not None:
            name = (obj.get("metadata") or {}).get("name")
            invalid.append(f"{model.__name__} {name} does not validate (see the operator log); it is skipped")
    return out


class IdentityCheck:
    """Are the admission policies that stamp identities installed? Cached briefly: one GET per
    policy object every CACHE_SECONDS, not per pass."""

    CACHE_SECONDS = 10.0

    def __init__(self) -> None:
        self._value = False
        self._checked = 0.0
        self._lock = threading.Lock()

    def __call__(self, kube: Kube) -> bool:
        """True when every policy and binding exists."""
        with self._lock:
            if time.monotonic() - self._checked > self.CACHE_SECONDS:
                self._value = all(kube.admission_object(plural, name) for plural, name in POLICY_OBJECTS)
                self._checked = time.monotonic()
                if not self._value:
                    log.warning(
                        "identity admission policies missing (%s): approvals will not be counted",
                        ", ".join(n for _, n in POLICY_OBJECTS),
                    )
            return self._value


IDENTITY = IdentityCheck()


AGAIN_LIMIT = 3  # passes in a row when a pass recorded what the next one acts on (plan.again)


def reconcile_pipeline(
    kube: Kube,
    namespace: str,
    name: str,
    clock: Clock = utcnow,
    cache: Cache | None = None,
    *,
    live: bool = False,
    decide: Decide = reconcile,
) -> tuple[bool, float | None]:
    """One pass (a few, when a pass recorded a plan the next acts on — a rollback's: then its patch
    follows its plan within the same wake-up). Returns (exists, requeue_after seconds or None).
    With a cache, passes read it (and its overlay of own writes); without one, or `live` (the
    periodic resync), the API server."""
    requeue: float | None = None
    exists = True
    # Every pass's Events are recorded once the passes end: a pass followed at once by another (a
    # rollback's plan, then its patch) does not make the patch wait for its Events. They keep
    # their order and their time; a crash before them loses them, as it would between any status
    # write and its Events.
    later: list[Announcement] = []
    try:
        for attempt in range(AGAIN_LIMIT):
            exists, requeue, again = _pass(
                kube, namespace, name, clock, cache, later=later, live=live and attempt == 0, decide=decide
            )
            if not again:
                break
    finally:
        announce_all(kube, later)
    return exists, requeue


def plans_only(plan: Plan, pipeline: Pipeline) -> Plan:
    """The part of a pass that records new rollback plans, and nothing else: a plan is written
    before it is acted on, and the pass that follows at once (reading the plan from the overlay)
    acts on it — and decides everything else again, from the same world, so nothing is lost: the
    releases a rollback stops, the vetoed label and the pipeline's status are written after the
    patch instead of before it. (A rollback with actions of its own in this pass is not a fresh
    plan: then the whole plan is applied as usual.)"""
    fresh = {
        name
        for name in plan.again
        if name in plan.rollbacks and not any(a.owner == name for a in plan.actions)
    }
    if not fresh:
        return plan
    return Plan(
        rollbacks={n: st for n, st in plan.rollbacks.items() if n in fresh},
        events=[e for e in plan.events if e.kind == "Rollback" and e.name in fresh],
        pipeline=pipeline.status,
        requeue_after=plan.requeue_after,
        again=fresh,
    )


def announce_recorded(
    kube: Kube,
    pipeline: Pipeline,
    releases: list[Release],
    rollbacks: list[Rollback],
    now: datetime,
    *,
    posted_in: dict[str, set[tuple[str, str, datetime]]] | None = None,
) -> None:
    """Post the Events (and audit lines) of transitions the releases' and rollbacks' history records
    but Conveyor never announced — an operator killed between a status write and its Events. Run by
    a process's first pass over each pipeline; lists the namespace's Events only when some
    transition is recent (core.announcements decides which are missing)."""
    objects = [
        Recorded("Release", r.metadata.name, r.metadata.uid, r.metadata.name, r.status.history)
        for r in releases
    ] + [
        Recorded(
            "Rollback",
            r.metadata.name,
            r.metadata.uid,
            r.status.plan.from_release if r.status.plan else None,
            r.status.history,
        )
        for r in rollbacks
    ]
    if not recent(objects, now):
        return
    ns = pipeline.metadata.namespace
    # One LIST per namespace per process (`posted_in`), shared by the namespace's pipelines: after a
    # restart 200 pipelines in one namespace would otherwise each list all 200 pipelines' Events.
    # The snapshot misses no Event of these objects — a process announces a pipeline's Events only
    # after its recovery, and the process that announced before is gone.
    posted = posted_in.get(ns) if posted_in is not None else None
    if posted is None:
        posted = set()
        for e in kube.list_events(ns, "reportingComponent=conveyor"):
            moment = e.get("eventTime")
            uid = (e.get("involvedObject") or {}).get("uid")
            if moment and uid:
                posted.add(
                    (uid, e.get("reason") or "", datetime.fromisoformat(moment.replace("Z", "+00:00")))
                )
        if posted_in is not None:
            posted_in[ns] = posted
    missing = unannounced(objects, posted, now)
    for m in missing:
        log.info(
            "%s/%s: %s was recorded but never announced (the operator stopped in between): announcing it",
            ns,
            m.event.name,
            m.event.reason,
        )
    announce_all(
        kube,
        [Announcement(m.event, m.uid, m.time, ns, pipeline.metadata.name, recovered=True) for m in missing],
    )


def _pass(
    kube: Kube,
    namespace: str,
    name: str,
    clock: Clock,
    cache: Cache | None,
    *,
    later: list[Announcement] | None = None,
    live: bool = False,
    decide: Decide = reconcile,
) -> tuple[bool, float | None, bool]:
    """One pass: (exists, requeue_after, pass again at once). `live` (or no cache): read everything
    from the API server — and hide from the cache what it no longer has."""
    from_api = cache is None or live
    if from_api:
        obj = kube.get_custom("pipelines", namespace, name)
    else:
        assert cache is not None
        obj = cache.pipeline(namespace, name)
    if live and cache is not None:
        hide_gone(cache, "pipelines", namespace, [cache.pipeline(namespace, name)], [obj])
    if obj is None:
        if kube.clusters is not None:  # its watches in other clusters stop unless others use them
            kube.clusters.declare((namespace, name), set())
        return False, None, False
    try:
        pipeline = Pipeline.model_validate(obj)
    except ValidationError as e:
        # Stored before a schema bound existed, say: it says why on itself, and heals when fixed.
        report_pass_failure(kube, namespace, name, f"the Pipeline does not validate: {e}", clock, cache=cache)
        return True, None, False
    invalid: list[str] = []
    if from_api:
        selector = f"spec.pipeline={name}"
        raw_releases = kube.list_custom("releases", namespace, field_selector=selector)
        raw_rollbacks = kube.list_custom("rollbacks", namespace, field_selector=selector)
        if cache is not None:
            hide_gone(cache, "releases", namespace, list(cache.releases(namespace, name)), raw_releases)
            hide_gone(cache, "rollbacks", namespace, list(cache.rollbacks(namespace, name)), raw_rollbacks)
    else:
        assert cache is not None
        raw_releases = cache.releases(namespace, name)
        raw_rollbacks = cache.rollbacks(namespace, name)
    overlay = cache.overlay if cache is not None else None
    releases: list[Release] = _parsed(Release, raw_releases, invalid=invalid, kube=kube, overlay=overlay)
    rollbacks: list[Rollback] = _parsed(Rollback, raw_rollbacks, invalid=invalid, kube=kube, overlay=overlay)
    names = {r.metadata.name for r in releases}
    if from_api:
        raw_approvals = [
            a
            for a in kube.list_custom("approvals", namespace)
            if (a.get("spec") or {}).get("release") in names
        ]
        if cache is not None:
            hide_gone(
                cache, "approvals", namespace, list(cache.approvals(namespace, sorted(names))), raw_approvals
            )
    else:
        assert cache is not None
        raw_approvals = cache.approvals(namespace, sorted(names))
    approvals = [
        a for a in _parsed(Approval, raw_approvals, kube=kube, overlay=overlay) if a.spec.release in names
    ]
    reads: Reads = CachedReads(kube, cache) if not from_api and cache is not None else LiveReads(kube, cache)
    world = observe(kube, pipeline, reads)
    world.identity_enforced = IDENTITY(kube)
    now = clock()
    plan = decide(pipeline, releases, approvals, world, now, rollbacks=rollbacks, invalid=invalid)
    if plan.refresh and not reads.fresh:
        # A deadline verdict is due: it is given only on what the API server says now.
        world = observe(kube, pipeline, LiveReads(kube, cache))
        world.identity_enforced = IDENTITY(kube)
        now = clock()
        plan = decide(pipeline, releases, approvals, world, now, rollbacks=rollbacks, invalid=invalid)
    if cache is not None and (namespace, name) not in cache.recovered:
        # The first pass of this process: what a crash recorded but never announced is announced
        # before this pass's own Events. Best effort: Events are not worth stopping a pipeline for
        # (RBAC without `list events`, a slow API server); the next pass tries again.
        try:
            announce_recorded(kube, pipeline, releases, rollbacks, now, posted_in=cache.posted_events)
            cache.recovered.add((namespace, name))
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            log.warning(
                "%s/%s: could not look for Events a crash lost (retried next pass): %s", namespace, name, e
            )
    if plan.traces:
        # A recorded migration Job is not there: did it ever have a Pod? The Job controller's
        # Events say so (they outlive the Job); the pass decides again knowing it.
        started_jobs(kube, world, plan.traces)
        now = clock()
        plan = decide(pipeline, releases, approvals, world, now, rollbacks=rollbacks, invalid=invalid)
    again = cache is not None and bool(plan.again)
    if again:
        plan = plans_only(plan, pipeline)
    failed: set[str] = set()
    ok = apply_plan(
        kube,
        pipeline=pipeline,
        releases=releases,
        approvals=approvals,
        rollbacks=rollbacks,
        plan=plan,
        now=now,
        overlay=cache.overlay if cache is not None else None,
        later=later,
        failed=failed,
    )
    again = again and not plan.again & failed  # a plan that was not written is not acted on
    if again:
        faults.reached("after-rollback-plan")  # recorded; its patch is the next pass's
    updated = [
        r.model_copy(update={"status": plan.releases.get(r.metadata.name, r.status)}) for r in releases
    ]
    updated_rbs = [
        r.model_copy(update={"status": plan.rollbacks.get(r.metadata.name, r.status)}) for r in rollbacks
    ]
    record_pass(
        pipeline, plan.pipeline, plan.events, updated, updated_rbs, pass_started=now, recorded=clock()
    )
    if not ok:
        return True, 2.0, False
    # Only with a cache: its overlay holds this pass's writes, so the next pass sees them at once.
    return True, plan.requeue_after, again


def _write_status(
    kube: Kube, plural: str, obj: Any, status: KubeModel, overlay: Overlay | None = None
) -> None:
    """Merge-patch an object's status to `status`, when it differs. With the cache's overlay, the
    answer goes into it: passes see this write before the watch delivers it (else a pass would
    compute its own status patch from the status before it)."""
    patch = merge_patch(obj.status.wire(), status.wire())
    if patch:
        stored = kube.patch_custom_status(plural, obj.metadata.namespace, obj.metadata.name, patch)
        WRITES.add("status_patch")
        if overlay is not None:
            overlay.wrote(plural, stored)


def report_orphan_release(
    kube: Kube, obj: dict[str, Any], clock: Clock = utcnow, overlay: Overlay | None = None
) -> None:
    """A Release whose Pipeline does not exist: say so in its status (heals when the pipeline appears)."""
    release = _parse(Release, obj, kube, overlay)
    if release is not None and release.status.phase not in TERMINAL_PHASES:
        _write_status(kube, "releases", release, unknown_pipeline_release(release, clock()), overlay)


def report_orphan_approval(
    kube: Kube,
    obj: dict[str, Any],
    clock: Clock = utcnow,
    overlay: Overlay | None = None,
    *,
    missing_pipeline: str | None = None,
) -> None:
    """An Approval whose Release does not exist (or names a missing Pipeline): say so in its status."""
    approval = _parse(Approval, obj, kube, overlay)
    if approval is not None:
        status = unknown_release_approval(approval, clock(), missing_pipeline=missing_pipeline)
        _write_status(kube, "approvals", approval, status, overlay)


def report_orphan_rollback(
    kube: Kube, obj: dict[str, Any], clock: Clock = utcnow, overlay: Overlay | None = None
) -> None:
    """A Rollback whose Pipeline does not exist: say so in its status."""
    rollback = _parse(Rollback, obj, kube, overlay)
    if rollback is not None and rollback.status.phase not in ROLLBACK_TERMINAL:
        _write_status(kube, "rollbacks", rollback, unknown_pipeline_rollback(rollback, clock()), overlay)


def report_pass_failure(
    kube: Kube,
    namespace: str,
    name: str,
    error: str,
    clock: Clock = utcnow,
    *,
    cache: Cache | None = None,
) -> None:
    """Say on the Pipeline that Conveyor's passes over it fail, and why (best effort: this runs when
    something already went wrong, perhaps because the Pipeline itself does not validate — so only its
    conditions are read). The next successful pass sets Reconciled back to True."""
    try:
        obj = kube.get_custom("pipelines", namespace, name)
        if obj is None:
            return
        raw = (obj.get("status") or {}).get("conditions") or []
        conditions = [Condition.model_validate(c) for c in raw]  # Conveyor's own: they validate
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        updated = reconciled(conditions, [error], generation=generation, now=clock())
        if updated != conditions:
            written = kube.patch_custom_status(
                "pipelines", namespace, name, {"conditions": [c.wire() for c in updated]}
            )
            if cache is not None:  # the next good pass compares with this, not the cache's older copy
                cache.overlay.wrote("pipelines", written)
            WRITES.add("status_patch")
    except Exception:
        log.warning("%s/%s: could not report the failing pass", namespace, name, exc_info=True)
