"""Issue #12, hostile input by the hundred, on the real API server while other pipelines promote.

hypothesis draws bodies of every kind (tests/support/hostile.py: valid, one field off, hostile) and
each goes to the API server, as a test identity with just enough RBAC or as the admin. Each must be

- refused (4xx) with a message that names the field (the 422's causes, or the field path in the
  message) — the only refusals without a field are the ones in NON_FIELD_REFUSALS; or
- admitted, and then answered by the operator with a condition (reason, message, and
  observedGeneration equal to the object's generation) before a deadline — awaited with one watch per
  kind.

Meanwhile four ordinary pipelines promote releases. Afterwards: the operator is the same process, it
logged no error or traceback, no pipeline passed more than PASSES_PER_MINUTE_BOUND times a minute
(conveyor_pipeline_passes_total), and the ordinary promotions finished within a bound of a quiet run.

Scale with CONVEYOR_SOAK=1 (`make soak`: 5000 per kind) or CONVEYOR_HOSTILE_COUNT; the draw is
seeded (CONVEYOR_HOSTILE_SEED) and printed, so a failure is reproduced by its seed and count.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from conftest import make_namespace
from conveyor.api.common import GROUP, VERSION
from conveyor.api.pipeline import Pipeline
from conveyor.api.release import Release
from conveyor.core.jobs import JobKind, job_manifest
from conveyor.kube.client import Kube
from support.builders import pipeline_dict, release_dict
from support.hostile import PLURALS, Case, World, counts, draw_cases, job_templates
from support.operator import OperatorProcess
from support.soak import soaking
from support.story import Story
from support.wait import condition, wait_for_object

pytestmark = pytest.mark.cluster

# The API server answers a body with hundreds of unknown (pruned) fields with one Warning header per
# field; Python's http.client gives up past 100 headers. A client limit, not the server's answer.
http.client._MAXHEADERS = 100_000  # type: ignore[attr-defined]

SOAK = soaking()
PER_KIND = int(os.environ.get("CONVEYOR_HOSTILE_COUNT") or (5000 if SOAK else 500))
SEED = int(os.environ.get("CONVEYOR_HOSTILE_SEED") or 20261127)
NORMAL_PIPELINES = 4
CLIENT_THREADS = 6
# A pass is cheap when there is nothing new, but a pipeline passing more than this often is looping
# (its work comes from watch events that coalesce, and requeues that wait for a deadline).
PASSES_PER_MINUTE_BOUND = 120.0
# Refusals that rightly name no field: the request as a whole is what is wrong.
NON_FIELD_REFUSALS = {
    413: "the request body is over the API server's size limit (3 MiB)",
}
# Error lines that are handled: kopf retrying a watch request the API server turned away for a moment
# (429 while a CRD's storage re-initialises, say) — it says so and retries, nothing is lost.
HANDLED_ERRORS = re.compile(
    r'"logger": "kopf\._cogs\.clients\.[a-z_]+", "message": "Request attempt #\d+/\d+ failed; will retry'
)
# Everything the operator must answer; an answer later than this (after the last body was sent) is
# "never answered".
ANSWER_DEADLINE = 120.0 if SOAK else 60.0


@dataclass
class Outcome:
    """What the API server said to one Case."""

    case: Case
    identity: str
    status: int = 0  # 201 when admitted
    message: str = ""
    causes: list[dict[str, Any]] | None = None
    generation: int = 0


def _api(kubeconfig: str) -> client.CustomObjectsApi:
    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = CLIENT_THREADS * 2
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = CLIENT_THREADS * 2
    return client.CustomObjectsApi(api)


def grant_team_roles(story: Story, namespace: str) -> None:
    """The story's team roles (ci-bot releases; approvers and developers approve and roll back), in
    another namespace."""
    ns, story.ns = story.ns, namespace
    try:
        story.grant_team_roles()
    finally:
        story.ns = ns


# Who sends each kind: a test identity with just enough RBAC, or the admin (Pipelines: admin only).
IDENTITIES = {
    "pipelines": [None],
    "releases": ["ci-bot", None],
    "approvals": ["carol", None],
    "rollbacks": ["alice", None],
}


def send(apis: dict[str | None, client.CustomObjectsApi], namespace: str, case: Case, i: int) -> Outcome:
    """Create one body; record the API server's answer."""
    who = IDENTITIES[case.plural][i % len(IDENTITIES[case.plural])]
    out = Outcome(case, who or "admin")
    kwargs = {"field_validation": "Strict"} if case.strict else {}
    try:
        created = apis[who].create_namespaced_custom_object(
            GROUP, VERSION, namespace, case.plural, case.body, **kwargs
        )
        out.status, out.generation = 201, int(created["metadata"].get("generation") or 0)
    except ApiException as e:
        out.status = e.status
        try:
            data = json.loads(e.body or "{}")
        except ValueError:
            data = {"message": str(e.body)[:2000]}
        out.message = str(data.get("message", ""))
        out.causes = (data.get("details") or {}).get("causes")
    return out


