"""The browser helper itself (tests/support/browser.py), on tiny pages served from 127.0.0.1: it
waits for what appears late without sleeping, types and clicks, saves real PNG screenshots, hears
the page's JavaScript errors, and a wait that runs out says what it waited for and what was shown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.browser import Browser, BrowserWaitTimeout

HEAD = '<meta charset="utf-8"><link rel="icon" href="data:,">'  # no favicon.ico request, no 404
PAGES = {
    "/": f"""<!doctype html><html><head>{HEAD}<title>late</title></head><body>
<h1>Browser support self-test</h1>
<button id="add" onclick="setTimeout(() => {{
  const p = document.createElement('p'); p.id = 'added'; p.textContent = 'added after 300 ms';
  document.body.appendChild(p); }}, 300)">Add</button>
<input id="name" oninput="document.getElementById('echo').textContent = 'hello ' + this.value">
<p id="echo"></p>
</body></html>""",
    "/throws": f"""<!doctype html><html><head>{HEAD}<title>throws</title></head><body>
<p>This page throws.</p>
<script>throw new Error("boom from the self-test page");</script>
</body></html>""",
}


class Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write((body or "not found").encode())

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The pages above on 127.0.0.1 and a free port, in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_waits_for_what_a_click_adds_later_and_screenshots_it(browser: Browser, site: str) -> None:
    browser.open(site + "/")
    assert browser.find_all("#added") == []
    browser.click("#add")
    t0 = time.monotonic()
    added = browser.wait_for("#added", text="300 ms", timeout=5, what="the paragraph the click adds")
    assert time.monotonic() - t0 < 3
    assert added.text == "added after 300 ms"

    browser.type("#name", "conveyor")
    browser.wait_for("#echo", text="hello conveyor", timeout=5, what="the typed name echoed")

    png = browser.screenshot("browser-support-self-test")
    assert png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.console_errors() == []


def test_console_errors_report_an_uncaught_exception(browser: Browser, site: str) -> None:
    browser.open(site + "/throws")
    errors = browser.wait_until(browser.console_errors, 5, what="the thrown error in the console")
    assert any("boom from the self-test page" in e for e in errors), errors
    browser.open(site + "/")  # a new page starts with a clean console
    assert browser.console_errors() == []


def test_a_wait_that_runs_out_says_what_it_waited_for(browser: Browser, site: str) -> None:
    browser.open(site + "/")
    t0 = time.monotonic()
    with pytest.raises(BrowserWaitTimeout) as raised:
        browser.wait_for("#never", timeout=0.5, what="a row that never comes")
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 3, elapsed
    message = str(raised.value)
    assert "a row that never comes" in message
    assert "'#never'" in message
    assert f"url: {site}/" in message
    assert "Browser support self-test" in message  # the page's visible text
