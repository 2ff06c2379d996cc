"""The dashboard in headless Chromium against the real control plane: what people see and do there.

One story walks every view (the board, a release's page with its journey, the commit's journey, the
pipeline's delivery, waiting-for-me), the approval gate from both sides (alice approves from the page;
carol is told why she cannot), a failed release's failing Job, live updates without a reload, and
hostile values and requests. A screenshot of each view lands in .artifacts/screenshots/ (the CI
output lists them; docs/dashboard.md shows them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import Browser
from support.builders import commit_of
from support.dashboard import DashboardProcess
from support.story import Story, stage_record
from support.wait import wait_for_object

MIGRATION = {"command": ["/app/migrate"]}
SMOKE = {"command": ["/app/smoke"]}
LIVE_SECONDS = 2.0  # the bound: a change on the API server is on the open page within 2 s
APPROVERS = {"approvers": {"groups": ["conveyor:approvers"]}}


@pytest.fixture
def dashboards(story: Story) -> Iterator[dict[str, DashboardProcess]]:
    """One dashboard per identity, each with that person's kubeconfig, all stopped afterwards."""
    started: dict[str, DashboardProcess] = {}
    namespaces = (story.ns, *story.stage_ns.values())
    assert story.users_dir is not None, "the dashboard story needs the local control plane's test users"
    try:
        started["admin"] = DashboardProcess(story.kubeconfig, *namespaces).start()
        for user in ("alice", "carol"):
            started[user] = DashboardProcess(story.users_dir / f"{user}.kubeconfig", story.ns).start()
        yield started
    finally:
        for d in started.values():
            d.stop()


def _pipeline_stage(story: Story, pipeline: str, stage: str, predicate: Any, what: str) -> float:
    """Wait (watching the Pipeline) until its status for `stage` satisfies `predicate`; the monotonic
    time the test saw it."""

    def ok(obj: dict[str, Any] | None) -> bool:
        stages = ((obj or {}).get("status") or {}).get("stages") or []
        return any(s.get("name") == stage and predicate(s) for s in stages)

    wait_for_object(story.lister("pipelines"), pipeline, ok, what=what, timeout=90)
    return time.monotonic()


def _release_phase(story: Story, name: str, phase: str) -> float:
    wait_for_object(
        story.lister("releases"),
        name,
        lambda o: ((o or {}).get("status") or {}).get("phase") == phase,
        what=f"release {name} {phase}",
        timeout=90,
    )
    return time.monotonic()


def _live(browser: Browser, seen_at: float, css: str, what: str) -> float:
    """The element must be on the open page within LIVE_SECONDS of the API server showing the change;
    returns how long after it appeared."""
    left = LIVE_SECONDS - (time.monotonic() - seen_at)
    browser.wait_for(css, timeout=max(left, 0.05), what=f"{what}, live, within {LIVE_SECONDS}s")
    return time.monotonic() - seen_at


def _text(browser: Browser, css: str) -> str:
    """An element's visible text, read in one script (never stale: a live redraw may come any time)."""
    text = browser.driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e && e.innerText;", css
    )
    assert text is not None, f"nothing matches {css}"
    return str(text)


def _no_reload_marker(browser: Browser) -> None:
    browser.driver.execute_script("window.__conveyorNoReload = 'still-the-same-page';")


def _assert_not_reloaded(browser: Browser) -> None:
    marker = browser.driver.execute_script("return window.__conveyorNoReload || null;")
    assert marker == "still-the-same-page", "the page was reloaded: live updates must not reload"


