"""The chat engine: one LangChain v1 agent per (config version, model), run for a caller's turn.

``create_agent`` gets the model built by the provider registry, the model's middleware chain, the MCP
tools and a system prompt. Compiled graphs are cached per config checksum, model, tool set and API-key
fingerprint (so a rotated key builds a new client on the next request); when the chain holds per-instance
state the graph is built per conversation instead, so no state leaks between users. Conversations are
LangGraph checkpoints, shared by every graph, so a reload or another replica continues them.

Every failure leaves as a typed ``ChatError`` (see errors.py), with provider messages sanitized.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig

from ai_ops_api.agent_config import AgentConfig, ModelEntry
from chat_service.config.store import ConfigSnapshot, ConfigStore, describe_error
from chat_service.conversations import ConversationStore, scoped_thread_id
from chat_service.errors import (
    NO_MODEL_MESSAGE,
    ChatError,
    ContentBlocked,
    LimitExceeded,
    ModelNotFound,
    ModelUnavailable,
    NoModelConfigured,
    NotReady,
    ProviderError,
    RequestTimeout,
    StepLimit,
    ThreadNotFound,
    sanitize,
)
from chat_service.metrics import ChatMetrics
from chat_service.middleware.chain import ChainBuild, MiddlewareContext, build_middleware_chain
from chat_service.providers import ProviderUnavailable, build_chat_model
from chat_service.secrets import SecretResolver, SecretUnavailable
from chat_service.settings import Settings
from chat_service.tools.toolbox import MCPToolbox, Toolset

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are an operations assistant for a platform and network team. You help people understand and "
    "troubleshoot their infrastructure: Kubernetes clusters, workloads, networks and the services on them. "
    "Use the tools you have to look things up instead of guessing, and say which results your answer rests "
    "on. Never invent resource names, states or numbers. If a tool fails or you are unsure, say so plainly "
    "and suggest the next check. Be concise; prefer short steps and exact commands."
)
_GRAPH_CACHE_SIZE = 64
_CONVERSATION_GRAPH_CACHE_SIZE = 512


# -- results and events ------------------------------------------------------------------------------


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

    def public(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "model": self.model,
            "reply": self.reply,
            "tool_calls": [c.public() for c in self.tool_calls],
            "usage": self.usage.public(),
        }


@dataclass(frozen=True)
class TurnEvent:
    """``start`` | ``token`` | ``tool_call`` | ``tool_result`` | ``done`` (data as in the SSE contract), or
    ``ping`` (no data: a keep-alive during a quiet stretch, sent as an SSE comment)."""

    kind: str
    data: dict[str, Any]
    result: TurnResult | None = None


@dataclass
class CompiledAgent:
    graph: Any
    chain: ChainBuild
    toolset: Toolset

    @property
    def rewrites_output(self) -> bool:
        """Some middleware may change the model's answer after it streamed (PII on output)."""
        return any(getattr(m, "apply_to_output", False) for m in self.chain.middleware)


@dataclass
class PreparedTurn:
    agent: CompiledAgent
    model: ModelEntry
    snapshot: ConfigSnapshot
    run_config: RunnableConfig
    thread_id: str
    scoped_thread: str | None
    secret_values: list[str]


@dataclass
class ModelReport:
    name: str
    available: bool = True
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


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

    def finish(self) -> list[TurnEvent]:
        return [TurnEvent("token", {"text": self.result.reply})] if self.hold and self.result.reply else []

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
                events.append(self._tool_message(message))
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

    def _tool_message(self, message: ToolMessage) -> TurnEvent:
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
        return TurnEvent("tool_result", data)


def describe_model(entry: ModelEntry) -> str:
    """``model 'main' (ollama at http://localhost:11434)``: which endpoint failed, for the error message."""
    where = f" at {entry.provider.base_url}" if entry.provider.base_url else ""
    return f"model {entry.name!r} ({entry.provider.type}{where})"


# -- error mapping ----------------------------------------------------------------------------------


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


