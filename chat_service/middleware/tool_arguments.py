"""Always on: a tool call whose arguments are not a complete JSON object is never executed.

LangChain is lenient with tool-call arguments. Streamed, the pieces are merged and parsed with
``parse_partial_json``, which completes a truncated ``{"text": "hi"`` into ``{"text": "hi"}`` (so the tool
ran with what the model never finished) and keeps only that parse. Not streamed, langchain-openai's
``parse_tool_call`` turns ``null``/``[]``/``""`` into ``{}``, while ``[1, 2]`` or ``"x"`` fail building the
AIMessage; arguments that are not JSON become ``invalid_tool_calls``, which end the turn with an empty
reply because the agent loop only follows ``tool_calls``.

``StrictToolArguments`` is the innermost model-call wrapper. While the model answers it attaches a
streaming callback handler (``_StreamedToolCalls``): its presence makes LangChain stream the call (the
same switch LangGraph's ``messages`` stream mode uses), so the raw ``tool_call_chunks`` text of every
call is seen, on every route, whether the client streams or not. Every call of the answer is then
judged by that raw text: empty (a tool without parameters) or one complete JSON object passes; anything
else stays in ``tool_calls`` with empty arguments and is answered by an error ToolMessage in the same
step. An answered call is not pending, so the agent loop goes back to the model (the loop's own rule for
"tool calls already answered"), the model reads why and may call again; the tool never runs.

Models configured with ``disable_streaming`` answer unstreamed; the raw text is then only known for calls
LangChain refused (``invalid_tool_calls``) or that a provider keeps in ``additional_kwargs``, and an
answer whose arguments are a JSON value other than an object cannot be read at all: that one fails as
a provider error instead of a 500.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar
from uuid import UUID

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from langchain_core.tracers.context import register_configure_hook
from pydantic import ValidationError

from chat_service.errors import ProviderError

T = TypeVar("T")
ModelHandler = Callable[[ModelRequest[Any]], ModelResponse[Any]]
AsyncModelHandler = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]

# How much of the model's own arguments text the error quotes back to it.
QUOTED_ARGUMENTS = 200


class _StreamedToolCalls(BaseCallbackHandler):
    """Collects the raw argument text of each streamed tool call, as LangChain merges chunks: pieces with
    the same ``index`` belong to one call, their ``args`` strings concatenated.

    It also has the two methods of LangChain's ``_StreamingCallbackHandler`` protocol (pass-through taps):
    a chat model streams when such a handler is attached, which is what makes the raw text visible."""

    run_inline = True  # called in the model's task, in order; no executor hop per chunk

    def __init__(self) -> None:
        self._runs: dict[UUID, dict[Any, dict[str, Any]]] = {}
        self._last_run: UUID | None = None

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        message = getattr(chunk, "message", None)
        if not isinstance(message, AIMessageChunk) or not message.tool_call_chunks:
            return
        calls = self._runs.setdefault(run_id, {})
        self._last_run = run_id
        for piece in message.tool_call_chunks:
            key: Any = piece.get("index")
            if key is None:  # no index: a call of its own, as LangChain's merge treats it
                key = ("unindexed", len(calls))
            call = calls.setdefault(key, {"id": None, "args": []})
            call["id"] = call["id"] or piece.get("id")
            if piece.get("args"):
                call["args"].append(piece["args"])

    def raw_arguments(self) -> dict[str, str]:
        """Tool call id -> the raw arguments text, for the last model run streamed under this handler."""
        calls = self._runs.get(self._last_run) if self._last_run is not None else None
        return {c["id"]: "".join(c["args"]) for c in (calls or {}).values() if c["id"]}

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        return output

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        return output


# LangChain adds the handler in this variable to every callback manager configured in its context, so
# the model run inside the wrapper gets it without changing the model or the request.
_current_capture: ContextVar[_StreamedToolCalls | None] = ContextVar("ai_ops_tool_arguments", default=None)
register_configure_hook(_current_capture, inheritable=True)


def argument_problem(raw: str | None) -> str | None:
    """Why ``raw`` is not acceptable tool-call arguments, or None: empty (no parameters) or one JSON object."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        detail = getattr(error, "msg", None) or str(error)
        position = getattr(error, "pos", None)
        return f"not valid JSON ({detail} at character {position})" if position is not None else detail
    if isinstance(value, dict):
        return None
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    return f"the arguments are {kind}"


