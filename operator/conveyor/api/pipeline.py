"""Pipeline: one application's road to production."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from conveyor.api.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    Condition,
    GroupName,
    KubeModel,
    Message,
    ObjectMeta,
    UserName,
    cel,
    latest,
)

VETO_LIMIT = 100
RETIRED_LIMIT = 100
IMAGE_REPOSITORY = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"

# Bounds of what a Pipeline may carry (one object must never be big enough to wedge a pass).
ARG_MAX = 4096  # one command or args item
ARGS_MAX = 64  # command or args items
Arg = Annotated[str, Field(max_length=ARG_MAX)]
VariableValue = Annotated[str, Field(max_length=4096)]
ParityPattern = Annotated[str, Field(max_length=512)]
# Label values and keys as the API server takes them on a Pod (a Job refused for its labels would hold
# its release mid-stage: the schema refuses them instead, naming the field).
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


def _string(max_length: int, pattern: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if pattern:
        out["pattern"] = pattern
    return out


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


# Kubernetes' own shapes (EnvVarSource, EnvFromSource, ResourceRequirements), written out so that
# every string in them is bounded — and shaped as the API server validates them in a Pod, so that a
# template the schema admits always makes a Job the API server admits (tests/e2e/
# test_hostile_input.py checks it with a dry run per drawn template). Unknown fields are pruned.
_NAME = _string(253, DNS_SUBDOMAIN)
_KEY_SELECTOR = _object(
    {"name": _NAME, "key": _string(253, r"^[-._a-zA-Z0-9]+$"), "optional": {"type": "boolean"}},
    required=["name", "key"],
)
FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[-A-Za-z0-9_./]{1,253}'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
CONTAINER_RESOURCE = r"^(limits|requests)\.(cpu|memory|ephemeral-storage)$"
DIVISORS = ["1", "1m", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"]
_VALUE_FROM = _object(
    {
        "secretKeyRef": _KEY_SELECTOR,
        "configMapKeyRef": _KEY_SELECTOR,
        "fieldRef": _object(
            {"apiVersion": {"type": "string", "enum": ["v1"]}, "fieldPath": _string(256, FIELD_PATH)},
            required=["fieldPath"],
        ),
        "resourceFieldRef": _object(
            {
                # (The Job has one container: Conveyor leaves containerName out of the Job it makes.)
                "containerName": _string(63),
                "resource": _string(64, CONTAINER_RESOURCE),
                "divisor": {"x-kubernetes-int-or-string": True, "maxLength": 64},
            },
            required=["resource"],
            **{
                "x-kubernetes-validations": [
                    cel(
                        "!has(self.divisor) || (self.resource.endsWith('.cpu') ? string(self.divisor) in "
                        f"['1', '1m'] : string(self.divisor) in {[d for d in DIVISORS if d != '1m']})",
                        "divisor: 1 or 1m for cpu; 1, 1k…1E or 1Ki…1Ei for memory and ephemeral-storage",
                    )
                ]
            },
        ),
    },
    maxProperties=1,
    minProperties=1,
)
_ENV_FROM_SOURCE = _object(
    {
        "prefix": _string(253, r"^[A-Za-z_][A-Za-z0-9_]*$"),
        "configMapRef": _object({"name": _NAME, "optional": {"type": "boolean"}}, required=["name"]),
        "secretRef": _object({"name": _NAME, "optional": {"type": "boolean"}}, required=["name"]),
    },
    maxProperties=3,
    **{
        "x-kubernetes-validations": [
            cel("has(self.configMapRef) != has(self.secretRef)", "exactly one of configMapRef and secretRef")
        ]
    },
)
_QUANTITY_RULES = [
    cel(
        "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])",
        "resources are cpu, memory and ephemeral-storage",
    ),
    cel(
        "self.all(k, isQuantity(string(self[k])) && !quantity(string(self[k])).isLessThan(quantity('0')))",
        "each must be a quantity of at least 0, e.g. 100m, 1, 64Mi",
    ),
]
_QUANTITIES = {
    "type": "object",
    "maxProperties": 3,
    "additionalProperties": {"x-kubernetes-int-or-string": True, "maxLength": 64},
    "x-kubernetes-validations": _QUANTITY_RULES,
}
_RESOURCES = _object(
    # (No `claims`: they must name the Pod's resourceClaims, which a Conveyor Job never has.)
    {"limits": _QUANTITIES, "requests": _QUANTITIES},
    maxProperties=2,
    **{
        "x-kubernetes-validations": [
            cel(
                "!has(self.limits) || !has(self.requests) || self.requests.all(k, !(k in self.limits) || "
                "quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
                "requests may not exceed limits",
            )
        ]
    },
)


class Target(KubeModel):
    """A workload Conveyor updates in every stage: one container of one Deployment."""

    deployment: str = Field(
        description="Name of the Deployment, the same in every stage's namespace.",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    container: str = Field(
        description="Name of the container in that Deployment whose image Conveyor sets.",
        max_length=63,
        pattern=DNS_LABEL,
    )


# Names that say "credential": their values belong in a Secret, never in a Pipeline.
CREDENTIAL_NAME = (
    r"(?i)^(.*_)?(PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|KEY|CREDENTIALS?)$"
)
_SECRETS_BY_REFERENCE = (
    "a credential-looking variable must come from a Secret: use valueFrom.secretKeyRef "
    "(secrets by reference; values never live in a Pipeline)"
)


class EnvVar(KubeModel):
    """An environment variable of a Job container, as in a Pod spec. A credential-looking name
    (*_PASSWORD, *_TOKEN, *_SECRET, *_KEY, ...) may not carry a literal value."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(f"!has(self.value) || !self.name.matches('{CREDENTIAL_NAME}')", _SECRETS_BY_REFERENCE),
                cel(
                    "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    "value and valueFrom exclude each other",
                ),
            ]
        }
    }

    name: str = Field(description="Variable name.", max_length=128, pattern=ENV_NAME)
    value: str | None = Field(default=None, description="Literal value.", max_length=4096)
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A reference to where the value lives (secretKeyRef, configMapKeyRef, fieldRef, "
        "resourceFieldRef), as in a Pod spec.",
        json_schema_extra=_VALUE_FROM,
    )


