"""One sample Notification per trigger, as Conveyor would send it for the quickstart's shop pipeline:
the inputs of the golden renderings (tests/unit/test_notify_render.py), of the payloads in
docs/notifications.md and of the Slack screenshots (hack/notification-shots).

    from support.notify_samples import SAMPLES, hostile
    SAMPLES["approvalNeeded"]   # a Notification
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from conveyor.api.notification import (
    ApprovalFacts,
    FailureFacts,
    Links,
    Notification,
    ObjectRef,
    Ref,
    ReleaseFacts,
    RollbackFacts,
    Timings,
    Trigger,
)
from conveyor.core.notify_render import cloudevent, slack, teams

NAMESPACE = "default"
PIPELINE = "shop"
DASHBOARD = "https://conveyor.example.com"
RELEASE_UID = "5b0c7a3e-1d2f-4e8a-9c61-2f7d0e4b9a10"
OLD_RELEASE_UID = "0f8e2d61-7c4b-4a95-8e13-6b2a9d5c3e70"
ROLLBACK_UID = "9d41f0b2-3a6c-4e57-b812-c4e0a7f95d23"
PIPELINE_UID = "c27a95e4-6b18-4d03-a9f5-71e3b0d8c246"
COMMIT = "3f9c2a1e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"
OLD_COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
DIGEST = "sha256:7d2f1c0b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4"
OLD_DIGEST = "sha256:19e8f7a6b5c4d3e2f10a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e"
AT = datetime(2026, 11, 27, 10, 3, 24, 364318, tzinfo=UTC)


def notification_id(uid: str, trigger: str, occurrence: str) -> str:
    """The idempotency key as docs/notifications.md states it: "cnv1_" + the first 26 characters of
    the lowercase base32 of sha256("v1|<uid>|<trigger>|<occurrence>")."""
    digest = hashlib.sha256(f"v1|{uid}|{trigger}|{occurrence}".encode()).digest()
    return "cnv1_" + base64.b32encode(digest).decode().lower()[:26]


def _release() -> ReleaseFacts:
    return ReleaseFacts(
        release="shop-3f9c2a1",
        commit=COMMIT,
        short_commit=COMMIT[:7],
        digest=DIGEST,
        image=f"ghcr.io/acme/shop@{DIGEST}",
        repository="https://github.com/acme/shop",
        author="dana",
        ci_run_id="8812345678",
        requester="ci-bot",
        target_stage="prod",
    )


def _links() -> Links:
    return Links(
        dashboard=f"{DASHBOARD}/releases/{NAMESPACE}/shop-3f9c2a1",
        ci_run="https://github.com/acme/shop/actions/runs/8812345678",
    )


def _base(trigger: Trigger, occurrence: str, uid: str = RELEASE_UID, **fields: object) -> Notification:
    return Notification.model_validate(
        {
            "id": notification_id(uid, trigger.value, occurrence),
            "trigger": trigger,
            "time": AT,
            "namespace": NAMESPACE,
            "pipeline": PIPELINE,
            **fields,
        }
    )


def _rollback(plan: str, plan_reason: str, duration: float | None = None) -> RollbackFacts:
    return RollbackFacts.model_validate(
        {
            "name": "shop-rollback-prod",
            "plan": plan,
            "planReason": plan_reason,
            "from": Ref(release="shop-3f9c2a1", commit=COMMIT, short_commit=COMMIT[:7], digest=DIGEST),
            "to": Ref(
                release="shop-a1b2c3d", commit=OLD_COMMIT, short_commit=OLD_COMMIT[:7], digest=OLD_DIGEST
            ),
            "requester": "alice",
            "reason": "checkout errors up 4x since the rollout",
            "durationSeconds": duration,
        }
    )


def _samples() -> dict[str, Notification]:
    release = _release()
    links = _links()
    rollback_fields = {"subject": "rollbacks/shop-rollback-prod", "stage": "prod", "actor": "alice"}
    samples = [
        _base(
            Trigger.APPROVAL_NEEDED,
            "prod",
            subject="releases/shop-3f9c2a1/prod",
            stage="prod",
            title="shop-3f9c2a1 is waiting for approval to enter prod",
            reason="AwaitingApproval",
            message="Verified in staging; prod requires 1 approval.",
            actor="ci-bot",
            release=release,
            approval=ApprovalFacts(
                groups=["conveyor:approvers"],
                min_approvals=1,
                four_eyes=True,
                command="kubectl conveyor approve shop-3f9c2a1 --stage prod -n default",
            ),
            links=links,
        ),
        _base(
            Trigger.STAGE_VERIFIED,
            "staging",
            subject="releases/shop-3f9c2a1/staging",
            stage="staging",
            title="shop-3f9c2a1 is verified in staging",
            reason="StageVerified",
            message="Migration, rollout and smoke test passed in staging.",
            release=release,
            timings=Timings(
                migration_seconds=12.4, rollout_seconds=48.0, smoke_test_seconds=9.2, stage_seconds=74.6
            ),
            links=links,
        ),
        _base(
            Trigger.RELEASE_SUCCEEDED,
            "",
            subject="releases/shop-3f9c2a1",
            title="shop-3f9c2a1 is live in prod",
            reason="ReleaseSucceeded",
            message="Verified in every stage, the last being prod.",
            release=release,
            timings=Timings(
                migration_seconds=10.1,
                rollout_seconds=52.3,
                smoke_test_seconds=8.8,
                stage_seconds=75.0,
                lead_time_seconds=7512.0,
            ),
            links=links,
        ),
        _base(
            Trigger.RELEASE_FAILED,
            "",
            subject="releases/shop-3f9c2a1/staging",
            stage="staging",
            title="shop-3f9c2a1 failed in staging: smoke test",
            reason="SmokeTestFailed",
            message="Smoke-test Job shop-3f9c2a1-smoke-staging failed: BackoffLimitExceeded.",
            release=release,
            failure=FailureFacts(
                step="SmokeTest",
                reason="SmokeTestFailed",
                message="Smoke-test Job shop-3f9c2a1-smoke-staging failed: BackoffLimitExceeded.",
                object=ObjectRef(kind="Job", namespace="shop-staging", name="shop-3f9c2a1-smoke-staging"),
                hint="kubectl logs -n shop-staging job/shop-3f9c2a1-smoke-staging",
            ),
            links=links,
        ),
        _base(
            Trigger.ROLLBACK_STARTED,
            "RollbackStarted",
            uid=ROLLBACK_UID,
            **rollback_fields,
            title="Rolling prod back from shop-3f9c2a1 to shop-a1b2c3d",
            reason="RollbackStarted",
            message="Plan ImageOnly: setting the previous image.",
            release=release,
            rollback=_rollback("ImageOnly", "No migration ran between the two releases."),
            links=links,
        ),
        _base(
            Trigger.ROLLBACK_COMPLETED,
            "RollbackCompleted",
            uid=ROLLBACK_UID,
            **rollback_fields,
            title="prod is back on shop-a1b2c3d",
            reason="RollbackCompleted",
            message="Rolled back and verified in prod.",
            release=release,
            rollback=_rollback("ImageOnly", "No migration ran between the two releases.", 41.7),
            links=links,
        ),
        _base(
            Trigger.ROLLBACK_REFUSED,
            "RollbackRefused",
            uid=ROLLBACK_UID,
            **rollback_fields,
            title="Rollback of prod to shop-a1b2c3d refused",
            reason="RollbackRefused",
            message="The migrations between the two releases have no down command.",
            release=release,
            rollback=_rollback("Refused", "Migration 0042_orders_split has no down command."),
            links=links,
        ),
        _base(
            Trigger.ROLLBACK_FAILED,
            "RollbackFailed",
            uid=ROLLBACK_UID,
            **rollback_fields,
            title="Rollback of prod to shop-a1b2c3d failed",
            reason="RollbackFailed",
            message="Deployment shop-prod/shop did not become available within 300 s.",
            release=release,
            rollback=_rollback("ImageOnly", "No migration ran between the two releases.", 305.0),
            links=links,
        ),
        _base(
            Trigger.PARITY_LOST,
            "2026-11-27T10:03:24Z",
            uid=PIPELINE_UID,
            subject="pipelines/shop",
            title="shop's stages no longer match",
            reason="ParityLost",
            message="prod differs from staging in 2 ways.",
            differences=[
                "prod: Deployment shop container web has env FEATURE_X; staging does not",
                "prod: Deployment shop has 2 containers; staging has 1",
            ],
            links=Links(dashboard=f"{DASHBOARD}/pipelines/{NAMESPACE}/shop"),
        ),
    ]
    return {str(n.trigger): n for n in samples}


SAMPLES: dict[str, Notification] = _samples()
assert sorted(SAMPLES) == sorted(t.value for t in Trigger), "one sample per trigger"

# What someone able to name a release, write a message or declare a CI run might try.
HOSTILE_TEXT = (
    "<!channel> <!here> <@U024BE7LH> <#C024BE7LR> @channel "
    "<http://evil.example/login|Approve here> [Approve here](http://evil.example/login) "
    "**bold** ```code``` `tick` & &amp; </script>"
)


def hostile(trigger: str, size: int = 10_240) -> Notification:
    """The sample for `trigger` with every free text hostile and long (`size` characters) and links
    that must never be clickable (javascript:, data:)."""
    long = (HOSTILE_TEXT * (size // len(HOSTILE_TEXT) + 1))[:size]
    data = SAMPLES[trigger].model_dump(by_alias=True)
    data.update(title=long, message=long, actor=HOSTILE_TEXT, differences=[long] * 10)
    data["links"] = {"dashboard": "javascript:alert(1)", "ciRun": "data:text/html,<script>alert(1)</script>"}
    if data.get("release"):
        data["release"].update(release=HOSTILE_TEXT, author=long, requester=HOSTILE_TEXT)
    if data.get("approval"):
        data["approval"].update(users=[HOSTILE_TEXT] * 20, command=long)
    if data.get("failure"):
        data["failure"].update(message=long, hint=long, reason=HOSTILE_TEXT)
    if data.get("rollback"):
        data["rollback"].update(reason=long, planReason=long, requester=HOSTILE_TEXT)
    return Notification.model_validate(data)


# --- the generated parts of docs/notifications.md


def pretty(obj: object) -> str:
    """JSON as the goldens and the docs show it: indented, keys in the renderer's order, UTF-8."""
    return json.dumps(obj, indent=2, ensure_ascii=False)


