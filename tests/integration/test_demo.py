"""`make demo`'s steps (`hack/demo --no-wait`) on a fresh checkout, with the cluster folder moved by
CONVEYOR_CLUSTER_DIR and with the default one: the demo acts on the cluster it started and no
other, its release is promoted, and it refuses before acting when a kubeconfig it would use is
missing or names another server. Run as `make demo` runs it (no --no-wait), it serves the dashboard
as alice beside the operator, and Ctrl-C stops both.

A fresh checkout is a copy of the repository's files (tracked, and new ones not ignored) without
.cluster/; only the virtualenv is shared (a symlink), since building one takes minutes. Each case
starts its own throwaway cluster and stops it afterwards; neither touches the suite's cluster.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from support.cluster import kubectl_binary

REPO = Path(__file__).resolve().parents[2]
RELEASE = "shop-3f9c2a1"
DIGEST = "sha256:3f9c2a1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        bool(os.environ.get("CONVEYOR_TEST_KUBECONFIG")), reason="the local control plane only"
    ),
]


def fresh_checkout(dest: Path) -> Path:
    """The repository's files as a new clone of this working tree would have them, minus .cluster/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():  # skip files deleted in the working tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    # Shared, so the checkout runs hack/demo, never `make`: `make venv` there would re-sync the
    # shared virtualenv onto the checkout's path (console-script shebangs, the editable install).
    (dest / ".venv").symlink_to(REPO / ".venv")
    assert not (dest / ".cluster").exists()
    return dest


