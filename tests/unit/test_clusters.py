"""Stages in other clusters, in the pure core: how a cluster Secret is judged (Argo CD's format),
which Secret a stage may use, and that a stage Conveyor cannot see decides nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.api.release import Phase
from conveyor.core import clusters as c
from conveyor.core.jobs import JobKind, job_name
from conveyor.core.plan import BLOCKED_RETRY_SECONDS, CreateJob, SetImage
from conveyor.core.promotion import reconcile
from support.builders import (
    REPO,
    approval,
    deployment_view,
    digest_of,
    job,
    later,
    pipeline,
    release,
    rollback,
    verified_in,
    world,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"  # never to appear in a message
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_data(config: dict[str, Any] | None = None, **fields: str) -> dict[str, str]:
    """A cluster Secret's data as the API server returns it (base64 values), in Argo CD's format."""
    values = {"name": "prod-b", "server": "https://10.0.0.1:6443", **fields}
    values["config"] = json.dumps(
        config if config is not None else {"bearerToken": TOKEN, "tlsClientConfig": {"caData": b64(CA)}}
    )
    return {k: b64(v) for k, v in values.items()}


ALLOWED = {c.ALLOWED_ANNOTATION: "apps"}


def parse(data: dict[str, str], annotations: dict[str, str] | None = None, **kw: Any) -> Any:
    return c.parse_cluster_secret(
        "cluster-prod-b", ALLOWED if annotations is None else annotations, data, **kw
    )


def test_an_argo_cd_cluster_secret_is_read_as_it_is():
    config = parse(secret_data(namespaces="shop-prod,payments"))
    assert isinstance(config, c.ClusterConfig)
    assert (config.name, config.server, config.token, config.ca_data) == (
        "prod-b",
        "https://10.0.0.1:6443",
        TOKEN,
        CA,
    )
    assert config.namespaces == {"shop-prod", "payments"}
    assert config.allowed == {"apps"}
    # Argo CD names a nameless cluster by its server; a stage names a DNS label, and a URL (whose
    # path could hold anything) never becomes a name in a message: such a Secret is not used.
    unnamed = {k: v for k, v in secret_data(server=f"https://10.0.0.1:6443/{TOKEN}").items() if k != "name"}
    name, problem = parse(unnamed)
    assert name == ""
    assert problem.reason == c.INVALID
    assert TOKEN not in problem.message
    assert parse(secret_data(name="Prod.EU"))[1].reason == c.INVALID


@pytest.mark.parametrize(
    ("config", "reason", "says"),
    [
        (
            {"execProviderConfig": {"command": "/bin/sh"}, "bearerToken": TOKEN},
            c.UNSUPPORTED,
            "execProviderConfig",
        ),
        ({"awsAuthConfig": {"clusterName": "x"}}, c.UNSUPPORTED, "awsAuthConfig"),
        ({"username": "admin", "password": "p"}, c.UNSUPPORTED, "basic authentication"),
        ({"bearerToken": TOKEN, "proxyUrl": "http://proxy"}, c.UNSUPPORTED, "proxyUrl"),
        ({"bearerToken": TOKEN, "tlsClientConfig": {"insecure": True}}, c.UNSUPPORTED, "insecure"),
        (
            {"bearerToken": TOKEN, "tlsClientConfig": {"certData": "eA==", "keyData": "eA=="}},
            c.UNSUPPORTED,
            "client",
        ),
        ({"tlsClientConfig": {"caData": b64(CA)}}, c.INVALID, "bearerToken"),
        ({"bearerToken": TOKEN, "tlsClientConfig": {"caData": "not base64!"}}, c.INVALID, "caData"),
        ({"bearerToken": TOKEN, "tlsClientConfig": {"caData": b64("hello")}}, c.INVALID, "caData"),
        ({"bearerToken": TOKEN, "tlsClientConfig": "x"}, c.INVALID, "tlsClientConfig"),
    ],
)
def test_a_secret_conveyor_will_not_use_says_why_without_the_token(config, reason, says):
    name, problem = parse(secret_data(config))
    assert name == "prod-b"
    assert problem.reason == reason
    assert says in problem.message
    assert "cluster-prod-b" in problem.message  # which Secret to fix
    assert TOKEN not in problem.message
    assert "c2VjcmV0" not in problem.message


def test_a_server_must_be_https_and_the_config_json():
    assert parse(secret_data(server="http://10.0.0.1"))[1].reason == c.INVALID
    data = secret_data()
    data["config"] = b64("{not json")
    assert "not JSON" in parse(data)[1].message
    del data["config"]
    assert parse(data)[1].reason == c.INVALID
    assert parse({})[1].reason == c.INVALID
    assert isinstance(
        parse(
            secret_data(config={"bearerToken": TOKEN, "tlsClientConfig": {"insecure": True}}),
            allow_insecure=True,
        ),
        c.ClusterConfig,
    )


def test_which_secret_a_stage_may_use():
    ok = parse(secret_data(namespaces="shop-prod"))
    clusters = c.index([ok, parse(secret_data(name="other"))])
    assert c.resolve(clusters, "prod-b", "apps", "shop-prod", "conveyor") == ok
    missing = c.resolve(clusters, "prod-x", "apps", "shop-prod", "conveyor")
    assert missing.reason == c.NOT_FOUND
    assert "conveyor.dev/cluster-secret=true" in missing.message
    # The Pipeline's namespace must be listed in the annotation (no annotation: nobody may).
    assert c.resolve(clusters, "prod-b", "team-b", "shop-prod", "conveyor").reason == c.NOT_ALLOWED
    closed = c.index([parse(secret_data(), annotations={})])
    assert c.resolve(closed, "prod-b", "apps", "shop-prod", "conveyor").reason == c.NOT_ALLOWED
    everyone = c.index([parse(secret_data(), annotations={c.ALLOWED_ANNOTATION: "*"})])
    assert isinstance(c.resolve(everyone, "prod-b", "team-b", "x", "conveyor"), c.ClusterConfig)
    # data.namespaces (Argo CD's meaning): only those stage namespaces.
    denied = c.resolve(clusters, "prod-b", "apps", "kube-system", "conveyor")
    assert denied.reason == c.NOT_ALLOWED
    assert "kube-system" in denied.message
    # Two Secrets claiming one name: neither is used.
    twice = c.index([ok, c.parse_cluster_secret("another", ALLOWED, secret_data())])
    assert c.resolve(twice, "prod-b", "apps", "shop-prod", "conveyor").reason == c.AMBIGUOUS


def test_a_stage_names_its_cluster_in_the_model_and_in_the_raw_pipeline():
    p = pipeline(stages=STAGES)
    assert [c.stage_cluster(s) for s in p.spec.stages] == ["", "prod-b"]
    assert [c.stage_cluster(s) for s in STAGES] == ["", "prod-b"]
    assert c.placement([("staging", "", None), ("prod", "prod-b", c.ClusterProblem(c.UNREACHABLE, "x"))]) == (
        "staging=control prod=prod-b(ClusterUnreachable)"
    )


# --- the core decides nothing on a stage it cannot see ---------------------------------------

STAGES = [
    {"name": "staging", "namespace": "shop"},
    {"name": "prod", "namespace": "shop", "cluster": "prod-b", "requiresApproval": True},
]
DOWN = c.ClusterProblem(c.UNREACHABLE, "cluster prod-b cannot be reached: connection refused")
SMOKE = {"image": "busybox", "command": ["true"]}


def image(label: str) -> str:
    return f"{REPO}@{digest_of(label)}"


def unseen_world(**kw: Any):
    w = world(**kw)
    w.stages["staging"].namespace = "shop"
    w.stages["prod"].namespace, w.stages["prod"].cluster = "shop", "prod-b"
    w.stages["prod"].problem = DOWN
    w.stages["prod"].deployments = {}
    return w


def in_prod_smoke_test() -> Any:
    """r1: verified in staging, rolled out in prod, its prod smoke test recorded and running."""
    status = verified_in("staging")
    status.update(phase="Progressing", currentStage="prod")
    smoke = job_name("r1", "uid-r1", "prod", JobKind.SMOKE_TEST)
    status["stages"].append(
        {
            "name": "prod",
            "phase": "SmokeTesting",
            "startedAt": later(10).isoformat(),
            "deployedAt": later(11).isoformat(),
            "rolledOutAt": later(12).isoformat(),
            "smokeTestJob": smoke,
            "smokeTestStartedAt": later(12).isoformat(),
        }
    )
    return release("r1", status=status), smoke


def test_a_release_in_a_stage_that_cannot_be_seen_keeps_its_record_and_creates_nothing():
    p = pipeline(stages=STAGES, smoke_test=SMOKE)
    r1, _smoke = in_prod_smoke_test()
    # Long past the smoke test's deadline: still no verdict on what was not seen.
    plan = reconcile(p, [r1], [], unseen_world(staging=deployment_view(image("r1"))), later(3600))
    assert not [a for a in plan.actions if isinstance(a, (CreateJob, SetImage))]
    status = plan.releases["r1"]
    assert status.phase == Phase.PROGRESSING
    assert status.message
    assert "cannot see cluster prod-b" in status.message
    assert next(x for x in status.conditions if x.type == "Progressing").reason == c.UNREACHABLE
    assert status.stages[-1].model_dump() == r1.status.stages[-1].model_dump()  # nothing judged
    assert plan.requeue_after == BLOCKED_RETRY_SECONDS  # and woken when its cluster is seen again
    prod = next(s for s in plan.pipeline.stages if s.name == "prod")
    assert prod.cluster == "prod-b"
    assert prod.cluster_problem
    assert prod.cluster_problem.startswith(c.UNREACHABLE)
    assert plan.pipeline.placement == "staging=control prod=prod-b(ClusterUnreachable)"
    reachable = next(x for x in plan.pipeline.conditions if x.type == "ClustersReachable")
    assert (reachable.status, reachable.reason) == ("False", c.UNREACHABLE)
    # Ready judges only what was seen: prod's missing Deployment is not "not found".
    assert next(x for x in plan.pipeline.conditions if x.type == "Ready").status == "True"
    # Seen again, with the Job gone: the known rules apply (here: the recorded smoke test is missing).
    seen = reconcile(
        p, [r1], [], world(staging=deployment_view(image("r1")), prod=deployment_view(image("r1"))), later(60)
    )
    assert seen.releases["r1"].conditions != status.conditions


def test_an_approved_release_never_enters_a_stage_it_cannot_see():
    p = pipeline(stages=STAGES)
    r1 = release("r1", status=verified_in("staging") | {"phase": "AwaitingApproval", "currentStage": "prod"})
    ok = approval("r1-prod", "r1", "prod", seen=later(2))
    plan = reconcile(p, [r1], [ok], unseen_world(staging=deployment_view(image("r1"))), later(30))
    status = plan.releases["r1"]
    assert status.phase == Phase.WAITING
    assert next(x for x in status.conditions if x.type == "Ready").reason == c.UNREACHABLE
    assert not [a for a in plan.actions if isinstance(a, (CreateJob, SetImage))]
    prod = next(s for s in status.stages if s.name == "prod")
    assert prod.started_at is None
    assert prod.approvals == []


def test_a_rollback_of_a_stage_that_cannot_be_seen_is_not_planned_on_what_was_not_read():
    p = pipeline(stages=STAGES)
    r1 = release("r1", status=verified_in("staging", "prod"))
    rb = rollback("rb1")
    plan = reconcile(p, [r1], [], unseen_world(), later(30), rollbacks=[rb])
    st = plan.rollbacks["rb1"]
    assert st.plan is None
    assert st.phase == "Pending"
    assert next(x for x in st.conditions if x.type == "Progressing").reason == c.UNREACHABLE
    assert not plan.actions
    assert not plan.again


def test_nothing_is_deleted_while_a_stage_cannot_be_seen():
    p = pipeline(stages=STAGES)
    p.spec.retention.keep_releases = 1
    old = [
        release(f"r{i}", created=later(i), status=verified_in("staging", at=i) | {"phase": "Superseded"})
        for i in range(3)
    ]
    plan = reconcile(p, old, [], unseen_world(), later(600))
    assert not [a for a in plan.actions if type(a).__name__ in ("DeleteRelease", "DeleteJob")]
    assert plan.pipeline.retired == []


def test_the_example_pipeline_and_cluster_secret_are_what_conveyor_reads():
    import yaml

    from conveyor.api.pipeline import Pipeline

    path = Path(__file__).resolve().parents[2] / "examples" / "multi-cluster" / "pipeline.yaml"
    pipeline_obj, secret = yaml.safe_load_all(path.read_text())
    p = Pipeline.model_validate(pipeline_obj)
    assert [c.stage_cluster(s) for s in p.spec.stages] == ["", "prod-eu"]
    data = {k: b64(v) for k, v in secret["stringData"].items()}
    config = c.parse_cluster_secret("cluster-prod-eu", secret["metadata"]["annotations"], data)
    assert isinstance(config, c.ClusterConfig) is False  # placeholders: no CA certificate yet
    assert config[1].reason == c.INVALID
    data["config"] = b64(json.dumps({"bearerToken": "t", "tlsClientConfig": {"caData": b64(CA)}}))
    config = c.parse_cluster_secret("cluster-prod-eu", secret["metadata"]["annotations"], data)
    assert isinstance(config, c.ClusterConfig)
    assert c.resolve({"prod-eu": config}, "prod-eu", "default", "shop", "conveyor-system") == config
    assert secret["metadata"]["labels"] == {c.SECRET_LABEL: "true"}


def test_a_cluster_config_never_shows_its_token_and_a_server_carries_no_credentials():
    config = parse(secret_data())
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    _name, problem = parse(secret_data(server="https://admin:hunter2@10.0.0.1:6443"))
    assert problem.reason == c.INVALID
    assert "hunter2" not in problem.message


def test_a_single_cluster_pipeline_has_no_placement_and_no_clusters_condition():
    plan = reconcile(pipeline(), [], [], world(), later(0))
    assert plan.pipeline.placement is None
    assert not [x for x in plan.pipeline.conditions if x.type == "ClustersReachable"]
    assert all(s.cluster is None and s.cluster_problem is None for s in plan.pipeline.stages)


def test_deadlines_that_ran_out_while_a_cluster_could_not_be_seen_get_time_after_its_return():
    """B's API server was away past the smoke test's deadline: its own controllers were cut off too.
    The verdict waits for the Job controller there (the grace), then is given as usual."""
    p = pipeline(stages=STAGES, smoke_test=SMOKE)
    r1, smoke = in_prod_smoke_test()  # smoke test started at T0+12 s; deadline 300 s (+30 s grace)

    def seen(now_s: float, seen_again: float | None) -> Any:
        w = world(
            staging=deployment_view(image("r1")), prod=deployment_view(image("r1")), jobs={smoke: job(smoke)}
        )
        w.stages["prod"].cluster = "prod-b"
        w.stages["prod"].seen_again_at = later(seen_again) if seen_again is not None else None
        return reconcile(p, [r1], [], w, later(now_s)).releases["r1"]

    assert seen(1010, None).phase == Phase.FAILED  # no outage known: past the deadline, timed out
    waiting = seen(1010, 1000)  # back 10 s ago: the Job controller there gets its grace first
    assert waiting.phase == Phase.PROGRESSING
    assert waiting.stages[-1].smoke_test_result is None
    assert seen(1031, 1000).phase == Phase.FAILED  # the grace is over: judged as always


def test_a_rollout_cut_off_by_its_clusters_outage_gets_a_whole_deadline_after_the_return():
    p = pipeline(stages=STAGES)
    status = verified_in("staging")
    status.update(phase="Progressing", currentStage="prod")
    status["stages"].append(
        {
            "name": "prod",
            "phase": "RollingOut",
            "startedAt": later(10).isoformat(),
            "deployedAt": later(11).isoformat(),
        }
    )
    r1 = release("r1", status=status)
    stuck = deployment_view(image("r1"), release_name="r1", rolled_out=False)

    def judged(now_s: float, seen_again: float | None) -> Any:
        w = world(staging=deployment_view(image("r1")), prod=stuck)
        w.stages["prod"].cluster = "prod-b"
        w.stages["prod"].seen_again_at = later(seen_again) if seen_again is not None else None
        return reconcile(p, [r1], [], w, later(now_s)).releases["r1"]

    assert judged(500, None).phase == Phase.FAILED  # 120 s deadline long past
    assert judged(500, 450).phase == Phase.PROGRESSING  # back 50 s ago: 70 s left
    assert judged(571, 450).phase == Phase.FAILED


@pytest.mark.parametrize(
    "bad", [TOKEN[:16] + "\n" + TOKEN[16:], TOKEN[:9] + "\r\n" + TOKEN[9:], "a b", "tok\x00en"]
)
def test_a_token_no_header_can_carry_is_refused_without_being_repeated(bad):
    _name, problem = parse(secret_data({"bearerToken": bad, "tlsClientConfig": {"caData": b64(CA)}}))
    assert problem.reason == c.INVALID
    assert "line break" in problem.message
    for part in bad.split():
        assert len(part) < 8 or part not in problem.message


def test_errors_from_a_remote_cluster_never_carry_what_follows_bearer():
    from kubernetes.client.exceptions import ApiException

    from conveyor.kube.remote import problem_of

    header = ValueError(f"Invalid header value b'Bearer {TOKEN}'")
    assert TOKEN not in problem_of(header, "prod-b").message  # not a network error: its type alone
    api = ApiException(status=403, reason=f'{{"message": "denied for Bearer {TOKEN}"}}')
    assert TOKEN not in problem_of(api, "prod-b").message
    assert problem_of(api, "prod-b").reason == c.FORBIDDEN
    assert problem_of(ApiException(status=401), "prod-b").reason == c.CREDENTIALS


def test_a_token_pasted_with_a_trailing_line_break_is_used_without_it():
    config = parse(secret_data({"bearerToken": TOKEN + "\n", "tlsClientConfig": {"caData": b64(CA)}}))
    assert config.token == TOKEN


def test_kubectl_conveyor_status_says_where_each_stage_lives_only_when_one_is_elsewhere():
    from conveyor.views.text import render_status, status

    p = pipeline(stages=STAGES, smoke_test=SMOKE)
    r1, _ = in_prod_smoke_test()
    p.status = reconcile(p, [r1], [], unseen_world(staging=deployment_view(image("r1"))), later(60)).pipeline
    text = render_status(status(p, [r1]))
    assert "CLUSTER" in text.splitlines()[1]
    assert "prod-b (ClusterUnreachable)" in text
    single = pipeline()
    single.status = reconcile(single, [], [], world(), later(0)).pipeline
    assert "CLUSTER" not in render_status(status(single, []))


def test_a_connection_closed_in_the_handshake_is_the_cluster_away_not_a_bad_certificate():
    import ssl

    import urllib3

    from conveyor.kube.remote import problem_of

    eof = urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.SSLError(ssl.SSLEOFError(8, "[SSL: UNEXPECTED_EOF_WHILE_READING]"))
    )
    assert problem_of(eof, "prod-b").reason == c.UNREACHABLE
    bad_ca = urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    assert problem_of(bad_ca, "prod-b").reason == c.CERTIFICATE


def test_request_paths_never_reach_a_message():
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from conveyor.kube.reflector import _describe
    from conveyor.kube.remote import problem_of

    pool = urllib3.HTTPSConnectionPool("127.0.0.1", 45999)
    refused = urllib3.exceptions.MaxRetryError(
        pool,
        f"/{TOKEN}/apis/apps/v1/namespaces/shop/deployments",
        urllib3.exceptions.NewConnectionError(pool, "Failed to establish a new connection: [Errno 111]"),
    )
    assert TOKEN not in problem_of(refused, "prod-b").message
    assert TOKEN not in _describe(refused)  # the Reflector's log line
    assert "with url: …" in _describe(refused)
    forbidden = ApiException(status=403, reason=f'{{"message": "forbidden: cannot get path \\"/{TOKEN}\\""}}')
    assert TOKEN not in problem_of(forbidden, "prod-b").message
    assert TOKEN not in _describe(forbidden)
