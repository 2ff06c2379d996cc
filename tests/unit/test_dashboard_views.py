"""The dashboard's pure views: what the board, the journey, a release's page, delivery (DORA) and
waiting-for-me say, from API objects alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conveyor.api.common import Condition, Identity
from conveyor.api.pipeline import Pipeline
from conveyor.views import actions
from conveyor.views.board import board
from conveyor.views.delivery import dora, per_day
from conveyor.views.journey import journey
from conveyor.views.links import commit_url, compare_url, safe_url
from conveyor.views.release_page import job_row, previous_release, release_page
from conveyor.views.waiting import waiting, would_count
from support.builders import T0, approval, commit_of, later, pipeline_dict, release, rollback, verified_in

NOW = T0 + timedelta(hours=1)


def _pipeline(status: dict[str, Any] | None = None, **approval_policy: Any) -> Pipeline:
    body = pipeline_dict(
        stages=[
            {"name": "staging", "namespace": "shop-staging"},
            {
                "name": "prod",
                "namespace": "shop-prod",
                "requiresApproval": True,
                "approval": {"approvers": {"groups": ["conveyor:approvers"]}, **approval_policy},
            },
        ]
    )
    body["metadata"]["creationTimestamp"] = T0.isoformat()
    if status:
        body["status"] = status
    return Pipeline.model_validate(body)


def _stage_state(name: str, rel: str | None = None, **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"name": name, "namespace": f"shop-{name}", **extra}
    if rel:
        state |= {
            "release": rel,
            "commit": commit_of(rel),
            "shortCommit": commit_of(rel)[:7],
            "since": later(60).isoformat(),
        }
    return state


# --- links: a declared URL never becomes a script


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "//evil.example/x",
        "http://",
        "https://exa mple.com/",
        "https://example.com/\nx",
        "",
        None,
    ],
)
def test_unsafe_urls_are_not_links(url: str | None) -> None:
    assert safe_url(url) is None


def test_http_urls_are_links_and_commit_pages_are_built_from_them() -> None:
    assert safe_url("https://ci.example/run/1") == "https://ci.example/run/1"
    assert (
        commit_url("https://github.com/acme/shop.git", "abc123")
        == "https://github.com/acme/shop/commit/abc123"
    )
    assert commit_url("git@github.com:acme/shop.git", "abc123") is None
    assert (
        compare_url("https://github.com/acme/shop/", "a1", "b2")
        == "https://github.com/acme/shop/compare/a1...b2"
    )
    assert compare_url("https://github.com/acme/shop", "a1", "a1") is None


# --- the board


def test_board_shows_the_commit_in_each_stage_who_approved_it_and_what_is_on_its_way() -> None:
    v1 = release(
        "v1",
        status={
            **verified_in("staging", "prod"),
            "stages": [
                {**verified_in("staging")["stages"][0]},
                {**verified_in("prod", at=10)["stages"][0], "approvers": ["alice"]},
            ],
        },
    )
    v2 = release(
        "v2",
        created=later(100),
        status={
            "phase": "Progressing",
            "currentStage": "staging",
            "stages": [
                {
                    "name": "staging",
                    "phase": "RollingOut",
                    "startedAt": later(101).isoformat(),
                    "migratedAt": later(102).isoformat(),
                }
            ],
        },
    )
    v3 = release(
        "v3", created=later(50), status={"phase": "AwaitingApproval", "currentStage": "prod", "stages": []}
    )
    p = _pipeline(
        {
            "stages": [_stage_state("staging", "v1", inFlight="v2"), _stage_state("prod", "v1")],
            "productionCommit": commit_of("v1")[:7],
        }
    )
    p.metadata.labels["conveyor.dev/team"] = "payments"
    data = board([p], [v1, v2, v3])
    row = data["pipelines"][0]
    assert data["teams"] == ["payments"]
    assert row["team"] == "payments"
    staging, prod = row["stages"]
    assert prod["commit"] == commit_of("v1")
    assert prod["approvedBy"] == ["alice"]
    assert prod["commitUrl"] == f"https://github.com/acme/shop/commit/{commit_of('v1')}"
    assert staging["inFlight"]["release"] == "v2"
    assert staging["inFlight"]["step"] == "RollingOut"
    assert staging["inFlight"]["stepsDone"] == 1  # migrated, not yet rolled out
    assert prod["awaitingApproval"]["release"] == "v3"
    assert data["inFlight"] == 1


def test_board_never_links_a_hostile_ci_url_and_counts_problems() -> None:
    evil = release("v1", status=verified_in("staging", "prod"))
    evil.spec.source.ci_run_url = "javascript:alert(1)"
    evil.spec.source.repository = "javascript:alert(2)//"
    p = _pipeline(
        {
            "stages": [_stage_state("staging", "v1"), _stage_state("prod", "v1")],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "TargetMissing",
                    "message": "no Deployment shop",
                    "lastTransitionTime": T0.isoformat(),
                }
            ],
        }
    )
    cell = board([p], [evil])["pipelines"][0]["stages"][1]
    assert cell["ciRunUrl"] is None
    assert cell["commitUrl"] is None
    assert board([p], [evil])["pipelines"][0]["problems"][0]["reason"] == "TargetMissing"


def test_board_of_an_unreconciled_pipeline_has_empty_cells() -> None:
    row = board([_pipeline()], [])["pipelines"][0]
    assert [c["stage"] for c in row["stages"]] == ["staging", "prod"]
    assert all(c["release"] is None for c in row["stages"])


# --- the journey


def _verified_with_steps() -> Any:
    def rec(name: str, at: float, approved: float | None = None) -> dict[str, Any]:
        out = {
            "name": name,
            "phase": "Verified",
            "startedAt": later(at).isoformat(),
            "migrationJob": f"v1-{name}-migrate",
            "migrationResult": "Succeeded",
            "migratedAt": later(at + 2).isoformat(),
            "deployedAt": later(at + 2).isoformat(),
            "rolledOutAt": later(at + 3).isoformat(),
            "smokeTestJob": f"v1-{name}-smoke",
            "smokeTestStartedAt": later(at + 3).isoformat(),
            "smokeTestResult": "Succeeded",
            "verifiedAt": later(at + 5).isoformat(),
            "finishedAt": later(at + 5).isoformat(),
        }
        if approved is not None:
            out["approvedAt"] = later(approved).isoformat()
        return out

    return release(
        "v1",
        status={
            "phase": "Succeeded",
            "acceptedAt": later(0).isoformat(),
            "stages": [rec("staging", 1), rec("prod", 30, approved=29)],
            "approvals": [
                {
                    "name": "a1",
                    "stage": "prod",
                    "approver": "alice",
                    "at": later(28).isoformat(),
                    "counted": True,
                    "verdict": "Accepted",
                }
            ],
        },
    )


def test_journey_has_a_lane_per_stage_in_order_and_bars_in_the_order_they_happened() -> None:
    j = journey(_verified_with_steps(), _pipeline(), [], NOW)
    assert [lane["lane"] for lane in j["lanes"]] == ["staging", "prod"]
    staging, prod = (lane["segments"] for lane in j["lanes"])
    assert [s["kind"] for s in staging] == ["queue", "migration", "rollout", "smokeTest"]
    assert [s["kind"] for s in prod] == ["approval", "migration", "rollout", "smokeTest"]
    # the wait for prod's approval starts when staging was verified and ends when it was approved
    assert prod[0]["from"] == pytest.approx(6.0)
    assert prod[0]["to"] == pytest.approx(29.0)
    for segs in (staging, prod):
        assert [s["from"] for s in segs] == sorted(s["from"] for s in segs)
        assert all(s["to"] >= s["from"] for s in segs)
    assert "2026-11-26T12:00:33.000Z" in prod[3]["title"]  # exact instants on hover
    assert [m["kind"] for m in j["marks"]] == ["verified", "approval", "verified"]
    assert j["span"] == pytest.approx(35.0)


def test_journey_of_a_release_in_flight_runs_to_now_and_says_so() -> None:
    rel = release(
        "v2",
        status={
            "phase": "Progressing",
            "acceptedAt": T0.isoformat(),
            "stages": [
                {"name": "staging", "phase": "Migrating", "startedAt": T0.isoformat(), "migrationJob": "m"}
            ],
        },
    )
    j = journey(rel, _pipeline(), [], NOW)
    seg = j["lanes"][0]["segments"][0]
    assert seg["kind"] == "migration"
    assert seg["ongoing"] is True
    assert seg["to"] == pytest.approx(3600.0)
    assert "so far" in seg["title"]
    assert j["lanes"][1]["segments"] == []  # prod: not reached


def test_journey_shows_a_rollback_away_from_the_release() -> None:
    rel = _verified_with_steps()
    rb = rollback(
        "rb1",
        status={
            "phase": "Succeeded",
            "plannedAt": later(100).isoformat(),
            "finishedAt": later(104).isoformat(),
            "plan": {
                "action": "ImageOnly",
                "reason": "r",
                "stage": "prod",
                "fromRelease": "v1",
                "toRelease": "v0",
            },
        },
    )
    j = journey(rel, _pipeline(), [rb], NOW)
    assert j["lanes"][-1]["lane"] == "rollbacks"
    seg = j["lanes"][-1]["segments"][0]
    assert seg["from"] == pytest.approx(100.0)
    assert seg["to"] == pytest.approx(104.0)
    assert "away from this release to v0" in seg["label"]


# --- a release's page


def test_release_page_names_the_failing_job_and_why() -> None:
    rel = release(
        "v2",
        status={
            "phase": "Failed",
            "message": "staging: smoke test failed",
            "stages": [
                {
                    "name": "staging",
                    "phase": "Failed",
                    "startedAt": T0.isoformat(),
                    "smokeTestJob": "v2-staging-smoke",
                    "smokeTestResult": "Failed",
                    "finishedAt": later(5).isoformat(),
                }
            ],
        },
    )
    job = {
        "status": {
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
    }
    page = release_page(rel, _pipeline(), [rel], [], [], {"v2-staging-smoke": job}, [], NOW)
    assert page["failedJobs"] == ["v2-staging-smoke"]
    assert page["jobs"][0]["why"] == "Job has reached the specified backoff limit"
    assert page["jobs"][0]["failed"] == 2


def test_a_job_that_is_gone_still_shows_what_conveyor_recorded() -> None:
    row = job_row("v2-staging-smoke", "smokeTest", "staging", "Failed", None)
    assert row["exists"] is False
    assert row["result"] == "Failed"


def test_what_changed_is_against_the_release_before_in_the_operators_own_order() -> None:
    v1 = release("v1", status=verified_in("staging", "prod"))
    v2 = release("v2", created=later(10))
    v3 = release("v3", created=later(20))
    assert previous_release(v3, [v3, v1, v2]) is v2
    assert previous_release(v1, [v3, v1, v2]) is None
    p = _pipeline({"stages": [_stage_state("staging", "v1"), _stage_state("prod", "v1")]})
    changes = release_page(v3, p, [v1, v2, v3], [], [], {}, [], NOW)["changes"]
    assert changes["previous"]["release"] == "v2"
    assert changes["commitRange"] == f"{commit_of('v2')[:7]}..{commit_of('v3')[:7]}"
    assert (
        changes["compareUrl"] == f"https://github.com/acme/shop/compare/{commit_of('v2')}...{commit_of('v3')}"
    )
    assert changes["production"]["release"] == "v1"


def test_events_of_a_deleted_namesake_are_the_servers_problem_not_the_pages() -> None:
    rel = release("v1")
    events = [{"reason": f"R{i}", "lastTimestamp": later(i).isoformat()} for i in range(40)]
    page = release_page(rel, _pipeline(), [rel], [], [], {}, events, NOW)
    assert len(page["events"]) == 30
    assert page["events"][0]["reason"] == "R39"  # newest first


# --- delivery: the four DORA metrics from Conveyor's records


def _prod_release(name: str, at: float, *, failed: bool = False, commit_time: float | None = None) -> Any:
    rec: dict[str, Any] = {
        "name": "prod",
        "startedAt": later(at).isoformat(),
        "deployedAt": later(at + 1).isoformat(),
    }
    if failed:
        rec |= {"phase": "Failed", "finishedAt": later(at + 5).isoformat()}
    else:
        rec |= {
            "phase": "Verified",
            "verifiedAt": later(at + 10).isoformat(),
            "finishedAt": later(at + 10).isoformat(),
        }
    rel = release(
        name, created=later(at - 100), status={"phase": "Failed" if failed else "Succeeded", "stages": [rec]}
    )
    if commit_time is not None:
        rel.spec.source.commit_time = later(commit_time)
    return rel


def test_dora_counts_deployments_lead_time_failures_and_time_to_restore() -> None:
    ok1 = _prod_release("v1", 0, commit_time=-3600)  # lead time 3600 + 10
    bad = _prod_release("v2", 1000, failed=True)  # failed at 1005
    ok3 = _prod_release("v3", 2000)  # verified at 2010: restores v2 -> 1005 s
    rolled = _prod_release("v4", 3000)  # verified at 3010, then rolled back away from at 3100
    rb = rollback(
        "rb1",
        status={
            "phase": "Succeeded",
            "plannedAt": later(3100).isoformat(),
            "patchedAt": later(3101).isoformat(),
            "finishedAt": later(3130).isoformat(),
            "plan": {
                "action": "ImageOnly",
                "reason": "r",
                "stage": "prod",
                "fromRelease": "v4",
                "toRelease": "v3",
            },
        },
    )
    refused = rollback(  # changed nothing: not a failed change of v3
        "rb0",
        status={
            "phase": "Refused",
            "plannedAt": later(2050).isoformat(),
            "plan": {
                "action": "Refused",
                "reason": "no earlier release",
                "stage": "prod",
                "fromRelease": "v3",
            },
        },
    )
    d = dora(_pipeline(), [ok1, bad, ok3, rolled], [rb, refused], NOW + timedelta(hours=2), days=1)
    assert d["deployments"] == 4
    assert d["failedChanges"] == 2
    assert d["changeFailureRate"] == 0.5
    # lead times: v1 3610 s (declared commit time), v3 and v4 110 s (their Release creation)
    assert d["leadTimeSeconds"] == 110
    assert d["leadTimes"] == 3
    restores = {f["release"]: f["restoreSeconds"] for f in d["failures"]}
    assert restores == {"v2": 1005.0, "v4": 30.0}
    assert d["timeToRestoreSeconds"] == pytest.approx(517.5)


def test_dora_window_leaves_out_older_deployments_and_a_pipeline_without_any() -> None:
    old = _prod_release("v1", 0)
    d = dora(_pipeline(), [old], [], T0 + timedelta(days=40), days=30)
    assert d["deployments"] == 0
    assert d["changeFailureRate"] is None
    assert d["leadTimeSeconds"] is None
    days = per_day(_pipeline(), [old], [], T0 + timedelta(days=1), days=3)
    assert [x["promotions"] for x in days] == [0, 1, 0]


# --- waiting for me: would the viewer's approval count?


def _at_gate(requester: str = "ci-bot") -> Any:
    return release(
        "v1",
        requester=requester,
        status={
            "phase": "AwaitingApproval",
            "currentStage": "prod",
            "stages": [verified_in("staging")["stages"][0]],
        },
    )


ALICE = Identity(username="alice", groups=["conveyor:approvers"])
CAROL = Identity(username="carol", groups=["developers"])


def _would(
    viewer: Identity | None, rel: Any = None, approvals: list[Any] | None = None, **kw: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {"may_create": True, "read_only": False, "enforced": True, "now": NOW} | kw
    return would_count(viewer, rel or _at_gate(), "prod", _pipeline(), approvals or [], **args)


def test_an_approver_may_approve_and_a_developer_is_told_why_not() -> None:
    assert _would(ALICE)["may"] is True
    carol = _would(CAROL)
    assert carol["may"] is False
    assert carol["reason"] == "NotAnApprover"
    assert "carol is not an approver of prod" in carol["message"]


def test_reasons_the_page_gives_before_the_operator_would() -> None:
    assert _would(ALICE, read_only=True)["reason"] == "ReadOnly"
    assert _would(None)["reason"] == "ViewerUnknown"
    assert _would(ALICE, may_create=False)["reason"] == "NotAllowedByRBAC"
    assert _would(ALICE, rel=_at_gate(requester="alice"))["reason"] == "SelfApproval"
    assert _would(ALICE, enforced=False)["reason"] == "IdentityNotEnforced"
    counted = approval("a1", "v1", "prod", approver="alice")
    counted.status.counted = True
    assert _would(ALICE, approvals=[counted])["reason"] == "AlreadyApproved"


def test_waiting_lists_releases_at_a_gate_with_the_viewers_verdict() -> None:
    data = waiting(
        [_pipeline()],
        [_at_gate(), release("v0", status=verified_in("staging", "prod"))],
        [],
        CAROL,
        {"apps": True},
        read_only=False,
        enforced=True,
        now=NOW,
    )
    assert [r["release"] for r in data["releases"]] == ["v1"]
    row = data["releases"][0]
    assert row["uid"] == "uid-v1"
    assert row["needed"] == 1
    assert row["you"]["reason"] == "NotAnApprover"
    assert data["viewer"]["username"] == "carol"


# --- actions: the same objects kubectl conveyor creates


def test_an_approval_from_the_page_is_bound_to_the_release_it_names() -> None:
    rel = {"metadata": {"name": "shop-v1", "uid": "u-1"}, "spec": {"digest": "sha256:" + "a" * 64}}
    body = actions.approval_body(rel, "prod", "ok")
    assert body["spec"] == {
        "release": "shop-v1",
        "stage": "prod",
        "releaseUID": "u-1",
        "digest": "sha256:" + "a" * 64,
        "comment": "ok",
    }
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert "approver" not in body["spec"]  # the API server stamps who made it
    rb = actions.rollback_body("shop", "prod", None, "bad", verify=False)
    assert rb["spec"] == {"pipeline": "shop", "verify": False, "stage": "prod", "reason": "bad"}


# --- air-gapped: every asset is the package's own


def test_the_page_loads_only_the_packages_own_assets() -> None:
    import re
    from importlib import resources

    from conveyor.dashboard.server import ASSETS, STATIC

    html = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"#]+)"', html)) | set(
        re.findall(r'"(/static/[^"]+)"', script)
    )
    assert referenced == {f"/static/{name}" for name in ASSETS}, referenced
    for name in ASSETS:
        assert (resources.files("conveyor.dashboard") / "static" / name).is_file(), name
    for name in (*ASSETS, "index.html"):
        text = (STATIC / name).read_text()
        # No CDN, no web font, no analytics: the only absolute URL is SVG's namespace name.
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), (name, urls)


def test_an_approval_given_before_the_stage_could_be_entered_held_nothing_back() -> None:
    rel = _verified_with_steps()
    prod = rel.status.stages[1]
    prod.approved_at = later(5)  # whole seconds: "before" staging was verified at T0+6
    j = journey(rel, _pipeline(), [], NOW)
    kinds = [s["kind"] for s in j["lanes"][1]["segments"]]
    assert "approval" not in kinds
    assert kinds[0] == "queue"  # staging verified at +6, prod entered at +30


def test_an_implausible_declared_commit_time_does_not_make_lead_time_nonsense() -> None:
    future = _prod_release("v1", 0, commit_time=10**7)  # years after the Release was created
    ancient = _prod_release("v2", 1000)
    ancient.spec.source.commit_time = T0 - timedelta(days=3650)
    d = dora(_pipeline(), [future, ancient], [], NOW, days=1)
    assert d["leadTimes"] == 2
    assert d["leadTimeSeconds"] == 110  # both from their Release's creation: 100 s before + 10 s


def test_the_wait_at_the_gate_is_read_from_the_history_not_whole_second_approvals() -> None:
    rel = _verified_with_steps()
    rel.status.stages[1].approved_at = later(6)  # the Approval's whole-second creation time
    history = [
        {"time": later(6.2).isoformat(), "reason": "AwaitingApproval", "stage": "prod", "message": "needs 1"},
        {"time": later(6.9).isoformat(), "reason": "ApprovalGranted", "stage": "prod", "message": "alice"},
    ]
    rel = rel.model_copy(
        update={
            "status": rel.status.model_copy(
                update={
                    "history": [
                        type(rel.status).model_validate({"history": history}).history[0],
                        type(rel.status).model_validate({"history": history}).history[1],
                    ]
                }
            )
        }
    )
    seg = journey(rel, _pipeline(), [], NOW)["lanes"][1]["segments"][0]
    assert seg["kind"] == "approval"
    assert seg["from"] == pytest.approx(6.2)
    assert seg["to"] == pytest.approx(6.9)


def test_an_approval_not_yet_judged_is_already_yours() -> None:
    pending = approval("a1", "v1", "prod", approver="alice")  # the operator has not judged it yet
    assert pending.status.counted is None
    assert _would(ALICE, approvals=[pending])["reason"] == "AlreadyApproved"
    refused = approval("a2", "v1", "prod", approver="alice")
    refused.status.counted = False  # judged and not counted (expired, say): a new one may count
    assert _would(ALICE, approvals=[refused])["may"] is True


def test_a_rollback_of_a_deleted_namesake_is_not_this_releases() -> None:
    from conveyor.views.journey import rollback_side

    rel = _verified_with_steps()
    old = rollback(
        "rb-old",
        status={
            "phase": "Succeeded",
            "plannedAt": later(-3 * 86400).isoformat(),
            "patchedAt": later(-3 * 86400 + 1).isoformat(),
            "plan": {
                "action": "ImageOnly",
                "reason": "r",
                "stage": "prod",
                "fromRelease": "v1",
                "fromDigest": "sha256:" + "0" * 64,
                "toRelease": "v0",
            },
        },
    )
    assert rollback_side(old, rel) is None
    assert [lane["lane"] for lane in journey(rel, _pipeline(), [old], NOW)["lanes"]] == ["staging", "prod"]
    assert dora(_pipeline(), [rel], [old], NOW, days=1)["failedChanges"] == 0


def test_an_ended_release_waits_for_nothing_any_more() -> None:
    superseded = release(
        "v9",
        status={
            "phase": "Superseded",
            "acceptedAt": T0.isoformat(),
            "stages": [{"name": "staging", "phase": "AwaitingApproval"}],
            "history": [{"time": later(50).isoformat(), "reason": "ReleaseSuperseded", "message": "v10"}],
        },
    )
    segs = journey(superseded, _pipeline(), [], T0 + timedelta(days=12))["lanes"][0]["segments"]
    assert all(not s["ongoing"] for s in segs)
    assert max(s["to"] for s in segs) <= 50


def test_without_the_identity_policies_no_approval_would_count() -> None:
    rel = _at_gate()
    rel.status.conditions = [
        Condition.model_validate(
            {
                "type": "Ready",
                "status": "False",
                "reason": "IdentityNotEnforced",
                "lastTransitionTime": T0.isoformat(),
            }
        )
    ]
    assert _would(ALICE, rel=rel)["reason"] == "IdentityNotEnforced"