class JobTemplate(KubeModel):
    """A Job defined once for every stage. The release's image is the default image; the stage's
    variables and CONVEYOR_COMMIT, CONVEYOR_DIGEST, CONVEYOR_STAGE, CONVEYOR_RELEASE are injected."""

    # With no command, no args and no image of its own, the Job would run the release's image as it
    # is: the application itself, as a "migration" or a "smoke test" (found by trying it, #12).
    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "has(self.image) || (has(self.command) && size(self.command) > 0) "
                    "|| (has(self.args) && size(self.args) > 0)",
                    "a Job needs a command, args or an image of its own: with none it would run the "
                    "release's image as it is (the application itself)",
                )
            ]
        }
    }

    image: str | None = Field(
        default=None,
        description="Image to run; default: the release's own image (repository@digest).",
        max_length=512,
        # Printable ASCII, no space: a Pod refuses an image with whitespace around it. (Not `\S`: the
        # API server's RE2 and Python disagree on what is a space — a vertical tab passed the schema and
        # failed the model; found by `make soak`.)
        pattern=r"^[\x21-\x7e]*$",
    )
    command: list[Arg] = Field(
        default_factory=list, max_length=ARGS_MAX, description="Entrypoint, as in a container spec."
    )
    args: list[Arg] = Field(
        default_factory=list, max_length=ARGS_MAX, description="Arguments, as in a container spec."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables (secrets by reference only).",
    )
    env_from: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=32,
        description="Sources of environment variables (secretRef, configMapRef), as in a container spec.",
        json_schema_extra={"items": _ENV_FROM_SOURCE},
    )
    resources: dict[str, Any] | None = Field(
        default=None,
        description="Resource requests and limits (and claims), as in a container spec.",
        json_schema_extra=_RESOURCES,
    )
    service_account_name: str | None = Field(
        default=None,
        description="ServiceAccount the Job's pod runs as.",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra labels on the Job's pod.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.all(k, k.size() <= 317)", "label keys are at most 317 characters (prefix/name)"),
                cel(
                    f"self.all(k, k.matches('{LABEL_KEY}'))",
                    "label keys are [prefix/]name: name at most 63 alphanumerics, '-', '_' or '.', starting "
                    "and ending alphanumeric; prefix a DNS subdomain",
                ),
            ]
        },
    )
    deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="The Job fails when it runs longer than this (activeDeadlineSeconds). For the smoke "
        "test, the stage's smokeTestDeadlineSeconds applies instead.",
    )
    backoff_limit: int = Field(
        default=0, ge=0, le=10, description="Retries before the Job counts as failed (default none)."
    )


