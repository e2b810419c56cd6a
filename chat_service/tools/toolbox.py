"""The agent's tools: the MCP servers of the config, through langchain-mcp-adapters, with reused sessions.

langchain-mcp-adapters' default opens a new MCP session (and a new HTTP client) for every tool call.
Here each server has one persistent session (sessions.py), owned by a background task and reconnected
when it breaks, and every HTTP session shares one connection pool. Tools are still built by the adapter
(``convert_mcp_tool_to_langchain_tool``); a tool-call interceptor routes each call to the pooled session
instead of opening a new one.

Failure handling: a server that is down at tool-loading time is skipped with a warning (and retried on a
later turn); a tool that fails, times out or whose server dropped becomes an error message to the model
(``ToolMessage`` with status ``error``) and the turn goes on.

A tool whose MCP ``readOnlyHint`` is not true is never handed to the agent: it gets a proposal tool of the
same name instead (chat_service/actions/proposals.py), whose call records an ActionRequest for a person to
approve and the operator to execute.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.interceptors import MCPToolCallRequest, MCPToolCallResult
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp.types import CallToolResult, TextContent
from mcp.types import Tool as MCPTool

from ai_ops_api.addresses import url_refusal
from ai_ops_api.agent_config import AgentConfig, MCPServerEntry, NamedValue
from ai_ops_common.errors import describe_exception
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_common.mcp import list_all_tools, list_tools_page
from chat_service.actions.proposals import Proposer, proposal_tool, requires_approval
from chat_service.tools.sessions import MCPUnavailable, PersistentSession, ServerConnection

if TYPE_CHECKING:
    from chat_service.metrics import ChatMetrics
    from chat_service.secrets import SecretResolver
    from chat_service.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    name: str
    tools: tuple[str, ...] = ()
    error: str | None = None
    loaded_at: float = 0.0


@dataclass
class Toolset:
    """The tools of one config version: what the agent gets, and per-server status for /api/status."""

    checksum: str
    tools: list[BaseTool] = field(default_factory=list)
    servers: dict[str, ServerState] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)

    @functools.cached_property
    def version(self) -> str:
        """Changes whenever the set of loaded tools changes (part of the compiled-graph cache key); read
        only once the toolset is complete."""
        names = sorted(t.name for t in self.tools)
        return hashlib.sha256("\0".join(names).encode()).hexdigest()[:16]

    def failed(self) -> list[str]:
        return [name for name, state in self.servers.items() if state.error is not None]


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def filter_tools(names: list[str], server: MCPServerEntry) -> list[str]:
    """The server's tool filter: ``include`` (names or globs; empty means all), then ``exclude``."""
    selected = [n for n in names if not server.tool_filter.include or _matches(n, server.tool_filter.include)]
    return [n for n in selected if not _matches(n, server.tool_filter.exclude)]


def _error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


