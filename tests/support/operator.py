"""Run the operator as users run it: the `conveyor run` console script in its own process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`conveyor run` as a subprocess, with its output captured line by line.

    Each process campaigns for a Lease in `lease_namespace` (default: `default`). Unless told
    otherwise it gets a Lease of its own (a unique name) and a unique identity, so a test's operator
    never waits out a lease a previous test's killed operator left behind; `restarted()` keeps both,
    as a restarted Pod keeps its name."""

    def __init__(
        self,
        kubeconfig: Path,
        *extra_args: str,
        lease_name: str | None = None,
        lease_namespace: str | None = None,
        identity: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.extra_args = extra_args
        self.lease_name = lease_name or f"conveyor-test-{uuid.uuid4().hex[:8]}"
        self.lease_namespace = lease_namespace or "default"
        self.identity = identity or f"op-{uuid.uuid4().hex[:8]}"
        self.env = env or {}  # added to the environment (CONVEYOR_FAULT_POINT, say)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.liveness_port = 0
        self.metrics_port = 0

    def start(self) -> OperatorProcess:
        """Start the operator; returns at once (use wait_for_log to know it is up)."""
        self.liveness_port, self.metrics_port = _free_port(), _free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
        if "CONVEYOR_FAULT_POINT" not in self.env:
            env.pop("CONVEYOR_FAULT_POINT", None)  # a restart runs without the switch
        self.proc = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "conveyor"),
                "run",
                f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                f"--metrics-port={self.metrics_port}",
                f"--lease-name={self.lease_name}",
                f"--leader-election-namespace={self.lease_namespace}",
                f"--leader-identity={self.identity}",
                *self.extra_args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc
        assert self.proc.stdout
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> str:
        """Block until a log line matches `pattern` (regex); fail naming the pattern on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.lines)
                if self._ended:
                    code = self.proc.poll() if self.proc else None
                    raise AssertionError(
                        f"operator exited ({code}) before logging /{pattern}/; last lines:\n"
                        + "\n".join(self.lines[-30:])
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for a log line /{pattern}/; "
                        "last lines:\n" + "\n".join(self.lines[-30:])
                    )
                self._changed.wait(remaining)

    def restarted(self) -> OperatorProcess:
        """A new process with the same arguments, Lease and identity (not started)."""
        return OperatorProcess(
            self.kubeconfig,
            *self.extra_args,
            lease_name=self.lease_name,
            lease_namespace=self.lease_namespace,
            identity=self.identity,
        )

    def probe(self, path: str) -> tuple[int, str]:
        """GET a probe on the metrics port (/healthz, /readyz, /metrics): (status, body)."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_probe(self, path: str, status: int = 200, timeout: float = 30.0) -> str:
        """Wait until a probe (/readyz, /healthz) answers `status`; its body."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                code, body = self.probe(path)
                if code == status:
                    return body
                last = (code, body)
            except OSError as e:  # not listening yet
                last = e
            time.sleep(0.1)  # a probe offers nothing to watch; polled until the deadline
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {path} to answer {status} (last: {last})"
        )

    def log_time(self, pattern: str) -> datetime:
        """The timestamp of the first log line matching `pattern` (which must have been logged)."""
        line = self.wait_for_log(pattern, timeout=0.1)
        return datetime.fromisoformat(json.loads(line)["time"])

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever (a long GC pause, a frozen VM, a partition)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until kopf's liveness endpoint answers 200 (it opens once the operator runs)."""
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}; last lines:\n"
                    + "\n".join(self.lines[-30:])
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
                    last = r.status
            except OSError as e:  # not listening yet
                last = e
            time.sleep(0.1)  # the endpoint offers nothing to watch; polled until the deadline
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {url} to answer 200 (last: {last})")

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait until the process has exited (and its output is read); its exit code (-9: SIGKILL)."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the operator still runs after {timeout:.0f}s; last lines:\n" + "\n".join(self.lines[-30:])
            ) from None
        with self._changed:
            self._changed.wait_for(lambda: self._ended, timeout=10)
        return code

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (the restart-safety case)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode
