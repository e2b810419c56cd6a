"""The MCP probe: ``initialize`` + ``tools/list`` over the server's own transport, like a real client.

Connections go through the guarded pool (``SharedHttpPool(guard=True)``): the address policy is applied
to the address connected to, so a name that re-resolves to a metadata address after the check is refused
too. One probe is the whole exchange under ``anyio.fail_after(healthCheck.timeoutSeconds)``: resolving the
host (and refusing link-local, metadata and, unless allowed, loopback addresses), the MCP session with
the configured headers, the tool list and the optional ``GET healthCheck.path``. All probes share one
connection pool (``SharedHttpPool``): the MCP SDK opens and closes an httpx client per session, so the
factory hands it light clients over one pooled transport whose ``aclose`` is a no-op.

Header values from Secrets are passed in by the caller, read at probe time (``SecretReader``); they are
never stored, and error messages are built from status codes and exception types only, never from
request headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlparse

import anyio
import httpx

from ai_ops_api.addresses import METADATA_HOSTS, address_refusal
from ai_ops_api.specs import MCPServerSpec, MCPTransport
from ai_ops_common.errors import NameNotResolved, describe_exception, http_status, walk_exception
from ai_ops_common.guarded_transport import ConnectRefused
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_common.mcp import list_all_tools, list_tools_page
from ai_ops_operator.core.health import ProbeResult, ServerInfoData

# Pages of tools/list followed at most (a server with more tools than this is still healthy).
MAX_TOOL_PAGES = 20

# Reads one Secret key's value (decoded) at probe time: (namespace, secret name, key) -> value or None.
SecretReader = Callable[[str, str, str], Awaitable[str | None]]


async def resolve_refusal(url: str, allow_loopback: bool) -> str | None:
    """Resolve the URL's host and refuse it when any address is link-local, metadata or loopback; raises
    NameNotResolved when it does not resolve."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower().rstrip(".")
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata endpoint"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NameNotResolved(host, exc) from exc
    for info in infos:
        address = str(info[4][0]).split("%")[0]
        refusal = address_refusal(address, allow_loopback)
        if refusal:
            return refusal if address == host else f"{host} resolves to {refusal}"
    return None


def _unauthenticated_message(status: int, header_names: list[str]) -> str:
    if header_names:
        return (
            f"the server answered HTTP {status}: the configured headers ({', '.join(header_names)}) "
            "were not accepted"
        )
    return f"the server answered HTTP {status} and no headers are configured (spec.headers)"


