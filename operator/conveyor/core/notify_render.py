"""What a notification looks like on the wire: a CloudEvent for webhooks, Block Kit for Slack, an
Adaptive Card for Teams. Pure renderings of one `Notification`; the sender POSTs `body(...)` as is.

Everything a person or CI wrote (release names, messages, reasons given, CI links) is untrusted: it is
escaped for the receiver's markup so it cannot mention a channel, hide a link behind friendly text or
break out of a code block, cut to the receiver's limits so a long message is shortened rather than
refused (a refused message is a lost message), and a link becomes clickable only when it is http(s).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from conveyor.api.notification import ChannelType, Notification, Ref, Trigger

SPEC_VERSION = "1.0"
DATA_SCHEMA = "https://conveyor.dev/schemas/notification/v1.json"
CONTENT_TYPE = "application/json"
APP_NAME = "Conveyor"

# Slack's documented limits (api.slack.com/reference/block-kit): a message is refused, not cut, when
# one is exceeded — so every text is cut here, below them.
SLACK_MAX_BLOCKS = 50
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_MAX_FIELDS = 10
SLACK_CONTEXT_MAX = 2000
SLACK_FALLBACK_MAX = 300  # the notification preview: one line
# A Teams message is refused over about 28 KB: no single text gets near that.
TEAMS_TEXT_MAX = 3000
# Per-piece budgets, so that the pieces of one section stay under its limit by construction.
PIECE_MAX = 1000
DIFFERENCE_MAX = 200
LINK_MAX = 2000
ELLIPSIS = "…"

_JSON_SEPARATORS = (",", ":")


# --- CloudEvents (generic webhooks)


def cloudevent(n: Notification) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode envelope a webhook receives; `data` is the Notification
    v1 (camelCase) and `id` its idempotency key."""
    return {
        "specversion": SPEC_VERSION,
        "id": n.id,
        "source": f"/apis/conveyor.dev/v1alpha1/namespaces/{n.namespace}/pipelines/{n.pipeline}",
        "type": f"dev.conveyor.{n.trigger}.v1",
        "subject": n.subject,
        "time": rfc3339(n.time),
        "datacontenttype": CONTENT_TYPE,
        "dataschema": DATA_SCHEMA,
        "data": n.wire(),
    }


def rfc3339(t: datetime) -> str:
    """`t` in UTC as RFC 3339 with microseconds and Z (a naive time is taken to be UTC already)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def notification_schema() -> dict[str, Any]:
    """The JSON Schema of Notification v1 as it travels (camelCase): docs/schemas/notification-v1.json,
    the document every CloudEvent's `dataschema` names."""
    schema = Notification.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": DATA_SCHEMA, **schema}


# --- the body to POST


def body(channel_type: ChannelType | str, n: Notification) -> bytes:
    """The bytes to POST to a channel of this type: compact JSON, UTF-8 (not \\u-escaped)."""
    kind = ChannelType(channel_type)
    if kind is ChannelType.SLACK:
        rendered = slack(n)
    elif kind is ChannelType.TEAMS:
        rendered = teams(n)
    else:
        rendered = cloudevent(n)
    return json.dumps(rendered, separators=_JSON_SEPARATORS, ensure_ascii=False).encode("utf-8")


# --- facts shared by the chat renderings (plain text; each rendering escapes them)


def _short_digest(digest: str | None) -> str | None:
    if not digest:
        return None
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest[:19]


def _short_commit(ref: Ref) -> str | None:
    if ref.short_commit:
        return ref.short_commit
    return ref.commit[:7] if ref.commit else None


def _release_text(ref: Ref | None) -> str | None:
    """The release with its short commit when known, as in "shop-3f9c2a1 (3f9c2a1)"."""
    if ref is None or not (ref.release or ref.commit or ref.short_commit):
        return None
    commit = _short_commit(ref)
    if ref.release and commit:
        return f"{ref.release} ({commit})"
    return ref.release or commit