_PROVIDER_MODULES = (
    "openai",
    "anthropic",
    "httpx",
    "httpx2",
    "httpcore",
    "huggingface_hub",
    "ollama",
    "langchain_openai",
    "langchain_anthropic",
    "langchain_huggingface",
)


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def map_exception(exc: BaseException, secret_values: Sequence[str] = ()) -> ChatError:
    """The ChatError a client sees for an exception raised while running a turn."""
    exc = _unwrap(exc)
    if isinstance(exc, ChatError):
        return exc
    # Provider clients wrap their errors (langchain-openai re-raises openai's): judge by the whole chain.
    provider = next((e for e in _chain(exc) if type(e).__module__.split(".")[0] in _PROVIDER_MODULES), None)
    if provider is not None and not isinstance(exc, TimeoutError):
        exc = next((e for e in _chain(exc) if type(e).__module__.split(".")[0] == "openai"), provider)
    if isinstance(exc, TimeoutError):
        return RequestTimeout("the request timed out")
    kind = type(exc).__name__
    module = type(exc).__module__
    if kind in ("ModelCallLimitExceededError", "ToolCallLimitExceededError"):
        return LimitExceeded(str(exc))
    if kind == "PIIDetectionError":
        return ContentBlocked(
            f"the message was blocked: it contains {getattr(exc, 'pii_type', 'personal data')}"
        )
    if kind == "GraphRecursionError":
        return StepLimit("the agent did not finish within its step limit (too many tool calls in one turn)")
    if module.split(".")[0] == "redis":
        return NotReady(f"the conversation store (Redis) does not answer: {kind}")
    if isinstance(exc, ProviderUnavailable | SecretUnavailable):
        return ModelUnavailable(sanitize(str(exc), secret_values))
    if kind in ("APITimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutException"):
        return RequestTimeout("the model provider did not answer in time")
    if module.split(".")[0] in _PROVIDER_MODULES:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        detail = ""
        if isinstance(body, dict):
            detail = str(
                (body.get("error") or body).get("message", "")
                if isinstance(body.get("error", body), dict)
                else body
            )
        detail = detail or str(exc)
        prefix = f"the model provider answered HTTP {status}" if status else "the model provider failed"
        return ProviderError(f"{prefix}: {sanitize(detail, secret_values)}")
    if kind == "ModelError" or module.startswith("langchain_core.exceptions"):
        return ProviderError(f"the model failed: {sanitize(str(exc), secret_values)}")
    # No exc_info: an exception message may carry a provider's echo of a key; frames are enough to debug.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected error in a turn: %s: %s\n%s", kind, sanitize(str(exc), secret_values), frames)
    return ChatError(f"internal error ({kind}); see the service log")


# -- the engine -------------------------------------------------------------------------------------


