"""``POST /api/chat`` and ``POST /api/chat/stream`` (server-sent events)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chat_service.engine.turns import TurnEvent
from chat_service.errors import ChatError, error_body
from chat_service.routers.deps import THREAD_ID_PATTERN, Caller, Engine

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["chat"])


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=32000, description="The user's message.")
    thread_id: str | None = Field(
        default=None,
        pattern=THREAD_ID_PATTERN,
        description="Conversation to continue (letters, digits, '.', '_', '-'; at most 128); new when unset.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="An LLMModel name; the default model when unset.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value


class ToolCallOut(BaseModel):
    name: str
    args: dict[str, Any]
    output: str | None = None
    error: str | None = None


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int


class ChatResponse(BaseModel):
    thread_id: str
    model: str
    reply: str
    tool_calls: list[ToolCallOut]
    usage: UsageOut


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "Missing or invalid bearer token",
        404: "Unknown model (model_not_found)",
        422: "Invalid input",
        502: "The model provider failed (provider_error)",
        503: "No model configured (no_model) or model unavailable",
        504: "The request timed out",
    }.items()
}


@router.post("/chat", response_model=ChatResponse, responses=ERROR_RESPONSES)
async def chat(body: ChatRequest, identity: Caller, engine: Engine) -> dict[str, Any]:
    """Run one turn of a conversation and answer with the reply, the tool calls and token usage."""
    result = await engine.run_turn(identity, body.message, body.thread_id, body.model)
    return result.public()


KEEPALIVE = b": ping\n\n"


def sse(event: str, data: dict[str, Any]) -> bytes:
    if event == "ping":
        return KEEPALIVE  # a comment line: clients ignore it, proxies see traffic
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def first_then_rest(events: AsyncGenerator[TurnEvent]) -> tuple[TurnEvent, AsyncGenerator[TurnEvent]]:
    """Pull the first event now, so errors before the stream starts get a proper HTTP status."""
    first = await events.__anext__()
    return first, events


@router.post(
    "/chat/stream",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: start, token, tool_call, tool_result, done, error",
        },
        **ERROR_RESPONSES,
    },
)
async def chat_stream(body: ChatRequest, identity: Caller, engine: Engine) -> Any:
    """The same turn as ``/api/chat``, streamed as server-sent events."""
    events = engine.stream_turn(identity, body.message, body.thread_id, body.model)
    try:
        first, rest = await first_then_rest(events)
    except ChatError as error:
        return JSONResponse(error.body(), status_code=error.status)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield sse(first.kind, first.data)
            async for event in rest:
                yield sse(event.kind, event.data)
        except ChatError as error:
            yield sse("error", error.body()["error"])
        except Exception:
            log.exception("stream failed")
            yield sse("error", error_body("internal_error", "internal error; see the service log")["error"])
        finally:
            await rest.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
