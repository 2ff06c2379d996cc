"""A real Argo CD (hack/argocd) and a Git repository it syncs from, for the gitops stories.

`GitRepo` is a bare repository on disk, served to Argo CD as a file:// URL, with a work tree the
test commits to (as CI or a person would push). `ArgoCD` creates Applications, tells Argo CD a
commit landed (the refresh annotation a Git webhook sets), reads what Argo CD decided (sync status,
each resource's health as Argo CD's own Lua runtime judged it), and keeps every Application status
it saw through a watch, so a story can prove what never happened (no OutOfSync, no extra sync).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from support.cluster import REPO
from support.wait import wait_for_object

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
NAMESPACE = "argocd"
REFRESH_TIMESTAMP = "argocd.argoproj.io/refresh-timestamp"


def argocd_up(cluster_dir: Path) -> None:
    """Start (or reuse) Argo CD beside the local control plane in `cluster_dir`."""
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(cluster_dir)}
    status = subprocess.run([REPO / "hack" / "argocd", "status"], env=env, capture_output=True, check=False)
    if status.returncode != 0:
        subprocess.run([REPO / "hack" / "argocd", "up"], env=env, check=True)


class GitRepo:
    """A bare repository (what Argo CD reads, file://) and a work tree the test pushes from."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "delivery.git"
        self.work = root / "work"
        self.url = f"file://{self.bare}"
        self._git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        self._git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)
        self._git("config", "user.email", "ci@acme.example")
        self._git("config", "user.name", "CI")
        self._git("checkout", "--quiet", "-b", "main")

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or self.work)}
        out = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def write(self, path: str, text: str) -> None:
        """Put a file in the work tree (not yet committed)."""
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        """Delete a file from the work tree (not yet committed)."""
        (self.work / path).unlink()

    def push(self, message: str) -> str:
        """Commit everything in the work tree and push it to main; the new commit's SHA."""
        self._git("add", "--all")
        self._git("commit", "--quiet", "-m", message)
        self._git("push", "--quiet", "origin", "main")
        return self._git("rev-parse", "HEAD")


@dataclass
class Seen:
    """One Application status as the watch saw it."""

    resource_version: str
    sync: str
    revision: str
    operation: tuple[str, str]  # (startedAt, revision) of the last sync operation: one per sync
    results: tuple[str, ...]  # what its sync did to each resource ("… unchanged", "… configured")
    out_of_sync: tuple[tuple[str, str, str], ...]  # (kind, name, health) of each OutOfSync resource