def test_dashboard_story(story: Story, dashboards: dict[str, DashboardProcess], browser: Browser) -> None:
    # Given a pipeline with migrations and smoke tests, prod behind the conveyor:approvers group,
    # and a second pipeline whose staging smoke test fails
    story.given_deployments()
    story.given_deployments(name="cart")
    story.given_pipeline(
        migration=MIGRATION,
        smoke_test=SMOKE,
        stages=[
            {"name": "staging", "namespace": story.stage_ns["staging"]},
            {
                "name": "prod",
                "namespace": story.stage_ns["prod"],
                "requiresApproval": True,
                "approval": APPROVERS,
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
            {"name": "prod", "namespace": story.stage_ns["prod"]},
        ],
    )
    story.given_operator()
    admin, alice, carol = dashboards["admin"], dashboards["alice"], dashboards["carol"]

    # The board, open before anything happens
    admin.open_in(browser)
    browser.wait_for(f'[data-pipeline="{story.ns}/shop"]', what="the shop pipeline's row on the board")
    _no_reload_marker(browser)

    # When CI creates a release, it reaches the prod gate — and the open board shows it there, live
    story.when_release("shop-v1", label="v1")
    at_gate = _release_phase(story, "shop-v1", "AwaitingApproval")
    took = _live(
        browser,
        at_gate,
        f'[data-pipeline="{story.ns}/shop"] [data-stage="prod"] [data-waiting="shop-v1"]',
        "shop-v1 waiting at the prod gate on the board",
    )
    print(f"\nboard showed the release at the gate {took:.2f}s after the API server did")
    _assert_not_reloaded(browser)

    # Carol (a developer: RBAC lets her create Approvals) is told why her approval would not count
    carol.open_in(browser)
    browser.open(carol.base + "/#/waiting")
    browser.wait_for(
        '.waiting[data-release="shop-v1"] .why[data-reason="NotAnApprover"]',
        text="carol is not an approver of prod",
        what="carol's reason on waiting-for-me",
    )
    assert browser.driver.execute_script(
        "return document.querySelector(arguments[0]).disabled;",
        '.waiting[data-release="shop-v1"] button.approve',
    ), "carol's Approve button must be disabled"
    browser.screenshot("dashboard-waiting-carol")
    # ... and the server refuses her forged click with the same reason (no Approval that would not count)
    rel = story.get("releases", "shop-v1")
    forged = {
        "namespace": story.ns,
        "release": "shop-v1",
        "stage": "prod",
        "uid": rel["metadata"]["uid"],
        "digest": rel["spec"]["digest"],
    }
    status, body = carol.request("POST", "/api/approve", forged, {"Content-Type": "application/json"})
    assert status == 403, (status, body)
    assert body["reason"] == "NotAnApprover", body
    assert "carol is not an approver of prod" in body["error"], body

    # Alice approves from the page: the Approval is hers, stamped by the API server, bound to the uid
    alice.open_in(browser)
    browser.open(alice.base + "/#/waiting")
    browser.wait_for(
        '.waiting[data-release="shop-v1"] .why[data-reason="MayApprove"]', what="alice may approve"
    )
    browser.screenshot("dashboard-waiting")
    browser.type('.waiting[data-release="shop-v1"] input.comment', "looks good in staging")
    browser.click('.waiting[data-release="shop-v1"] button.approve')
    browser.wait_for("#notice.ok", text="stamped alice", what="the approval's confirmation")
    uid = story.get("releases", "shop-v1")["metadata"]["uid"]
    approvals = [
        a
        for a in story.custom.list_namespaced_custom_object(
            "conveyor.dev", "v1alpha1", story.ns, "approvals"
        )["items"]
        if a["spec"]["release"] == "shop-v1"
    ]
    assert len(approvals) == 1, approvals
    spec = approvals[0]["spec"]
    assert spec["approver"]["username"] == "alice"
    assert spec["releaseUID"] == uid
    assert spec["stage"] == "prod"
    assert spec["comment"] == "looks good in staging"
    assert browser.console_errors() == []

    # The admin's board, still open on the same page, shows the prod commit once it is verified
    admin.open_in(browser)
    browser.wait_for(f'[data-pipeline="{story.ns}/shop"]', what="the board")
    _no_reload_marker(browser)
    verified = _pipeline_stage(
        story, "shop", "prod", lambda s: s.get("commit") == commit_of("v1"), "shop-v1 verified in prod"
    )
    _live(
        browser,
        verified,
        f'[data-pipeline="{story.ns}/shop"] [data-stage="prod"][data-commit="{commit_of("v1")}"]',
        "the prod commit on the board",
    )
    _assert_not_reloaded(browser)
    cell = _text(browser, f'[data-pipeline="{story.ns}/shop"] [data-stage="prod"]')
    assert commit_of("v1")[:7] in cell, cell
    assert "approved by alice" in cell, cell
    browser.screenshot("dashboard-board")

    # The release's page: a journey with one lane per stage, in pipeline order, each stage's bars in
    # the order they happened, exact times on hover
    browser.open(admin.base + f"/#/release/{story.ns}/shop-v1")
    browser.wait_for('.timeline [data-lane="prod"] .bar-smokeTest', what="the journey's prod smoke-test bar")
    # The whole picture read in one script (a live redraw between reads would make elements stale)
    lanes = browser.driver.execute_script(
        "return [...document.querySelectorAll('.timeline g.lane')].map((g) => ({lane: g.dataset.lane,"
        " bars: [...g.querySelectorAll('rect.bar')].map((b) => ({kind: b.dataset.kind,"
        " x: +b.getAttribute('x'), width: +b.getAttribute('width'), title: b.textContent}))}));"
    )
    assert [g["lane"] for g in lanes] == ["staging", "prod"], lanes
    staging, prod = (g["bars"] for g in lanes)
    assert [b["kind"] for b in staging] == ["migration", "rollout", "smokeTest"], staging
    assert [b["kind"] for b in prod] == ["approval", "migration", "rollout", "smokeTest"], prod
    for bars in (staging, prod):
        assert [b["x"] for b in bars] == sorted(b["x"] for b in bars), bars
    staging_end = max(b["x"] + b["width"] for b in staging)
    assert min(b["x"] for b in prod) >= staging_end - 1, (staging_end, prod)
    rel = story.get("releases", "shop-v1")
    verified_at = stage_record(rel, "prod")["verifiedAt"].replace("Z", "")
    assert verified_at[:19] in prod[-1]["title"], (verified_at, prod[-1]["title"])
    page = _text(browser, "#view")
    assert "alice" in page
    assert "counted" in page
    assert story.job("shop-v1", "prod", "smoke") in page  # its Jobs
    browser.screenshot("dashboard-release")

    # The commit's journey, from the commit (every release of it)
    browser.open(admin.base + f"/#/commit/{commit_of('v1')[:10]}")
    browser.wait_for('.timeline[data-release="shop-v1"]', what="the commit's journey")
    browser.screenshot("dashboard-journey")

    # The pipeline's history and delivery: one deployment to prod, lead time known, no failures
    browser.open(admin.base + f"/#/pipeline/{story.ns}/shop")
    browser.wait_for('[data-metric="deployment frequency"] .tile-value', what="the DORA tiles")
    assert _text(browser, '[data-metric="deployment frequency"] .tile-value') == "1"
    assert _text(browser, '[data-metric="change failure rate"] .tile-value') == "0%"
    browser.screenshot("dashboard-pipeline")
    # Every request the page made went to the dashboard itself (air-gapped: no CDN, no fonts)
    origins = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => new URL(e.name).origin);"
    )
    assert set(origins) <= {admin.base}, origins

    # Alice rolls prod back from the pipeline page: a Rollback stamped alice, as kubectl conveyor makes
    browser.open(alice.base + f"/#/pipeline/{story.ns}/shop")
    browser.type('.rollback-form:has(button[data-stage="prod"]) input', "checking the rollback button")
    browser.click('button.rollback[data-stage="prod"]')
    browser.wait_until(lambda: browser.driver.switch_to.alert, what="the are-you-sure dialog").accept()
    browser.wait_for("#notice.ok", text="requested by alice", what="the rollback's confirmation")
    rollbacks = story.custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, "rollbacks")[
        "items"
    ]
    assert [
        (r["spec"]["stage"], r["spec"]["requester"]["username"], r["spec"]["reason"]) for r in rollbacks
    ] == [("prod", "alice", "checking the rollback button")]

    # A failed release's page names the failing Job and why
    story.when_release("cart-v1", pipeline="cart", label="c1")
    _release_phase(story, "cart-v1", "Failed")
    smoke = story.job("cart-v1", "staging", "smoke")
    browser.open(admin.base + f"/#/release/{story.ns}/cart-v1")
    browser.wait_for(f'.failed-job[data-job="{smoke}"]', what="the failing smoke-test Job")
    failed = _text(browser, f'.failed-job[data-job="{smoke}"]')
    assert "smoke test Job" in failed, failed
    assert "failed" in failed, failed
    browser.screenshot("dashboard-failed-release")
    assert browser.console_errors() == []


