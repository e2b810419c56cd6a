"""Investigations in a real kube-apiserver, written by the chat with the chart's chat Role and nothing more.

The chart is rendered for this test's namespace; its chat ServiceAccount, Role and RoleBinding are created
as helm would, and the chat's investigation store authenticates with a TokenRequest token of that
ServiceAccount. Then: an Alertmanager notification → the Investigation is created once (the repeat is the
API server's 409), claimed through a resourceVersion-preconditioned status patch, diagnosed by the
scripted model, told as Events (on the Investigation, and on the pod the labels name in the chat's own
namespace; an Event about another namespace's pod is refused by RBAC and only logged), and resolved. A
flood of labels and a megabyte annotation, capped by the chat, is accepted by the CRD's own bounds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from ai_ops_api.specs import GROUP, VERSION
from chat_service.incidents.store import KubernetesInvestigationStore
from tests.chat.test_incidents_core import alert, notification
from tests.cluster.controlplane import ControlPlane
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chart_render import load_chart, render
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config
from tests.support.incidents_support import HOOK, app_with_store, diagnosis, investigation, investigations

LIMIT = 60.0
SUMMARY = "checkout-1 restarts: OOMKilled at its 512Mi limit since the last rollout."


@pytest.fixture(scope="module")
def chat_namespace(ai_ops_crds: ControlPlane) -> str:
    return ai_ops_crds.create_namespace("incidents")


@pytest.fixture(scope="module")
def chat_token(ai_ops_crds: ControlPlane, chat_namespace: str) -> Iterator[str]:
    """A token of the chart's chat ServiceAccount, bound to the chart's chat Role in ``chat_namespace``."""
    rendered = render(load_chart(), {}, namespace=chat_namespace)
    account = rendered.get("ServiceAccount", "ai-ops-chat")
    role = rendered.get("Role", "ai-ops-chat")
    binding = rendered.get("RoleBinding", "ai-ops-chat")
    with ai_ops_crds.api_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(chat_namespace, account)
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(chat_namespace, role)
        rbac.create_namespaced_role_binding(chat_namespace, binding)
    yield ai_ops_crds.service_account_token(chat_namespace, account["metadata"]["name"])


def stored_investigations(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    with plane.api_client() as api:
        listing = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "investigations"
        )
    items: list[dict[str, Any]] = listing["items"]
    return items


def events(plane: ControlPlane, namespace: str) -> list[Any]:
    with plane.api_client() as api:
        return list(client.CoreV1Api(api).list_namespaced_event(namespace).items)


async def test_an_alert_is_investigated_once_diagnosed_and_resolved_with_the_chat_role(
    tmp_path: Path,
    ai_ops_crds: ControlPlane,
    chat_namespace: str,
    chat_token: str,
    fresh_fake_llm: FakeLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plane, ns = ai_ops_crds, chat_namespace
    config = tmp_path / "agent.json"
    write_config(config, agent_config([model_entry("m", fresh_fake_llm.base_url, default=True)]))
    settings = settings_for(config, investigation_lease_seconds=10)
    store = KubernetesInvestigationStore(
        plane.url, ns, token=chat_token, ca_path=plane.certs.ca_cert, poll_seconds=0.5
    )
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": ns,
        "pod": "checkout-1",
        "severity": "critical",
    }
    elsewhere = {**labels, "alertname": "KubePodCrashLoopingElsewhere", "namespace": "shop"}
    fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis(SUMMARY), usage=(200, 30)))
    caplog.set_level(logging.WARNING, logger="ai_ops.chat.incidents")
    async with running(app_with_store(settings, store)) as chat, chat.client() as http:
        first = await http.post(HOOK, json=notification(alert(labels=labels)))
        assert first.status_code == 202, first.text
        ((name, created),) = [(i["name"], i["created"]) for i in first.json()["investigations"]]
        assert created
        repeat = await http.post(HOOK, json=notification(alert(labels=labels)))
        assert repeat.json() == {"investigations": [{"name": name, "created": False}]}
        assert [i["metadata"]["name"] for i in stored_investigations(plane, ns)] == [name]

        async def settled() -> dict[str, Any] | None:
            detail = await investigation(http, name)
            return detail if detail["phase"] not in ("Pending", "Running") else None

        detail = await eventually(settled, "the investigation diagnosed", LIMIT, 0.1)
        status = detail["status"]
        assert detail["phase"] == "Diagnosed", status
        assert status["summary"] == SUMMARY and status["attempts"] == 1 and status["claimedBy"]
        assert "leaseExpiresAt" not in status and status["usage"]["total"] >= 230

        # Events in the chat's namespace: on the Investigation (with its uid) and on the named pod.
        def told() -> list[Any]:
            return [e for e in events(plane, ns) if e.reason in ("InvestigationDiagnosed", "Investigated")]

        found = await eventually(lambda: len(told()) == 2 and told(), "both Events", LIMIT, 0.1)
        by_reason = {e.reason: e for e in found}
        on_itself, on_pod = by_reason["InvestigationDiagnosed"], by_reason["Investigated"]
        stored = stored_investigations(plane, ns)[0]
        assert (on_itself.involved_object.kind, on_itself.involved_object.name) == ("Investigation", name)
        assert on_itself.involved_object.uid == stored["metadata"]["uid"] and on_itself.message == SUMMARY
        assert (on_pod.involved_object.kind, on_pod.involved_object.name) == ("Pod", "checkout-1")
        assert SUMMARY in on_pod.message

        # Resolved: the phase follows, the diagnosis stays.
        resolved = await http.post(
            HOOK, json=notification(alert(status="resolved", labels=labels), status="resolved")
        )
        assert resolved.status_code == 202
        final = await investigation(http, name)
        assert final["phase"] == "Resolved" and final["status"]["alertStatus"] == "resolved"
        assert final["status"]["summary"] == SUMMARY
        assert stored_investigations(plane, ns)[0]["status"]["phase"] == "Resolved"

        # An alert about a pod in another namespace: diagnosed, its pod Event refused by RBAC and logged.
        fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis("elsewhere too")))
        other = (await http.post(HOOK, json=notification(alert(labels=elsewhere)))).json()["investigations"]
        other_name = other[0]["name"]

        async def other_settled() -> dict[str, Any] | None:
            detail = await investigation(http, other_name)
            return detail if detail["phase"] not in ("Pending", "Running") else None

        assert (await eventually(other_settled, "the other diagnosed", LIMIT, 0.1))["phase"] == "Diagnosed"
        await eventually(
            lambda: any("403" in r.getMessage() and "shop" in r.getMessage() for r in caplog.records),
            "the refused Event logged",
            LIMIT,
            0.1,
        )

        # A flood: capped by the chat, accepted within the CRD's bounds by the API server.
        flood = {f"l{i:05}": "v" for i in range(10_000)} | {"alertname": "Flood", "namespace": ns}
        fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis("a flood")))
        flooded = await http.post(
            HOOK, json=notification(alert(labels=flood, annotations={"description": "x" * 1_000_000}))
        )
        assert flooded.status_code == 202, flooded.text
        flood_name = flooded.json()["investigations"][0]["name"]
        (kept,) = [i for i in stored_investigations(plane, ns) if i["metadata"]["name"] == flood_name]
        assert len(kept["spec"]["alert"]["labels"]) == 64
        assert len(kept["spec"]["alert"]["annotations"]["description"]) == 8192
        assert sorted(i["name"] for i in await investigations(http)) == sorted([name, other_name, flood_name])
