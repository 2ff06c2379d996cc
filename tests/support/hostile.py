"""Hostile input by the hundred (issue #12): hypothesis strategies for bodies of every Conveyor kind.

Each strategy draws a `Case`: a body to create, the flavour it belongs to, a label saying what was
done to it, and what the test may expect of it.

- **valid** — drawn from the pydantic models' constraints (patterns, lengths, ranges, enums) and the
  CEL rules next to them (unique stage names and namespaces, literal values only under names that do
  not look like credentials). The API server must admit it.
- **invalid** — a valid body with exactly one field off: a digest of 63 hex, a SHA of 39, a duplicate
  stage, a number out of range, a wrong enum, an unknown field (sent with strict field validation).
  The API server must refuse it and name that field — or, for what only the cluster can judge (a
  stage naming a namespace that does not exist, an Approval of a release that does not exist), admit
  it, and the operator must answer it with a condition.
- **hostile** — a valid body with one value anywhere in it replaced by something nasty: strings near
  and over their limits and up to megabytes, RTL / zero-width / emoji / NUL / lone surrogates, deeply
  nested objects, wrong JSON types, boundary numbers (2**31, 2**63, -1, 0, floats), empty and huge
  lists and maps — or a body drawn from the generated CRD schema itself, every field at random.
  Either answer is fine, as long as it is a field-level refusal or a condition.

Draws are seeded (`draw_cases`), so a run is reproduced by its seed and count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from conveyor.api.common import DNS_LABEL, DNS_SUBDOMAIN, GROUP, VERSION
from conveyor.api.crd import KINDS, crd
from conveyor.api.pipeline import CREDENTIAL_NAME
from conveyor.api.release import DECLARED_TIME


def uniform(items: list[Any]) -> st.SearchStrategy[Any]:
    """One of `items`, each about as likely as the others. (`sampled_from` prefers the first ones
    while generating, so a long list of mutations would see its tail rarely; a wide integer modulo
    the length spreads the picks, and stays reproducible by seed.)"""
    return st.integers(0, 2**32 - 1).map(lambda i: items[i % len(items)])


KIND_OF = {"pipelines": "Pipeline", "releases": "Release", "approvals": "Approval", "rollbacks": "Rollback"}
PLURALS = tuple(KIND_OF)


@dataclass
class World:
    """Names the bodies may point at, so that some of them point at something real.

    `pipelines`: Pipelines that exist in the namespace the bodies go to; `releases`: Releases that
    exist there; `namespaces`: stage namespaces that exist (the others drawn do not) — among them
    other pipelines' stages, whose `deployments` a drawn Pipeline may then target too."""

    pipelines: list[str] = field(default_factory=lambda: ["fz"])
    releases: list[str] = field(default_factory=lambda: ["fz-rel", "orphan-rel"])
    namespaces: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=lambda: ["shop"])  # Deployments that exist there
    # A Deployment that differs between two namespaces (deployment, namespace a, namespace b): a
    # Pipeline over it has parity differences, so its `parity.ignore` patterns are matched.
    drift: tuple[str, str, str] | None = None


@dataclass
class Case:
    """One body to send, and what may be expected of it."""

    plural: str
    flavour: str  # valid | invalid | hostile
    label: str  # what was done to the body, for failure messages and counts
    body: dict[str, Any]
    # "accept": must be admitted; "reject": must be refused; "either": a field-level refusal or a
    # condition, whichever the API server chooses.
    expect: str = "either"
    field: str | None = None  # for "reject": the field the refusal must name
    strict: bool = False  # send with fieldValidation=Strict (unknown fields are refused, not pruned)
    base: dict[str, Any] | None = None  # the valid spec a field is taken off of (invalid cases)


def one_field_off(case: Case, mutation: Mutation) -> None:
    """Apply `mutation` to the case's valid spec: its label, body, and the field a refusal must name."""
    label, path, value, fld = mutation
    assert case.base is not None
    if callable(value):
        value = value(case.base)
    case.label, case.field = label, fld
    case.strict = label.startswith("unknown field")
    case.body = _body(case.plural, _set(case.base, path, value) if path else value)