def _facts(n: Notification) -> list[tuple[str, str]]:
    """(label, value) pairs, in the order people read them; only those known."""
    facts: list[tuple[str, str]] = [("Pipeline", f"{n.namespace}/{n.pipeline}")]
    if n.stage:
        facts.append(("Stage", n.stage))
    if n.release is not None:
        release = _release_text(n.release)
        if release:
            facts.append(("Release", release))
        digest = _short_digest(n.release.digest)
        if digest:
            facts.append(("Digest", digest))
        if n.release.author:
            facts.append(("Author", n.release.author))
        if n.release.requester:
            facts.append(("Requested by", n.release.requester))
    # The actor, unless another fact names them already (the release's requester, the rollback's).
    # Conveyor itself is no news ("By conveyor"): only a person (an approver, a requester) is named.
    said = {n.release.requester if n.release else None, n.rollback.requester if n.rollback else None}
    if n.actor and n.actor not in said and n.actor != "conveyor":
        facts.append(("By", n.actor))
    return facts


def _lead_message(n: Notification) -> bool:
    """Whether Conveyor's message goes under the title: not when the failure says the same below."""
    return bool(n.message) and not (n.failure is not None and n.failure.message == n.message)


def humanise(seconds: float) -> str:
    """A duration as people say it: 45s, 3m 12s, 2h 5m, 1d 3h."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _timings(n: Notification) -> list[tuple[str, str]]:
    t = n.timings
    if t is None:
        return []
    steps = [
        ("Migration", t.migration_seconds),
        ("Rollout", t.rollout_seconds),
        ("Smoke test", t.smoke_test_seconds),
        ("Stage", t.stage_seconds),
        ("Lead time (commit → verified)", t.lead_time_seconds),
    ]
    return [(label, humanise(value)) for label, value in steps if value is not None]


def _who_may_approve(n: Notification) -> list[str]:
    a = n.approval
    if a is None:
        return []
    lines = []
    if a.users:
        lines.append("Users: " + ", ".join(a.users))
    if a.groups:
        lines.append("Groups: " + ", ".join(a.groups))
    if not (a.users or a.groups):
        lines.append("Anyone allowed to create Approvals")
    plural = "s" if a.min_approvals != 1 else ""
    lines.append(f"{a.min_approvals} approval{plural} needed")
    if a.four_eyes:
        lines.append("Four eyes: the requester may not approve")
    return lines


def _links(n: Notification) -> list[tuple[str, str]]:
    """(label, url) for the links that may become clickable: http(s) only."""
    found = [("Open in dashboard", n.links.dashboard), ("CI run", n.links.ci_run)]
    return [(label, url) for label, url in found if url and safe_url(url)]


def safe_url(url: str) -> bool:
    """Whether `url` may be offered as a link: an absolute http(s) address with a host, short, and
    free of whitespace, control characters and the characters Slack's link syntax uses (|, <, >) —
    so a javascript:, data: or file: address, or one that would rewrite its own label, never is."""
    if len(url) > LINK_MAX or re.search(r"[\s\x00-\x1f\x7f<>|\"`\\]", url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _title(n: Notification) -> str:
    return _one_line(n.title) or _one_line(n.reason) or f"{APP_NAME}: {n.trigger}"


# --- Slack (incoming webhook: Block Kit)


def slack_escape(text: str) -> str:
    """Slack's mrkdwn escaping: &, < and > as entities, so `<!channel>`, `<@U123>` or
    `<http://evil|click>` arrive as text, not as a mention or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_text(text: str, limit: int = PIECE_MAX) -> str:
    """Untrusted text for mrkdwn: escaped, its backticks replaced by a look-alike (mrkdwn cannot
    escape one, and a stray one opens or ends a code span or block), then cut to `limit` *escaped*
    characters (an entity is never split)."""
    out: list[str] = []
    size = 0
    for ch in text.replace("`", "\u02cb"):
        piece = slack_escape(ch)
        if size + len(piece) > limit - 1:
            return "".join(out) + ELLIPSIS
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack then does not turn bare URLs, #channels or @here into links and mentions.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_fit(text, SLACK_SECTION_MAX))}


