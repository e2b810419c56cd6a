"""``translate``: the agent config of a namespace from its evaluation (pure)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from ai_ops_api.agent_config import (
    AgentConfig,
    BudgetEntry,
    EmbeddingModelEntry,
    MCPServerEntry,
    ModelEntry,
    NamedValue,
    PricingEntry,
    ProviderEntry,
    RunbookShard,
    RunbookShardRef,
    SecretRef,
    ToolFilterEntry,
    runbook_shard_name,
)
from ai_ops_api.conditions import READY, TRUE, UNKNOWN
from ai_ops_api.middleware import chain_order
from ai_ops_api.specs import LLMModelSpec, LLMProviderSpec, MCPServerSpec, ModelPurpose, SecretKeyRef
from ai_ops_operator.core.evaluate import middleware_entry, server_health_state
from ai_ops_operator.core.snapshot import Evaluation, Snapshot


def apply_tool_filter(
    names: Iterable[str], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[str]:
    include, exclude = list(include), list(exclude)
    kept = [n for n in names if not include or any(fnmatch.fnmatchcase(n, g) for g in include)]
    return sorted(n for n in kept if not any(fnmatch.fnmatchcase(n, g) for g in exclude))


def _secret_ref(ref: SecretKeyRef | None) -> SecretRef | None:
    return SecretRef(name=ref.name, key=ref.key) if ref else None


def _named_values(items: Iterable[Any] | None) -> tuple[NamedValue, ...]:
    out = []
    for item in items or ():
        if item.value_from is not None:
            out.append(NamedValue(name=item.name, secret_ref=_secret_ref(item.value_from.secret_key_ref)))
        else:
            out.append(NamedValue(name=item.name, value=item.value))
    return tuple(out)


def _provider_entry(name: str, spec: LLMProviderSpec) -> ProviderEntry:
    return ProviderEntry(name=name, type=spec.type, base_url=spec.base_url, config=spec.config or {})


def _embedding_model(ev: Evaluation) -> EmbeddingModelEntry | None:
    if ev.embedding_model is None:
        return None
    spec: LLMModelSpec = ev.models[ev.embedding_model].spec
    provider_spec: LLMProviderSpec = ev.providers[spec.provider_ref.name].spec
    return EmbeddingModelEntry(
        name=ev.embedding_model,
        model=spec.model,
        provider=_provider_entry(spec.provider_ref.name, provider_spec),
        api_key_secret_ref=_secret_ref(spec.api_key_secret_ref or provider_spec.api_key_secret_ref),
        timeout_seconds=spec.timeout_seconds,
        parameters=spec.parameters or {},
    )


def runbook_shard_refs(shards: Iterable[RunbookShard]) -> tuple[RunbookShardRef, ...]:
    return tuple(
        RunbookShardRef(
            name=runbook_shard_name(index), checksum=shard.checksum(), runbooks=len(shard.runbooks)
        )
        for index, shard in enumerate(shards)
    )


def _pricing_entry(spec: LLMModelSpec) -> PricingEntry | None:
    if spec.pricing is None:
        return None
    return PricingEntry(
        input_per_million_tokens=spec.pricing.input_per_million_tokens,
        output_per_million_tokens=spec.pricing.output_per_million_tokens,
        cached_input_per_million_tokens=spec.pricing.cached_input_per_million_tokens,
        currency=spec.pricing.currency,
    )


def translate(snap: Snapshot, ev: Evaluation) -> AgentConfig:
    """The agent config of the namespace: ready chat models with their chains, usable MCP servers, the
    embedding model and the runbook shards (``ev.runbook_shards``, which the writer publishes first)."""
    models = []
    for name, verdict in ev.models.items():
        if not verdict.ready or verdict.spec.purpose == ModelPurpose.EMBEDDING:
            continue
        spec: LLMModelSpec = verdict.spec
        provider_spec: LLMProviderSpec = ev.providers[spec.provider_ref.name].spec
        chain = sorted(
            (
                middleware_entry(mw.name, mw.spec)
                for mw in ev.middlewares.values()
                if mw.ready and mw.spec.active and mw.spec.model_ref.name == name
            ),
            key=chain_order,
        )
        models.append(
            ModelEntry(
                name=name,
                model=spec.model,
                provider=_provider_entry(spec.provider_ref.name, provider_spec),
                api_key_secret_ref=_secret_ref(spec.api_key_secret_ref or provider_spec.api_key_secret_ref),
                default=name == ev.default_model,
                temperature=spec.temperature,
                max_tokens=spec.max_tokens,
                timeout_seconds=spec.timeout_seconds,
                system_prompt=spec.system_prompt,
                parameters=spec.parameters or {},
                description=spec.description,
                pricing=_pricing_entry(spec),
                budget=BudgetEntry(tokens=spec.budget.tokens, cost=spec.budget.cost) if spec.budget else None,
                middleware=tuple(chain),
            )
        )
    servers = []
    for name, verdict in ev.mcpservers.items():
        ready = verdict.condition(READY)
        included = ready is not None and (
            ready.status == TRUE or (snap.health is None and ready.status == UNKNOWN)
        )
        if not included:
            continue
        server: MCPServerSpec = verdict.spec
        state = server_health_state(server, snap.health.get(name) if snap.health is not None else None)
        tool_filter = server.tool_filter
        include = tuple(tool_filter.include or ()) if tool_filter else ()
        exclude = tuple(tool_filter.exclude or ()) if tool_filter else ()
        servers.append(
            MCPServerEntry(
                name=name,
                transport=server.transport,
                url=server.url,
                command=server.command,
                args=tuple(server.args or ()),
                env=_named_values(server.env),
                headers=_named_values(server.headers),
                scope=server.scope,
                tool_filter=ToolFilterEntry(include=include, exclude=exclude),
                investigation_tools=server.investigation_tools,
                health=state.state,
                tools=tuple(apply_tool_filter(state.tools, include, exclude)),
                description=server.description,
            )
        )
    return AgentConfig(
        namespace=snap.namespace,
        default_model=ev.default_model,
        models=tuple(models),
        mcp_servers=tuple(servers),
        embedding_model=_embedding_model(ev),
        runbook_shards=runbook_shard_refs(ev.runbook_shards),
    ).finalize()


def referenced_secret_keys(config: AgentConfig) -> set[tuple[str, str]]:
    """Every (Secret, key) the chat service needs for this config: API keys (the embedding model's too),
    header and env values."""
    keys = [m.api_key_secret_ref for m in config.models]
    if config.embedding_model is not None:
        keys.append(config.embedding_model.api_key_secret_ref)
    refs = {(ref.name, ref.key) for ref in keys if ref is not None}
    for server in config.mcp_servers:
        for item in (*server.headers, *server.env):
            if item.secret_ref is not None:
                refs.add((item.secret_ref.name, item.secret_ref.key))
    return refs