class Approvers(KubeModel):
    """Who may approve: a user listed, or a member of a group listed (empty: anyone allowed by RBAC
    to create Approvals)."""

    users: list[UserName] = Field(
        default_factory=list, max_length=100, description="Authenticated user names."
    )
    groups: list[GroupName] = Field(
        default_factory=list, max_length=100, description="Groups (as the API server reports them)."
    )


class ApprovalPolicy(KubeModel):
    """What it takes to open a stage that requires approval."""

    approvers: Approvers = Field(default_factory=Approvers, description="Who may approve.")
    min_approvals: int = Field(default=1, ge=1, le=10, description="Distinct approvers needed.")
    four_eyes: bool = Field(
        default=True, description="The release's requester may not approve it (on by default)."
    )
    expires_after_seconds: int | None = Field(
        default=None, ge=1, description="Approvals older than this are ignored (default: never)."
    )


class Stage(KubeModel):
    """One environment on the road to production, in order."""

    name: str = Field(
        description="Stage name, unique in the pipeline (DNS label, at most 30 characters).",
        max_length=30,
        pattern=DNS_LABEL,
    )
    namespace: str = Field(
        description="Namespace holding this stage's Deployments; migration and smoke-test Jobs run here.",
        max_length=63,
        pattern=DNS_LABEL,
    )
    cluster: str | None = Field(
        default=None,
        description="The Kubernetes cluster the namespace is in: the `name` of a cluster Secret in "
        "Conveyor's own namespace (labelled conveyor.dev/cluster-secret=true and annotated "
        "conveyor.dev/pipeline-namespaces with this Pipeline's namespace; docs/multi-cluster.md). "
        "Unset: the cluster Conveyor runs in (a DNS label, at most 63 characters; not `control`, "
        "which is how status names that one).",
        max_length=63,
        pattern=DNS_LABEL,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self != 'control'", "`control` names the cluster Conveyor runs in: leave cluster unset")
            ]
        },
    )
    variables: dict[str, VariableValue] = Field(
        default_factory=dict,
        description="Per-stage environment for the migration and smoke-test Jobs (e.g. BASE_URL).",
        json_schema_extra={
            "maxProperties": 64,
            "x-kubernetes-validations": [
                cel(
                    "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]{0,127}$'))",
                    "variable names must be environment variable names ([A-Za-z_][A-Za-z0-9_]*, at "
                    "most 128 characters)",
                ),
                cel(
                    f"self.all(k, !k.matches('{CREDENTIAL_NAME}'))",
                    "stage variables are literal values: " + _SECRETS_BY_REFERENCE,
                ),
            ],
        },
    )
    requires_approval: bool = Field(
        default=False, description="A release enters this stage only after an Approval for it."
    )
    approval: ApprovalPolicy = Field(
        default_factory=ApprovalPolicy,
        description="Approver policy, when requiresApproval is true.",
    )
    rollout_deadline_seconds: int = Field(
        default=120,
        ge=5,
        le=3600,
        description="The rollout fails when the Deployments are not fully available this long after "
        "Conveyor set the image (default 2 minutes).",
    )
    smoke_test_deadline_seconds: int = Field(
        default=300, ge=5, le=86400, description="The smoke-test Job fails when it runs longer than this."
    )
    on_failure: Literal["hold", "rollback"] = Field(
        default="hold",
        description="When a release fails here after changing something (migration ran or image set): "
        "hold (leave the stage as it is, default) or rollback (Conveyor creates a Rollback of this "
        "stage to the previous verified release).",
    )


class Retention(KubeModel):
    """Old finished Releases beyond `keepReleases` are deleted — never one that runs in a stage, is a
    stage's rollback target, or was vetoed less than `vetoedSeconds` ago. Deletions are logged.
    Finished Jobs are deleted `finishedJobsSeconds` after their result was recorded."""

    keep_releases: int = Field(
        default=50, ge=1, le=10000, description="Releases kept per pipeline, newest first."
    )
    vetoed_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=0,
        description="Vetoed releases are kept at least this long after the veto (default 30 days).",
    )
    finished_jobs_seconds: int = Field(
        default=3600,
        ge=0,
        le=30 * 24 * 3600,
        description="Migration, smoke-test and down-migration Jobs are deleted this long after Conveyor "
        "recorded their result (default 1 hour); Jobs whose Release or Rollback is gone are deleted at "
        "once. Their verdicts stay in the Release's and Rollback's status.",
    )


