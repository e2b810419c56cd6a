"""``GET /api/threads`` and ``GET``/``DELETE /api/threads/{thread_id}``: the caller's own conversations, and
the Investigations' (``investigations:<name>``), which every caller may read and continue (docs/incidents.md)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from chat_service.conversations import is_investigation_thread
from chat_service.engine.errors import map_exception
from chat_service.errors import ThreadNotFound
from chat_service.routers.deps import THREAD_ID_PATTERN, Caller, Engine, Services
from chat_service.routers.responses import error_responses
from chat_service.thread_index import ThreadIndex

router = APIRouter(prefix="/api/threads", tags=["threads"])

ThreadId = Path(pattern=THREAD_ID_PATTERN, description="The conversation id")


async def thread_index(services: Services) -> ThreadIndex:
    return services.thread_index


ThreadList = Annotated[ThreadIndex, Depends(thread_index)]


class MessageUsageOut(BaseModel):
    input_tokens: int
    output_tokens: int


class ThreadMessage(BaseModel):
    role: Literal["user", "assistant", "tool"]
    content: str
    name: str | None = Field(
        default=None, description="assistant: the LLMModel that answered; tool: the tool's name"
    )
    model: str | None = Field(default=None, description="assistant: the provider's model, when it said")
    usage: MessageUsageOut | None = Field(default=None, description="assistant: tokens of this model call")
    tool_calls: list[dict[str, Any]] | None = None
    status: str | None = None


class ThreadOut(BaseModel):
    thread_id: str
    messages: list[ThreadMessage]


class ThreadSummary(BaseModel):
    id: str
    title: str = Field(description="The conversation's first message, on one line, truncated")
    updatedAt: datetime.datetime = Field(description="When its last turn completed")


class ThreadsOut(BaseModel):
    threads: list[ThreadSummary] = Field(description="The caller's conversations, the most recent first")


_RESPONSES = error_responses(
    401,
    404,
    422,
    503,
    descriptions={
        404: "No such conversation of the caller, or it expired (thread_not_found)",
        503: "The investigations cannot be read (store_unavailable)",
    },
)


@router.get("", response_model=ThreadsOut, responses=error_responses(401, 503))
async def list_threads(identity: Caller, threads: ThreadList) -> dict[str, Any]:
    """The caller's conversations that have not expired, the most recently used first."""
    try:
        entries = await threads.threads(identity)
    except Exception as exc:
        raise map_exception(exc) from None
    return {
        "threads": [
            {
                "id": entry.thread_id,
                "title": entry.title,
                "updatedAt": datetime.datetime.fromtimestamp(entry.updated_at, datetime.UTC),
            }
            for entry in entries
        ]
    }


@router.get("/{thread_id}", response_model=ThreadOut, response_model_exclude_none=True, responses=_RESPONSES)
async def read_thread(identity: Caller, engine: Engine, thread_id: str = ThreadId) -> dict[str, Any]:
    """The messages of a conversation of the caller, or of an investigation (404 when unknown or expired)."""
    return {"thread_id": thread_id, "messages": await engine.read_thread(identity, thread_id)}


@router.delete("/{thread_id}", status_code=204, response_class=Response, responses=_RESPONSES)
async def delete_thread(
    identity: Caller, engine: Engine, threads: ThreadList, thread_id: str = ThreadId
) -> Response:
    """Forget a conversation of the caller (and take it off the caller's list). An investigation's
    conversation is an operational record: it only leaves the caller's list."""
    if is_investigation_thread(thread_id):
        await threads.forget(identity, thread_id)
        return Response(status_code=204)
    try:
        await engine.delete_thread(identity, thread_id)
    except ThreadNotFound:
        await threads.forget(identity, thread_id)  # expired under the list: the list forgets it too
        raise
    await threads.forget(identity, thread_id)
    return Response(status_code=204)
