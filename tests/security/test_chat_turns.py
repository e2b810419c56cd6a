"""Inside a chat turn: what an LLM answer, a provider error and an MCP server address can make the service do.

- A tool call whose arguments are not a complete JSON object is never executed: the model gets an error
  ToolMessage saying so and may retry, the same on every route, streamed or not.
- A provider error that echoes the API key (plain, base64, URL-encoded) leaves no trace of it at rest (Redis)
  nor in the HTTP answer.
- The chat's MCP client refuses metadata and other forbidden addresses in any form (in a network namespace
  behind trap listeners).

Real servers throughout: the scripted OpenAI-compatible LLM, an MCP server in this process that records the
calls it executes, redis-server, uvicorn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.ports import bound_socket
from tests.security.netns import run_in_netns
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    mcp_server,
    model_entry,
    read_sse,
    running,
    settings_for,
    write_config,
)

# ============================================================================ 1. tool-call arguments


class RecordingMCP:
    """An MCP server (FastMCP, streamable HTTP) in this process that records every call it executes."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        mcp = FastMCP("recording", log_level="WARNING")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def echo(text: str = "") -> str:
            """Return the text unchanged."""
            self.calls.append({"text": text})
            return text

        self._socket = bound_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/mcp"
        self.server = uvicorn.Server(
            uvicorn.Config(
                mcp.streamable_http_app(), log_level="warning", lifespan="on", timeout_graceful_shutdown=1
            )
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self._task, 10)


@dataclass
class ToolEnv:
    server: RunningApp
    recorder: RecordingMCP


@pytest.fixture(scope="module")
async def tool_env(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> AsyncIterator[ToolEnv]:
    root = tmp_path_factory.mktemp("chat-turns-tools")
    recorder = RecordingMCP()
    await recorder.start()
    path = root / "agent-config.json"
    write_config(
        path,
        agent_config([model_entry("main", fake_llm.base_url)], [mcp_server("rec", recorder.url)]),
    )
    try:
        async with running(create_app(settings_for(path))) as server:
            yield ToolEnv(server, recorder)
    finally:
        await recorder.stop()


@pytest.fixture
def llm(tool_env: ToolEnv, fake_llm: FakeLLM) -> Any:
    fake_llm.reset()
    tool_env.recorder.calls.clear()
    yield fake_llm
    fake_llm.reset()


ROUTES = ("api", "api-stream", "openai", "openai-stream")


async def _openai_stream_text(response: httpx.Response) -> str:
    text = ""
    async for line in response.aiter_lines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        chunk = json.loads(line[5:])
        assert "error" not in chunk, chunk
        for choice in chunk.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    return text


async def run_route(server: RunningApp, route: str, message: str) -> dict[str, Any]:
    """One turn through `route`: {"reply": text, "tool_errors": [...] (our routes only)}."""
    async with server.client() as client:
        if route == "api":
            response = await client.post("/api/chat", json={"message": message})
            assert response.status_code == 200, response.text
            body = response.json()
            return {"reply": body["reply"], "tool_errors": [c["error"] for c in body["tool_calls"]]}
        if route == "api-stream":
            async with client.stream("POST", "/api/chat/stream", json={"message": message}) as response:
                assert response.status_code == 200
                events = await read_sse(response)
            kinds = [kind for kind, _ in events]
            assert "error" not in kinds and kinds[-1] == "done", events
            errors = [data.get("error") for kind, data in events if kind == "tool_result"]
            return {"reply": events[-1][1]["reply"], "tool_errors": errors}
        body = {"model": "main", "messages": [{"role": "user", "content": message}]}
        if route == "openai":
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            return {"reply": response.json()["choices"][0]["message"]["content"], "tool_errors": None}
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            return {"reply": await _openai_stream_text(response), "tool_errors": None}


def _tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["json"]["messages"] if m["role"] == "tool"]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content or ""


@pytest.mark.parametrize("route", ROUTES)
async def test_a_valid_tool_call_runs_the_tool(tool_env: ToolEnv, llm: FakeLLM, route: str) -> None:
    """The control case: the recorder sees executed calls, on every route."""
    llm.enqueue(Reply.raw_tool_call("echo", '{"text": "hi"}'), Reply.text("done."))
    outcome = await run_route(tool_env.server, route, "say hi")
    assert outcome["reply"] == "done."
    assert tool_env.recorder.calls == [{"text": "hi"}]
    assert [_text(m["content"]) for m in _tool_messages(llm.chat_requests[1])] == ["hi"]


