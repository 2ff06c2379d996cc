"""Admission policies that stamp who created an Approval, Release or Rollback — done by the API
server itself (MutatingAdmissionPolicy + ValidatingAdmissionPolicy, GA in Kubernetes 1.36), so
the identity is the one it authenticated, with no webhook server to run or to lose.

- conveyor-stamp-identity (mutating): on CREATE, when the stamp field is absent, set it from
  `request.userInfo` (username and groups).
- conveyor-identity-stamps (validating): on CREATE, refuse a stamp that differs from
  `request.userInfo` — a forged stamp is refused, never silently replaced. Edits are impossible
  anyway: each kind's spec is immutable.
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
                    "username: request.userInfo.username, groups: request.userInfo.groups}}] : []"
                )
            },
        }
        for plural, field in sorted(STAMPED.items())
    ]
    validations = [
        {
            "expression": (
                f"request.resource.resource != '{plural}' || (has(object.spec.{field}) && "
                f"object.spec.{field}.username == request.userInfo.username)"
            ),
            "messageExpression": (
                f"'spec.{field} is stamped by the API server from the identity it authenticated (' + "
                f"request.userInfo.username + '): leave it out'"
            ),
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
