"""Notifications, end to end: a real operator, the real control plane, and an HTTP receiver on
127.0.0.1 standing in for Slack, Teams and a webhook (tests/support/receiver.py).

The operator runs with `--notify-allowed-host 127.0.0.1:<port>` — without it, loopback and plain
http are refused (tests/unit/test_notifications.py). Every webhook URL carries a canary token: it
must appear in the requests the receiver got and nowhere else.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import threading
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from conveyor.api.notification import Notification
from support.operator import REPO
from support.receiver import Hold, Receiver, Request
from support.story import Story, status
from support.wait import has_condition, wait_for_object

pytestmark = pytest.mark.cluster

SMOKE = {"command": ["/app/smoke"]}
EVERYTHING = [
    "approvalNeeded",
    "stageVerified",
    "releaseSucceeded",
    "releaseFailed",
    "rollbackStarted",
    "rollbackCompleted",
    "rollbackRefused",
    "rollbackFailed",
]


def given_secret(story: Story, name: str, url: str, *, labelled: bool = True) -> None:
    """The Secret holding a channel's URL (labelled for Conveyor unless told otherwise)."""
    labels = {"conveyor.dev/notification-secret": "true"} if labelled else {}
    story.core.create_namespaced_secret(
        story.ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            data={"url": base64.b64encode(url.encode()).decode()},
        ),
    )


def given_channel(story: Story, name: str, type_: str, secret: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "NotificationChannel",
        "metadata": {"name": name},
        "spec": {"type": type_, "urlSecretRef": {"name": secret}, "triggers": EVERYTHING, **spec},
    }
    return story.create("notificationchannels", body)


def then_channel(
    story: Story, name: str, ctype: str, cstatus: str, reason: str, *, timeout: float = 30
) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for_object(
        story.lister("notificationchannels"),
        name,
        has_condition(ctype, cstatus, reason),
        what=f"channel {name}: {ctype}={cstatus} ({reason})",
        timeout=timeout,
    )
    return obj


def ledger(story: Story, name: str) -> list[dict[str, Any]]:
    return list(status(story.get("notificationchannels", name)).get("ledger") or [])


def given_hook(story: Story, receiver: Receiver, *answers: int | Hold, **spec: Any) -> str:
    """A webhook channel "hook" (its Secret labelled) to a fresh path of the receiver answering
    `answers`; the path."""
    path = f"/hook/{secrets.token_hex(4)}"
    given_secret(story, "hook-url", receiver.url(path, *answers))
    given_channel(story, "hook", "webhook", "hook-url", **spec)
    return path


def given_one_stage_and_operator(story: Story, receiver: Receiver, *, fault: str | None = None) -> None:
    """A one-stage pipeline (staging) and the operator, allowed to reach the receiver."""
    story.given_deployments(stages=["staging"])
    story.given_pipeline(stages=[{"name": "staging", "namespace": story.stage_ns["staging"]}])
    story.given_operator("--notify-allowed-host", receiver.host, fault=fault)


def delivered(receiver: Receiver, path: str) -> list[Request]:
    return [r for r in receiver.at(path) if r.answered is not None and 200 <= r.answered < 300]


