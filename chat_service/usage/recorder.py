"""Counts every model and tool call into the metrics and the ledger, and checks budgets.

A chat model the service builds is *metered* (``UsageRecorder.instrument``): its class becomes a subclass
of its own that reports each call's result from ``_agenerate_with_cache``, the one step every ``ainvoke``
or ``invoke`` of a LangChain chat model goes through, streamed or not (a stream is summed into one result
there, the provider's usage chunk included). Why on the model and not in an agent middleware: a
middleware's ``wrap_model_call`` sees only the agent's own model call, while summarization, the tool
selector and fallback models are called from inside other middleware, and investigations run graphs of
their own; the model sees every call of its own whoever makes it, with the run's metadata (caller,
investigation, graph node) in its run manager. Why not a LangChain callback handler (as tools have): a
handler on the model makes LangChain dispatch two events per call to it and check it against a
runtime Protocol to decide whether to stream, which cost about three times what the counting does.

Counting runs inline and does no I/O: the call is added to the metrics' totals (series.py) and its ledger
counters to this replica's *pending* deltas, a dict per (namespace, day) in memory. A background flusher
writes every pending delta in one Redis round trip at most every ``flush_interval`` seconds (0.5 by
default) and once more on shutdown, so a turn's model and tool calls cost no round trip of their own. A
budget check and ``GET /api/usage`` add this replica's pending deltas to what they read, so they are exact
for this replica without waiting for a flush; another replica sees them after its next flush.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from ai_ops_api.agent_config import AgentConfig, ModelEntry
from chat_service.metrics import ChatMetrics
from chat_service.usage.budgets import Budget, exceeded
from chat_service.usage.estimate import estimate_tokens, message_text
from chat_service.usage.ledger import Ledger
from chat_service.usage.ledger import field as ledger_field
from chat_service.usage.pricing import TokenCounts, cost_nanos
from chat_service.usage.series import ModelSeriesCollector, ModelTotals, SeriesKey

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


def usage_of(generations: Iterable[ChatGeneration]) -> TokenCounts | None:
    """The provider's usage summed over a result's generations; None when it sent none."""
    found = False
    counts = {"input": 0, "output": 0, "cached": 0}
    for generation in generations:
        meta = getattr(generation.message, "usage_metadata", None)
        if not meta:
            continue
        found = True
        counts["input"] += _token_count(meta.get("input_tokens"))
        counts["output"] += _token_count(meta.get("output_tokens"))
        details = meta.get("input_token_details") or {}
        counts["cached"] += _token_count(details.get("cache_read"))
    return TokenCounts(counts["input"], counts["output"], counts["cached"]) if found else None


MAX_TOKENS_PER_CALL = 10**9  # far past any context window; keeps a day's sums inside Redis' 64-bit HINCRBY


def _token_count(value: Any) -> int:
    """A provider's token count as a counter can take it: a negative one would make totals go down, and an
    absurd one would overflow the ledger's counters and stop every later ledger write."""
    return min(max(int(value or 0), 0), MAX_TOKENS_PER_CALL)


def estimated_usage(messages: Iterable[Any], generations: Iterable[ChatGeneration]) -> TokenCounts:
    prompt_chars = sum(len(message_text(m)) for m in messages)
    output = sum(estimate_tokens(message_text(g.message) or g.text) for g in generations)
    return TokenCounts(input=-(-prompt_chars // 4), output=output, estimated=True)


class MeteredChatModel(BaseChatModel):
    """Put before a chat model's own class (``UsageRecorder.instrument``): reports each call's result.

    ``_agenerate_with_cache`` is LangChain's private step between the run's callbacks and the provider
    (``_agenerate``, or ``_astream`` summed into one result); the usage tests fail if a LangChain release
    stops calling it. Streams asked for with ``astream`` go around it: the service never asks for one.
    """

    __slots__ = ()  # nothing of its own: an instance can take this class in place of its own
    usage_recorder: ClassVar[UsageRecorder]

    def _run_metadata(
        self, run_manager: AsyncCallbackManagerForLLMRun | CallbackManagerForLLMRun | None
    ) -> dict[str, Any]:
        """The run's metadata (the caller's, the graph's, the model's own), as a callback would get it."""
        return (run_manager.metadata if run_manager is not None else self.metadata) or {}

    async def _agenerate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await super()._agenerate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)
        self.usage_recorder.model_result(self._run_metadata(run_manager), messages, result)
        return result

    def _generate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = super()._generate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)
        self.usage_recorder.model_result(self._run_metadata(run_manager), messages, result)
        return result


