"""Outages, end to end: the local control plane's kube-apiserver, then etcd, is killed for 20 s in
the middle of a promotion. The operator keeps running through it, recovers by itself when they
return, and loses and repeats nothing.

These stop components of the shared test cluster, so they need the local control plane
(`hack/cluster stop|start COMPONENT`, support/outages.py); against CONVEYOR_TEST_KUBECONFIG they are
skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from support.cluster import Cluster
from support.invariants import check_creates_once
from support.outages import outage
from support.story import OLD_IMAGE, Story, image_of, stage_record, status

pytestmark = pytest.mark.cluster

MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}
# After an outage the cluster's own controllers lag: kube-scheduler's and the Job controller's
# watches and work queues back off (seen: a Pod left unscheduled for 60 s after a 20 s outage, a Job's
# completion 51 s late after 70 s). Conveyor's part is measured apart (a new object answered within
# seconds); the promotion is given this long to finish.
CLUSTER_CATCH_UP_SECONDS = 180.0


def create_when_served(story: Story, name: str, timings: dict[str, float], timeout: float = 60) -> None:
    """Create a Release naming no pipeline as soon as the API server takes it, and note when that
    was (`timings["served"]`). A restarted kube-apiserver answers 503 "kind not found" for custom
    kinds until its admission policies' REST mapper has rediscovered them, well after /readyz; a
    client meets the same and retries."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            story.when_release(name, pipeline="nowhere")
            timings["served"] = time.monotonic()
            return
        except ApiException as e:
            if e.status != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # the API server offers nothing to watch for this; bounded by the deadline


def in_phase(phase: str) -> Callable[[Any], bool]:
    """A predicate: some stage of the release (or the release itself) is in `phase`."""
    return lambda o: (
        o is not None
        and phase in ({s.get("phase") for s in status(o).get("stages", [])} | {status(o).get("phase")})
    )


def then_every_step_ran_once(story: Story, audit: Path | None, release: str, label: str) -> None:
    """Nothing lost, nothing repeated: per stage one migration and one smoke-test Job, each created
    (requested: the API server's audit log) once, one new ReplicaSet (no image a release did not
    name), each step once in the history, verified."""
    stages, kinds = ("staging", "prod"), ("migrate", "smoke")
    expected = {story.job(release, stage, kind) for stage in stages for kind in kinds}
    check_creates_once(story, audit, expected)
    rel = story.get("releases", release)
    assert status(rel)["phase"] == "Succeeded", status(rel)
    for stage in ("staging", "prod"):
        assert story.jobs(stage) == [
            story.job(release, stage, "migrate"),
            story.job(release, stage, "smoke"),
        ]
        rs = story.apps.list_namespaced_replica_set(story.stage_ns[stage]).items
        assert sorted(r.spec.template.spec.containers[0].image for r in rs) == sorted(
            [image_of(label), OLD_IMAGE]
        )
        assert stage_record(rel, stage)["phase"] == "Verified"
    history = [h["reason"] for h in status(rel)["history"]]
    for reason in ("MigrationStarted", "RolloutStarted", "SmokeTestStarted", "StageVerified"):
        assert history.count(reason) == 2, (reason, history)


@pytest.mark.parametrize(
    ("component", "phase"),
    [("kube-apiserver", "SmokeTesting"), ("etcd", "RollingOut")],
)
def test_a_control_plane_outage_mid_promotion_loses_and_repeats_nothing(
    story: Story, cluster: Cluster, audit: Path | None, component: str, phase: str
) -> None:
    # Given a promotion with migrations and smoke tests under way
    story.given_deployments()
    story.given_pipeline(migration=MIGRATION, smoke_test=SMOKE)
    operator = story.given_operator()
    label = f"out-{component}"
    story.when_release("shop-o", label=label)
    story.then_release("shop-o", in_phase(phase), f"a stage in phase {phase}")
    pid = operator.proc.pid if operator.proc else None

    # When the component is killed, and stays down for 20 s while the operator tries to work
    with outage(cluster, component) as timings:
        pass
    # Then the operator, still the same process, answers new objects by itself within seconds: a
    # Release naming no pipeline needs no controller but Conveyor's watch to be told so
    create_when_served(story, "probe", timings)
    story.then_condition("releases", "probe", "Ready", status="False", reason="PipelineNotFound", timeout=15)
    answered = time.monotonic() - timings["served"]
    # And the promotion carries on (how soon depends also on the cluster's own controllers and kwok)
    rel = story.then_release(
        "shop-o", in_phase("AwaitingApproval"), "AwaitingApproval after the outage", CLUSTER_CATCH_UP_SECONDS
    )
    moved = time.monotonic() - timings["back"]
    print(
        f"\n{component} down {timings['back'] - timings['down']:.1f}s; custom kinds served again "
        f"{timings['served'] - timings['back']:.1f}s after it was back; the operator answered a new "
        f"object {answered:.1f}s after that; the release moved on {moved:.1f}s after the return"
    )
    assert operator.proc is not None
    assert operator.proc.pid == pid
    assert operator.proc.poll() is None
    assert stage_record(rel, "staging")["phase"] == "Verified"
    story.when_approved("shop-o", "prod")
    story.then_release_phase("shop-o", "Succeeded", timeout=CLUSTER_CATCH_UP_SECONDS)
    # And nothing was lost or done twice
    then_every_step_ran_once(story, audit, "shop-o", label)
    operator.wait_healthy(timeout=10)
