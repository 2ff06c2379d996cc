"""The Helm chart, for real: lint, render, validate against the API server, install, and run the
operator with the chart's ServiceAccount credentials (a TokenRequest token) through a promotion and
a rollback — a missing permission fails here, not in production; an excessive one too."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from support.cluster import kubectl_binary
from support.operator import OperatorProcess
from support.story import Story, image_of

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "conveyor"
KUBE_VERSION = "1.36.3"


def helm() -> str:
    out = subprocess.run(
        [REPO / "hack" / "build-binaries", "--print"], capture_output=True, text=True, check=True
    )
    return str(Path(dict(line.split("=", 1) for line in out.stdout.split())["HELM_BIN"]) / "helm")


def run(*args: str, kubeconfig: Path | None = None, input_: str | None = None) -> str:
    env_args = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    out = subprocess.run([*args, *env_args], capture_output=True, text=True, input=input_, check=False)
    assert out.returncode == 0, f"{' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def test_helm_lint_is_clean():
    out = run(
        helm(), "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "--set", "namespaces={a,b}"
    )
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_rendered_chart_is_accepted_by_the_api_server(cluster, story: Story):
    rendered = run(
        helm(),
        "template",
        "dry",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--namespace",
        story.ns,
        "--set",
        f"namespaces={{{story.ns},{story.stage_ns['staging']}}}",
        "--set",
        "dashboard.enabled=true",
    )
    out = run(
        kubectl_binary(),
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        kubeconfig=cluster.kubeconfig,
        input_=rendered,
    )
    assert "deployment.apps/dry created (server dry run)" in out
    assert "customresourcedefinition.apiextensions.k8s.io/releases.conveyor.dev" in out


def test_values_schema_refuses_bad_values():
    out = subprocess.run(
        [
            helm(),
            "template",
            "x",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "namespaces={Not_A_Namespace}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "namespaces" in out.stderr


def test_the_operator_runs_a_promotion_and_a_rollback_with_only_the_charts_permissions(cluster, story: Story):
    release = f"cv-{uuid.uuid4().hex[:6]}"
    served = [story.ns, *story.stage_ns.values()]
    run(
        helm(),
        "install",
        release,
        str(CHART),
        "--namespace",
        story.ns,
        "--set",
        f"namespaces={{{','.join(served)}}}",
        # the suite's fixture installed CRDs and admission policies cluster-wide already
        "--set",
        "crds.install=false",
        "--set",
        "admissionPolicies.install=false",
        kubeconfig=cluster.kubeconfig,
    )
    try:
        token = run(
            kubectl_binary(),
            "create",
            "token",
            release,
            "-n",
            story.ns,
            "--duration",
            "2h",
            kubeconfig=cluster.kubeconfig,
        ).strip()
        admin = json.loads(cluster.kubeconfig.read_text())
        sa_config = dict(
            admin,
            users=[{"name": "sa", "user": {"token": token}}],
            contexts=[{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}],
            **{"current-context": "sa"},
        )
        sa_kubeconfig = cluster.kubeconfig.parent / f"{release}.kubeconfig"
        sa_kubeconfig.write_text(json.dumps(sa_config))

        # Least privilege, both ways: what it may not do
        def can(verb: str, what: str, ns: str) -> bool:
            out = subprocess.run(
                [kubectl_binary(), "--kubeconfig", str(sa_kubeconfig), "auth", "can-i", verb, what, "-n", ns],
                capture_output=True,
                text=True,
                check=False,
            )
            return out.stdout.strip() == "yes"

        assert can("patch", "deployments", story.stage_ns["prod"])
        assert not can("patch", "deployments", "default")
        assert not can("get", "secrets", story.stage_ns["prod"])
        assert not can("list", "secrets", story.stage_ns["prod"])
        assert not can("create", "approvals.conveyor.dev", story.ns)
        # the Lease: its own, in the release namespace only
        assert can("update", f"leases.coordination.k8s.io/{release}-leader", story.ns)
        assert not can("update", "leases.coordination.k8s.io/other", story.ns)
        assert not can("create", "leases.coordination.k8s.io", "default")

        # ... and that it can do everything it needs: a promotion, an approval gate, a rollback
        story.given_deployments()
        story.given_pipeline(smoke_test={"command": ["/app/smoke"]}, migration={"command": ["/app/migrate"]})
        story.operator = OperatorProcess(
            sa_kubeconfig,
            *[a for ns in served for a in ("-n", ns)],
            lease_namespace=story.ns,  # as the chart runs it: POD_NAMESPACE, the chart's Lease
            lease_name=f"{release}-leader",
        ).start()
        story.operator.wait_for_log("is alive")
        story.operator.wait_healthy()
        story.operator.wait_for_log("is the leader now")
        for label in ("v1", "v2"):
            story.promote(f"shop-{label}", label=label)
        story.when_rollback("undo", verify=True)
        story.then_rollback_phase("undo", "Succeeded")
        assert story.deployment_image("prod") == image_of("v1")
        story.then_event("undo", "RollbackCompleted")
        forbidden = [line for line in story.operator.lines if re.search(r"forbidden|\b403\b", line, re.I)]
        assert forbidden == []
    finally:
        run(helm(), "uninstall", release, "--namespace", story.ns, kubeconfig=cluster.kubeconfig)
