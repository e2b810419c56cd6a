"""What a turn produces: its result, the events streamed to the client, and the API view of messages.

``TurnCollector`` turns LangGraph's stream chunks (``updates`` and ``messages`` modes) into ``TurnEvent``s
and fills the ``TurnResult`` on the way, so the plain and the streamed routes see the same turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage

from chat_service.runbooks.tool import SEARCH_RUNBOOKS, cited_hits

# The tool of LangChain's TodoListMiddleware (``todo_list``): its arguments are the whole new plan.
WRITE_TODOS = "write_todos"


@dataclass
class ToolCallRecord:
    id: str
    name: str
    args: dict[str, Any]
    output: str | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args, "output": self.output, "error": self.error}


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, message: AIMessage) -> None:
        usage: dict[str, Any] = dict(message.usage_metadata or {})
        self.input_tokens += int(usage.get("input_tokens", 0) or 0)
        self.output_tokens += int(usage.get("output_tokens", 0) or 0)

    def public(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass
class TurnResult:
    thread_id: str
    model: str
    reply: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    # Runbook sections the answer rests on ({runbook, title, section}), and the last plan of the turn.
    citations: list[dict[str, str]] = field(default_factory=list)
    plan: list[dict[str, str]] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "model": self.model,
            "reply": self.reply,
            "tool_calls": [c.public() for c in self.tool_calls],
            "usage": self.usage.public(),
            "citations": self.citations,
            "plan": {"todos": self.plan} if self.plan is not None else None,
        }


@dataclass(frozen=True)
class TurnEvent:
    """``start`` | ``token`` | ``tool_call`` | ``tool_result`` | ``plan`` | ``citation`` | ``done`` (data as
    in the SSE contract), or
    ``ping`` (no data: a keep-alive during a quiet stretch, sent as an SSE comment)."""

    kind: str
    data: dict[str, Any]
    result: TurnResult | None = None


def message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def _role(message: BaseMessage) -> str | None:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ToolMessage):
        return "tool"
    return None


def public_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """A thread's messages as the API shows them (system and internal messages left out)."""
    shown: list[dict[str, Any]] = []
    for message in messages:
        role = _role(message)
        if role is None:
            continue
        item: dict[str, Any] = {
            "role": role,
            "content": message_text(message),
            "name": getattr(message, "name", None),
        }
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        if isinstance(message, AIMessage):
            # What the page shows under a reply, also after a reload: the provider's model and the tokens.
            item["model"] = (message.response_metadata or {}).get("model_name")
            if message.usage_metadata:
                usage = Usage()
                usage.add(message)
                item["usage"] = usage.public()
        if isinstance(message, ToolMessage):
            item["status"] = message.status
        shown.append(item)
    return shown


class TurnCollector:
    """Turns the agent's stream (``updates`` and ``messages`` modes) into API events and the TurnResult.

    A message can show up again when a later node rewrites it (a PII middleware redacting the model's
    answer keeps the message id): it updates the reply but is not counted or announced twice. With output
    redaction (``hold_tokens``) nothing streams early: the final reply goes out as one token at the end,
    so raw text never reaches the client.
    """

    MODEL_NODE = "model"

    def __init__(self, result: TurnResult, tokens: bool, hold_tokens: bool = False):
        self.result = result
        self.hold = tokens and hold_tokens
        self.tokens = tokens and not hold_tokens
        self.model_calls = 0
        self._pending: dict[str, ToolCallRecord] = {}
        self._seen: set[str] = set()
        self._streamed = False  # whether the current model step's text already went out as tokens
        self._runbook_hits: list[dict[str, Any]] = []  # what this turn's search_runbooks calls returned

    def finish(self) -> list[TurnEvent]:
        events = [TurnEvent("token", {"text": self.result.reply})] if self.hold and self.result.reply else []
        self.result.citations = cited_hits(self.result.reply, self._runbook_hits)
        events += [TurnEvent("citation", dict(c)) for c in self.result.citations]
        return events

    def chunk(self, message: Any, node: str | None) -> list[TurnEvent]:
        if self.tokens and isinstance(message, AIMessageChunk) and node == self.MODEL_NODE:
            text = message_text(message)
            if text:
                self._streamed = True
                return [TurnEvent("token", {"text": text})]
        return []

    def update(self, node: str, messages: list[Any]) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for message in messages:
            seen = message.id is not None and message.id in self._seen
            if message.id is not None:
                self._seen.add(message.id)
            if isinstance(message, AIMessage):
                events += self._ai_message(node, message, seen)
            elif isinstance(message, ToolMessage) and not seen:
                events += self._tool_message(message)
        return events

    def _ai_message(self, node: str, message: AIMessage, seen: bool) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        text = message_text(message)
        if text or not message.tool_calls:
            self.result.reply = text
        if not seen:
            if node == self.MODEL_NODE:
                self.model_calls += 1
            self.result.usage.add(message)
            for call in message.tool_calls:
                record = ToolCallRecord(call.get("id") or "", call["name"], dict(call["args"]))
                self._pending[record.id] = record
                self.result.tool_calls.append(record)
                events.append(TurnEvent("tool_call", {"name": record.name, "args": record.args}))
            # An answer that did not stream (a cache hit, a middleware's own message) goes out whole.
            already_streamed = node == self.MODEL_NODE and self._streamed
            if self.tokens and text and not message.tool_calls and not already_streamed:
                events.append(TurnEvent("token", {"text": text}))
        if node == self.MODEL_NODE:
            self._streamed = False
        return events

    def _tool_message(self, message: ToolMessage) -> list[TurnEvent]:
        record = self._pending.get(message.tool_call_id) or ToolCallRecord(
            message.tool_call_id, message.name or "", {}
        )
        text = message_text(message)
        data: dict[str, Any] = {"name": record.name}
        if message.status == "error":
            record.error = text
            data["error"] = text
        else:
            record.output = text
            data["output"] = text
        events = [TurnEvent("tool_result", data)]
        if (
            message.status != "error"
            and record.name == SEARCH_RUNBOOKS
            and isinstance(message.artifact, list)
        ):
            self._runbook_hits += [hit for hit in message.artifact if isinstance(hit, dict)]
        if message.status != "error" and record.name == WRITE_TODOS:
            plan = _plan_of(record.args)
            if plan is not None and plan != self.result.plan:
                self.result.plan = plan
                events.append(TurnEvent("plan", {"todos": plan}))
        return events


def _plan_of(args: dict[str, Any]) -> list[dict[str, str]] | None:
    """The todos of a write_todos call as the API shows them (the tool's schema already checked them)."""
    todos = args.get("todos")
    if not isinstance(todos, list):
        return None
    return [
        {"content": str(t.get("content", "")), "status": str(t.get("status", "pending"))}
        for t in todos
        if isinstance(t, dict)
    ]