def _fit(mrkdwn: str, limit: int) -> str:
    """Last guard on a composed mrkdwn text: cut to `limit` without leaving half an entity, half a
    link or an open code block. The pieces have budgets, so this cuts only in unforeseen cases."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 4]
    cut = re.sub(r"&[a-z]{0,3}$", "", cut)
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    cut += ELLIPSIS
    if cut.count("```") % 2:
        cut += "```"
    elif cut.count("`") % 2:
        cut += "`"
    return cut


def _slack_trigger_blocks(n: Notification) -> list[dict[str, Any]]:
    trigger = Trigger(n.trigger)
    blocks: list[dict[str, Any]] = []
    if trigger is Trigger.APPROVAL_NEEDED and n.approval is not None:
        who = "\n".join(f"• {_slack_text(line, 400)}" for line in _who_may_approve(n))
        blocks.append(_section(f"*Who may approve*\n{who}"))
        blocks.append(_section(f"*To approve*\n```{_slack_text(n.approval.command)}```"))
    elif trigger in (Trigger.STAGE_VERIFIED, Trigger.RELEASE_SUCCEEDED):
        timings = _timings(n)
        if timings:
            blocks.append(
                {
                    "type": "section",
                    "fields": [_mrkdwn(f"*{label}*\n{value}") for label, value in timings],
                }
            )
    elif trigger is Trigger.RELEASE_FAILED and n.failure is not None:
        f = n.failure
        lines = [f"*Failed at* {_slack_text(f.step, 100)}: `{_slack_text(f.reason, 100)}`"]
        if f.message:
            lines.append(f"> {_slack_text(_one_line(f.message))}")
        if f.object is not None:
            o = f.object
            lines.append(
                f"*Look at* {_slack_text(o.kind, 50)} `{_slack_text(f'{o.namespace}/{o.name}', 300)}`"
            )
        blocks.append(_section("\n".join(lines)))
        if f.hint:
            blocks.append(_section(f"*Start with*\n```{_slack_text(f.hint)}```"))
    elif trigger.value.startswith("rollback") and n.rollback is not None:
        r = n.rollback
        lines = [f"*Rollback* {_slack_text(r.name, 253)}"]
        if r.plan:
            lines.append(f"*Plan* `{_slack_text(r.plan, 100)}`")
        if r.plan_reason and r.plan_reason != n.message:  # a refusal's message is its plan's reason
            lines.append(f"> {_slack_text(_one_line(r.plan_reason))}")
        frm, to = _release_text(r.from_), _release_text(r.to)
        if frm or to:
            lines.append(f"*From* {_slack_text(frm or '?', 300)} *→* {_slack_text(to or '?', 300)}")
        if r.requester:
            lines.append(f"*Asked by* {_slack_text(r.requester, 300)}")
        if r.reason:
            lines.append(f"*Reason* {_slack_text(_one_line(r.reason))}")
        if r.duration_seconds is not None:
            lines.append(f"*Took* {humanise(r.duration_seconds)}")
        blocks.append(_section("\n".join(lines)))
    elif trigger is Trigger.PARITY_LOST and n.differences:
        items = "\n".join(f"• {_slack_text(_one_line(d), DIFFERENCE_MAX)}" for d in n.differences[:10])
        more = len(n.differences) - 10
        tail = f"\n…and {more} more" if more > 0 else ""
        blocks.append(_section(f"*How the stages differ*\n{items}{tail}"))
    return blocks


def slack(n: Notification) -> dict[str, Any]:
    """The body for a Slack incoming webhook: `text` (the one-line fallback notifications show) and
    Block Kit `blocks`: header, facts, what this trigger needs said, links, and `ref <id>`."""
    facts = [
        _mrkdwn(f"*{label}*\n{_slack_text(value, SLACK_FIELD_MAX - len(label) - 10)}")
        for label, value in _facts(n)[:SLACK_MAX_FIELDS]
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            # plain_text is never parsed for mentions or links: cut, not escaped. Slack refuses an
            # empty one: a message without a title is headed by its reason.
            "text": {
                "type": "plain_text",
                "text": _cut(_title(n), SLACK_HEADER_MAX),
                "emoji": False,
            },
        }
    ]
    if _lead_message(n):
        blocks.append(_section(_slack_text(n.message)))
    blocks.append({"type": "section", "fields": facts})
    blocks.extend(_slack_trigger_blocks(n))
    links = _links(n)
    context = [
        # A link's address is escaped too (& as &amp;, as Slack asks); safe_url refused | < >.
        _mrkdwn(f"<{slack_escape(url)}|{label}>")
        for label, url in links
    ]
    ref = {"type": "context", "elements": [*context, _mrkdwn(f"ref `{_slack_text(n.id, 100)}`")]}
    # The ref block always goes out, so a duplicate is recognisable in the channel.
    blocks = [*blocks[: SLACK_MAX_BLOCKS - 1], ref]
    return {"text": _slack_text(_title(n), SLACK_FALLBACK_MAX), "blocks": blocks}


# --- Teams (Workflows webhook: Adaptive Card)


def teams_escape(text: str) -> str:
    """Neutralise the markdown links an Adaptive Card TextBlock would render: a zero-width space after
    every `]` and `<` stops `[label](url)`, `[label][ref]` and `<url>` from parsing, while the text
    reads the same. (Backslash escapes are not honoured by every Teams client.)"""
    return text.replace("]", "]\u200b").replace("<", "<\u200b")


def _teams_text(text: str, limit: int = TEAMS_TEXT_MAX) -> str:
    return _cut(teams_escape(text), limit)


def _text_block(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def _teams_trigger_blocks(n: Notification) -> list[dict[str, Any]]:
    trigger = Trigger(n.trigger)
    blocks: list[dict[str, Any]] = []
    if trigger is Trigger.APPROVAL_NEEDED and n.approval is not None:
        blocks.append(_text_block("**Who may approve**", spacing="Medium"))
        blocks.append(_text_block("\n\n".join(_teams_text(line, 400) for line in _who_may_approve(n))))
        blocks.append(_text_block("**To approve**"))
        blocks.append(_text_block(_teams_text(n.approval.command, PIECE_MAX), fontType="Monospace"))
    elif trigger in (Trigger.STAGE_VERIFIED, Trigger.RELEASE_SUCCEEDED):
        timings = _timings(n)
        if timings:
            blocks.append(
                {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in timings]}
            )
    elif trigger is Trigger.RELEASE_FAILED and n.failure is not None:
        f = n.failure
        facts = [("Failed at", f.step), ("Reason", f.reason)]
        if f.object is not None:
            facts.append(("Look at", f"{f.object.kind} {f.object.namespace}/{f.object.name}"))
        blocks.append(_fact_set(facts))
        if f.message:
            blocks.append(_text_block(_teams_text(_one_line(f.message), PIECE_MAX)))
        if f.hint:
            blocks.append(_text_block("**Start with**"))
            blocks.append(_text_block(_teams_text(f.hint, PIECE_MAX), fontType="Monospace"))
    elif trigger.value.startswith("rollback") and n.rollback is not None:
        r = n.rollback
        facts = [("Rollback", r.name)]
        if r.plan:
            facts.append(("Plan", r.plan))
        frm, to = _release_text(r.from_), _release_text(r.to)
        if frm or to:
            facts.append(("From → to", f"{frm or '?'} → {to or '?'}"))
        if r.requester:
            facts.append(("Asked by", r.requester))
        if r.reason:
            facts.append(("Reason", _one_line(r.reason)))
        if r.duration_seconds is not None:
            facts.append(("Took", humanise(r.duration_seconds)))
        blocks.append(_fact_set(facts))
        if r.plan_reason and r.plan_reason != n.message:  # a refusal's message is its plan's reason
            blocks.append(_text_block(_teams_text(_one_line(r.plan_reason), PIECE_MAX)))
    elif trigger is Trigger.PARITY_LOST and n.differences:
        blocks.append(_text_block("**How the stages differ**", spacing="Medium"))
        # A markdown list: "- " items separated by newlines (Teams renders the list).
        items = [f"- {_teams_text(_one_line(d), DIFFERENCE_MAX)}" for d in n.differences[:10]]
        if len(n.differences) > 10:
            items.append(f"- …and {len(n.differences) - 10} more")
        blocks.append(_text_block("\n".join(items)))
    return blocks


def _fact_set(facts: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "FactSet",
        "facts": [{"title": label, "value": _teams_text(value, PIECE_MAX)} for label, value in facts],
    }


def teams(n: Notification) -> dict[str, Any]:
    """The body for a Teams Workflows webhook ("Post to a channel when a webhook request is
    received"): a message with one Adaptive Card 1.4 attachment."""
    card_body: list[dict[str, Any]] = [
        _text_block(_teams_text(_title(n), 300), weight="Bolder", size="Medium"),
    ]
    if _lead_message(n):
        card_body.append(_text_block(_teams_text(n.message, PIECE_MAX)))
    card_body.append(_fact_set(_facts(n)))
    card_body.extend(_teams_trigger_blocks(n))
    card_body.append(
        _text_block(f"ref {_teams_text(n.id, 100)}", size="Small", isSubtle=True, spacing="Medium")
    )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": card_body,
        "actions": [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in _links(n)],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
