"""``POST /api/chat`` and ``POST /api/chat/stream`` (server-sent events)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chat_service.errors import ChatError, error_body
from chat_service.routers.deps import THREAD_ID_PATTERN, Caller, Engine, Services
from chat_service.routers.responses import ERROR_RESPONSES, error_responses
from chat_service.routers.sse import EventStreamResponse, first_then_rest, sse, sse_response
from chat_service.routers.threads import ThreadList
from chat_service.usage.service import check_budget

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["chat"])


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=32000, description="The user's message.")
    thread_id: str | None = Field(
        default=None,
        pattern=THREAD_ID_PATTERN,
        description="Conversation to continue (letters, digits, '.', '_', '-'; at most 128), or an "
        "investigation's (`investigations:<name>`, its status.threadId); new when unset.",
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


class CitationOut(BaseModel):
    """A runbook section the reply rests on (returned by search_runbooks in this turn, named in the reply)."""

    runbook: str
    title: str
    section: str


class TodoOut(BaseModel):
    content: str
    status: str  # pending | in_progress | completed


class PlanOut(BaseModel):
    """The agent's plan (the todo_list middleware's write_todos) as it stood at the end of the turn."""

    todos: list[TodoOut]


class ChatResponse(BaseModel):
    thread_id: str
    model: str
    reply: str
    tool_calls: list[ToolCallOut]
    usage: UsageOut
    citations: list[CitationOut] = []
    plan: PlanOut | None = None


_BUSY = error_responses(
    409, descriptions={409: "The investigation is still running on that thread (thread_busy)"}
)


@router.post("/chat", response_model=ChatResponse, responses={**ERROR_RESPONSES, **_BUSY})
async def chat(
    body: ChatRequest, identity: Caller, engine: Engine, threads: ThreadList, services: Services
) -> dict[str, Any]:
    """Run one turn of a conversation and answer with the reply, the tool calls and token usage."""
    await check_budget(services.usage, engine, identity, body.model)
    result = await engine.run_turn(identity, body.message, body.thread_id, body.model, list_in=threads)
    return result.public()


@router.post(
    "/chat/stream",
    response_class=EventStreamResponse,
    responses={
        **sse_response(
            "Server-sent events: start, token, tool_call, tool_result, plan, citation, done, error; "
            "`: ping` comments while the turn is quiet"
        ),
        **ERROR_RESPONSES,
        **_BUSY,
    },
)
async def chat_stream(
    body: ChatRequest, identity: Caller, engine: Engine, threads: ThreadList, services: Services
) -> Response:
    """The same turn as ``/api/chat``, streamed as server-sent events."""
    await check_budget(services.usage, engine, identity, body.model)  # a 429 before the stream starts
    # The thread is listed by the time the client hears ``done``.
    events = engine.stream_turn(identity, body.message, body.thread_id, body.model, list_in=threads)
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

    return EventStreamResponse(stream())