# --- small pieces ------------------------------------------------------------------------------------

HEX = "0123456789abcdef"
dns_label = st.from_regex(DNS_LABEL, fullmatch=True).filter(lambda s: 0 < len(s) <= 30)
dns_label63 = st.from_regex(DNS_LABEL, fullmatch=True).filter(lambda s: 0 < len(s) <= 63)
dns_subdomain = st.from_regex(DNS_SUBDOMAIN, fullmatch=True).filter(lambda s: 0 < len(s) <= 63)
sha = st.text(HEX, min_size=40, max_size=40)
digest = st.text(HEX, min_size=64, max_size=64).map(lambda h: f"sha256:{h}")
env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: not __import__("re").match(CREDENTIAL_NAME, n) and not n.startswith("CONVEYOR_")
)
# Printable text from every plane, including the characters that break renderers and terminals.
NASTY_CHARS = "\u202e\u202d\u200f\u200b\u200d\ufeff\u2028\u0000\u0007\x1b\ud83d\ude00\U0001f525\u0301"
text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(list(NASTY_CHARS))), max_size=60
)


def bounded_text(limit: int) -> st.SearchStrategy[str]:
    """Text within `limit` characters (sometimes exactly at it)."""
    return st.one_of(text.map(lambda s: s[:limit]), st.builds(lambda c: c * limit, st.sampled_from("aé😀")))


image_repository = st.builds(
    lambda host, parts: "/".join([host, *parts]),
    st.sampled_from(["ghcr.io", "registry.example.com:5000", "docker.io", "localhost"]),
    st.lists(st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True), min_size=1, max_size=3),
)


def _meta(kind: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND_OF[kind], "metadata": {}}


# --- valid bodies -----------------------------------------------------------------------------------


def job_template() -> st.SearchStrategy[dict[str, Any]]:
    """A migration / smoke-test Job template within every bound (with a command: a template with no
    command, args or image of its own is refused — it would run the application itself)."""
    return st.fixed_dictionaries(
        {"command": st.lists(bounded_text(200), min_size=1, max_size=4)},
        optional={
            "args": st.lists(bounded_text(200), max_size=4),
            "env": st.lists(
                st.one_of(
                    st.builds(lambda n, v: {"name": n, "value": v}, env_name, bounded_text(100)),
                    st.builds(
                        lambda n: {
                            "name": f"{n}_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}},
                        },
                        env_name,
                    ),
                ),
                max_size=4,
                unique_by=lambda e: e["name"],
            ),
            "deadlineSeconds": st.integers(1, 86400),
            "backoffLimit": st.integers(0, 10),
            "serviceAccountName": dns_label,
            "labels": st.dictionaries(dns_label, dns_label, max_size=3),
        },
    )


def stages(world: World) -> st.SearchStrategy[list[dict[str, Any]]]:
    """1-4 stages with unique names and unique namespaces (some existing, some not)."""
    namespace = st.one_of(st.sampled_from(world.namespaces or ["nowhere"]), dns_label63)
    stage = st.fixed_dictionaries(
        {"name": dns_label, "namespace": namespace},
        optional={
            "requiresApproval": st.booleans(),
            "rolloutDeadlineSeconds": st.integers(5, 3600),
            "smokeTestDeadlineSeconds": st.integers(5, 86400),
            "onFailure": st.sampled_from(["hold", "rollback"]),
            "variables": st.dictionaries(env_name, bounded_text(200), max_size=4),
            "approval": st.fixed_dictionaries(
                {},
                optional={
                    "minApprovals": st.integers(1, 10),
                    "fourEyes": st.booleans(),
                    "expiresAfterSeconds": st.integers(1, 2**31 - 1),
                    "approvers": st.fixed_dictionaries(
                        {}, optional={"users": st.lists(bounded_text(80), max_size=3)}
                    ),
                },
            ),
        },
    )
    return st.lists(stage, min_size=1, max_size=4, unique_by=(lambda s: s["name"], lambda s: s["namespace"]))