@dataclass
class _ToolStart:
    metadata: dict[str, Any]
    tool: str
    started: float


class ToolUsageCallback(BaseCallbackHandler):
    """Set as a tool's own callback: reports each call's outcome and duration."""

    run_inline = True  # called on the event loop: no executor hop per call

    def __init__(self, recorder: UsageRecorder):
        self.recorder = recorder
        self._tools: dict[UUID, _ToolStart] = {}

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


Pending = dict[tuple[str, dt.date], dict[str, int]]  # (namespace, day) -> field -> delta


@dataclass
class UsageRecorder:
    metrics: ChatMetrics
    ledger: Ledger
    config: Callable[[], AgentConfig | None]  # the agent config in force (namespace, model prices)
    known_callers: Callable[[], Iterable[str]]  # the tokens file's names: per-caller metric labels
    caller_budgets: dict[str, Budget] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    flush_interval: float = 0.5  # seconds between ledger writes at most: one round trip per interval

    def __post_init__(self) -> None:
        self.tool_handler = ToolUsageCallback(self)
        self._metered_classes: dict[type[BaseChatModel], type[BaseChatModel]] = {}
        # Counters not yet in the ledger. A failed flush merges its batch back in (they are counters), so
        # an outage neither loses them nor grows memory beyond one integer per distinct field and day.
        self._pending: Pending = {}
        self._dirty = asyncio.Event()  # set when there are pending deltas for the flusher
        self._flush_lock = asyncio.Lock()  # one flush at a time: the flusher, settled(), aclose()
        self._no_flush = asyncio.Event()  # clear while a batch is on its way to the ledger
        self._no_flush.set()
        self._flushes = 0  # batches taken so far: a read that saw one start reads again
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False
        self._closed = False
        # What Prometheus reads of model calls, exported at scrape time (series.py says why).
        self._model_totals: dict[SeriesKey, ModelTotals] = {}
        self.metrics.registry.register(ModelSeriesCollector(lambda: self._model_totals.items()))
        # prometheus children per label tuple: .labels() takes a lock and builds a key on every call.
        self._tool_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._fields: dict[tuple[str, str, str, str | None], tuple[str, ...]] = {}

    # -- hook -----------------------------------------------------------------------------------------

    def instrument(self, target: Any, model_name: str | None = None) -> Any:
        """Make ``target`` (a chat model, with its LLMModel's name, or a tool) report its calls; returns it."""
        if isinstance(target, BaseChatModel):
            if not isinstance(target, MeteredChatModel):
                # In place, so every binding of the model (bind_tools, with_structured_output) is metered.
                target.__class__ = self._metered_class(type(target))
            if model_name is not None:
                target.metadata = {**(target.metadata or {}), MODEL_METADATA_KEY: model_name}
            return target
        callbacks = list(target.callbacks or []) if isinstance(target.callbacks, list) else []
        if self.tool_handler not in callbacks:
            target.callbacks = [*callbacks, self.tool_handler]
        return target

    def _metered_class(self, model_class: type[BaseChatModel]) -> type[BaseChatModel]:
        metered = self._metered_classes.get(model_class)
        if metered is None:
            # Named as the model's own class: LangChain names runs and traces after it.
            metered = self._metered_classes[model_class] = type(
                model_class.__name__,
                (MeteredChatModel, model_class),
                {"__slots__": (), "__module__": model_class.__module__, "usage_recorder": self},
            )
        return metered

    # -- recording ------------------------------------------------------------------------------------

    def _namespace(self) -> tuple[str, AgentConfig | None]:
        config = self.config()
        return (config.namespace if config is not None and config.namespace else "default"), config

    def _caller_label(self, caller: str) -> str:
        return caller if caller in self.known_callers() else OTHER_CALLER

    def model_result(self, metadata: dict[str, Any], messages: list[BaseMessage], result: ChatResult) -> None:
        """Count a model call from its result: the provider's usage, else an estimate marked as one."""
        try:
            tokens = usage_of(result.generations) or estimated_usage(messages, result.generations)
            self.model_call(metadata, tokens)
        except Exception:  # accounting must never fail a turn
            log.exception("usage of a model call not recorded")

    def model_call(self, metadata: dict[str, Any], tokens: TokenCounts) -> None:
        namespace, config = self._namespace()
        model = str(metadata.get(MODEL_METADATA_KEY) or metadata.get("ai_ops_model") or "unknown")
        caller = str(metadata.get("ai_ops_caller") or UNKNOWN_CALLER)
        entry = config.model_by_name(model) if config is not None else None
        pricing = entry.pricing if entry is not None else None
        nanos = cost_nanos(pricing, tokens)
        currency = pricing.currency if nanos is not None and pricing is not None else None
        key = (namespace, model, self._caller_label(caller), currency)
        totals = self._model_totals.get(key)
        if totals is None:
            totals = self._model_totals[key] = ModelTotals()
        totals.input += tokens.input
        totals.output += tokens.output
        totals.cached += tokens.cached
        totals.estimated_calls += int(tokens.estimated)
        names = self._model_fields(caller, model, call_kind(metadata), currency)
        deltas = {
            names[0]: tokens.input,
            names[1]: tokens.output,
            names[2]: tokens.cached,
            names[3]: 1,
            names[4]: int(tokens.estimated),
        }
        if currency is not None and nanos is not None:
            totals.cost_nanos += nanos
            deltas[names[5]] = nanos
        self._add(namespace, deltas)

    def _model_fields(self, caller: str, model: str, kind: str, currency: str | None) -> tuple[str, ...]:
        """The ledger field names of a model call (escaping and joining them cost more than the rest)."""
        key = (caller, model, kind, currency)
        names = self._fields.get(key)
        if names is None:
            if len(self._fields) >= CACHE_LIMIT:
                self._fields.clear()
            prefix = ("m", caller, model, kind)
            counters = ["in", "out", "cached", "calls", "est"]
            if currency is not None:
                counters.append(f"cost:{currency}")
            names = self._fields[key] = tuple(ledger_field(*prefix, c) for c in counters)
        return names

    def tool_call(self, metadata: dict[str, Any], tool: str, ok: bool, seconds: float) -> None:
        namespace, _config = self._namespace()
        server = str(metadata.get("ai_ops_server") or BUILTIN_SERVER)
        caller = str(metadata.get("ai_ops_caller") or UNKNOWN_CALLER)
        outcome = "ok" if ok else "error"
        key = (namespace, server, tool, outcome)
        children = self._tool_children.get(key)
        if children is None:
            children = self._tool_children[key] = (
                self.metrics.tool_calls_total.labels(
                    namespace=namespace, server=server, tool=tool, outcome=outcome
                ),
                self.metrics.tool_duration.labels(namespace=namespace, server=server, tool=tool),
            )
        children[0].inc()
        children[1].observe(seconds)
        prefix = ("t", caller, server, tool)
        self._add(
            namespace,
            {
                ledger_field(*prefix, "calls"): 1,
                ledger_field(*prefix, "errors"): int(not ok),
                ledger_field(*prefix, "ms"): round(seconds * 1000),
            },
        )

    # -- the ledger: pending deltas and the flusher ---------------------------------------------------

    def _add(self, namespace: str, deltas: dict[str, int]) -> None:
        """Add a call's counters to the pending deltas (no I/O) and make sure the flusher runs."""
        _merge(self._pending, {(namespace, self.clock().astimezone(dt.UTC).date()): deltas})
        self._dirty.set()
        flusher = self._flusher
        if (flusher is not None and not flusher.done()) or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a call outside the event loop: the next call on it starts the flusher
            return
        # A fresh context: the flusher outlives the turn whose call started it (its run config, tracing).
        self._flusher = loop.create_task(self._flush_loop(), context=contextvars.Context())

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.flush_interval)  # gather the interval's calls into one write
            await self.flush()

    async def flush(self) -> bool:
        """Write every pending delta to the ledger in one round trip; False (deltas kept) when it fails."""
        async with self._flush_lock:
            self._dirty.clear()
            if not self._pending:
                return True
            batch, self._pending = self._pending, {}
            self._flushes += 1
            self._no_flush.clear()
            try:
                await self.ledger.add_many(batch)
            except BaseException as exc:  # cancelled too: the batch is kept either way
                _merge(self._pending, batch, oldest=self._oldest_kept())
                self._dirty.set()  # retried after the next interval
                if not isinstance(exc, Exception):
                    raise
                if not self._failing:
                    log.warning(
                        "usage ledger write failed, kept for the next attempt: %s: %s",
                        type(exc).__name__,
                        exc,
                    )
                self._failing = True
                return False
            finally:
                self._no_flush.set()
            if self._failing:
                log.info("usage ledger written again after failed attempts")
                self._failing = False
            return True

    def _oldest_kept(self) -> dt.date:
        return self.clock().astimezone(dt.UTC).date() - dt.timedelta(days=self.ledger.retention_days)

    @property
    def pending_counters(self) -> int:
        """How many counters wait for the ledger (bounded by the distinct fields, however many calls)."""
        return sum(len(values) for values in self._pending.values())

    async def settled(self) -> None:
        """Write this replica's pending deltas now (so a direct ledger read sees every call so far)."""
        await self.flush()

    async def read_days(self, namespace: str, days: list[dt.date]) -> dict[dt.date, dict[str, int]]:
        """The ledger's counters plus this replica's pending deltas: every call of this replica so far,
        whether flushed or not, and nothing twice."""
        while True:
            await self._no_flush.wait()  # a batch on its way may or may not be in what we would read
            taken = self._flushes
            values = await self.ledger.days(namespace, days)
            if taken == self._flushes:  # no batch left pending for the ledger while we read
                break
        for day in days:
            for name, delta in self._pending.get((namespace, day), {}).items():
                values[day][name] = values[day].get(name, 0) + delta
        return values

    async def aclose(self) -> None:
        """On shutdown: stop the flusher and write what is pending (a crash loses one interval at most)."""
        self._closed = True
        async with self._flush_lock:  # not in the middle of a write: a cancelled one might count twice
            if self._flusher is not None:
                self._flusher.cancel()
                await asyncio.gather(self._flusher, return_exceptions=True)
                self._flusher = None
        if not await self.flush():
            log.error(
                "usage ledger unreachable at shutdown: %d pending counters not written", self.pending_counters
            )

    # -- budgets --------------------------------------------------------------------------------------

    async def check_budget(self, caller: str, model: ModelEntry) -> None:
        """Raise BudgetExceeded when today's usage has reached the caller's or the model's budget."""
        if not self.caller_budgets and model.budget is None:
            return  # nothing to check: no ledger read on the turn path
        namespace, _config = self._namespace()
        now = self.clock()
        today = now.astimezone(dt.UTC).date()
        try:
            values = (await self.read_days(namespace, [today]))[today]
        except Exception as exc:  # the ledger is unreachable: turns go on (readiness reports Redis)
            log.warning(
                "budget not checked, the usage ledger is unreachable: %s: %s", type(exc).__name__, exc
            )
            return
        error = exceeded(values, caller, model, self.caller_budgets, now)
        if error is not None:
            raise error


CACHE_LIMIT = 4096  # entries per lookup cache (callers x models x kinds): started over when reached


def _merge(into: Pending, deltas: Pending, oldest: dt.date | None = None) -> None:
    """Add counters into ``into``; days before ``oldest`` (past retention) are dropped."""
    for key, values in deltas.items():
        if oldest is not None and key[1] < oldest:
            continue
        bucket = into.get(key)
        if bucket is None:
            bucket = into[key] = {}
        for name, delta in values.items():
            if delta:
                bucket[name] = bucket.get(name, 0) + delta
