"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``.

Stateless like OpenAI's API: the client sends the whole history each time. The agent still runs with its
tools and middleware; its tool calls happen on the server and only the final answer is returned, so any
OpenAI client (the SDK, Open WebUI) works unchanged. ``model`` is an LLMModel name or ``default``.

``response_format`` (``json_object``, ``json_schema``) is honoured through the agent's structured output.
What cannot be honoured is refused with a 400 instead of being ignored: client-side tools (the agent's
tools are the server's MCP tools, and a client would wait for tool calls that never come) and ``n > 1``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from langchain_core.messages import AnyMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field

from chat_service.engine import TurnEvent
from chat_service.engine.agents import StructuredOutput
from chat_service.errors import (
    ChatError,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
    UnsupportedParameter,
    error_body,
)
from chat_service.routers.deps import Caller, Engine, Services
from chat_service.routers.responses import ERROR_RESPONSES, ErrorResponse, error_responses
from chat_service.routers.sse import KEEPALIVE, EventStreamResponse, first_then_rest, sse_response
from chat_service.usage.service import check_budget

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


class TextFormat(BaseModel):
    type: Literal["text"]


class JSONObjectFormat(BaseModel):
    type: Literal["json_object"]


# The largest JSON schema a request may carry (it goes to the model with every call of the turn).
MAX_SCHEMA_CHARS = 100_000


class JSONSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=10_000)
    json_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class JSONSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")]

# json_object: any JSON object is an answer (tool-call arguments are always an object).
_ANY_OBJECT = {"type": "object", "additionalProperties": True}
_JSON_OBJECT_DESCRIPTION = (
    "Give the final answer as a JSON object: the arguments of this call are the answer."
)


class ChatCompletionRequest(BaseModel):
    # Sampling fields (temperature, top_p, ...) are accepted and ignored: the LLMModel decides them.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=253, description="An LLMModel name, or 'default'.")
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = Field(
        None, description="`json_object` or `json_schema`: the reply content is that JSON (text: as without)."
    )
    n: int | None = Field(None, description="Only 1: one choice per request.")
    tools: list[Any] | None = Field(
        None, description="Refused when not empty: the agent's tools are the server's."
    )
    tool_choice: Any = Field(None, description="Only `none` or `auto` (no client tools).")
    functions: list[Any] | None = Field(None, description="Refused when not empty, like `tools`.")
    function_call: Any = Field(None, description="Only `none` or `auto`, like `tool_choice`.")


_SERVER_SIDE_TOOLS = (
    "the agent's tools are the MCP tools configured on the server and run there; client-side tools "
    "cannot be offered to it (send the request without '{param}')"
)


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """A 400 for what the agent cannot honour, instead of an answer that silently ignores it."""
    for param in ("tools", "functions"):
        if getattr(body, param):
            raise UnsupportedParameter(_SERVER_SIDE_TOOLS.format(param=param), param=param)
    for param in ("tool_choice", "function_call"):
        value = getattr(body, param)
        if value is not None and value not in ("none", "auto"):
            raise UnsupportedParameter(_SERVER_SIDE_TOOLS.format(param=param), param=param)
    if body.n is not None and body.n != 1:
        raise UnsupportedParameter(
            f"n must be 1 (got {body.n}): the service answers one choice per request; send several "
            "requests for several answers",
            param="n",
        )


def structured_output(
    response_format: TextFormat | JSONObjectFormat | JSONSchemaFormat | None,
) -> StructuredOutput | None:
    """What the agent's final answer must be, from OpenAI's ``response_format`` (None: free text)."""
    if response_format is None or isinstance(response_format, TextFormat):
        return None
    if isinstance(response_format, JSONObjectFormat):
        return StructuredOutput("json_object", _ANY_OBJECT, _JSON_OBJECT_DESCRIPTION)
    spec = response_format.json_schema
    if len(json.dumps(spec.json_schema)) > MAX_SCHEMA_CHARS:
        raise UnsupportedParameter(
            f"response_format.json_schema.schema is too large (over {MAX_SCHEMA_CHARS:,} characters)",
            param="response_format",
        )
    if spec.json_schema.get("type", "object") != "object":
        raise UnsupportedParameter(
            "response_format.json_schema.schema must describe a JSON object (type 'object')",
            param="response_format",
        )
    return StructuredOutput(spec.name, spec.json_schema, spec.description or "")