def valid_pipeline(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """A Pipeline spec the API server admits."""
    return st.fixed_dictionaries(
        {
            "imageRepository": image_repository,
            "targets": st.lists(
                st.fixed_dictionaries(
                    {
                        "deployment": st.one_of(st.sampled_from(world.deployments), dns_subdomain),
                        "container": st.one_of(st.just("web"), dns_label),
                    }
                ),
                min_size=1,
                max_size=3,
            ),
            "stages": stages(world),
        },
        optional={
            "migration": job_template(),
            "smokeTest": job_template(),
            "downMigration": job_template(),
            "retention": st.fixed_dictionaries(
                {},
                optional={
                    "keepReleases": st.integers(1, 10000),
                    "vetoedSeconds": st.integers(0, 10**9),
                    "finishedJobsSeconds": st.integers(0, 30 * 24 * 3600),
                },
            ),
            "parity": st.fixed_dictionaries(
                {},
                optional={
                    "policy": st.sampled_from(["enforce", "warn", "off"]),
                    "ignore": st.lists(bounded_text(100), max_size=3),
                    "intervalSeconds": st.integers(10, 10**6),
                },
            ),
        },
    )


def valid_release(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """A Release spec the API server admits (for a pipeline that exists, or one that does not)."""
    return st.fixed_dictionaries(
        {
            "pipeline": st.one_of(st.sampled_from(world.pipelines), dns_label63),
            "commit": sha,
            "digest": digest,
        },
        optional={
            "schemaChange": st.sampled_from(["none", "backwardCompatible", "breaking"]),
            "targetStage": dns_label,
            "source": st.fixed_dictionaries(
                {},
                optional={
                    "repository": bounded_text(512),
                    "author": bounded_text(256),
                    "ciRunId": bounded_text(128),
                    "ciRunUrl": bounded_text(1024),
                    "commitTime": st.from_regex(DECLARED_TIME, fullmatch=True),
                },
            ),
        },
    )


def valid_approval(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """An Approval spec the API server admits (of a release that exists, or not)."""
    return st.fixed_dictionaries(
        {"release": st.one_of(st.sampled_from(world.releases), dns_label63), "stage": dns_label},
        optional={
            "releaseUID": st.uuids().map(str),
            "digest": digest,
            "comment": bounded_text(1024),
            "reviewedBy": bounded_text(512),
        },
    )


def valid_rollback(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """A Rollback spec the API server admits (of a pipeline that exists, or not)."""
    return st.fixed_dictionaries(
        {"pipeline": st.one_of(st.sampled_from(world.pipelines), dns_label63)},
        optional={
            "stage": dns_label,
            "toRelease": st.one_of(st.sampled_from(world.releases), dns_label63),
            "reason": bounded_text(1024),
            "verify": st.booleans(),
        },
    )


VALID: dict[str, Callable[[World], st.SearchStrategy[dict[str, Any]]]] = {
    "pipelines": valid_pipeline,
    "releases": valid_release,
    "approvals": valid_approval,
    "rollbacks": valid_rollback,
}


def _body(plural: str, spec: Any) -> dict[str, Any]:
    return {**_meta(plural), "spec": spec}


# --- one field off ----------------------------------------------------------------------------------

# (label, path, value, the field a refusal must name). A path is a list of keys / indexes; `None` as a
# value deletes the field. Each applies to a valid spec of its kind.
Mutation = tuple[str, list[Any], Any, str]
DELETE = object()


def _set(obj: Any, path: list[Any], value: Any) -> Any:
    """`obj` with the value at `path` replaced (DELETE: removed); missing maps on the way are made."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        out = list(obj)
        out[head] = _set(out[head], rest, value)
        return out
    out = dict(obj) if isinstance(obj, dict) else {}
    if value is DELETE and not rest:
        out.pop(head, None)
    else:
        out[head] = _set(out.get(head), rest, value)
    return out


def invalid_mutations(plural: str) -> list[Mutation]:
    """One field off, per kind: what the schema can judge (and names), and must refuse. A value may be
    a function of the valid spec it replaces a field of (a commit one character short)."""
    common: list[Mutation] = [
        ("wrong type: spec is a string", [], "spec", "spec"),
        ("wrong type: spec is a list", [], [1, 2], "spec"),
    ]
    per_kind: dict[str, list[Mutation]] = {
        "releases": [
            ("commit of 39 hex", ["commit"], lambda spec: spec["commit"][:39], "spec.commit"),
            ("commit of 41 hex", ["commit"], lambda spec: spec["commit"] + "a", "spec.commit"),
            (
                "commit in upper case",
                ["commit"],
                lambda spec: "F" + spec["commit"][1:].upper(),
                "spec.commit",
            ),
            ("digest of 63 hex", ["digest"], lambda spec: spec["digest"][:-1], "spec.digest"),
            ("digest of 65 hex", ["digest"], lambda spec: spec["digest"] + "0", "spec.digest"),
            *[
                ("digest is a tag", ["digest"], "latest", "spec.digest"),
                ("digest is repo:tag", ["digest"], "ghcr.io/acme/shop:v1", "spec.digest"),
                ("digest sha512", ["digest"], "sha512:" + "a" * 64, "spec.digest"),
                ("digest upper hex", ["digest"], "sha256:" + "A" * 64, "spec.digest"),
                ("no digest", ["digest"], DELETE, "spec.digest"),
                ("no commit", ["commit"], DELETE, "spec.commit"),
                ("no pipeline", ["pipeline"], DELETE, "spec.pipeline"),
                ("pipeline in upper case", ["pipeline"], "Shop", "spec.pipeline"),
                ("pipeline of 64 characters", ["pipeline"], "p" * 64, "spec.pipeline"),
                ("schemaChange not an enum value", ["schemaChange"], "drop-tables", "spec.schemaChange"),
                ("schemaChange wrong case", ["schemaChange"], "Breaking", "spec.schemaChange"),
                ("targetStage of 31 characters", ["targetStage"], "s" * 31, "spec.targetStage"),
                ("commit is a number", ["commit"], 1234567, "spec.commit"),
                ("source.author of 257", ["source", "author"], "a" * 257, "spec.source.author"),
                (
                    "source.commitTime without an offset",
                    ["source", "commitTime"],
                    "2026-11-27T05:00:00",
                    "spec.source.commitTime",
                ),
                (
                    "source.commitTime a list",
                    ["source", "commitTime"],
                    [{}],
                    "spec.source.commitTime",
                ),
                (
                    "source.commitTime not a time",
                    ["source", "commitTime"],
                    "yesterday",
                    "spec.source.commitTime",
                ),
                ("source is a list", ["source"], ["x"], "spec.source"),
                ("unknown field", ["deployNow"], True, "deployNow"),
                (
                    "requester forged",
                    ["requester"],
                    {"username": "root", "groups": ["system:masters"]},
                    "spec.requester",
                ),
            ],
        ],
        "pipelines": [
            *[
                (
                    "duplicate stage name",
                    ["stages"],
                    [{"name": "a", "namespace": "n1"}, {"name": "a", "namespace": "n2"}],
                    "spec.stages[1]",
                ),
                (
                    "two stages in one namespace",
                    ["stages"],
                    [{"name": "a", "namespace": "n1"}, {"name": "b", "namespace": "n1"}],
                    "spec.stages",
                ),
                ("no stages", ["stages"], [], "spec.stages"),
                ("no targets", ["targets"], [], "spec.targets"),
                ("stage name in upper case", ["stages", 0, "name"], "Prod_1", "spec.stages[0].name"),
                ("stage name of 31", ["stages", 0, "name"], "s" * 31, "spec.stages[0].name"),
                (
                    "stage namespace of 64",
                    ["stages", 0, "namespace"],
                    "n" * 64,
                    "spec.stages[0].namespace",
                ),
                (
                    "rolloutDeadlineSeconds -1",
                    ["stages", 0, "rolloutDeadlineSeconds"],
                    -1,
                    "spec.stages[0].rolloutDeadlineSeconds",
                ),
                (
                    "rolloutDeadlineSeconds 2**31",
                    ["stages", 0, "rolloutDeadlineSeconds"],
                    2**31,
                    "spec.stages[0].rolloutDeadlineSeconds",
                ),
                (
                    "rolloutDeadlineSeconds 2**63",
                    ["stages", 0, "rolloutDeadlineSeconds"],
                    2**63,
                    "spec.stages[0].rolloutDeadlineSeconds",
                ),
                (
                    "rolloutDeadlineSeconds 4.5",
                    ["stages", 0, "rolloutDeadlineSeconds"],
                    4.5,
                    "spec.stages[0].rolloutDeadlineSeconds",
                ),
                (
                    "rolloutDeadlineSeconds a string",
                    ["stages", 0, "rolloutDeadlineSeconds"],
                    "60",
                    "spec.stages[0].rolloutDeadlineSeconds",
                ),
                (
                    "minApprovals 0",
                    ["stages", 0, "approval", "minApprovals"],
                    0,
                    "spec.stages[0].approval.minApprovals",
                ),
                (
                    "minApprovals 11",
                    ["stages", 0, "approval", "minApprovals"],
                    11,
                    "spec.stages[0].approval.minApprovals",
                ),
                (
                    "requiresApproval a string",
                    ["stages", 0, "requiresApproval"],
                    "yes",
                    "spec.stages[0].requiresApproval",
                ),
                (
                    "onFailure not an enum value",
                    ["stages", 0, "onFailure"],
                    "explode",
                    "spec.stages[0].onFailure",
                ),
                (
                    "credential-looking stage variable",
                    ["stages", 0, "variables"],
                    {"DB_PASSWORD": "hunter2"},
                    "spec.stages[0].variables",
                ),
                (
                    "variable name not an env name",
                    ["stages", 0, "variables"],
                    {"1-BAD": "x"},
                    "spec.stages[0].variables",
                ),
                (
                    "imageRepository with a tag",
                    ["imageRepository"],
                    "ghcr.io/acme/shop:latest",
                    "spec.imageRepository",
                ),
                (
                    "imageRepository in upper case",
                    ["imageRepository"],
                    "GHCR.io/Acme",
                    "spec.imageRepository",
                ),
                (
                    "target container of 64",
                    ["targets", 0, "container"],
                    "c" * 64,
                    "spec.targets[0].container",
                ),
                (
                    "literal credential in a Job env",
                    ["smokeTest", "env"],
                    [{"name": "API_TOKEN", "value": "t"}],
                    "spec.smokeTest.env[0]",
                ),
                ("65 command items", ["migration", "command"], ["x"] * 65, "spec.migration.command"),
                (
                    "command item of 4097",
                    ["migration", "command"],
                    ["x" * 4097],
                    "spec.migration.command[0]",
                ),
                ("backoffLimit 11", ["migration", "backoffLimit"], 11, "spec.migration.backoffLimit"),
                ("keepReleases 0", ["retention", "keepReleases"], 0, "spec.retention.keepReleases"),
                ("parity policy not an enum value", ["parity", "policy"], "maybe", "spec.parity.policy"),
                ("parity interval 9", ["parity", "intervalSeconds"], 9, "spec.parity.intervalSeconds"),
                ("unknown field", ["autoDeploy"], True, "autoDeploy"),
                ("unknown field in a stage", ["stages", 0, "canary"], 10, "canary"),
            ]
        ],
        "approvals": [
            ("digest of 63 hex", ["digest"], "sha256:" + "a" * 63, "spec.digest"),
            *[
                ("no release", ["release"], DELETE, "spec.release"),
                ("no stage", ["stage"], DELETE, "spec.stage"),
                ("stage of 31", ["stage"], "s" * 31, "spec.stage"),
                ("stage in upper case", ["stage"], "Prod", "spec.stage"),
                ("release of 64", ["release"], "r" * 64, "spec.release"),
                ("releaseUID of 65", ["releaseUID"], "u" * 65, "spec.releaseUID"),
                ("digest a tag", ["digest"], "latest", "spec.digest"),
                ("comment of 1025", ["comment"], "c" * 1025, "spec.comment"),
                ("reviewedBy of 513", ["reviewedBy"], "r" * 513, "spec.reviewedBy"),
                ("comment is a map", ["comment"], {"a": 1}, "spec.comment"),
                (
                    "approver forged",
                    ["approver"],
                    {"username": "root", "groups": ["conveyor:approvers"]},
                    "spec.approver",
                ),
                (
                    "approver with 257 groups",
                    ["approver"],
                    {"username": "x", "groups": [f"g{i}" for i in range(257)]},
                    "spec.approver.groups",
                ),
                ("unknown field", ["autoApprove"], True, "autoApprove"),
            ],
        ],
        "rollbacks": [
            *[
                ("no pipeline", ["pipeline"], DELETE, "spec.pipeline"),
                ("stage of 31", ["stage"], "s" * 31, "spec.stage"),
                ("toRelease in upper case", ["toRelease"], "Shop-V1", "spec.toRelease"),
                ("reason of 1025", ["reason"], "r" * 1025, "spec.reason"),
                ("verify a string", ["verify"], "yes", "spec.verify"),
                ("verify a number", ["verify"], 1, "spec.verify"),
                ("pipeline a list", ["pipeline"], ["shop"], "spec.pipeline"),
                ("requester forged", ["requester"], {"username": "root"}, "spec.requester"),
                ("unknown field", ["force"], True, "force"),
            ]
        ],
    }
    return [*common, *per_kind[plural]]


# Accepted by the schema, judged only by the cluster: the operator must answer with a condition.
def cluster_judged(plural: str, world: World) -> st.SearchStrategy[tuple[str, list[Any], Any]]:
    """One field pointing at something that does not exist."""
    missing = dns_label63.map(lambda s: f"missing-{s}"[:63].rstrip("-"))
    return {
        "pipelines": st.builds(
            lambda n: ("stage namespace that does not exist", ["stages", 0, "namespace"], n), missing
        ),
        "releases": st.builds(lambda n: ("pipeline that does not exist", ["pipeline"], n), missing),
        "approvals": st.builds(lambda n: ("release that does not exist", ["release"], n), missing),
        "rollbacks": st.builds(lambda n: ("pipeline that does not exist", ["pipeline"], n), missing),
    }[plural]


# --- hostile values ---------------------------------------------------------------------------------


def deep(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels."""
    obj: dict[str, Any] = {"leaf": "x"}
    for i in range(depth):
        obj = {f"k{i % 3}": obj}
    return obj


LIMITS = (30, 40, 63, 64, 71, 128, 253, 256, 512, 1024, 4096)
hostile_string = st.one_of(
    st.builds(
        lambda n, c, d: c * (n + d),
        uniform(list(LIMITS)),
        st.sampled_from(["a", "é", "😀", "\u200b", "-"]),
        st.sampled_from([-1, 0, 1]),
    ),
    uniform(
        [
            "",
            " ",
            "\u0000",
            "a\u0000b",
            "\u202eevil\u202c",
            "\u200b",
            "\ufeffshop",
            "shop\n",
            "shop ",
            "😀" * 10,
            "\ud800",
            "..",
            "/",
            "../../etc/passwd",
            "${jndi:ldap://x}",
            "'; DROP TABLE releases;--",
            "<script>alert(1)</script>",
            "%s%s%n",
            "\u0130stanbul",
            "\u017fhop",
            "SHOP",
            "true",
            "null",
            "0",
            "sha256:" + "0" * 64 + "\n",
        ]
    ),
    text,
)
hostile_number = uniform(
    [
        0,
        -1,
        1,
        2**31 - 1,
        2**31,
        -(2**31),
        2**53 + 1,
        2**63 - 1,
        2**63,
        -(2**63),
        2**64,
        10**30,
        0.5,
        -0.0,
        1e308,
        3.0,
    ]
)
hostile_value = st.one_of(
    hostile_string,
    hostile_number,
    uniform([None, True, False, [], {}, [[]], [{}], {"": ""}, [None]]),
    st.builds(deep, uniform([8, 40, 200, 400])),
    st.builds(lambda n: [f"item-{i}" for i in range(n)], uniform([101, 257, 1000, 5000])),
    st.builds(lambda n: {f"K{i}": "v" for i in range(n)}, uniform([65, 500, 3000])),
    st.builds(lambda n: [{"name": f"s{i}", "namespace": f"n{i}"} for i in range(n)], uniform([11, 2000])),
)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `obj` (maps and lists), the root excluded."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out += paths(value, (*prefix, key))
    return out


# --- bodies from the generated schema ---------------------------------------------------------------


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Anything of the schema's shape: each field drawn within its bounds — or just past them."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), hostile_string)
    if kind == "string":
        hi = schema.get("maxLength", 64)
        if "pattern" in schema:
            return st.one_of(
                st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= hi + 1), text
            )
        return st.one_of(
            st.text(max_size=min(hi, 80)), st.builds(lambda d: "x" * (hi + d), st.sampled_from([0, 1]))
        )
    if kind == "integer":
        lo, hi = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo - 1, hi + 1, lo, hi]))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        hi = schema.get("maxItems", 3)
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=min(hi + 1, 4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        if depth > 6:
            return st.just({})
        if not props and isinstance(schema.get("additionalProperties"), dict):
            return st.dictionaries(
                text.filter(bool), from_schema(schema["additionalProperties"], depth + 1), max_size=3
            )
        return st.fixed_dictionaries(
            {k: from_schema(v, depth + 1) for k, v in props.items() if k in required},
            optional={k: from_schema(v, depth + 1) for k, v in props.items() if k not in required},
        )
    if schema.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(), st.text(max_size=10))
    return hostile_value


