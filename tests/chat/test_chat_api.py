"""The chat HTTP API end to end: real MCP servers, the scripted OpenAI-compatible LLM, uvicorn on a port.

One app (in-memory conversations, auth on) is shared by the module; tests reset the fake LLM and use
their own thread ids.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.mcp_fixture_server import pod_status_text
from tests.harness.ports import bound_socket, free_port
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

ALICE, BOB = "tok-alice-0123456789", "tok-bob-9876543210"
PROVIDER_KEY = "sk-test-providerkey-abcdef123456"


# -- an MCP server in this process that counts initialize handshakes and tool calls -------------------


class CountingMCP:
    """A stateful FastMCP server whose ASGI wrapper counts JSON-RPC methods as they arrive."""

    def __init__(self) -> None:
        self.methods: dict[str, int] = {}
        mcp = FastMCP("counting", log_level="WARNING")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def count_ping(text: str) -> str:
            """Answer pong with the text."""
            return f"pong {text}"

        self.inner: ASGIApp = mcp.streamable_http_app()
        self._socket = bound_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/mcp"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self._app, interface="asgi3", log_level="warning", lifespan="on", timeout_graceful_shutdown=1
            )
        )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body)
            for item in payload if isinstance(payload, list) else [payload]:
                method = item.get("method")
                if method:
                    self.methods[method] = self.methods.get(method, 0) + 1
        except ValueError:
            pass

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.inner(scope, replay, send)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self._task, 10)


@dataclass
class Env:
    server: RunningApp
    llm: FakeLLM
    counting: CountingMCP
    tokens_file: Path

    def client(self, token: str | None = ALICE) -> Any:
        return self.server.client(token)


@pytest.fixture(scope="module")
async def env(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("chat-api")
    (root / "secrets" / "mcp-auth").mkdir(parents=True)
    (root / "secrets" / "mcp-auth" / "token").write_text(f"Bearer {mcp_fixture_servers.auth.token}\n")
    (root / "secrets" / "llm").mkdir(parents=True)
    (root / "secrets" / "llm" / "api-key").write_text(PROVIDER_KEY + "\n")
    tokens_file = root / "tokens"
    tokens_file.write_text(f"# callers\nalice:{ALICE}\nbob:{BOB}\n")
    counting = CountingMCP()
    await counting.start()
    config = agent_config(
        models=[
            model_entry("main", fake_llm.base_url, default=True, key=("llm", "api-key")),
            model_entry("other", fake_llm.base_url, system_prompt="You are terse."),
        ],
        servers=[
            mcp_server("fx", mcp_fixture_servers.healthy.url, exclude=["get_pod_status"]),
            mcp_server(
                "secured",
                mcp_fixture_servers.auth.url,
                include=["get_pod_status"],
                secret_headers={"Authorization": ("mcp-auth", "token")},
            ),
            mcp_server("counting", counting.url),
            mcp_server("down", f"http://127.0.0.1:{free_port()}/mcp"),
            mcp_server("hangs", mcp_fixture_servers.hanging.url),
        ],
    )
    path = root / "agent-config.json"
    write_config(path, config)
    settings = settings_for(
        path,
        auth_tokens_file=tokens_file,
        mcp_connect_timeout_seconds=2.0,
        mcp_tool_timeout_seconds=1.5,
        mcp_retry_interval_seconds=3600,
    )
    app = create_app(settings)
    async with running(app) as server:
        yield Env(server, fake_llm, counting, tokens_file)
    await counting.stop()


@pytest.fixture
def llm(env: Env) -> Any:
    env.llm.reset()
    yield env.llm
    env.llm.reset()


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["json"]["messages"] if m["role"] == "tool"]


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content or ""


# -- turns -------------------------------------------------------------------------------------------


async def test_turn_with_a_tool_call(env: Env, llm: FakeLLM) -> None:
    llm.enqueue(Reply.tool_call("add", {"a": 2, "b": 40}), Reply.text("The sum is 42.", usage=(30, 6)))
    async with env.client() as client:
        response = await client.post("/api/chat", json={"message": "What is 2 + 40?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "The sum is 42."
    assert body["model"] == "main"
    assert body["tool_calls"] == [{"name": "add", "args": {"a": 2, "b": 40}, "output": "42", "error": None}]
    assert body["usage"]["output_tokens"] >= 6 and body["usage"]["input_tokens"] >= 30
    # The model saw the tool's real output in its second call, after our default system prompt.
    second = llm.chat_requests[1]["json"]
    assert [text_of(m["content"]) for m in tool_messages(llm.chat_requests[1])] == ["42"]
    assert (
        second["messages"][0]["role"] == "system"
        and "operations assistant" in second["messages"][0]["content"]
    )
    assert second["model"] == "main"
    # The MCP tool list the model was offered: filters applied, unreachable servers left out.
    offered = sorted(t["function"]["name"] for t in llm.chat_requests[0]["json"]["tools"])
    assert offered == ["add", "count_ping", "echo", "fail", "get_pod_status", "slow"]


async def test_streamed_turn_with_a_tool_call(env: Env, llm: FakeLLM) -> None:
    llm.enqueue(
        Reply.tool_call("get_pod_status", {"namespace": "prod", "name": "web-1"}),
        Reply.text("web-1 is running fine."),
    )
    async with (
        env.client() as client,
        client.stream(
            "POST", "/api/chat/stream", json={"message": "How is web-1 in prod?", "thread_id": "stream-1"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0][1] == {"thread_id": "stream-1", "model": "main"}
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("token")
    call = next(data for kind, data in events if kind == "tool_call")
    result = next(data for kind, data in events if kind == "tool_result")
    assert call == {"name": "get_pod_status", "args": {"namespace": "prod", "name": "web-1"}}
    assert result == {"name": "get_pod_status", "output": pod_status_text("prod", "web-1")}
    tokens = [data["text"] for kind, data in events if kind == "token"]
    assert len(tokens) > 1, "the reply arrives in several token events"
    assert "".join(tokens) == events[-1][1]["reply"] == "web-1 is running fine."
    assert set(events[-1][1]["usage"]) == {"input_tokens", "output_tokens"}
    assert llm.chat_requests[0]["json"]["stream"] is True


async def test_conversation_continues_and_thread_reads_back(env: Env, llm: FakeLLM) -> None:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    async with env.client() as client:
        first = await client.post("/api/chat", json={"message": "my name is Ada", "thread_id": thread})
        second = await client.post("/api/chat", json={"message": "what is my name?", "thread_id": thread})
        assert first.status_code == second.status_code == 200
        sent = [
            text_of(m["content"]) for m in llm.chat_requests[1]["json"]["messages"] if m["role"] != "system"
        ]
        assert sent == ["my name is Ada", "echo: my name is Ada", "what is my name?"]
        thread_view = (await client.get(f"/api/threads/{thread}")).json()
        assert thread_view["thread_id"] == thread
        assert [(m["role"], m["content"]) for m in thread_view["messages"]] == [
            ("user", "my name is Ada"),
            ("assistant", "echo: my name is Ada"),
            ("user", "what is my name?"),
            ("assistant", "echo: what is my name?"),
        ]
        assert (await client.delete(f"/api/threads/{thread}")).status_code == 204
        gone = await client.get(f"/api/threads/{thread}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "thread_not_found"
        assert (await client.delete(f"/api/threads/{thread}")).status_code == 404


async def test_a_generated_thread_id_and_another_model(env: Env, llm: FakeLLM) -> None:
    async with env.client() as client:
        response = await client.post("/api/chat", json={"message": "hi", "model": "other"})
    body = response.json()
    assert response.status_code == 200 and body["model"] == "other" and body["reply"] == "echo: hi"
    assert len(body["thread_id"]) >= 16
    request = llm.chat_requests[0]
    assert request["json"]["model"] == "other"
    assert request["json"]["messages"][0] == {"role": "system", "content": "You are terse."}
    # The provider key of "main" is not sent for "other" (no key configured: a placeholder).
    assert PROVIDER_KEY not in request["headers"].get("authorization", "")


async def test_tool_error_and_tool_timeout_go_back_to_the_model(env: Env, llm: FakeLLM) -> None:
    llm.enqueue(
        Reply.tool_calls([("fail", {"reason": "disk full"}), ("slow", {"seconds": 5})]),
        Reply.text("Both tools failed."),
    )
    async with env.client() as client:
        response = await client.post("/api/chat", json={"message": "try"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["reply"] == "Both tools failed."
    calls = {c["name"]: c for c in body["tool_calls"]}
    assert "disk full" in calls["fail"]["error"] and calls["fail"]["output"] is None
    assert "timed out" in calls["slow"]["error"]
    sent = {m["tool_call_id"]: text_of(m["content"]) for m in tool_messages(llm.chat_requests[1])}
    assert any("disk full" in text for text in sent.values())
    assert any("timed out" in text for text in sent.values())


async def test_mcp_sessions_are_reused_across_tool_calls_and_turns(env: Env, llm: FakeLLM) -> None:
    before = dict(env.counting.methods)
    for turn in range(3):
        llm.enqueue(
            Reply.tool_calls([("count_ping", {"text": f"{turn}-a"}), ("count_ping", {"text": f"{turn}-b"})]),
            Reply.tool_call("count_ping", {"text": f"{turn}-c"}),
            Reply.text("ok"),
        )
        async with env.client() as client:
            response = await client.post("/api/chat", json={"message": "ping"})
        assert [c["output"] for c in response.json()["tool_calls"]] == [
            f"pong {turn}-a",
            f"pong {turn}-b",
            f"pong {turn}-c",
        ]
    calls = env.counting.methods.get("tools/call", 0) - before.get("tools/call", 0)
    handshakes = env.counting.methods.get("initialize", 0) - before.get("initialize", 0)
    assert calls == 9
    assert handshakes == 0, "tool calls reuse the session opened when the tools were loaded"
    assert env.counting.methods["initialize"] == 1


async def test_down_and_hanging_servers_are_skipped_with_warnings(env: Env) -> None:
    async with env.client() as client:
        status = (await client.get("/api/status")).json()
        ready = await client.get("/readyz")
    servers = {s["name"]: s for s in status["mcp_servers"]}
    assert servers["fx"]["connected"] and servers["fx"]["tools"] == ["echo", "add", "fail", "slow"]
    assert servers["secured"]["tools"] == ["get_pod_status"]
    assert not servers["down"]["connected"] and "unreachable" in servers["down"]["error"]
    assert not servers["hangs"]["connected"] and "initialize" in servers["hangs"]["error"]
    assert ready.status_code == 200
    warnings = ready.json()["warnings"]
    assert any("'down' skipped" in w for w in warnings) and any("'hangs' skipped" in w for w in warnings)
    assert status["warnings"] == warnings


async def test_restarted_mcp_server_is_reconnected(
    tmp_path: Path, fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    fake_llm.reset()
    server = mcp_fixture_servers.restartable
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url)], [mcp_server("rs", server.url)]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        fake_llm.enqueue(Reply.tool_call("echo", {"text": "one"}), Reply.text("ok"))
        first = (await client.post("/api/chat", json={"message": "1"})).json()
        assert first["tool_calls"][0]["output"] == "one"
        server.stop()
        try:
            fake_llm.enqueue(Reply.tool_call("echo", {"text": "two"}), Reply.text("server gone"))
            second = await client.post("/api/chat", json={"message": "2"})
            assert second.status_code == 200 and second.json()["reply"] == "server gone"
            assert second.json()["tool_calls"][0]["error"]
        finally:
            server.start()
        fake_llm.enqueue(Reply.tool_call("echo", {"text": "three"}), Reply.text("back"))
        third = (await client.post("/api/chat", json={"message": "3"})).json()
        assert third["tool_calls"][0] == {
            "name": "echo",
            "args": {"text": "three"},
            "output": "three",
            "error": None,
        }
    fake_llm.reset()


async def test_server_down_at_start_is_picked_up_later_without_a_turn_waiting(
    tmp_path: Path, fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    fake_llm.reset()
    server = mcp_fixture_servers.restartable
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url)], [mcp_server("rs", server.url)]))
    server.stop()
    try:
        settings = settings_for(path, mcp_retry_interval_seconds=0.2)
        async with running(create_app(settings)) as app, app.client() as client:
            assert (await client.post("/api/chat", json={"message": "1"})).status_code == 200
            assert "tools" not in fake_llm.chat_requests[-1]["json"], "no tools while the server is down"
            status = (await client.get("/api/status")).json()
            assert status["mcp_servers"][0]["connected"] is False
            server.start()
            for _ in range(100):  # turns trigger the retry in the background; they do not wait for it
                await asyncio.sleep(0.25)
                await client.post("/api/chat", json={"message": "again"})
                if (await client.get("/api/status")).json()["mcp_servers"][0]["connected"]:
                    break
            fake_llm.enqueue(Reply.tool_call("echo", {"text": "back"}), Reply.text("ok"))
            turn = (await client.post("/api/chat", json={"message": "now"})).json()
            assert turn["tool_calls"] == [
                {"name": "echo", "args": {"text": "back"}, "output": "back", "error": None}
            ]
    finally:
        if not server.running:
            server.start()
        fake_llm.reset()


# -- models, status, health, metrics -----------------------------------------------------------------


async def test_models_and_status(env: Env) -> None:
    async with env.client() as client:
        models = (await client.get("/api/models")).json()["models"]
        status = (await client.get("/api/status")).json()
    assert [(m["name"], m["provider"], m["model"], m["default"]) for m in models] == [
        ("main", "openai_compatible", "main", True),
        ("other", "openai_compatible", "other", False),
    ]
    assert status["config"]["checksum"].startswith("sha256:") and status["config"]["loaded_at"]
    assert status["middleware"] == {"main": [], "other": []}
    assert {m["name"]: m["available"] for m in status["models"]} == {"main": True, "other": True}


async def test_openapi_documents_every_route(env: Env) -> None:
    async with env.client(token=None) as anonymous:
        schema = (await anonymous.get("/openapi.json")).json()
        docs = await anonymous.get("/docs")
    assert docs.status_code == 200
    assert set(schema["paths"]) >= {
        "/api/chat",
        "/api/chat/stream",
        "/api/threads/{thread_id}",
        "/api/models",
        "/api/status",
        "/v1/chat/completions",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_health_and_metrics_are_open_and_count_requests(env: Env, llm: FakeLLM) -> None:
    async with env.client(token=None) as anonymous, env.client() as client:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/readyz")).status_code == 200
        llm.enqueue(Reply.tool_call("echo", {"text": "m"}), Reply.text("done", usage=(11, 3)))
        assert (await client.post("/api/chat", json={"message": "metrics"})).status_code == 200
        text = (await anonymous.get("/metrics")).text
    assert 'ai_ops_chat_requests_total{route="/api/chat",status="200"}' in text
    assert 'ai_ops_chat_request_duration_seconds_count{route="/api/chat"}' in text
    assert 'ai_ops_chat_model_calls_total{model="main",outcome="ok"}' in text
    assert 'ai_ops_chat_tokens_total{direction="output",model="main"}' in text
    assert 'ai_ops_chat_tool_calls_total{outcome="ok",server="fx"}' in text
    assert 'ai_ops_chat_mcp_server_up{server="down"} 0.0' in text
    assert "ai_ops_chat_active_conversations " in text


# -- auth and isolation ------------------------------------------------------------------------------


async def test_auth_required_with_a_tokens_file(env: Env) -> None:
    async with env.client(token=None) as anonymous, env.client(token="wrong") as wrong:
        for client in (anonymous, wrong):
            for method, path, body in [
                ("POST", "/api/chat", {"message": "x"}),
                ("GET", "/api/models", None),
                ("GET", "/api/status", None),
                ("GET", "/api/threads/abc", None),
                ("GET", "/v1/models", None),
            ]:
                response = await client.request(method, path, json=body)
                assert response.status_code == 401, (path, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"


async def test_threads_are_isolated_between_callers(env: Env, llm: FakeLLM) -> None:
    thread = f"shared-{uuid.uuid4().hex[:6]}"
    async with env.client(ALICE) as alice, env.client(BOB) as bob:
        await alice.post("/api/chat", json={"message": "alice secret plan", "thread_id": thread})
        assert (await bob.get(f"/api/threads/{thread}")).status_code == 404
        assert (await bob.delete(f"/api/threads/{thread}")).status_code == 404
        # Bob using the same id gets a conversation of his own, without Alice's messages.
        await bob.post("/api/chat", json={"message": "bob here", "thread_id": thread})
        bob_sent = [
            text_of(m["content"]) for m in llm.chat_requests[-1]["json"]["messages"] if m["role"] == "user"
        ]
        assert bob_sent == ["bob here"]
        alice_view = (await alice.get(f"/api/threads/{thread}")).json()["messages"]
        assert [m["content"] for m in alice_view if m["role"] == "user"] == ["alice secret plan"]


async def test_tokens_file_is_reread_when_it_changes(env: Env) -> None:
    original = env.tokens_file.read_text()
    try:
        async with env.client("tok-carol-5555555555") as carol:
            assert (await carol.get("/api/models")).status_code == 401
            env.tokens_file.write_text(original + "carol:tok-carol-5555555555\n")
            assert (await carol.get("/api/models")).status_code == 200
            env.tokens_file.write_text(original)
            assert (await carol.get("/api/models")).status_code == 401
    finally:
        env.tokens_file.write_text(original)


# -- error statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"message": ""},
        {"message": "   "},
        {"message": "x" * 32001},
        {},
        {"message": "hi", "thread_id": "bad id!"},
        {"message": "hi", "thread_id": "x" * 129},
        {"message": "hi", "unknown": 1},
        {"message": 5},
    ],
)
async def test_invalid_input_is_422(env: Env, body: dict[str, Any]) -> None:
    async with env.client() as client:
        response = await client.post("/api/chat", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request" and response.json()["error"]["message"]


async def test_invalid_thread_id_in_path_is_422_and_unknown_route_is_json_404(env: Env) -> None:
    async with env.client() as client:
        bad = await client.get("/api/threads/has%20space")
        missing = await client.get("/api/nothing-here")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_unknown_model_is_404(env: Env) -> None:
    async with env.client() as client:
        response = await client.post("/api/chat", json={"message": "hi", "model": "nope"})
        streamed = await client.post("/api/chat/stream", json={"message": "hi", "model": "nope"})
    for r in (response, streamed):
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found" and "main" in r.json()["error"]["message"]


async def test_provider_error_is_502_and_sanitized(env: Env, llm: FakeLLM) -> None:
    leak = f"upstream broke; Incorrect API key provided: {PROVIDER_KEY}; Authorization: Bearer {PROVIDER_KEY}"
    llm.enqueue(Reply.error(500, leak), Reply.error(401, leak))
    async with env.client() as client:
        first = await client.post("/api/chat", json={"message": "hi"})
        async with client.stream("POST", "/api/chat/stream", json={"message": "hi"}) as response:
            events = await read_sse(response)
    assert first.status_code == 502
    error = first.json()["error"]
    assert (
        error["code"] == "provider_error"
        and "upstream broke" in error["message"]
        and "500" in error["message"]
    )
    assert PROVIDER_KEY not in first.text and "providerkey" not in first.text
    assert events[0][0] == "start" and events[-1][0] == "error"
    assert events[-1][1]["code"] == "provider_error" and PROVIDER_KEY not in json.dumps(events)


async def test_unreachable_provider_is_502_naming_the_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("local", f"{url}/v1")]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        response = await client.post("/api/chat", json={"message": "hi"})
    error = response.json()["error"]
    assert response.status_code == 502 and error["code"] == "provider_error"
    assert error["message"].startswith(f"model 'local' (openai_compatible at {url}/v1): ")
    assert "Connection error" in error["message"]


async def test_no_model_configured_is_503(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config())
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        response = await client.post("/api/chat", json={"message": "hi"})
        openai_style = await client.post(
            "/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "hi"}]}
        )
        ready = (await client.get("/readyz")).json()
    for r in (response, openai_style):
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "no_model" and "LLMModel" in r.json()["error"]["message"]
    assert any("No LLM model is configured" in w for w in ready["warnings"])


async def test_timeout_is_504(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.reset()
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url)]))
    async with (
        running(create_app(settings_for(path, request_timeout_seconds=1.0))) as app,
        app.client() as client,
    ):
        fake_llm.enqueue(Reply.hang())
        hung = await client.post("/api/chat", json={"message": "hi"})
        fake_llm.reset()
        fake_llm.enqueue(Reply.delay(5))
        async with client.stream("POST", "/api/chat/stream", json={"message": "hi"}) as response:
            events = await read_sse(response)
    fake_llm.reset()
    assert hung.status_code == 504 and hung.json()["error"]["code"] == "timeout"
    assert "AI_OPS_REQUEST_TIMEOUT_SECONDS" in hung.json()["error"]["message"]
    assert [kind for kind, _ in events] == ["start", "error"] and events[1][1]["code"] == "timeout"


async def test_quiet_streams_get_keepalive_comments(env: Env, llm: FakeLLM) -> None:
    import openai

    engine = env.server.services.engine
    engine.keepalive_seconds = 0.2
    try:
        llm.enqueue(Reply.delay(1.0, then=Reply.text("slow but fine")))
        async with (
            env.client() as client,
            client.stream("POST", "/api/chat/stream", json={"message": "slow"}) as response,
        ):
            raw = (await response.aread()).decode()
        assert ": ping\n\n" in raw, "keep-alive comments while the model is quiet"
        assert raw.rstrip().split("\n\n")[-1].startswith("event: done") and "slow but fine" in raw
        llm.enqueue(Reply.delay(1.0, then=Reply.text("also slow")))
        sdk = openai.AsyncOpenAI(base_url=f"{env.server.url}/v1", api_key=ALICE, max_retries=0)
        stream = await sdk.chat.completions.create(
            model="main", messages=[{"role": "user", "content": "x"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "also slow"
        await sdk.close()
    finally:
        engine.keepalive_seconds = 15.0


# -- OpenAI-compatible API through the official client -----------------------------------------------


async def test_openai_client_non_streaming_with_a_tool_call(env: Env, llm: FakeLLM) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{env.server.url}/v1", api_key=ALICE, max_retries=0)
    llm.enqueue(Reply.tool_call("add", {"a": 1, "b": 2}), Reply.text("It is 3."))
    completion = await client.chat.completions.create(
        model="default",
        messages=[
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": "what is 1+2?"},
        ],
    )
    assert completion.choices[0].message.content == "It is 3."
    assert completion.choices[0].finish_reason == "stop" and completion.model == "main"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    # The whole history reached the model, and the agent ran the MCP tool itself.
    sent = [(m["role"], text_of(m["content"])) for m in llm.chat_requests[0]["json"]["messages"][1:]]
    assert sent == [("user", "earlier question"), ("assistant", "earlier answer"), ("user", "what is 1+2?")]
    assert [text_of(m["content"]) for m in tool_messages(llm.chat_requests[1])] == ["3"]
    models = await client.models.list()
    assert [m.id for m in models.data] == ["main", "other", "default"]
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{env.server.url}/v1", api_key="bad", max_retries=0
        ).chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    await client.close()


async def test_openai_client_streaming(env: Env, llm: FakeLLM) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{env.server.url}/v1", api_key=BOB, max_retries=0)
    llm.enqueue(Reply.tool_call("echo", {"text": "abc"}), Reply.text("The echo said abc, all good."))
    stream = await client.chat.completions.create(
        model="other",
        messages=[{"role": "user", "content": "echo abc"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "The echo said abc, all good."
    assert len([p for p in pieces if p]) > 1 and finish == "stop"
    assert usage is not None and usage.total_tokens > 0
    llm.enqueue(Reply.error(503, "overloaded"))
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _chunk in stream:
            pass
    await client.close()
