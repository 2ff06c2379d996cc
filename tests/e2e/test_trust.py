"""Trust and audit stories with real identities: the local control plane's static-token users
(alice and bob approve; carol is a developer; dave is both; ci-bot creates releases), identities
stamped by the API server's admission policies, the approval policy, the kubectl plugin's timeline
and history, and retention."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from conveyor.api.common import GROUP, VERSION
from support.builders import commit_of, release_dict
from support.story import Story, short, status

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def gated(story: Story, **policy) -> None:
    """A one-stage pipeline whose prod requires approval under `policy`."""
    story.given_deployments(stages=["prod"])
    stage = {"name": "prod", "namespace": story.stage_ns["prod"], "requiresApproval": True}
    if policy:
        stage["approval"] = policy
    story.given_pipeline(stages=[stage])
    story.given_operator()


def counted(story: Story, approval: str, reason: str, flag: str = "False") -> dict:
    return story.then_condition("approvals", approval, "Counted", status=flag, reason=reason)


def test_an_allowed_approver_counts_and_the_authenticated_name_is_recorded(story: Story):
    gated(story, approvers={"groups": ["conveyor:approvers"]})
    story.when_release("shop-v1", label="v1")  # as ci-bot
    story.then_release_phase("shop-v1", "AwaitingApproval")
    story.when_approved("shop-v1", "prod", as_user="alice")
    rel = story.then_condition("releases", "shop-v1", "Ready")
    assert status(rel)["approvedBy"] == "alice"
    assert rel["spec"]["requester"]["username"] == "ci-bot"
    approval = story.get("approvals", "shop-v1-prod")
    assert approval["spec"]["approver"]["username"] == "alice"
    assert "conveyor:approvers" in approval["spec"]["approver"]["groups"]
    assert [(a["approver"], a["verdict"]) for a in status(rel)["approvals"]] == [("alice", "Used")]
    granted = [h for h in status(rel)["history"] if h["reason"] == "ApprovalGranted"]
    assert granted[0]["actor"] == "alice"
    assert granted[0]["commit"] == commit_of("v1")
    assert granted[0]["ciRun"] == "run-v1"
    story.then_event("shop-v1", "ApprovalGranted")
    events = story.core.list_namespaced_event(story.ns, field_selector="involvedObject.name=shop-v1").items
    annotated = next(e for e in events if e.reason == "ApprovalGranted")
    assert annotated.metadata.annotations["conveyor.dev/actor"] == "alice"
    assert annotated.metadata.annotations["conveyor.dev/stage"] == "prod"
    audit = story.audit_event("ApprovalGranted")
    assert audit[0]["actor"] == "alice"
    assert audit[0]["digest"] == rel["spec"]["digest"]


def test_someone_not_allowed_is_kept_and_marked_not_an_approver(story: Story):
    gated(story, approvers={"users": ["bob"]})
    story.when_release("shop-v1", label="v1")
    story.when_approved("shop-v1", "prod", name="by-carol", as_user="carol")
    approval = counted(story, "by-carol", "NotAnApprover")
    assert "carol is not an approver" in approval["status"]["conditions"][0]["message"]
    rel = story.then_release_phase("shop-v1", "AwaitingApproval")
    assert "by-carol (NotAnApprover)" in status(rel)["message"]
    story.when_approved("shop-v1", "prod", name="by-bob", as_user="bob")
    story.then_condition("releases", "shop-v1", "Ready")


def test_self_approval_is_refused_under_four_eyes(story: Story):
    gated(story)
    story.when_release("shop-v1", label="v1", as_user="dave")  # dave releases …
    story.when_approved("shop-v1", "prod", name="by-dave", as_user="dave")  # … and may not approve it
    counted(story, "by-dave", "SelfApproval")
    story.then_release_phase("shop-v1", "AwaitingApproval")
    story.when_approved("shop-v1", "prod", name="by-alice", as_user="alice")
    story.then_condition("releases", "shop-v1", "Ready")


def test_two_approvals_required_one_is_not_enough(story: Story):
    gated(story, minApprovals=2)
    story.when_release("shop-v1", label="v1")
    story.when_approved("shop-v1", "prod", name="by-alice", as_user="alice")
    counted(story, "by-alice", "Accepted", flag="True")
    rel = story.then_release_phase("shop-v1", "AwaitingApproval")
    assert "1 of 2" in status(rel)["message"]
    story.when_approved("shop-v1", "prod", name="by-bob", as_user="bob")
    rel = story.then_condition("releases", "shop-v1", "Ready")
    assert status(rel)["approvedBy"] == "alice, bob"


def test_an_expired_approval_is_ignored(story: Story):
    # Two approvals needed, each valid for 6 seconds: alice's expires before bob's arrives.
    gated(story, minApprovals=2, expiresAfterSeconds=6)
    story.when_release("shop-v1", label="v1")
    story.when_approved("shop-v1", "prod", name="by-alice", as_user="alice")
    counted(story, "by-alice", "Expired")  # the operator wakes up when it expires
    story.when_approved("shop-v1", "prod", name="by-bob", as_user="bob")
    counted(story, "by-bob", "Accepted", flag="True")
    rel = story.then_release_phase("shop-v1", "AwaitingApproval")
    assert "by-alice (Expired)" in status(rel)["message"]


def test_forged_approver_and_requester_are_refused_by_the_api_server(story: Story):
    gated(story)
    forged = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "forged"},
        "spec": {"release": "shop-v1", "stage": "prod", "approver": {"username": "bob", "groups": []}},
    }
    with pytest.raises(ApiException) as err:
        story.create("approvals", forged, as_user="alice")
    assert err.value.status == 403
    assert "spec.approver is stamped by the API server" in str(err.value.body)
    assert "(alice)" in str(err.value.body)
    body = release_dict("shop-v1", namespace=story.ns, label="v1")
    body["spec"]["requester"] = {"username": "alice", "groups": []}
    with pytest.raises(ApiException) as err:
        story.create("releases", body, as_user="ci-bot")
    assert err.value.status == 403
    assert "spec.requester" in str(err.value.body)
    # A declared reviewedBy is kept, and never confused with the stamped approver.
    story.when_release("shop-v1", label="v1")
    honest = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "honest"},
        "spec": {"release": "shop-v1", "stage": "prod", "reviewedBy": "https://github.com/acme/shop/pull/7"},
    }
    created = story.create("approvals", honest, as_user="bob")
    assert created["spec"]["approver"]["username"] == "bob"
    assert created["spec"]["reviewedBy"].endswith("/pull/7")


def plugin(story: Story, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    kubeconfig = story.users_dir / f"{user}.kubeconfig" if user and story.users_dir else story.kubeconfig
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "kubectl-conveyor"), *args, "-n", story.ns],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def mask(text: str, story: Story) -> str:
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z", "<time>", text)
    text = re.sub(r"\b\d+\.\d+(s|m|h)\b", "<dur>", text)
    for role, ns in story.stage_ns.items():
        text = text.replace(ns, f"<{role}-ns>")
    text = re.sub(r" +\n", "\n", text)
    return re.sub(r"  +", "  ", text)


def test_trace_and_history_tell_a_real_promotion_and_rollback(story: Story):
    story.given_deployments(stages=["prod"])
    story.given_pipeline(
        stages=[{"name": "prod", "namespace": story.stage_ns["prod"], "requiresApproval": True}],
        smoke_test={"command": ["/app/smoke"]},
    )
    story.given_operator()
    for label in ("v1", "v2"):
        story.when_release(f"shop-{label}", label=label)
        assert plugin(story, "approve", f"shop-{label}", "--stage", "prod", user="alice").returncode == 0
        story.then_condition("releases", f"shop-{label}", "Ready")
    out = plugin(story, "rollback", "shop", "--reason", "bad v2", "--no-verify", user="bob")
    assert out.returncode == 0, out.stderr
    rb_name = out.stdout.split()[0].split("/")[1]
    story.then_rollback_phase(rb_name, "Succeeded")

    trace = plugin(story, "trace", short("v2"))
    assert trace.returncode == 0, trace.stderr
    approval = next(a["name"] for a in status(story.get("releases", "shop-v2"))["approvals"])
    smoke_job = story.job("shop-v2", "prod", "smoke")
    got = (
        mask(trace.stdout, story)
        .replace(rb_name, "<rollback>")
        .replace(approval, "<approval>")
        .replace(smoke_job, "<smoke-job>")
    )
    expected = f"""commit {commit_of("v2")}
