"""The kwok Stages that hack/cluster writes are valid YAML and never compete for one pod."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def load_cluster_script():
    loader = importlib.machinery.SourceFileLoader("hack_cluster", str(REPO / "hack" / "cluster"))
    spec = importlib.util.spec_from_loader("hack_cluster", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_stages_parse_and_pod_stages_select_disjoint_outcomes():
    stages = list(yaml.safe_load_all(load_cluster_script().kwok_stages()))
    names = {s["metadata"]["name"] for s in stages}
    assert {
        "node-initialize",
        "pod-ready",
        "pod-never-ready",
        "pod-complete",
        "pod-fail",
        "pod-delete",
    } <= names
    outcome_expr = load_cluster_script().OUTCOME
    # Stages acting on a Pending pod must each claim a different outcome, or kwok would pick one at random.
    pending = {}
    for s in stages:
        exprs = s["spec"]["selector"]["matchExpressions"]
        phases = [e.get("values") for e in exprs if e["key"] == ".status.phase"]
        outcomes = [e["values"] for e in exprs if e["key"] == outcome_expr]
        if phases and "Pending" in phases[0]:
            assert outcomes, f"{s['metadata']['name']} must select on the simulated outcome"
            for value in outcomes[0]:
                assert value not in pending, (
                    f"{value} claimed by {pending.get(value)} and {s['metadata']['name']}"
                )
                pending[value] = s["metadata"]["name"]
    assert set(pending) == {"normal", "never-ready", "fail"}
