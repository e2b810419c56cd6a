"""No client input produces a 500: generated bodies for ``/api/chat`` and ``/v1/chat/completions`` (any JSON
value, wrong types, huge numbers, nesting, odd unicode including lone surrogates, content parts with
missing keys) against the real app under uvicorn with the fake LLM behind it, so valid turns succeed.

Streams are read to the end: an ``internal_error`` event counts as a 500 too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    model_entry,
    running,
    settings_for,
    write_config,
)

TOKEN = "tok-props-0123456789abcdef"
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every code point, lone surrogates included (they survive JSON's \\u escapes and break UTF-8 encoders).
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=24) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\u202egnp.exe", "\ufeff", "🙂" * 50, "\U0010ffff"]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool"])
part_types = st.sampled_from(["text", "image_url", "refusal", "input_audio", "file", "weird"])
# Mostly well-typed parts with keys left out at random, sometimes anything at all.
content_parts = st.lists(
    st.fixed_dictionaries(
        {"type": part_types},
        optional={
            "text": odd_text | json_values,
            "image_url": st.fixed_dictionaries({"url": odd_text}) | json_values,
            "refusal": odd_text,
        },
    )
    | st.dictionaries(odd_text, json_values, max_size=3),
    min_size=1,
    max_size=3,
)
# Well-typed messages whose content varies (so that many reach the model), and messages of anything.
typed_messages = st.fixed_dictionaries(
    {"role": roles, "content": st.one_of(content_parts, odd_text, st.none())},
    optional={"name": odd_text.filter(str.strip)},
)
junk_messages = st.fixed_dictionaries(
    {"role": roles | json_values},
    optional={
        "content": json_values,
        "name": json_values,
        "tool_call_id": odd_text | json_values,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": odd_text,
                    "type": st.just("function") | json_values,
                    "function": st.fixed_dictionaries(
                        {}, optional={"name": odd_text, "arguments": odd_text | json_values}
                    ),
                },
            ),
            max_size=2,
        ),
    },
)
messages = st.one_of(typed_messages, typed_messages, junk_messages)
user_turn = st.fixed_dictionaries({"role": st.just("user"), "content": odd_text.filter(str.strip)})
completion_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["default", "main", "no-such-model"]) | json_values,
        # Usually with a user message, so many examples are valid turns that reach the model.
        "messages": st.tuples(st.lists(messages, max_size=3), user_turn).map(lambda t: [*t[0], t[1]])
        | st.lists(messages, max_size=4)
        | json_values,
    },
    optional={
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values})
        | json_values,
        "temperature": json_values,
        "max_tokens": st.integers(min_value=-(10**30), max_value=10**30),
    },
)
chat_bodies = (
    st.fixed_dictionaries(
        {"message": odd_text | json_values},
        optional={
            "thread_id": st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True) | odd_text | json_values,
            "model": st.sampled_from(["main", "no-such-model"]) | json_values,
            "extra": json_values,
        },
    )
    | json_values
)


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> AsyncIterator[RunningApp]:
    root: Path = tmp_path_factory.mktemp("chat-properties")
    (root / "tokens").write_text(f"props:{TOKEN}\n")
    path = root / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    fake_llm.reset()
    async with running(create_app(settings_for(path, auth_tokens_file=root / "tokens"))) as app:
        yield app
    fake_llm.reset()


async def _post(server: RunningApp, path: str, body: Any) -> tuple[int, str]:
    # Encoded here with \\u escapes: httpx's own encoder refuses lone surrogates, a client need not.
    content = json.dumps(body).encode()
    async with (
        server.client(TOKEN) as client,
        client.stream("POST", path, content=content, headers={"Content-Type": "application/json"}) as answer,
    ):
        text = (await answer.aread()).decode("utf-8", "replace")
    return answer.status_code, text


def _assert_no_server_error(status: int, text: str, body: Any) -> None:
    assert status < 500, f"{status} for {body!r}: {text[:500]}"
    assert "internal_error" not in text, f"internal error in the answer to {body!r}: {text[:500]}"


@BOUNDED
@given(body=chat_bodies)
async def test_no_chat_body_produces_a_server_error(server: RunningApp, body: Any) -> None:
    status, text = await _post(server, "/api/chat", body)
    _assert_no_server_error(status, text, body)


@BOUNDED
@given(body=chat_bodies)
async def test_no_chat_stream_body_produces_a_server_error(server: RunningApp, body: Any) -> None:
    status, text = await _post(server, "/api/chat/stream", body)
    _assert_no_server_error(status, text, body)


@BOUNDED
@given(body=completion_bodies)
async def test_no_completion_body_produces_a_server_error(server: RunningApp, body: Any) -> None:
    status, text = await _post(server, "/v1/chat/completions", body)
    _assert_no_server_error(status, text, body)


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool"])
@settings(BOUNDED, max_examples=12)
@given(parts=content_parts)
async def test_no_content_parts_of_any_role_produce_a_server_error(
    server: RunningApp, role: str, parts: list[dict[str, Any]]
) -> None:
    message: dict[str, Any] = {"role": role, "content": parts}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    body = {"model": "default", "messages": [message, {"role": "user", "content": "hi"}]}
    status, text = await _post(server, "/v1/chat/completions", body)
    _assert_no_server_error(status, text, body)


async def test_an_assistant_text_part_without_its_text_is_a_clear_422(server: RunningApp) -> None:
    body = {
        "model": "default",
        "messages": [{"role": "assistant", "content": [{"type": "text"}]}, {"role": "user", "content": "hi"}],
    }
    status, text = await _post(server, "/v1/chat/completions", body)
    assert status == 422, text
    error = json.loads(text)["error"]
    assert error["code"] == "invalid_request" and "messages[0].content[0]" in error["message"]


async def test_a_lone_surrogate_in_a_content_part_is_a_clear_422(server: RunningApp) -> None:
    body = {
        "model": "default",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "\ud800"}]},
            {"role": "user", "content": "hi"},
        ],
    }
    status, text = await _post(server, "/v1/chat/completions", body)
    assert status == 422, text
    assert "lone surrogate" in json.loads(text)["error"]["message"]
