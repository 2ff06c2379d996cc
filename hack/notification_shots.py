"""Screenshots of Conveyor's Slack messages (docs/images/notification-slack-<trigger>.png), as a
Slack channel shows them. Run by hack/notification-shots.

No Slack is involved: each sample Notification (tests/support/notify_samples.py) is rendered by the
real renderer (conveyor.core.notify_render.slack), and its Block Kit blocks are drawn as a small
static page that looks like a Slack message — the app's square avatar and bold name, the header,
fields in two columns, mrkdwn (*bold*, `code`, ```blocks```, > quotes, <url|links>), the context line
small and grey — which headless Chromium (tests/support/browser.py) photographs.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from selenium.webdriver.common.by import By  # noqa: E402

from conveyor.core.notify_render import slack  # noqa: E402
from support.browser import Browser  # noqa: E402
from support.notify_samples import SAMPLES  # noqa: E402

DEFAULT_OUT = REPO / "docs" / "images"

CSS = """
body { margin: 0; background: #fff; font: 15px/1.46668 "Liberation Sans", "DejaVu Sans", sans-serif;
       color: #1d1c1d; }
.message { display: flex; gap: 8px; padding: 12px 20px 14px; width: 680px; }
.body { flex: 1; min-width: 0; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; background: #2c6e49; color: #fff;
          font-weight: 700; font-size: 20px; display: flex; align-items: center; justify-content: center; }
.who { font-weight: 900; } .app { font-size: 10px; font-weight: 700; color: #616061; background: #e8e8e8;
       border-radius: 2px; padding: 1px 3px; margin: 0 4px; vertical-align: 2px; }
.when { font-size: 12px; color: #616061; }
.header { font-size: 18px; font-weight: 900; margin: 6px 0 4px; }
.section { margin: 4px 0 8px; }
.fields { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; margin: 4px 0 8px; }
.context { font-size: 12px; color: #616061; display: flex; gap: 12px; flex-wrap: wrap; margin-top: 4px; }
code { font: 12px "DejaVu Sans Mono", monospace; color: #e01e5a; background: #f6f6f6;
       border: 1px solid #e0e0e0; border-radius: 3px; padding: 1px 3px; }
.context code { color: #616061; }
pre { font: 12px/1.5 "DejaVu Sans Mono", monospace; background: #f8f8f8; border: 1px solid #e0e0e0;
      border-radius: 4px; padding: 8px; margin: 4px 0; white-space: pre-wrap; }
blockquote { margin: 2px 0; padding-left: 10px; border-left: 4px solid #ddd; }
a { color: #1264a3; text-decoration: none; }
"""


def mrkdwn_html(text: str) -> str:
    """Slack mrkdwn as HTML. The text arrives escaped the Slack way (&amp; &lt; &gt;, which HTML
    reads the same), so the only `<` in it open the renderer's own <url|label> links."""
    blocks: list[str] = []

    def keep(fragment: str) -> str:
        blocks.append(fragment)
        return f"\x00{len(blocks) - 1}\x00"

    text = re.sub(r"```(.*?)```", lambda m: keep(f"<pre>{m.group(1)}</pre>"), text, flags=re.DOTALL)
    text = re.sub(
        r"<([^|>]+)\|([^>]+)>",
        lambda m: keep(f'<a href="{html.escape(m.group(1))}">{m.group(2)}</a>'),
        text,
    )
    text = re.sub(r"`([^`\n]+)`", lambda m: keep(f"<code>{m.group(1)}</code>"), text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", text)
    lines = []
    for line in text.split("\n"):
        if line.startswith("> "):
            lines.append(f"<blockquote>{line[2:]}</blockquote>")
        else:
            lines.append(line + "<br>")
    out = "".join(lines).removesuffix("<br>")
    return re.sub(r"\x00(\d+)\x00", lambda m: blocks[int(m.group(1))], out)


def block_html(block: dict[str, Any]) -> str:
    """One Block Kit block as HTML (the kinds the renderer makes)."""
    kind = block["type"]
    if kind == "header":
        return f'<div class="header">{html.escape(block["text"]["text"])}</div>'
    if kind == "section" and "fields" in block:
        cells = "".join(f"<div>{mrkdwn_html(f['text'])}</div>" for f in block["fields"])
        return f'<div class="fields">{cells}</div>'
    if kind == "section":
        return f'<div class="section">{mrkdwn_html(block["text"]["text"])}</div>'
    if kind == "context":
        items = "".join(f"<span>{mrkdwn_html(e['text'])}</span>" for e in block["elements"])
        return f'<div class="context">{items}</div>'
    raise ValueError(f"no drawing for a {kind} block")


def page(message: dict[str, Any], when: str) -> str:
    """A page showing one Slack message from the Conveyor app."""
    blocks = "".join(block_html(b) for b in message["blocks"])
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{CSS}</style></head><body>'
        f'<div class="message" id="message"><div class="avatar">C</div><div class="body">'
        f'<span class="who">Conveyor</span><span class="app">APP</span><span class="when">{when}</span>'
        f"{blocks}</div></div></body></html>"
    )


def main(argv: list[str] | None = None) -> int:
    """Write one PNG per sample trigger into --out."""
    parser = argparse.ArgumentParser(prog="notification-shots", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder (default: docs/images)")
    parser.add_argument("triggers", nargs="*", help="only these triggers (default: every one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="conveyor-shots-") as tmp, Browser() as b:
        for trigger, n in SAMPLES.items():
            if args.triggers and trigger not in args.triggers:
                continue
            path = Path(tmp) / f"{trigger}.html"
            path.write_text(page(slack(n), n.time.strftime("%H:%M")), encoding="utf-8")
            b.open(path.as_uri())
            b.wait_for("#message", what="the drawn message")
            png = args.out / f"notification-slack-{trigger}.png"
            png.write_bytes(b.driver.find_element(By.ID, "message").screenshot_as_png)
            print(f"notification-shots: {png.relative_to(REPO) if png.is_relative_to(REPO) else png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
