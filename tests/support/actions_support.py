"""MCP servers for the ActionRequest tests. WriterServer: tools that write (no readOnlyHint, or readOnlyHint
false) beside one that reads; it records every call it receives, so a test can show a write never ran.
CountingServer: one write tool whose real call can be held open, for the executor's tests."""

from __future__ import annotations

import threading
from typing import Any, Literal

import anyio
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations


class WriterServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        mcp = FastMCP("writer", stateless_http=True, log_level="WARNING")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
        def restart_workload(
            kind: Literal["Deployment", "StatefulSet"], namespace: str, name: str, dry_run: bool = True
        ) -> str:
            """Restart the pods of a workload."""
            self._record("restart_workload", kind=kind, namespace=namespace, name=name, dry_run=dry_run)
            return f"restarted {kind} {namespace}/{name}"

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
        def rollout_restart(
            kind: Literal["Deployment", "StatefulSet", "DaemonSet"],
            namespace: str,
            name: str,
            dry_run: bool = True,
        ) -> str:
            """Restart a workload's pods the way `kubectl rollout restart` does (the bundled
            kubernetes_actions server's signature)."""
            self._record("rollout_restart", kind=kind, namespace=namespace, name=name, dry_run=dry_run)
            return f"restarting {kind} {namespace}/{name}"

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
        def delete_pod(namespace: str, name: str) -> str:
            """Delete a pod."""
            self._record("delete_pod", namespace=namespace, name=name)
            return f"deleted {namespace}/{name}"

        @mcp.tool()
        def annotate(kind: str, namespace: str, name: str, note: str) -> str:
            """Annotate an object (no annotations: the MCP default is "may write")."""
            self._record("annotate", kind=kind, namespace=namespace, name=name, note=note)
            return "annotated"

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False))
        def flush_caches() -> str:
            """Flush every cache (names no object it acts on)."""
            self._record("flush_caches")
            return "flushed"

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def get_status(kind: str, namespace: str, name: str) -> str:
            """Read a workload's status."""
            self._record("get_status", kind=kind, namespace=namespace, name=name)
            return f"{namespace}/{name}: 3/3 ready"

        self.mcp = mcp

    def _record(self, tool: str, **args: Any) -> None:
        with self._lock:
            self.calls.append((tool, args))

    def called(self, tool: str) -> list[dict[str, Any]]:
        with self._lock:
            return [args for name, args in self.calls if name == tool]


class CountingServer:
    """An MCP server with one write tool, `restart(name, dry_run=True)`, that records every call it gets.

    With `hold` set, a real call (dry_run false) waits until `release` is set: the call is in flight at
    the server for as long as the test wants.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        mcp = FastMCP("counting-actions", stateless_http=True, json_response=True, log_level="WARNING")

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
        async def restart(name: str, dry_run: bool = True) -> str:
            """Restart something (counted, not done)."""
            self.calls.append((name, dry_run))
            if dry_run:
                return f"dry run: {name} would restart"
            if self.hold:
                self.entered.set()
                await anyio.to_thread.run_sync(self.release.wait)
            return f"{name} restarted"

        self.mcp = mcp

    def real_calls(self) -> int:
        return sum(1 for _, dry in self.calls if not dry)