class MCPToolbox:
    """Persistent sessions per server and the tool lists per config version."""

    def __init__(
        self,
        secrets: SecretResolver,
        *,
        connect_timeout: float = 10.0,
        tool_timeout: float = 60.0,
        retry_interval: float = 15.0,
        metrics: ChatMetrics | None = None,
        allow_loopback: bool = False,
        stdio_commands: Collection[str] = (),
    ):
        self.secrets = secrets
        self.usage: UsageRecorder | None = None  # set by ChatServices when usage accounting is on
        self.allow_loopback = allow_loopback
        # A stdio server runs in this pod, beside every model key: only commands the administrator allowed.
        self.stdio_commands = frozenset(stdio_commands)
        self.connect_timeout = connect_timeout
        self.tool_timeout = tool_timeout
        self.retry_interval = retry_interval
        self.metrics = metrics
        # Tool calls may stream for minutes: a long read timeout by default. Guarded: every connection
        # (redirects included) goes only to an address the SSRF policy accepts, checked when it is opened.
        self._http = SharedHttpPool(
            200,
            50,
            default_timeout=httpx.Timeout(30.0, read=300.0),
            guard=True,
            allow_loopback=allow_loopback,
        )
        self._sessions: dict[str, PersistentSession] = {}
        self._toolsets: dict[str, Toolset] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retrying: dict[str, asyncio.Task[Toolset]] = {}
        self.sessions_opened: dict[str, int] = {}
        # Records the proposals of tools that change something (set by the services container; None:
        # such tools answer that actions are not enabled, and still never run).
        self.proposer: Proposer | None = None

    # -- connections ---------------------------------------------------------------------------------

    def _resolve(self, values: tuple[NamedValue, ...]) -> dict[str, str]:
        resolved: dict[str, str] = {}
        for item in values:
            if item.secret_ref is not None:
                resolved[item.name] = self.secrets.read(item.secret_ref)
            else:
                resolved[item.name] = item.value or ""
        return resolved

    def connection_for(self, server: MCPServerEntry) -> ServerConnection:
        """Resolve headers/env now (so a rotated Secret is used on the next connect)."""
        try:
            if server.transport == "stdio":
                if not server.command:
                    raise MCPUnavailable(f"MCP server {server.name!r} uses stdio but has no command")
                if server.command not in self.stdio_commands:
                    raise MCPUnavailable(
                        f"MCP server {server.name!r}: stdio command {server.command!r} is not allowed in this "
                        "installation (AI_OPS_STDIO_COMMANDS; chart value mcp.stdio.allowedCommands)"
                    )
                connection: dict[str, Any] = {
                    "transport": "stdio",
                    "command": server.command,
                    "args": list(server.args),
                    "env": self._resolve(server.env) or None,
                }
            else:
                if not server.url:
                    raise MCPUnavailable(f"MCP server {server.name!r} has no url")
                # Literal addresses in every form and metadata names are refused before any connection;
                # names are checked when resolved, by the guarded pool.
                refusal = url_refusal(server.url, self.allow_loopback)
                if refusal is not None:
                    raise MCPUnavailable(
                        f"MCP server {server.name!r} not contacted: address refused: {refusal}"
                    )
                headers = self._resolve(server.headers)
                connection = {
                    "transport": server.transport,
                    "url": server.url,
                    "headers": headers or None,
                    "httpx_client_factory": self._http.client_factory,
                }
                if server.transport == "streamable_http":
                    connection["timeout"] = timedelta(seconds=self.connect_timeout)
                else:
                    connection["timeout"] = self.connect_timeout
        except MCPUnavailable:
            raise
        except Exception as exc:  # SecretUnavailable and friends: the message names the Secret, not its value
            raise MCPUnavailable(f"MCP server {server.name!r}: {exc}") from None
        digest = hashlib.sha256(
            json.dumps(
                {k: v for k, v in connection.items() if k != "httpx_client_factory"},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        return ServerConnection(server.name, connection, digest)

    def _opened(self, server: str) -> None:
        self.sessions_opened[server] = self.sessions_opened.get(server, 0) + 1
        if self.metrics:
            self.metrics.mcp_sessions.labels(server=server).inc()

    def _session_for(self, connection: ServerConnection, entry: MCPServerEntry) -> PersistentSession:
        current = self._sessions.get(connection.name)

        def resolve() -> ServerConnection:
            return self.connection_for(entry)

        if current is not None and current.server.fingerprint == connection.fingerprint:
            current.resolve = resolve  # reconnects follow the newest config of this server
            return current
        if current is not None:  # headers or URL changed: the old session goes away in the background
            asyncio.get_running_loop().create_task(current.close())
        session = PersistentSession(connection, self.connect_timeout, self._opened, resolve)
        self._sessions[connection.name] = session
        return session

    # -- tool loading --------------------------------------------------------------------------------

    async def toolset(self, config: AgentConfig, checksum: str) -> Toolset:
        """The tools for this config version (loaded once). Servers that failed are retried in the
        background after the retry interval, so no turn waits for a server that is still down."""
        cached = self._toolsets.get(checksum)
        if cached is not None:
            if self._due_for_retry(cached) and checksum not in self._retrying:
                task = asyncio.get_running_loop().create_task(self._reload(config, checksum))
                self._retrying[checksum] = task
                task.add_done_callback(lambda _t: self._retrying.pop(checksum, None))
            return cached
        return await self._reload(config, checksum)

    async def _reload(self, config: AgentConfig, checksum: str) -> Toolset:
        lock = self._locks.setdefault(checksum, asyncio.Lock())
        async with lock:
            cached = self._toolsets.get(checksum)
            if cached is not None and not self._due_for_retry(cached):
                return cached
            toolset = await self._load(config, checksum, previous=cached)
            self._toolsets[checksum] = toolset
            return toolset

    @property
    def open_sessions(self) -> list[str]:
        """Servers with a session object (connected or to be reconnected)."""
        return sorted(self._sessions)

    def cached_toolset(self, checksum: str) -> Toolset | None:
        return self._toolsets.get(checksum)

    def _due_for_retry(self, toolset: Toolset) -> bool:
        return bool(toolset.failed()) and time.monotonic() - toolset.created >= self.retry_interval

    async def _load(self, config: AgentConfig, checksum: str, previous: Toolset | None) -> Toolset:
        servers = list(config.mcp_servers)
        reuse = (
            {}
            if previous is None
            else {name: state for name, state in previous.servers.items() if state.error is None}
        )
        results = await asyncio.gather(
            *(self._load_server(s, previous if s.name in reuse else None) for s in servers)
        )
        toolset = Toolset(checksum)
        taken: set[str] = set()
        for server, (tools, state) in zip(servers, results, strict=True):
            toolset.servers[server.name] = state
            if self.metrics:
                self.metrics.mcp_server_up.labels(server=server.name).set(0 if state.error else 1)
            if state.error:
                toolset.warnings.append(f"MCP server {server.name!r} skipped: {state.error}")
                log.warning("MCP server %s skipped: %s", server.name, state.error)
                continue
            for tool in tools:
                if tool.name in taken:  # same tool name on two servers: the later one gets a prefix
                    tool.name = f"{server.name}_{tool.name}"
                    toolset.warnings.append(f"tool name clash: {server.name}'s tool is named {tool.name!r}")
                taken.add(tool.name)
                toolset.tools.append(tool)
        return toolset

    async def _load_server(
        self, server: MCPServerEntry, previous: Toolset | None
    ) -> tuple[list[BaseTool], ServerState]:
        if previous is not None:
            kept = [t for t in previous.tools if (t.metadata or {}).get("ai_ops_server") == server.name]
            return kept, previous.servers[server.name]
        try:
            connection = self.connection_for(server)
            session = self._session_for(connection, server)
            listed = await self._list_tools(session)
        except MCPUnavailable as exc:
            return [], ServerState(server.name, error=str(exc), loaded_at=time.time())
        except Exception as exc:
            return [], ServerState(server.name, error=describe_exception(exc), loaded_at=time.time())
        wanted = set(filter_tools([t.name for t in listed], server))
        tools = [
            proposal_tool(server.name, t, lambda: self.proposer)
            if requires_approval(t)
            else self._to_langchain(server.name, connection, t)
            for t in listed
            if t.name in wanted
        ]
        return tools, ServerState(server.name, tools=tuple(t.name for t in tools), loaded_at=time.time())

    async def _list_tools(self, session: PersistentSession) -> list[MCPTool]:
        for attempt in (1, 2):
            try:
                return await list_all_tools(
                    lambda cursor: session.request(
                        functools.partial(list_tools_page, cursor=cursor), self.connect_timeout
                    )
                )
            except MCPUnavailable:
                raise
            except Exception as exc:
                await session.reset()  # a stale session (server restarted): reconnect once
                if attempt == 2:
                    raise MCPUnavailable(
                        f"MCP server {session.server.name!r} failed to list tools: {describe_exception(exc)}"
                    ) from None
        return []

    def _to_langchain(self, server: str, connection: ServerConnection, tool: MCPTool) -> BaseTool:
        # The adapter wants a connection, but our interceptor never lets it open one: give it no headers.
        bare = {
            k: v for k, v in connection.connection.items() if k in ("transport", "url", "command", "args")
        }
        lc_tool = convert_mcp_tool_to_langchain_tool(
            None,
            tool,
            connection=bare,  # type: ignore[arg-type]
            server_name=server,
            tool_interceptors=[self._pooled_call(server)],  # type: ignore[list-item]
            handle_tool_errors=True,
        )
        lc_tool.metadata = {**(lc_tool.metadata or {}), "ai_ops_server": server}
        if self.usage is not None:  # usage accounting sees the tool's calls (chat_service/usage)
            self.usage.instrument(lc_tool)
        return lc_tool

    # -- tool calls ----------------------------------------------------------------------------------

    def _pooled_call(self, server: str) -> Callable[..., Awaitable[MCPToolCallResult]]:
        async def interceptor(
            request: MCPToolCallRequest,
            _handler: Callable[[MCPToolCallRequest], Awaitable[MCPToolCallResult]],
        ) -> MCPToolCallResult:
            # The adapter's own handler would open a new session; ours uses the persistent one.
            return await self.call_tool(server, request.name, request.args)

        return interceptor

    async def call_tool(self, server: str, tool: str, args: dict[str, Any]) -> CallToolResult:
        started = time.perf_counter()
        result = await self._call(server, tool, args)
        if self.metrics:
            self.metrics.tool_calls.labels(server=server, outcome="error" if result.isError else "ok").inc()
            self.metrics.tool_call_duration.labels(server=server).observe(time.perf_counter() - started)
        return result

    async def _call(self, server: str, tool: str, args: dict[str, Any]) -> CallToolResult:
        session = self._sessions.get(server)
        if session is None:
            return _error_result(f"MCP server {server!r} is not connected.")
        read_timeout = timedelta(seconds=self.tool_timeout)
        for attempt in (1, 2):
            try:
                return await session.request(
                    lambda c: c.call_tool(tool, args, read_timeout_seconds=read_timeout),
                    self.tool_timeout + 1.0,
                )
            except MCPUnavailable as exc:
                return _error_result(f"Tool {tool!r} is unavailable: {exc}")
            except TimeoutError:
                return _error_result(f"Tool {tool!r} on {server!r} timed out after {self.tool_timeout:g} s.")
            except Exception as exc:
                description = describe_exception(exc)
                if "timed out" in description.lower() or "timeout" in description.lower():
                    return _error_result(
                        f"Tool {tool!r} on {server!r} timed out after {self.tool_timeout:g} s."
                    )
                if attempt == 1:
                    # The session broke (server restarted or dropped us): reconnect and try once more.
                    log.info(
                        "MCP session to %s failed during %s (%s); reconnecting", server, tool, description
                    )
                    await session.reset()
                    continue
                return _error_result(f"Tool {tool!r} on {server!r} failed: {description}")
        return _error_result(f"Tool {tool!r} on {server!r} failed.")

    # -- lifecycle -----------------------------------------------------------------------------------

    def forget_other_configs(self, keep: set[str]) -> None:
        """Drop tool lists of config versions no longer in use (sessions stay; they are per server)."""
        for checksum in [c for c in self._toolsets if c not in keep]:
            self._toolsets.pop(checksum, None)
            self._locks.pop(checksum, None)

    async def close_servers_not_in(self, config: AgentConfig) -> None:
        names = {s.name for s in config.mcp_servers}
        for name in [n for n in self._sessions if n not in names]:
            session = self._sessions.pop(name)
            await session.close()

    async def aclose(self) -> None:
        for task in list(self._retrying.values()):
            task.cancel()
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        await self._http.aclose()