class ParitySpec(KubeModel):
    """Staging must be production's twin: how strictly, and which differences are accepted."""

    policy: Literal["enforce", "warn", "off"] = Field(
        default="enforce",
        description="enforce: a release may not enter the last stage while stages differ (it waits, "
        "ParityBlocked, and moves on when parity returns); warn: record only; off: no check.",
    )
    ignore: list[ParityPattern] = Field(
        default_factory=list,
        max_length=100,
        description="Accepted differences, as path patterns where * matches anything, e.g. "
        "'deployment[shop].containers[web].env[DEBUG]' or 'deployment[shop].*.readinessProbe'.",
    )
    interval_seconds: int = Field(
        default=300, ge=10, description="Check at least this often (also on every Deployment change)."
    )


class PipelineSpec(KubeModel):
    """The desired road: which image, which workloads, which stages, which Jobs."""

    image_repository: str = Field(
        description="Image repository without tag or digest (e.g. ghcr.io/acme/shop); each Release "
        "names a digest in it.",
        max_length=255,
        pattern=IMAGE_REPOSITORY,
    )
    targets: list[Target] = Field(
        min_length=1,
        max_length=20,
        description="Workloads to update in every stage.",
    )
    stages: list[Stage] = Field(
        min_length=1,
        max_length=10,
        description="Stages in promotion order; the last one is production. Each stage has a namespace "
        "of its own (two stages in one namespace would share its Deployments: a release in the first "
        "would run in the second without its gate).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                # Unique (cluster, namespace), said as two rules: joining the two strings in CEL is
                # estimated far over the API server's cost budget (mapped to strings first, as a
                # check on whole stage objects is too).
                cel(
                    "self.filter(s, !has(s.cluster)).map(s, s.namespace)"
                    ".all(n, self.filter(t, !has(t.cluster)).map(t, t.namespace).exists_one(m, m == n))",
                    "each stage needs a namespace of its own: two stages in one namespace would share "
                    "its Deployments",
                ),
                cel(
                    "self.filter(s, has(s.cluster)).all(s, self.filter(t, has(t.cluster) && "
                    "t.cluster == s.cluster).map(t, t.namespace).exists_one(n, n == s.namespace))",
                    "each stage needs a namespace of its own: two stages in one namespace of one cluster "
                    "would share its Deployments",
                ),
            ],
        },
    )
    migration: JobTemplate | None = Field(
        default=None, description="Database migration Job, run in each stage before the rollout."
    )
    smoke_test: JobTemplate | None = Field(
        default=None, description="Smoke-test Job, run in each stage after the rollout."
    )
    retention: Retention = Field(default_factory=Retention, description="Which old Releases to delete.")
    parity: ParitySpec = Field(default_factory=ParitySpec, description="Parity check between stages.")
    down_migration: JobTemplate | None = Field(
        default=None,
        description="Down-migration Job, run by a rollback away from a release whose schemaChange is "
        "breaking, with that (newer) release's image: it knows how to undo its own schema change.",
    )


class RunningState(KubeModel):
    """What a stage's Deployments run right now, whoever put it there."""

    release: str | None = Field(
        default=None, description="The live Release whose image runs (None: no live release names it)."
    )
    commit: str | None = Field(default=None, description="Its full commit SHA.")
    short_commit: str | None = Field(default=None, description="Its commit, first 7 characters.")
    digest: str | None = Field(default=None, description="The image digest the targets run.")
    image: Message | None = Field(default=None, description="The image the first target runs.")
    tracked: bool | None = Field(
        default=None,
        description="False when a target runs an image no live Release of this pipeline names.",
    )
    message: Message | None = Field(default=None, description="Why not tracked, or what runs.")