# The field path in the message; or, for a body the API server cannot even decode into an object
# (metadata.labels a list, say), the Go field it names: "Go struct field ObjectMeta.labels".
# (A path inside a quoted CEL expression or JSON patch — object.spec.x, '/spec/x' — is not a field
# the message is about: that is a policy failing on the body, not a verdict on a field.)
FIELD_IN_MESSAGE = re.compile(
    r"(?:^|[\s\[(,])(spec|metadata)(\.[A-Za-z0-9_-]+|\[\d+\])*(:| in body| is )"
    r"|unknown field \"(spec|metadata)[^\"]*\"|Go struct field ObjectMeta\.\w+"
)


def names_a_field(out: Outcome) -> bool:
    """The refusal names the field it is about: a cause with a field, or the path in the message."""
    if any(c.get("field") for c in out.causes or []):
        return True
    return bool(FIELD_IN_MESSAGE.search(out.message))


def mentions(out: Outcome, field: str) -> bool:
    """The refusal names `field` (in a cause's field, or its message)."""
    fields = [str(c.get("field", "")) for c in out.causes or []]
    return any(field in f or f.endswith(field) for f in fields) or field in out.message


def answered(obj: dict[str, Any]) -> bool:
    """The operator answered: at least one condition, each with a reason and observedGeneration equal
    to the object's generation, and one with a message."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    generation = (obj.get("metadata") or {}).get("generation")
    return (
        bool(conditions)
        and all(c.get("reason") and c.get("observedGeneration") == generation for c in conditions)
        and any(c.get("message") for c in conditions)
    )


class AnswerWatch:
    """One watch over a kind in a namespace, from before the first body is sent: notes every object
    seen answered (so one answered and then deleted — retention — still counts as answered, and one
    deleted before it was answered is caught), and lets the test wait for a set of names."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, plural: str) -> None:
        self.custom, self.ns, self.plural = custom, namespace, plural
        self.answered: set[str] = set()
        self.deleted: set[str] = set()
        self.seen: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AnswerWatch:
        """Begin watching (lists first, so nothing before is missed)."""
        self._thread.start()
        return self

    def _note(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._changed:
            self.seen[name] = obj
            if kind == "DELETED":
                self.deleted.add(name)
            elif answered(obj):
                self.answered.add(name)
            self._changed.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, self.plural)
            for obj in listing["items"]:
                self._note("LISTED", obj)
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.ns,
                    self.plural,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                ):
                    self._note(event["type"], event["object"])
                    if self._stop.is_set():
                        break
            except ApiException as e:
                if e.status != 410:  # 410: the version expired; list again
                    raise
            finally:
                w.stop()

    def wait(self, names: set[str], timeout: float) -> set[str]:
        """Wait until every name was seen answered (or deleted unanswered: that ends its wait too, as a
        failure), or the deadline; the names not answered."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                pending = names - self.answered - self.deleted
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return names - self.answered
                self._changed.wait(remaining)

    def stop(self) -> None:
        """Stop watching (the thread ends with its current watch request)."""
        self._stop.set()


class PhaseClock:
    """Watches Releases in a namespace and notes when each first reached Succeeded (or ended
    otherwise), in a thread, from the moment it starts — for promotions running during the fuzzing."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, names: set[str], timeout: float):
        self.custom, self.ns, self.names, self.timeout = custom, namespace, set(names), timeout
        self.ended: dict[str, tuple[float, str]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PhaseClock:
        """Begin watching."""
        self._thread.start()
        return self

    def _note(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        if name in self.names and name not in self.ended and phase in ("Succeeded", "Failed", "Superseded"):
            self.ended[name] = (time.monotonic(), phase)

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.ended) < len(self.names) and time.monotonic() < deadline:
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "releases")
            for obj in listing["items"]:
                self._note(obj)
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.ns,
                    "releases",
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=max(1, int(deadline - time.monotonic()) + 1),
                ):
                    self._note(event["object"])
                    if len(self.ended) == len(self.names) or time.monotonic() > deadline:
                        break
            except ApiException as e:
                if e.status != 410:
                    raise
            finally:
                w.stop()

    def join(self) -> dict[str, tuple[float, str]]:
        """Wait for the watching to end (every release ended, or the deadline); what ended when."""
        self._thread.join(self.timeout + 30)
        return self.ended


