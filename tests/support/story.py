"""Given / When / Then over the real control plane and a real operator process.

A `Story` owns a pipeline namespace plus one namespace per stage, creates the Deployments a
pipeline targets, runs `conveyor run` scoped to those namespaces, and waits on watches (never
sleeps) for what the test expects — saying what it waited for when time runs out.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from conveyor.api.common import GROUP, VERSION
from conveyor.api.release import Release
from support.builders import REPO, approval_dict, commit_of, digest_of, pipeline_dict, release_dict
from support.cluster import kubectl_binary
from support.operator import OperatorProcess
from support.wait import has_condition, wait_for_list, wait_for_object

OLD_IMAGE = f"{REPO}@{digest_of('initial')}"
LEADS = r"is the leader now"  # the elector's line when a replica takes the Lease


def deployment_manifest(
    name: str, *, replicas: int = 2, containers: tuple[str, ...] = ("web",), progress_deadline: int = 600
) -> dict[str, Any]:
    """A Deployment of the application on the initial image (any cluster's)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": c, "image": OLD_IMAGE} for c in containers]},
            },
        },
    }


class Story:
    """One test's world: namespaces, objects, the operator, and waits."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kubeconfig: Path,
        namespaces: dict[str, str],
        users_dir: Path | None = None,
    ) -> None:
        self.api = api_client
        self.kubeconfig = kubeconfig
        self.ns = namespaces["pipeline"]
        self.stage_ns = {k: v for k, v in namespaces.items() if k != "pipeline"}
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.operator: OperatorProcess | None = None
        # More operator processes a story started (a standby, say): stopped with it, pass or fail.
        self.others: list[OperatorProcess] = []
        self.previous_lines: list[str] = []  # output of operators this story already replaced
        self.users_dir = users_dir
        self._user_clients: dict[str, client.CustomObjectsApi] = {}

    # --- identities (the local control plane's static-token users: docs/local-cluster.md)

    def grant_team_roles(self) -> None:
        """In the pipeline namespace: ci-bot creates releases; approvers and developers may create
        Approvals and Rollbacks (RBAC lets them; the pipeline's policy decides whether they count)."""
        rbac = client.RbacAuthorizationV1Api(self.api)
        for name, role, subjects in (
            (
                "releasers",
                "conveyor-releaser",
                [{"kind": "User", "name": "ci-bot"}, {"kind": "Group", "name": "developers"}],
            ),
            (
                "approvers",
                "conveyor-approver",
                [{"kind": "Group", "name": "conveyor:approvers"}, {"kind": "Group", "name": "developers"}],
            ),
        ):
            rbac.create_namespaced_role_binding(
                self.ns,
                {
                    "metadata": {"name": f"conveyor-{name}"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **s} for s in subjects],
                },
            )

    def as_user(self, user: str | None) -> client.CustomObjectsApi:
        """The CustomObjectsApi of a test identity (None: the admin)."""
        if user is None or self.users_dir is None:
            return self.custom
        if user not in self._user_clients:
            from kubernetes import config

            api = config.new_client_from_config(config_file=str(self.users_dir / f"{user}.kubeconfig"))
            self._user_clients[user] = client.CustomObjectsApi(api)
        return self._user_clients[user]

    # --- given

    def given_deployments(
        self,
        replicas: int = 2,
        *,
        name: str = "shop",
        containers: tuple[str, ...] = ("web",),
        progress_deadline: int = 600,
        stages: list[str] | None = None,
    ) -> None:
        """The application's Deployment in every stage namespace, rolled out on an initial image."""
        for stage, ns in self.stage_ns.items():
            if stages is not None and stage not in stages:
                continue
            self.create_deployment(
                ns, name, replicas=replicas, containers=containers, progress_deadline=progress_deadline
            )
        for stage, ns in self.stage_ns.items():
            if stages is None or stage in stages:
                self.wait_deployment_available(ns, name)

    def create_deployment(
        self,
        ns: str,
        name: str,
        *,
        replicas: int = 2,
        containers: tuple[str, ...] = ("web",),
        progress_deadline: int = 600,
    ) -> None:
        """One Deployment on the initial image."""
        self.apps.create_namespaced_deployment(
            ns,
            deployment_manifest(
                name, replicas=replicas, containers=containers, progress_deadline=progress_deadline
            ),
        )

    def deployment_with(
        self, stage: str, pod_spec: dict[str, Any], *, name: str = "shop", replicas: int = 1
    ) -> None:
        """A Deployment in one stage with this exact pod spec (labels and selector added)."""
        self.apps.create_namespaced_deployment(
            self.stage_ns[stage],
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
                },
            },
        )

    def wait_deployment_available(self, ns: str, name: str) -> None:
        """Wait until the Deployment reports Available=True."""
        wait_for_object(
            self.apps.list_namespaced_deployment,
            name,
            has_condition("Available"),
            namespace=ns,
            what=f"Deployment {ns}/{name} Available",
        )

    def given_pipeline(
        self, name: str = "shop", *, stages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """A Pipeline over this story's stage namespaces (staging, then prod behind an approval)."""
        if stages is None:
            stages = [
                {"name": "staging", "namespace": self.stage_ns["staging"], "rolloutDeadlineSeconds": 60},
                {
                    "name": "prod",
                    "namespace": self.stage_ns["prod"],
                    "requiresApproval": True,
                    "rolloutDeadlineSeconds": 60,
                },
            ]
        body = pipeline_dict(name, self.ns, stages=stages, **kwargs)
        return self.create("pipelines", body)

    def given_operator(
        self, *args: str, clusterwide: bool = False, fault: str | None = None
    ) -> OperatorProcess:
        """`conveyor run`, scoped to this story's namespaces, up and healthy (`args`: more flags;
        `fault`: armed with CONVEYOR_FAULT_POINT, it kills itself there — conveyor/kube/faults.py)."""
        scope = [] if clusterwide else [a for ns in (self.ns, *self.stage_ns.values()) for a in ("-n", ns)]
        args = (*scope, *args)
        env = {"CONVEYOR_FAULT_POINT": fault} if fault else None
        if self.operator is not None:
            self.previous_lines += self.operator.lines
        self.operator = OperatorProcess(self.kubeconfig, *args, env=env).start()
        self.operator.wait_for_log(r"is alive")
        self.operator.wait_healthy()
        return self.operator

    def given_two_replicas(self, *args: str) -> tuple[OperatorProcess, OperatorProcess]:
        """Two replicas on one Lease, scoped to this story's namespaces (`args`: more flags): `a`
        leads, `b` stands by with its caches synced. Both are stopped with the story."""
        lease = f"failover-{uuid.uuid4().hex[:6]}"
        scope = [a for ns in (self.ns, *self.stage_ns.values()) for a in ("-n", ns)]
        a = OperatorProcess(self.kubeconfig, *scope, *args, lease_name=lease, identity="replica-a").start()
        self.others.append(a)
        a.wait_for_log(LEADS)
        b = OperatorProcess(self.kubeconfig, *scope, *args, lease_name=lease, identity="replica-b").start()
        self.others.append(b)
        b.wait_for_log(r"campaigns for lease")
        body = b.wait_probe("/readyz")  # the standby is ready too: caches synced, the Lease read
        assert body.startswith("ok: standby"), body
        assert b.probe("/metrics")[1].count("conveyor_leader 0.0") == 1
        assert not any("is the leader now" in line for line in b.lines)
        return a, b

    def then_operator_dies_at(self, fault: str, timeout: float = 60) -> None:
        """Wait for the operator's "fault point reached" line for `fault`, then for its exit by SIGKILL."""
        assert self.operator is not None
        self.operator.wait_for_log(rf'"fault point reached".*"faultPoint": "{fault}"', timeout=timeout)
        code = self.operator.wait_exit()
        assert code == -9, f"the operator exited with {code}, not by SIGKILL"

    def restart_operator(self) -> None:
        """SIGKILL the operator and start a new one (nothing is shared but the API server) — with
        the same identity on the same Lease, as a restarted Pod: it leads again at once."""
        assert self.operator is not None
        self.operator.kill()
        self.operator = self.operator.restarted().start()
        self.operator.wait_for_log(r"is alive")
        self.operator.wait_healthy()

    # --- when

    def create(self, plural: str, body: dict[str, Any], *, as_user: str | None = None) -> dict[str, Any]:
        """Create a Conveyor object in the pipeline namespace (as the admin, or a test identity)."""
        body = {**body, "metadata": {**body["metadata"], "namespace": self.ns}}
        result: dict[str, Any] = self.as_user(as_user).create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, body
        )
        return result

    def when_release(self, name: str, *, as_user: str | None = "ci-bot", **kwargs: Any) -> dict[str, Any]:
        """CI (ci-bot) creates a Release (commit and digest derived from the name, or `label`)."""
        return self.create("releases", release_dict(name, namespace=self.ns, **kwargs), as_user=as_user)

    def when_approved(
        self,
        release: str,
        stage: str = "prod",
        name: str | None = None,
        *,
        as_user: str | None = "alice",
        bind: bool = True,
    ) -> dict[str, Any]:
        """Someone (alice, by default) creates an Approval — bound to the release's uid, as
        `kubectl conveyor approve` does (`bind=False`: a plain one, only release and stage)."""
        uid = self.get("releases", release)["metadata"]["uid"] if bind else None
        return self.create("approvals", approval_dict(release, stage, uid=uid, name=name), as_user=as_user)

    def when_rollback(self, name: str, *, as_user: str | None = "alice", **spec: Any) -> dict[str, Any]:
        """Someone (alice) creates a Rollback (spec keys in camelCase: stage, toRelease, reason, verify)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Rollback",
            "metadata": {"name": name},
            "spec": {"pipeline": spec.pop("pipeline", "shop"), **spec},
        }
        return self.create("rollbacks", body, as_user=as_user)

    def promote(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """A release all the way to its target stage (approving every gate on the way); waits for Ready."""
        self.when_release(name, **kwargs)
        pipeline = self.get("pipelines", kwargs.get("pipeline", "shop"))
        for stage in pipeline["spec"]["stages"]:
            if stage.get("requiresApproval"):
                self.when_approved(name, stage["name"])
        return self.then_condition("releases", name, "Ready", timeout=90)

    def then_rollback_phase(self, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the rollback's phase is `phase`."""
        obj: dict[str, Any] = wait_for_object(
            self.lister("rollbacks"),
            name,
            lambda o: o is not None and (o.get("status") or {}).get("phase") == phase,
            what=f"rollback {name}: phase {phase}",
            timeout=timeout,
        )
        self.snapshot(obj, phase)
        return obj

    # --- then

    def lister(self, plural: str) -> Callable[..., Any]:
        """A list function for wait_for_object over Conveyor objects (dicts)."""
        return functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, plural)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        """The object as it is now."""
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, name
        )
        return result

    def then_release(
        self, name: str, predicate: Callable[[Any], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        """Wait until the release satisfies `predicate`."""
        obj: dict[str, Any] = wait_for_object(
            self.lister("releases"), name, predicate, what=f"release {name}: {what}", timeout=timeout
        )
        self.snapshot(obj, what)
        return obj

    def then_release_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the release's phase is `phase`."""
        return self.then_release(
            name,
            lambda o: o is not None and (o.get("status") or {}).get("phase") == phase,
            f"phase {phase}",
            timeout,
        )

    def then_condition(
        self,
        plural: str,
        name: str,
        ctype: str,
        *,
        status: str = "True",
        reason: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Wait until the object carries the condition."""
        obj: dict[str, Any] = wait_for_object(
            self.lister(plural),
            name,
            has_condition(ctype, status, reason),
            what=f"{plural}/{name} {ctype}={status}" + (f" ({reason})" if reason else ""),
            timeout=timeout,
        )
        self.snapshot(obj, f"{ctype}-{status}-{reason}")
        return obj

    def deployment_image(self, stage: str, name: str = "shop", container: str = "web") -> str:
        """The image a stage's Deployment runs now."""
        dep = self.apps.read_namespaced_deployment(name, self.stage_ns[stage])
        return next(c.image for c in dep.spec.template.spec.containers if c.name == container)

    def job(self, owner: str, stage: str, kind: str, *, plural: str = "releases") -> str:
        """The name Conveyor gives a Job: `<owner>-<stage>-<kind>-<tag of the owner's uid>` (kind: migrate,
        smoke, down; owner: a release, or a rollback with plural="rollbacks")."""
        from conveyor.core.jobs import JobKind, job_name

        uid = self.get(plural, owner)["metadata"]["uid"]
        return job_name(owner, uid, stage, JobKind(kind))

    def auto_rollback(self, release: str, stage: str) -> str:
        """The name of the Rollback Conveyor creates when `release` fails in `stage` (onFailure)."""
        from conveyor.core.release_step import auto_rollback_name

        return auto_rollback_name(Release.model_validate(self.get("releases", release)), stage)

    def jobs(self, stage: str) -> list[str]:
        """Names of Conveyor's Jobs in a stage namespace."""
        return sorted(
            j.metadata.name
            for j in self.batch.list_namespaced_job(
                self.stage_ns[stage], label_selector="app.kubernetes.io/managed-by=conveyor"
            ).items
        )

    def events(self, name: str) -> list[str]:
        """Reasons of the Events about an object in the pipeline namespace, oldest first."""
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        items.sort(key=lambda e: (e.event_time or e.first_timestamp, e.metadata.name))
        return [e.reason for e in items]

    def then_event(self, name: str, reason: str, timeout: float = 30) -> None:
        """Wait until an Event with `reason` about the object exists."""
        wait_for_list(
            self.core.list_namespaced_event,
            lambda items: any(e.reason == reason for e in items),
            what=f"an Event {reason} about {name}",
            timeout=timeout,
            namespace=self.ns,
            field_selector=f"involvedObject.name={name}",
        )

    def then_job_event(self, job: str, reason: str, stage: str = "staging", timeout: float = 30) -> None:
        """Wait until the Job controller posted an Event `reason` about a Job in a stage namespace."""
        wait_for_list(
            self.core.list_namespaced_event,
            lambda items: any(e.reason == reason for e in items),
            what=f"an Event {reason} about Job {job}",
            timeout=timeout,
            namespace=self.stage_ns[stage],
            field_selector=f"involvedObject.kind=Job,involvedObject.name={job}",
        )

    def kubectl(self, *args: str, input_: str | None = None) -> str:
        """Run kubectl against the cluster, in the pipeline namespace."""
        out = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), "-n", self.ns, *args],
            capture_output=True,
            text=True,
            check=True,
            input=input_,
        )
        return out.stdout

    def capture(self, folder: Path, test: str) -> None:
        """Write every Conveyor object of this story to folder/<test>__<kind>__<name>.json (no
        server-managed noise), as fixtures captured from a real run."""
        folder.mkdir(parents=True, exist_ok=True)
        for plural in ("pipelines", "releases", "approvals", "rollbacks"):
            for obj in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural)["items"]:
                meta = obj["metadata"]
                for noise in ("managedFields", "uid", "resourceVersion", "namespace"):
                    meta.pop(noise, None)
                name = f"{test}__{obj['kind']}__{meta['name']}.json"
                (folder / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def snapshot(self, obj: dict[str, Any] | None, tag: str) -> None:
        """With CONVEYOR_CAPTURE_DIR set, keep the object as it is at an awaited moment."""
        folder = os.environ.get("CONVEYOR_CAPTURE_DIR")
        if not folder or not obj or "kind" not in obj:
            return
        obj = json.loads(json.dumps(obj))
        for noise in ("managedFields", "uid", "resourceVersion", "namespace"):
            obj["metadata"].pop(noise, None)
        name = f"{obj['kind']}__{obj['metadata']['name']}__{re.sub('[^A-Za-z0-9]+', '-', tag)}.json"
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def audit_event(self, event: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until the operator has logged an audit line for `event`; return all such lines.
        (The log line is written just before the Event is posted, but read by another thread.)"""
        assert self.operator is not None
        self.operator.wait_for_log(rf'"logger": "conveyor.audit".*"event": "{event}"', timeout=timeout)
        return [a for a in self.audit_lines() if a.get("event") == event]

    def audit_lines(self) -> list[dict[str, Any]]:
        """The operator's structured audit log lines so far."""
        assert self.operator is not None
        out = []
        for line in [*self.previous_lines, *self.operator.lines]:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get("logger") == "conveyor.audit":
                out.append(data)
        return out


def image_of(label: str, prefix: str = "") -> str:
    """The image a release with this label promotes."""
    return f"{REPO}@{digest_of(label, prefix)}"


def short(label: str) -> str:
    """The short commit of a label."""
    return commit_of(label)[:7]


def status(obj: dict[str, Any]) -> dict[str, Any]:
    """The status of an object (empty when none yet)."""
    return obj.get("status") or {}


def stage_record(obj: dict[str, Any], stage: str) -> dict[str, Any]:
    """The release's record of one stage."""
    return next((s for s in status(obj).get("stages", []) if s["name"] == stage), {})
