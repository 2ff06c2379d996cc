"""Issue #10, at admission, on the real API server: a supplied identity stamp counts only when it is
exactly the identity the API server authenticated (username and groups), and every user-supplied
string and list has a bound the API server enforces, with a field-level message.

Identities are the local control plane's static-token users: alice and bob are in
conveyor:approvers, carol is a developer (she may create Releases, Approvals and Rollbacks, but is
no approver), ci-bot is CI."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conveyor.api.common import GROUP, VERSION
from support.builders import pipeline_dict, release_dict
from support.story import Story

pytestmark = pytest.mark.cluster
MB = "x" * (1 << 20)


def real_identity(story: Story, user: str) -> tuple[str, list[str]]:
    """Who the API server says `user` is (SelfSubjectReview): username and groups, in its order."""
    assert story.users_dir is not None, "needs the local control plane's test identities"
    api = config.new_client_from_config(config_file=str(story.users_dir / f"{user}.kubeconfig"))
    review = client.AuthenticationV1Api(api).create_self_subject_review({})
    info = review.status.user_info
    return info.username, list(info.groups or [])


def approval(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Approval",
        "metadata": {"name": name},
        "spec": {"release": "shop-v1", "stage": "prod", **spec},
    }


def rollback(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollback",
        "metadata": {"name": name},
        "spec": {"pipeline": "shop", **spec},
    }


def refused(story: Story, plural: str, body: dict[str, Any], *, as_user: str | None, status: int) -> str:
    """Create `body` and expect the API server to refuse it with `status`; return its message."""
    with pytest.raises(ApiException) as err:
        story.create(plural, body, as_user=as_user)
    assert err.value.status == status, err.value.body
    message: str = json.loads(err.value.body)["message"]
    return message


def test_forged_approver_groups_are_refused_and_the_message_names_the_real_identity(story: Story):
    username, groups = real_identity(story, "carol")
    assert username == "carol"
    assert "conveyor:approvers" not in groups
    assert "developers" in groups
    forgeries = {
        "forged": {"username": "carol", "groups": ["conveyor:approvers"]},
        "superset": {"username": "carol", "groups": [*groups, "conveyor:approvers"]},
        "omitted": {"username": "carol"},
        "empty": {"username": "carol", "groups": []},
        "subset": {"username": "carol", "groups": groups[:1]},
        "reordered": {"username": "carol", "groups": list(reversed(groups))},
        "duplicated": {"username": "carol", "groups": [*groups, groups[0]]},
        "other-user": {"username": "alice", "groups": groups},
    }
    for name, stamp in forgeries.items():
        message = refused(story, "approvals", approval(name, approver=stamp), as_user="carol", status=403)
        assert "spec.approver is stamped by the API server" in message, (name, message)
        assert f"(carol) with groups [{', '.join(groups)}]" in message, (name, message)
    assert story.custom.list_namespaced_custom_object(GROUP, VERSION, story.ns, "approvals")["items"] == []

    # Exactly what the API server would stamp is admitted, and stored as given.
    exact = story.create(
        "approvals", approval("exact", approver={"username": "carol", "groups": groups}), as_user="carol"
    )
    assert exact["spec"]["approver"] == {"username": "carol", "groups": groups}
    # Left out, the API server stamps the same.
    stamped = story.create("approvals", approval("stamped"), as_user="carol")
    assert stamped["spec"]["approver"] == {"username": "carol", "groups": groups}


def test_forged_requester_groups_on_releases_and_rollbacks_are_refused(story: Story):
    username, groups = real_identity(story, "carol")
    body = release_dict("shop-v1", namespace=story.ns, label="v1")
    body["spec"]["requester"] = {"username": username, "groups": [*groups, "conveyor:approvers"]}
    message = refused(story, "releases", body, as_user="carol", status=403)
    assert "spec.requester is stamped by the API server" in message
    assert f"(carol) with groups [{', '.join(groups)}]" in message
    body["spec"]["requester"] = {"username": username, "groups": groups}
    assert story.create("releases", body, as_user="carol")["spec"]["requester"]["groups"] == groups

    forged = rollback("rb-forged", requester={"username": username, "groups": ["conveyor:approvers"]})
    message = refused(story, "rollbacks", forged, as_user="carol", status=403)
    assert "spec.requester is stamped by the API server" in message
    assert "(carol) with groups [" in message
    honest = story.create("rollbacks", rollback("rb-honest"), as_user="carol")
    assert honest["spec"]["requester"] == {"username": username, "groups": groups}


def test_a_stored_object_re_applied_by_another_identity_is_an_update_and_is_admitted(story: Story):
    """What Argo CD does when it re-applies an Approval whose stamp names alice: an UPDATE, which
    the identity policy does not judge (it judges CREATE); the spec stays immutable."""
    created = story.when_approved("shop-v1", "prod", name="by-alice", as_user="alice", bind=False)
    manifest = {
        "apiVersion": created["apiVersion"],
        "kind": "Approval",
        "metadata": {"name": "by-alice", "namespace": story.ns, "labels": {"synced-by": "argocd"}},
        "spec": created["spec"],
    }
    story.kubectl(
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input_=yaml.safe_dump(manifest),
    )
    stored = story.get("approvals", "by-alice")
    assert stored["metadata"]["labels"] == {"synced-by": "argocd"}
    assert stored["spec"]["approver"] == created["spec"]["approver"]
    # a replace with the same spec (kubectl replace, client-side apply) is admitted too
    stored["metadata"]["labels"]["again"] = "yes"
    story.custom.replace_namespaced_custom_object(GROUP, VERSION, story.ns, "approvals", "by-alice", stored)
    # … and changing the stamp is refused: the spec is immutable
    changed = copy.deepcopy(story.get("approvals", "by-alice"))
    changed["spec"]["approver"]["groups"] = ["conveyor:approvers"]
    with pytest.raises(ApiException) as err:
        story.custom.replace_namespaced_custom_object(
            GROUP, VERSION, story.ns, "approvals", "by-alice", changed
        )
    assert err.value.status == 422
    assert "spec is immutable" in json.loads(err.value.body)["message"]


def test_a_stamp_with_too_many_groups_is_refused_by_the_schema(story: Story):
    huge = {"username": "carol", "groups": [f"group-{i}" for i in range(300)]}
    message = refused(story, "approvals", approval("huge", approver=huge), as_user="carol", status=422)
    assert "spec.approver.groups" in message
    assert "must have at most 256 items" in message


def gated_pipeline(story: Story, **approval_policy: Any) -> dict[str, Any]:
    stage = {"name": "prod", "namespace": story.stage_ns["prod"], "requiresApproval": True}
    stage["approval"] = approval_policy
    return pipeline_dict("shop", story.ns, stages=[stage])


def test_a_megabyte_approvers_entry_is_refused_with_its_field(story: Story):
    body = gated_pipeline(story, approvers={"users": [MB]})
    message = refused(story, "pipelines", body, as_user=None, status=422)
    assert "spec.stages[0].approval.approvers.users[0]" in message
    assert "Too long" in message
    assert MB[:4096] not in message  # the value is not echoed back


def test_ten_thousand_approvers_are_refused_with_their_field(story: Story):
    body = gated_pipeline(story, approvers={"users": [f"user-{i}" for i in range(10_000)]})
    message = refused(story, "pipelines", body, as_user=None, status=422)
    assert "spec.stages[0].approval.approvers.users" in message
    assert "must have at most 100 items" in message


def test_a_megabyte_smoke_test_command_item_is_refused_with_its_field(story: Story):
    body = pipeline_dict(
        "shop",
        story.ns,
        stages=[{"name": "prod", "namespace": story.stage_ns["prod"]}],
        smoke_test={"command": ["/app/smoke", MB]},
    )
    message = refused(story, "pipelines", body, as_user=None, status=422)
    assert "spec.smokeTest.command[1]" in message
    assert "Too long" in message


def test_a_megabyte_approval_comment_is_refused_with_its_field(story: Story):
    message = refused(story, "approvals", approval("long", comment=MB), as_user="alice", status=422)
    assert "spec.comment" in message
    assert "Too long" in message


def test_bounded_job_templates_still_take_what_a_container_spec_takes(story: Story):
    """The spelled-out valueFrom / envFrom / resources shapes keep what real pipelines use."""
    template = {
        "command": ["/app/smoke"],
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": 1}}},
        ],
        "envFrom": [{"prefix": "APP_", "configMapRef": {"name": "shop-config"}}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1}},
        "labels": {"team": "payments"},
    }
    body = pipeline_dict(
        "shop", story.ns, stages=[{"name": "prod", "namespace": story.stage_ns["prod"]}], smoke_test=template
    )
    created = story.create("pipelines", body)
    assert created["spec"]["smokeTest"]["env"] == template["env"]
    assert created["spec"]["smokeTest"]["envFrom"] == template["envFrom"]
    assert created["spec"]["smokeTest"]["resources"] == template["resources"]
    # two sources in one valueFrom are refused (a Pod spec refuses them too)
    both = copy.deepcopy(body)
    both["metadata"]["name"] = "shop-two"
    both["spec"]["smokeTest"]["env"] = [
        {
            "name": "X",
            "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}, "fieldRef": {"fieldPath": "c"}},
        }
    ]
    message = refused(story, "pipelines", both, as_user=None, status=422)
    assert "spec.smokeTest.env[0].valueFrom" in message


def test_two_stages_in_one_namespace_are_refused(story: Story):
    # prod's gate would mean nothing: a release in staging would already run in prod's Deployments
    ns = story.stage_ns["staging"]
    body = pipeline_dict(
        "shop",
        story.ns,
        stages=[
            {"name": "staging", "namespace": ns},
            {"name": "prod", "namespace": ns, "requiresApproval": True},
        ],
    )
    message = refused(story, "pipelines", body, as_user=None, status=422)
    assert "spec.stages" in message
    assert "each stage needs a namespace of its own" in message