def plugin(story: Story, command: str, user: str) -> subprocess.CompletedProcess[str]:
    """Run a `kubectl conveyor …` command line as `user` (the plugin is kubectl-conveyor)."""
    words = command.split()
    assert words[:2] == ["kubectl", "conveyor"], command
    assert story.users_dir is not None
    env = {**os.environ, "KUBECONFIG": str(story.users_dir / f"{user}.kubeconfig")}
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "kubectl-conveyor"), *words[2:]],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_each_message_once_in_order_to_slack_teams_and_a_webhook_and_the_url_nowhere_else(story: Story):
    canary = f"CANARY-{secrets.token_hex(8)}"
    with Receiver() as receiver:
        # Given a pipeline (staging, then prod behind alice's approval) and a second one whose smoke
        # test fails in staging
        story.given_deployments()
        story.given_deployments(name="cart")
        story.given_pipeline(
            smoke_test=SMOKE,
            stages=[
                {"name": "staging", "namespace": story.stage_ns["staging"]},
                {
                    "name": "prod",
                    "namespace": story.stage_ns["prod"],
                    "requiresApproval": True,
                    "approval": {"approvers": {"users": ["alice"]}},
                },
            ],
        )
        story.given_pipeline(
            "cart",
            smoke_test=SMOKE,
            targets=[{"deployment": "cart", "container": "web"}],
            stages=[
                {
                    "name": "staging",
                    "namespace": story.stage_ns["staging"],
                    "variables": {"CONVEYOR_SIMULATE": "fail"},
                },
            ],
        )
        # and three channels: Slack, Teams, and a webhook that fails its first request (500)
        paths = {t: f"/{t}/{canary}" for t in ("slack", "teams", "webhook")}
        given_secret(story, "slack-url", receiver.url(paths["slack"]))
        given_secret(story, "teams-url", receiver.url(paths["teams"], 202))  # Workflows answer 202
        given_secret(story, "hook-url", receiver.url(paths["webhook"], 500, 200))
        # whose Secret for Teams is not labelled yet
        story.core.delete_namespaced_secret("teams-url", story.ns)
        given_secret(story, "teams-url", receiver.url(paths["teams"], 202), labelled=False)
        for type_, secret in (("slack", "slack-url"), ("teams", "teams-url"), ("webhook", "hook-url")):
            given_channel(story, type_, type_, secret, dashboardUrl="https://conveyor.example")
        story.given_operator("--notify-allowed-host", receiver.host)

        # Then the unlabelled Secret is a condition saying so, and labelling it heals the channel
        teams = then_channel(story, "teams", "Ready", "False", "SecretNotLabelled")
        assert canary not in json.dumps(teams)
        story.kubectl("label", "secret", "teams-url", "-n", story.ns, "conveyor.dev/notification-secret=true")
        then_channel(story, "slack", "Ready", "True", "Ready")
        then_channel(story, "webhook", "Ready", "True", "Ready")

        # When CI creates a release of shop, and one of cart
        story.when_release("shop-v1", label="v1")
        story.when_release("cart-v1", label="cart1", pipeline="cart")

        # Then every channel is told that shop-v1 waits for approval, with the command to approve
        want_first = ["stageVerified", "approvalNeeded"]
        receiver.wait(
            "stageVerified(staging) and approvalNeeded(prod) delivered to every channel",
            lambda _: all(
                [t for t in receiver.triggers(p) if t != "releaseFailed"][:2] == want_first
                for p in paths.values()
            ),
            timeout=90,
        )
        then_channel(story, "teams", "Ready", "True", "Ready")
        hook = [
            r
            for r in delivered(receiver, paths["webhook"])
            if r.headers["x-conveyor-trigger"] == "approvalNeeded"
        ]
        event = hook[0].json()
        data = Notification.model_validate(event["data"])  # the documented schema, v1
        assert event["specversion"] == "1.0"
        assert event["id"] == data.id == hook[0].id == hook[0].headers["webhook-id"]
        assert event["type"] == "dev.conveyor.approvalNeeded.v1"
        assert data.release is not None
        assert data.release.release == "shop-v1"
        assert data.stage == "prod"
        assert data.approval is not None
        assert data.approval.users == ["alice"]
        assert data.links.dashboard == f"https://conveyor.example/#/release/{story.ns}/shop-v1"
        slack_body = next(
            r.json()
            for r in delivered(receiver, paths["slack"])
            if r.headers["x-conveyor-trigger"] == "approvalNeeded"
        )
        assert data.approval.command in json.dumps(slack_body)
        assert slack_body["blocks"]
        assert slack_body["text"]
        teams_body = delivered(receiver, paths["teams"])[0].json()
        assert teams_body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"

        # When alice runs the command the message gave her
        result = plugin(story, data.approval.command, "alice")
        assert result.returncode == 0, result.stderr

        # Then prod's verification and the release's success follow, once each, in order
        story.then_release_phase("shop-v1", "Succeeded", timeout=90)
        story.then_release_phase("cart-v1", "Failed", timeout=90)
        want = ["stageVerified", "approvalNeeded", "stageVerified", "releaseSucceeded"]
        receiver.wait(
            "the whole story, and cart's failure, delivered to every channel",
            lambda _: all(
                [t for t in receiver.triggers(p) if t != "releaseFailed"] == want
                and receiver.triggers(p).count("releaseFailed") == 1
                for p in paths.values()
            ),
            timeout=60,
        )
        for path in paths.values():
            ids = [r.id for r in delivered(receiver, path)]
            assert len(ids) == len(set(ids)) == 5, f"{path}: a message delivered twice: {ids}"
        # The webhook's first request failed (500): the same message went again, with the same id
        first, second = receiver.at(paths["webhook"])[:2]
        assert (first.answered, second.answered) == (500, 200)
        assert first.id == second.id
        assert first.body == second.body

        # The failure names the step and the Job to look at
        failed = next(
            Notification.model_validate(r.json()["data"])
            for r in delivered(receiver, paths["webhook"])
            if r.headers["x-conveyor-trigger"] == "releaseFailed"
        )
        assert failed.release is not None
        assert failed.release.release == "cart-v1"
        assert failed.failure is not None
        assert failed.failure.step == "SmokeTest"
        assert failed.failure.object is not None
        assert failed.failure.object.kind == "Job"
        assert (
            failed.failure.object.name
            == status(story.get("releases", "cart-v1"))["stages"][0]["smokeTestJob"]
        )

        # And each channel's ledger records every message once, delivered
        for name in ("slack", "teams", "webhook"):
            got = wait_for_object(
                story.lister("notificationchannels"),
                name,
                lambda o: len((o or {}).get("status", {}).get("ledger") or []) == 5,
                what=f"channel {name}: five ledger entries",
                timeout=30,
            )
            entries = status(got)["ledger"]
            assert {e["result"] for e in entries} == {"Delivered"}
            assert len({e["id"] for e in entries}) == 5
            assert status(got)["delivered"] == 5
        webhook_entries = {e["trigger"]: e for e in ledger(story, "webhook")}
        assert webhook_entries["stageVerified"]["attempts"] in (1, 2)
        assert story.kubectl("get", "nch", "-n", story.ns).count("Delivered") == 3

        # And the metrics count the retry
        assert story.operator is not None
        metrics = metrics_text(story.operator.metrics_port)
        retried = [
            line
            for line in metrics.splitlines()
            if line.startswith("conveyor_notifications_total") and 'result="retried"' in line
        ]
        assert any(f'channel="{story.ns}/webhook"' in line and not line.endswith(" 0.0") for line in retried)

        # And the canary (the URLs' secret part) is nowhere but in the requests it was sent with
        assert all(canary in r.path for r in receiver.requests)
        assert canary not in metrics
        assert canary not in "\n".join(story.operator.lines)
        events = story.kubectl("get", "events", "-A", "-o", "json")
        assert canary not in events
        for plural in ("notificationchannels", "releases", "pipelines"):
            assert canary not in story.kubectl("get", plural, "-n", story.ns, "-o", "yaml")


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def test_a_message_in_flight_when_the_operator_dies_is_delivered_once_with_its_id(story: Story):
    with Receiver() as receiver:
        # Given a channel on stage verifications whose receiver holds the first request unanswered
        hold = Hold(200)
        given_hook(story, receiver, hold, 200, triggers=["stageVerified"])
        given_one_stage_and_operator(story, receiver)
        then_channel(story, "hook", "Ready", "True", "Ready")
        story.when_release("shop-k", label="k")
        receiver.wait("the stageVerified request to arrive", lambda rs: len(rs) == 1)

        # When the operator is killed while the request is in flight (transition recorded, nothing
        # delivered), then restarted
        story.restart_operator()
        hold.released.set()

        # Then the message is delivered again with the same id, and recorded once
        requests = receiver.wait("the message again after the restart", lambda rs: len(rs) >= 2)
        assert {r.id for r in requests} == {requests[0].id}
        wait_for_object(
            story.lister("notificationchannels"),
            "hook",
            lambda o: [e["id"] for e in (o or {}).get("status", {}).get("ledger") or []] == [requests[0].id],
            what="one ledger entry, for that id",
            timeout=30,
        )
        assert ledger(story, "hook")[0]["result"] == "Delivered"


