"""The notification core: what happened, what is due for a channel, what an answer means, where a URL
may point. Pure functions; the e2e story (tests/e2e/test_notifications.py) sends them for real."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from conveyor.api.notification import DeliveryResult, NotificationChannel, Trigger
from conveyor.core import notifications as core
from support.builders import T0, pipeline, release, rollback


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def entry(reason: str, seconds: float, stage: str | None = None, *, warning: bool = False) -> dict[str, Any]:
    h: dict[str, Any] = {
        "time": at(seconds),
        "reason": reason,
        "message": f"{reason} happened",
        "actor": "conveyor",
    }
    if stage:
        h["stage"] = stage
    if warning:
        h["warning"] = True
    return h


def channel(**spec: Any) -> NotificationChannel:
    status = spec.pop("status", {"since": at(-60)})
    body = {
        "metadata": {"name": "team", "namespace": "apps", "uid": "uid-channel", "generation": 1},
        "spec": {
            "type": "webhook",
            "urlSecretRef": {"name": "hook"},
            "triggers": [t.value for t in Trigger],
            **spec,
        },
        "status": status,
    }
    return NotificationChannel.model_validate(body)


def shipped() -> Any:
    """A release that waited for prod, was approved, verified in both stages and succeeded."""
    return release(
        "shop-1",
        status={
            "phase": "Succeeded",
            "stages": [
                {"name": "staging", "phase": "Verified", "startedAt": at(1), "verifiedAt": at(5)},
                {
                    "name": "prod",
                    "phase": "Verified",
                    "startedAt": at(20),
                    "deployedAt": at(21),
                    "rolledOutAt": at(23),
                    "smokeTestStartedAt": at(23),
                    "verifiedAt": at(26),
                },
            ],
            "history": [
                entry("ReleaseAccepted", 0),
                entry("StageVerified", 5, "staging"),
                entry("AwaitingApproval", 6, "prod"),
                entry("AwaitingApproval", 7, "prod"),  # said again (a restart): still one occurrence
                entry("ApprovalGranted", 20, "prod"),
                entry("StageVerified", 26, "prod"),
                entry("ReleaseSucceeded", 26, "prod"),
            ],
        },
    )


def test_release_occurrences_one_per_object_stage_and_trigger() -> None:
    occs = core.release_occurrences(shipped())
    assert [(o.trigger, o.stage) for o in occs] == [
        (Trigger.STAGE_VERIFIED, "staging"),
        (Trigger.APPROVAL_NEEDED, "prod"),
        (Trigger.STAGE_VERIFIED, "prod"),
        (Trigger.RELEASE_SUCCEEDED, "prod"),
    ]
    assert occs[1].at == T0 + timedelta(seconds=6)  # the first time it was said
    assert occs[1].subject == "releases/shop-1/prod"
    assert len({o.id for o in occs}) == 4


def test_ids_are_stable_per_uid_and_differ_for_a_recreated_object() -> None:
    first = [o.id for o in core.release_occurrences(shipped())]
    assert first == [o.id for o in core.release_occurrences(shipped())]
    again = shipped()
    again.metadata.uid = "uid-shop-1-recreated"
    assert not set(first) & {o.id for o in core.release_occurrences(again)}
    assert all(i.startswith("cnv1_") and len(i) == 31 for i in first)


def test_a_failed_release_tells_its_failure_once_naming_the_job() -> None:
    failed = release(
        "shop-2",
        status={
            "phase": "Failed",
            "stages": [
                {
                    "name": "staging",
                    "phase": "Failed",
                    "startedAt": at(1),
                    "smokeTestJob": "shop-2-staging-smoke",
                    "smokeTestResult": "Failed",
                }
            ],
            "history": [
                entry("SmokeTestStarted", 2, "staging"),
                entry("SmokeTestFailed", 4, "staging", warning=True),
            ],
        },
    )
    occs = core.release_occurrences(failed)
    assert [o.trigger for o in occs] == [Trigger.RELEASE_FAILED]
    n = core.notification(occs[0], namespace="apps", release=failed, pipeline=pipeline())
    assert n.failure is not None
    assert n.failure.step == "SmokeTest"
    assert n.failure.object is not None
    assert (n.failure.object.kind, n.failure.object.namespace, n.failure.object.name) == (
        "Job",
        "shop-staging",
        "shop-2-staging-smoke",
    )
    assert n.failure.hint == "kubectl logs -n shop-staging job/shop-2-staging-smoke"


def test_approval_needed_names_who_may_approve_and_the_exact_command() -> None:
    p = pipeline(
        stages=[
            {"name": "staging", "namespace": "shop-staging"},
            {
                "name": "prod",
                "namespace": "shop-prod",
                "requiresApproval": True,
                "approval": {"approvers": {"users": ["alice"], "groups": ["sre"]}, "minApprovals": 2},
            },
        ]
    )
    occ = next(o for o in core.release_occurrences(shipped()) if o.trigger == Trigger.APPROVAL_NEEDED)
    n = core.notification(
        occ, namespace="apps", release=shipped(), pipeline=p, dashboard_url="https://cd.example/"
    )
    assert n.approval is not None
    assert (n.approval.users, n.approval.groups, n.approval.min_approvals) == (["alice"], ["sre"], 2)
    assert n.approval.command == "kubectl conveyor approve shop-1 --stage prod -n apps"
    assert n.links.dashboard == "https://cd.example/#/release/apps/shop-1"


def test_lead_time_and_step_timings() -> None:
    r = shipped()
    r.spec.source.commit_time = T0 - timedelta(minutes=10)
    occ = next(o for o in core.release_occurrences(r) if o.trigger == Trigger.RELEASE_SUCCEEDED)
    n = core.notification(occ, namespace="apps", release=r, pipeline=pipeline())
    assert n.timings is not None
    assert n.timings.lead_time_seconds == 626.0
    assert (n.timings.rollout_seconds, n.timings.smoke_test_seconds, n.timings.stage_seconds) == (
        2.0,
        3.0,
        6.0,
    )


def test_rollback_occurrences_and_facts() -> None:
    rb = rollback(
        "rb-1",
        status={
            "phase": "Succeeded",
            "plan": {
                "action": "ImageOnly",
                "reason": "no schema change",
                "stage": "prod",
                "fromRelease": "shop-2",
                "fromCommit": "b" * 40,
                "toRelease": "shop-1",
                "toCommit": "a" * 40,
            },
            "fromShortCommit": "bbbbbbb",
            "toShortCommit": "aaaaaaa",
            "history": [
                entry("RollbackStarted", 30),
                entry("RollbackPatched", 31),
                entry("RollbackCompleted", 35),
            ],
        },
    )
    occs = core.rollback_occurrences(rb)
    assert [(o.trigger, o.stage) for o in occs] == [
        (Trigger.ROLLBACK_STARTED, "prod"),
        (Trigger.ROLLBACK_COMPLETED, "prod"),
    ]
    n = core.notification(occs[1], namespace="apps", rollback=rb, pipeline=pipeline())
    assert n.rollback is not None
    assert n.rollback.from_ is not None
    assert n.rollback.to is not None
    assert (n.rollback.from_.short_commit, n.rollback.to.short_commit, n.rollback.plan) == (
        "bbbbbbb",
        "aaaaaaa",
        "ImageOnly",
    )
    assert n.title == "shop: prod rolled back: bbbbbbb → aaaaaaa"


def test_a_refused_rollback_names_the_asked_for_target_in_its_title() -> None:
    # Refused before a plan named the target: only spec.toRelease is known (no commit).
    rb = rollback(
        "rb-1",
        to="shop-9",
        status={
            "plan": {
                "action": "Refused",
                "reason": "release shop-9 was never verified in prod",
                "stage": "prod",
                "fromRelease": "shop-2",
                "fromCommit": "b" * 40,
            },
            "fromShortCommit": "bbbbbbb",
            "history": [entry("RollbackRefused", 30)],
        },
    )
    (occ,) = core.rollback_occurrences(rb)
    n = core.notification(occ, namespace="apps", rollback=rb, pipeline=pipeline())
    assert n.title == "shop: prod rollback refused: bbbbbbb → shop-9"


def test_parity_lost_once_per_transition() -> None:
    p = pipeline()
    p.status.conditions = []
    assert core.pipeline_occurrences(p) == []
    from conveyor.core.conditions import set_condition

    p.status.conditions = set_condition([], "InParity", "False", "StagesDiffer", "x", generation=1, now=T0)
    first = core.pipeline_occurrences(p)
    p.status.conditions = set_condition(
        [], "InParity", "False", "StagesDiffer", "x", generation=1, now=T0 + timedelta(hours=1)
    )
    assert first[0].id != core.pipeline_occurrences(p)[0].id


def test_due_respects_since_ledger_selector_stages_and_max_delay() -> None:
    occs = core.release_occurrences(shipped())
    labels = {"shop": {"team": "pay"}}
    now = T0 + timedelta(seconds=30)
    assert core.due(channel(status={}), occs, labels, set(), now).send == []  # since not recorded yet
    assert len(core.due(channel(), occs, labels, set(), now).send) == 4
    # Things that happened before the channel was first seen are never sent.
    late = channel(status={"since": at(10)})
    assert [o.trigger for o in core.due(late, occs, labels, set(), now).send] == [
        Trigger.STAGE_VERIFIED,
        Trigger.RELEASE_SUCCEEDED,
    ]
    # What the ledger (or this process) recorded is done.
    assert len(core.due(channel(), occs, labels, {occs[0].id}, now).send) == 3
    # Triggers, stages, labels.
    assert [
        o.trigger for o in core.due(channel(triggers=["approvalNeeded"]), occs, labels, set(), now).send
    ] == [Trigger.APPROVAL_NEEDED]
    staged = core.due(channel(stages=["staging"]), occs, labels, set(), now).send
    assert [o.stage for o in staged] == ["staging"]
    assert (
        core.due(channel(pipelineSelector={"matchLabels": {"team": "ops"}}), occs, labels, set(), now).send
        == []
    )
    assert (
        core.due(channel(pipelineSelector={"matchLabels": {"team": "pay"}}), occs, {}, set(), now).send == []
    )
    # Past maxDelaySeconds: given up, not sent.
    plan = core.due(channel(maxDelaySeconds=60), occs, labels, set(), T0 + timedelta(seconds=70))
    assert [o.at for o in plan.expire] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=6)]
    assert len(plan.send) == 2


def test_record_trims_what_ended_past_max_delay_and_moves_the_horizon() -> None:
    occs = core.release_occurrences(shipped())
    ch = channel(maxDelaySeconds=60)
    early = [
        core.ledger_entry(o, DeliveryResult.DELIVERED, 200, 1, T0 + timedelta(seconds=8)) for o in occs[:2]
    ]
    late = [
        core.ledger_entry(o, DeliveryResult.DELIVERED, 200, 1, T0 + timedelta(seconds=30)) for o in occs[2:]
    ]
    ledger, horizon = core.record(ch, early + late, T0 + timedelta(seconds=30))
    assert len(ledger) == 4
    assert horizon is None
    ch.status.ledger = ledger
    ledger, horizon = core.record(ch, [], T0 + timedelta(seconds=70))
    assert [e.id for e in ledger] == [occs[2].id, occs[3].id]
    assert horizon == T0 + timedelta(seconds=6)
    ch.status.ledger, ch.status.horizon = ledger, horizon
    # A trimmed occurrence is behind the horizon: never due (nor expired) again.
    assert core.due(ch, occs, {}, {e.id for e in ledger}, T0 + timedelta(seconds=70)).expire == []


def test_an_expired_message_stays_in_the_ledger_after_it_expired() -> None:
    occ = core.release_occurrences(shipped())[0]  # happened at T0+5
    ch = channel(maxDelaySeconds=60)
    now = T0 + timedelta(seconds=70)
    assert core.due(ch, [occ], {}, set(), now).expire == [occ]
    ledger, _ = core.record(ch, [core.ledger_entry(occ, DeliveryResult.EXPIRED, 503, 9, now)], now)
    assert [(e.id, e.result) for e in ledger] == [(occ.id, "Expired")]


def test_addresses_that_carry_a_private_ipv4_address_are_private() -> None:
    for address in (
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:a00:1::1",
        "2001:0::1",
        "[::1]",
    ):
        assert core.private_address(address), address
    assert not core.private_address("64:ff9b::808:808")  # 8.8.8.8 through NAT64
    assert not core.private_address("2606:4700::1111")
    assert not core.private_address("hooks.slack.com")  # a name: judged by what it resolves to


def test_backoff_never_overflows() -> None:
    assert core.backoff(5000, None, T0) <= core.BACKOFF_CAP_SECONDS


def test_an_approval_request_whose_gate_closed_is_obsolete() -> None:
    r = shipped()
    occ = next(o for o in core.release_occurrences(r) if o.trigger == Trigger.APPROVAL_NEEDED)
    assert core.obsolete(occ, r)  # prod was entered and verified since
    r.status.stages[1].phase = "AwaitingApproval"
    r.status.phase = "AwaitingApproval"
    assert not core.obsolete(occ, r)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, "delivered"),
        (202, "delivered"),  # Teams Workflows: "flow started" is success — retrying it duplicates
        (204, "delivered"),
        (None, "retry"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "rejected"),  # redirects are never followed
        (400, "rejected"),
        (403, "rejected"),
        (404, "rejected"),
        (410, "rejected"),
    ],
)
def test_classify(code: int | None, outcome: str) -> None:
    assert core.classify(code) == outcome


def test_backoff_doubles_to_a_cap_and_honours_retry_after() -> None:
    rand = random.Random(7)  # noqa: S311 (jitter, not crypto)
    delays = [core.backoff(n, None, T0, rand) for n in range(1, 10)]
    assert all(0.5 * min(60, 2 ** (n - 1)) <= d <= min(60, 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert core.backoff(1, "7", T0, rand) == 7.0
    assert core.backoff(1, "86400", T0, rand) == core.RETRY_AFTER_CAP_SECONDS
    http_date = "Thu, 26 Nov 2026 12:00:20 GMT"
    assert core.backoff(1, http_date, T0, rand) == 20.0
    assert core.backoff(1, "soon", T0, rand) <= 1.0


@pytest.mark.parametrize(
    ("kind", "url", "reason"),
    [
        ("slack", "https://hooks.slack.com/services/T/B/x", None),
        ("slack", "https://example.com/services/T/B/x", "HostNotAllowed"),
        ("slack", "http://hooks.slack.com/services/T/B/x", "InvalidURL"),
        ("teams", "https://prod-1.westeurope.logic.azure.com/workflows/x", None),
        ("teams", "https://acme.webhook.office.com/webhookb2/x", "HostNotAllowed"),
        ("webhook", "https://hooks.example.com/conveyor", None),
        ("webhook", "https://127.0.0.1/x", "HostNotAllowed"),
        ("webhook", "https://169.254.169.254/latest/meta-data", "HostNotAllowed"),
        ("webhook", "https://10.0.0.7/x", "HostNotAllowed"),
        ("webhook", "https://[::1]/x", "HostNotAllowed"),
        ("webhook", "https://localhost/x", "HostNotAllowed"),
        ("webhook", "https://user:pw@hooks.example.com/x", "InvalidURL"),
        ("webhook", "ftp://hooks.example.com/x", "InvalidURL"),
        ("webhook", "https://hooks.example.com:99999/x", "InvalidURL"),
        ("webhook", "not a url", "InvalidURL"),
        ("teams", "https://evil.com\\.logic.azure.com/x", "InvalidURL"),  # parsers disagree on it
        ("webhook", "https://a..b.example.com/x", "InvalidURL"),
        ("webhook", "https://straße.example/x", "InvalidURL"),  # xn--strae-oqa.example is fine
        ("webhook", "https://xn--strae-oqa.example/x", None),
        ("webhook", "https://[::ffff:169.254.169.254]/x", "HostNotAllowed"),
        ("webhook", "https://[64:ff9b::a00:5]/x", "HostNotAllowed"),
        ("webhook", "https://2130706433/x", "InvalidURL"),  # 127.0.0.1 in decimal: not a DNS name
    ],
)
def test_check_url(kind: str, url: str, reason: str | None) -> None:
    problem = core.check_url(core.ChannelType(kind), url, "Secret s key url", [])
    assert (problem.reason if problem else None) == reason
    if problem is not None:
        assert url not in problem.message  # a credential: never repeated


def test_allowed_hosts_open_loopback_and_http_for_that_host_only() -> None:
    allowed = ["127.0.0.1:8443"]
    assert core.check_url(core.ChannelType.SLACK, "http://127.0.0.1:8443/slack/x", "k", allowed) is None
    assert core.check_url(core.ChannelType.WEBHOOK, "http://127.0.0.1:9999/x", "k", allowed) is not None
    assert core.check_url(core.ChannelType.WEBHOOK, "http://127.0.0.1:1/x", "k", ["127.0.0.1"]) is None


def test_an_edit_moves_the_horizon_but_what_was_owed_stays_owed() -> None:
    occs = core.release_occurrences(shipped())
    ch = channel()
    ch.status.horizon = T0 + timedelta(seconds=20)  # edited at T0+20
    now = T0 + timedelta(seconds=30)
    # Widening does not reach back: only what happened after the edit...
    assert [o.trigger for o in core.due(ch, occs, {}, set(), now).send] == [
        Trigger.STAGE_VERIFIED,
        Trigger.RELEASE_SUCCEEDED,
    ]
    # ...and what was already owed before it (still selected) stays owed.
    owed = {occs[1].id}
    assert [o.trigger for o in core.due(ch, occs, {}, set(), now, owed).send] == [
        Trigger.APPROVAL_NEEDED,
        Trigger.STAGE_VERIFIED,
        Trigger.RELEASE_SUCCEEDED,
    ]
    # Nothing from before the channel was first seen, owed or not.
    late = channel(status={"since": at(10)})
    assert core.due(late, occs, {}, set(), now, {occs[0].id}).send[0].at > T0 + timedelta(seconds=10)


def test_where_a_channel_starts_over() -> None:
    now = T0 + timedelta(minutes=5)
    steady = channel(status={"since": at(-60), "observedGeneration": 1})
    assert core.horizon_moves(steady, now) == (None, True)
    edited = channel(status={"since": at(-60), "observedGeneration": 1})
    edited.metadata.generation = 2
    assert core.horizon_moves(edited, now) == (now, True)  # from now; what was owed stays owed
    resumed = channel(
        status={
            "since": at(-60),
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Suspended", "lastTransitionTime": at(0)}
            ],
        }
    )
    resumed.metadata.generation = 2
    assert core.horizon_moves(resumed, now) == (now, False)  # nothing of the suspension, nothing owed
