"""The Argo CD health checks (examples/argocd/health/*.lua), run by a real Lua 5.1 interpreter
(the semantics Argo CD's gopher-lua implements) against objects captured from real e2e runs
(tests/fixtures/argocd/, written by CONVEYOR_CAPTURE_DIR=... pytest tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lupa import lua51

REPO = Path(__file__).resolve().parents[2]
HEALTH = REPO / "examples" / "argocd" / "health"
FIXTURES = REPO / "tests" / "fixtures" / "argocd"
EXPECTED: dict[str, str] = json.loads((FIXTURES / "expected.json").read_text())


def health(kind: str, obj: dict) -> dict:
    """Run the kind's health script the way Argo CD does: `obj` is a global, the script returns hs."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = (HEALTH / f"conveyor.dev_{kind}.lua").read_text()
    hs = lua.execute(script)
    return {"status": hs["status"], "message": hs["message"]}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_captured_objects_map_to_the_expected_health(fixture: str):
    obj = json.loads((FIXTURES / fixture).read_text())
    result = health(obj["kind"], obj)
    assert result["status"] == EXPECTED[fixture], result
    assert result["message"]


@pytest.mark.parametrize("kind", ["Release", "Rollback", "Pipeline", "Approval"])
def test_an_object_conveyor_has_not_seen_yet_is_progressing(kind: str):
    assert (
        health(kind, {"kind": kind, "metadata": {"name": "x", "generation": 1}, "spec": {}})["status"]
        == "Progressing"
    )


def test_every_health_check_ships_in_the_argocd_cm_example():
    cm = (REPO / "examples" / "argocd" / "argocd-cm.yaml").read_text()
    for script in HEALTH.glob("*.lua"):
        key = f"resource.customizations.health.{script.stem}: |"
        assert key in cm
        body = "\n".join("    " + line if line else "" for line in script.read_text().splitlines())
        assert body in cm, f"{script.name} differs from its copy in argocd-cm.yaml (run hack/gen-argocd-cm)"


def test_every_kind_with_a_health_check_has_captured_fixtures():
    kinds = {json.loads((FIXTURES / f).read_text())["kind"] for f in EXPECTED}
    assert kinds == {"Release", "Rollback", "Pipeline", "Approval"}
    statuses = set(EXPECTED.values())
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= statuses


def test_a_refused_rollback_is_degraded():
    obj = {"kind": "Rollback", "metadata": {"name": "x"}, "status": {"phase": "Refused", "message": "no"}}
    assert health("Rollback", obj)["status"] == "Degraded"
