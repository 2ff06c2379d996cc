"""Admission policies that stamp who created an Approval, Release or Rollback — done by the API
server itself (MutatingAdmissionPolicy + ValidatingAdmissionPolicy, GA in Kubernetes 1.36), so
the identity is the one it authenticated, with no webhook server to run or to lose.

- conveyor-stamp-identity (mutating): on CREATE, when the stamp field is absent, set it from
  `request.userInfo` (username and groups).
- conveyor-identity-stamps (validating): on CREATE, refuse a stamp whose username or groups differ
  from `request.userInfo` — the groups compared as lists (same groups, same order), so a supplied
  stamp passes only when it is exactly what the API server would have stamped. A forged stamp is
  refused, never silently replaced. Edits are impossible anyway: each kind's spec is immutable.

Both read the groups through `has()`: `request.userInfo.groups` and a stamp's `groups` are optional
fields (absent, not empty, when there are none).
"""

from __future__ import annotations

from typing import Any

from conveyor.api.common import GROUP

# kind plural -> the spec field stamped with the requester's identity
STAMPED: dict[str, str] = {"approvals": "approver", "releases": "requester", "rollbacks": "requester"}
MUTATING_POLICY = "conveyor-stamp-identity"
VALIDATING_POLICY = "conveyor-identity-stamps"
POLICY_OBJECTS: list[tuple[str, str]] = [
    ("mutatingadmissionpolicies", MUTATING_POLICY),
    ("mutatingadmissionpolicybindings", MUTATING_POLICY),
    ("validatingadmissionpolicies", VALIDATING_POLICY),
    ("validatingadmissionpolicybindings", VALIDATING_POLICY),
]
_ADMISSION = "admissionregistration.k8s.io/v1"


def _rules(plurals: list[str]) -> dict[str, Any]:
    return {
        "resourceRules": [
            {"apiGroups": [GROUP], "apiVersions": ["*"], "operations": ["CREATE"], "resources": plurals}
        ]
    }


# The object has a spec that is a map (the schema refuses anything else, naming the field).
SPEC_IS_AN_OBJECT = "has(object.spec) && type(object.spec) == map"
# The authenticated groups; absent (not []) in a request whose user has none.
USER_GROUPS = "has(request.userInfo.groups) ? request.userInfo.groups : []"


def _stamp_matches(field: str) -> str:
    """CEL: the object's stamp is exactly the authenticated identity (username, and groups as a list)."""
    stamp = f"object.spec.{field}"
    return (
        f"has({stamp}) && {stamp}.username == request.userInfo.username && "
        f"(has({stamp}.groups) ? {stamp}.groups : []) == variables.userGroups"
    )


def _refusal(field: str) -> str:
    """CEL: the refusal message, naming the identity the API server authenticated."""
    return (
        f"'spec.{field} is stamped by the API server from the identity it authenticated (' + "
        "request.userInfo.username + ') with groups [' + variables.userGroups.join(', ') + ']: leave "
        f"spec.{field} out, or give exactly that username and those groups, in that order'"
    )


def admission_policies() -> list[dict[str, Any]]:
    """The policies and their bindings, in apply order."""
    plurals = sorted(STAMPED)
    # One mutation per kind; each is a no-op for the other kinds.
    mutations = [
        {
            "patchType": "JSONPatch",
            "jsonPatch": {
                "expression": (
                    f"request.resource.resource == '{plural}' && !has(object.spec.{field}) ? "
                    f"[JSONPatch{{op: 'add', path: '/spec/{field}', value: Object.spec.{field}{{"
                    f"username: request.userInfo.username, groups: {USER_GROUPS}}}}}] : []"
                )
            },
        }
        for plural, field in sorted(STAMPED.items())
    ]
    validations = [
        {
            "expression": f"request.resource.resource != '{plural}' || ({_stamp_matches(field)})",
            "messageExpression": _refusal(field),
            "reason": "Forbidden",
        }
        for plural, field in sorted(STAMPED.items())
    ]
    labels = {"app.kubernetes.io/part-of": "conveyor"}
    return [
        {
            "apiVersion": _ADMISSION,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": MUTATING_POLICY, "labels": labels},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConstraints": _rules(plurals),
                # Only a spec that is an object can be stamped. Anything else ("spec": "x", a list, a
                # number) would fail the JSON patch and be refused here, by the policy, without a
                # field; skipped, it reaches the schema, which refuses it naming spec (422). The
                # validating policy still judges every object that passes the schema.
                "matchConditions": [{"name": "spec-is-an-object", "expression": SPEC_IS_AN_OBJECT}],
                "mutations": mutations,
            },
        },
        {
            "apiVersion": _ADMISSION,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": MUTATING_POLICY, "labels": labels},
            "spec": {"policyName": MUTATING_POLICY},
        },
        {
            "apiVersion": _ADMISSION,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": VALIDATING_POLICY, "labels": labels},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": _rules(plurals),
                "variables": [{"name": "userGroups", "expression": USER_GROUPS}],
                "validations": validations,
            },
        },
        {
            "apiVersion": _ADMISSION,
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": VALIDATING_POLICY, "labels": labels},
            "spec": {"policyName": VALIDATING_POLICY, "validationActions": ["Deny"]},
        },
    ]