def test_killed_after_the_receiver_accepted_before_recording_it_goes_again_with_the_same_id(story: Story):
    with Receiver() as receiver:
        # Given an operator that dies right after a receiver accepts a message, before its ledger write
        given_hook(story, receiver, triggers=["stageVerified", "releaseSucceeded"])
        given_one_stage_and_operator(story, receiver, fault="after-notification-send")
        story.when_release("shop-f", label="f")
        story.then_operator_dies_at("after-notification-send")
        first = receiver.wait("one delivery", lambda rs: len(rs) == 1)[0]
        assert ledger(story, "hook") == []

        # When it is restarted
        story.given_operator("--notify-allowed-host", receiver.host)

        # Then that message goes again with its id (the documented window), the next one once, and
        # the ledger holds each once
        requests = receiver.wait(
            "stageVerified again and releaseSucceeded",
            lambda rs: (
                [r.headers.get("x-conveyor-trigger") for r in rs]
                == ["stageVerified", "stageVerified", "releaseSucceeded"]
            ),
        )
        assert requests[1].id == first.id
        wait_for_object(
            story.lister("notificationchannels"),
            "hook",
            lambda o: (
                sorted(e["id"] for e in (o or {}).get("status", {}).get("ledger") or [])
                == sorted({first.id, requests[2].id})
            ),
            what="two ledger entries, one per message",
            timeout=30,
        )


