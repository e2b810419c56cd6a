"""The conversation list and what a reload keeps, in a real headless Chromium against the real chat service.

Each test gets a chat service of its own (the caller is ``anonymous`` with auth off, so a shared one would
list the other tests' conversations), with a model on the scripted fake LLM and the healthy fixture MCP server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from ai_ops_api.agent_config import AgentConfig, MCPServerEntry
from tests.chat.test_web_page import (
    WAIT_MS,
    browser,
    fake_model,
    page,
    send,
    serve_chat,
    stored,
    wait_for_reply,
)
from tests.harness.fake_llm import Reply

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.harness.fake_llm import FakeLLM
    from tests.harness.mcp_servers import McpFixtureServers

__all__ = ["browser", "page"]  # fixtures, used by name


@pytest.fixture
def chat_url(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM, mcp_fixture_servers: McpFixtureServers
) -> Iterator[str]:
    config = AgentConfig(
        namespace="web-threads",
        models=(fake_model("fast", "fake-fast", fake_llm.base_url, default=True),),
        mcp_servers=(
            MCPServerEntry(
                name="fixture",
                transport="streamable_http",
                url=mcp_fixture_servers.healthy.url,
                health="Healthy",
            ),
        ),
    ).finalize()
    with serve_chat(config, tmp_path_factory.mktemp("web-threads")) as url:
        yield url


def listed_titles(page: Page) -> list[str]:
    titles: list[str] = page.locator("#thread-list .thread-title").all_inner_texts()
    return titles


@pytest.mark.browser
def test_conversation_list_open_and_delete(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    page.goto(chat_url)
    expect(page.locator("#thread-list-note")).to_have_text("No conversations yet.", timeout=WAIT_MS)
    send(page, "How are the pods in default?")
    wait_for_reply(page)
    first = stored(page, "ai-ops.thread")
    # Listed as soon as the reply is complete, titled by its first message.
    expect(page.locator("#thread-list .thread-title")).to_have_text(["How are the pods in default?"])

    page.click("#new-conversation")
    send(page, "Which certificates expire this month?")
    wait_for_reply(page)
    second = stored(page, "ai-ops.thread")
    assert first and second and first != second

    page.reload()
    items = page.locator("#thread-list .thread-item")
    expect(items).to_have_count(2, timeout=WAIT_MS)
    # Newest first; the open conversation is marked.
    assert listed_titles(page) == ["Which certificates expire this month?", "How are the pods in default?"]
    assert items.nth(0).get_attribute("data-thread-id") == second
    assert items.nth(0).locator(".thread-open").get_attribute("aria-current") == "true"
    assert items.nth(1).locator(".thread-open").get_attribute("aria-current") is None

    # Opening the older one shows its history and continues it.
    items.nth(1).locator(".thread-open").click()
    expect(page.locator("article.message.user .body")).to_have_text(["How are the pods in default?"])
    expect(page.locator("article.message.assistant .text")).to_have_text(
        ["echo: How are the pods in default?"]
    )
    assert stored(page, "ai-ops.thread") == first
    assert items.nth(1).locator(".thread-open").get_attribute("aria-current") == "true"
    send(page, "And in kube-system?")
    wait_for_reply(page, 2)
    # The continued conversation moves to the top; its title stays its first message.
    expect(page.locator("#thread-list .thread-title")).to_have_text(
        ["How are the pods in default?", "Which certificates expire this month?"]
    )

    # Deleting asks first; Cancel keeps it.
    items.nth(1).get_by_role(
        "button", name="Delete conversation: Which certificates expire this month?"
    ).click()
    page.get_by_role("button", name="Cancel").click()
    expect(items).to_have_count(2)

    # Deleting the open conversation: gone from the list, the page and the server.
    items.nth(0).get_by_role("button", name="Delete conversation: How are the pods in default?").click()
    page.get_by_role("button", name="Yes, delete conversation: How are the pods in default?").click()
    expect(page.locator("#thread-list .thread-title")).to_have_text(["Which certificates expire this month?"])
    # Waited for, not read at once: a list request still in flight from the last reply can be answered
    # after the server deleted the thread but before the DELETE's own answer, which is what empties the page.
    expect(page.locator("article.message")).to_have_count(0)
    assert stored(page, "ai-ops.thread") is None
    assert httpx.get(chat_url + f"api/threads/{first}", timeout=10).status_code == 404
    listed = httpx.get(chat_url + "api/threads", timeout=10).json()["threads"]
    assert [t["id"] for t in listed] == [second]

    page.reload()
    expect(page.locator("#thread-list .thread-title")).to_have_text(["Which certificates expire this month?"])


@pytest.mark.browser
def test_reload_keeps_model_and_token_counts(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("get_pod_status", {"namespace": "default", "name": "web-1"}, usage=(120, 9)),
        Reply.text("web-1 is running.", usage=(150, 6)),
    )
    page.goto(chat_url)
    send(page, "How is web-1?")
    turn = wait_for_reply(page)
    live = (turn.locator(".role").inner_text(), turn.locator(".meta").inner_text())
    assert live == ("Assistant · fast", "270 tokens in · 15 tokens out")

    page.reload()
    turn = page.locator("article.message.assistant")
    expect(turn.locator(".meta")).to_have_text("270 tokens in · 15 tokens out", timeout=WAIT_MS)
    assert turn.locator(".role").inner_text() == "Assistant · fast"