def scrape_passes(op: OperatorProcess) -> dict[tuple[str, str], float]:
    """conveyor_pipeline_passes_total per (namespace, pipeline), from the operator's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError as e:  # (TimeoutError included)
        raise AssertionError(
            f"the operator's metrics endpoint did not answer in 10 s: it is wedged ({e})"
        ) from e
    out: dict[tuple[str, str], float] = {}
    rx = re.compile(r'^conveyor_pipeline_passes_total\{namespace="([^"]*)",pipeline="([^"]*)"\} (\S+)$')
    for line in text.splitlines():
        m = rx.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def ordinary_pipelines(story: Story) -> list[str]:
    """Four pipelines promoting staging -> prod, each its own Deployment, no gate."""
    names = [f"app{i}" for i in range(NORMAL_PIPELINES)]
    for name in names:
        for ns in story.stage_ns.values():
            story.create_deployment(ns, name, replicas=1)
    for name in names:
        for ns in story.stage_ns.values():
            story.wait_deployment_available(ns, name)
        stages = [
            {"name": "staging", "namespace": story.stage_ns["staging"], "rolloutDeadlineSeconds": 90},
            {"name": "prod", "namespace": story.stage_ns["prod"], "rolloutDeadlineSeconds": 90},
        ]
        story.create(
            "pipelines",
            pipeline_dict(name, story.ns, stages=stages, targets=[{"deployment": name, "container": "web"}]),
        )
    return names


def promote(story: Story, pipelines: list[str], tag: str) -> dict[str, float]:
    """Create one release per pipeline as ci-bot; return name -> when it was created (monotonic)."""
    created = {}
    for p in pipelines:
        name = f"{p}-{tag}"
        story.create(
            "releases",
            release_dict(name, pipeline=p, namespace=story.ns, label=f"{p}-{tag}"),
            as_user="ci-bot",
        )
        created[name] = time.monotonic()
    return created


def test_hostile_input_by_the_hundred(story: Story, core: client.CoreV1Api):
    assert story.users_dir is not None, "needs the local control plane's test identities"
    started = time.monotonic()
    fz = make_namespace(core, "hostile")
    fz_stage = make_namespace(core, "hostile-stage")
    fz_drift = make_namespace(core, "hostile-drift")
    try:
        _run(story, fz=fz, fz_stage=fz_stage, fz_drift=fz_drift, started=started)
    finally:
        for ns in (fz, fz_stage, fz_drift):
            core.delete_namespace(ns)


def _run(story: Story, *, fz: str, fz_stage: str, fz_drift: str, started: float) -> None:
    # Given four ordinary pipelines, and in a namespace of its own a pipeline the bodies can name
    # (its stage has no Deployment: its releases wait, saying so), a release of it, and a release of
    # a pipeline that does not exist.
    grant_team_roles(story, fz)
    pipelines = ordinary_pipelines(story)
    admin = story.custom
    admin.create_namespaced_custom_object(
        GROUP,
        VERSION,
        fz,
        "pipelines",
        pipeline_dict("fz", fz, stages=[{"name": "only", "namespace": fz_stage}]),
    )
    for name, pipe in (("fz-rel", "fz"), ("orphan-rel", "gone")):
        admin.create_namespaced_custom_object(
            GROUP, VERSION, fz, "releases", release_dict(name, pipeline=pipe, namespace=fz)
        )
    # A Deployment that differs between two namespaces: parity differences for pipelines over it.
    for ns, env in ((fz_stage, []), (fz_drift, [{"name": "e" * 40, "value": "1"}])):
        story.apps.create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": "drift"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "drift"}},
                    "template": {
                        "metadata": {"labels": {"app": "drift"}},
                        "spec": {
                            "containers": [{"name": "web", "image": "ghcr.io/acme/drift:1", "env": env}]
                        },
                    },
                },
            },
        )
    scope = [story.ns, *story.stage_ns.values(), fz, fz_stage, fz_drift]
    op = OperatorProcess(story.kubeconfig, *[a for ns in scope for a in ("-n", ns)]).start()
    story.operator = op
    op.wait_for_log(r"is alive")
    op.wait_healthy()
    assert op.proc is not None
    pid = op.proc.pid

    # A quiet run first: how long one promotion per ordinary pipeline takes with nothing else going on.
    quiet_created = promote(story, pipelines, "quiet")
    quiet = PhaseClock(admin, story.ns, set(quiet_created), timeout=120).start().join()
    assert {n: p for n, (_, p) in quiet.items()} == dict.fromkeys(quiet_created, "Succeeded"), quiet
    quiet_max = max(quiet[n][0] - t for n, t in quiet_created.items())

    # When hundreds of bodies of each kind go to the API server, while the ordinary pipelines promote
    # (Drawn pipelines may target the ordinary pipelines' Deployments in their stage namespaces: they
    # have no releases, so they never promote, but every change there wakes them too.)
    world = World(
        pipelines=["fz", "gone"],
        releases=["fz-rel", "orphan-rel"],
        namespaces=[fz_stage, *story.stage_ns.values()],
        deployments=pipelines,
        drift=("drift", fz_stage, fz_drift),
    )
    t_draw = time.monotonic()
    cases = {plural: draw_cases(plural, PER_KIND, world, SEED) for plural in PLURALS}
    draw_seconds = time.monotonic() - t_draw
    # Pipelines first: releases, approvals and rollbacks may then name one that exists
    order = [c for plural in PLURALS for c in cases[plural]]
    answers = {p: AnswerWatch(admin, fz, p).start() for p in PLURALS}  # from before the first body
    passes_before = scrape_passes(op)
    t_fuzz = time.monotonic()
    busy_created = promote(story, pipelines, "busy")
    clock = PhaseClock(
        admin, story.ns, {f"{p}-{t}" for p in pipelines for t in ("busy", "mid")}, timeout=120
    ).start()
    apis = {who: (admin if who is None else story.as_user(who)) for who in ("ci-bot", "carol", "alice", None)}
    for api in apis.values():
        api.api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = CLIENT_THREADS * 2
    outcomes: list[Outcome] = []
    half = len(order) // 2
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        first = list(pool.map(lambda ic: send(apis, fz, ic[1], ic[0]), enumerate(order[:half])))
        mid_created = promote(story, pipelines, "mid")  # more promotions, mid-way
        rest = list(pool.map(lambda ic: send(apis, fz, ic[1], ic[0]), enumerate(order[half:], half)))
    outcomes = first + rest
    sent_seconds = time.monotonic() - t_fuzz

    # Then every admitted body is answered with a condition (one watch per kind, all at once)
    admitted = {
        p: {o.case.body["metadata"]["name"] for o in outcomes if o.case.plural == p and o.status == 201}
        for p in PLURALS
    }
    deadline = time.monotonic() + ANSWER_DEADLINE
    unanswered = {p: answers[p].wait(admitted[p], max(0.0, deadline - time.monotonic())) for p in PLURALS}
    for w in answers.values():
        w.stop()
    answer_seconds = time.monotonic() - t_fuzz
    ended = clock.join()
    passes_after = scrape_passes(op)
    window_minutes = (time.monotonic() - t_fuzz) / 60

    # --- the report -------------------------------------------------------------------------------
    report: dict[str, Any] = {
        "seed": SEED,
        "per_kind": PER_KIND,
        "draw_s": round(draw_seconds, 1),
        "send_s": round(sent_seconds, 1),
        "answered_s": round(answer_seconds, 1),
    }
    for p in PLURALS:
        mine = [o for o in outcomes if o.case.plural == p]
        report[p] = {
            "flavours": counts(cases[p]),
            "admitted": sum(o.status == 201 for o in mine),
            "refused": dict(Counter(o.status for o in mine if o.status != 201)),
        }
    # Per started minute: a short run's few passes during a promotion are no rate of hundreds a minute
    # (a hot loop does thousands in seconds).
    rates = {
        k: (passes_after.get(k, 0) - passes_before.get(k, 0)) / max(window_minutes, 1.0) for k in passes_after
    }
    busiest = max(rates.items(), key=lambda kv: kv[1]) if rates else (None, 0.0)
    report["passes_per_minute_max"] = [busiest[0], round(busiest[1], 1)]
    report["pipelines_passing"] = len(rates)
    times = {n: ended[n][0] - t for n, t in {**busy_created, **mid_created}.items() if n in ended}
    report["promotion_s"] = {
        "quiet_max": round(quiet_max, 1),
        "busy_max": round(max(times.values(), default=-1), 1),
    }
    print("\nhostile input:", json.dumps(report, indent=1))
    dump = os.environ.get("CONVEYOR_HOSTILE_DUMP")
    if dump:  # every body's answer, one JSON line each (the bodies themselves: redraw by seed)
        with open(dump, "w") as f:
            for o in outcomes:
                c = o.case
                line = {
                    "kind": c.plural,
                    "name": c.body["metadata"]["name"],
                    "flavour": c.flavour,
                    "label": c.label,
                    "as": o.identity,
                    "status": o.status,
                    "message": o.message[:500],
                    "causes": [x.get("field") for x in o.causes or []],
                }
                f.write(json.dumps(line) + "\n")

    # --- then -------------------------------------------------------------------------------------
    problems: list[str] = []
    for o in outcomes:
        c = o.case
        what = f"{c.plural} [{c.flavour}] {c.label!r} as {o.identity}"
        if o.status == 201:
            if c.expect == "reject":
                problems.append(f"{what}: admitted, but the schema should refuse it (naming {c.field})")
            continue
        if c.expect == "accept":
            problems.append(f"{what}: refused ({o.status}: {o.message[:300]}), but it is valid")
        if not 400 <= o.status < 500:
            problems.append(f"{what}: {o.status} is no refusal: {o.message[:300]}")
        elif o.status in NON_FIELD_REFUSALS:
            continue
        elif not names_a_field(o):
            problems.append(f"{what}: refused ({o.status}) without naming a field: {o.message[:300]}")
        elif c.field and not mentions(o, c.field):
            problems.append(f"{what}: refused ({o.status}) but not naming {c.field}: {o.message[:300]}")
    for p, pending in unanswered.items():
        for name in sorted(pending):
            o = next(o for o in outcomes if o.case.body["metadata"]["name"] == name)
            status = (answers[p].seen.get(name) or {}).get("status")
            if name in answers[p].deleted:
                problems.append(
                    f"{p} {name} [{o.case.flavour}] {o.case.label!r}: deleted before it was answered"
                )
                continue
            problems.append(
                f"{p} {name} [{o.case.flavour}] {o.case.label!r}: admitted but not answered within "
                f"{ANSWER_DEADLINE:.0f}s; spec: {json.dumps(o.case.body.get('spec'))[:200]}; status: "
                f"{json.dumps(status)[:300]}"
            )
    assert op.proc.poll() is None, "the operator process ended"
    assert op.proc.pid == pid, "the operator is not the process started"
    bad_lines = [
        ln
        for ln in op.lines
        if ('"level": "error"' in ln or '"level": "critical"' in ln or "Traceback" in ln)
        and not HANDLED_ERRORS.search(ln)
    ]
    problems += [f"operator log: {ln[:400]}" for ln in bad_lines[:10]]
    if busiest[1] > PASSES_PER_MINUTE_BOUND:
        problems.append(
            f"pipeline {busiest[0]} passed {busiest[1]:.0f} times a minute (bound {PASSES_PER_MINUTE_BOUND})"
        )
    wrong = {
        n: ended.get(n)
        for n in {**busy_created, **mid_created}
        if (ended.get(n) or (0, ""))[1] != "Succeeded"
    }
    if wrong:
        problems.append(f"ordinary releases that did not succeed: {wrong}")
    # On time: within four quiet runs plus the time the API server needs for the bodies themselves.
    bound = 4 * quiet_max + 30
    late = {n: round(t, 1) for n, t in times.items() if t > bound}
    if late:
        problems.append(f"ordinary promotions late (bound {bound:.0f}s, quiet {quiet_max:.1f}s): {late}")
    assert not problems, f"{len(problems)} problems (seed {SEED}, {PER_KIND} per kind):\n" + "\n".join(
        problems[:60]
    )
    budget = 1200 if SOAK else 150
    assert time.monotonic() - started < budget * (PER_KIND / (5000 if SOAK else 500)), "over its time budget"


# --- what the fuzzing found, kept as plain cases ------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "user"), [("releases", "ci-bot"), ("approvals", "carol"), ("rollbacks", "alice")]
)
def test_a_spec_that_is_not_an_object_is_refused_by_the_schema_naming_spec(
    story: Story, plural: str, user: str
):
    """Found: the identity-stamping policy failed on such a body (its JSON patch needs an object) and
    the refusal was the policy's error (403), naming no field. Now the schema refuses it: 422, spec."""
    for spec in ("x", [1], 5, None):
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": plural[:-1].capitalize(),
            "metadata": {"name": "odd"},
            "spec": spec,
        }
        with pytest.raises(ApiException) as err:
            story.create(plural, body, as_user=user)
        assert err.value.status == 422, (spec, err.value.body)
        data = json.loads(err.value.body)
        assert [c.get("field") for c in data["details"]["causes"]][:1] == ["spec"], (spec, data)
        assert "policy" not in data["message"], (spec, data["message"])


