"""A simulated cluster that drives the pure core the way the shell does (issue #10's model test).

`SimCluster` is the API server and the controllers the core depends on, in memory:

- Pipeline, Release, Approval and Rollback objects as the API server stores them (wire dicts), with
  uids, resourceVersions and creationTimestamps at one-second granularity; an admission step that
  stamps `requester`/`approver` from the acting user and refuses a forged stamp (as the
  ValidatingAdmissionPolicy does), and a garbage collector for ownerReferences.
- Deployments with images, annotations and replica progress (the Deployment controller is driven by
  `rollout(...)`); Jobs with outcomes (driven by `finish_job(...)`); namespaces.
- A true clock (the API server's, with microseconds) and an operator clock that may be skewed from it.

`reconcile()` is one operator pass, like `handlers/reconcile.reconcile_pipeline`: read the objects,
observe the world, call `conveyor.core.promotion.reconcile`, then perform the actions, then the
status merge-patches (rollbacks', releases', approvals', the pipeline's), then the events.
`reconcile(crash_after=k)` is an operator killed after the actions and k status writes.
Every pass is kept as a `PassRecord` for the invariants (tests/support/invariants.py).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.api.approval import Approval, ApprovalStatus
from conveyor.api.common import KubeModel
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.api.rollback import Rollback
from conveyor.core import plan as plan_mod
from conveyor.core.jobs import MANAGED_BY, PIPELINE_LABEL, PIPELINE_NAMESPACE_ANNOTATION
from conveyor.core.patch import merge_patch
from conveyor.core.plan import Plan
from conveyor.core.promotion import reconcile, unknown_release_approval
from conveyor.core.world import DeploymentView, JobView, StageWorld, World
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


class Refused(Exception):
    """The sim API server refused a request (admission, or the name exists)."""


def _apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _apply_merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _ts(moment: datetime) -> str:
    """A creationTimestamp: the API server keeps whole seconds."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Write:
    """One status merge-patch the pass made (or would have made, had it not crashed)."""

    plural: str
    name: str
    uid: str
    status: dict[str, Any]  # the full new status, wire form
    applied: bool


@dataclass
class Applied:
    """One action the sim performed, with what it meant."""

    action: Any
    owner_uid: str | None  # uid of the release/rollback named by action.owner, at the pass's read
    result: str  # "ok", "exists", "not-found"


@dataclass
class PassRecord:
    """Everything one operator pass saw, decided and did."""

    index: int
    true_time: datetime
    now: datetime  # the operator's clock
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

    def release(self, name: str) -> Release | None:
        return next((r for r in self.releases if r.metadata.name == name), None)

    def rollback(self, name: str) -> Rollback | None:
        return next((r for r in self.rollbacks if r.metadata.name == name), None)

    def owner_uid(self, owner: str) -> str | None:
        obj = self.release(owner) or self.rollback(owner)
        return obj.metadata.uid if obj is not None else None


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