def json_reply(reply: str, output: StructuredOutput | None) -> str:
    """The reply, checked to be JSON when a response_format asked for it: a model that ignored the
    format (a provider without forced tool calls) fails the request rather than breaking the client."""
    if output is None:
        return reply
    try:
        parsed = json.loads(reply)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProviderError(
            f"the model did not answer in the requested JSON format ({output.name}); try again or use a "
            "model that supports tool calls"
        )
    return reply


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


# Content parts whose payload must be text; every part carries its payload under the key its type names.
_TEXT_PARTS = frozenset({"text", "refusal"})


def check_content_parts(messages: list[OpenAIMessage]) -> None:
    """Refuse content parts the model clients cannot convert (a ``text`` part without its text would be a
    KeyError deep inside langchain-openai): OpenAI's rule is that a part of type T holds its payload in T."""
    for index, message in enumerate(messages):
        if not isinstance(message.content, list):
            continue
        for position, part in enumerate(message.content):
            where = f"messages[{index}].content[{position}]"
            kind = part.get("type")
            if not isinstance(kind, str) or not kind:
                raise InvalidRequest(f"{where}: a content part needs a 'type'")
            if kind not in part:
                raise InvalidRequest(f"{where}: a part of type {kind!r} needs its {kind!r} field")
            if kind in _TEXT_PARTS and not isinstance(part[kind], str):
                raise InvalidRequest(f"{where}.{kind}: expected a string")


def to_langchain(messages: list[OpenAIMessage]) -> list[AnyMessage]:
    check_content_parts(messages)
    raw = [m.model_dump(exclude_none=True) for m in messages]
    try:
        json.dumps(raw, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # JSON's \u escapes can spell a lone surrogate, which no model client can send on.
        raise InvalidRequest("messages contain text that is not valid Unicode (a lone surrogate)") from None
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
        400: {
            "model": ErrorResponse,
            "description": "A field the agent cannot honour: client `tools`/`functions`, `n` > 1 "
            "(invalid_request, with `param`)",
        },
        **ERROR_RESPONSES,
    },
)
async def chat_completions(
    body: ChatCompletionRequest, identity: Caller, engine: Engine, services: Services
) -> dict[str, Any] | Response:
    """OpenAI Chat Completions, answered by the agent (with its tools and middleware)."""
    refuse_unsupported(body)
    output = structured_output(body.response_format)
    messages = to_langchain(body.messages)
    model = None if body.model == "default" else body.model
    created = int(time.time())
    completion_id = _completion_id()
    await check_budget(services.usage, engine, identity, model)
    if not body.stream:
        result = await engine.run_messages(identity, messages, model, output=output)
        reply = json_reply(result.reply, output)
        usage = result.usage
        message: dict[str, Any] = {"role": "assistant", "content": reply}
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

    events = engine.stream_messages(identity, messages, model, output=output)
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
                # A structured answer is the arguments of a tool call, not streamed text: it goes out
                # whole, once the turn is done.
                if event.kind == "token" and output is None:
                    yield chunk({"content": event.data["text"]})
                elif event.kind == "ping":
                    yield KEEPALIVE
                elif event.kind == "done":
                    done = event
            if output is not None and done is not None and done.result is not None:
                yield chunk({"content": json_reply(done.result.reply, output)})
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


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "ai-ops"}


def _model_ids(engine: Any) -> list[str]:
    """The LLMModel names, then ``default`` (the default model) unless a model has that name."""
    names = [m["name"] for m in engine.models()]
    return names if "default" in names else [*names, "default"]


@router.get("/models", response_model=ModelList, responses=error_responses(401, 503))
async def list_models(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """The LLMModels as OpenAI model objects (use their names, or ``default``, as ``model``)."""
    return {"object": "list", "data": [_model_object(name) for name in _model_ids(engine)]}


@router.get(
    "/models/{model_id}",
    response_model=ModelObject,
    responses={
        404: {"model": ErrorResponse, "description": "No such model (model_not_found)"},
        **error_responses(401, 422, 503),
    },
)
async def get_model(model_id: str, _identity: Caller, engine: Engine) -> dict[str, Any] | Response:
    """One model object, as OpenAI's ``GET /v1/models/{model}``; 404 in OpenAI's error shape."""
    ids = _model_ids(engine)
    if model_id not in ids:
        error = ModelNotFound(f"The model {model_id!r} does not exist; models: {', '.join(ids)}")
        body = error.body()
        body["error"].update(type="invalid_request_error", param="model")
        return JSONResponse(body, status_code=error.status)
    return _model_object(model_id)
