"""The chart's approval policy on the real kube-apiserver: who may write what in an ActionRequest's status.

The chart's ValidatingAdmissionPolicy, its binding and the ai-ops-approver ClusterRole, rendered by Helm's
engine for a release in this module's namespace, are applied as rendered (renamed and, for the binding,
narrowed to this namespace so the other suites' requests are not judged by it). Identities are admin
impersonations: `alice` and `bob` are approvers, `mallory` is nobody, and the operator's and the chat's
ServiceAccounts are the ones the policy names.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ai_ops_api.actions import format_time
from tests.cluster.controlplane import ControlPlane
from tests.cluster.rest import request
from tests.harness.ports import wait_until
from tests.support.chart_render import load_chart, render

GROUP, VERSION, PLURAL = "ai-ops.dev", "v1alpha1", "actionrequests"
APPROVERS = ["alice", "bob"]


class Setup:
    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.operator = f"system:serviceaccount:{namespace}:ai-ops-operator"
        self.chat = f"system:serviceaccount:{namespace}:ai-ops-chat"
        self._names = itertools.count()

    def as_user(self, user: str | None) -> client.CustomObjectsApi:
        api = self.plane.api_client()
        if user is not None:
            api.set_default_header("Impersonate-User", user)
        return client.CustomObjectsApi(api)

    def action(self) -> str:
        name = f"act-{next(self._names)}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ActionRequest",
            "metadata": {"name": name},
            "spec": {
                "server": "kubernetes-actions",
                "tool": "rollout_restart",
                "arguments": {"kind": "Deployment", "namespace": self.namespace, "name": "web"},
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": self.namespace,
                    "name": "web",
                },
                "reason": "stale pods",
                "requestedBy": {"caller": "alice"},
                "expiresAt": format_time(datetime.now(UTC) + timedelta(minutes=10)),
            },
        }
        self.as_user(None).create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        return name

    def patch_status(self, user: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.as_user(user).patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, {"status": status}
        )
        return result

    def refused(self, user: str, name: str, status: dict[str, Any]) -> ApiException:
        with pytest.raises(ApiException) as raised:
            self.patch_status(user, name, status)
        return raised.value

    def status(self, name: str) -> dict[str, Any]:
        obj = self.as_user(None).get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return dict(obj.get("status") or {})


def message(refusal: ApiException) -> str:
    return str(json.loads(refusal.body).get("message", ""))


def decision(by: str, approved: bool = True) -> dict[str, Any]:
    return {"decision": {"approved": approved, "by": by, "at": format_time(datetime.now(UTC))}}


def policy_objects(namespace: str, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    """The chart's policy, binding and approver role (with its binding to APPROVERS), as rendered."""
    rendered = render(load_chart(), {"actions": {"approvers": {"users": APPROVERS}}}, namespace=namespace)
    policy = copy.deepcopy(rendered.get("ValidatingAdmissionPolicy", "ai-ops-actions"))
    binding = copy.deepcopy(rendered.get("ValidatingAdmissionPolicyBinding", "ai-ops-actions"))
    role = copy.deepcopy(rendered.get("ClusterRole", "ai-ops-approver"))
    role_binding = copy.deepcopy(rendered.get("ClusterRoleBinding", "ai-ops-approver"))
    for obj in (policy, binding, role, role_binding):
        obj["metadata"]["name"] += f"-{suffix}"
    binding["spec"]["policyName"] = policy["metadata"]["name"]
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    }
    role_binding["roleRef"]["name"] = role["metadata"]["name"]
    # The operator's and the chat's accounts write statuses too (their own roles are not under test here).
    service_accounts = [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        for account in ("ai-ops-operator", "ai-ops-chat")
    ]
    role_binding["subjects"] = [*role_binding["subjects"], *service_accounts]
    admission = "/apis/admissionregistration.k8s.io/v1"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    return [
        (f"{rbac}/clusterroles", role),
        (f"{rbac}/clusterrolebindings", role_binding),
        (f"{admission}/validatingadmissionpolicies", policy),
        (f"{admission}/validatingadmissionpolicybindings", binding),
    ]