class ChatEngine:
    # Longest silence on a stream before a keep-alive ``ping`` event (SSE comment).
    keepalive_seconds = 15.0

    def __init__(
        self,
        settings: Settings,
        config_store: ConfigStore,
        conversations: ConversationStore,
        secrets: SecretResolver,
        toolbox: MCPToolbox,
        metrics: ChatMetrics,
    ):
        self.settings = settings
        self.config_store = config_store
        self.conversations = conversations
        self.secrets = secrets
        self.toolbox = toolbox
        self.metrics = metrics
        self._graphs: OrderedDict[tuple[Any, ...], CompiledAgent] = OrderedDict()
        self._conversation_graphs: OrderedDict[tuple[Any, ...], CompiledAgent] = OrderedDict()
        self._reports: dict[str, dict[str, ModelReport]] = {}
        self._last_activity: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        metrics.active_conversations.set_function(self._count_active)
        config_store.on_change.append(self._config_changed)

    # -- config and models ---------------------------------------------------------------------------

    @property
    def snapshot(self) -> ConfigSnapshot:
        if not self.config_store.loaded:
            raise NotReady(
                f"no agent config loaded yet: waiting for {self.config_store.path} (written by the ai-ops "
                "operator once the namespace has ai-ops resources, or by `ai-ops render`)"
            )
        return self.config_store.current

    @staticmethod
    def default_model(config: AgentConfig) -> ModelEntry | None:
        if not config.models:
            return None
        if config.default_model:
            found = config.model_by_name(config.default_model)
            if found is not None:
                return found
        return next((m for m in config.models if m.default), config.models[0])

    def select_model(self, config: AgentConfig, name: str | None) -> ModelEntry:
        if not config.models:
            raise NoModelConfigured(NO_MODEL_MESSAGE)
        found = config.model_by_name(name) if name is not None else None
        if found is None and name in (None, "default"):  # "default" names the default model, unless taken
            model = self.default_model(config)
            assert model is not None
            return model
        if found is None:
            known = ", ".join(m.name for m in config.models)
            raise ModelNotFound(f"no model named {name!r}; configured models: {known}")
        return found

    def models(self) -> list[dict[str, Any]]:
        config = self.snapshot.config
        default = self.default_model(config)
        return [
            {
                "name": m.name,
                "provider": m.provider.type,
                "model": m.model,
                "default": default is not None and m.name == default.name,
                "description": m.description,
            }
            for m in config.models
        ]

    def _secret_fingerprint(self, config: AgentConfig) -> tuple[str, list[str]]:
        """A digest of every model API key now (read from the Secrets dir per request), and the values."""
        digest = hashlib.sha256()
        values: list[str] = []
        for model in config.models:
            ref = model.api_key_secret_ref
            if ref is None:
                continue
            try:
                value = self.secrets.read(ref)
            except SecretUnavailable:
                digest.update(f"missing:{ref.name}/{ref.key}\0".encode())
                continue
            values.append(value)
            digest.update(value.encode() + b"\0")
        return digest.hexdigest()[:16], values

    def _middleware_context(self, config: AgentConfig) -> MiddlewareContext:
        def build_other(name: str) -> BaseChatModel:
            entry = config.model_by_name(name)
            if entry is None:
                raise ProviderUnavailable(f"model {name!r} is not in the config")
            return build_chat_model(entry, self.secrets)

        return MiddlewareContext(
            config=config,
            secrets=self.secrets,
            redis=self.conversations.redis_client,
            build_model=build_other,
            logger=logging.getLogger("ai_ops.middleware"),
        )

    def _build_model_and_chain(
        self, snapshot: ConfigSnapshot, entry: ModelEntry
    ) -> tuple[BaseChatModel, ChainBuild]:
        """The model's client and middleware chain, with the outcome reported for /readyz and /api/status;
        raises ModelUnavailable when either cannot be built."""
        try:
            model = build_chat_model(entry, self.secrets)
        except ProviderUnavailable as exc:
            self._report(snapshot.checksum, entry.name, available=False, reason=str(exc))
            raise ModelUnavailable(str(exc)) from None
        chain = build_middleware_chain(entry, self._middleware_context(snapshot.config))
        self._report(
            snapshot.checksum,
            entry.name,
            available=chain.unavailable is None,
            reason=chain.unavailable,
            warnings=chain.warnings,
        )
        if chain.unavailable:
            raise ModelUnavailable(chain.unavailable)
        return model, chain

    def _build_agent(
        self, snapshot: ConfigSnapshot, entry: ModelEntry, toolset: Toolset, checkpointed: bool
    ) -> CompiledAgent:
        model, chain = self._build_model_and_chain(snapshot, entry)
        graph = create_agent(
            model,
            tools=toolset.tools,
            system_prompt=entry.system_prompt or DEFAULT_SYSTEM_PROMPT,
            middleware=chain.middleware,
            checkpointer=self.conversations.checkpointer if checkpointed else None,
            name=entry.name,  # AIMessage.name: which model answered, visible in the thread
        )
        return CompiledAgent(graph=graph, chain=chain, toolset=toolset)

    def _report(
        self,
        checksum: str,
        model: str,
        *,
        available: bool,
        reason: str | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self._reports.setdefault(checksum, {})[model] = ModelReport(
            model, available, reason, list(warnings or [])
        )

    @staticmethod
    def _cache_put(
        cache: OrderedDict[tuple[Any, ...], CompiledAgent],
        key: tuple[Any, ...],
        value: CompiledAgent,
        size: int,
    ) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)

    async def _agent_for(
        self, snapshot: ConfigSnapshot, entry: ModelEntry, scoped_thread: str | None, checkpointed: bool
    ) -> tuple[CompiledAgent, list[str]]:
        toolset = await self.toolbox.toolset(snapshot.config, snapshot.checksum)
        secrets_digest, secret_values = self._secret_fingerprint(snapshot.config)
        key = (snapshot.checksum, entry.name, toolset.version, secrets_digest, checkpointed)
        agent = self._graphs.get(key)
        if agent is None:
            agent = self._build_agent(snapshot, entry, toolset, checkpointed)
            self._cache_put(self._graphs, key, agent, _GRAPH_CACHE_SIZE)
        else:
            self._graphs.move_to_end(key)
        if agent.chain.stateful and scoped_thread is None:
            # Stateless request (OpenAI-compatible): fresh instances, used once.
            agent = self._build_agent(snapshot, entry, toolset, checkpointed)
        elif agent.chain.stateful and scoped_thread is not None:
            # Middleware with per-instance state: a chain of its own for each conversation.
            conversation_key = (*key, scoped_thread)
            own = self._conversation_graphs.get(conversation_key)
            if own is None:
                own = self._build_agent(snapshot, entry, toolset, checkpointed)
                self._cache_put(
                    self._conversation_graphs, conversation_key, own, _CONVERSATION_GRAPH_CACHE_SIZE
                )
            agent = own
        return agent, secret_values

    # -- turns ---------------------------------------------------------------------------------------

    async def _prepare(
        self, identity: str, model_name: str | None, thread_id: str | None, stateless: bool = False
    ) -> PreparedTurn:
        snapshot = self.snapshot  # taken once: a reload does not change this turn's config
        entry = self.select_model(snapshot.config, model_name)
        thread = thread_id or uuid.uuid4().hex
        scoped = None if stateless else scoped_thread_id(identity, thread)
        agent, secret_values = await self._agent_for(snapshot, entry, scoped, checkpointed=not stateless)
        run_config: RunnableConfig = {
            "configurable": {"thread_id": scoped or f"{identity}:stateless:{thread}"},
            "recursion_limit": self.settings.recursion_limit,
            "metadata": {"ai_ops_caller": identity, "ai_ops_model": entry.name},
        }
        return PreparedTurn(agent, entry, snapshot, run_config, thread, scoped, secret_values)

    async def run_turn(
        self, identity: str, message: str, thread_id: str | None = None, model: str | None = None
    ) -> TurnResult:
        result: TurnResult | None = None
        async for event in self.stream_turn(identity, message, thread_id, model, tokens=False):
            if event.kind == "done":
                result = event.result
        assert result is not None
        return result

    async def stream_turn(
        self,
        identity: str,
        message: str,
        thread_id: str | None = None,
        model: str | None = None,
        *,
        tokens: bool = True,
    ) -> AsyncGenerator[TurnEvent]:
        """Events of one turn; raises ChatError (before ``start`` or in place of a later event)."""
        prepared = await self._prepare(identity, model, thread_id)
        async for event in self._execute(prepared, [HumanMessage(message)], tokens):
            yield event

    async def run_messages(self, identity: str, messages: list[AnyMessage], model: str | None) -> TurnResult:
        """OpenAI-compatible, stateless: the client sends the whole history every time."""
        result: TurnResult | None = None
        async for event in self.stream_messages(identity, messages, model, tokens=False):
            if event.kind == "done":
                result = event.result
        assert result is not None
        return result

    async def stream_messages(
        self, identity: str, messages: list[AnyMessage], model: str | None, *, tokens: bool = True
    ) -> AsyncGenerator[TurnEvent]:
        prepared = await self._prepare(identity, model, None, stateless=True)
        async for event in self._execute(prepared, messages, tokens):
            yield event

    async def _execute(
        self, prepared: PreparedTurn, input_messages: list[AnyMessage], tokens: bool
    ) -> AsyncGenerator[TurnEvent]:
        model_name = prepared.model.name
        if prepared.scoped_thread:
            self._last_activity[prepared.scoped_thread] = time.monotonic()
            if len(self._last_activity) > 10_000:  # also pruned on every /metrics scrape
                self._count_active()
        queue: asyncio.Queue[TurnEvent | BaseException | None] = asyncio.Queue()
        result = TurnResult(thread_id=prepared.thread_id, model=model_name)
        producer = asyncio.create_task(self._produce(prepared, input_messages, tokens, result, queue))
        deadline = time.monotonic() + self.settings.request_timeout_seconds
        self.metrics.turns_in_progress.inc()
        outcome = "ok"
        try:
            yield TurnEvent("start", {"thread_id": prepared.thread_id, "model": model_name})
            while True:
                remaining = deadline - time.monotonic()
                try:
                    item = await asyncio.wait_for(
                        queue.get(), max(min(remaining, self.keepalive_seconds), 0.001)
                    )
                except TimeoutError:
                    if deadline - time.monotonic() > 0:
                        # A quiet stretch (a slow model or tool): streams send a comment so proxies keep it open.
                        yield TurnEvent("ping", {})
                        continue
                    raise RequestTimeout(
                        f"no answer within {self.settings.request_timeout_seconds:g} s "
                        "(AI_OPS_REQUEST_TIMEOUT_SECONDS)"
                    ) from None
                if item is None:
                    break
                if isinstance(item, BaseException):
                    error = map_exception(item, prepared.secret_values)
                    if isinstance(error, ProviderError | RequestTimeout):
                        self.metrics.model_calls.labels(model=model_name, outcome="error").inc()
                        error.message = f"{describe_model(prepared.model)}: {error.message}"
                    raise error from None
                yield item
            yield TurnEvent("done", {"reply": result.reply, "usage": result.usage.public()}, result)
        except ChatError as error:
            outcome = error.code
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        finally:
            self.metrics.turns_in_progress.dec()
            self.metrics.turns.labels(model=model_name, outcome=outcome).inc()
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(BaseException):
                    await producer
            if prepared.scoped_thread:
                self._last_activity[prepared.scoped_thread] = time.monotonic()

    async def _produce(
        self,
        prepared: PreparedTurn,
        input_messages: list[AnyMessage],
        tokens: bool,
        result: TurnResult,
        queue: asyncio.Queue[TurnEvent | BaseException | None],
    ) -> None:
        """Run the graph, turning its stream into TurnEvents (runs as its own task, so the deadline holds)."""
        model_name = prepared.model.name
        collector = TurnCollector(result, tokens, hold_tokens=prepared.agent.rewrites_output)
        modes = ["updates", "messages"] if tokens else ["updates"]
        try:
            async for mode, chunk in prepared.agent.graph.astream(
                {"messages": input_messages},
                prepared.run_config,
                stream_mode=modes,
                # One checkpoint write per turn instead of one per step: a turn that fails is lost anyway,
                # and each step's write costs Redis round trips. (Stateless graphs have no checkpointer.)
                durability="exit" if prepared.scoped_thread else None,
            ):
                if mode == "messages":
                    message, metadata = chunk
                    events = collector.chunk(message, metadata.get("langgraph_node"))
                else:
                    events = []
                    for node, update in (chunk or {}).items():
                        messages = update.get("messages") if isinstance(update, dict) else None
                        if isinstance(messages, list):
                            events += collector.update(node, messages)
                for event in events:
                    await queue.put(event)
        except BaseException as exc:
            await queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for event in collector.finish():
            await queue.put(event)
        if collector.model_calls:
            self.metrics.model_calls.labels(model=model_name, outcome="ok").inc(collector.model_calls)
        self.metrics.tokens.labels(model=model_name, direction="input").inc(result.usage.input_tokens)
        self.metrics.tokens.labels(model=model_name, direction="output").inc(result.usage.output_tokens)
        await queue.put(None)

    # -- threads -------------------------------------------------------------------------------------

    async def read_thread(self, identity: str, thread_id: str) -> list[dict[str, Any]]:
        try:
            messages = await self.conversations.messages(scoped_thread_id(identity, thread_id))
        except Exception as exc:
            raise map_exception(exc) from None
        if messages is None:
            raise ThreadNotFound(f"no conversation {thread_id!r} (it may have expired)")
        return public_messages(messages)

    async def delete_thread(self, identity: str, thread_id: str) -> None:
        scoped = scoped_thread_id(identity, thread_id)
        try:
            deleted = await self.conversations.delete(scoped)
        except Exception as exc:
            raise map_exception(exc) from None
        if not deleted:
            raise ThreadNotFound(f"no conversation {thread_id!r} (it may have expired)")
        self._last_activity.pop(scoped, None)
        for key in [k for k in self._conversation_graphs if k[-1] == scoped]:
            self._conversation_graphs.pop(key, None)

    def _count_active(self) -> float:
        cutoff = time.monotonic() - self.settings.session_ttl_seconds
        for thread in [t for t, at in self._last_activity.items() if at < cutoff]:
            self._last_activity.pop(thread, None)
        return float(len(self._last_activity))

    # -- config lifecycle, readiness and status ------------------------------------------------------

    def _config_changed(self, old: ConfigSnapshot | None, new: ConfigSnapshot) -> None:
        self.metrics.set_config(new.checksum)
        for cache in (self._graphs, self._conversation_graphs):
            for key in [k for k in cache if k[0] != new.checksum]:
                cache.pop(key, None)
        for checksum in [c for c in self._reports if c != new.checksum]:
            self._reports.pop(checksum, None)
        self.toolbox.forget_other_configs({new.checksum})
        self.prepare_in_background(new)

    def prepare_in_background(self, snapshot: ConfigSnapshot | None = None) -> None:
        self._spawn(self.prepare(snapshot or self.snapshot))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_removed_servers_later(self) -> None:
        """Sessions of MCP servers gone from the config close once turns started before the change are over."""
        await asyncio.sleep(self.settings.request_timeout_seconds)
        await self.toolbox.close_servers_not_in(self.snapshot.config)

    async def prepare(self, snapshot: ConfigSnapshot) -> None:
        """Load the MCP tools and check every model and chain of a config (warnings for /readyz)."""
        try:
            await self.toolbox.toolset(snapshot.config, snapshot.checksum)
            self._spawn(self._close_removed_servers_later())
            for entry in snapshot.config.models:
                with contextlib.suppress(ModelUnavailable):  # reported; shown in /readyz
                    self._build_model_and_chain(snapshot, entry)
        except Exception:
            log.exception("preparing config %s failed", snapshot.checksum)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def warnings(self) -> list[str]:
        snapshot = self.snapshot
        found: list[str] = []
        error = self.config_store.last_error
        if error is not None:
            found.append(
                f"the last config reload was rejected, the previous config stays in force: {error.message}"
            )
        toolset = self.toolbox.cached_toolset(snapshot.checksum)
        if toolset is not None:
            found.extend(toolset.warnings)
        for report in self._reports.get(snapshot.checksum, {}).values():
            found.extend(report.warnings)
            if not report.available and report.reason:
                found.append(f"model {report.name!r} is unavailable: {report.reason}")
        if not snapshot.config.models:
            found.append(NO_MODEL_MESSAGE)
        return found

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: list[str] = []
        if not self.config_store.loaded:
            reasons.append("no agent config loaded")
        store_problem = await self.conversations.ping()
        if store_problem:
            reasons.append(f"conversation store: {store_problem}")
        body: dict[str, Any] = {
            "status": "ready" if not reasons else "not ready",
            "reasons": reasons,
            "conversation_store": self.conversations.backend,
        }
        if self.config_store.loaded:
            snapshot = self.snapshot
            body["config"] = {
                "checksum": snapshot.checksum,
                "loaded_at": snapshot.loaded_at.isoformat(),
                "source": snapshot.source,
            }
            body["reload_error"] = describe_error(self.config_store.last_error)
            body["warnings"] = self.warnings()
        return not reasons, body

    def status(self) -> dict[str, Any]:
        snapshot = self.snapshot
        config = snapshot.config
        toolset = self.toolbox.cached_toolset(snapshot.checksum)
        reports = self._reports.get(snapshot.checksum, {})
        models = []
        for item in self.models():
            report = reports.get(item["name"])
            models.append(
                {
                    **item,
                    "available": report.available if report else None,
                    "unavailable_reason": report.reason if report else None,
                }
            )
        servers = []
        for server in config.mcp_servers:
            state = toolset.servers.get(server.name) if toolset else None
            servers.append(
                {
                    "name": server.name,
                    "transport": server.transport,
                    "url": server.url,
                    "health": server.health,
                    "connected": bool(state and state.error is None),
                    "tools": list(state.tools) if state else [],
                    "error": state.error if state else None,
                }
            )
        middleware = {
            m.name: [
                {"name": mw.name, "type": mw.type, "priority": mw.priority, "critical": mw.critical}
                for mw in m.middleware
            ]
            for m in config.models
        }
        return {
            "config": {
                "checksum": snapshot.checksum,
                "loaded_at": snapshot.loaded_at.isoformat(),
                "source": snapshot.source,
                "namespace": config.namespace,
                "reload_error": describe_error(self.config_store.last_error),
            },
            "models": models,
            "mcp_servers": servers,
            "middleware": middleware,
            "conversation_store": self.conversations.backend,
            "warnings": self.warnings(),
        }