def spec_schema(plural: str) -> dict[str, Any]:
    """The generated CRD's schema of `spec` for a kind."""
    kind = next(k for k in KINDS if k.plural == plural)
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    return schema


# --- cases ------------------------------------------------------------------------------------------


def case(plural: str, world: World) -> st.SearchStrategy[Case]:
    """One Case of `plural`: valid (~30 %), one field off (~35 %), hostile (~35 %)."""
    valid = VALID[plural](world)

    def as_valid(spec: dict[str, Any]) -> Case:
        return Case(plural, "valid", "valid", _body(plural, spec), expect="accept")

    def off(spec: dict[str, Any]) -> Case:
        # the mutation is chosen in draw_cases, in turn (every one is tried, none left to chance)
        return Case(plural, "invalid", "one field off", _body(plural, spec), expect="reject", base=spec)

    def judged(spec: dict[str, Any], m: tuple[str, list[Any], Any]) -> Case:
        label, path, value = m
        return Case(plural, "invalid", label, _body(plural, _set(spec, path, value)), expect="accept")

    @st.composite
    def hostile(draw: st.DrawFn) -> Case:
        spec = draw(valid)
        where = draw(
            uniform(
                [
                    ("spec",),
                    *[("spec", *p) for p in paths(spec)],
                    ("metadata", "labels"),
                    ("metadata", "annotations"),
                    ("spec", "zz-unknown"),
                ]
            )
        )
        value = draw(hostile_value)
        body = _set(_body(plural, spec), list(where), value)
        shown = repr(value)[:40]
        return Case(plural, "hostile", f"{'.'.join(map(str, where))} = {shown}", body)

    schema_shaped = from_schema(spec_schema(plural)).map(
        lambda spec: Case(plural, "hostile", "drawn from the CRD schema", _body(plural, spec))
    )
    return st.one_of(
        valid.map(as_valid),
        valid.map(off),
        st.builds(judged, valid, cluster_judged(plural, world)),
        hostile(),
        schema_shaped,
    )


