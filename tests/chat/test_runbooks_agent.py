"""The agent uses the runbooks: a built-in search_runbooks tool while the namespace has runbooks, and the
runbook sections an answer rests on cited in /api/chat, its SSE stream and /v1/chat/completions.

The scripted fake LLM calls search_runbooks for a user message that paraphrases a runbook; the tool runs
for real against the chat's index; the final answer names the runbook, so it is cited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_support import RunningApp, model_entry, read_sse, running, settings_for, write_config
from tests.support.runbooks import (
    CRASHLOOP,
    DNS,
    config_with_runbooks,
    hit_names,
    shard,
    wait_for_search,
    write_shard_file,
)

PARAPHRASE = "my app keeps restarting over and over, what do I do?"
ANSWER = "The runbook pod-crashloop applies: read the previous container's log, then fix or roll back."
EXPECTED_TITLE = CRASHLOOP["title"]


@pytest.fixture
async def app_with_runbooks(tmp_path: Path, fresh_fake_llm: FakeLLM) -> AsyncIterator[RunningApp]:
    runbooks = shard(CRASHLOOP, DNS)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    write_config(path, config_with_runbooks([model_entry("m", fresh_fake_llm.base_url)], [(0, runbooks)]))
    async with running(create_app(settings_for(path))) as app:
        async with app.client() as client:
            await wait_for_search(client, "CrashLoopBackOff", lambda r: "pod-crashloop" in hit_names(r))
        yield app


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["json"].get("tools") or []]


def script_search(fake_llm: FakeLLM, answer: str = ANSWER) -> None:
    fake_llm.enqueue(
        Reply.tool_call("search_runbooks", {"query": "application keeps restarting CrashLoopBackOff"}),
        Reply.text(answer),
    )


def returned_hits(tool_output: str) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = json.loads(tool_output)["hits"]
    return hits


async def test_the_answer_cites_the_runbook_in_api_chat_and_its_stream(
    app_with_runbooks: RunningApp, fresh_fake_llm: FakeLLM
) -> None:
    script_search(fresh_fake_llm)
    async with app_with_runbooks.client() as client:
        body = (await client.post("/api/chat", json={"message": PARAPHRASE})).json()
    assert offered_tools(fresh_fake_llm.chat_requests[0]) == ["search_runbooks"]
    call = body["tool_calls"][0]
    assert call["name"] == "search_runbooks" and call["error"] is None
    hits = returned_hits(call["output"])
    assert hits[0]["name"] == "pod-crashloop" and hits[0]["title"] == EXPECTED_TITLE
    assert set(hits[0]) == {"name", "title", "section", "score", "text"}
    # The model saw the runbook's text as the tool result.
    tool_message = fresh_fake_llm.chat_requests[1]["json"]["messages"][-1]
    assert tool_message["role"] == "tool" and "pod-crashloop" in tool_message["content"]
    assert body["reply"] == ANSWER
    assert body["citations"] == [
        {"runbook": "pod-crashloop", "title": EXPECTED_TITLE, "section": hits[0]["section"]}
    ]

    script_search(fresh_fake_llm)
    async with (
        app_with_runbooks.client() as client,
        client.stream("POST", "/api/chat/stream", json={"message": PARAPHRASE}) as response,
    ):
        events = await read_sse(response)
    kinds = [kind for kind, _ in events]
    assert kinds.index("tool_result") < kinds.index("citation") < kinds.index("done")
    assert kinds.count("citation") == 1
    citation = next(data for kind, data in events if kind == "citation")
    assert citation == {"runbook": "pod-crashloop", "title": EXPECTED_TITLE, "section": hits[0]["section"]}


async def test_the_answer_cites_the_runbook_in_the_openai_api(
    app_with_runbooks: RunningApp, fresh_fake_llm: FakeLLM
) -> None:
    request = {"model": "default", "messages": [{"role": "user", "content": PARAPHRASE}]}
    script_search(fresh_fake_llm)
    async with app_with_runbooks.client() as client:
        completion = (await client.post("/v1/chat/completions", json=request)).json()
    message = completion["choices"][0]["message"]
    assert message["content"] == ANSWER
    [annotation] = message["annotations"]
    assert annotation["type"] == "runbook_citation"
    assert annotation["runbook_citation"]["name"] == "pod-crashloop"
    assert annotation["runbook_citation"]["title"] == EXPECTED_TITLE
    section = annotation["runbook_citation"]["section"]

    script_search(fresh_fake_llm)
    chunks = []
    async with (
        app_with_runbooks.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] == "stop")
    assert final["choices"][0]["delta"]["annotations"] == [
        {
            "type": "runbook_citation",
            "runbook_citation": {"name": "pod-crashloop", "title": EXPECTED_TITLE, "section": section},
        }
    ]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == ANSWER


async def test_hits_the_answer_does_not_name_are_not_cited(
    app_with_runbooks: RunningApp, fresh_fake_llm: FakeLLM
) -> None:
    script_search(fresh_fake_llm, "Restart the pod and see.")
    async with app_with_runbooks.client() as client:
        body = (await client.post("/api/chat", json={"message": PARAPHRASE})).json()
    assert "pod-crashloop" in body["tool_calls"][0]["output"]
    assert body["citations"] == []
    # Naming a runbook without having searched it this turn is no citation either.
    fresh_fake_llm.enqueue(Reply.text("See dns-failures."))
    async with app_with_runbooks.client() as client:
        body = (await client.post("/api/chat", json={"message": "dns?"})).json()
    assert body["citations"] == []


async def test_no_runbook_matches(app_with_runbooks: RunningApp, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("search_runbooks", {"query": "quarterly marketing budget spreadsheet", "limit": 99}),
        Reply.text("No runbook for that."),
    )
    async with app_with_runbooks.client() as client:
        body = (await client.post("/api/chat", json={"message": "budget?"})).json()
    assert body["tool_calls"][0]["output"] == "no runbook matches"
    assert body["citations"] == []


async def test_no_tool_without_runbooks_or_when_turned_off(tmp_path: Path, fresh_fake_llm: FakeLLM) -> None:
    runbooks = shard(CRASHLOOP)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    write_config(path, config_with_runbooks([model_entry("m", fresh_fake_llm.base_url)]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        await client.post("/api/chat", json={"message": "hi"})
        assert offered_tools(fresh_fake_llm.chat_requests[-1]) == []
        # Runbooks arrive: the next turn has the tool.
        write_config(path, config_with_runbooks([model_entry("m", fresh_fake_llm.base_url)], [(0, runbooks)]))
        await wait_for_search(client, "CrashLoopBackOff", lambda r: bool(r["hits"]))
        await client.post("/api/chat", json={"message": "hi"})
        assert offered_tools(fresh_fake_llm.chat_requests[-1]) == ["search_runbooks"]

    settings = settings_for(path, runbook_tool=False)
    async with running(create_app(settings)) as app, app.client() as client:
        await wait_for_search(client, "CrashLoopBackOff", lambda r: bool(r["hits"]))
        await client.post("/api/chat", json={"message": "hi"})
        assert offered_tools(fresh_fake_llm.chat_requests[-1]) == []
