"""One MCP fixture server (streamable HTTP, FastMCP from the `mcp` SDK), run as its own process.

    python -m tests.harness.mcp_fixture_server --kind healthy|auth|restartable|hanging --port P

Kinds:
- healthy / restartable: the tools below, `GET /healthz` -> 200.
- auth: the same, but every request (health path included) needs `Authorization: Bearer $MCP_FIXTURE_TOKEN`
  (taken from the environment so the token is not visible in the process list); otherwise 401.
- unannotated: the same tools with no MCP annotations at all (a server that promises nothing).
- hanging: accepts connections and answers `GET /healthz`, but never answers anything on `/mcp`,
  so an MCP initialize waits forever (clients must time out).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import anyio
import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

KINDS = ("healthy", "auth", "restartable", "hanging", "unannotated")
TOKEN_ENV = "MCP_FIXTURE_TOKEN"
MCP_PATH = "/mcp"


def pod_status_text(namespace: str, name: str) -> str:
    """The deterministic fake status `get_pod_status` returns (tests compare against it)."""
    restarts = sum(map(ord, f"{namespace}/{name}")) % 3
    return f"Pod {namespace}/{name}: phase=Running ready=1/1 restarts={restarts} node=fixture-node-1"


def build_mcp(kind: str) -> FastMCP:
    mcp = FastMCP(f"ai-ops-fixture-{kind}", stateless_http=True, log_level="WARNING")
    read_only = None if kind == "unannotated" else ToolAnnotations(readOnlyHint=True)

    @mcp.tool(annotations=read_only)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool(annotations=read_only)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool(annotations=read_only)
    def get_pod_status(namespace: str, name: str) -> str:
        """Status of a Kubernetes pod (fake, deterministic)."""
        return pod_status_text(namespace, name)

    @mcp.tool(annotations=read_only)
    def fail(reason: str) -> str:
        """Always fails with the given reason (a tool error, isError=true)."""
        raise ToolError(reason)

    @mcp.tool(annotations=read_only)
    async def slow(seconds: float) -> str:
        """Sleep, then answer: for timeout tests."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return mcp


class RequireBearer:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>` (the `auth` kind)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            response = JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class HangOnMcp:
    """ASGI middleware: requests to /mcp never get an answer (the `hanging` kind)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(MCP_PATH):
            await anyio.sleep_forever()
        await self.app(scope, receive, send)


def build_app(kind: str, token: str | None) -> ASGIApp:
    app: ASGIApp = build_mcp(kind).streamable_http_app()
    if kind == "auth":
        if not token:
            raise SystemExit(f"the auth kind needs ${TOKEN_ENV}")
        app = RequireBearer(app, token)
    elif kind == "hanging":
        app = HangOnMcp(app)
    return app


def exit_when_parent_dies() -> None:
    """Orphans must not outlive a killed test run on a shared machine."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    exit_when_parent_dies()
    app = build_app(args.kind, os.environ.get(TOKEN_ENV))
    # timeout_graceful_shutdown: hanging requests must not keep a stopped server alive.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
