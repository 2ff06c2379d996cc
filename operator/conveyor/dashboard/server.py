"""The dashboard's web server: JSON views over the store, a server-sent event stream that tells open
pages something changed, and — in local mode — the two actions a person takes (approve, roll back),
made with the viewer's own credentials so the API server stamps who they are.

Served on 127.0.0.1 by default. Locally ("personal" mode) every /api/ request needs the process's
token in an X-Conveyor-Token header (the event stream: in its query): the address the command prints
carries it in its fragment, which the page keeps in its own origin's storage — never in a cookie,
because browsers send 127.0.0.1's cookies to every port, so any local server could collect them. A
cross-site page cannot set that header without a CORS preflight this server never grants; every
request's Host must be one the server answers to (no DNS rebinding). The page and its assets hold no
secret and are served to anyone who reaches the port. Every asset comes from the package: nothing is
fetched from the Internet, so it works air-gapped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from conveyor import __version__
from conveyor.api.common import Identity
from conveyor.api.release import Release
from conveyor.dashboard.store import AWAY, Store
from conveyor.kube.client import Kube
from conveyor.views import actions
from conveyor.views.board import board
from conveyor.views.delivery import pipeline_page
from conveyor.views.journey import journey
from conveyor.views.release_page import UNREADABLE, release_page
from conveyor.views.waiting import ALREADY, waiting, would_count

log = logging.getLogger("conveyor.dashboard")
STATIC = resources.files("conveyor.dashboard") / "static"
ASSETS = {
    "app.js": "text/javascript",
    "stream.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUSH_DEBOUNCE = 0.15  # seconds: a burst of watch events becomes one push
RBAC_TTL = 30.0  # seconds an access review answer is reused
# Seconds a release page's Jobs and Events are reused while the release itself is unchanged: every
# change anywhere redraws every open page, which must not become a Job GET and an Event LIST each.
READS_TTL = 5.0
MADE_TTL = 120.0  # seconds an Approval this process made counts as "already approved" by itself
READ_TIMEOUT = (3.0, 5.0)  # a page's own reads (Jobs, Events): a hung API server costs seconds, not minutes
MAX_BODY = 16 * 1024


@dataclass
class Settings:
    """How this dashboard serves."""

    read_only: bool
    allowed_hosts: set[str]  # Host header values answered to (host or host:port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    enforced: bool = True  # the identity-stamping admission policies are installed
    # Locally the viewer's own credentials read and act, so every /api/ request must carry the
    # process's token. In the chart's Pod (read-only) the authenticating proxy in front decides who
    # may look, and the identity is the dashboard's ServiceAccount.
    personal: bool = True


def _same(given: str, secret: str) -> bool:
    """Constant-time equality of a value from a request and a secret (any characters: str
    compare_digest refuses non-ASCII with a TypeError — a 500 for a hostile header)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _api_message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "{}")
    except (ValueError, TypeError):
        body = {}
    return str(body.get("message") or f"{e.status} {e.reason}")