def run(argv: list[str | Path], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a script in its own process group; on timeout, stop the whole group (operator included)."""
    proc = subprocess.Popen(
        [str(a) for a in argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{argv[0]} did not finish within {timeout:.0f}s; output:\n{out}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def env_for(checkout: Path, folder: Path | None, tmp_path: Path) -> dict[str, str]:
    """The caller's environment with CONVEYOR_CLUSTER_DIR set to `folder` (None: unset), and a
    KUBECONFIG naming a file that does not exist (and no CONVEYOR_DASHBOARD_PORT): whatever the
    caller has must not matter. The shared virtualenv imports the checkout's own operator code."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONVEYOR_CLUSTER_DIR", "KUBECONFIG", "CONVEYOR_DASHBOARD_PORT")
    }
    env["KUBECONFIG"] = str(tmp_path / "callers-kubeconfig-not-used")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout / "operator"), env.get("PYTHONPATH")]))
    if folder is not None:
        env["CONVEYOR_CLUSTER_DIR"] = str(folder)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_in_foreground(checkout: Path, env: dict[str, str], port: int) -> str:
    """`hack/demo` as `make demo` runs it: wait for the dashboard's "See it:" line, check the page
    serves as alice, press Ctrl-C (SIGINT to the process group, as a terminal does) and check that
    the demo, its operator and its dashboard all stopped. Returns the demo's output."""
    proc = subprocess.Popen(
        [str(checkout / "hack" / "demo")],
        env={**env, "CONVEYOR_DASHBOARD_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                line = lines.get(timeout=300)
            except queue.Empty:
                raise AssertionError("no 'See it:' line within 300 s:\n" + "".join(out)) from None
            assert line is not None, "the demo ended before serving the dashboard:\n" + "".join(out)
            out.append(line)
            if "See it:" in line:
                break
        assert f"See it: {url}#token=" in out[-1], out[-1]
        assert "— as alice; Ctrl-C stops both" in out[-1], out[-1]
        token = out[-1].split("#token=", 1)[1].split()[0]
        ask = urllib.request.Request(url + "api/whoami", headers={"X-Conveyor-Token": token})  # noqa: S310
        with urllib.request.urlopen(ask, timeout=10) as response:  # noqa: S310
            assert json.loads(response.read())["username"] == "alice"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    while (line := lines.get(timeout=10)) is not None:
        out.append(line)
    # Nothing of the demo's is left: no process in its group, nothing on the dashboard's port.
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("a process of the demo outlived Ctrl-C")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return "".join(out)


@pytest.mark.parametrize("where", ["moved", "default"])
def test_demo_promotes_its_release_on_the_cluster_it_started(tmp_path: Path, where: str):
    checkout = fresh_checkout(tmp_path / "checkout")
    default = checkout / ".cluster"
    if where == "moved":
        folder = tmp_path / "moved cluster"  # a space, too: paths are quoted all the way
        # What misled the old demo: a stale kubeconfig in the default folder naming another server.
        default.mkdir()
        stale = {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}
        (default / "kubeconfig").write_text(json.dumps(stale))
        env = env_for(checkout, folder, tmp_path)
    else:
        folder = default
        env = env_for(checkout, None, tmp_path)
    kubeconfig = folder / "kubeconfig"
    before = sorted(p.name for p in default.iterdir()) if where == "moved" else None
    try:
        demo = run([checkout / "hack" / "demo", "--no-wait"], env, timeout=300)
        assert demo.returncode == 0, demo.stdout[-4000:]
        assert f"export KUBECONFIG={kubeconfig}" in demo.stdout.replace("'", "")
        assert "localhost:8080" not in demo.stdout
        assert f"release.conveyor.dev/{RELEASE} condition met" in demo.stdout
        # The shop team's "Slack channel" (a local receiver) was told, once each, in order
        told = demo.stdout.split("Slack channel was told", 1)[1].split("==", 1)[0]
        assert [line for line in told.splitlines() if line.startswith("[slack]")] == [
            "[slack] shop: 3f9c2a1 waits for approval to enter prod",
            "[slack] shop: 3f9c2a1 released — verified up to prod",
        ], told
        assert f"kubectl conveyor approve {RELEASE} --stage prod -n default" in told
        assert "is alive" in (folder / "operator.log").read_text()
        # --no-wait starts no dashboard, but says how to
        alice_kubeconfig = folder / "users" / "alice.kubeconfig"
        assert f"KUBECONFIG={alice_kubeconfig} kubectl conveyor dashboard --port 8642 -n default" in (
            demo.stdout.replace("'", "").replace("\\ ", " ")
        ), demo.stdout[-2000:]
        assert "See it:" not in demo.stdout
        if before is not None:  # nothing was written to (or read from) the default folder
            assert sorted(p.name for p in default.iterdir()) == before

        # The promotion, seen on the cluster in `folder` with its own kubeconfig.
        kubectl = [kubectl_binary(), "--kubeconfig", str(kubeconfig)]
        phase = subprocess.run(
            [*kubectl, "get", "release", RELEASE, "-o", "jsonpath={.status.phase}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert phase == "Succeeded"
        image = subprocess.run(
            [
                *kubectl,
                "get",
                "deploy",
                "shop",
                "-n",
                "shop-prod",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert image.endswith("@" + DIGEST)

        if where == "moved":  # once is enough: as `make demo` runs it, with the dashboard
            shown = demo_in_foreground(checkout, env, free_port())
            assert f"release.conveyor.dev/{RELEASE} condition met" in shown

        # Refusals, before any kubectl runs: a kubeconfig naming another server, and a missing one.
        good = kubeconfig.read_text()
        cfg = json.loads(good)
        port = json.loads((folder / "state.json").read_text())["port"]
        cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port + 1}"
        kubeconfig.write_text(json.dumps(cfg))
        refused = run([checkout / "hack" / "demo", "--no-wait"], env, timeout=120)
        assert refused.returncode == 1, refused.stdout
        assert f"names the API server https://127.0.0.1:{port + 1}" in refused.stdout
        assert "demo: stopped before acting" in refused.stdout
        assert "$ kubectl" not in refused.stdout
        kubeconfig.write_text(good)

        alice = folder / "users" / "alice.kubeconfig"
        alice.rename(alice.with_suffix(".moved"))
        refused = run([checkout / "hack" / "demo", "--no-wait"], env, timeout=120)
        assert refused.returncode == 1, refused.stdout
        assert f"{alice} does not exist" in refused.stdout
        assert "$ kubectl" not in refused.stdout
    finally:
        down = run([checkout / "hack" / "cluster", "down"], env, timeout=120)
    assert down.returncode == 0, down.stdout
    status = run([checkout / "hack" / "cluster", "status"], env, timeout=60)
    assert status.returncode == 1, status.stdout
