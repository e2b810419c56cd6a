"""The Incidents view, in a real headless Chromium against the real chat service: an alert with hostile
labels, investigated with the scripted fake LLM, listed, opened, and continued in the chat view."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.chat.test_incidents_core import alert, notification
from tests.chat.test_web_page import WAIT_MS, browser, fake_model, page, send, serve_chat, wait_for_reply
from tests.harness.fake_llm import Reply
from tests.support.actions_support import WriterServer
from tests.support.chat_support import agent_config, mcp_server
from tests.support.mcp_server_helpers import ThreadedMcpServer
from tests.support.runbooks import CRASHLOOP, config_with_runbooks, shard, write_shard_file

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.harness.fake_llm import FakeLLM

__all__ = ["browser", "page"]  # fixtures, used by name

HOSTILE = '<img src=x onerror="window.__pwned=1">'
DIAGNOSIS = {
    "summary": "checkout-1 is OOMKilled <b>at</b> its 512Mi limit " + HOSTILE,
    "rootCause": "the new in-memory cache needs about 700Mi",
    "confidence": "high",
    "evidence": [
        {
            "tool": "query",
            "arguments": '{"query": "container_memory_working_set_bytes{pod=\\"checkout-1\\"}"}',
            "excerpt": "last 536M, max 537M, rising " + HOSTILE,
        }
    ],
    "recommendations": ["raise the memory limit to 1Gi", "roll back the cache change"],
    "runbooksUsed": ["pod-crashloop"],
}
SCREENSHOT = Path("/tmp") / "ai-ops-web-incidents.png"


@pytest.fixture
def chat_url(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[str]:
    # The alert's runbook (matched by its alert name) is published beside the config, as the operator does.
    runbooks = shard(CRASHLOOP, namespace="web-incidents")
    directory = tmp_path_factory.mktemp("web-incidents")
    write_shard_file(directory, 0, runbooks)
    config = config_with_runbooks(
        [fake_model("fast", "fake-fast", fake_llm.base_url, default=True)],
        [(0, runbooks)],
        namespace="web-incidents",
    )
    with serve_chat(config, directory, investigation_lease_seconds=5) as url:
        yield url


def runbooks_loaded(chat_url: str, *names: str) -> None:
    held: list[str] = []
    for _ in range(600):
        answer = httpx.get(chat_url + "api/runbooks", timeout=10)
        held = [r["name"] for r in answer.json().get("runbooks", [])] if answer.status_code == 200 else []
        if set(names) <= set(held):
            return
        time.sleep(0.05)
    raise AssertionError(f"runbooks {names} not loaded: {held}")


def diagnosed(chat_url: str, name: str) -> dict[str, Any]:
    for _ in range(600):
        detail: dict[str, Any] = httpx.get(chat_url + f"api/investigations/{name}", timeout=10).json()
        if detail["phase"] not in ("Pending", "Running"):
            return detail
        time.sleep(0.05)
    raise AssertionError(f"{name} was not diagnosed: {detail}")


@pytest.mark.browser
def test_an_investigation_is_listed_opened_and_continued_in_chat(
    page: Page, chat_url: str, fresh_fake_llm: FakeLLM
) -> None:
    fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", DIAGNOSIS, usage=(300, 40)))
    runbooks_loaded(
        chat_url, "pod-crashloop"
    )  # an alert attaches the runbooks the index holds when it arrives
    labels = {**alert()["labels"], "team": HOSTILE}
    hostile = alert(labels=labels, annotations={"summary": HOSTILE})
    posted = httpx.post(chat_url + "api/alerts/alertmanager", json=notification(hostile), timeout=10)
    assert posted.status_code == 202, posted.text
    (created,) = posted.json()["investigations"]
    name = created["name"]
    assert diagnosed(chat_url, name)["phase"] == "Diagnosed"

    page.goto(chat_url)
    page.get_by_role("button", name="Incidents").click()
    expect(page.locator("#composer")).to_be_hidden()
    expect(page.locator("#incidents-store")).to_have_text(
        "Investigations in memory (lost on restart)", timeout=WAIT_MS
    )
    row = page.locator(f'#incidents-rows tr[data-name="{name}"]')
    expect(row.locator(".incident-severity")).to_have_text("critical", timeout=WAIT_MS)
    expect(row.locator(".incident-phase")).to_have_text("Diagnosed")
    expect(row.locator(".incident-summary")).to_have_text(DIAGNOSIS["summary"])
    row.get_by_role("button", name="KubePodCrashLooping").click()

    detail = page.locator("#incident-detail")
    # The hostile markup is shown as the text it is: no element was made of it, no script ran.
    expect(detail.locator(".incident-summary-text")).to_have_text(DIAGNOSIS["summary"])
    expect(detail.locator(".incident-root-cause")).to_have_text("Root cause: " + DIAGNOSIS["rootCause"])
    expect(detail.locator(".incident-confidence")).to_have_text("Confidence: high")
    expect(detail.locator(".incident-labels dd")).to_contain_text([HOSTILE])
    expect(detail.locator(".evidence-tool")).to_have_text(["query"])
    expect(detail.locator(".evidence-arguments")).to_have_text([DIAGNOSIS["evidence"][0]["arguments"]])
    expect(detail.locator(".evidence-excerpt")).to_have_text([DIAGNOSIS["evidence"][0]["excerpt"]])
    expect(detail.locator(".incident-recommendations li")).to_have_text(DIAGNOSIS["recommendations"])
    expect(detail.locator(".incident-runbooks li")).to_have_text(["pod-crashloop"])
    assert page.locator("#incidents img, #incidents b").count() == 0
    assert page.evaluate("() => window.__pwned") is None

    # A notification's link opens the page on that investigation.
    page.goto(chat_url + f"?investigation={name}")
    expect(page.locator("#incidents")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#incident-detail .incident-summary-text")).to_have_text(
        DIAGNOSIS["summary"], timeout=WAIT_MS
    )
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Continue in chat: the chat view opens the investigation's conversation, with its messages.
    page.get_by_role("button", name="Continue in chat").click()
    expect(page.locator("#incidents")).to_be_hidden()
    user = page.locator("article.message.user .body")
    expect(user).to_have_count(1, timeout=WAIT_MS)
    expect(user).to_contain_text("<alert>")
    expect(user).to_contain_text('"team": "<img src=x onerror=')  # JSON in the briefing, shown as text
    expect(page.locator("article.message.assistant .tool")).to_contain_text(["diagnosis"])
    send(page, "Is 1Gi enough for the cache?")
    turn = wait_for_reply(page, 2)
    expect(turn.locator(".text")).to_have_text("echo: Is 1Gi enough for the cache?")
    # The person's turn went to the investigation's thread, on the server, with its history.
    thread = httpx.get(chat_url + f"api/threads/investigations:{name}", timeout=10).json()
    assert [m["content"] for m in thread["messages"][-2:]] == [
        "Is 1Gi enough for the cache?",
        "echo: Is 1Gi enough for the cache?",
    ]
    assert page.locator("article.message img").count() == 0
    assert page.evaluate("() => window.__pwned") is None


@pytest.mark.browser
def test_the_fix_an_investigation_proposed_is_listed_with_its_phase(
    page: Page, tmp_path: Path, fake_llm: FakeLLM, fresh_fake_llm: FakeLLM
) -> None:
    writer = WriterServer()
    reason = "pods stuck on the old config " + HOSTILE
    fresh_fake_llm.enqueue(
        Reply.tool_call(
            "rollout_restart",
            {"kind": "Deployment", "namespace": "shop", "name": "checkout", "reason": reason},
        ),
        Reply.tool_call("diagnosis", {"summary": "checkout runs the old config", "confidence": "medium"}),
    )
    with ThreadedMcpServer(writer.mcp) as served:
        config = agent_config(
            [fake_model("fast", "fake-fast", fake_llm.base_url, default=True)],
            [mcp_server("writer", served.url)],
        )
        with serve_chat(
            config, tmp_path, investigation_lease_seconds=5, mcp_connect_timeout_seconds=30.0
        ) as url:
            posted = httpx.post(url + "api/alerts/alertmanager", json=notification(), timeout=10)
            (created,) = posted.json()["investigations"]
            (action,) = diagnosed(url, created["name"])["status"]["actions"]

            page.goto(url)
            page.get_by_role("button", name="Incidents").click()
            page.locator(f'#incidents-rows tr[data-name="{created["name"]}"] .incident-open').click()
            item = page.locator("#incident-detail .incident-actions li")
            expect(item).to_have_count(1, timeout=WAIT_MS)
            expect(item.locator(".incident-action-name")).to_have_text(action)
            expect(item.locator(".incident-action-what")).to_have_text(
                "rollout_restart Deployment shop/checkout", timeout=WAIT_MS
            )
            expect(item.locator(".incident-action-phase")).to_have_text("Pending")
            assert page.locator("#incidents img").count() == 0
    assert writer.called("rollout_restart") == []