def test_dashboard_hostile_values_and_requests(
    story: Story, dashboards: dict[str, DashboardProcess], browser: Browser
) -> None:
    # Given a release whose declared source is hostile: script URLs and markup
    story.given_deployments()
    story.given_pipeline()
    admin, alice = dashboards["admin"], dashboards["alice"]
    body = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "shop-evil"},
        "spec": {
            "pipeline": "shop",
            "commit": commit_of("evil"),
            "digest": "sha256:" + "e" * 64,
            "source": {
                "repository": "javascript:alert(1)//",
                "ciRunUrl": "javascript:alert(document.cookie)",
                "ciRunId": "<img src=x onerror=alert(1)>",
                "author": "<script>window.__pwned=1</script>",
            },
        },
    }
    story.create("releases", body, as_user="ci-bot")
    # When anyone looks at it (no operator needed: the release page shows what is stored)
    admin.open_in(browser)  # the printed address: the page keeps its token
    browser.open(admin.base + f"/#/release/{story.ns}/shop-evil")
    browser.wait_for("#release-name", text="shop-evil", what="the hostile release's page")
    # Then nothing runs, no script link exists, and the markup is shown as text
    assert browser.driver.execute_script("return window.__pwned || null;") is None
    # Read in one script: a live redraw between two element reads would make them stale.
    hrefs, page, count = browser.driver.execute_script(
        "const v = document.getElementById('view');"
        "return [[...document.querySelectorAll('a')].map((a) => a.href || ''), v.innerText,"
        " v.querySelectorAll('img, script').length];"
    )
    assert not [h for h in hrefs if h.lower().startswith(("javascript:", "data:"))], hrefs
    assert "<script>window.__pwned=1</script>" in page
    assert "<img src=x onerror=alert(1)>" in page
    assert count == 0, "markup from the cluster became elements"

    # Eight windows of the dashboard side by side (all visible): they share one event stream, so the
    # browser's six connections per host never run out and the eighth loads like the first
    d = browser.driver
    first = d.current_window_handle
    try:
        for n in range(8):
            d.switch_to.new_window("window")
            browser.open(admin.base + f"/#/release/{story.ns}/shop-evil")
            browser.wait_for("#release-name", text="shop-evil", what=f"window {n + 2} of the dashboard")
        streams = d.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter((e) => e.name.includes('/api/stream')).length;"
        )
        assert streams == 0, "a page opened its own event stream (the shared worker holds the one stream)"
    finally:
        for handle in d.window_handles:
            if handle != first:
                d.switch_to.window(handle)
                d.close()
        d.switch_to.window(first)

    # Another user of this machine (127.0.0.1 is theirs too) gets the page, which holds no secret,
    # and nothing of the API without this process's token — no cookie exists to collect
    for path in ("/", "/static/app.js"):
        status, text = alice.request("GET", path, session=False, raw=True)
        assert status == 200, (path, status)
        assert alice.token not in text, f"{path} must not carry the session token"
    for path in ("/api/board", "/api/whoami", "/api/stream", "/api/stream?token=not-it"):
        status, body_ = alice.request("GET", path, session=False)
        assert status == 401, (path, status)
    assert "open the address `kubectl conveyor dashboard` printed" in body_["error"]
    status, health = alice.request("GET", "/healthz", session=False)
    assert health == {"ok": True}, "without the token, /healthz says nothing about what it watches"
    status, _ = alice.request("GET", "/api/board", headers={"X-Conveyor-Token": admin.token})
    assert status == 401, "another dashboard's token must not open alice's"
    status, _ = alice.request("GET", "/api/board", headers={"X-Conveyor-Token": "\u00e9t\u00e9"})
    assert status == 401, "a non-ASCII token is just wrong, not a server error"
    # A page of another site cannot drive it: not under its own name (DNS rebinding), not without the
    # token (a cross-site request cannot set the header), not from another origin
    status, _ = alice.request("GET", "/api/board", headers={"Host": "evil.example:8642"})
    assert status == 403, "a request under another host name (DNS rebinding) must be refused"
    approve = {"namespace": story.ns, "release": "shop-evil", "stage": "prod"}
    status, body_ = alice.request(
        "POST", "/api/approve", approve, {"Content-Type": "application/json"}, session=False
    )
    assert status == 401, body_
    status, body_ = admin.request(
        "POST", "/api/approve", approve, {"Content-Type": "application/json", "Origin": "http://evil.example"}
    )
    assert status == 403, body_
    assert "cross-origin" in body_["error"], body_
    status, body_ = admin.request("POST", "/api/approve", approve, {"Content-Type": "text/plain"})
    assert status == 415, body_
    status, body_ = admin.request("POST", "/api/approve", approve, {"Content-Type": "application/json"})
    assert status == 400, "an approval must name the uid and digest the viewer saw"
    assert "uid and digest" in body_["error"], body_
    status, body_ = admin.request("POST", "/api/approve", None, {"Content-Type": "application/json"})
    assert status == 400, body_
    deep = b"[" * 8000 + b"]" * 8000  # valid JSON, nested past Python's recursion limit
    status, body_ = admin.request("POST", "/api/approve", deep, {"Content-Type": "application/json"})
    assert status == 400, body_
    # With the token and its own origin, what the viewer did not see is not approved (409)
    status, body_ = admin.request(
        "POST",
        "/api/approve",
        {**approve, "uid": "not-its-uid", "digest": body["spec"]["digest"]},
        {"Content-Type": "application/json"},
    )
    assert status == 409, body_
    assert "changed since you looked" in body_["error"], body_
    assert (
        story.custom.list_namespaced_custom_object("conveyor.dev", "v1alpha1", story.ns, "approvals")["items"]
        == []
    )


