"""The Argo CD health checks (examples/argocd/health/*.lua), run by a real Lua 5.1 interpreter
(the semantics Argo CD's gopher-lua implements) against objects captured from real runs:

- tests/fixtures/argocd/argocd-*.json: captured by the gitops story (tests/gitops) at moments a
  real Argo CD judged them; argocd-verdicts.json holds Argo CD's own status and message, which the
  Lua must reproduce exactly (refresh: CONVEYOR_CAPTURE_DIR=/tmp/c pytest tests/gitops);
- the others: states the gitops story does not reach (Approvals and Rollbacks are not in Git; a
  rollout deadline, parity), captured from the e2e suite (CONVEYOR_CAPTURE_DIR=... pytest tests/e2e),
  with the status expected.json names.
"""

from __future__ import annotations

import json

import pytest

from support.argocd import HEALTH, REPO
from support.argocd import lua_health as health

FIXTURES = REPO / "tests" / "fixtures" / "argocd"
EXPECTED: dict[str, str] = json.loads((FIXTURES / "expected.json").read_text())
JUDGED: dict[str, dict[str, str]] = json.loads((FIXTURES / "argocd-verdicts.json").read_text())


@pytest.mark.parametrize("fixture", sorted(JUDGED))
def test_the_lua_says_what_a_real_argo_cd_said(fixture: str):
    obj = json.loads((FIXTURES / fixture).read_text())
    assert health(obj["kind"], obj) == JUDGED[fixture]


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
    kinds = {json.loads((FIXTURES / f).read_text())["kind"] for f in [*EXPECTED, *JUDGED]}
    assert kinds == {"Release", "Rollback", "Pipeline", "Approval"}
    statuses = set(EXPECTED.values()) | {v["status"] for v in JUDGED.values()}
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= statuses


def test_a_refused_rollback_is_degraded():
    obj = {"kind": "Rollback", "metadata": {"name": "x"}, "status": {"phase": "Refused", "message": "no"}}
    assert health("Rollback", obj)["status"] == "Degraded"


def test_a_pipeline_whose_stage_runs_an_untracked_image_is_degraded():
    # Found by the adversarial round: prod set by hand (`kubectl set image`) read Healthy.
    obj = {
        "kind": "Pipeline",
        "metadata": {"name": "shop"},
        "status": {
            "summary": "staging=7e26413 prod=7e26413",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "TargetsResolved"},
                {"type": "InParity", "status": "True", "reason": "InParity"},
                {"type": "Tracked", "status": "False", "reason": "UntrackedImage", "message": "prod runs x"},
            ],
        },
    }
    assert health("Pipeline", obj) == {"status": "Degraded", "message": "untracked image: prod runs x"}
