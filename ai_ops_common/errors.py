"""One short, secret-free description of an exception, for status conditions, logs and tool errors.

The MCP SDK and anyio raise ExceptionGroups out of their task groups, often nesting the real error a few
levels down (or behind ``__cause__``); both the operator's probes and the chat service's MCP sessions
need the error inside, described from its type, HTTP status and text only, never from request headers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx

# Descriptions are shown in conditions and chat replies: long provider bodies are cut.
MAX_DESCRIPTION = 300


class NameNotResolved(OSError):
    """A host name that does not resolve: no address, or no answer from DNS. Said as such, not as a
    refused address or a failed connection, since the fix is the name (or the DNS), not the network."""

    def __init__(self, host: str, error: OSError) -> None:
        detail = error.strerror if isinstance(error, socket.gaierror) and error.strerror else str(error)
        super().__init__(
            f"name {host} does not resolve ({detail})" if detail else f"name {host} does not resolve"
        )
        self.host = host


def walk_exception(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything inside its groups and causes, depth first, in raise order (a context
    suppressed with ``raise ... from None`` is left out, as tracebacks leave it out)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner: list[BaseException] = []
        if isinstance(current, BaseExceptionGroup):
            inner.extend(current.exceptions)
        context = None if current.__suppress_context__ else current.__context__
        inner.extend(e for e in (current.__cause__, context) if e is not None)
        stack.extend(reversed(inner))


def http_status(exc: BaseException) -> int | None:
    """The status of the first HTTP error response inside ``exc``, if any."""
    for inner in walk_exception(exc):
        if isinstance(inner, httpx.HTTPStatusError):
            return inner.response.status_code
    return None


def describe_exception(exc: BaseException) -> str:
    """The HTTP status, else a timeout, else a name that does not resolve, else the first connection
    failure, else the innermost error's type and first line of text."""
    status = http_status(exc)
    if status is not None:
        return f"HTTP {status}"
    leaves = [
        e
        for e in walk_exception(exc)
        if not isinstance(e, BaseExceptionGroup) and not isinstance(e, asyncio.CancelledError)
    ]
    if any(isinstance(leaf, TimeoutError) for leaf in leaves):
        return "timed out"
    for leaf in leaves:
        if isinstance(leaf, NameNotResolved):
            return str(leaf)[:MAX_DESCRIPTION]
    for leaf in leaves:
        if isinstance(leaf, httpx.ConnectError | ConnectionError | OSError):
            return f"connection failed: {_type_and_text(leaf)}"[:MAX_DESCRIPTION]
    return _type_and_text(leaves[0] if leaves else exc)[:MAX_DESCRIPTION]


def _type_and_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