def invalid_arguments_message(name: str, problem: str, raw: str) -> str:
    quoted = raw if len(raw) <= QUOTED_ARGUMENTS else raw[:QUOTED_ARGUMENTS] + "..."
    return (
        f"invalid arguments for tool {name}: {problem} (expected a JSON object). The tool was not called. "
        f"Arguments received: {quoted}"
    )


def _raw_from_additional_kwargs(message: AIMessage) -> dict[str, str]:
    """Raw arguments some providers keep in ``additional_kwargs["tool_calls"]`` (OpenAI's shape)."""
    found: dict[str, str] = {}
    for item in message.additional_kwargs.get("tool_calls") or []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(item.get("id"), str):
            arguments = function.get("arguments")
            found[item["id"]] = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return found


def check_tool_calls(message: AIMessage, streamed: dict[str, str]) -> tuple[AIMessage, list[ToolMessage]]:
    """``message`` with every tool call whose raw arguments are unacceptable kept with empty arguments,
    and the error ToolMessages answering those calls (none: the message unchanged)."""
    raw_by_id = {**_raw_from_additional_kwargs(message), **streamed}
    calls: list[ToolCall] = []
    answers: list[ToolMessage] = []

    def refuse(name: str, call_id: str, problem: str, raw: str) -> None:
        calls.append(ToolCall(name=name, args={}, id=call_id, type="tool_call"))
        answers.append(
            ToolMessage(
                content=invalid_arguments_message(name, problem, raw),
                tool_call_id=call_id,
                name=name,
                status="error",
            )
        )

    for call in message.tool_calls:
        call_id = call.get("id") or ""
        raw = raw_by_id.get(call_id)
        problem = argument_problem(raw)
        if problem is None and raw is None and not isinstance(call.get("args"), dict):
            problem = "the arguments are not an object"
        if problem is None:
            calls.append(call)
        else:
            refuse(call["name"], call_id or f"call_{uuid.uuid4().hex}", problem, raw or "")
    for invalid in message.invalid_tool_calls:
        raw = invalid.get("args") or ""
        problem = argument_problem(raw) or invalid.get("error") or "the arguments could not be read"
        refuse(
            invalid.get("name") or "unknown", invalid.get("id") or f"call_{uuid.uuid4().hex}", problem, raw
        )
    if not answers:
        return message, []
    return message.model_copy(update={"tool_calls": calls, "invalid_tool_calls": []}), answers


def _is_tool_arguments_error(error: ValidationError) -> bool:
    """AIMessage refused a tool call's arguments (a JSON value that is not an object, unstreamed)."""
    return error.title == "AIMessage" and any(
        tuple(item.get("loc") or ())[:1] == ("tool_calls",) for item in error.errors()
    )


def _unreadable() -> ProviderError:
    return ProviderError(
        "the model answered a tool call whose arguments are not a JSON object (expected a JSON object); "
        "the tool was not called. Streaming is disabled for this model, so the answer could not be read "
        "call by call."
    )


class StrictToolArguments(AgentMiddleware[Any, Any, Any]):
    """See the module docstring. Not configurable: every agent has it, innermost."""

    def _checked(self, response: ModelResponse[Any], capture: _StreamedToolCalls) -> ModelResponse[Any]:
        streamed = capture.raw_arguments()
        result: list[BaseMessage] = []
        changed = False
        for message in response.result:
            if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
                checked, answers = check_tool_calls(message, streamed)
                changed = changed or bool(answers)
                result += [checked, *answers]
            else:
                result.append(message)
        if not changed:
            return response
        return ModelResponse(result=result, structured_response=response.structured_response)

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelHandler) -> ModelResponse[Any]:
        capture = _StreamedToolCalls()
        token = _current_capture.set(capture if request.tools else None)
        try:
            response = handler(request)
        except ValidationError as error:
            if _is_tool_arguments_error(error):
                raise _unreadable() from None
            raise
        finally:
            _current_capture.reset(token)
        return self._checked(response, capture)

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: AsyncModelHandler
    ) -> ModelResponse[Any]:
        capture = _StreamedToolCalls()
        # Only with tools bound: without them there is no tool call to read, and no reason to stream.
        token = _current_capture.set(capture if request.tools else None)
        try:
            response = await handler(request)
        except ValidationError as error:
            if _is_tool_arguments_error(error):
                raise _unreadable() from None
            raise
        finally:
            _current_capture.reset(token)
        return self._checked(response, capture)
