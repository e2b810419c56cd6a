"""The compiled agents: one LangChain v1 agent per (config version, model), built once and cached.

``create_agent`` gets the model built by the provider registry, the model's middleware chain, the MCP
tools and a system prompt. Compiled graphs are cached per config checksum, model, tool set and API-key
fingerprint (so a rotated key builds a new client on the next request); when the chain holds per-instance
state the graph is built per conversation instead, so no state leaks between users. Building a model also
records whether it is available, for ``/readyz`` and ``/api/status``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, AgentState, after_model
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime

from ai_ops_api.agent_config import AgentConfig, ModelEntry
from chat_service.config.store import ConfigSnapshot
from chat_service.conversations import ConversationStore
from chat_service.engine.model_errors import ModelErrorBoundary
from chat_service.errors import ModelUnavailable
from chat_service.middleware.chain import ChainBuild, MiddlewareContext, build_middleware_chain
from chat_service.middleware.tool_arguments import StrictToolArguments
from chat_service.providers import ProviderUnavailable, build_chat_model
from chat_service.runbooks.tool import RUNBOOKS_PROMPT, SEARCH_RUNBOOKS
from chat_service.secrets import SecretResolver, SecretUnavailable
from chat_service.tools.toolbox import MCPToolbox, Toolset
from chat_service.usage.recorder import UsageRecorder

DEFAULT_SYSTEM_PROMPT = (
    "You are an operations assistant for a platform and network team. You help people understand and "
    "troubleshoot their infrastructure and the services on it. Use the tools you have to look things up "
    "instead of guessing, and say which results your answer rests on. Never invent resource names, states "
    "or numbers. If a tool fails or you are unsure, say so plainly and suggest the next check. Be concise; "
    "prefer short steps and exact commands."
)
_NO_TOOLS_PROMPT = (
    "You have no tools right now, so you cannot look at any live system (no cluster, no network checks): "
    "answer from general knowledge, say that you could not check, and give the commands the user can run."
)


def default_system_prompt(toolset: Toolset) -> str:
    """The prompt of a model without its own: it offers only what the loaded tools can do, so a demo
    without a Kubernetes MCP server does not promise answers about a cluster."""
    offered = [(name, state.tools) for name, state in toolset.servers.items() if state.tools]
    if not offered:
        return f"{DEFAULT_SYSTEM_PROMPT} {_NO_TOOLS_PROMPT}"
    listed = "; ".join(f"{name}: {', '.join(sorted(tools))}" for name, tools in offered)
    return (
        f"{DEFAULT_SYSTEM_PROMPT} Your tools, by MCP server: {listed}. Questions about systems these tools "
        "cannot reach you cannot check: say so instead of answering as if you had looked."
    )


@after_model(can_jump_to=["end"], name="EndOnPlainTextAnswer")
def _end_on_plain_text_answer(state: AgentState[Any], _runtime: Runtime[Any]) -> dict[str, Any] | None:
    """A model that answers text instead of calling the structured-output tool (a provider that ignores
    the forced tool choice) ends the turn: ToolStrategy would ask it again up to the step limit."""
    last = state["messages"][-1] if state["messages"] else None
    if isinstance(last, AIMessage) and not last.tool_calls:
        return {"jump_to": "end"}
    return None


@dataclass(frozen=True)
class StructuredOutput:
    """The final answer must be a JSON object matching ``schema`` (the OpenAI API's ``response_format``).

    Given to the agent as a ToolStrategy: the model answers by calling a tool named ``name`` whose
    arguments are the answer. That needs only tool calling, which every agent model has anyway, where
    the provider's own JSON modes differ between providers and between models of one provider.
    """

    name: str
    schema: dict[str, Any]
    description: str = ""

    @functools.cached_property
    def key(self) -> str:
        """Part of the compiled-graph cache key: equal for equal formats."""
        canonical = json.dumps([self.name, self.schema, self.description], sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def strategy(self) -> ToolStrategy[Any]:
        # ToolStrategy names the tool after the schema's title and describes it with its description.
        return ToolStrategy({**self.schema, "title": self.name, "description": self.description})

    @staticmethod
    def middleware() -> list[AgentMiddleware[Any, Any]]:
        return [_end_on_plain_text_answer]


_GRAPH_CACHE_SIZE = 64
_CONVERSATION_GRAPH_CACHE_SIZE = 512

AgentKey = tuple[Any, ...]


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
class ModelReport:
    name: str
    available: bool = True
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


def _cache_put(
    cache: OrderedDict[AgentKey, CompiledAgent], key: AgentKey, value: CompiledAgent, size: int
) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class AgentCache:
    """Builds the compiled agent a turn runs, reusing it while config, tools and API keys stay the same."""

    def __init__(
        self,
        conversations: ConversationStore,
        secrets: SecretResolver,
        toolbox: MCPToolbox,
        builtin_tools: Callable[[], list[BaseTool]] | None = None,
    ):
        self.conversations = conversations
        self.secrets = secrets
        self.toolbox = toolbox
        # The service's own tools (search_runbooks), beside the MCP tools; an MCP tool of the same name wins.
        self.builtin_tools = builtin_tools or (lambda: [])
        self._graphs: OrderedDict[AgentKey, CompiledAgent] = OrderedDict()
        self._conversation_graphs: OrderedDict[AgentKey, CompiledAgent] = OrderedDict()
        self._reports: dict[str, dict[str, ModelReport]] = {}
        self.usage: UsageRecorder | None = None  # set by ChatServices when accounting is on

    # -- building ------------------------------------------------------------------------------------

    def _instrumented(self, model: BaseChatModel, name: str) -> BaseChatModel:
        """Every model built here (the agent's, summarization, fallback, tool selector, investigations')
        reports its calls to usage accounting when it is on."""
        return self.usage.instrument(model, name) if self.usage is not None else model

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
            return self._instrumented(build_chat_model(entry, self.secrets), entry.name)

        return MiddlewareContext(
            config=config,
            secrets=self.secrets,
            redis=self.conversations.redis_client,
            build_model=build_other,
            logger=logging.getLogger("ai_ops.middleware"),
            proposer=lambda: self.toolbox.proposer,
        )

    def build_model_and_chain(
        self, snapshot: ConfigSnapshot, entry: ModelEntry
    ) -> tuple[BaseChatModel, ChainBuild]:
        """The model's client and middleware chain, with the outcome reported for /readyz and /api/status;
        raises ModelUnavailable when either cannot be built."""
        try:
            model = self._instrumented(build_chat_model(entry, self.secrets), entry.name)
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

    def _default_prompt(self, toolset: Toolset) -> str:
        prompt = default_system_prompt(toolset)
        if any(t.name == SEARCH_RUNBOOKS for t in self._tools(toolset)):
            prompt = f"{prompt} {RUNBOOKS_PROMPT}"
        return prompt

    def _tools(self, toolset: Toolset) -> list[BaseTool]:
        taken = {t.name for t in toolset.tools}
        builtin = [t for t in self.builtin_tools() if t.name not in taken]
        if self.usage is not None:
            builtin = [self.usage.instrument(t) for t in builtin]
        return [*toolset.tools, *builtin]

    def _build_agent(
        self,
        snapshot: ConfigSnapshot,
        entry: ModelEntry,
        toolset: Toolset,
        checkpointed: bool,
        output: StructuredOutput | None = None,
    ) -> CompiledAgent:
        model, chain = self.build_model_and_chain(snapshot, entry)
        # Around the configured chain, always (no LLMMiddleware turns them off): outermost, provider errors
        # leave sanitized before LangGraph checkpoints them; innermost, tool calls whose arguments are not
        # a complete JSON object are answered with an error instead of run.
        middleware = [
            ModelErrorBoundary(self.secrets),
            *chain.middleware,
            *(output.middleware() if output else ()),
            StrictToolArguments(),
        ]
        graph = create_agent(
            model,
            tools=self._tools(toolset),
            system_prompt=entry.system_prompt or self._default_prompt(toolset),
            middleware=middleware,
            response_format=output.strategy() if output else None,
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

    # -- the cache -----------------------------------------------------------------------------------

    async def agent_for(
        self,
        snapshot: ConfigSnapshot,
        entry: ModelEntry,
        scoped_thread: str | None,
        checkpointed: bool,
        output: StructuredOutput | None = None,
    ) -> tuple[CompiledAgent, list[str]]:
        """The agent for a turn, and the API key values to keep out of its error messages; ``output``:
        the final answer must be that JSON (the graph differs, so it is part of the key)."""
        toolset = await self.toolbox.toolset(snapshot.config, snapshot.checksum)
        secrets_digest, secret_values = self._secret_fingerprint(snapshot.config)
        output_key = output.key if output else None
        builtin = tuple(sorted(t.name for t in self.builtin_tools()))
        key = (
            snapshot.checksum,
            entry.name,
            toolset.version,
            builtin,
            secrets_digest,
            checkpointed,
            output_key,
        )
        agent = self._graphs.get(key)
        if agent is None:
            agent = self._build_agent(snapshot, entry, toolset, checkpointed, output)
            _cache_put(self._graphs, key, agent, _GRAPH_CACHE_SIZE)
        else:
            self._graphs.move_to_end(key)
        if agent.chain.stateful and scoped_thread is None:
            # Stateless request (OpenAI-compatible): fresh instances, used once.
            agent = self._build_agent(snapshot, entry, toolset, checkpointed, output)
        elif agent.chain.stateful and scoped_thread is not None:
            # Middleware with per-instance state: a chain of its own for each conversation.
            conversation_key = (*key, scoped_thread)
            own = self._conversation_graphs.get(conversation_key)
            if own is None:
                own = self._build_agent(snapshot, entry, toolset, checkpointed, output)
                _cache_put(self._conversation_graphs, conversation_key, own, _CONVERSATION_GRAPH_CACHE_SIZE)
            agent = own
        return agent, secret_values

    def reports(self, checksum: str) -> dict[str, ModelReport]:
        """What building each model of a config version found (empty until one was built)."""
        return self._reports.get(checksum, {})

    def forget_other_configs(self, checksum: str) -> None:
        """Drop agents and reports of config versions other than ``checksum`` (the one now in force)."""
        for cache in (self._graphs, self._conversation_graphs):
            for key in [k for k in cache if k[0] != checksum]:
                cache.pop(key, None)
        for old in [c for c in self._reports if c != checksum]:
            self._reports.pop(old, None)

    def forget_conversation(self, scoped_thread: str) -> None:
        """Drop the per-conversation agents of a deleted conversation."""
        for key in [k for k in self._conversation_graphs if k[-1] == scoped_thread]:
            self._conversation_graphs.pop(key, None)