def draw_cases(plural: str, count: int, world: World, seed_: int) -> list[Case]:
    """`count` Cases of `plural`, the same ones for the same seed (hypothesis, derandomized by `seed_`).
    Each is given a unique name (metadata.name is not what is fuzzed here; the identity and RBAC
    paths are), and the names are stable per seed."""
    out: list[Case] = []

    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_)
    @given(case(plural, world))
    def collect(c: Case) -> None:
        out.append(c)

    collect()
    # hypothesis may stop short of max_examples when its space is exhausted; top up by re-drawing
    # with the next seeds (still deterministic).
    extra = 1
    while len(out) < count:
        more = draw_cases(plural, count - len(out), world, seed_ + extra)
        out += more
        extra += 1
    out = out[:count]
    # Megabytes, a few per kind and not by chance (each costs the API server a megabyte to decode): a
    # 1 MiB string in the first field of a valid body, and a body over the request limit (3 MiB: 413).
    for c, size, label in ((out[-2], 1 << 20, "a 1 MiB string"), (out[-1], 3_200_000, "over 3 MiB")):
        spec = c.base if c.base is not None else c.body.get("spec")
        if not isinstance(spec, dict) or not spec:
            spec = {"x": None}
        first = next(iter(spec))
        c.base = None
        c.flavour, c.label, c.expect, c.field = "hostile", f"spec.{first} = {label}", "either", None
        c.body = _body(plural, {**spec, first: "a" * size})
    if plural == "pipelines" and world.drift is not None and len(out) > 2:
        # Valid, and nasty: an ignore pattern of 20 stars (a regex of it backtracks exponentially on a
        # path with more e's than that — not on a shorter one, which a regex engine rules out by
        # length) over stages that differ, so it is matched against every differing path.
        deployment, ns_a, ns_b = world.drift
        c = out[-3]
        c.base, c.flavour, c.label, c.expect, c.field = (
            None,
            "valid",
            "parity.ignore of 255 stars",
            "accept",
            None,
        )
        c.body = _body(
            plural,
            {
                "imageRepository": "ghcr.io/acme/drift",
                "targets": [{"deployment": deployment, "container": "web"}],
                "stages": [{"name": "a", "namespace": ns_a}, {"name": "b", "namespace": ns_b}],
                "parity": {"ignore": ["*e" * 20 + "X"]},
            },
        )
    mutations = invalid_mutations(plural)
    for k, c in enumerate(c for c in out if c.base is not None):
        one_field_off(c, mutations[k % len(mutations)])
    for i, c in enumerate(out):
        tag = hashlib.sha1(f"{seed_}-{i}".encode()).hexdigest()[:6]  # noqa: S324 — a name, not security
        c.body["metadata"] = {
            **(c.body.get("metadata") if isinstance(c.body.get("metadata"), dict) else {}),
            "name": f"h{plural[0]}-{i}-{tag}",
        }
    return out


def counts(cases: list[Case]) -> dict[str, int]:
    """How many cases of each flavour."""
    out: dict[str, int] = {}
    for c in cases:
        out[c.flavour] = out.get(c.flavour, 0) + 1
    return out


def job_templates(count: int, seed_: int) -> list[dict[str, Any]]:
    """`count` Job templates (a Pipeline's migration / smoke test) drawn from the CRD schema itself —
    every field, each within its bounds or just past them — and from the valid strategy. What the
    schema admits of them, Conveyor turns into Jobs: the API server must admit those too."""
    schema = spec_schema("pipelines")["properties"]["migration"]
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_)
    @given(st.one_of(from_schema(schema), job_template()))
    def collect(t: dict[str, Any]) -> None:
        out.append(t)

    collect()
    return out[:count]