release shop-v2 (pipeline shop)
image ghcr.io/acme/shop@{release_dict("x", label="v2")["spec"]["digest"]}
CI run run-v2
author Jo (declared by CI)
by ci-bot (authenticated)

  <time>  release shop-v2 created  by ci-bot, CI run run-v2
  <time>  prod: approval <approval>  by alice (counted)
  <time>  prod: entered  approved by alice
  <time>  prod: image set
  <time>  prod: rolled out  <dur>
  <time>  prod: smoke test Succeeded  Job <smoke-job>, <dur>
  <time>  prod: VERIFIED  stage took <dur>
  <time>  prod: rollback <rollback> away from shop-v2  by bob, plan ImageOnly, Succeeded in <dur>

verdict Succeeded (vetoed)
lead time <dur>
"""
    assert re.sub(r" +", " ", got).strip() == re.sub(r" +", " ", expected).strip()
    as_json = json.loads(plugin(story, "trace", short("v2"), "-o", "json").stdout)
    assert as_json["vetoed"] is True
    assert as_json["requester"] == "ci-bot"

    history = plugin(story, "history", "shop")
    assert history.returncode == 0
    lines = [re.sub(r" +", " ", line) for line in mask(history.stdout, story).strip().splitlines()]
    assert lines == [
        "AT STAGE RELEASE COMMIT ACTION OUTCOME BY",
        f"<time> prod shop-v1 {short('v1')} rolled back (<rb>) succeeded bob".replace("<rb>", rb_name),
        f"<time> prod shop-v2 {short('v2')} promoted verified alice",
        f"<time> prod shop-v1 {short('v1')} promoted verified alice",
    ]


def test_status_watch_exit_codes_are_usable_in_ci(story: Story):
    story.given_deployments(stages=["prod"])
    story.given_pipeline(
        stages=[{"name": "prod", "namespace": story.stage_ns["prod"], "rolloutDeadlineSeconds": 6}]
    )
    story.given_operator()
    story.when_release("shop-good", label="good")
    ok = plugin(story, "status", "shop", "--watch", "--release", "shop-good", "--timeout", "60")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Succeeded" in ok.stdout.splitlines()[-1]
    story.when_release("shop-bad", label="bad", digest_prefix="dead")
    bad = plugin(story, "status", "shop", "--watch", "--timeout", "60")  # the newest release
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout.splitlines()[-1]
    # piped output is plain lines, one per change
    assert all("\r" not in line and "\x1b" not in line for line in bad.stdout.splitlines())
    assert plugin(story, "status", "nope").returncode == 2


def test_retention_deletes_old_releases_but_keeps_what_it_must(story: Story):
    story.given_deployments(stages=["prod"])
    story.given_pipeline(stages=[{"name": "prod", "namespace": story.stage_ns["prod"]}])
    pipeline = story.get("pipelines", "shop")
    pipeline["spec"]["retention"] = {"keepReleases": 1}
    story.custom.replace_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", story.ns, "pipelines", "shop", pipeline
    )
    story.given_operator()
    for label in ("v1", "v2", "v3"):
        story.promote(f"shop-{label}", label=label)
    # v1 goes; v3 runs in prod and v2 is prod's rollback target: both stay.
    story.then_release("shop-v1", lambda o: o is None, "deleted by retention")
    assert story.get("releases", "shop-v2")
    assert story.get("releases", "shop-v3")
    story.then_event("shop", "ReleaseDeleted")
    deleted = story.audit_event("ReleaseDeleted")
    assert deleted[0]["release"] == "shop-v1"


def test_the_plugin_answers_odd_input_with_a_message_and_exit_2_never_a_traceback(story: Story):
    gated(story)
    story.when_release("shop-v1", label="v1")
    cases = [
        ("approve", "shop-v1", "--stage", ""),  # the schema refuses an empty stage
        ("approve", "shop-v1", "--stage", "nope"),  # no such stage
        ("approve", "shop-ghost", "--stage", "prod"),  # no such release
        ("rollback", "nope"),  # no such pipeline
        ("rollback", "shop", "--stage", "Ünï"),
        ("rollback", "shop", "--to", "../x"),  # the schema refuses the name
        ("rollback", "shop", "--reason", "x" * 2000),  # longer than the schema allows
        ("trace", ""),
        ("status", "shop", "--watch", "--timeout", "-1"),
    ]
    for args in cases:
        out = plugin(story, *args, user="alice")
        assert out.returncode == 2, (args, out.returncode, out.stderr[-500:])
        assert "Traceback" not in out.stderr, (args, out.stderr[-500:])
        assert out.stderr.strip(), args
    assert story.custom.list_namespaced_custom_object(GROUP, VERSION, story.ns, "approvals")["items"] == []
    assert story.custom.list_namespaced_custom_object(GROUP, VERSION, story.ns, "rollbacks")["items"] == []
