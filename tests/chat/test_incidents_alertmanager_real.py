"""An alert from a real Prometheus, through a real Alertmanager, becomes one Investigation that the agent
diagnoses with real MCP tools, and is resolved when the alert is.

The chain, all on 127.0.0.1: a gauge this test sets → Prometheus (scrapes and evaluates every second, a
``for: 0s`` rule) → Alertmanager (seconds-long group_wait, group_interval and repeat_interval; its webhook
carries the bearer token from a credentials file) → the chat's ``/api/alerts/alertmanager`` → an
Investigation in the Kubernetes emulator → the worker claims it → the investigator (the scripted model
through the real OpenAI client) calls the prometheus MCP server's ``query`` and the kubernetes MCP
server's ``get_resource``, then ``diagnosis`` → status Diagnosed and Events → Alertmanager's repeats
create nothing → the gauge back to normal → the resolved notification → phase Resolved.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from chat_service.incidents.store import KubernetesInvestigationStore
from mcp_servers.kubernetes.cluster import connect
from mcp_servers.kubernetes.server import KubernetesSettings, build_server
from tests.harness.alertmanager_server import AlertmanagerServer
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.prometheus_server import MetricsExporter, PrometheusServer
from tests.harness.waiting import eventually
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    mcp_server,
    model_entry,
    settings_for,
    write_config,
)
from tests.support.incidents_support import (
    HOOK,
    app_with_store,
    diagnosis,
    investigation,
    investigations,
    tokens_file,
)
from tests.support.mcp_server_helpers import McpServerProcess, ThreadedMcpServer

GAUGE = "ai_ops_test_memory_ratio"
RULE = {
    "alert": "CheckoutMemoryHigh",
    "expr": f"{GAUGE} > 0.9",
    "for": "0s",
    "labels": {"severity": "critical", "namespace": "shop", "pod": "checkout-1"},
    "annotations": {"summary": "checkout-1 uses {{ $value }} of its memory limit"},
}
SUMMARY = "checkout-1 is at 97% of its 512Mi memory limit and climbing."
# How long the chain may take on a loaded machine: generous, never a timed assertion.
LIMIT = 90.0


def checkout_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "checkout-1", "namespace": "shop", "labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "shop/checkout:2.1"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 3, "state": {"running": {}}}
            ],
        },
    }


@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    metrics = MetricsExporter()
    metrics.gauge(GAUGE).set(0.5)
    metrics.start()
    yield metrics
    metrics.stop()


@pytest.fixture
def chat_token(tmp_path: Path) -> tuple[Path, str]:
    """The chat's tokens file and the token Alertmanager's webhook (and this test) present."""
    return tokens_file(tmp_path)


@pytest.fixture
def alertmanager(chat_token: tuple[Path, str]) -> Iterator[AlertmanagerServer]:
    server = AlertmanagerServer(chat_token[1], repeat_interval="3s")
    yield server
    server.stop()


@pytest.fixture
def prometheus(exporter: MetricsExporter, alertmanager: AlertmanagerServer) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        # Prometheus' own resend delay (a minute): a firing alert's endsAt is 4 minutes ahead, so a busy
        # machine that delays a resend never makes Alertmanager resolve the alert on its own.
        [f"127.0.0.1:{exporter.port}"],
        rules=[RULE],
        alertmanager_url=alertmanager.url,
    )
    try:
        server.start()
    except RuntimeError as error:
        server.stop()
        pytest.skip(str(error))
    server.wait_for(GAUGE, bool)
    yield server
    server.stop()


@pytest.fixture
def prometheus_mcp(prometheus: PrometheusServer) -> Iterator[McpServerProcess]:
    server = McpServerProcess(["prometheus", "--prometheus-url", prometheus.url])
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def kube_mcp(k8s_emulator: Any) -> AsyncIterator[ThreadedMcpServer]:
    k8s_emulator.seed_namespace("shop")
    k8s_emulator.create(checkout_pod())
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_server(cluster, KubernetesSettings())) as server:
        yield server


def webhook_notifications(alertmanager: AlertmanagerServer) -> tuple[float, float]:
    """Alertmanager's own count of webhook notifications sent, and of those that failed."""
    text = httpx.get(f"{alertmanager.url}/metrics", timeout=5).text

    def total(metric: str) -> float:
        found = re.search(rf'^{metric}{{integration="webhook"}} (\S+)$', text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return total("alertmanager_notifications_total"), total("alertmanager_notifications_failed_total")


def events_about(k8s: Any, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in k8s.emulator.stored(kmock.resource("v1/events"), namespace)
        if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
    ]


async def test_a_real_alert_is_investigated_once_diagnosed_and_resolved(
    tmp_path: Path,
    fresh_fake_llm: FakeLLM,
    k8s_emulator: Any,
    kube_mcp: ThreadedMcpServer,
    exporter: MetricsExporter,
    prometheus: PrometheusServer,
    prometheus_mcp: McpServerProcess,
    alertmanager: AlertmanagerServer,
    chat_token: tuple[Path, str],
) -> None:
    config = tmp_path / "agent.json"
    write_config(
        config,
        agent_config(
            [model_entry("m", fresh_fake_llm.base_url, default=True)],
            [mcp_server("prometheus", prometheus_mcp.url), mcp_server("kubernetes", kube_mcp.url)],
        ),
    )
    tokens, token = chat_token
    settings = settings_for(config, auth_tokens_file=tokens, investigation_lease_seconds=10)
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
    fresh_fake_llm.enqueue(
        Reply.tool_call("query", {"expr": GAUGE}),
        Reply.tool_call("get_resource", {"kind": "pods", "name": "checkout-1", "namespace": "shop"}),
        Reply.tool_call("diagnosis", diagnosis(SUMMARY), usage=(300, 40)),
    )
    chat = RunningApp(app_with_store(settings, store))
    await chat.start()
    try:
        alertmanager.webhook_url = chat.url + HOOK
        await asyncio.to_thread(alertmanager.start)
        async with chat.client(token) as client:
            assert await investigations(client) == []
            exporter.gauges[GAUGE].set(0.97)

            async def one_investigation() -> dict[str, Any] | None:
                rows = await investigations(client)
                return rows[0] if rows else None

            row = await eventually(one_investigation, "an Investigation from the webhook", LIMIT, 0.2)
            name = row["name"]
            assert name.startswith("inv-checkoutmemoryhigh-") and row["severity"] == "critical"

            async def settled() -> dict[str, Any] | None:
                detail = await investigation(client, name)
                return detail if detail["phase"] not in ("Pending", "Running") else None

            detail = await eventually(settled, "the investigation finished", LIMIT, 0.2)
            status = detail["status"]
            assert detail["phase"] == "Diagnosed", status
            assert status["summary"] == SUMMARY and status["confidence"] == "high"
            assert status["attempts"] == 1 and status.get("alertStatus") != "resolved"
            assert detail["spec"]["alert"]["labels"]["pod"] == "checkout-1"
            assert detail["spec"]["source"] == "alertmanager"

            # The model saw the real tools' answers: Prometheus' value and the emulator's pod.
            requests = fresh_fake_llm.chat_requests
            assert len(requests) == 3
            tool_results = [
                str(m.get("content")) for m in requests[-1]["json"]["messages"] if m.get("role") == "tool"
            ]
            assert len(tool_results) == 2
            assert "0.97" in tool_results[0]
            assert "checkout-1" in tool_results[1] and "shop/checkout:2.1" in tool_results[1]
            # Only read-only tools were offered, both servers' among them.
            offered = {t["function"]["name"] for t in requests[0]["json"]["tools"]}
            assert {"query", "get_resource", "diagnosis"} <= offered

            # Events: on the Investigation (the store's namespace) and on the pod the labels name, posted
            # once the outcome is stored (so just after the phase is seen).
            (on_itself,) = await eventually(
                lambda: events_about(k8s_emulator, "default", "Investigation", name), "its Event", LIMIT, 0.1
            )
            assert on_itself["reason"] == "InvestigationDiagnosed" and on_itself["message"] == SUMMARY
            (on_pod,) = await eventually(
                lambda: events_about(k8s_emulator, "shop", "Pod", "checkout-1"), "the pod's Event", LIMIT, 0.1
            )
            assert on_pod["reason"] == "Investigated" and SUMMARY in on_pod["message"]

            # Alertmanager repeats the notification (repeat_interval 3 s): the same name, nothing new.
            sent_at_diagnosis = webhook_notifications(alertmanager)[0]
            await eventually(
                lambda: webhook_notifications(alertmanager)[0] >= sent_at_diagnosis + 2,
                "two more webhook notifications (repeats)",
                LIMIT,
                0.5,
            )
            sent, failed = webhook_notifications(alertmanager)
            assert failed == 0 and sent >= 3  # the first notification and at least two repeats
            assert [r["name"] for r in await investigations(client)] == [name]
            assert len(fresh_fake_llm.chat_requests) == 3  # and nothing ran again
            after_repeats = await investigation(client, name)
            assert after_repeats["phase"] == "Diagnosed" and after_repeats["status"]["attempts"] == 1

            # The gauge back to normal: Prometheus resolves, Alertmanager sends resolved, phase Resolved.
            exporter.gauges[GAUGE].set(0.4)

            async def resolved() -> dict[str, Any] | None:
                detail = await investigation(client, name)
                return detail if detail["phase"] == "Resolved" else None

            final = await eventually(resolved, "the investigation resolved", LIMIT, 0.2)
            assert final["status"]["alertStatus"] == "resolved"
            assert final["status"]["summary"] == SUMMARY  # the diagnosis kept
            assert [r["name"] for r in await investigations(client)] == [name]
            stored = k8s_emulator.get("ai-ops.dev/v1alpha1", "investigations", "default", name)
            assert stored is not None and stored["status"]["phase"] == "Resolved"
            assert json.dumps(stored["spec"]["alert"]["labels"], sort_keys=True) == json.dumps(
                detail["spec"]["alert"]["labels"], sort_keys=True
            )
    finally:
        await chat.stop()