def test_a_receiver_that_refuses_is_recorded_rejected_and_not_retried(story: Story):
    with Receiver() as receiver:
        # Given a webhook whose URL answers 404 (a deleted Slack webhook, say)
        path = given_hook(story, receiver, 404, triggers=["stageVerified"])
        # and a channel that points at the cluster's own network without being allowed to
        given_secret(story, "metadata-url", "https://169.254.169.254/latest/meta-data")
        given_channel(story, "inside", "webhook", "metadata-url", triggers=["stageVerified"])
        given_one_stage_and_operator(story, receiver)
        then_channel(story, "inside", "Ready", "False", "HostNotAllowed")
        story.when_release("shop-r", label="r")

        # Then one request, recorded Rejected, a Warning Event, and the condition says so
        then_channel(story, "hook", "Delivering", "False", "Rejected", timeout=60)
        assert len(receiver.at(path)) == 1
        assert [e["result"] for e in ledger(story, "hook")] == ["Rejected"]
        story.then_event("hook", "NotificationRejected")
        # and the promotion went on as if nothing happened
        story.then_release_phase("shop-r", "Succeeded")
        assert len(receiver.at(path)) == 1


def test_the_schema_refuses_a_bad_channel_naming_the_field(story: Story):
    from kubernetes.client.exceptions import ApiException

    def refused(**spec: Any) -> str:
        body = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "NotificationChannel",
            "metadata": {"name": "bad"},
            "spec": {"type": "slack", "urlSecretRef": {"name": "s"}, "triggers": ["approvalNeeded"], **spec},
        }
        body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
        with pytest.raises(ApiException) as err:
            story.create("notificationchannels", body)
        assert err.value.status == 422
        return str(err.value.body)

    assert "spec.triggers" in refused(triggers=[])
    assert "spec.triggers[0]" in refused(triggers=["approvalneeded"])
    assert "spec.triggers[1]" in refused(triggers=["approvalNeeded", "approvalNeeded"])  # a set
    assert "spec.type" in refused(type="email")
    assert "spec.urlSecretRef" in refused(urlSecretRef=None)
    assert "spec.urlSecretRef.name" in refused(urlSecretRef={"name": "Not_A_Name"})
    assert "spec.dashboardUrl" in refused(dashboardUrl="javascript:alert(1)")
    assert "spec.maxDelaySeconds" in refused(maxDelaySeconds=0)
    assert "spec.stages[0]" in refused(stages=["Prod!"])
    # No URL field exists at all: one put in a spec by mistake is not stored (pruned as unknown)
    stray = given_channel(story, "stray", "slack", "s", url="https://hooks.slack.com/services/T/B/x")
    assert "hooks.slack.com" not in json.dumps(story.get("notificationchannels", "stray"))
    assert "url" not in stray["spec"]
    # The type is immutable (a slack channel does not quietly become a webhook)
    given_channel(story, "good", "slack", "s")
    with pytest.raises(ApiException) as err:
        story.custom.patch_namespaced_custom_object(
            "conveyor.dev",
            "v1alpha1",
            story.ns,
            "notificationchannels",
            "good",
            {"spec": {"type": "webhook"}},
        )
    assert err.value.status == 422
    assert "type is immutable" in str(err.value.body)


