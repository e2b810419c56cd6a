"""The mcp_fixture_servers fixture: real MCP servers over streamable HTTP, reached with the real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from langchain_mcp_adapters.client import MultiServerMCPClient
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from tests.harness.mcp_fixture_server import pod_status_text
from tests.harness.mcp_servers import McpFixtureServer, McpFixtureServers

TOOLS = {"echo", "add", "get_pod_status", "fail", "slow"}


@asynccontextmanager
async def mcp_session(
    server: McpFixtureServer, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(headers=server.headers if headers is None else headers, timeout=10) as http,
        streamable_http_client(server.url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: object) -> str:
    content = getattr(result, "content", [])
    return "".join(block.text for block in content if isinstance(block, TextContent))


async def test_healthy_server_lists_and_runs_its_tools(mcp_fixture_servers: McpFixtureServers) -> None:
    server = mcp_fixture_servers.healthy
    assert server.url == f"http://127.0.0.1:{server.port}/mcp"
    async with mcp_session(server) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS
        assert text_of(await session.call_tool("echo", {"text": "hi"})) == "hi"
        assert text_of(await session.call_tool("add", {"a": 2, "b": 40})) == "42"
        status = await session.call_tool("get_pod_status", {"namespace": "prod", "name": "web-1"})
        assert text_of(status) == pod_status_text("prod", "web-1")
        assert "Running" in text_of(status)
        failed = await session.call_tool("fail", {"reason": "disk on fire"})
        assert failed.isError
        assert "disk on fire" in text_of(failed)
        assert text_of(await session.call_tool("slow", {"seconds": 0.01})) == "slept 0.01"
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.health_url)).status_code == 200


async def test_auth_server_needs_the_bearer_token(mcp_fixture_servers: McpFixtureServers) -> None:
    server = mcp_fixture_servers.auth
    assert server.token
    async with httpx.AsyncClient() as http:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        assert (await http.post(server.url, json=initialize)).status_code == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert (await http.post(server.url, json=initialize, headers=wrong)).status_code == 401
        assert (await http.get(server.health_url)).status_code == 401
    async with mcp_session(server) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS


async def test_langchain_mcp_adapters_load_and_call_tools_with_headers(
    mcp_fixture_servers: McpFixtureServers,
) -> None:
    server = mcp_fixture_servers.auth
    client = MultiServerMCPClient(
        {"auth": {"transport": "streamable_http", "url": server.url, "headers": server.headers}}
    )
    tools = {tool.name: tool for tool in await client.get_tools()}
    assert set(tools) == TOOLS
    result = await tools["add"].ainvoke({"a": 1, "b": 2})
    assert "3" in str(result)


async def test_restartable_server_stops_and_comes_back_on_the_same_port(
    mcp_fixture_servers: McpFixtureServers,
) -> None:
    server = mcp_fixture_servers.restartable
    port = server.port
    try:
        server.stop()
        assert not server.running
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(server.health_url)
        await anyio.to_thread.run_sync(server.start)
        assert server.running
        assert server.port == port
        async with mcp_session(server) as session:
            assert text_of(await session.call_tool("echo", {"text": "back"})) == "back"
    finally:
        if not server.running:  # leave it running for other tests
            server.start()


async def test_hanging_server_never_answers_initialize(mcp_fixture_servers: McpFixtureServers) -> None:
    server = mcp_fixture_servers.hanging
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.health_url)).status_code == 200  # the TCP/HTTP side is alive
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.5):
            async with mcp_session(server):
                pass