def test_the_page_says_when_the_api_server_hangs_and_heals_by_itself(story: Story, browser: Browser) -> None:
    # A hung API server (stopped, not refusing: connections open, nothing answers) is the case a
    # watch notices last; the dashboard's /readyz probe must say so within seconds, and the page
    # must stop saying "live" — then heal by itself, still without a reload
    cluster_dir = story.users_dir.parent if story.users_dir else None
    if cluster_dir is None:
        pytest.skip("pausing the API server needs the local control plane")
    story.given_pipeline()
    admin = DashboardProcess(story.kubeconfig, story.ns).start()
    try:
        admin.open_in(browser)
        browser.wait_for(f'[data-pipeline="{story.ns}/shop"]', what="the board")
        browser.wait_until(
            lambda: "on" in (browser.find("#live").get_attribute("class") or ""), what="the live dot green"
        )
        _no_reload_marker(browser)
        pid = json.loads((cluster_dir / "state.json").read_text())["pids"]["kube-apiserver"]
        os.kill(pid, signal.SIGSTOP)
        try:
            browser.wait_for(
                "#banner",
                text="the API server does not answer",
                timeout=20,
                what="the banner: API server away",
            )
            assert "on" not in (browser.find("#live").get_attribute("class") or "")
        finally:
            os.kill(pid, signal.SIGCONT)
        browser.wait_until(
            lambda: browser.driver.execute_script("return document.getElementById('banner').hidden;"),
            timeout=30,
            what="the banner gone once the API server answers again",
        )
        story.given_pipeline("late")
        browser.wait_for(
            f'[data-pipeline="{story.ns}/late"]', timeout=10, what="a pipeline created after, live"
        )
        _assert_not_reloaded(browser)
    finally:
        admin.stop()
