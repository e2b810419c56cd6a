"""The fake_llm fixture speaks OpenAI chat completions to the real openai and LangChain clients."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.harness.fake_llm import FakeLLM, Reply


def chat_model(fake_llm: FakeLLM, model: str = "fake-model", **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=fake_llm.base_url, api_key=SecretStr("x"), max_retries=0, model=model, **kwargs
    )


@tool
def get_pod_status(namespace: str, name: str) -> str:
    """Status of one pod."""
    return f"pod {namespace}/{name} is Running"


# -- official openai client ------------------------------------------------------------------------


async def test_openai_client_text_usage_and_recorded_request(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.text("hello there", usage=(11, 2)))
    client = openai.AsyncOpenAI(base_url=fresh_fake_llm.base_url, api_key="sk-test-key", max_retries=0)
    result = await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "hello there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 2)
    [recorded] = fresh_fake_llm.requests
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["headers"]["authorization"] == "Bearer sk-test-key"
    assert recorded["json"]["model"] == "gpt-x"
    assert recorded["json"]["messages"] == [{"role": "user", "content": "hi"}]


async def test_openai_client_streams_text_in_chunks_with_usage(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.text("one two three four five", usage=(3, 5)))
    client = openai.AsyncOpenAI(base_url=fresh_fake_llm.base_url, api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "one two three four five"
    assert len(pieces) > 1
    assert finish == "stop"
    assert usage is not None
    assert usage.total_tokens == 8


async def test_openai_client_sees_scripted_errors(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.error(429, "slow down"), Reply.error(500, "boom"))
    client = openai.AsyncOpenAI(base_url=fresh_fake_llm.base_url, api_key="x", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError, match="slow down"):
        await client.chat.completions.create(model="m", messages=messages)
    with pytest.raises(openai.InternalServerError, match="boom"):
        await client.chat.completions.create(model="m", messages=messages)
    # The queue is empty again: the default echo answer.
    result = await client.chat.completions.create(model="m", messages=messages)
    assert result.choices[0].message.content == "echo: hi"


def test_models_endpoint_lists_models(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.text("x"), model="special")
    client = openai.OpenAI(base_url=fresh_fake_llm.base_url, api_key="x", max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"fake-model", "special"} <= ids


# -- LangChain ------------------------------------------------------------------------------------


async def test_unscripted_request_echoes_last_user_message(fresh_fake_llm: FakeLLM) -> None:
    answer = await chat_model(fresh_fake_llm).ainvoke(
        [HumanMessage("first"), AIMessage("a"), HumanMessage("ping")]
    )
    assert answer.content == "echo: ping"


async def test_model_specific_queue_wins_over_general_queue(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.text("general"))
    fresh_fake_llm.enqueue(Reply.text("for big"), model="big")
    small = await chat_model(fresh_fake_llm, model="small").ainvoke("q")
    big = await chat_model(fresh_fake_llm, model="big").ainvoke("q")
    big_again = await chat_model(fresh_fake_llm, model="big").ainvoke("q")
    assert (small.content, big.content, big_again.content) == ("general", "for big", "echo: q")
    assert [r["json"]["model"] for r in fresh_fake_llm.chat_requests] == ["small", "big", "big"]


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
async def test_chat_openai_parses_tool_calls(fresh_fake_llm: FakeLLM, streaming: bool) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_calls(
            [("get_pod_status", {"namespace": "prod", "name": "web-1"}), ("echo", {"text": "é"})]
        )
    )
    model = chat_model(fresh_fake_llm, streaming=streaming).bind_tools([get_pod_status])
    if streaming:
        merged: AIMessageChunk | None = None
        async for chunk in model.astream("status?"):
            assert isinstance(chunk, AIMessageChunk)
            merged = chunk if merged is None else merged + chunk
        assert merged is not None
        calls = merged.tool_calls
    else:
        answer = await model.ainvoke("status?")
        assert isinstance(answer, AIMessage)
        calls = answer.tool_calls
    assert [(c["name"], c["args"]) for c in calls] == [
        ("get_pod_status", {"namespace": "prod", "name": "web-1"}),
        ("echo", {"text": "é"}),
    ]
    assert all(c["id"] for c in calls)
    assert fresh_fake_llm.requests[0]["json"]["tools"][0]["function"]["name"] == "get_pod_status"


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
async def test_create_agent_runs_a_tool_then_answers(fresh_fake_llm: FakeLLM, streaming: bool) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("get_pod_status", {"namespace": "prod", "name": "web-1"}, call_id="call_abc"),
        Reply.text("web-1 is running", usage=(40, 4)),
    )
    agent = create_agent(
        chat_model(fresh_fake_llm, streaming=streaming), [get_pod_status], system_prompt="ops"
    )
    inputs: Any = {"messages": [HumanMessage("how is web-1?")]}
    if streaming:
        tokens = []
        async for message, _meta in agent.astream(inputs, stream_mode="messages"):
            if isinstance(message, AIMessageChunk) and isinstance(message.content, str):
                tokens.append(message.content)
        assert "".join(tokens) == "web-1 is running"
    else:
        state = await agent.ainvoke(inputs)
        assert state["messages"][-1].content == "web-1 is running"
        tool_message = state["messages"][-2]
        assert isinstance(tool_message, ToolMessage)
        assert tool_message.content == "pod prod/web-1 is Running"

    first, second = fresh_fake_llm.chat_requests
    assert first["json"]["messages"][0] == {"role": "system", "content": "ops"}
    tool_result = second["json"]["messages"][-1]
    assert tool_result["role"] == "tool"
    assert tool_result["tool_call_id"] == "call_abc"
    assert "pod prod/web-1 is Running" in json.dumps(tool_result["content"])


# -- failures: slow and hanging answers -----------------------------------------------------------


async def test_delay_then_reply_and_client_timeout(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.delay(0.2, then=Reply.text("late")))
    assert (await chat_model(fresh_fake_llm).ainvoke("q")).content == "late"
    fresh_fake_llm.enqueue(Reply.delay(5))
    with pytest.raises(openai.APITimeoutError):
        await chat_model(fresh_fake_llm, timeout=0.2).ainvoke("q")


async def test_hang_never_answers_until_reset(fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.hang())
    async with httpx.AsyncClient(base_url=fresh_fake_llm.base_url) as client:
        request = asyncio.create_task(
            client.post(
                "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "q"}]}
            )
        )
        done, _ = await asyncio.wait([request], timeout=0.5)
        assert not done, "a hanging reply answered"
        fresh_fake_llm.reset()
        response = await asyncio.wait_for(request, timeout=5)
    assert response.status_code == 503
    assert fresh_fake_llm.requests == []


async def test_a_held_reply_answers_once_released(fresh_fake_llm: FakeLLM) -> None:
    gate = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(gate, then=Reply.text("released")))
    model = chat_model(fresh_fake_llm)
    request = asyncio.create_task(model.ainvoke("q"))
    done, _ = await asyncio.wait([request], timeout=0.5)
    assert not done, "a held reply answered before its release"
    gate.set()
    assert (await asyncio.wait_for(request, timeout=10)).content == "released"


# -- embeddings: the OpenAI, Azure OpenAI and Ollama dialects -------------------------------------


async def test_embeddings_in_the_openai_azure_and_ollama_dialects(fresh_fake_llm: FakeLLM) -> None:
    import ollama

    from tests.harness.fake_llm import fake_embedding

    texts = ["node not ready", "disk full"]
    plain = openai.AsyncOpenAI(base_url=fresh_fake_llm.base_url, api_key="sk-plain", max_retries=0)
    got = await plain.embeddings.create(model="emb", input=texts, encoding_format="float")
    assert [d.embedding for d in got.data] == [fake_embedding(t) for t in texts]
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=fresh_fake_llm.origin,
        azure_deployment="emb-deploy",
        api_version="2024-06-01",
        api_key="azure-key",
        max_retries=0,
    )
    got = await azure.embeddings.create(model="emb", input=texts, encoding_format="float")
    assert [d.embedding for d in got.data] == [fake_embedding(t) for t in texts]
    local = ollama.AsyncClient(host=fresh_fake_llm.origin)
    answer = await local.embed(model="nomic-embed-text", input=texts)
    assert [list(v) for v in answer["embeddings"]] == [fake_embedding(t) for t in texts]

    first, second, third = fresh_fake_llm.embedding_requests
    assert (first["path"], first["headers"]["authorization"]) == ("/v1/embeddings", "Bearer sk-plain")
    assert second["path"] == "/openai/deployments/emb-deploy/embeddings"
    assert second["query"] == "api-version=2024-06-01" and second["headers"]["api-key"] == "azure-key"
    assert (third["path"], third["json"]["model"]) == ("/api/embed", "nomic-embed-text")

    fresh_fake_llm.fail_embeddings(503)
    with pytest.raises(openai.InternalServerError):
        await azure.embeddings.create(model="emb", input=texts)
    with pytest.raises(ollama.ResponseError) as refused:
        await local.embed(model="nomic-embed-text", input=texts)
    assert refused.value.status_code == 503
    # Token ids are refused: a client that tokenizes (and so needs a tokenizer) shows up in the tests.
    fresh_fake_llm.fail_embeddings(None)
    with pytest.raises(openai.BadRequestError):
        await plain.embeddings.create(model="emb", input=[[1, 2, 3]])
