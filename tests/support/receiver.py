"""A webhook receiver on 127.0.0.1 standing in for Slack, Teams and a generic webhook.

Every request is recorded (path, headers, raw body, when). Each path answers from a script: a list
of answers used one per request, the last repeated (`[500, 200]`: fail once, then accept). An
answer may also hold the request until released (`Hold`), so a test can kill the operator while a
message is in flight. Tests wait on the record with a deadline (`wait`), never by sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hold:
    """Answer `code`, but only once `released` is set (or after `limit` seconds)."""

    code: int = 200
    released: threading.Event = field(default_factory=threading.Event)
    limit: float = 30.0


@dataclass
class Request:
    """One request as received."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int | None = None

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)

    @property
    def id(self) -> str:
        """The idempotency key the request carried."""
        return self.headers.get("idempotency-key", "")


class Receiver:
    """The server and its record; a context manager (stops the server on exit)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, list[int | Hold]] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.time(),
                )
                answer = receiver._next(req)
                if isinstance(answer, Hold):
                    answer.released.wait(answer.limit)
                    answer = answer.code
                req.answered = answer
                try:
                    self.send_response(answer)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender went away (killed mid-request): that is the point of a Hold
                with receiver._changed:
                    receiver._changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        for script in self.scripts.values():
            for answer in script:
                if isinstance(answer, Hold):
                    answer.released.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, *answers: int | Hold) -> str:
        """The URL of `path` on this receiver, answering `answers` in turn (default: 200)."""
        self.scripts[path] = list(answers) or [200]
        return f"http://{self.host}{path}"

    def _next(self, req: Request) -> int | Hold:
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()
            script = self.scripts.get(req.path, [404])
            return script.pop(0) if len(script) > 1 else script[0]

    def at(self, path: str) -> list[Request]:
        """The requests to `path`, in arrival order."""
        with self._changed:
            return [r for r in self.requests if r.path == path]

    def wait(
        self, what: str, predicate: Callable[[list[Request]], bool], timeout: float = 60.0
    ) -> list[Request]:
        """Block until `predicate(all requests)` holds; fail saying what was awaited and what came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self.requests)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(r.path, r.headers.get("x-conveyor-trigger"), r.answered) for r in self.requests]
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for {what}; received: {seen}"
                    )
                self._changed.wait(remaining)
            return list(self.requests)

    def triggers(self, path: str) -> list[str]:
        """The trigger of each request to `path` that was answered 2xx, in order."""
        return [
            r.headers.get("x-conveyor-trigger", "")
            for r in self.at(path)
            if r.answered is not None and 200 <= r.answered < 300
        ]