BAD_ARGUMENTS = {
    "truncated object": '{"text": "hi"',
    "not JSON": "{not json",
    "array": "[1, 2]",
    "string": '"x"',
    "number": "42",
    "null": "null",
    "object then more": '{"text": "a"} {"text": "b"}',
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("arguments", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
async def test_a_tool_call_with_invalid_arguments_is_never_executed(
    tool_env: ToolEnv, llm: FakeLLM, route: str, arguments: str
) -> None:
    call_id = f"call_bad_{uuid.uuid4().hex[:8]}"
    llm.enqueue(Reply.raw_tool_call("echo", arguments, call_id=call_id), Reply.text("let me retry."))
    outcome = await run_route(tool_env.server, route, "say hi")

    assert tool_env.recorder.calls == [], "the tool ran with arguments the model never completed"
    assert outcome["reply"] == "let me retry.", "the turn went on to the model instead of ending empty"
    assert len(llm.chat_requests) == 2
    # The model's next request answers its call with an error it can act on.
    retry = llm.chat_requests[1]
    (answer,) = _tool_messages(retry)
    assert answer["tool_call_id"] == call_id
    assert "invalid arguments for tool echo" in _text(answer["content"])
    assert "expected a JSON object" in _text(answer["content"])
    assistant = [m for m in retry["json"]["messages"] if m["role"] == "assistant"][-1]
    assert [c["id"] for c in assistant["tool_calls"]] == [call_id]
    if outcome["tool_errors"] is not None:
        (error,) = outcome["tool_errors"]
        assert error is not None and "invalid arguments for tool echo" in error


async def test_one_bad_call_among_good_ones_only_that_one_is_refused(tool_env: ToolEnv, llm: FakeLLM) -> None:
    reply = Reply.tool_calls([("echo", {"text": "one"}), ("echo", {"text": "two"})], call_ids=["c-1", "c-2"])
    bad = Reply.raw_tool_call("echo", '{"text": "thr', call_id="c-3")
    llm.enqueue(Reply(kind="tool_calls", calls=(*reply.calls, *bad.calls)), Reply.text("ok."))
    outcome = await run_route(tool_env.server, "api-stream", "three echoes")
    assert outcome["reply"] == "ok."
    assert sorted(c["text"] for c in tool_env.recorder.calls) == ["one", "two"]
    answers = {m["tool_call_id"]: _text(m["content"]) for m in _tool_messages(llm.chat_requests[1])}
    assert answers["c-1"] == "one" and answers["c-2"] == "two"
    assert "invalid arguments for tool echo" in answers["c-3"]


# ============================================================================ 2. no secret at rest


def secret_forms(value: str) -> dict[str, str]:
    raw = value.encode()
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    forms = {
        "plain": value,
        "base64": standard,
        "base64 unpadded": standard.rstrip("="),
        "base64url": urlsafe,
        "base64url unpadded": urlsafe.rstrip("="),
        "percent-encoded": quote(value, safe=""),
        "form-encoded": quote_plus(value, safe=""),
    }
    return forms


def _distinct_key() -> str:
    """A key with characters URL encoding changes (/, +, =, &, space, !) whose base64 has + or / (so the
    standard and URL-safe alphabets differ): every form below is a different text."""
    while True:
        key = f"sk-T0p/Secret+Key={secrets.token_hex(6)}&odd chars!~?>"
        if len(set(secret_forms(key).values())) == len(secret_forms(key)):
            return key


SECRET_KEY = _distinct_key()


def _decoded(item: bytes) -> list[bytes]:
    """``item`` and what it carries encoded: the checkpointer stores JSON whose strings hold base64 of
    msgpack, where a secret would sit at any byte alignment; the decoded bytes are scanned too."""
    found = [item]
    try:
        document = json.loads(item)
    except ValueError:
        return found
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += list(value.values())
        elif isinstance(value, list):
            stack += value
        elif isinstance(value, str) and value:
            found.append(value.encode())
            with contextlib.suppress(ValueError):  # not base64: the text alone
                found.append(base64.b64decode(value, validate=True))
    return found


async def redis_contents(url: str) -> list[bytes]:
    """Every key name and every value stored in the Redis, whatever its type, decoded where encoded."""
    client = aioredis.from_url(url)
    found: list[bytes] = []
    try:
        async for key in client.scan_iter(match="*", count=1000):
            found.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                found.append(await client.get(key) or b"")
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    found += [field, value]
            elif kind == "list":
                found += await client.lrange(key, 0, -1)
            elif kind == "set":
                found += list(await client.smembers(key))
            elif kind == "zset":
                found += [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                for _id, fields in await client.xrange(key):
                    for field, value in fields.items():
                        found += [field, value]
            else:
                raise AssertionError(f"key {key!r} has a type this scan cannot read: {kind}")
    finally:
        await client.aclose()
    return [decoded for item in found for decoded in _decoded(item)]


async def test_a_provider_error_echoing_the_key_leaves_no_trace_at_rest_or_in_the_answer(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM
) -> None:
    forms = secret_forms(SECRET_KEY)
    other_token = f"sk-unlisted-{secrets.token_hex(8)}"
    echo = (
        f"Incorrect API key provided: {SECRET_KEY}. Sent as base64 {forms['base64']}, "
        f"{forms['base64 unpadded']} and {forms['base64url']} / {forms['base64url unpadded']}; "
        f"in the query as key={forms['percent-encoded']} or key={forms['form-encoded']}; "
        f"header Authorization: Bearer {SECRET_KEY}; also Bearer {other_token}"
    )
    (tmp_path / "secrets" / "llm").mkdir(parents=True)
    (tmp_path / "secrets" / "llm" / "api-key").write_text(SECRET_KEY + "\n")
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url, key=("llm", "api-key"))]))
    answers: list[str] = []
    app = create_app(settings_for(path, redis_url=redis_server.url))
    async with running(app) as server, server.client() as client:
        fresh_fake_llm.enqueue(Reply.error(401, echo), Reply.error(401, echo))
        plain = await client.post("/api/chat", json={"message": "hi", "thread_id": "leak-plain"})
        assert plain.status_code == 502 and plain.json()["error"]["code"] == "provider_error"
        answers.append(plain.text)
        async with client.stream(
            "POST", "/api/chat/stream", json={"message": "hi", "thread_id": "leak-stream"}
        ) as response:
            events = await read_sse(response)
        assert events[-1][0] == "error", events
        answers.append(json.dumps(events))
    # The provider really echoed the key (so the scan below has something to find if it leaks).
    assert fresh_fake_llm.chat_requests[0]["headers"]["authorization"] == f"Bearer {SECRET_KEY}"
    assert "HTTP 401" in answers[0]

    stored = await redis_contents(redis_server.url)
    assert any(b"leak-plain" in item for item in stored), "the turns were checkpointed in this Redis"
    assert any(b"Incorrect API key" in item for item in stored), "the provider error is stored (__error__)"
    for name, form in {**forms, "unlisted bearer token": other_token}.items():
        assert not [item for item in stored if form.encode() in item], f"the key ({name}) is stored in Redis"
        for answer in answers:
            assert form not in answer, f"the key ({name}) is in the HTTP answer: {answer}"


