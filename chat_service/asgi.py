"""The edge of the chat service: the caller's token and the request body size are checked before any route
reads the body.

FastAPI reads and parses a route's body before it solves the route's dependencies, so an auth dependency
alone lets an unauthenticated caller make the service read (and buffer) a body of any size. This guard is
plain ASGI, not Starlette's BaseHTTPMiddleware (which buffers): it answers 401 from the headers alone,
413 from a ``Content-Length`` over the limit, and 413 as soon as a body without one (chunked) crosses the
limit while the app reads it, without taking more. Refusals close the connection, so the server does not
read and discard the rest of an upload either (Starlette's RequestBodyLimitMiddleware answers only once a
route reads the body, and keeps the connection, so the server reads the rest to discard it). Routes still take the caller's identity from their FastAPI
dependency (routers/deps.py); this guard only makes sure no body is read before it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service.auth import TokenAuth
from chat_service.errors import ChatError, PayloadTooLarge, Unauthorized

log = logging.getLogger(__name__)


async def send_refusal(send: Send, error: ChatError, headers: Mapping[str, str] | None = None) -> None:
    """Answer ``error`` as our JSON error body and close the connection (any unread body is left unread)."""
    body = json.dumps(error.body()).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def declared_length(headers: Headers) -> int | None:
    """The ``Content-Length`` as a number, or None when absent (the server rejects malformed ones)."""
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class _LimitedBody:
    """``receive`` that counts body bytes, and ``send`` that drops the app's answer once we refused."""

    def __init__(self, receive: Receive, send: Send, refusal: PayloadTooLarge, limit: int):
        self._receive = receive
        self._send = send
        self._refusal = refusal
        self._limit = limit
        self._received = 0
        self.refused = False
        self._response_started = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                self.refused = True
                if not self._response_started:
                    await send_refusal(self._send, self._refusal)
                # The app sees a client that went away: it stops reading, and its answer is dropped.
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)


class EdgeGuard:
    """Bearer-token check for every route but the open ones, and the body size limit for all."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: TokenAuth,
        max_body_bytes: int,
        open_paths: Iterable[str],
        open_prefixes: Iterable[str] = (),
    ):
        self.app = app
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than {self.max_body_bytes} bytes (the limit, AI_OPS_MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.is_open(scope["path"]):
            try:
                self.auth.identify(headers.get("authorization"))
            except Unauthorized as error:
                await send_refusal(send, error, {"WWW-Authenticate": "Bearer"})
                return
        length = declared_length(headers)
        if length is not None and length > self.max_body_bytes:
            await send_refusal(send, self._too_large())
            return
        body = _LimitedBody(receive, send, self._too_large(), self.max_body_bytes)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.refused:
                raise
            # Whatever the app made of the "disconnect" after our 413 is of no interest to anyone.
            log.debug("request failed after its body was refused", exc_info=True)