@dataclass
class ArgoCD:
    """Applications in Argo CD's namespace, and what Argo CD said about them."""

    api: client.ApiClient
    custom: client.CustomObjectsApi = field(init=False)
    seen: dict[str, list[Seen]] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)

    def create(self, body: dict[str, Any]) -> None:
        """Create an Application and record every status it goes through from its creation on."""
        name = body["metadata"]["name"]
        self.seen[name] = []
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        rv = created["metadata"]["resourceVersion"]
        t = threading.Thread(target=self._record, args=(name, rv), daemon=True, name=f"watch-{name}")
        t.start()
        self._threads.append(t)

    def create_project(self, body: dict[str, Any]) -> None:
        """Create an AppProject (deleted with the story's Applications)."""
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "appprojects", body)
        self.projects.append(body["metadata"]["name"])

    def _record(self, name: str, rv: str) -> None:
        """Append every version of the Application after `rv` to `seen[name]` (a watch resumed
        from the last version seen, so nothing between two watch requests is missed)."""
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=rv,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    status = obj.get("status") or {}
                    with self._lock:
                        self.seen[name].append(
                            Seen(
                                resource_version=rv,
                                sync=(status.get("sync") or {}).get("status", ""),
                                revision=(status.get("sync") or {}).get("revision", ""),
                                operation=(
                                    (status.get("operationState") or {}).get("startedAt", ""),
                                    ((status.get("operationState") or {}).get("operation") or {})
                                    .get("sync", {})
                                    .get("revision", ""),
                                ),
                                out_of_sync=tuple(
                                    (
                                        r.get("kind", ""),
                                        r.get("name", ""),
                                        (r.get("health") or {}).get("status", ""),
                                    )
                                    for r in status.get("resources") or []
                                    if r.get("status") == "OutOfSync"
                                ),
                                results=tuple(
                                    r.get("message", "")
                                    for r in (
                                        ((status.get("operationState") or {}).get("syncResult") or {}).get(
                                            "resources"
                                        )
                                        or []
                                    )
                                ),
                            )
                        )
                        self._lock.notify_all()
                    if self._stop.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # too old to resume from (not within a story's minute): say so
                    self.gaps.append(name)
                    rv = self.get(name)["metadata"]["resourceVersion"]
                self._stop.wait(0.5)  # the API server refused or blinked: watch again, not in a spin
            except Exception as e:  # a dropped connection: resume from rv, once calm
                self.errors.append(f"{name}: {e!r}")
                self._stop.wait(0.5)
            finally:
                w.stop()

    def recorded(self, name: str, timeout: float = 30) -> list[Seen]:
        """Every version of the Application from its creation to now: waits until the recording
        watch has seen the version the API server has now, and fails if the record has a gap."""
        now = self.get(name)["metadata"]["resourceVersion"]
        deadline = time.monotonic() + timeout
        with self._lock:
            while not any(v.resource_version == now for v in self.seen[name]):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"the watch on {name} never saw version {now} ({self.errors})"
                self._lock.wait(remaining)
            assert name not in self.gaps, f"the watch on {name} lost versions (410 Gone): incomplete"
            return list(self.seen[name])

    def stop(self) -> None:
        """Stop recording and delete the Applications (their synced objects are left in place:
        the story's namespaces go with the story)."""
        self._stop.set()
        for name in self.seen:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            except ApiException as e:
                if e.status != 404:
                    raise
        for t in self._threads:
            t.join(timeout=10)
        for name in self.projects:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "appprojects", name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def get(self, name: str) -> dict[str, Any]:
        """The Application as it is now."""
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )
        return obj

    def refresh(self, name: str, kind: str = "normal") -> str:
        """Tell Argo CD to compare with Git now, as its Git webhook handler does (util/argo
        RefreshApp: the refresh annotation and a timestamp; the controller removes both once a
        reconciliation that started after them is written, and keeps them if they changed under
        it). Returns the timestamp."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        annotations = {"argocd.argoproj.io/refresh": kind, REFRESH_TIMESTAMP: stamp}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, {"metadata": {"annotations": annotations}}
        )
        return stamp

    def wait(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90
    ) -> dict[str, Any]:
        """Wait (on a watch) until the Application satisfies `predicate`."""
        obj: dict[str, Any] = wait_for_object(
            lambda **kw: self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, **kw),
            name,
            lambda o: o is not None and predicate(o),
            what=f"Application {name}: {what}",
            timeout=timeout,
        )
        return obj

    def wait_synced(self, name: str, revision: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until Argo CD synced `revision` and reports it Synced with the sync Succeeded."""
        return self.wait(
            name,
            lambda o: (
                sync_of(o) == ("Synced", revision)
                and ((o.get("status") or {}).get("operationState") or {}).get("phase") == "Succeeded"
                and (((o.get("status") or {}).get("operationState") or {}).get("syncResult") or {}).get(
                    "revision"
                )
                == revision
            ),
            f"Synced at {revision[:7]}",
            timeout,
        )

    def wait_health(
        self, name: str, kind: str, obj_name: str, health: str, timeout: float = 90
    ) -> dict[str, Any]:
        """Wait until Argo CD judges the resource `kind/obj_name` of the Application `health`."""
        return self.wait(
            name,
            lambda o: (resource(o, kind, obj_name) or {}).get("health", {}).get("status") == health,
            f"{kind} {obj_name} {health}",
            timeout,
        )

    def reconciled(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """Ask for a hard refresh and wait until Argo CD has compared the live state with Git
        again: what it decided then is its verdict on the world as it is now. (The controller
        removes the refresh annotations only after writing the status of a reconciliation that
        began with them — a JSON-patch test on the timestamp — so our timestamp gone means that.)"""
        stamp = self.refresh(name, "hard")
        return self.wait(
            name,
            lambda o: (o["metadata"].get("annotations") or {}).get(REFRESH_TIMESTAMP) != stamp,
            "compared with Git after a hard refresh",
            timeout,
        )


def sync_of(app: dict[str, Any]) -> tuple[str, str]:
    """(sync status, revision) of an Application."""
    sync = (app.get("status") or {}).get("sync") or {}
    return sync.get("status", ""), sync.get("revision", "")


def resource(app: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    """The Application's status entry for one of its resources."""
    for r in (app.get("status") or {}).get("resources") or []:
        if r.get("kind") == kind and r.get("name") == name:
            return dict(r)
    return None


def gitops_layout(staging: str, prod: str) -> dict[str, str]:
    """examples/gitops as files for a test repository, its stage namespaces renamed to the
    story's (path under examples/gitops -> text); releases/ left out (the story commits them)."""
    root = REPO / "examples" / "gitops"
    files = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("releases/"):
            continue
        files[f"examples/gitops/{rel}"] = rename(path.read_text(), staging, prod)
    return files


def rename(text: str, staging: str, prod: str) -> str:
    """The example's namespaces (shop-staging, shop-prod) as the story's."""
    return re.sub(r"\bshop-prod\b", prod, re.sub(r"\bshop-staging\b", staging, text))


def example_applications(repo_url: str, pipeline_ns: str, suffix: str) -> list[dict[str, Any]]:
    """examples/argocd/application.yaml (the delivery AppProject, then the two Applications), aimed
    at the test repository and namespace, the names made unique per story."""
    import yaml

    docs = list(yaml.safe_load_all((REPO / "examples" / "argocd" / "application.yaml").read_text()))
    projects = {d["metadata"]["name"] for d in docs if d["kind"] == "AppProject"}
    for doc in docs:
        doc["metadata"]["name"] += f"-{suffix}"
        spec = doc["spec"]
        if doc["kind"] == "AppProject":
            spec["sourceRepos"] = [repo_url]
            for dest in spec["destinations"]:
                if dest.get("namespace") == "default":
                    dest["namespace"] = pipeline_ns
            continue
        if spec["project"] in projects:
            spec["project"] += f"-{suffix}"
        spec["source"]["repoURL"] = repo_url
        dest = spec["destination"]
        if dest.get("namespace") == "default":
            dest["namespace"] = pipeline_ns
    return docs


def captured(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without server-managed noise, as a fixture."""
    obj = json.loads(json.dumps(obj))
    for noise in ("managedFields", "uid", "resourceVersion", "namespace", "creationTimestamp"):
        obj["metadata"].pop(noise, None)
    (obj["metadata"].get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return obj


HEALTH = REPO / "examples" / "argocd" / "health"


def lua_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Conveyor's health check for `kind` (examples/argocd/health) run as Argo CD runs it — `obj`
    a global, the script returns hs — in a real Lua 5.1 (lupa; Argo CD embeds gopher-lua, a Lua
    5.1): {"status", "message"}."""
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute((HEALTH / f"conveyor.dev_{kind}.lua").read_text())
    return {"status": hs["status"], "message": hs["message"]}


def have_git() -> bool:
    """True when the git command is installed (the repo-server needs it too)."""
    return shutil.which("git") is not None
