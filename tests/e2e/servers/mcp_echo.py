"""A small MCP server (streamable HTTP) for the kind suite, run in the cluster from the ai-ops image.

Tools: `echo(text)` and `add(a, b)`. Single file on purpose (mounted from a ConfigMap).
Usage: python mcp_echo.py [PORT]   (listens on $HOST, default 0.0.0.0, path /mcp)
"""

from __future__ import annotations

import os
import sys

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations


def build(host: str, port: int) -> FastMCP:
    # Listening on 0.0.0.0 keeps the SDK's DNS-rebinding guard (localhost-only Host headers) off, so the
    # operator and the chat can reach it by its Service name.
    server = FastMCP("e2e-echo", host=host, port=port, streamable_http_path="/mcp")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    build(os.environ.get("HOST", "0.0.0.0"), port).run(transport="streamable-http")
