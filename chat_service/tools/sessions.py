"""Persistent MCP sessions: one long-lived ClientSession per server, reconnected when it breaks.

langchain-mcp-adapters' default opens a new MCP session (and a new HTTP client) for every tool call; a
``PersistentSession`` keeps one open in a background task and hands it to every request, so a tool call
costs one round trip. A request on a session whose connection died fails at once (``SessionLost``)
instead of waiting forever, and the next request reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_mcp_adapters.sessions import create_session
from mcp import ClientSession

from ai_ops_common.errors import describe_exception, walk_exception
from ai_ops_common.guarded_transport import ConnectRefused

log = logging.getLogger(__name__)
T = TypeVar("T")


class MCPUnavailable(Exception):
    """A server could not be reached or initialized; the message is safe to show (no header values)."""


class SessionLost(Exception):
    """The session's connection ended while a request was waiting for its answer."""


@dataclass(frozen=True)
class ServerConnection:
    """A server's connection with its Secret-backed values resolved (never logged or shown)."""

    name: str
    connection: dict[str, Any]
    fingerprint: str


class PersistentSession:
    """One long-lived MCP ClientSession, entered and exited in its own task (anyio needs that).

    ``resolve`` gives the connection (Secret-backed headers and env read now); it is called again on every
    reconnect, so a rotated header token is used as soon as the server refuses the old one.
    """

    def __init__(
        self,
        server: ServerConnection,
        connect_timeout: float,
        on_open: Callable[[str], None] | None = None,
        resolve: Callable[[], ServerConnection] | None = None,
    ):
        self.server = server
        self.resolve = resolve
        self.connect_timeout = connect_timeout
        self._on_open = on_open
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._opened_once = False
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self._session is not None and self._task is not None and not self._task.done()

    async def get(self) -> ClientSession:
        if self.alive:
            assert self._session is not None
            return self._session
        async with self._lock:
            if self.alive:
                assert self._session is not None
                return self._session
            await self._shutdown()
            if self.resolve is not None and self._opened_once:
                self.server = self.resolve()  # may raise MCPUnavailable (a Secret gone)
            self._opened_once = True
            self._ready, self._stop, self._error = asyncio.Event(), asyncio.Event(), None
            self._task = asyncio.create_task(
                self._run(self._ready, self._stop), name=f"ai-ops-mcp-session-{self.server.name}"
            )
            try:
                await asyncio.wait_for(self._ready.wait(), self.connect_timeout)
            except TimeoutError:
                await self._shutdown()
                raise MCPUnavailable(
                    f"MCP server {self.server.name!r} did not complete initialize within {self.connect_timeout:g} s"
                ) from None
            if self._session is None:
                error = self._error
                await self._shutdown()
                chain: Iterator[BaseException] = walk_exception(error) if error is not None else iter(())
                refused = next((e for e in chain if isinstance(e, ConnectRefused)), None)
                if refused is not None:  # the guarded pool refused the address the name resolved to
                    raise MCPUnavailable(
                        f"MCP server {self.server.name!r} not contacted: address refused: {refused.reason}"
                    )
                reason = describe_exception(error) if error else "connection closed"
                raise MCPUnavailable(f"MCP server {self.server.name!r} is unreachable: {reason}")
            return self._session

    async def request(self, call: Callable[[ClientSession], Awaitable[T]], timeout: float) -> T:
        """Run ``call`` on the session; SessionLost when the connection ends first, TimeoutError after
        ``timeout``. (The SDK leaves a pending request waiting forever when its transport dies.)"""
        client = await self.get()
        runner = self._task
        assert runner is not None
        pending = asyncio.ensure_future(call(client))
        try:
            done, _ = await asyncio.wait(
                {pending, runner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            pending.cancel()
            raise
        if pending in done:
            return pending.result()
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        if runner in done:
            reason = describe_exception(self._error) if self._error else "connection closed"
            raise SessionLost(f"the session to {self.server.name!r} ended: {reason}")
        raise TimeoutError

    async def _run(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        try:
            async with create_session(self.server.connection) as session:  # type: ignore[arg-type]
                await session.initialize()
                if self._on_open:
                    self._on_open(self.server.name)
                self._session = session
                ready.set()
                await stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the SDK raises ExceptionGroups from its task groups
            self._error = exc
            log.debug("MCP session to %s ended: %s", self.server.name, describe_exception(exc))
        finally:
            self._session = None
            ready.set()

    async def _shutdown(self) -> None:
        task, stop = self._task, self._stop
        self._task = None
        self._session = None
        if task is None:
            return
        if stop is not None:
            stop.set()
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def reset(self) -> None:
        async with self._lock:
            await self._shutdown()

    async def close(self) -> None:
        await self.reset()