@pytest.fixture(scope="module")
def setup(ai_ops_crds: ControlPlane) -> Iterator[Setup]:
    plane = ai_ops_crds
    namespace = plane.create_namespace(prefix="pol")
    suffix = uuid.uuid4().hex[:8]
    objects = policy_objects(namespace, suffix)
    for path, body in objects:
        answer = request(plane, "POST", path, body)
        assert answer.ok, (path, answer.status, answer.message)
    ready = Setup(plane, namespace)

    def enforced() -> bool:
        # A fresh request each try: before the policy is in force the forged decision is stored.
        name = ready.action()
        try:
            ready.patch_status("alice", name, decision("somebody-else"))
        except ApiException:
            return True
        return False

    wait_until(enforced, 60.0, "the admission policy in force", interval=0.5)
    yield ready
    for path, body in reversed(objects):
        request(plane, "DELETE", f"{path}/{body['metadata']['name']}")


def test_an_approver_deciding_in_their_own_name_is_accepted(setup: Setup) -> None:
    name = setup.action()
    setup.patch_status("alice", name, {**decision("alice"), "phase": "Approved"})
    status = setup.status(name)
    assert status["decision"]["by"] == "alice" and status["phase"] == "Approved"


def test_a_forged_by_is_refused(setup: Setup) -> None:
    name = setup.action()
    forged = setup.refused("alice", name, decision("bob"))
    assert forged.status in (403, 422) and "must be your own username: alice" in message(forged)
    # Nobody but the chat service writes a chat: name, and the chat service writes nothing else.
    assert "chat service" not in message(setup.refused("alice", name, decision("chat:alice")))
    assert "chat:<caller>" in message(setup.refused(setup.chat, name, decision("alice")))
    assert "decision" not in setup.status(name)
    setup.patch_status(setup.chat, name, decision("chat:alice"))
    assert setup.status(name)["decision"]["by"] == "chat:alice"


def test_a_non_approver_gets_403(setup: Setup) -> None:
    name = setup.action()
    assert setup.refused("mallory", name, decision("mallory")).status == 403


def test_a_made_decision_cannot_be_changed_or_removed(setup: Setup) -> None:
    name = setup.action()
    setup.patch_status("alice", name, decision("alice", approved=False))
    changed = setup.refused("bob", name, decision("bob", approved=True))
    assert "cannot be changed" in message(changed)
    # Removing it is no transition the CRD's own rule sees: the policy refuses it.
    removed = setup.refused("bob", name, {"decision": None})
    assert "cannot be changed or removed" in message(removed)
    assert setup.status(name)["decision"]["by"] == "alice"


def test_only_the_operator_moves_the_phase_past_the_decision_or_writes_results(setup: Setup) -> None:
    name = setup.action()
    setup.patch_status("alice", name, decision("alice"))
    for status in (
        {"phase": "Succeeded"},
        {"phase": "Executing"},
        {"phase": "Rejected"},  # not what the decision says
        {"result": {"isError": False, "excerpt": "done"}},
        {"executedAt": format_time(datetime.now(UTC))},
    ):
        assert "only the operator" in message(setup.refused("alice", name, status)), status
    setup.patch_status(
        setup.operator, name, {"phase": "Succeeded", "result": {"isError": False, "excerpt": "ok"}}
    )
    assert setup.status(name)["phase"] == "Succeeded"
    # Nobody else turns a finished request back to run it again.
    assert "only the operator" in message(setup.refused("bob", name, {"phase": "Approved"}))
    assert "only the operator" in message(setup.refused("alice", name, {"phase": "Pending"}))


def test_only_the_chat_service_claims_the_continuation_and_only_once(setup: Setup) -> None:
    name = setup.action()
    setup.patch_status("alice", name, decision("alice", approved=False))
    claim = {"continued": {"by": "chat-replica-1", "at": format_time(datetime.now(UTC))}}
    for user in ("alice", setup.operator):
        assert "only the chat service sets status.continued" in message(setup.refused(user, name, claim))
    assert "continued" not in setup.status(name)
    setup.patch_status(setup.chat, name, claim)
    assert setup.status(name)["continued"]["by"] == "chat-replica-1"
    # Claimed once: another replica's claim (or a cleared one) is refused, the chat writes nothing else.
    other = {"continued": {"by": "chat-replica-2", "at": format_time(datetime.now(UTC))}}
    assert "cannot be changed" in message(setup.refused(setup.chat, name, other))
    removed = setup.refused(setup.chat, name, {"continued": None})
    assert "cannot be changed or removed" in message(removed)
    assert "only the operator" in message(
        setup.refused(setup.chat, name, {"result": {"isError": False, "excerpt": "x"}})
    )
    # The operator's own writes leave it as it is.
    setup.patch_status(setup.operator, name, {"phase": "Rejected"})
    status = setup.status(name)
    assert status["phase"] == "Rejected" and status["continued"]["by"] == "chat-replica-1"