def test_a_suspended_channel_never_sends_what_happened_meanwhile(story: Story):
    with Receiver() as receiver:
        # Given a suspended channel on stage verifications
        given_hook(story, receiver, triggers=["stageVerified"], suspend=True)
        given_one_stage_and_operator(story, receiver)
        then_channel(story, "hook", "Ready", "False", "Suspended")

        # When a release is verified meanwhile, and the channel is then resumed
        story.when_release("shop-s1", label="s1")
        story.then_release_phase("shop-s1", "Succeeded")
        story.custom.patch_namespaced_custom_object(
            "conveyor.dev", "v1alpha1", story.ns, "notificationchannels", "hook", {"spec": {"suspend": False}}
        )
        then_channel(story, "hook", "Ready", "True", "Ready")

        # Then what happened while suspended is never sent, and what happens next is
        story.when_release("shop-s2", label="s2")
        requests = receiver.wait("the next release's stageVerified", lambda rs: len(rs) >= 1)
        assert [Notification.model_validate(r.json()["data"]).release.release for r in requests] == [
            "shop-s2"
        ]
        assert status(story.get("notificationchannels", "hook"))["horizon"]

        # When the channel is edited to say more (releaseSucceeded too)
        story.then_release_phase("shop-s2", "Succeeded")
        story.custom.patch_namespaced_custom_object(
            "conveyor.dev",
            "v1alpha1",
            story.ns,
            "notificationchannels",
            "hook",
            {"spec": {"triggers": ["stageVerified", "releaseSucceeded"]}},
        )
        wait_for_object(
            story.lister("notificationchannels"),
            "hook",
            lambda o: (
                (o or {}).get("status", {}).get("observedGeneration")
                == (o or {}).get("metadata", {}).get("generation")
            ),
            what="the edit seen",
            timeout=30,
        )
        story.when_release("shop-s3", label="s3")

        # Then the edit does not reach back (shop-s1's and shop-s2's success are not sent): only s3's
        requests = receiver.wait("shop-s3's two messages", lambda rs: len(rs) >= 3)
        said = [(r.headers["x-conveyor-trigger"], r.json()["data"]["release"]["release"]) for r in requests]
        assert said == [
            ("stageVerified", "shop-s2"),
            ("stageVerified", "shop-s3"),
            ("releaseSucceeded", "shop-s3"),
        ]


def test_a_leader_stepping_down_records_the_message_in_flight_and_the_standby_never_repeats_it(story: Story):
    with Receiver() as receiver:
        # Given two replicas on one Lease (a leads, b stands by), a channel whose receiver holds the
        # first request unanswered
        hold = Hold(200)
        given_hook(story, receiver, hold, 200, triggers=["stageVerified"])
        story.given_deployments(stages=["staging"])
        story.given_pipeline(stages=[{"name": "staging", "namespace": story.stage_ns["staging"]}])
        a, b = story.given_two_replicas("--notify-allowed-host", receiver.host)
        story.when_release("shop-g1", label="g1")
        first = receiver.wait("the held stageVerified request", lambda rs: len(rs) == 1)[0]

        # When the leader is told to stop (a rolling update) while that request is in flight, and the
        # receiver then accepts it
        stopping = threading.Thread(target=a.stop, daemon=True)
        stopping.start()
        a.wait_for_log(r"waiting for 1 notification\(s\) in flight to be recorded before stepping down")
        hold.released.set()
        stopping.join(timeout=60)
        b.wait_for_log("is the leader now", timeout=30)

        # Then the old leader recorded it before letting go, and the new one never sends it again
        story.when_release("shop-g2", label="g2")
        requests = receiver.wait("shop-g2's stageVerified from the new leader", lambda rs: len(rs) >= 2)
        assert [r.id for r in requests].count(first.id) == 1, [(r.id, r.answered) for r in requests]
        entries = wait_for_object(
            story.lister("notificationchannels"),
            "hook",
            lambda o: len((o or {}).get("status", {}).get("ledger") or []) == 2,
            what="two ledger entries",
            timeout=30,
        )["status"]["ledger"]
        assert sorted(e["id"] for e in entries) == sorted({first.id, requests[1].id})
