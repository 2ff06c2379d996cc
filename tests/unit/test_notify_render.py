"""What a notification looks like on the wire (core/notify_render.py), without a receiver.

Golden files: tests/unit/golden/notify/<trigger>.<slack|teams|webhook>.json hold each sample's
rendering (tests/support/notify_samples.py), pretty-printed; the generated parts of
docs/notifications.md (the payload of every trigger, one Slack and one Teams body) are checked the
same way. After a deliberate change, regenerate both and review the diff:

    CONVEYOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_notify_render.py

The other tests hold whatever the goldens say: hostile text cannot mention, link or break out of
code; nothing exceeds Slack's limits; only http(s) links are ever clickable; every rendering carries
the idempotency key; the CloudEvent's data is a Notification v1 as its published schema describes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.api.notification import ChannelType, Links, Notification, NotificationChannel, Trigger
from conveyor.core import notifications as core
from conveyor.core import notify_render as render
from support import notify_samples
from support.notify_samples import SAMPLES, docs_sections, hostile, notification_id, pretty, with_sections

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "notify"
DOCS = REPO / "docs" / "notifications.md"
SCHEMA = REPO / "docs" / "schemas" / "notification-v1.json"
UPDATE = os.environ.get("CONVEYOR_UPDATE_GOLDEN") == "1"
TRIGGERS = [t.value for t in Trigger]
RENDERINGS = {"slack": render.slack, "teams": render.teams, "webhook": render.cloudevent}


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text of a Slack body (what Slack parses for links and mentions)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["blocks"])
    return [message["text"], *found]


def card(message: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = message["attachments"][0]["content"]
    return content


def card_texts(message: dict[str, Any]) -> list[str]:
    """Every text of a Teams card Teams renders as markdown (TextBlocks and facts)."""
    texts = []
    for element in card(message)["body"]:
        if element["type"] == "TextBlock":
            texts.append(element["text"])
        elif element["type"] == "FactSet":
            texts += [f["value"] for f in element["facts"]]
    return texts


# --- goldens


@pytest.mark.parametrize("kind", list(RENDERINGS))
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_rendering_matches_its_golden_file(trigger: str, kind: str) -> None:
    rendered = pretty(RENDERINGS[kind](SAMPLES[trigger])) + "\n"
    path = GOLDEN / f"{trigger}.{kind}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"no golden {path.name}: run CONVEYOR_UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == path.read_text(), f"{path.name} differs (CONVEYOR_UPDATE_GOLDEN=1 if meant)"


def test_the_docs_show_what_the_renderer_produces() -> None:
    doc = DOCS.read_text()
    current = with_sections(doc, docs_sections())
    if UPDATE:
        DOCS.write_text(current)
        doc = current
    assert doc == current, (
        "docs/notifications.md shows stale payloads: CONVEYOR_UPDATE_GOLDEN=1 pytest " + __file__
    )


@pytest.mark.parametrize("kind", list(RENDERINGS))
def test_body_is_the_rendering_as_compact_utf8_json(kind: str) -> None:
    n = SAMPLES["rollbackStarted"].model_copy(update={"title": "prod → shop-a1b2c3d, zurück"})
    sent = render.body(ChannelType(kind), n)
    rendered = RENDERINGS[kind](n)
    assert sent == json.dumps(rendered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert b"\\u" not in sent
    assert "→ shop-a1b2c3d, zurück".encode() in sent


# --- the samples are what the operator sends


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_samples_are_what_the_core_produces(trigger: str) -> None:
    # Each sample is core.notification of an occurrence core finds in the sample objects, made as
    # the notifier makes it — so the goldens, the docs and the screenshots cannot drift from it.
    occ, (pipeline, releases, rollbacks) = notify_samples.source(trigger)
    sample = SAMPLES[trigger]
    assert (occ.id, occ.trigger) == (sample.id, trigger)
    release = releases.get(occ.name) if occ.kind == "releases" else None
    rollback = rollbacks.get(occ.name) if occ.kind == "rollbacks" else None
    assert not core.obsolete(occ, release)  # the notifier would send it, not skip it
    assert sample == core.notification(
        occ,
        namespace="default",
        release=release,
        rollback=rollback,
        pipeline=pipeline,
        dashboard_url="https://conveyor.example.com",
    )
    # What the operator really says: "<pipeline>: <short commit> …" titles, the dashboard's own
    # routes, Conveyor (or the rollback's requester) as the actor.
    assert sample.title.startswith("shop: ")
    assert "None" not in sample.title
    page = f"#/release/default/{occ.name}" if release is not None else "#/pipeline/default/shop"
    assert sample.links.dashboard == f"https://conveyor.example.com/{page}"
    assert sample.actor == {"releases": "conveyor", "rollbacks": "alice", "pipelines": None}[occ.kind]


def test_every_sample_object_is_a_valid_api_object() -> None:
    # Built through the models' validation (pipeline, releases, rollbacks), at every moment the
    # samples are taken; histories in time order; the parity differences all in the message.
    for moment in ("waiting", "rolling", "after"):
        _, releases, rollbacks = notify_samples.objects(moment)
        for obj in [*releases.values(), *rollbacks.values()]:
            times = [h.time for h in obj.status.history]
            assert times == sorted(times), obj.metadata.name
    pipeline = notify_samples.objects()[0]
    assert pipeline.status.parity.in_parity is False
    assert len(pipeline.status.parity.differences) == len(SAMPLES["parityLost"].differences or [])


# --- the idempotency key


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_rendering_carries_the_idempotency_key(trigger: str) -> None:
    n = SAMPLES[trigger]
    assert re.fullmatch(r"cnv1_[a-z2-7]{26}", n.id)
    for kind in ChannelType:
        assert n.id in render.body(kind, n).decode(), kind
    slack_ref = render.slack(n)["blocks"][-1]
    assert slack_ref["type"] == "context"
    assert f"ref `{n.id}`" in slack_ref["elements"][-1]["text"]
    assert card(render.teams(n))["body"][-1]["text"] == f"ref {n.id}"
    assert render.cloudevent(n)["id"] == n.id


def test_the_key_of_a_hostile_message_survives_every_cut() -> None:
    for trigger in TRIGGERS:
        n = hostile(trigger, size=50_000)
        for kind in ChannelType:
            assert n.id in render.body(kind, n).decode(), (trigger, kind)


def test_sample_ids_follow_the_documented_formula() -> None:
    # sha256("v1|uid|trigger|occurrence"), base32, lowercase, 26 characters: a different uid (a
    # re-created object of the same name) or occurrence gives a different key.
    a = notification_id("uid-1", "approvalNeeded", "prod")
    assert a == notification_id("uid-1", "approvalNeeded", "prod")
    assert (
        len(
            {
                a,
                notification_id("uid-2", "approvalNeeded", "prod"),
                notification_id("uid-1", "approvalNeeded", "staging"),
            }
        )
        == 3
    )
    assert len({n.id for n in SAMPLES.values()}) == len(SAMPLES)


# --- CloudEvents


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_cloudevent_envelope(trigger: str) -> None:
    n = SAMPLES[trigger]
    ce = render.cloudevent(n)
    assert ce["specversion"] == "1.0"
    assert ce["source"] == "/apis/conveyor.dev/v1alpha1/namespaces/default/pipelines/shop"
    assert ce["type"] == f"dev.conveyor.{trigger}.v1"
    assert ce["subject"] == n.subject
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ce["time"])
    assert ce["datacontenttype"] == "application/json"
    assert ce["dataschema"] == "https://conveyor.dev/schemas/notification/v1.json"


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_cloudevent_data_is_a_notification_v1_as_the_schema_says(trigger: str) -> None:
    data = json.loads(render.body(ChannelType.WEBHOOK, SAMPLES[trigger]))["data"]
    assert Notification.model_validate(data) == SAMPLES[trigger]
    # jsonschema is not a dependency: check the published document's shape by hand — every key the
    # data has is a property the schema declares, at the top and in each nested object.
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"] == render.DATA_SCHEMA
    assert set(schema["required"]) <= set(data)
    assert set(data) <= set(schema["properties"])
    for key, value in data.items():
        if isinstance(value, dict):
            refs = [
                s.get("$ref") for s in schema["properties"][key].get("anyOf", [schema["properties"][key]])
            ]
            name = next(r for r in refs if r).rsplit("/", 1)[-1]
            assert set(value) <= set(schema["$defs"][name]["properties"]), (key, name)


def test_the_committed_schema_is_the_models() -> None:
    committed = json.loads(SCHEMA.read_text())
    committed.pop("$comment")
    assert committed == render.notification_schema(), "docs/schemas is stale: run make crds"


def test_time_is_utc_with_microseconds() -> None:
    from datetime import datetime, timedelta, timezone

    at = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert render.rfc3339(at) == "2026-01-02T03:04:05.000000Z"
    assert render.rfc3339(datetime(2026, 1, 2, 3, 4, 5, 7)) == "2026-01-02T03:04:05.000007Z"


# --- hostile text


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_slack_hostile_text_cannot_mention_link_or_break_code(trigger: str) -> None:
    message = render.slack(hostile(trigger))
    for text in mrkdwn_texts(message):
        # No angle bracket at all: the hostile links are refused, so none of ours is there either,
        # and every < in user text arrived as &lt; (no <!channel>, <@U…>, <#C…> or <url|label>).
        unquoted = re.sub(r"^> ", "", text, flags=re.MULTILINE)  # our own block quotes
        assert not re.search("[<>]", unquoted), text[:200]
        # Every & starts an entity Slack decodes (&amp; &lt; &gt;): an unescaped one could too.
        assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", text, re.DOTALL), text[:200]
        assert text.count("```") % 2 == 0, text[:200]
    # verbatim: bare URLs, @here and #channels in the text are not turned into links or mentions.
    assert all(t["verbatim"] for t in _mrkdwn_objects(message))


def _mrkdwn_objects(message: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message["blocks"])
    return found


def test_slack_escaping() -> None:
    assert render.slack_escape("<!channel> & <@U1> <http://evil|x>") == (
        "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://evil|x&gt;"
    )
    # A cut never leaves half an entity.
    assert render._slack_text("<" * 10, 9) == "&lt;&lt;…"


def test_slack_code_cannot_be_closed_early() -> None:
    n = SAMPLES["approvalNeeded"].model_copy(deep=True)
    assert n.approval is not None
    n.approval.command = "kubectl conveyor approve x``` <!channel> ```"
    code = render.slack(n)["blocks"][-2]["text"]["text"]
    assert code.count("```") == 2
    assert "&lt;!channel&gt;" in code


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_teams_hostile_text_cannot_become_a_link(trigger: str) -> None:
    message = render.teams(hostile(trigger))
    for text in card_texts(message):
        assert not re.search(r"\]\s*[(\[:]", text), text[:200]
        assert not re.search(r"<https?:", text), text[:200]
    assert render.teams_escape("[Approve](http://evil)") == "[Approve]\u200b(http://evil)"


# --- limits


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_slack_limits_hold_for_a_10kb_message(trigger: str) -> None:
    n = hostile(trigger, size=10_240)
    message = render.slack(n)
    blocks = message["blocks"]
    assert len(blocks) <= 50
    assert "\n" not in message["text"]
    assert len(message["text"]) <= 300
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
            assert block["text"]["text"].endswith("…")  # cut, and seen to be cut
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            for field in block.get("fields", []):
                assert len(field["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
    # Cut, not dropped: the start of the hostile message is there.
    assert any(t.startswith("&lt;!channel&gt;") for t in mrkdwn_texts(message))
    assert len(render.body(ChannelType.SLACK, n)) < 40_000
    assert len(render.body(ChannelType.TEAMS, n)) < 28_000  # Teams refuses a message over ~28 KB


def test_the_section_guard_closes_what_it_cuts() -> None:
    cut = render._fit("x" * 2990 + "```code <https://a|b> &amp;" + "y" * 100 + "```", 3000)
    assert len(cut) <= 3000
    assert cut.count("```") % 2 == 0
    cut = render._fit("x" * 2994 + "<https://a.example|label>", 3000)
    assert "<" not in cut
    assert len(cut) <= 3000
    cut = render._fit("x" * 2995 + "&amp;&amp;", 3000)
    assert not re.search(r"&[a-z]*…", cut)


# --- links


BAD_LINKS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "ftp://example.com/x",
    "//evil.example/x",
    "https://",
    "https://ok.example/a|<!channel>",
    "https://ok.example/a>b",
    "https://ok.example/a b",
    "https://ok.example/\nx",
    "https://ok.example/" + "a" * 3000,
]


@pytest.mark.parametrize("url", BAD_LINKS)
def test_a_non_http_link_never_becomes_clickable(url: str) -> None:
    assert not render.safe_url(url)
    n = SAMPLES["releaseFailed"].model_copy(update={"links": Links(dashboard=url, ci_run=url)})
    slack_message, teams_message = render.slack(n), render.teams(n)
    assert card(teams_message)["actions"] == []
    assert not any("<" in t for t in mrkdwn_texts(slack_message))
    assert not any(b["type"] == "actions" for b in slack_message["blocks"])


def test_http_links_are_offered() -> None:
    n = SAMPLES["approvalNeeded"]
    assert n.links.dashboard
    assert n.links.ci_run
    actions = card(render.teams(n))["actions"]
    assert [a["url"] for a in actions] == [n.links.dashboard, n.links.ci_run]
    assert all(a["type"] == "Action.OpenUrl" for a in actions)
    context = render.slack(n)["blocks"][-1]["elements"]
    assert context[0]["text"] == f"<{n.links.dashboard}|Open in dashboard>"
    # An & in an address is escaped as Slack asks.
    q = n.model_copy(update={"links": Links(dashboard="https://d.example/x?a=1&b=2")})
    assert (
        render.slack(q)["blocks"][-1]["elements"][0]["text"]
        == "<https://d.example/x?a=1&amp;b=2|Open in dashboard>"
    )
    # No links: no link line, the ref alone.
    none = n.model_copy(update={"links": Links()})
    assert len(render.slack(none)["blocks"][-1]["elements"]) == 1


# --- what each trigger says


def test_approval_request_says_who_and_how() -> None:
    message = render.slack(SAMPLES["approvalNeeded"])
    text = "\n".join(mrkdwn_texts(message))
    assert "Groups: conveyor:approvers" in text
    assert "Four eyes" in text
    assert "1 approval needed" in text
    assert "```kubectl conveyor approve shop-3f9c2a1 --stage prod -n default```" in text
    mono = [
        b for b in card(render.teams(SAMPLES["approvalNeeded"]))["body"] if b.get("fontType") == "Monospace"
    ]
    assert [b["text"] for b in mono] == ["kubectl conveyor approve shop-3f9c2a1 --stage prod -n default"]


def test_failure_names_the_object_and_the_hint() -> None:
    job = "shop-7e4d9b2-staging-smoke-2c7a30"  # job_name(): <release>-<stage>-smoke-<uid tag>
    text = "\n".join(mrkdwn_texts(render.slack(SAMPLES["releaseFailed"])))
    assert f"Job `shop-staging/{job}`" in text
    assert f"kubectl logs -n shop-staging job/{job}" in text


def test_rollback_says_from_and_to() -> None:
    text = "\n".join(mrkdwn_texts(render.slack(SAMPLES["rollbackCompleted"])))
    assert "*From* shop-3f9c2a1 (3f9c2a1) *→* shop-a1b2c3d (a1b2c3d)" in text
    assert "*Asked by* alice" in text


def test_parity_lost_lists_at_most_ten_differences() -> None:
    n = SAMPLES["parityLost"].model_copy(update={"differences": [f"difference {i}" for i in range(14)]})
    text = render.slack(n)["blocks"][-2]["text"]["text"]
    assert text.count("• ") == 10
    assert "…and 4 more" in text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0s"), (44.6, "45s"), (60, "1m"), (192, "3m 12s"), (7512, "2h 5m"), (7200, "2h"), (97200, "1d 3h")],
)
def test_humanise(seconds: float, said: str) -> None:
    assert render.humanise(seconds) == said


# --- the user's documents


def test_the_quickstart_channel_is_valid_as_kubectl_reads_it() -> None:
    # PyYAML reads YAML 1.1 as kubectl and Helm do (why the field is `triggers`, not `on`: an unquoted
    # `on:` key arrives as True — kubernetes#34146).
    body = yaml.safe_load((REPO / "examples" / "quickstart" / "50-notifications.yaml").read_text())
    channel = NotificationChannel.model_validate(body)
    assert channel.spec.triggers == [
        "approvalNeeded",
        "releaseFailed",
        "releaseSucceeded",
        "rollbackStarted",
        "rollbackCompleted",
        "rollbackRefused",
    ]
    assert channel.spec.pipeline_selector.match_labels == {"app": "shop"}
    documented = next(
        yaml.safe_load(block)
        for block in re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
        if "kind: NotificationChannel" in block
    )
    assert NotificationChannel.model_validate(documented).spec == channel.spec


def test_every_image_the_docs_show_exists() -> None:
    images = re.findall(r"\]\((images/[^)]+\.png)\)", DOCS.read_text())
    assert {"approvalNeeded", "releaseFailed", "rollbackCompleted"} <= {
        re.sub(r".*notification-slack-(\w+)\.png", r"\1", i) for i in images
    }
    for image in images:
        assert (DOCS.parent / image).is_file(), f"{image}: run hack/notification-shots"
    for trigger in TRIGGERS:
        assert (DOCS.parent / "images" / f"notification-slack-{trigger}.png").is_file(), trigger


def test_a_message_without_a_title_still_has_a_header() -> None:
    n = SAMPLES["stageVerified"].model_copy(update={"title": " \n "})
    assert render.slack(n)["blocks"][0]["text"]["text"] == "StageVerified"
    assert card(render.teams(n))["body"][0]["text"] == "StageVerified"
