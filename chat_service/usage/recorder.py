"""Counts every model and tool call into the metrics and the ledger, and checks budgets.

The hook is a LangChain callback handler set as the *own* callback of every chat model and tool the
service builds (``UsageRecorder.instrument``). Why a callback and not an agent middleware: a middleware's
``wrap_model_call`` sees only the agent's own model call, while summarization, the tool selector and
fallback models are called from inside other middleware, and investigations run graphs of their own; a
model's callback runs for every call of that model whoever makes it, with the run's metadata (caller,
investigation, graph node) merged in, and the final ``LLMResult`` carries the provider's usage for
streamed and plain calls alike (LangChain sums the stream's usage chunk into it).

The handler runs inline (no thread hop) and does no I/O: metrics are counted at once and the ledger write
is a background task; a budget check first waits for this replica's pending writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from ai_ops_api.agent_config import AgentConfig, ModelEntry
from chat_service.metrics import ChatMetrics
from chat_service.usage.budgets import Budget, exceeded
from chat_service.usage.estimate import estimate_tokens, message_text
from chat_service.usage.ledger import Ledger
from chat_service.usage.ledger import field as ledger_field
from chat_service.usage.pricing import NANOS_PER_UNIT, TokenCounts, cost_nanos

log = logging.getLogger(__name__)

MODEL_METADATA_KEY = "ai_ops_llm_model"  # which LLMModel a chat model object is (set by instrument)
OTHER_CALLER = "other"
UNKNOWN_CALLER = "unknown"
BUILTIN_SERVER = "builtin"  # tools of the service itself (search_runbooks)

CHAT, SUMMARIZATION, INVESTIGATION = "chat", "summarization", "investigation"


def call_kind(metadata: dict[str, Any]) -> str:
    """What caused a model call: an investigation, a summarization middleware, or the chat turn."""
    if metadata.get("ai_ops_investigation"):
        return INVESTIGATION
    # LangChain's SummarizationMiddleware marks its model calls so (they run inside the agent's model
    # node, so the graph node does not tell them apart); a summarizing node of another graph by its name.
    if metadata.get("lc_source") == SUMMARIZATION:
        return SUMMARIZATION
    node = str(metadata.get("langgraph_node") or "")
    return SUMMARIZATION if "summariz" in node.lower() else CHAT


def usage_of(response: LLMResult) -> TokenCounts | None:
    """The provider's usage summed over the generations; None when it sent none."""
    found = False
    counts = {"input": 0, "output": 0, "cached": 0}
    for generations in response.generations:
        for generation in generations:
            meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if not meta:
                continue
            found = True
            counts["input"] += int(meta.get("input_tokens") or 0)
            counts["output"] += int(meta.get("output_tokens") or 0)
            details = meta.get("input_token_details") or {}
            counts["cached"] += int(details.get("cache_read") or 0)
    return TokenCounts(counts["input"], counts["output"], counts["cached"]) if found else None


def estimated_usage(prompt_chars: int, response: LLMResult) -> TokenCounts:
    output = sum(
        estimate_tokens(message_text(getattr(g, "message", None)) or getattr(g, "text", ""))
        for generations in response.generations
        for g in generations
    )
    return TokenCounts(input=-(-prompt_chars // 4), output=output, estimated=True)


@dataclass
class _ModelStart:
    metadata: dict[str, Any]
    prompt_chars: int


@dataclass
class _ToolStart:
    metadata: dict[str, Any]
    tool: str
    started: float


class UsageCallback(BaseCallbackHandler):
    run_inline = True  # called on the event loop: no executor hop per call

    def __init__(self, recorder: UsageRecorder):
        self.recorder = recorder
        self._models: dict[UUID, _ModelStart] = {}
        self._tools: dict[UUID, _ToolStart] = {}

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        chars = sum(len(message_text(m)) for batch in messages for m in batch)
        self._models[run_id] = _ModelStart(dict(kwargs.get("metadata") or {}), chars)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        start = self._models.pop(run_id, None)
        if start is None:
            return
        tokens = usage_of(response) or estimated_usage(start.prompt_chars, response)
        try:
            self.recorder.model_call(start.metadata, tokens)
        except Exception:  # accounting must never fail a turn
            log.exception("usage of a model call not recorded")

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._models.pop(run_id, None)

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        name = str(serialized.get("name") or kwargs.get("name") or "unknown")
        self._tools[run_id] = _ToolStart(dict(kwargs.get("metadata") or {}), name, time.perf_counter())

    def _tool_done(self, run_id: UUID, ok: bool) -> None:
        start = self._tools.pop(run_id, None)
        if start is None:
            return
        try:
            self.recorder.tool_call(start.metadata, start.tool, ok, time.perf_counter() - start.started)
        except Exception:
            log.exception("usage of a tool call not recorded")

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, getattr(output, "status", "success") != "error")

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, False)


