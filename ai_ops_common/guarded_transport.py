"""An httpx transport that connects only to addresses the SSRF policy (ai_ops_api.addresses) accepts.

The check happens where the connection is made: httpcore asks its network backend to `connect_tcp(host,
port)`; the guarded backend resolves `host` once, checks every address, and opens the socket to a checked
address. No second lookup happens, so a DNS answer that changes after the check (rebinding) is never
used. httpcore still believes it connected to `host`, so the Host header, TLS SNI and certificate
verification stay on the name. httpx sends every redirect hop through the transport, so each hop's new
host is checked too; a reused keep-alive connection was checked when it was opened.

Plug in: `guarded_transport(...)` where an `httpx.AsyncHTTPTransport` is built (e.g. the pool of
`SharedHttpPool`, whose client factory then hands out guarded clients), or `guarded_client(...)`. No proxy
support: behind a proxy the proxy would connect on our behalf, unchecked.
"""

from __future__ import annotations

import functools
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence

import anyio
import httpcore
import httpx

from ai_ops_api.addresses import (
    AddressRefused,
    ExtraCheck,
    IPAddress,
    Permit,
    resolve_and_check,
)

# Resolves a host once and returns the addresses that may be connected to; raises to refuse.
AddressResolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class ConnectRefused(httpx.ConnectError):
    """The address policy refused the connection; `reason` says which host, address and why, and
    `__cause__` is the resolver's own exception (AddressRefused or, e.g., an allowlist refusal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"address refused: {reason}")
        self.reason = reason


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend whose `connect_tcp` connects only to addresses `resolve` returned."""

    def __init__(self, resolve: AddressResolver, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        options = list(socket_options or ())
        deadline = anyio.current_time() + timeout if timeout is not None else None
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout:g}s") from None
        except OSError as error:
            text = error.strerror if isinstance(error, socket.gaierror) and error.strerror else str(error)
            raise httpcore.ConnectError(f"cannot resolve {host}: {text}") from None
        except AddressRefused as error:
            raise ConnectRefused(error.reason) from error
        # Any other exception of the resolver (a caller's own refusal; not an OSError, which means the
        # name could not be resolved) passes through httpcore and httpx unchanged, for the caller.
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address to connect to")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            remaining = None if deadline is None else max(0.0, deadline - anyio.current_time())
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # try the next checked address, as getaddrinfo-based connects do
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed through the guarded transport")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` (same pool, limits, TLS settings) over the guarded backend."""

    def __init__(
        self,
        resolve: AddressResolver,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: typing.Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        retries: int = 0,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's
        ssl_context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        super().__init__(verify=ssl_context, http1=http1, http2=http2, limits=limits)
        # httpx offers no argument for the network backend, so the pool it built is replaced by the same
        # pool over the guarded backend (the transport tests fail if httpx stops using `_pool`).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=GuardedNetworkBackend(resolve),
        )


def policy_resolver(
    *, allow_loopback: bool = False, extra_check: ExtraCheck | None = None, permit: Permit | None = None
) -> AddressResolver:
    """The standard policy as an AddressResolver: `resolve_and_check` with these settings."""
    return functools.partial(
        resolve_and_check, allow_loopback=allow_loopback, extra_check=extra_check, permit=permit
    )


def guarded_transport(
    *,
    allow_loopback: bool = False,
    extra_check: ExtraCheck | None = None,
    resolve: AddressResolver | None = None,
    **transport_options: typing.Any,
) -> GuardedTransport:
    """A pooled transport enforcing the address policy (or `resolve`, a resolver of one's own).
    `transport_options` are GuardedTransport's: verify, limits, http2, retries..."""
    return GuardedTransport(
        resolve or policy_resolver(allow_loopback=allow_loopback, extra_check=extra_check),
        **transport_options,
    )


def guarded_client(
    *,
    allow_loopback: bool = False,
    extra_check: ExtraCheck | None = None,
    resolve: AddressResolver | None = None,
    verify: ssl.SSLContext | str | bool = True,
    **client_options: typing.Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every connection (redirect hops included) passes the policy.
    Environment proxies are not used (a proxy would connect on our behalf, unchecked)."""
    transport = guarded_transport(
        allow_loopback=allow_loopback, extra_check=extra_check, resolve=resolve, verify=verify
    )
    return httpx.AsyncClient(transport=transport, trust_env=False, **client_options)


__all__ = [
    "AddressRefused",
    "AddressResolver",
    "ConnectRefused",
    "GuardedNetworkBackend",
    "GuardedTransport",
    "guarded_client",
    "guarded_transport",
    "policy_resolver",
]
