"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``.

Stateless like OpenAI's API: the client sends the whole history each time. The agent still runs with its
tools and middleware; its tool calls happen on the server and only the final answer is returned, so any
OpenAI client (the SDK, Open WebUI) works unchanged. ``model`` is an LLMModel name or ``default``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from langchain_core.messages import AnyMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field

from chat_service.engine import TurnEvent
from chat_service.errors import ChatError, InvalidRequest, error_body
from chat_service.routers.deps import Caller, Engine
from chat_service.routers.responses import ERROR_RESPONSES, error_responses
from chat_service.routers.sse import KEEPALIVE, EventStreamResponse, first_then_rest, sse_response

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai-compatible"])


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Sampling fields (temperature, top_p, ...) are accepted and ignored: the LLMModel decides them.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=253, description="An LLMModel name, or 'default'.")
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None


class RunbookCitation(BaseModel):
    name: str
    title: str
    section: str


class RunbookCitationAnnotation(BaseModel):
    """A runbook section the answer rests on, in the shape of OpenAI's message annotations."""

    type: Literal["runbook_citation"]
    runbook_citation: RunbookCitation


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    annotations: list[RunbookCitationAnnotation] | None = None


def citation_annotations(citations: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "runbook_citation",
            "runbook_citation": {"name": c["runbook"], "title": c["title"], "section": c["section"]},
        }
        for c in citations
    ]


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


def to_langchain(messages: list[OpenAIMessage]) -> list[AnyMessage]:
    raw = [m.model_dump(exclude_none=True) for m in messages]
    if not any(m["role"] == "user" for m in raw):
        raise InvalidRequest("messages must contain at least one user message")
    total = sum(len(json.dumps(m.get("content", ""))) for m in raw)
    if total > 2_000_000:
        raise InvalidRequest("messages are too long (over 2,000,000 characters)")
    try:
        return list(convert_to_messages(raw))  # type: ignore[arg-type]
    except Exception as exc:
        raise InvalidRequest(f"messages cannot be read: {exc}") from None


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **sse_response(
            "The completion; with `stream: true`, server-sent `chat.completion.chunk` events as OpenAI "
            "sends them, then `data: [DONE]`"
        ),
        **ERROR_RESPONSES,
    },
)
async def chat_completions(
    body: ChatCompletionRequest, identity: Caller, engine: Engine
) -> dict[str, Any] | Response:
    """OpenAI Chat Completions, answered by the agent (with its tools and middleware)."""
    messages = to_langchain(body.messages)
    model = None if body.model == "default" else body.model
    created = int(time.time())
    completion_id = _completion_id()
    if not body.stream:
        result = await engine.run_messages(identity, messages, model)
        usage = result.usage
        message: dict[str, Any] = {"role": "assistant", "content": result.reply}
        if result.citations:
            message["annotations"] = citation_annotations(result.citations)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": result.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
        }

    events = engine.stream_messages(identity, messages, model)
    try:
        first, rest = await first_then_rest(events)
    except ChatError as error:
        return JSONResponse(error.body(), status_code=error.status)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    model_name = first.data.get("model", body.model)

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            done: TurnEvent | None = None
            async for event in rest:
                if event.kind == "token":
                    yield chunk({"content": event.data["text"]})
                elif event.kind == "ping":
                    yield KEEPALIVE
                elif event.kind == "done":
                    done = event
            cited = done.result.citations if done is not None and done.result is not None else []
            yield chunk({"annotations": citation_annotations(cited)} if cited else {}, "stop")
            if include_usage and done is not None and done.result is not None:
                usage = done.result.usage
                data = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model_name,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": usage.input_tokens,
                        "completion_tokens": usage.output_tokens,
                        "total_tokens": usage.input_tokens + usage.output_tokens,
                    },
                }
                yield f"data: {json.dumps(data)}\n\n".encode()
        except ChatError as error:
            # The OpenAI SDK raises an APIError for a stream event carrying "error".
            yield f"data: {json.dumps(error.body())}\n\n".encode()
        except Exception:
            log.exception("stream failed")
            yield f"data: {json.dumps(error_body('internal_error', 'internal error; see the service log'))}\n\n".encode()
        finally:
            await rest.aclose()
        yield b"data: [DONE]\n\n"

    return EventStreamResponse(stream())


@router.get("/models", response_model=ModelList, responses=error_responses(401, 503))
async def list_models(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """The LLMModels as OpenAI model objects (use their names, or ``default``, as ``model``)."""
    return {
        "object": "list",
        "data": [
            {"id": m["name"], "object": "model", "created": 0, "owned_by": "ai-ops"} for m in engine.models()
        ],
    }
