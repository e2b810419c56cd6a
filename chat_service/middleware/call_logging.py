"""The ``logging`` middleware: one structured log record per model call and per tool call.

Each record carries its fields as ``extra`` attributes (``event``, ``model``, ``latency_ms``, ``outcome`` ...)
so a JSON formatter can emit them as they are, and a readable ``key=value`` message for plain text logs.
Prompts, replies and tool arguments are logged only with ``includeContent``, cut at ``maxContentChars``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse, ToolCallRequest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.types import Command

from ai_ops_api.middleware import LoggingConfig

ModelResult = ModelResponse[Any] | AIMessage
ToolResult = ToolMessage | Command[Any]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block if isinstance(block, str) else str(block.get("text", ""))
            for block in content
            if isinstance(block, (str, dict))
        )
    return json.dumps(content, default=str)


def _ai_message(result: ModelResult) -> AIMessage | None:
    if isinstance(result, AIMessage):
        return result
    messages = getattr(result, "result", None) or []
    return next((m for m in messages if isinstance(m, AIMessage)), None)


class LoggingMiddleware(AgentMiddleware):
    """Logs model and tool calls as structured records (no content unless configured)."""

    def __init__(self, config: LoggingConfig, model_name: str, logger: logging.Logger):
        super().__init__()
        self.config = config
        self.model_name = model_name
        self.logger = logger
        self.level = logging.getLevelName(config.level)

    # -- helpers -------------------------------------------------------------------------------------

    def _cut(self, text: str) -> str:
        limit = self.config.max_content_chars
        return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"

    def _emit(self, fields: dict[str, Any]) -> None:
        message = " ".join(f"{key}={value}" for key, value in fields.items() if not key.endswith("_content"))
        self.logger.log(self.level, message, extra=fields)

    def _model_fields(
        self,
        request: ModelRequest[Any],
        started: float,
        result: ModelResult | None,
        error: BaseException | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "event": "model_call",
            "model": self.model_name,
            "llm_model": getattr(request.model, "model_name", None) or getattr(request.model, "model", None),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "outcome": "ok" if error is None else "error",
        }
        message = _ai_message(result) if result is not None else None
        usage: dict[str, Any] = dict((message.usage_metadata if message is not None else None) or {})
        fields["input_tokens"] = usage.get("input_tokens")
        fields["output_tokens"] = usage.get("output_tokens")
        if message is not None:
            fields["tool_calls"] = len(message.tool_calls)
            cache = (message.response_metadata.get("ai_ops") or {}).get("cache")
            if cache:
                fields["cache"] = cache
        if error is not None:
            fields["error"] = type(error).__name__
        if self.config.include_content:
            fields["prompt_content"] = self._cut(_last_message_text(request.messages))
            if message is not None:
                fields["reply_content"] = self._cut(_text(message.content))
                if message.tool_calls:
                    fields["tool_calls_content"] = self._cut(
                        json.dumps(
                            [{"name": c["name"], "args": c["args"]} for c in message.tool_calls], default=str
                        )
                    )
        return fields

    def _tool_fields(
        self, request: ToolCallRequest, started: float, result: ToolResult | None, error: BaseException | None
    ) -> dict[str, Any]:
        outcome = "ok"
        if error is not None or (isinstance(result, ToolMessage) and result.status == "error"):
            outcome = "error"
        fields: dict[str, Any] = {
            "event": "tool_call",
            "model": self.model_name,
            "tool": request.tool_call["name"],
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "outcome": outcome,
        }
        if error is not None:
            fields["error"] = type(error).__name__
        if self.config.include_content:
            fields["args_content"] = self._cut(json.dumps(request.tool_call.get("args"), default=str))
            if isinstance(result, ToolMessage):
                fields["output_content"] = self._cut(_text(result.content))
        return fields

    # -- hooks ---------------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResult:
        started = time.perf_counter()
        try:
            result = handler(request)
        except BaseException as exc:
            self._emit(self._model_fields(request, started, None, exc))
            raise
        self._emit(self._model_fields(request, started, result, None))
        return result

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResult:
        started = time.perf_counter()
        try:
            result = await handler(request)
        except BaseException as exc:
            self._emit(self._model_fields(request, started, None, exc))
            raise
        self._emit(self._model_fields(request, started, result, None))
        return result

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        started = time.perf_counter()
        try:
            result = handler(request)
        except BaseException as exc:
            self._emit(self._tool_fields(request, started, None, exc))
            raise
        self._emit(self._tool_fields(request, started, result, None))
        return result

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolResult]]
    ) -> ToolResult:
        started = time.perf_counter()
        try:
            result = await handler(request)
        except BaseException as exc:
            self._emit(self._tool_fields(request, started, None, exc))
            raise
        self._emit(self._tool_fields(request, started, result, None))
        return result


def _last_message_text(messages: Sequence[BaseMessage]) -> str:
    return _text(messages[-1].content) if messages else ""