class Dashboard:
    """The aiohttp application and what it keeps between requests."""

    def __init__(self, kube: Kube, store: Store, settings: Settings) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.clients: set[asyncio.Queue[int]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._push_pending = False
        self._board: tuple[int, dict[str, Any]] | None = None
        self._viewer: tuple[float, Identity | None] | None = None
        self._may_create: dict[str, tuple[float, bool]] = {}
        self._reads: dict[tuple[str, str], tuple[float, str, Any]] = {}
        # Approvals are made one at a time, and the ones this process made stand until the watch
        # brings them: two quick clicks (or two tabs) make one Approval, not a duplicate.
        self._approving = threading.Lock()
        self._made: dict[tuple[str, str, str, str], tuple[float, str]] = {}  # (ns, name, uid, stage)

    # --- wiring

    def app(self) -> web.Application:
        """The web application."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.asset)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/board", self.api_board)
        app.router.add_get("/api/whoami", self.api_whoami)
        app.router.add_get("/api/waiting", self.api_waiting)
        app.router.add_get("/api/releases/{namespace}/{name}", self.api_release)
        app.router.add_get("/api/commits/{sha}", self.api_commit)
        app.router.add_get("/api/pipelines/{namespace}/{name}", self.api_pipeline)
        app.router.add_get("/api/stream", self.api_stream)
        app.router.add_post("/api/approve", self.api_approve)
        app.router.add_post("/api/rollback", self.api_rollback)
        app.on_startup.append(self._started)
        app.on_shutdown.append(self._stopping)
        return app

    async def _started(self, _: web.Application) -> None:
        self.loop = asyncio.get_running_loop()
        self.store.on_change = self._changed_threadsafe

    async def _stopping(self, _: web.Application) -> None:
        for q in list(self.clients):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(-1)  # each open stream ends
        self.store.close()

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = (request.headers.get("Host") or "").lower()
        if host not in self.settings.allowed_hosts:
            # DNS rebinding: a page of another site, pointed at 127.0.0.1 under its own name.
            refused: web.Response | None = _error(403, f"this dashboard does not answer to host {host!r}")
        else:
            refused = self._refused(request, host)
        response = refused if refused is not None else await handler(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def authorised(self, request: web.Request) -> bool:
        """True when the request carries this process's token (always, when not personal)."""
        if not self.settings.personal:
            return True
        given = request.headers.get("X-Conveyor-Token")
        if given is None and request.path == "/api/stream":
            given = request.query.get("token")  # EventSource cannot send headers
        return _same(given or "", self.settings.token)

    def _refused(self, request: web.Request, host: str) -> web.Response | None:
        if request.path.startswith("/api/") and not self.authorised(request):
            return _error(
                401,
                "this session's token is missing or wrong: open the address `kubectl conveyor dashboard` "
                "printed (the dashboard may have restarted: each start has a new one)",
            )
        if request.method not in ("GET", "HEAD"):
            if self.settings.read_only:
                return _error(403, "this dashboard is read-only")
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1].lower() != host:
                return _error(403, f"cross-origin request from {origin} refused")
            if request.content_type != "application/json":
                return _error(415, "send JSON")
        return None

    # --- live pushes

    def _changed_threadsafe(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed)

    def _changed(self) -> None:
        if self._push_pending or self.loop is None:
            return
        self._push_pending = True
        self.loop.call_later(PUSH_DEBOUNCE, self._push)

    def _push(self) -> None:
        self._push_pending = False
        version = self.store.version
        for q in list(self.clients):
            if q.full():
                q.get_nowait()  # only the newest version matters
            q.put_nowait(version)

    def _event(self, name: str, version: int) -> bytes:
        # The errors ride along: a page must not say "live" while the watches cannot reach the API.
        data = json.dumps({"version": version, "errors": self.errors()})
        return f"event: {name}\ndata: {data}\n\n".encode()

    async def api_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `change` (with the store's version) whenever anything shown changed."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        for k, v in SECURITY_HEADERS.items():
            response.headers[k] = v
        await response.prepare(request)
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        self.clients.add(queue)
        try:
            await response.write(self._event("hello", self.store.version))
            while True:
                try:
                    version = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if version < 0:
                    break
                await response.write(self._event("change", version))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(queue)
        return response

    # --- pages and assets

    async def index(self, _: web.Request) -> web.Response:
        """The single page (no secret in it: the token stays in the address the command printed)."""
        html = (STATIC / "index.html").read_text()
        html = html.replace("{{readOnly}}", "true" if self.settings.read_only else "false")
        html = html.replace("{{version}}", __version__)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def asset(self, request: web.Request) -> web.Response:
        """A file of the package's own (no CDN, no fonts from elsewhere)."""
        name = request.match_info["name"]
        if name not in ASSETS:
            return _error(404, "no such asset")
        return web.Response(
            body=(STATIC / name).read_bytes(),
            content_type=ASSETS[name],
            headers={"Cache-Control": "no-cache"},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        """200 once a watch has listed. What it watches and what it cannot read only with the token
        (locally, 127.0.0.1 is every user's)."""
        synced = len(self.store.synced)
        data: dict[str, Any] = {"ok": bool(synced)}
        if self.authorised(request):
            data |= {"synced": synced, "errors": self.errors(), "version": self.store.version}
        return _json(data, 200 if synced else 503)

    def errors(self) -> dict[str, str]:
        """What the store cannot watch now, and why ("kind/namespace": error)."""
        return {f"{k[0]}/{k[1] or '*'}": v for k, v in list(self.store.errors.items())}

    # --- views

    async def api_board(self, _: web.Request) -> web.Response:
        """Every pipeline by stage (computed once per store version)."""
        version = self.store.version
        if self._board is None or self._board[0] != version:
            data = await asyncio.to_thread(board, self.store.all("pipelines"), self.store.all("releases"))
            data["scope"] = self.store.scope.why
            data["errors"] = self.errors()
            self._board = (version, data)
        return _json(self._board[1])

    async def api_release(self, request: web.Request) -> web.Response:
        """One release's page: conditions, approvals, Jobs (read now), history, Events (read now)."""
        ns, name = request.match_info["namespace"], request.match_info["name"]
        rel: Release | None = self.store.get("releases", ns, name)
        if rel is None:
            return _error(404, f"no release {name} in namespace {ns} (or you may not read it)")
        pipeline = self.store.get("pipelines", ns, rel.spec.pipeline)
        releases = [r for r in self.store.all("releases") if r.metadata.namespace == ns]
        rollbacks = [r for r in self.store.all("rollbacks") if r.metadata.namespace == ns]
        key, now = (ns, name), time.monotonic()
        cached = self._reads.get(key)
        if cached is not None and cached[1] == rel.metadata.resource_version and now - cached[0] < READS_TTL:
            jobs, events = cached[2]
        else:
            jobs, events = await asyncio.to_thread(self._jobs_and_events, rel, pipeline)
            self._reads = {k: v for k, v in self._reads.items() if now - v[0] < READS_TTL}
            self._reads[key] = (now, rel.metadata.resource_version, (jobs, events))
        approvals = [a for a in self.store.all("approvals") if a.metadata.namespace == ns]
        data = release_page(rel, pipeline, releases, rollbacks, approvals, jobs, events, datetime.now(UTC))
        return _json(data)

    def _jobs_and_events(
        self, rel: Release, pipeline: Any
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]] | str]:
        """The release's Jobs (by name) and Events, read now — or, for each, why not (a string)."""
        jobs: dict[str, dict[str, Any]] = {}
        away = self.store.away
        for rec in rel.status.stages:
            stage = pipeline.stage(rec.name) if pipeline is not None else None
            if stage is None:
                continue
            for job in (rec.migration_job, rec.smoke_test_job):
                if not job:
                    continue
                if away:
                    jobs[job] = {UNREADABLE: AWAY}
                    continue
                if stage.cluster:
                    # Not in this cluster: a Job of the same name here would be another one.
                    jobs[job] = {UNREADABLE: f"it runs in cluster {stage.cluster} (kubectl --context there)"}
                    continue
                try:
                    jobs[job] = self.kube.request(
                        "GET",
                        f"/apis/batch/v1/namespaces/{quote(stage.namespace)}/jobs/{quote(job)}",
                        timeout=READ_TIMEOUT,
                    )
                except ApiException as e:
                    if e.status in (401, 403):
                        jobs[job] = {UNREADABLE: f"you may not read Jobs in namespace {stage.namespace}"}
                    elif e.status != 404:  # 404: gone (retention), which the page says
                        jobs[job] = {UNREADABLE: f"the API server said {e.status} {e.reason}"}
                except Exception:  # refused, reset, timed out
                    jobs[job] = {UNREADABLE: AWAY}
        if away:
            return jobs, AWAY
        try:
            events = self.kube.request(
                "GET",
                f"/api/v1/namespaces/{quote(rel.metadata.namespace)}/events",
                query={
                    "fieldSelector": f"involvedObject.kind=Release,involvedObject.name={rel.metadata.name}"
                },
                timeout=READ_TIMEOUT,
            ).get("items", [])
        except ApiException as e:
            if e.status in (401, 403):
                return jobs, f"you may not list Events in namespace {rel.metadata.namespace}"
            return jobs, f"the API server said {e.status} {e.reason}"
        except Exception:
            return jobs, AWAY
        uid = rel.metadata.uid
        # Events of a deleted namesake are not this release's.
        return jobs, [
            e for e in events if not uid or (e.get("involvedObject") or {}).get("uid") in (None, uid)
        ]

    async def api_commit(self, request: web.Request) -> web.Response:
        """Every release of a commit (a SHA prefix of 4 to 40 hex digits), each as a journey."""
        sha = request.match_info["sha"].lower()
        if not (4 <= len(sha) <= 40) or any(c not in "0123456789abcdef" for c in sha):
            return _error(400, f"{sha!r} is not a commit SHA (4 to 40 hex characters)")
        rels = [r for r in self.store.all("releases") if r.spec.commit.startswith(sha)]
        if not rels:
            return _error(404, f"no release of a commit starting {sha}")
        now = datetime.now(UTC)
        out = []
        for rel in sorted(rels, key=lambda r: (r.metadata.creation_timestamp or now, r.metadata.name)):
            ns = rel.metadata.namespace
            pipeline = self.store.get("pipelines", ns, rel.spec.pipeline)
            rollbacks = [r for r in self.store.all("rollbacks") if r.metadata.namespace == ns]
            out.append(
                {
                    **journey(rel, pipeline, rollbacks, now),
                    "pipeline": rel.spec.pipeline,
                    "phase": str(rel.status.phase or "Pending"),
                }
            )
        return _json({"commit": sha, "releases": out})

    async def api_pipeline(self, request: web.Request) -> web.Response:
        """A pipeline's history and its DORA metrics."""
        ns, name = request.match_info["namespace"], request.match_info["name"]
        pipeline = self.store.get("pipelines", ns, name)
        if pipeline is None:
            return _error(404, f"no pipeline {name} in namespace {ns} (or you may not read it)")
        given = request.query.get("days", "30")
        if not given.isascii() or not given.isdigit() or not 1 <= int(given) <= 365:
            return _error(400, f"days must be a whole number from 1 to 365, not {given[:20]!r}")
        releases = [r for r in self.store.all("releases") if r.metadata.namespace == ns]
        rollbacks = [r for r in self.store.all("rollbacks") if r.metadata.namespace == ns]
        data = pipeline_page(pipeline, releases, rollbacks, datetime.now(UTC), int(given))
        # What this viewer cannot list leaves holes in the history and the metrics: say which.
        data["unreadable"] = {k: v for k, v in self.errors().items() if k.endswith((f"/{ns}", "/*"))}
        return _json(data)

    # --- who is looking, and what they may do

    def _whoami(self) -> Identity | None:
        now = time.monotonic()
        if self._viewer is not None and (now - self._viewer[0] < RBAC_TTL or self.store.away):
            return self._viewer[1]  # while the API server is away, the last answer stands
        try:
            review = self.kube.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                timeout=READ_TIMEOUT,
            )
            info = (review.get("status") or {}).get("userInfo") or {}
            viewer = Identity(username=info["username"], groups=list(info.get("groups") or [])[:64])
        except Exception as e:
            log.info("SelfSubjectReview: %s", e)
            viewer = None
        self._viewer = (now, viewer)
        return viewer

    def _may_create_approvals(self, namespace: str) -> bool:
        now = time.monotonic()
        cached = self._may_create.get(namespace)
        if cached is not None and (now - cached[0] < RBAC_TTL or self.store.away):
            return cached[1]
        if self.store.away:
            return False  # cannot ask now: the page says so, and nothing is attempted
        try:
            review = self.kube.request(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body={
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {
                        "resourceAttributes": {
                            "namespace": namespace,
                            "verb": "create",
                            "group": "conveyor.dev",
                            "resource": "approvals",
                        }
                    },
                },
                timeout=READ_TIMEOUT,
            )
            allowed = bool((review.get("status") or {}).get("allowed"))
        except Exception as e:
            log.info("SelfSubjectAccessReview in %s: %s", namespace, e)
            allowed = False
        self._may_create[namespace] = (now, allowed)
        return allowed

    async def api_whoami(self, _: web.Request) -> web.Response:
        """The viewer as the API server knows them, and the dashboard's mode."""
        viewer = await asyncio.to_thread(self._whoami)
        return _json(
            {
                "username": viewer.username if viewer else None,
                "groups": list(viewer.groups) if viewer else [],
                "readOnly": self.settings.read_only,
                # In a Pod the identity is the dashboard's ServiceAccount, not the person looking.
                "personal": self.settings.personal,
                "scope": self.store.scope.why,
                "version": __version__,
            }
        )

    def _waiting(self) -> dict[str, Any]:
        viewer = self._whoami()
        releases = self.store.all("releases")
        namespaces = {r.metadata.namespace for r in releases if str(r.status.phase) == "AwaitingApproval"}
        may = {ns: (not self.settings.read_only and self._may_create_approvals(ns)) for ns in namespaces}
        return waiting(
            self.store.all("pipelines"),
            releases,
            self.store.all("approvals"),
            viewer,
            may,
            read_only=self.settings.read_only,
            enforced=self.settings.enforced,
            now=datetime.now(UTC),
        )

    async def api_waiting(self, _: web.Request) -> web.Response:
        """Releases waiting at a gate, and whether the viewer's approval would count."""
        return _json(await asyncio.to_thread(self._waiting))

    # --- actions (local mode: the viewer's credentials)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError, LookupError):
            # LookupError: a Content-Type naming a charset Python does not know
            return _error(400, "the body is not JSON (or nested too deep, or in an unknown charset)")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        return body

    async def api_approve(self, request: web.Request) -> web.Response:
        """Approve a release into a stage — the very release the viewer saw (uid and digest)."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        fields = {k: body.get(k) for k in ("namespace", "release", "stage", "uid", "digest", "comment")}
        if not all(
            isinstance(fields[k], str) and fields[k]
            for k in ("namespace", "release", "stage", "uid", "digest")
        ):
            # uid and digest: what the viewer saw — an approval never binds to content unseen
            return _error(400, "namespace, release, stage, uid and digest are required")
        comment = fields["comment"] if isinstance(fields["comment"], str) and fields["comment"] else None

        def create() -> web.Response:
            ns, name, stage = str(fields["namespace"]), str(fields["release"]), str(fields["stage"])
            # Only what this page shows, and only an approval the operator would count: the page's
            # verdict, enforced here too (a forged click gets the same answer, and no junk Approval).
            seen: Release | None = self.store.get("releases", ns, name)
            pipeline = self.store.get("pipelines", ns, seen.spec.pipeline) if seen is not None else None
            if seen is None or pipeline is None:
                return _error(404, f"release {name} in namespace {ns} is not on this dashboard")
            verdict = would_count(
                self._whoami(),
                seen,
                stage,
                pipeline,
                [a for a in self.store.all("approvals") if a.metadata.namespace == ns],
                may_create=self._may_create_approvals(ns),
                read_only=self.settings.read_only,
                enforced=self.settings.enforced,
                now=datetime.now(UTC),
            )
            if not verdict["may"]:
                return _json(
                    {"error": f"not approved: {verdict['message']}", "reason": verdict["reason"]}, 403
                )
            made = self._made.get((ns, name, seen.metadata.uid, stage))
            if made is not None and time.monotonic() - made[0] < MADE_TTL:
                return _json(
                    {
                        "error": f"not approved: you already approved {name} for {stage} (approval "
                        f"{made[1]}); another approver is needed",
                        "reason": ALREADY,
                    },
                    403,
                )
            release = self.kube.get_custom("releases", ns, name)
            if release is None:
                return _error(404, f"no release {name} in namespace {ns}")
            if fields["uid"] != release["metadata"]["uid"] or fields["digest"] != release["spec"]["digest"]:
                return _error(
                    409,
                    f"release {name} changed since you looked (re-created, or another image): "
                    "reload and look again",
                )
            created = self.kube.create_custom_object(
                "approvals", ns, actions.approval_body(release, stage, comment)
            )
            who = (created["spec"].get("approver") or {}).get("username")
            self._made[(ns, name, seen.metadata.uid, stage)] = (time.monotonic(), created["metadata"]["name"])
            log.info("approval %s/%s created by %s", ns, created["metadata"]["name"], who)
            return _json({"name": created["metadata"]["name"], "approver": who}, 201)

        def one_at_a_time() -> web.Response:
            if self.store.away:
                return _error(503, "the API server does not answer: nothing was approved; try again")
            if not self._approving.acquire(timeout=10):
                return _error(409, "another approval from this dashboard is being made: look again")
            try:
                return create()
            finally:
                self._approving.release()

        return await self._act(one_at_a_time)

    async def api_rollback(self, request: web.Request) -> web.Response:
        """Roll a pipeline's stage back (default: to the release verified there before)."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ns, pipeline, stage = body.get("namespace"), body.get("pipeline"), body.get("stage")
        if not (isinstance(ns, str) and ns and isinstance(pipeline, str) and pipeline):
            return _error(400, "namespace and pipeline are required")
        options = {k: body.get(k) for k in ("stage", "toRelease", "reason")}
        if any(v is not None and not isinstance(v, str) for v in options.values()):
            return _error(400, "stage, toRelease and reason are strings")
        verify = body.get("verify", True)
        if not isinstance(verify, bool):
            return _error(400, "verify is true or false")

        def create() -> web.Response:
            created = self.kube.create_custom_object(
                "rollbacks",
                ns,
                actions.rollback_body(
                    pipeline,
                    options["stage"] or None,
                    options["toRelease"] or None,
                    options["reason"] or None,
                    verify,
                ),
            )
            who = (created["spec"].get("requester") or {}).get("username")
            log.info("rollback %s/%s created by %s", ns, created["metadata"]["name"], who)
            return _json({"name": created["metadata"]["name"], "requester": who}, 201)

        del stage
        return await self._act(create)

    async def _act(self, create: Callable[[], web.Response]) -> web.Response:
        try:
            return await asyncio.to_thread(create)
        except ApiException as e:
            # The API server's own words: a 403 names the verb and resource; a 422 the field.
            return _error(e.status if e.status and 400 <= e.status < 500 else 502, _api_message(e))
        except Exception as e:
            return _error(502, f"the API server could not be reached: {type(e).__name__}")
