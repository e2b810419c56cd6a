"""``GET`` and ``DELETE /api/threads/{thread_id}``: the caller's own conversations only."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from chat_service.routers.deps import THREAD_ID_PATTERN, Caller, Engine
from chat_service.routers.responses import error_responses

router = APIRouter(prefix="/api/threads", tags=["threads"])

ThreadId = Path(pattern=THREAD_ID_PATTERN, description="The conversation id")


class ThreadMessage(BaseModel):
    role: Literal["user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: str | None = None


class ThreadOut(BaseModel):
    thread_id: str
    messages: list[ThreadMessage]


_RESPONSES = error_responses(
    401, 404, 422, descriptions={404: "No such conversation of the caller, or it expired (thread_not_found)"}
)


@router.get("/{thread_id}", response_model=ThreadOut, response_model_exclude_none=True, responses=_RESPONSES)
async def read_thread(identity: Caller, engine: Engine, thread_id: str = ThreadId) -> dict[str, Any]:
    """The messages of a conversation of the caller (404 when unknown or expired)."""
    return {"thread_id": thread_id, "messages": await engine.read_thread(identity, thread_id)}


@router.delete("/{thread_id}", status_code=204, response_class=Response, responses=_RESPONSES)
async def delete_thread(identity: Caller, engine: Engine, thread_id: str = ThreadId) -> Response:
    """Forget a conversation of the caller."""
    await engine.delete_thread(identity, thread_id)
    return Response(status_code=204)
