"""The chat engine: runs a caller's turn on the agent of the config in force, plain or streamed.

A turn takes the config snapshot once (a reload does not change it mid-turn), gets its compiled agent
from the agent cache (agents.py) and runs the graph in a task of its own, so the turn's deadline holds
and a quiet stretch sends keep-alive events. Conversations are LangGraph checkpoints, shared by every
graph, so a reload or another replica continues them.

Every failure leaves as a typed ``ChatError`` (mapped in errors.py), with provider messages sanitized.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from ai_ops_api.agent_config import AgentConfig, ModelEntry
from chat_service.config.store import ConfigSnapshot, ConfigStore
from chat_service.conversations import (
    NEW_THREAD_KEY,
    ConversationStore,
    is_investigation_thread,
    scoped_thread_id,
)
from chat_service.engine.agents import AgentCache, CompiledAgent, StructuredOutput
from chat_service.engine.errors import describe_model, map_exception
from chat_service.engine.events import TurnCollector, TurnEvent, TurnResult, public_messages
from chat_service.engine.status import ServiceStatus
from chat_service.errors import (
    NO_MODEL_MESSAGE,
    ChatError,
    ModelNotFound,
    ModelUnavailable,
    NoModelConfigured,
    NotReady,
    ProviderError,
    RequestTimeout,
    ThreadNotFound,
    UnsupportedParameter,
)
from chat_service.metrics import ChatMetrics
from chat_service.runbooks.service import RunbookService
from chat_service.secrets import SecretResolver
from chat_service.settings import Settings
from chat_service.thread_index import PendingEntry, ThreadIndex
from chat_service.tools.toolbox import MCPToolbox

log = logging.getLogger(__name__)


class SharedThreadCheck(Protocol):
    async def __call__(self, thread_id: str, *, write: bool) -> None:
        """Returns when a caller may read (``write``: append a turn to) the shared thread; raises
        ThreadNotFound when there is no such thread, ThreadBusy when it may not be written now."""


@dataclass
class PreparedTurn:
    agent: CompiledAgent
    model: ModelEntry
    snapshot: ConfigSnapshot
    run_config: RunnableConfig
    thread_id: str
    scoped_thread: str | None
    secret_values: list[str]
    output: StructuredOutput | None = None
    identity: str = ""


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
        runbooks: RunbookService | None = None,
    ):
        self.settings = settings
        self.config_store = config_store
        self.conversations = conversations
        self.secrets = secrets
        self.toolbox = toolbox
        self.metrics = metrics
        self.runbooks = runbooks
        self.agents = AgentCache(conversations, secrets, toolbox, runbooks.tools if runbooks else None)
        self._status = ServiceStatus(config_store, conversations, toolbox, self.agents, runbooks)
        self._last_activity: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Who may use an Investigation's thread (set by the incidents service); None: no such threads.
        self.shared_threads: SharedThreadCheck | None = None
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

    # -- turns ---------------------------------------------------------------------------------------

    async def _prepare(
        self,
        identity: str,
        model_name: str | None,
        thread_id: str | None,
        stateless: bool = False,
        output: StructuredOutput | None = None,
    ) -> PreparedTurn:
        snapshot = self.snapshot  # taken once: a reload does not change this turn's config
        entry = self.select_model(snapshot.config, model_name)
        thread = thread_id or uuid.uuid4().hex
        scoped = None if stateless else await self.stored_thread_id(identity, thread, write=True)
        agent, secret_values = await self.agents.agent_for(
            snapshot, entry, scoped, checkpointed=not stateless, output=output
        )
        if output is not None and agent.rewrites_output:
            # Output redaction rewrites the answer's text; a structured answer is tool-call arguments,
            # which it does not see, so the JSON would carry what the text may not.
            raise UnsupportedParameter(
                f"model {entry.name!r} redacts its answers (PII middleware on output), which a "
                "response_format answer would bypass; ask without response_format",
                param="response_format",
            )
        configurable: dict[str, Any] = {"thread_id": scoped or f"{identity}:stateless:{thread}"}
        if thread_id is None and scoped is not None:
            configurable[NEW_THREAD_KEY] = True  # an id of ours, just made: nothing to read
        run_config: RunnableConfig = {
            "configurable": configurable,
            "recursion_limit": self.settings.recursion_limit,
            "metadata": {"ai_ops_caller": identity, "ai_ops_model": entry.name},
        }
        return PreparedTurn(
            agent, entry, snapshot, run_config, thread, scoped, secret_values, output, identity=identity
        )

    async def run_turn(
        self,
        identity: str,
        message: str,
        thread_id: str | None = None,
        model: str | None = None,
        *,
        list_in: ThreadIndex | None = None,
    ) -> TurnResult:
        result: TurnResult | None = None
        async for event in self.stream_turn(
            identity, message, thread_id, model, tokens=False, list_in=list_in
        ):
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
        list_in: ThreadIndex | None = None,
    ) -> AsyncGenerator[TurnEvent]:
        """Events of one turn; raises ChatError (before ``start`` or in place of a later event). With
        ``list_in`` the thread is in that index (the caller's conversation list) by the time ``done`` is
        sent, and only if the turn succeeds."""
        prepared = await self._prepare(identity, model, thread_id)
        async for event in self._execute(prepared, [HumanMessage(message)], tokens, list_in, message):
            yield event

    async def run_messages(
        self,
        identity: str,
        messages: list[AnyMessage],
        model: str | None,
        *,
        output: StructuredOutput | None = None,
    ) -> TurnResult:
        """OpenAI-compatible, stateless: the client sends the whole history every time. With ``output``
        the reply is the JSON text of the structured answer."""
        result: TurnResult | None = None
        async for event in self.stream_messages(identity, messages, model, tokens=False, output=output):
            if event.kind == "done":
                result = event.result
        assert result is not None
        return result

    async def stream_messages(
        self,
        identity: str,
        messages: list[AnyMessage],
        model: str | None,
        *,
        tokens: bool = True,
        output: StructuredOutput | None = None,
    ) -> AsyncGenerator[TurnEvent]:
        prepared = await self._prepare(identity, model, None, stateless=True, output=output)
        async for event in self._execute(prepared, messages, tokens):
            yield event

    async def _execute(
        self,
        prepared: PreparedTurn,
        input_messages: list[AnyMessage],
        tokens: bool,
        list_in: ThreadIndex | None = None,
        message: str = "",
    ) -> AsyncGenerator[TurnEvent]:
        model_name = prepared.model.name
        if prepared.scoped_thread:
            self._last_activity[prepared.scoped_thread] = time.monotonic()
            if len(self._last_activity) > 10_000:  # also pruned on every /metrics scrape
                self._count_active()
        queue: asyncio.Queue[TurnEvent | BaseException | None] = asyncio.Queue()
        result = TurnResult(thread_id=prepared.thread_id, model=model_name)
        producer = asyncio.create_task(self._produce(prepared, input_messages, tokens, result, queue))
        # Listed while the model answers (a Redis round trip off the turn's path), withdrawn if the turn fails.
        listing: asyncio.Task[PendingEntry] | None = None
        if list_in is not None and prepared.scoped_thread:
            listing = asyncio.create_task(list_in.begin(prepared.identity, prepared.thread_id, message))
        deadline = time.monotonic() + self.settings.request_timeout_seconds
        self.metrics.turns_in_progress.inc()
        outcome = "ok"
        try:
            yield TurnEvent("start", {"thread_id": prepared.thread_id, "model": model_name})
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if not queue.empty():  # the common case: no timer, no task
                        item = queue.get_nowait()
                    else:
                        # asyncio.timeout, not wait_for: wait_for wraps the get in a task of its own.
                        async with asyncio.timeout(max(min(remaining, self.keepalive_seconds), 0.001)):
                            item = await queue.get()
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
                        self._status.provider_call_failed(prepared.model, item, error.message)
                        error.message = f"{describe_model(prepared.model)}: {error.message}"
                    raise error from None
                yield item
            if listing is not None:
                pending, listing = listing, None
                await pending
            yield TurnEvent("done", {"reply": result.reply, "usage": result.usage.public()}, result)
        except ChatError as error:
            outcome = error.code
            self._log_failed_turn(prepared, error)
            if listing is not None:  # off the list before the client hears of the failure
                pending, listing = listing, None
                await self._withdraw(pending)
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
            if listing is not None:  # cancelled (the client went away): nobody waits for the list
                self._spawn(self._withdraw(listing))

    @staticmethod
    async def _withdraw(listing: asyncio.Task[PendingEntry]) -> None:
        await (await listing).withdraw()

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
        structured: Any = None  # the agent's structured_response, when the turn asked for one
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
                        if isinstance(update, dict) and update.get("structured_response") is not None:
                            structured = update["structured_response"]
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
        if structured is not None:
            result.reply = json.dumps(structured, ensure_ascii=False)
        for event in collector.finish():
            await queue.put(event)
        if collector.model_calls:
            self.metrics.model_calls.labels(model=model_name, outcome="ok").inc(collector.model_calls)
            self._status.provider_call_succeeded(prepared.model)
        self.metrics.tokens.labels(model=model_name, direction="input").inc(result.usage.input_tokens)
        self.metrics.tokens.labels(model=model_name, direction="output").inc(result.usage.output_tokens)
        await queue.put(None)

    @staticmethod
    def _log_failed_turn(prepared: PreparedTurn, error: ChatError) -> None:
        """One line per failed turn, so the log says why next to the access line: the thread as a digest
        (it embeds the caller), never the message text; the reason is sanitized like the client's."""
        thread = prepared.scoped_thread or "stateless"
        digest = hashlib.sha256(thread.encode()).hexdigest()[:12] if prepared.scoped_thread else thread
        log.warning(
            "turn failed: %s (model %s, thread %s): %s",
            error.code,
            prepared.model.name,
            digest,
            error.message,
        )

    # -- threads -------------------------------------------------------------------------------------

    async def stored_thread_id(self, identity: str, thread_id: str, *, write: bool) -> str:
        """The checkpointer's id of a client's thread: the caller's own, or an Investigation's (shared by
        every caller of this chat, which serves one namespace: operational records, not private chats)."""
        if not is_investigation_thread(thread_id):
            return scoped_thread_id(identity, thread_id)
        if self.shared_threads is None:
            raise ThreadNotFound(f"no conversation {thread_id!r}: investigations are not enabled")
        await self.shared_threads(thread_id, write=write)
        return thread_id

    async def read_thread(self, identity: str, thread_id: str) -> list[dict[str, Any]]:
        stored = await self.stored_thread_id(identity, thread_id, write=False)
        try:
            messages = await self.conversations.messages(stored)
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
        self.agents.forget_conversation(scoped)

    def _count_active(self) -> float:
        cutoff = time.monotonic() - self.settings.session_ttl_seconds
        for thread in [t for t, at in self._last_activity.items() if at < cutoff]:
            self._last_activity.pop(thread, None)
        return float(len(self._last_activity))

    # -- config lifecycle, readiness and status ------------------------------------------------------

    def _config_changed(self, old: ConfigSnapshot | None, new: ConfigSnapshot) -> None:
        self.metrics.set_config(new.checksum)
        self.agents.forget_other_configs(new.checksum)
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
                    self.agents.build_model_and_chain(snapshot, entry)
        except Exception:
            log.exception("preparing config %s failed", snapshot.checksum)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def warnings(self) -> list[str]:
        return self._status.warnings(self.snapshot)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        return await self._status.readiness()

    def status(self) -> dict[str, Any]:
        return self._status.status(self.snapshot, self.models())