class SimCluster:
    """The API server, the Deployment and Job controllers and the garbage collector, in memory."""

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
    ) -> None:
        self.t = T0 + timedelta(microseconds=123_456)
        self.skew = timedelta(seconds=skew_seconds)
        self._uids = itertools.count(1)
        self._rv = itertools.count(1)
        self.passes: list[PassRecord] = []
        self.jobs_created: list[JobCreation] = []
        self.image_sets: list[ImageSet] = []
        self.events: list[tuple[int, Any]] = []
        self.refusals: list[str] = []
        self.true_created: dict[str, datetime] = {}  # uid -> true creation time (µs)
        self.facts: dict[str, dict[str, Any]] = {}  # uid -> the object as created (any kind, forever)
        self.deleted: set[str] = set()  # uids
        self.namespaces: set[str] = {NAMESPACE}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PLURALS}
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
        self.initial_image = f"{REPO}@{digest_of('before-conveyor')}"
        for s in stages:
            self.namespaces.add(s["namespace"])
            for t in spec_pipeline["spec"]["targets"]:
                self.deployments[(s["namespace"], t["deployment"])] = self._deployment(
                    s["namespace"], t["deployment"], t["container"], replicas
                )

    # --- clocks ---------------------------------------------------------------------------------

    def operator_now(self) -> datetime:
        return self.t + self.skew

    def tick(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    # --- objects --------------------------------------------------------------------------------

    def _stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = NAMESPACE
        uid = f"uid-{next(self._uids):04d}-{meta['name']}"[:36]
        meta.update(
            uid=uid,
            generation=1,
            resourceVersion=str(next(self._rv)),
            creationTimestamp=_ts(self.t),
        )
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
        for other_plural in PLURALS:
            for other_name, other in list(self.objects[other_plural].items()):
                refs = other["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    self.delete(other_plural, other_name)
        return True

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
            "metadata": {"name": name, "namespace": namespace, "generation": 1, "annotations": {}},
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
    ) -> None:
        dep = self.deployments.get((namespace, name))
        if dep is None:
            raise KeyError(f"Deployment {namespace}/{name} not found")
        before = copy.deepcopy(dep["spec"]["template"])
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
        if dep["spec"]["template"] != before:
            dep["metadata"]["generation"] += 1
            dep["status"] = self._rollout_status(
                dep["metadata"]["generation"], dep["spec"]["replicas"], "pending"
            )

    def rollout(self, namespace: str, outcome: str = "complete") -> None:
        """The Deployment controller acts on every Deployment of a namespace that is not rolled out:
        complete, stall (a pod never becomes available), or fail (ProgressDeadlineExceeded)."""
        for (ns, _), dep in self.deployments.items():
            if ns != namespace:
                continue
            st = dep["status"]
            done = (
                st.get("observedGeneration") == dep["metadata"]["generation"]
                and st.get("updatedReplicas") == dep["spec"]["replicas"]
                and not st.get("unavailableReplicas")
            )
            if not done:
                dep["status"] = self._rollout_status(
                    dep["metadata"]["generation"], dep["spec"]["replicas"], outcome
                )

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
            return
        if job["status"].get("conditions"):
            return  # already finished
        if outcome == "complete":
            cond = {"type": "Complete", "status": "True"}
        else:
            reason = "DeadlineExceeded" if outcome == "deadline" else "BackoffLimitExceeded"
            cond = {"type": "Failed", "status": "True", "reason": reason, "message": "Job failed"}
        job["status"] = {"conditions": [cond]}

    def running_jobs(self) -> list[tuple[str, str]]:
        return sorted(k for k, j in self.jobs.items() if not j["status"].get("conditions"))

    # --- one operator pass ----------------------------------------------------------------------

    def _parse(self, model: type[KubeModel], objs: list[dict[str, Any]]) -> list[Any]:
        return [model.model_validate(o) for o in objs]

    def observe(self, pipeline: Pipeline) -> World:
        """What `handlers/reconcile.observe` reads: each stage's target Deployments, the namespace
        when a Deployment is missing, and the pipeline's Jobs in each stage namespace (by label)."""
        world = World(identity_enforced=True)
        for stage in pipeline.spec.stages:
            sw = StageWorld(namespace=stage.namespace)
            for t in pipeline.spec.targets:
                obj = self.deployments.get((stage.namespace, t.deployment))
                sw.deployments[t.deployment] = DeploymentView.from_object(copy.deepcopy(obj)) if obj else None
            if any(v is None for v in sw.deployments.values()):
                sw.namespace_exists = stage.namespace in self.namespaces
            world.stages[stage.name] = sw
        labels = {**MANAGED_BY, PIPELINE_LABEL: pipeline.metadata.name}
        for stage in pipeline.spec.stages:
            seen = world.stages[stage.name]
            if not seen.namespace_exists:
                continue
            for (namespace, name), job in self.jobs.items():
                meta = job.get("metadata") or {}
                if (
                    namespace == stage.namespace
                    and labels.items() <= (meta.get("labels") or {}).items()
                    and (meta.get("annotations") or {}).get(PIPELINE_NAMESPACE_ANNOTATION)
                    == pipeline.metadata.namespace
                ):
                    seen.jobs[name] = JobView.from_object(copy.deepcopy(job))
        return world

    def reconcile(self, *, crash_after: int | None = None) -> PassRecord:
        """One pass. `crash_after=k`: the operator dies after the actions and k status writes."""
        pipeline = Pipeline.model_validate(copy.deepcopy(self.pipeline))
        releases = self._parse(
            Release, [copy.deepcopy(o) for o in self.releases.values() if o["spec"]["pipeline"] == PIPELINE]
        )
        names = {r.metadata.name for r in releases}
        approvals = self._parse(
            Approval, [copy.deepcopy(o) for o in self.approvals.values() if o["spec"]["release"] in names]
        )
        orphans = self._parse(
            Approval, [copy.deepcopy(o) for o in self.approvals.values() if o["spec"]["release"] not in names]
        )
        rollbacks = self._parse(
            Rollback, [copy.deepcopy(o) for o in self.rollbacks.values() if o["spec"]["pipeline"] == PIPELINE]
        )
        world = self.observe(pipeline)
        now = self.operator_now()
        record = PassRecord(
            index=len(self.passes),
            true_time=self.t,
            now=now,
            pipeline=pipeline,
            releases=releases,
            approvals=approvals,
            rollbacks=rollbacks,
            world=world,
            plan=None,
        )
        self.passes.append(record)
        try:
            record.plan = reconcile(pipeline, releases, approvals, world, now, rollbacks=rollbacks)
        except Exception as e:  # a pass that raises is a finding (one bad object wedges a pipeline)
            record.error = e
            return record
        failed = self._perform(record)
        self._write_statuses(record, failed, crash_after, orphans)
        if not record.crashed:
            self.events.extend((record.index, e) for e in record.plan.events if e.name not in failed)
        return record

    ACTION_ORDER = (
        "SetImage",
        "DeleteJob",
        "CreateJob",
        "CreateRollback",
        "LabelRelease",
        "OwnApproval",
        "DeleteRelease",
    )

    def _perform(self, record: PassRecord) -> set[str]:
        assert record.plan is not None
        failed: set[str] = set()
        for action in record.plan.actions:
            if type(action).__name__ not in self.ACTION_ORDER:
                raise AssertionError(
                    f"unknown action {type(action).__name__}: teach tests/support/sim.py what it does"
                )
        ordered = sorted(record.plan.actions, key=lambda a: self.ACTION_ORDER.index(type(a).__name__))
        for action in ordered:
            if action.owner in failed:
                continue
            uid = record.owner_uid(action.owner)
            result = self._do(record, action, uid)
            record.applied.append(Applied(action, uid, result))
            if result == "not-found" and type(action).__name__ in ("SetImage", "LabelRelease", "OwnApproval"):
                failed.add(action.owner)  # the shell's API call raised: that owner's status waits
        return failed

    def _do(self, record: PassRecord, action: Any, uid: str | None) -> str:
        kind = type(action).__name__
        if kind == "SetImage":
            try:
                self._patch_deployment(action.namespace, action.deployment, action.images, action.annotations)
            except KeyError:
                return "not-found"
            self.image_sets.append(
                ImageSet(
                    action.namespace, action.deployment, dict(action.images), action.owner, uid, record.index
                )
            )
            return "ok"
        if kind == "CreateJob":
            meta = action.manifest["metadata"]
            key = (action.namespace, meta["name"])
            if action.namespace not in self.namespaces:
                return "not-found"
            if key in self.jobs:
                return "exists"  # 409: the shell treats it as done
            job = copy.deepcopy(action.manifest)
            job["status"] = {}
            self.jobs[key] = job
            labels = meta.get("labels") or {}
            self.jobs_created.append(
                JobCreation(
                    namespace=action.namespace,
                    name=meta["name"],
                    owner_uid=(meta.get("annotations") or {}).get("conveyor.dev/release-uid", ""),
                    kind=labels.get("conveyor.dev/job", ""),
                    stage=labels.get("conveyor.dev/stage", ""),
                    pass_index=record.index,
                )
            )
            return "ok"
        if kind == "DeleteJob":
            return "ok" if self.jobs.pop((action.namespace, action.name), None) is not None else "not-found"
        if kind == "CreateRollback":
            try:
                self._create("rollbacks", copy.deepcopy(action.manifest))
            except Refused:
                return "exists"
            created = self.rollbacks[action.manifest["metadata"]["name"]]
            created["spec"]["requester"] = {"username": OPERATOR, "groups": list(USERS[OPERATOR])}
            return "ok"
        if kind == "LabelRelease":
            obj = self.releases.get(action.release)
            if obj is None:
                return "not-found"
            obj["metadata"].setdefault("labels", {}).update(action.labels)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            return "ok"
        if kind == "OwnApproval":
            obj = self.approvals.get(action.approval)
            if obj is None:
                return "not-found"
            target = self.releases.get(action.release)
            if target is None or target["metadata"]["uid"] != action.release_uid:
                return "not-found"
            refs = obj["metadata"].setdefault("ownerReferences", [])
            if not any(r.get("uid") == action.release_uid for r in refs):
                refs.append(self._owner_ref(target))
            return "ok"
        if kind == "DeleteRelease":
            return "ok" if self.delete("releases", action.release) else "not-found"
        raise AssertionError(f"unknown action {kind}")

    def _write_statuses(
        self, record: PassRecord, failed: set[str], crash_after: int | None, orphans: list[Approval]
    ) -> None:
        plan = record.plan
        assert plan is not None
        todo: list[tuple[str, str, KubeModel, KubeModel]] = []
        by_rb = {r.metadata.name: r for r in record.rollbacks}
        todo += [("rollbacks", n, by_rb[n].status, st) for n, st in plan.rollbacks.items()]
        by_rel = {r.metadata.name: r for r in record.releases}
        todo += [("releases", n, by_rel[n].status, st) for n, st in plan.releases.items()]
        by_appr = {a.metadata.name: a for a in record.approvals}
        todo += [("approvals", n, by_appr[n].status, st) for n, st in plan.approvals.items()]
        # The orphan-approval handler (an Approval whose release does not exist).
        for a in orphans:
            todo.append(("approvals", a.metadata.name, a.status, unknown_release_approval(a, record.now)))
        todo.append(("pipelines", PIPELINE, record.pipeline.status, plan.pipeline))
        uids = {r.metadata.name: r.metadata.uid for r in [*record.releases, *record.rollbacks]}
        uids.update({a.metadata.name: a.metadata.uid for a in [*record.approvals, *orphans]})
        uids[PIPELINE] = record.pipeline.metadata.uid
        written = 0
        for plural, name, old, new in todo:
            if name in failed:
                continue
            patch = merge_patch(old.wire(), new.wire())
            if not patch:
                continue
            applied = crash_after is None or written < crash_after
            record.writes.append(Write(plural, name, uids.get(name, ""), new.wire(), applied))
            if not applied:
                record.crashed = True
                continue
            written += 1
            target = self.pipeline if plural == "pipelines" else self.objects[plural].get(name)
            if target is None or target["metadata"]["uid"] != uids.get(name):
                continue  # 404: deleted meanwhile (the shell ignores it)
            target["status"] = _apply_merge_patch(target.get("status") or {}, patch)
            target["metadata"]["resourceVersion"] = str(next(self._rv))
        if crash_after is not None:
            record.crashed = True

    # --- convenience for stories ----------------------------------------------------------------

    def status(self, plural: str, name: str) -> dict[str, Any]:
        if plural == "pipelines":
            return self.pipeline.get("status") or {}
        return (self.objects[plural].get(name) or {}).get("status") or {}

    def settle(self, passes: int = 8, outcome: str = "complete") -> None:
        """Let everything finish well: Jobs complete, rollouts complete, and the operator passes."""
        for _ in range(passes):
            self.reconcile()
            for ns, name in self.running_jobs():
                self.finish_job(ns, name, outcome)
            for ns in sorted(self.namespaces):
                self.rollout(ns)
            self.tick(1)


def approval_status(obj: dict[str, Any]) -> ApprovalStatus:
    return ApprovalStatus.model_validate(obj.get("status") or {})


def utc(seconds: float) -> datetime:
    return datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC) + timedelta(seconds=seconds)


__all__ = ["OPERATOR", "USERS", "PassRecord", "Refused", "SimCluster", "plan_mod"]
