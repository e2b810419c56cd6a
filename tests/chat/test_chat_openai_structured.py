"""The OpenAI-compatible API with what OpenAI clients send beyond messages: ``response_format`` is honoured
through the agent's structured output; client ``tools`` and ``n > 1`` are refused with a 400 saying why;
``/v1/models`` lists ``default`` and answers single models. Through the official SDK and LangChain's
``ChatOpenAI`` against our ``/v1``, with the scripted LLM behind the agent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from ai_ops_api.agent_config import MiddlewareEntry
from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    mcp_server,
    model_entry,
    running,
    settings_for,
    write_config,
)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}


class PodVerdict(BaseModel):
    """Whether a pod is healthy, and why."""

    pod: str
    healthy: bool
    reason: str


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> AsyncIterator[RunningApp]:
    root = tmp_path_factory.mktemp("openai-structured")
    redacting = MiddlewareEntry(
        name="redact-out",
        type="pii",
        priority=5,
        config={"piiTypes": ["email"], "applyToInput": False, "applyToOutput": True},
    )
    path = root / "agent-config.json"
    write_config(
        path,
        agent_config(
            [
                model_entry("main", fake_llm.base_url, default=True),
                model_entry("redacted", fake_llm.base_url, middleware=[redacting]),
            ],
            [mcp_server("fx", mcp_fixture_servers.healthy.url)],
        ),
    )
    async with running(create_app(settings_for(path))) as app:
        yield app


@pytest.fixture
def llm(fake_llm: FakeLLM) -> Any:
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


@pytest.fixture
async def sdk(server: RunningApp) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    yield client
    await client.close()


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["json"].get("tools", [])]


def weather_format(name: str = "weather") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": WEATHER_SCHEMA, "strict": True}}


async def test_json_schema_reply_is_the_json_of_the_structured_answer(
    sdk: openai.AsyncOpenAI, llm: FakeLLM
) -> None:
    llm.enqueue(Reply.tool_call("weather", {"city": "Oslo", "celsius": 3.5}))
    completion = await sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "weather in Oslo?"}],
        response_format=weather_format(),  # type: ignore[arg-type]
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Oslo", "celsius": 3.5}
    assert completion.choices[0].finish_reason == "stop"
    # The agent asked its model for the answer as a forced call of a tool shaped like the schema.
    request = llm.chat_requests[0]["json"]
    assert "weather" in offered_tools(llm.chat_requests[0]) and request["tool_choice"] == "required"
    parameters = next(t for t in request["tools"] if t["function"]["name"] == "weather")["function"]
    assert parameters["parameters"]["properties"] == WEATHER_SCHEMA["properties"]


async def test_the_agent_runs_its_own_tools_before_the_structured_answer(
    sdk: openai.AsyncOpenAI, llm: FakeLLM
) -> None:
    llm.enqueue(
        Reply.tool_call("add", {"a": 2, "b": 3}), Reply.tool_call("weather", {"city": "Sum", "celsius": 5})
    )
    completion = await sdk.chat.completions.create(
        model="main",
        messages=[{"role": "user", "content": "add 2 and 3, as weather"}],
        response_format=weather_format(),  # type: ignore[arg-type]
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Sum", "celsius": 5}
    tool_results = [m for m in llm.chat_requests[1]["json"]["messages"] if m["role"] == "tool"]
    assert [json.dumps(m["content"]) for m in tool_results] == [json.dumps([{"type": "text", "text": "5"}])]


async def test_streamed_json_schema_reply_is_the_json_text(sdk: openai.AsyncOpenAI, llm: FakeLLM) -> None:
    llm.enqueue(Reply.tool_call("weather", {"city": "Bergen", "celsius": 9}))
    stream = await sdk.chat.completions.create(
        model="main",
        messages=[{"role": "user", "content": "weather in Bergen?"}],
        response_format=weather_format(),  # type: ignore[arg-type]
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert json.loads(text) == {"city": "Bergen", "celsius": 9}


async def test_json_object_reply_is_a_json_object(sdk: openai.AsyncOpenAI, llm: FakeLLM) -> None:
    llm.enqueue(Reply.tool_call("json_object", {"pods": ["web-1"], "failing": 1}))
    completion = await sdk.chat.completions.create(
        model="main",
        messages=[{"role": "user", "content": "failing pods as JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"pods": ["web-1"], "failing": 1}


async def test_agents_are_cached_per_response_format(sdk: openai.AsyncOpenAI, llm: FakeLLM) -> None:
    for name, city in (("weather_a", "Oslo"), ("weather_b", "Rome"), ("weather_a", "Bonn")):
        llm.enqueue(Reply.tool_call(name, {"city": city, "celsius": 1}))
        completion = await sdk.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": city}],
            response_format=weather_format(name),  # type: ignore[arg-type]
        )
        assert json.loads(completion.choices[0].message.content or "")["city"] == city
    offered = [offered_tools(r) for r in llm.chat_requests]
    assert ["weather_a" in o and "weather_b" not in o for o in offered] == [True, False, True]
    assert "weather_b" in offered[1]
    # A plain request after them gets no structured-output tool at all.
    await sdk.chat.completions.create(model="main", messages=[{"role": "user", "content": "plain"}])
    assert not {"weather_a", "weather_b"} & set(offered_tools(llm.chat_requests[-1]))


async def test_a_model_that_ignores_the_format_is_a_provider_error_not_bad_json(
    sdk: openai.AsyncOpenAI, llm: FakeLLM
) -> None:
    llm.enqueue(Reply.text("It is sunny in Oslo."))
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "weather?"}],
            response_format=weather_format(),  # type: ignore[arg-type]
        )
    assert raised.value.status_code == 502 and "requested JSON format" in raised.value.message


async def test_output_redaction_and_structured_output_do_not_mix(
    sdk: openai.AsyncOpenAI, llm: FakeLLM
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(
            model="redacted",
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
        )
    assert "redacts its answers" in raised.value.message and llm.chat_requests == []


async def test_langchain_with_structured_output_gets_a_parsed_object(
    server: RunningApp, llm: FakeLLM
) -> None:
    llm.enqueue(Reply.tool_call("PodVerdict", {"pod": "web-1", "healthy": False, "reason": "OOMKilled"}))
    client = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model="default", max_retries=0)  # type: ignore[arg-type]
    verdict = await client.with_structured_output(PodVerdict).ainvoke("is web-1 healthy?")
    assert verdict == PodVerdict(pod="web-1", healthy=False, reason="OOMKilled")


async def test_langchain_bind_tools_gets_a_clear_400(server: RunningApp, llm: FakeLLM) -> None:
    @tool
    def restart_pod(name: str) -> str:
        """Restart a pod."""
        return name

    client = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model="main", max_retries=0)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as raised:
        await client.bind_tools([restart_pod]).ainvoke("restart web-1")
    error = raised.value
    assert error.code == "invalid_request" and error.param == "tools"
    assert "client-side tools cannot be offered" in error.message
    assert llm.chat_requests == [], "nothing reached the model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    sdk: openai.AsyncOpenAI, llm: FakeLLM, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(
            model="main",
            messages=[
                {"role": "user", "content": "x"},
            ],
            **extra,
        )
    assert raised.value.param == param and param in raised.value.message
    assert llm.chat_requests == []


async def test_n_of_one_and_tool_choice_none_are_fine(sdk: openai.AsyncOpenAI, llm: FakeLLM) -> None:
    completion = await sdk.chat.completions.create(
        model="main", messages=[{"role": "user", "content": "hi"}], n=1, tool_choice="none"
    )
    assert completion.choices[0].message.content == "echo: hi"


async def test_models_list_default_and_answer_one_model(sdk: openai.AsyncOpenAI, server: RunningApp) -> None:
    assert [m.id for m in (await sdk.models.list()).data] == ["main", "redacted", "default"]
    assert (await sdk.models.retrieve("main")).id == "main"
    assert (await sdk.models.retrieve("default")).owned_by == "ai-ops"
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.models.retrieve("gpt-9")
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert "gpt-9" in raised.value.message
    async with server.client() as client:
        body = (await client.get("/v1/models/gpt-9")).json()
    assert body["error"]["type"] == "invalid_request_error" and set(body["error"]) >= {"code", "message"}


async def test_a_schema_that_is_not_an_object_is_refused(sdk: openai.AsyncOpenAI, llm: FakeLLM) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "x"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": {"type": "string"}},
            },
        )
    assert "JSON object" in raised.value.message and llm.chat_requests == []