def test_an_approval_of_a_release_whose_pipeline_is_missing_is_answered_and_heals(story: Story):
    """Found: such an Approval was never answered (no pipeline's pass judges it, and its release
    exists, so it was no orphan either)."""
    story.given_operator()
    story.when_release("lost", pipeline="gone", label="lost")
    story.when_approved("lost", "prod", name="lost-prod")
    appr = story.then_condition(
        "approvals", "lost-prod", "Counted", status="False", reason="PipelineNotFound"
    )
    assert "'gone'" in appr["status"]["conditions"][0]["message"]
    # The pipeline appears: its pass judges the approval, and the condition says what it says now.
    story.given_pipeline("gone")
    story.then_release_phase("lost", "Waiting", timeout=60)
    wait_for_object(
        story.lister("approvals"),
        "lost-prod",
        lambda o: (
            o is not None and (condition(o, "Counted") or {}).get("reason") not in (None, "PipelineNotFound")
        ),
        what="approval lost-prod judged by pipeline gone's pass",
        timeout=60,
    )


def test_a_commit_time_that_is_not_a_time_string_is_refused_naming_it(story: Story):
    """Found: under `format: date-time` the API server admitted `commitTime: [{}]` (a list), and the
    Release it stored could never be read by Conveyor (never answered)."""
    for value in ([{}], [], ["2026-11-27T05:00:00Z"], "2026-11-27T05:00:00", "yesterday"):
        body = release_dict("odd", namespace=story.ns)
        body["spec"]["source"]["commitTime"] = value
        with pytest.raises(ApiException) as err:
            story.create("releases", body, as_user="ci-bot")
        assert err.value.status == 422, (value, err.value.body)
        fields = [c.get("field") for c in json.loads(err.value.body)["details"]["causes"]]
        assert "spec.source.commitTime" in fields, (value, fields)
    body = release_dict("fine", namespace=story.ns)
    body["spec"]["source"]["commitTime"] = "2026-11-27T05:00:00.123+01:00"
    assert (
        story.create("releases", body, as_user="ci-bot")["spec"]["source"]["commitTime"]
        == "2026-11-27T05:00:00.123+01:00"
    )


