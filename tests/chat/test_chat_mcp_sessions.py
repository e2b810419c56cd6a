"""MCP sessions of the toolbox: an stdio server started once (env from a Secret) and reused by every call;
a rotated header token picked up when the server refuses the old one."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ai_ops_api.agent_config import AgentConfig, MCPServerEntry, NamedValue, SecretRef
from chat_service.secrets import SecretResolver
from chat_service.tools.toolbox import MCPToolbox
from tests.harness.ports import bound_socket

SERVER = '''
import os
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

mcp = FastMCP("stdio-fixture", log_level="WARNING")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def whoami() -> str:
    """The server's process id and the greeting from its environment."""
    return f"{os.getpid()} {os.environ.get('GREETING', '')}"


mcp.run("stdio")
'''


async def test_stdio_server_runs_once_with_env_from_a_secret(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    (tmp_path / "secrets" / "greet").mkdir(parents=True)
    (tmp_path / "secrets" / "greet" / "value").write_text("hello-from-secret\n")
    config = AgentConfig(
        namespace="t",
        mcp_servers=(
            MCPServerEntry(
                name="local",
                transport="stdio",
                command=sys.executable,
                args=(str(script),),
                env=(NamedValue(name="GREETING", secret_ref=SecretRef(name="greet", key="value")),),
            ),
        ),
    ).finalize()
    toolbox = MCPToolbox(
        SecretResolver(tmp_path / "secrets"),
        connect_timeout=20,
        tool_timeout=10,
        stdio_commands={sys.executable},
    )
    try:
        toolset = await toolbox.toolset(config, config.checksum)
        assert [t.name for t in toolset.tools] == ["whoami"] and toolset.warnings == []
        tool = toolset.tools[0]
        first = await tool.ainvoke({})
        second = await tool.ainvoke({})
        texts = [block["text"] for block in (*first, *second)]
        assert texts[0] == texts[1], "the same server process answered both calls"
        assert texts[0].endswith(" hello-from-secret")
        assert toolbox.sessions_opened == {"local": 1}
    finally:
        await toolbox.aclose()


class RotatingTokenMCP:
    """A stateful MCP server in this process that accepts only ``Authorization: Bearer <expected>``."""

    def __init__(self, expected: str) -> None:
        self.expected = expected
        mcp = FastMCP("rotating", log_level="WARNING")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def ping() -> str:
            """Answer pong."""
            return "pong"

        self.inner = mcp.streamable_http_app()
        self._socket = bound_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/mcp"
        self.server = uvicorn.Server(
            uvicorn.Config(self._app, interface="asgi3", log_level="warning", timeout_graceful_shutdown=1)
        )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != (
            f"Bearer {self.expected}".encode()
        ):
            await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
            return
        await self.inner(scope, receive, send)

    async def __aenter__(self) -> RotatingTokenMCP:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self._task, 10)


async def test_a_rotated_header_secret_is_used_when_the_session_reconnects(tmp_path: Path) -> None:
    token_file = tmp_path / "secrets" / "mcp" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("Bearer first-token\n")
    async with RotatingTokenMCP("first-token") as server:
        config = AgentConfig(
            namespace="t",
            mcp_servers=(
                MCPServerEntry(
                    name="rot",
                    transport="streamable_http",
                    url=server.url,
                    headers=(
                        NamedValue(name="Authorization", secret_ref=SecretRef(name="mcp", key="token")),
                    ),
                ),
            ),
        ).finalize()
        toolbox = MCPToolbox(
            SecretResolver(tmp_path / "secrets"), connect_timeout=5, tool_timeout=5, allow_loopback=True
        )
        try:
            tool = (await toolbox.toolset(config, config.checksum)).tools[0]
            assert (await tool.ainvoke({}))[0]["text"] == "pong"
            server.expected = "second-token"
            token_file.write_text("Bearer second-token\n")
            result = await tool.ainvoke({})
            assert result[0]["text"] == "pong", result
            assert toolbox.sessions_opened == {"rot": 2}, "one reconnect, with the new token"
        finally:
            await toolbox.aclose()
