"""One results file for every benchmark, and the Markdown table rendered from it.

Each benchmark ends with `record(key, ...)`: its section of the JSON file - when, on which commit and
machine, the exact command, its parameters, its detailed results and one row per goal of issue #11
(goal, measured value, met or not) - replaces that key only, so running one benchmark updates its
own section and leaves the others as they were. `bench/report.py` renders the rows of every section
into one Markdown table (bench/results/RESULTS.md, and on request the README's quoted block).

Where: bench/results/bench.json (git-ignored), or CONVEYOR_BENCH_RESULTS / a benchmark's --results.
No cluster and no client here: unit-tested in tests/unit/test_bench_results.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_ENV = "CONVEYOR_BENCH_RESULTS"
MACHINE_ENV = "CONVEYOR_BENCH_MACHINE"  # a free-text note, e.g. "shared 2-core build machine"
DEFAULT_RESULTS = REPO / "bench" / "results" / "bench.json"
# Read when a benchmark imports this, i.e. as it starts: the load its own work adds is not the point.
_LOAD_AT_START = os.getloadavg()


def results_path(cli: Path | None = None) -> Path:
    """The results file: a benchmark's --results, else CONVEYOR_BENCH_RESULTS, else the default."""
    if cli is not None:
        return cli
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else DEFAULT_RESULTS


def goal(what: str, goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    """One row of the table: `met` None means there is nothing to judge (not measured, no sample)."""
    return {"what": what, "goal": goal, "measured": measured, "met": met}


def command(script: str, argv: list[str] | None = None) -> str:
    """The command that reproduces a benchmark's section: hack/bench runs exactly this file with
    these arguments in the repository's venv, on the cluster CONVEYOR_CLUSTER_DIR names."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["hack/bench", f"bench/{Path(script).name}", *args])


def machine(proc: Path = Path("/proc")) -> dict[str, Any]:
    """What the numbers were measured on: CPUs, memory, kernel, Python, the load when it started,
    and the free-text note in CONVEYOR_BENCH_MACHINE (the machine is often shared)."""
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = (proc / "meminfo").read_text().splitlines()[0].split()
        out["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    out["load_at_start"] = [round(x, 2) for x in _LOAD_AT_START]
    note = os.environ.get(MACHINE_ENV)
    if note:
        out["note"] = note
    return out


def describe_machine(m: dict[str, Any]) -> str:
    """One line: '2 CPUs (AMD EPYC), 23.5 GB, Linux 6.1, Python 3.11.9, load 0.4/0.5/0.8 - note'."""
    parts = [f"{m.get('cpus', '?')} CPUs" + (f" ({m['cpu']})" if m.get("cpu") else "")]
    if m.get("memory_gb"):
        parts.append(f"{m['memory_gb']} GB")
    parts.append(f"Linux {m.get('kernel', '?')}, Python {m.get('python', '?')}")
    if m.get("load_at_start"):
        parts.append("load at start " + "/".join(str(x) for x in m["load_at_start"]))
    text = ", ".join(parts)
    return f"{text} - {m['note']}" if m.get("note") else text


def git_commit(repo: Path = REPO) -> str:
    """The commit measured, with '+dirty' when the work tree has changes (the numbers then belong to
    uncommitted code)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the file: two benchmarks finishing at once both keep their section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(path: Path) -> dict[str, Any]:
    """Every benchmark's section ({} when there is no file yet)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of benchmark sections")
    return data


def section(
    *,
    script: str,
    parameters: dict[str, Any],
    results: dict[str, Any],
    goals: list[dict[str, Any]],
    argv: list[str] | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """A benchmark's section of the results file."""
    return {
        "when": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": command(script, argv),
        "run_by": os.environ.get("CONVEYOR_BENCH_RUN_BY") or "",
        "machine": machine(),
        "parameters": parameters,
        "goals": goals,
        "results": results,
    }


def record(key: str, body: dict[str, Any], path: Path | None = None) -> Path:
    """Replace section `key` of the results file with `body`, keeping every other section; written
    to a temporary file and renamed, so a reader never sees half a file."""
    path = results_path(path)
    with _locked(path):
        data = load(path)
        data[key] = body
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    return path