def test_the_sanitizer_knows_every_encoded_form_of_a_resolved_secret(tmp_path: Path) -> None:
    """Encoded forms are redacted for values the SecretResolver handed out, even mid-text and in JSON."""
    from ai_ops_api.agent_config import SecretRef
    from chat_service.errors import sanitize
    from chat_service.secrets import SecretResolver

    (tmp_path / "mcp").mkdir()
    (tmp_path / "mcp" / "token").write_text("opaque-token/with+chars=and more\n")
    resolver = SecretResolver(tmp_path)
    value = resolver.read(SecretRef(name="mcp", key="token"))
    for form in secret_forms(value).values():
        text = f'{{"detail": "rejected x{form}y, sent {json.dumps(form)[1:-1]}"}}'
        cleaned = sanitize(text, resolver.known_values())
        assert form not in cleaned, cleaned
    # Base64 of a longer text that contains the value (basic auth) at any of the three byte alignments.
    for prefix in ("u:", "us:", "use:"):
        blob = base64.b64encode(f"{prefix}{value}".encode()).decode()
        assert blob[8:-4] not in sanitize(f"Authorization header {blob}", resolver.known_values())


# ============================================================================ 3. MCP addresses


async def toolbox_in_namespace(workdir: str) -> dict[str, Any]:
    """(Runs in the namespace.) The chat with MCP servers at forbidden addresses, loopback not allowed;
    `meta.test` is served by a local DNS responder as 169.254.169.254. What /api/status shows."""
    from tests.mcp.test_mcp_netops import DnsResponder

    root = Path(workdir)
    servers = {
        "decimal": "http://2852039166/mcp",
        "mapped": "http://[::ffff:169.254.169.254]/mcp",
        "by-name": "http://meta.test/mcp",
        "loopback": "http://127.0.0.1/mcp",
    }
    path = root / "agent-config.json"
    write_config(path, agent_config([], [mcp_server(name, url) for name, url in servers.items()]))
    settings = settings_for(path, allow_loopback=False, mcp_connect_timeout_seconds=3.0)
    with DnsResponder({("meta.test.", "A"): ["169.254.169.254"]}, port=53):
        async with running(create_app(settings)) as server, server.client() as client:
            for _ in range(200):
                status = (await client.get("/api/status")).json()
                if all(s["error"] or s["connected"] for s in status["mcp_servers"]):
                    break
                await asyncio.sleep(0.05)
    return {s["name"]: {"connected": s["connected"], "error": s["error"]} for s in status["mcp_servers"]}


def test_the_chat_refuses_mcp_servers_at_metadata_and_loopback_addresses(tmp_path: Path) -> None:
    run = run_in_netns(toolbox_in_namespace, str(tmp_path))
    state = run.result
    assert set(state) == {"decimal", "mapped", "by-name", "loopback"}
    assert not any(server["connected"] for server in state.values()), state
    metadata = "169.254.169.254, a cloud metadata endpoint"
    assert "address refused" in state["decimal"]["error"]
    assert f"2852039166 is {metadata}" in state["decimal"]["error"]
    assert f"IPv4-mapped IPv6 for {metadata}" in state["mapped"]["error"]
    assert f"not contacted: address refused: meta.test resolves to {metadata}" in state["by-name"]["error"]
    assert "loopback" in state["loopback"]["error"] and "AI_OPS_ALLOW_LOOPBACK" in state["loopback"]["error"]
    assert run.connections == [], "a trap listener was reached"