async def probe_server(
    spec: MCPServerSpec,
    headers: dict[str, str],
    http: SharedHttpPool,
    allow_loopback: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ProbeResult:
    """Probe one HTTP MCP server once. Never raises (except for cancellation from outside)."""
    assert spec.url is not None and spec.transport != MCPTransport.STDIO
    timeout = float(spec.health_check.timeout_seconds)
    started_at = clock()
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return int((time.perf_counter() - started) * 1000)

    def failure(error: str, unauthenticated: bool = False, refused: bool = False) -> ProbeResult:
        return ProbeResult(
            ok=False,
            latency_ms=elapsed_ms(),
            at=started_at,
            unauthenticated=unauthenticated,
            refused=refused,
            error=error,
        )

    try:
        with anyio.fail_after(timeout):
            refusal = await resolve_refusal(spec.url, allow_loopback)
            if refusal:
                return failure(f"address refused: {refusal}", refused=True)
            info, tools = await _mcp_session(spec, headers, http, timeout)
            if spec.health_check.path:
                url = urljoin(spec.url, spec.health_check.path)
                async with http.client_factory(headers=headers, timeout=httpx.Timeout(timeout)) as client:
                    response = await client.get(url)
                if response.status_code in (401, 403):
                    return failure(_unauthenticated_message(response.status_code, sorted(headers)), True)
                if not response.is_success:
                    return failure(f"GET {spec.health_check.path} answered HTTP {response.status_code}")
    except BaseException as exc:  # the SDK raises ExceptionGroups out of its task groups
        task = asyncio.current_task()
        if isinstance(exc, KeyboardInterrupt | SystemExit) or (task is not None and task.cancelling()):
            raise  # cancelled from outside (shutdown): not a probe failure
        # The guarded pool refuses at connect time what resolved (or re-resolved) to a forbidden address.
        connect_refusal = next((e for e in walk_exception(exc) if isinstance(e, ConnectRefused)), None)
        if connect_refusal is not None:
            return failure(f"address refused: {connect_refusal.reason}", refused=True)
        if isinstance(exc, TimeoutError) or any(isinstance(e, TimeoutError) for e in walk_exception(exc)):
            return failure(f"no complete answer within the timeout ({timeout:g} s)")
        status = http_status(exc)
        if status in (401, 403):
            return failure(_unauthenticated_message(status, sorted(headers)), True)
        return failure(describe_exception(exc))
    return ProbeResult(
        ok=True, latency_ms=elapsed_ms(), at=started_at, server_info=info, tools=tuple(sorted(tools))
    )


@contextlib.asynccontextmanager
async def mcp_session(
    spec: MCPServerSpec, headers: dict[str, str], http: SharedHttpPool, timeout: float
) -> AsyncIterator[tuple[Any, Any]]:
    """An MCP session (initialized) over the server's own transport: (the session, the initialize answer).

    The probes and the action executor share it: one way to reach a server, through the guarded pool.
    """
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    assert spec.url is not None
    transport_cm: Any
    if spec.transport == MCPTransport.SSE:
        transport_cm = sse_client(
            spec.url,
            headers=headers,
            timeout=timeout,
            sse_read_timeout=timeout,
            httpx_client_factory=http.client_factory,
        )
        client = None
    else:
        client = http.client_factory(headers=headers, timeout=httpx.Timeout(timeout))
        transport_cm = streamable_http_client(spec.url, http_client=client)
    try:
        async with transport_cm as streams, ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            yield session, init
    finally:
        if client is not None:
            await client.aclose()


async def _mcp_session(
    spec: MCPServerSpec, headers: dict[str, str], http: SharedHttpPool, timeout: float
) -> tuple[ServerInfoData, list[str]]:
    async with mcp_session(spec, headers, http, timeout) as (session, init):
        tools = await list_all_tools(functools.partial(list_tools_page, session), MAX_TOOL_PAGES)
        names = [tool.name for tool in tools]
    info = ServerInfoData(
        name=init.serverInfo.name, version=init.serverInfo.version, protocol_version=str(init.protocolVersion)
    )
    return info, names


async def resolve_headers(
    spec: MCPServerSpec, namespace: str, read_secret: SecretReader | None
) -> tuple[dict[str, str], str | None]:
    """The request headers with Secret values read now, or why they cannot be (never the value)."""
    headers: dict[str, str] = {}
    for header in spec.headers or ():
        if header.value is not None:
            headers[header.name] = header.value
            continue
        assert header.value_from is not None
        ref = header.value_from.secret_key_ref
        value = await read_secret(namespace, ref.name, ref.key) if read_secret is not None else None
        if value is None:
            return {}, f"header {header.name}: Secret {ref.name!r} key {ref.key!r} could not be read"
        headers[header.name] = value
    return headers, None


async def probe_once(
    servers: dict[str, MCPServerSpec], allow_loopback: bool = False, concurrency: int = 20
) -> dict[str, ProbeResult]:
    """Probe each server once, concurrently (``ai-ops render --probe``). Only inline header values are
    sent: Secret values are not available without a cluster."""
    http = SharedHttpPool(max_connections=concurrency, allow_loopback=allow_loopback, guard=True)
    slots = asyncio.Semaphore(concurrency)

    async def one(spec: MCPServerSpec) -> ProbeResult:
        headers = {h.name: h.value for h in spec.headers or () if h.value is not None}
        async with slots:
            return await probe_server(spec, headers, http, allow_loopback)

    try:
        names = sorted(servers)
        results = await asyncio.gather(*(one(servers[name]) for name in names))
        return dict(zip(names, results, strict=True))
    finally:
        await http.aclose()
