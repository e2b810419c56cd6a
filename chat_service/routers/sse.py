"""Server-sent events shared by the streaming routes (``/api/chat/stream``, ``/v1/chat/completions``)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from chat_service.engine import TurnEvent

SSE_MEDIA_TYPE = "text/event-stream"
# A comment line: clients ignore it, proxies see traffic and keep a quiet stream open.
KEEPALIVE = b": ping\n\n"
# No caching, and no buffering by nginx-style proxies: every event reaches the client when it is sent.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """A stream of server-sent events.

    The media type is set per response, not on the class: as a route's ``response_class`` a class-wide
    one would make OpenAPI list the route's JSON error bodies as event streams too (``sse_response``
    documents the 200 instead).
    """

    def __init__(self, content: AsyncIterator[bytes], status_code: int = 200):
        super().__init__(content, status_code=status_code, headers=SSE_HEADERS, media_type=SSE_MEDIA_TYPE)


def sse(event: str, data: dict[str, Any]) -> bytes:
    if event == "ping":
        return KEEPALIVE
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


# Before OpenAPI 3.2 (FastAPI writes 3.1) an event stream's ``schema`` describes one event, not the stream.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "JSON, or `[DONE]` at the end of an OpenAI-style stream"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


def sse_response(description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a route that answers 200 with an event stream."""
    return {200: {"content": {SSE_MEDIA_TYPE: {"schema": SSE_EVENT_SCHEMA}}, "description": description}}


async def first_then_rest(events: AsyncGenerator[TurnEvent]) -> tuple[TurnEvent, AsyncGenerator[TurnEvent]]:
    """Pull the first event now, so errors before the stream starts get a proper HTTP status."""
    first = await events.__anext__()
    return first, events
