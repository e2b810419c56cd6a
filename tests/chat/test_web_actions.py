"""The whole ActionRequest path, in a real headless Chromium: a chat turn in which the (fake) model calls
a write tool of the bundled kubernetes-actions server, the proposal card in the page, the approval
clicked there, the real operator (ActionExecutor under kopf) executing it against the Kubernetes API
emulator, and the assistant's answer to the outcome shown in the conversation.

The chat keeps its ActionRequests in the emulator (the Kubernetes store, as in a cluster); the operator
reads them there, calls kubernetes-actions (which changes the Deployment in the emulator) and records the
result; the chat's follower sees the request Succeeded and runs the continuation turn.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.specs import API_VERSION
from chat_service.actions.store import KubernetesActionStore
from chat_service.app import create_app
from mcp_servers.kubernetes_actions.actions import RESTARTED_AT
from tests.chat.test_web_page import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.harness.fake_llm import FakeLLM, Reply
from tests.mcp.test_mcp_kubernetes_actions import build, workload
from tests.operator.test_operator_kopf import running_operator
from tests.support.chat_support import (
    agent_config,
    mcp_server,
    model_entry,
    running,
    settings_for,
    write_config,
)
from tests.support.mcp_server_helpers import ThreadedMcpServer

pytestmark = pytest.mark.browser

NS = "default"
SERVER = "kubernetes-actions"
REASON = "the pods still run the old config"
ANSWER = "Done: web in shop was restarted, new pods are rolling out."


def action_requests(emulator: Any) -> list[dict[str, Any]]:
    return emulator.list(API_VERSION, "actionrequests", NS)


async def test_propose_approve_in_the_page_operator_executes_the_answer_appears(
    k8s_emulator: Any, fresh_fake_llm: FakeLLM, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=WAIT_MS)

    k8s_emulator.seed_namespace("shop")
    k8s_emulator.create(workload("Deployment", "web", replicas=2))
    with ThreadedMcpServer(build(k8s_emulator)) as actions_mcp:
        k8s_emulator.create(
            {
                "apiVersion": API_VERSION,
                "kind": "MCPServer",
                "metadata": {"name": SERVER, "namespace": NS},
                "spec": {"transport": "streamable_http", "url": actions_mcp.url},
            }
        )
        path = tmp_path / "agent.json"
        # A timeout of its own: langchain-openai caches clients per base URL and timeout, per event loop.
        model = model_entry("m", fresh_fake_llm.base_url, default=True, timeout_seconds=17)
        write_config(path, agent_config([model], [mcp_server(SERVER, actions_mcp.url)], namespace=NS))
        app = create_app(
            settings_for(path, action_approvers=frozenset({"anonymous"}), mcp_connect_timeout_seconds=30.0)
        )
        # The Kubernetes store on the emulator, as from_service_account() gives it in a cluster.
        app.state.services.actions.store = KubernetesActionStore(k8s_emulator.url, NS, poll_seconds=0.3)
        app.state.services.actions.poll_seconds = 0.3
        fresh_fake_llm.enqueue(
            Reply.tool_call(
                "rollout_restart",
                {"kind": "Deployment", "namespace": "shop", "name": "web", "reason": REASON},
            ),
            Reply.text(ANSWER),
        )
        async with (
            running_operator(k8s_emulator, action_sweep_seconds=1.0),
            running(app) as chat,
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                page.set_default_timeout(WAIT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
                )
                await page.goto(chat.url + "/")
                box = page.get_by_label("Message", exact=True)
                await box.fill("restart web in shop, it runs the old config")
                await box.press("Enter")

                card = page.locator(".approval-card")
                await expect(card).to_have_count(1)
                await expect(card.locator(".approval-title")).to_have_text("Action proposed: rollout_restart")
                await expect(card.locator(".approval-phase")).to_have_text("Pending")
                await expect(card).to_contain_text("Deployment shop/web")
                await expect(card).to_contain_text(REASON)
                await expect(card.locator(".approval-risk")).to_have_text("risk medium")
                assert (
                    k8s_emulator.get("apps/v1", "deployments", "shop", "web")["spec"]["template"]["metadata"]
                    .get("annotations", {})
                    .get(RESTARTED_AT)
                    is None
                ), "nothing ran before the approval"

                await card.locator("textarea.approval-comment").fill("go ahead")
                await card.get_by_role("button", name="Approve").click()

                await expect(card.locator(".approval-phase")).to_have_text("Succeeded", timeout=60_000)
                await expect(page.locator(".message.action-outcome")).to_have_count(1, timeout=60_000)
                answer = page.locator("article.message.assistant .text", has_text=ANSWER)
                await expect(answer).to_have_count(1, timeout=60_000)
                # After the conversation was read again, the card shows the outcome and who decided.
                card = page.locator(".approval-card")
                await expect(card.locator(".approval-phase")).to_have_text("Succeeded")
                await expect(card.locator(".approval-decision")).to_have_text(
                    "Approved by chat:anonymous: go ahead"
                )
                await expect(card.locator(".approval-result")).to_contain_text(re.compile("web"))
                assert errors == [], errors
            finally:
                await browser.close()

        (stored,) = action_requests(k8s_emulator)
        status = stored["status"]
        assert status["phase"] == "Succeeded" and status["decision"]["by"] == "chat:anonymous"
        assert status["dryRun"]["ok"] is True and status["result"]["isError"] is False
        restarted = k8s_emulator.get("apps/v1", "deployments", "shop", "web")
        assert restarted["spec"]["template"]["metadata"]["annotations"].get(RESTARTED_AT)
        outcome = fresh_fake_llm.chat_requests[-1]["json"]["messages"][-1]["content"]
        assert f"ActionRequest {stored['metadata']['name']}" in str(outcome) and "Succeeded" in str(outcome)
