"""The chart's ActionRequest policy, rendered by Helm's engine: the approver ClusterRole and its bindings,
the operator's grants (read and status of ActionRequests, reads of targets, no writes to them), the
admission policy on the status subresource, and all of it off with actions.enabled=false."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chart_render import NAMESPACE, Rendered, load_chart, render

RELEASE = "ai-ops"
APPROVER = "ai-ops-approver"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


@pytest.fixture(scope="module")
def chart() -> Any:
    return load_chart()


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        if rule.get("resourceNames"):
            continue  # named grants (the chat Deployment, the runbook shards) are checked in test_chart
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def test_approver_role_grants_reading_and_deciding_only(chart: Any) -> None:
    rendered = render(chart, {})
    role = rendered.get("ClusterRole", APPROVER)
    assert grants(role) == {
        ("ai-ops.dev", "actionrequests"): {"get", "list", "watch"},
        ("ai-ops.dev", "actionrequests/status"): {"get", "patch", "update"},
    }
    labels = role["metadata"]["labels"]
    assert not any(key.startswith("rbac.authorization.k8s.io/aggregate-to") for key in labels)
    # Nobody is an approver unless named.
    assert APPROVER not in rendered.names("ClusterRoleBinding")


def test_named_approvers_are_bound_cluster_wide_or_per_watched_namespace(chart: Any) -> None:
    approvers = {"actions": {"approvers": {"users": ["alice"], "groups": ["sre"]}}}
    cluster = render(chart, approvers).get("ClusterRoleBinding", APPROVER)
    assert cluster["roleRef"]["name"] == APPROVER
    assert [(s["kind"], s["name"]) for s in cluster["subjects"]] == [("User", "alice"), ("Group", "sre")]
    scoped = render(
        chart, {**approvers, "rbac": {"scope": "namespace"}, "watchNamespaces": [NAMESPACE, "team-a"]}
    )
    assert scoped.of_kind("ClusterRoleBinding") == []
    bindings = [b for b in scoped.of_kind("RoleBinding") if b["metadata"]["name"] == APPROVER]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted([NAMESPACE, "team-a"])


def test_the_operator_reads_targets_and_never_writes_them(chart: Any) -> None:
    rendered = render(chart, {})
    found = grants(rendered.get("ClusterRole", f"{RELEASE}-operator"))
    assert {"watch", "patch"} <= found[("ai-ops.dev", "actionrequests")]
    assert "create" not in found[("ai-ops.dev", "actionrequests")]
    assert "update" in found[("ai-ops.dev", "actionrequests/status")]
    assert ("", "events") in found and "create" in found[("", "events")]
    for target in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("", "pods"),
                   ("", "nodes")):  # fmt: skip
        assert "get" in found[target] and not found[target] & WRITE_VERBS, target


def test_the_policy_matches_status_updates_and_names_the_operator_and_chat_accounts(chart: Any) -> None:
    rendered = render(chart, {})
    policy = rendered.get("ValidatingAdmissionPolicy", f"{RELEASE}-actions")
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["actionrequests/status"] and rule["operations"] == ["UPDATE"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert (
        variables["operator"]
        == f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{RELEASE}-operator'"
    )
    assert (
        variables["chat"]
        == f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{RELEASE}-chat'"
    )
    binding = rendered.get("ValidatingAdmissionPolicyBinding", f"{RELEASE}-actions")
    assert binding["spec"] == {"policyName": f"{RELEASE}-actions", "validationActions": ["Deny"]}


def test_actions_off_removes_the_policy_the_role_and_the_operator_grants(chart: Any) -> None:
    rendered: Rendered = render(chart, {"actions": {"enabled": False}})
    assert rendered.of_kind("ValidatingAdmissionPolicy") == []
    assert rendered.of_kind("ValidatingAdmissionPolicyBinding") == []
    assert APPROVER not in rendered.names("ClusterRole")
    found = grants(rendered.get("ClusterRole", f"{RELEASE}-operator"))
    assert ("ai-ops.dev", "actionrequests") not in found and ("", "pods") not in found
    operator = rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in operator["containers"][0]["env"]}
    assert env["AI_OPS_ACTIONS"] == "false"