@dataclass
class UsageRecorder:
    metrics: ChatMetrics
    ledger: Ledger
    config: Callable[[], AgentConfig | None]  # the agent config in force (namespace, model prices)
    known_callers: Callable[[], Iterable[str]]  # the tokens file's names: per-caller metric labels
    caller_budgets: dict[str, Budget] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.handler = UsageCallback(self)

    # -- hook -----------------------------------------------------------------------------------------

    def instrument(self, target: Any, model_name: str | None = None) -> Any:
        """Make ``target`` (a chat model or a tool) report its calls; returns it."""
        callbacks = list(target.callbacks or []) if isinstance(target.callbacks, list) else []
        if self.handler not in callbacks:
            target.callbacks = [*callbacks, self.handler]
        if model_name is not None:
            target.metadata = {**(target.metadata or {}), MODEL_METADATA_KEY: model_name}
        return target

    # -- recording ------------------------------------------------------------------------------------

    def _namespace(self) -> tuple[str, AgentConfig | None]:
        config = self.config()
        return (config.namespace if config is not None and config.namespace else "default"), config

    def _caller_label(self, caller: str) -> str:
        return caller if caller in set(self.known_callers()) else OTHER_CALLER

    def model_call(self, metadata: dict[str, Any], tokens: TokenCounts) -> None:
        namespace, config = self._namespace()
        model = str(metadata.get(MODEL_METADATA_KEY) or metadata.get("ai_ops_model") or "unknown")
        caller = str(metadata.get("ai_ops_caller") or UNKNOWN_CALLER)
        entry = config.model_by_name(model) if config is not None else None
        pricing = entry.pricing if entry is not None else None
        nanos = cost_nanos(pricing, tokens)
        m = self.metrics
        label = self._caller_label(caller)
        for kind, value in (("input", tokens.input), ("output", tokens.output), ("cached", tokens.cached)):
            m.llm_tokens.labels(namespace=namespace, model=model, kind=kind).inc(value)
            m.llm_caller_tokens.labels(namespace=namespace, caller=label, kind=kind).inc(value)
        if tokens.estimated:
            m.llm_estimated_calls.labels(namespace=namespace, model=model).inc()
        prefix = ("m", caller, model, call_kind(metadata))
        deltas = {
            ledger_field(*prefix, "in"): tokens.input,
            ledger_field(*prefix, "out"): tokens.output,
            ledger_field(*prefix, "cached"): tokens.cached,
            ledger_field(*prefix, "calls"): 1,
            ledger_field(*prefix, "est"): int(tokens.estimated),
        }
        if nanos is not None and pricing is not None:
            amount = nanos / NANOS_PER_UNIT
            m.llm_cost.labels(namespace=namespace, model=model, currency=pricing.currency).inc(amount)
            m.llm_caller_cost.labels(namespace=namespace, caller=label, currency=pricing.currency).inc(amount)
            deltas[ledger_field(*prefix, f"cost:{pricing.currency}")] = nanos
        self._write(namespace, deltas)

    def tool_call(self, metadata: dict[str, Any], tool: str, ok: bool, seconds: float) -> None:
        namespace, _config = self._namespace()
        server = str(metadata.get("ai_ops_server") or BUILTIN_SERVER)
        caller = str(metadata.get("ai_ops_caller") or UNKNOWN_CALLER)
        outcome = "ok" if ok else "error"
        self.metrics.tool_calls_total.labels(
            namespace=namespace, server=server, tool=tool, outcome=outcome
        ).inc()
        self.metrics.tool_duration.labels(namespace=namespace, server=server, tool=tool).observe(seconds)
        prefix = ("t", caller, server, tool)
        self._write(
            namespace,
            {
                ledger_field(*prefix, "calls"): 1,
                ledger_field(*prefix, "errors"): int(not ok),
                ledger_field(*prefix, "ms"): round(seconds * 1000),
            },
        )

    def _write(self, namespace: str, deltas: dict[str, int]) -> None:
        day = self.clock().astimezone(dt.UTC).date()
        task = asyncio.get_running_loop().create_task(self._add(namespace, day, deltas))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _add(self, namespace: str, day: dt.date, deltas: dict[str, int]) -> None:
        try:
            await self.ledger.add(namespace, day, deltas)
        except Exception as exc:  # Redis down: the metrics still have it; the ledger misses this call
            log.warning("usage ledger write failed: %s: %s", type(exc).__name__, exc)

    async def settled(self) -> None:
        """Wait for this replica's pending ledger writes (so a read sees every call made so far)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- budgets --------------------------------------------------------------------------------------

    async def check_budget(self, caller: str, model: ModelEntry) -> None:
        """Raise BudgetExceeded when today's usage has reached the caller's or the model's budget."""
        if not self.caller_budgets and model.budget is None:
            return  # nothing to check: no ledger read on the turn path
        await self.settled()
        namespace, _config = self._namespace()
        now = self.clock()
        today = now.astimezone(dt.UTC).date()
        try:
            values = (await self.ledger.days(namespace, [today]))[today]
        except Exception as exc:  # the ledger is unreachable: turns go on (readiness reports Redis)
            log.warning(
                "budget not checked, the usage ledger is unreachable: %s: %s", type(exc).__name__, exc
            )
            return
        error = exceeded(values, caller, model, self.caller_budgets, now)
        if error is not None:
            raise error
