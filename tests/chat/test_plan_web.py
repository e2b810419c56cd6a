"""The agent's plan and its runbook citations on the web page, in a real headless Chromium: the plan is a
checklist that updates as steps finish, the cited runbooks are listed under the reply.

The page, the service and the browser set-up are those of test_web_page.py; the model has the todo_list
middleware and the namespace one runbook shard; the fake LLM writes a plan, searches the runbooks, marks
the plan done and answers naming the runbook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from ai_ops_api.agent_config import MiddlewareEntry
from tests.chat.test_web_page import browser, fake_model, page, send, serve_chat, wait_for_reply
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.runbooks import CRASHLOOP, DNS, config_with_runbooks, shard, write_shard_file

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["browser", "page"]  # the fixtures, shared with test_web_page.py

STARTED = [
    {"content": "Check the pod's status", "status": "in_progress"},
    {"content": "Read the previous log", "status": "pending"},
]
FINISHED = [
    {"content": "Check the pod's status", "status": "completed"},
    {"content": "Read the previous log", "status": "completed"},
]
ANSWER = "Follow pod-crashloop: the previous log shows the crash."


@pytest.fixture(scope="module")
def planning_chat_url(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("web-plan")
    runbooks = shard(CRASHLOOP, DNS, namespace="web-plan")
    write_shard_file(directory, 0, runbooks)
    plan = MiddlewareEntry(name="plan", type="todo_list", priority=50, critical=True)
    # Another timeout than test_web_page's models: langchain-openai caches its HTTP client per base URL and
    # timeout in the process, and that client belongs to the event loop of the app that made it first.
    model = fake_model("fast", "fake-fast", fake_llm.base_url, default=True).model_copy(
        update={"middleware": (plan,), "timeout_seconds": 12}
    )
    config = config_with_runbooks([model], [(0, runbooks)], namespace="web-plan")
    with serve_chat(config, directory) as url:
        deadline = time.monotonic() + 20
        while "pod-crashloop" not in httpx.get(url + "api/runbooks").text:
            assert time.monotonic() < deadline, "the runbooks never became searchable"
            time.sleep(0.1)
        yield url


@pytest.mark.browser
def test_the_plan_checklist_updates_and_the_cited_runbook_shows(
    page: Page, planning_chat_url: str, fresh_fake_llm: FakeLLM
) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("write_todos", {"todos": STARTED}),
        # The model "thinks" a while: the first version of the plan is on the page meanwhile.
        Reply.delay(2.0, then=Reply.tool_call("search_runbooks", {"query": "pod keeps restarting"})),
        Reply.tool_call("write_todos", {"todos": FINISHED}),
        Reply.text(ANSWER),
    )
    page.goto(planning_chat_url)
    send(page, "Why does my app keep restarting?")

    turn = page.locator("article.message.assistant").first
    items = turn.locator(".plan li.todo")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_class("todo in-progress")
    expect(items.nth(0).locator(".todo-text")).to_have_text("Check the pod's status")
    expect(items.nth(0).locator(".todo-state")).to_have_text("in progress")
    expect(items.nth(1).locator("input[type=checkbox]")).not_to_be_checked()
    assert turn.locator(".citations").count() == 0

    wait_for_reply(page)
    expect(items).to_have_count(2)  # the same checklist, redrawn
    assert turn.locator(".plan").count() == 1
    for index in (0, 1):
        expect(items.nth(index)).to_have_class("todo completed")
        expect(items.nth(index).locator("input[type=checkbox]")).to_be_checked()
    expect(turn.locator(".text")).to_have_text(ANSWER)

    citations = turn.locator(".citations li.citation")
    expect(citations).to_have_count(1)
    expect(citations.locator(".citation-title")).to_have_text(CRASHLOOP["title"])
    expect(citations.locator(".citation-runbook")).to_have_text("pod-crashloop")
    assert citations.locator(".citation-section").inner_text().startswith(" · ")
    # Under the reply: after the text blocks in the turn.
    order = turn.evaluate("t => [...t.children].map(c => c.className)")
    assert order.index("blocks") < order.index("citations")
    assert order.index("plan") < order.index("blocks")
