"""Run a bundled MCP server (`ai-ops mcp ...`) as a subprocess and talk to it through the real MCP client.

Used by tests/test_mcp_kubernetes.py and tests/test_mcp_netops.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.harness.ports import free_port, wait_until


class McpServerProcess:
    """`python -m ai_ops_cli mcp <args>` on a free 127.0.0.1 port; stopped by its PID."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._argv = [sys.executable, "-m", "ai_ops_cli", "mcp", *args, "--port", str(self.port)]
        self._env = {**os.environ, **(env or {})}
        self._log = tempfile.NamedTemporaryFile(prefix="mcp-server-", suffix=".log", delete=False)  # noqa: SIM115
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._process = subprocess.Popen(
            self._argv, env=self._env, stdout=self._log, stderr=subprocess.STDOUT
        )

        def healthy() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"MCP server exited with {self._process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.base_url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, f"MCP server {' '.join(self._argv[3:])}", interval=0.1)

    def output(self) -> str:
        with open(self._log.name, encoding="utf-8", errors="replace") as log:
            return log.read()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        os.unlink(self._log.name)


@dataclass(frozen=True)
class ToolAnswer:
    is_error: bool
    text: str

    def json(self) -> Any:
        assert not self.is_error, f"tool error: {self.text}"
        return json.loads(self.text)


class McpClient:
    """A live MCP client session with a helper that returns a tool's text and error flag."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def call(self, tool: str, **arguments: Any) -> ToolAnswer:
        result = await self.session.call_tool(tool, arguments)
        text = "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")
        return ToolAnswer(is_error=bool(result.isError), text=text)

    async def tool_names(self) -> list[str]:
        return sorted(tool.name for tool in (await self.session.list_tools()).tools)


@asynccontextmanager
async def mcp_client(url: str) -> AsyncIterator[McpClient]:
    """One MCP session over streamable HTTP (opened and closed in the calling task, as anyio requires)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        yield McpClient(session)


class ThreadedMcpServer:
    """A FastMCP server's streamable HTTP app under uvicorn in a background thread with its own loop.

    For servers whose backend lives in the test's own event loop (the Kubernetes emulator): the test
    awaits the MCP client while this thread's server calls the backend, so neither loop blocks the other.
    """

    def __init__(self, server: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            server.streamable_http_app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, name="mcp-server", daemon=True)

    def __enter__(self) -> ThreadedMcpServer:
        self._thread.start()
        wait_until(lambda: self._uvicorn.started, 15.0, "threaded MCP server")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