def test_every_job_a_stored_pipeline_asks_for_is_one_the_api_server_admits(story: Story):
    """A Pipeline's Job templates are checked by its schema; the Jobs Conveyor builds from them are
    checked by the API server only when a release reaches the step — a refusal then would hold the
    release mid-stage, retrying for ever. So: every template the schema admits makes a Job the API
    server admits (a server-side dry run), or the schema must refuse the template, naming its field."""
    count = 2000 if SOAK else 300
    ns = story.stage_ns["staging"]
    release = Release.model_validate(
        {
            **release_dict("r1", namespace=story.ns),
            "metadata": {"name": "r1", "namespace": story.ns, "uid": "u-1"},
        }
    )
    kube = Kube(story.api)  # raw requests: the typed client would judge the body before the API server
    problems, admitted = [], 0
    for i, template in enumerate(job_templates(count, SEED)):
        body = pipeline_dict(
            f"jobs-{i}", story.ns, stages=[{"name": "staging", "namespace": ns}], migration=template
        )
        try:
            stored = story.create("pipelines", body)
        except ApiException as e:
            out = Outcome(Case("pipelines", "hostile", "job template", body), "admin", e.status, str(e.body))
            data = json.loads(e.body or "{}")
            out.message, out.causes = str(data.get("message", "")), (data.get("details") or {}).get("causes")
            if not names_a_field(out):
                problems.append(
                    f"template {json.dumps(template)[:200]} refused without a field: {out.message[:200]}"
                )
            continue
        admitted += 1
        try:
            pipeline = Pipeline.model_validate(stored)
        except ValidationError as e:  # the schema and the model disagree: stored, and unreadable
            problems.append(
                f"template {json.dumps(template)[:200]}: stored, but the model refuses it: {e}"[:600]
            )
            continue
        manifest = job_manifest(pipeline, release, pipeline.spec.stages[0], JobKind.MIGRATION)
        try:
            kube.request(
                "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", query={"dryRun": "All"}, body=manifest
            )
        except ApiException as e:
            message = json.loads(e.body or "{}").get("message", str(e.body))
            problems.append(
                f"template {json.dumps(template)[:300]}: the Job is refused ({e.status}): {message[:300]}"
            )
    print(f"\njob templates: {count} drawn, {admitted} admitted as Pipelines, {len(problems)} problems")
    assert admitted > count // 10, "too few templates admitted to say anything"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
