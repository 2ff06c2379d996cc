"""What `tests/e2e/test_hostile_input.py` (hypothesis bodies by the hundred on the real API server)
found, kept as plain regressions that need no cluster."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.api.admission import MUTATING_POLICY, SPEC_IS_AN_OBJECT, admission_policies
from conveyor.api.common import DNS_SUBDOMAIN
from conveyor.api.crd import KINDS, crd
from conveyor.api.pipeline import LABEL_KEY, LABEL_VALUE, JobTemplate, Retention
from conveyor.api.release import DECLARED_TIME, Phase, Release
from conveyor.core.approval_views import unknown_release_approval
from conveyor.core.conditions import unreadable_conditions
from conveyor.core.jobs import JobKind, job_manifest
from conveyor.core.parity import path_matches
from conveyor.core.plan import DeleteRelease
from conveyor.core.promotion import reconcile
from conveyor.handlers.reconcile import _parse
from support.builders import T0, approval, later, pipeline, release, release_dict, retention_pass, world


def test_an_approval_of_a_release_whose_pipeline_is_missing_says_so():
    """Found: an Approval naming a Release that exists but whose Pipeline does not was never answered
    (the release's pipeline has no worker, and the Approval was not an orphan either)."""
    a = approval("a1", "orphan-rel", "prod")
    status = unknown_release_approval(a, T0 + timedelta(seconds=5), missing_pipeline="gone")
    (counted,) = status.conditions
    assert (counted.type, counted.status, counted.reason) == ("Counted", "False", "PipelineNotFound")
    assert "'orphan-rel'" in counted.message
    assert "'gone'" in counted.message
    assert counted.observed_generation == status.observed_generation == a.metadata.generation
    assert status.counted is False


def test_an_approval_of_a_missing_release_still_says_unknown_release():
    status = unknown_release_approval(approval("a1", "nobody", "prod"), T0)
    assert status.conditions[0].reason == "UnknownRelease"


def test_the_stamping_policy_skips_a_spec_that_is_not_an_object():
    """Found: `"spec": "x"` (or a list, a number, null) made the identity-stamping policy's JSON patch
    fail, so the API server refused the body with the policy's error, naming no field. Skipped, such
    a body reaches the schema, which refuses it naming spec (checked on the real API server in
    tests/e2e/test_hostile_input.py)."""
    mutating = next(
        p
        for p in admission_policies()
        if p["kind"] == "MutatingAdmissionPolicy" and p["metadata"]["name"] == MUTATING_POLICY
    )
    assert mutating["spec"]["matchConditions"] == [
        {"name": "spec-is-an-object", "expression": SPEC_IS_AN_OBJECT}
    ]
    assert "type(object.spec) == map" in SPEC_IS_AN_OBJECT
    assert "has(object.spec)" in SPEC_IS_AN_OBJECT


def release_with_commit_time(value: object) -> dict:
    body = release_dict("r1")
    body["spec"]["source"]["commitTime"] = value
    body["metadata"].update(uid="u1", generation=1)
    return body


def test_a_declared_commit_time_the_pattern_admits_but_no_datetime_holds_is_dropped():
    """Found: `commitTime` was `format: date-time`, under which the API server admits a list; such a
    Release could never be read. Now a pattern (type string, offset required) refuses what it can;
    what it admits but is no date (30 February) is dropped, not fatal: it is declared, not verified."""
    rx = re.compile(DECLARED_TIME)
    assert rx.match("2026-11-27T05:00:00+01:00")
    assert rx.match("2026-11-27T05:00:00.123456789Z")
    assert not rx.match("2026-11-27T05:00:00")  # no offset: no instant
    assert not rx.match("2026-11-27 05:00:00Z")
    assert rx.match("2026-02-30T00:00:00Z")
    assert (
        Release.model_validate(release_with_commit_time("2026-02-30T00:00:00Z")).spec.source.commit_time
        is None
    )
    parsed = Release.model_validate(
        release_with_commit_time("2026-11-27T05:00:00+01:00")
    ).spec.source.commit_time
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(hours=1)


def test_a_commit_time_stored_without_an_offset_is_taken_as_utc():
    """Stored before the pattern: a naive datetime would break lead-time arithmetic (aware - naive)."""
    parsed = Release.model_validate(release_with_commit_time("2026-11-27T05:00:00")).spec.source.commit_time
    assert parsed == datetime(2026, 11, 27, 5, tzinfo=UTC)


def test_the_crd_says_commit_time_is_a_string_with_a_pattern_not_a_format():
    props = crd(next(k for k in KINDS if k.plural == "releases"))["spec"]["versions"][0]["schema"]
    commit_time = props["openAPIV3Schema"]["properties"]["spec"]["properties"]["source"]["properties"][
        "commitTime"
    ]
    assert commit_time["type"] == "string"
    assert commit_time["pattern"] == DECLARED_TIME
    assert "format" not in commit_time


def test_an_object_conveyor_cannot_read_is_answered_invalid_spec_and_once():
    """An admitted object that does not validate is told so on itself (it was skipped in silence:
    admitted, never answered); the same error again changes nothing (no write, no loop)."""
    now = T0 + timedelta(minutes=1)
    first = unreadable_conditions(
        "releases", [], "spec.source.commitTime: Input should be a valid datetime", generation=3, now=now
    )
    (ready,) = first
    assert (ready.type, ready.status, ready.reason, ready.observed_generation) == (
        "Ready",
        "False",
        "InvalidSpec",
        3,
    )
    assert "commitTime" in ready.message
    again = unreadable_conditions(
        "releases",
        first,
        "spec.source.commitTime: Input should be a valid datetime",
        generation=3,
        now=now + timedelta(seconds=5),
    )
    assert [c.wire() for c in again] == [c.wire() for c in first]
    assert unreadable_conditions("approvals", [], "x", generation=1, now=now)[0].type == "Counted"


def test_an_unreadable_release_is_patched_with_its_condition_on_its_resource_version():
    class FakeKube:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def patch_custom_status(self, plural, namespace, name, patch, resource_version=None):
            self.calls.append((plural, namespace, name, patch, resource_version))
            return {
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": "8"},
                "status": patch,
            }

    body = release_with_commit_time([{}])
    body["metadata"]["resourceVersion"] = "7"
    kube = FakeKube()
    assert _parse(Release, body, kube) is None
    ((plural, ns, name, patch, rv),) = kube.calls
    assert (plural, ns, name, rv) == ("releases", "apps", "r1", "7")
    assert patch["observedGeneration"] == 1
    assert patch["conditions"][0]["reason"] == "InvalidSpec"
    assert "spec.source.commitTime" in patch["conditions"][0]["message"]
    # read again with that condition on it: nothing more to say
    body["status"] = patch
    assert _parse(Release, body, kube) is None
    assert len(kube.calls) == 1


def _regex_matches(path: str, pattern: str) -> bool:
    """The old definition (a regex), still the meaning: `*` matches anything, the rest literally."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), path) is not None


@settings(max_examples=400, deadline=None, database=None)
@given(
    path=st.text(alphabet="ab[].*", max_size=12),
    pattern=st.text(alphabet="ab[].*", max_size=8),
)
def test_parity_ignore_patterns_mean_what_they_meant(path: str, pattern: str):
    assert path_matches(path, pattern) == _regex_matches(path, pattern)


def test_a_parity_ignore_pattern_of_many_stars_is_matched_in_linear_time():
    """Found: `*e*e*e…*X` as a regex backtracks exponentially on a path with more e's than stars, and
    Python's regex engine holds the GIL meanwhile: one Pipeline carrying it froze the whole operator
    (every pipeline, and its metrics and health endpoints) for as long as the match ran."""
    path = "deployment[shop].containers[web].env[" + "e" * 200 + "]"
    pattern = "*e" * 100 + "X"  # shorter than the path (a longer one a regex rules out at once)
    started = time.monotonic()
    for _ in range(100):
        assert not path_matches(path, pattern)
    assert path_matches(path, "*e" * 100 + "*")
    assert time.monotonic() - started < 1.0


def _migration_schema() -> dict:
    kind = next(k for k in KINDS if k.plural == "pipelines")
    spec = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"]["migration"]


def test_job_templates_are_shaped_as_the_api_server_judges_a_pod():
    """Found (tests/e2e/test_hostile_input.py, a dry run of the Job of every drawn template): the schema
    admitted templates whose Jobs the API server refuses — label keys and values, a ServiceAccount or
    Secret name that is no DNS name, valueFrom with both or no source, envFrom with neither ref,
    quantities that are none, claims (a Conveyor Job has no resourceClaims). Such a Pipeline held its
    release mid-stage, its Job create retried for ever."""
    m = _migration_schema()["properties"]
    rules = " ".join(
        r["rule"] for r in _migration_schema()["properties"]["labels"]["x-kubernetes-validations"]
    )
    assert "k.matches(" in rules
    assert m["labels"]["additionalProperties"]["pattern"] == LABEL_VALUE
    assert m["serviceAccountName"]["pattern"] == DNS_SUBDOMAIN
    assert "claims" not in m["resources"]["properties"]
    assert m["envFrom"]["items"]["properties"]["secretRef"]["required"] == ["name"]
    value_from = m["env"]["items"]["properties"]["valueFrom"]
    assert (value_from["minProperties"], value_from["maxProperties"]) == (1, 1)
    assert value_from["properties"]["secretKeyRef"]["required"] == ["name", "key"]
    env_rules = [r["rule"] for r in m["env"]["items"]["x-kubernetes-validations"]]
    assert any("self.value == ''" in r for r in env_rules)
    assert any(
        "isQuantity" in r["rule"] for r in m["resources"]["properties"]["limits"]["x-kubernetes-validations"]
    )
    assert re.match(LABEL_KEY, "app.kubernetes.io/part-of")
    assert re.match(LABEL_KEY, "team")
    assert not re.match(LABEL_KEY, "a b")
    assert not re.match(LABEL_KEY, "x" * 64)
    assert re.match(LABEL_VALUE, "")
    assert not re.match(LABEL_VALUE, "-x")


def test_a_resource_field_ref_names_no_container_in_the_job():
    """The Job has one container, the default: a containerName that is not its name gets it refused."""
    template = {
        "command": ["/app/migrate"],
        "env": [
            {
                "name": "CPU",
                "valueFrom": {"resourceFieldRef": {"containerName": "web", "resource": "limits.cpu"}},
            }
        ],
    }
    p = pipeline(migration=template)
    manifest = job_manifest(p, release("r1"), p.spec.stages[0], JobKind.MIGRATION)
    (env,) = [e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "CPU"]
    assert env == {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}


def test_a_release_is_answered_before_retention_deletes_it():
    """Found (2,000 bodies per kind, ~500 releases on one pipeline): releases beyond keepReleases that
    were superseded in the pass that first saw them were deleted in that same pass — their status
    write then met a 404 — so they vanished unanswered. Now retention takes only what ended on the
    record in an earlier pass."""
    p = pipeline()
    p = p.model_copy(update={"spec": p.spec.model_copy(update={"retention": Retention(keep_releases=1)})})
    burst = [release(f"r{i}", created=later(i), label=f"r{i}") for i in range(4)]
    plan = reconcile(p, burst, [], world(), later(10))
    assert not [a for a in plan.actions if isinstance(a, DeleteRelease)]
    assert {n for n, st in plan.releases.items() if st.phase == Phase.SUPERSEDED} == {"r0", "r1", "r2"}
    assert all(st.conditions for st in plan.releases.values())
    # the next pass, with those ends on the record: now they go
    recorded = [r.model_copy(update={"status": plan.releases[r.metadata.name]}) for r in burst]
    again = retention_pass(p, recorded, [], world(), later(20))
    deleted = sorted(a.release for a in again.actions if isinstance(a, DeleteRelease))
    assert deleted == ["r0", "r1", "r2"]


def test_a_job_image_pattern_means_the_same_to_the_api_server_and_to_the_model():
    """Found by `make soak`: the image pattern `^\\S*$` admitted a vertical tab on the API server (RE2's
    `\\s` has none) that the model refused — a stored Pipeline Conveyor could not read. Explicit
    ranges mean the same to both."""
    pattern = _migration_schema()["properties"]["image"]["pattern"]
    assert pattern == r"^[\x21-\x7e]*$"
    for image in ("\x0bl", "a b", "\u2000x", "ghcr.io/acme/shop\n"):
        assert not re.fullmatch(pattern[1:-1], image)  # (Python's `$` would allow a final newline)
        with pytest.raises(ValidationError):
            JobTemplate(image=image)
    assert JobTemplate(image="ghcr.io/acme/shop@sha256:" + "a" * 64).image