class StageState(KubeModel):
    """What runs in one stage: the release last verified there, and what the Deployments run now."""

    name: str = Field(description="Stage name.")
    namespace: str = Field(description="Stage namespace.")
    cluster: str | None = Field(
        default=None, description="The cluster the namespace is in (unset: the cluster Conveyor runs in)."
    )
    cluster_problem: Message | None = Field(
        default=None,
        description="Why Conveyor cannot see the stage's cluster now (reason: message); unset when it can.",
    )
    release: str | None = Field(default=None, description="Release last verified in this stage.")
    commit: str | None = Field(default=None, description="Its full commit SHA.")
    short_commit: str | None = Field(default=None, description="Its commit, first 7 characters.")
    digest: str | None = Field(default=None, description="Its image digest.")
    since: datetime | None = Field(default=None, description="When it was verified in this stage.")
    in_flight: str | None = Field(default=None, description="Release being promoted into this stage now.")
    pinned_by: str | None = Field(
        default=None,
        description="Rollback that put the stage on its release; only releases created after it enter.",
    )
    running: RunningState | None = Field(
        default=None,
        description="What the stage's Deployments run now (it differs from the release above while a "
        "release rolls out, after a failure that changed the stage, or when someone changed the image).",
    )


class VetoRecord(KubeModel):
    """An artifact Conveyor will never promote again, and why."""

    digest: str = Field(description="Image digest vetoed.")
    commit: str = Field(description="Its commit.")
    release: str = Field(description="Release it was rolled away as.")
    rollback: str = Field(description="Rollback that vetoed it.")
    at: datetime = Field(description="When.")


class RetiredRecord(KubeModel):
    """A Release retention deleted (or is about to). The same release (name and digest) created
    again — Argo CD's self-heal re-creating it from Git, a re-apply — is an old build: never promoted."""

    release: str = Field(description="Release deleted.")
    digest: str = Field(description="Its image digest.")
    uid: str = Field(description="The deleted object's uid (one re-created under the name has another).")
    at: datetime = Field(description="When retention chose to delete it.")


class ParityDifference(KubeModel):
    """One way two stages differ."""

    path: Message = Field(description="What differs, e.g. deployment[shop].containers[web].env[DB_PASSWORD].")
    stage_a: str = Field(description="The reference stage (the first).")
    shape_a: Message = Field(description="Its shape there (never a value).")
    stage_b: str = Field(description="The other stage.")
    shape_b: Message = Field(description="Its shape there.")


class ParityStatus(KubeModel):
    """The last parity verdict."""

    in_parity: bool | None = Field(default=None, description="True when no difference remains.")
    checked_at: datetime | None = Field(default=None, description="When it was checked.")
    differences: Annotated[list[ParityDifference], latest(50)] = Field(
        default_factory=list, max_length=50, description="Differences found (the first 50)."
    )


class PipelineStatus(KubeModel):
    """Where each commit is."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    stages: list[StageState] = Field(default_factory=list, description="Per stage, what runs there.")
    summary: Message | None = Field(
        default=None, description="One line: each stage's short commit, e.g. staging=ab12cd3 prod=9f8e7d6."
    )
    production_commit: str | None = Field(
        default=None, description="Short commit verified in the last stage."
    )
    placement: Message | None = Field(
        default=None,
        description="Where each stage lives, e.g. staging=control prod=prod-eu (a cluster Conveyor cannot "
        "see now is marked: prod=prod-eu(ClusterUnreachable)).",
    )
    parity: ParityStatus = Field(default_factory=ParityStatus, description="Is staging production's twin?")
    vetoed: Annotated[list[VetoRecord], latest(VETO_LIMIT)] = Field(
        default_factory=list,
        max_length=VETO_LIMIT,
        description=f"Artifacts rolled away from: never promoted again (the latest {VETO_LIMIT}).",
    )
    retired: Annotated[list[RetiredRecord], latest(RETIRED_LIMIT)] = Field(
        default_factory=list,
        max_length=RETIRED_LIMIT,
        description=f"Releases retention deleted or is about to (at most {RETIRED_LIMIT}; a record "
        "stays while its name is in the cluster): created again, they are Superseded at once (reason "
        "Retired), never promoted again.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (every target resolves), ClustersReachable (every stage's cluster can be "
        "seen), InParity, Tracked (every stage runs an image a live "
        "release names), Reconciled (Conveyor's passes over this pipeline succeed).",
    )


class Pipeline(KubeModel):
    """A Pipeline object."""

    api_version: Literal["conveyor.dev/v1alpha1"] = "conveyor.dev/v1alpha1"
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: ObjectMeta
    spec: PipelineSpec
    status: PipelineStatus = Field(default_factory=PipelineStatus)

    def stage(self, name: str) -> Stage | None:
        """The stage called `name`, if any."""
        return next((s for s in self.spec.stages if s.name == name), None)
