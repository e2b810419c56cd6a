"""One HTTP connection pool shared by every MCP client session of a process.

The MCP SDK and langchain-mcp-adapters build a new ``httpx.AsyncClient`` for every session through an
``httpx_client_factory``; building clients (and TLS contexts) per session costs about a third of a short
session. ``SharedHttpPool.client_factory`` hands out cheap clients over one pooled transport instead.
Used by the chat service's MCP toolbox and by the operator's probes.

With ``guard=True`` the pool is the guarded transport (ai_ops_common.guarded_transport): every connection,
redirect hops included, goes only to an address the SSRF policy accepts, and environment proxies are not
used (a proxy would connect on our behalf, unchecked). The default stays unguarded for callers that check
addresses themselves (the operator's probes, until they switch).
"""

from __future__ import annotations

import httpx

from ai_ops_common.guarded_transport import guarded_transport


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """Delegates to the pool and ignores close: the pool outlives the clients that borrow it."""

    def __init__(self, pool: httpx.AsyncHTTPTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class SharedHttpPool:
    """A pooled transport and the ``httpx_client_factory`` the MCP SDK calls (same signature)."""

    def __init__(
        self,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,
        default_timeout: httpx.Timeout | None = None,
        *,
        guard: bool = False,
        allow_loopback: bool = False,
    ) -> None:
        keepalive = max_connections if max_keepalive_connections is None else max_keepalive_connections
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive)
        self.guarded = guard
        self._pool: httpx.AsyncHTTPTransport = (
            guarded_transport(allow_loopback=allow_loopback, limits=limits)
            if guard
            else httpx.AsyncHTTPTransport(limits=limits)
        )
        self._transport = _BorrowedTransport(self._pool)
        self._default_timeout = default_timeout or httpx.Timeout(30.0)

    def client_factory(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport,
            headers=headers,
            timeout=timeout if timeout is not None else self._default_timeout,
            auth=auth,
            trust_env=not self.guarded,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