def docs_sections() -> dict[str, str]:
    """The parts of docs/notifications.md made from the renderer's output for the samples, by name
    (the name in its `<!-- BEGIN generated:NAME -->` marker)."""
    payloads = []
    for trigger in Trigger:
        ce = cloudevent(SAMPLES[trigger.value])
        payloads.append(
            f"<details><summary><code>{trigger.value}</code> — <code>{ce['type']}</code></summary>\n\n"
            f"```json\n{pretty(ce)}\n```\n\n</details>"
        )
    return {
        "payloads": "\n\n".join(payloads),
        "slack": f"```json\n{pretty(slack(SAMPLES['approvalNeeded']))}\n```",
        "teams": f"```json\n{pretty(teams(SAMPLES['approvalNeeded']))}\n```",
    }


def marker(name: str) -> tuple[str, str]:
    """The comment lines around the generated part `name` of docs/notifications.md."""
    return (
        f"<!-- BEGIN generated:{name} (CONVEYOR_UPDATE_GOLDEN=1 pytest tests/unit/test_notify_render.py) -->",
        f"<!-- END generated:{name} -->",
    )


def with_sections(doc: str, sections: dict[str, str]) -> str:
    """`doc` with each generated part replaced by its current text (a part not found is an error)."""
    for name, text in sections.items():
        begin, end = marker(name)
        head, found, rest = doc.partition(begin + "\n")
        _, found_end, tail = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"docs/notifications.md has no {begin!r} … {end!r}")
        doc = f"{head}{begin}\n{text}\n{end}{tail}"
    return doc
