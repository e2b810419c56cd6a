"""The agent config: the one document the operator writes and the chat service reads.

It is defined here, in the contract package both sides import (the operator and ``ai-ops render`` write
it, the chat service reads it), so the two cannot drift; its enums are those of the CRDs (``specs``). It is versioned (``apiVersion``), deterministic (lists sorted, no timestamps) and
carries a content checksum so a writer can tell whether anything changed. Secret values never appear in
it: only ``{name, key}`` references, which the chat service resolves from its Secrets directory.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from ai_ops_api.specs import (
    HealthState,
    InvestigationTools,
    MCPScope,
    MCPTransport,
    MiddlewareType,
    ProviderType,
)

AGENT_CONFIG_API_VERSION = "ai-ops.dev/agent-config/v1"
AGENT_CONFIG_KIND = "AgentConfig"
# The ConfigMap the operator writes the document into (by default; both sides take another name as a
# setting) and the key of its data that holds the document.
AGENT_CONFIGMAP_NAME = "ai-ops-agent-config"
AGENT_CONFIG_DATA_KEY = "agent-config.json"
# Where the chat pod finds the referenced Secret keys, as files ``<dir>/<secret name>/<key>``: the operator
# mounts them there, the chat service reads them there.
SECRETS_MOUNT_PATH = "/var/run/secrets/ai-ops"
# Runbooks travel beside the agent config, in shards: ConfigMaps ``ai-ops-runbooks-<n>`` (in a cluster) or
# files ``ai-ops-runbooks-<n>.json`` next to the agent config file (locally, written by ``ai-ops render``).
# A ConfigMap holds at most 1 MiB: a shard stays under RUNBOOK_SHARD_MAX_BYTES, and a namespace has at
# most MAX_RUNBOOK_SHARDS of them (the chat's Role names each by resourceNames).
RUNBOOK_SHARD_PREFIX = "ai-ops-runbooks"
RUNBOOK_SHARD_DATA_KEY = "runbooks.json"
RUNBOOK_SHARD_MAX_BYTES = 900 * 1024
MAX_RUNBOOK_SHARDS = 16
RUNBOOKS_API_VERSION = "ai-ops.dev/runbooks/v1"


def runbook_shard_name(index: int) -> str:
    return f"{RUNBOOK_SHARD_PREFIX}-{index}"


class ConfigModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SecretRef(ConfigModel):
    """Where a secret value lives: ``<secrets dir>/<name>/<key>`` in the chat pod."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class NamedValue(ConfigModel):
    """A header or environment variable: inline value or a Secret reference, never both."""

    name: str = Field(min_length=1)
    value: str | None = None
    secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NamedValue:
        if (self.value is None) == (self.secret_ref is None):
            raise ValueError(f"{self.name}: exactly one of value and secretRef must be set")
        return self


class ProviderEntry(ConfigModel):
    name: str
    type: ProviderType
    base_url: str | None = Field(default=None, alias="baseURL")
    config: dict[str, Any] = Field(default_factory=dict)


class MiddlewareEntry(ConfigModel):
    name: str
    type: MiddlewareType
    priority: int = Field(ge=1, le=100)
    critical: bool = False
    config: dict[str, Any] = Field(default_factory=dict)


class PricingEntry(ConfigModel):
    """LLMModel.spec.pricing: prices per million tokens, exact decimals (written as strings in the JSON)."""

    input_per_million_tokens: Decimal
    output_per_million_tokens: Decimal
    cached_input_per_million_tokens: Decimal | None = None
    currency: str = "USD"


class BudgetEntry(ConfigModel):
    """LLMModel.spec.budget: a daily limit of the model, all callers together (UTC days)."""

    tokens: int | None = None
    cost: Decimal | None = None


class ModelEntry(ConfigModel):
    name: str
    model: str
    provider: ProviderEntry
    api_key_secret_ref: SecretRef | None = None
    default: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: int = 60
    system_prompt: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    pricing: PricingEntry | None = None  # None: tokens are counted, cost is absent
    budget: BudgetEntry | None = None
    # Sorted by priority, then name; inactive middleware is not in the config at all.
    middleware: tuple[MiddlewareEntry, ...] = ()


class ToolFilterEntry(ConfigModel):
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class MCPServerEntry(ConfigModel):
    name: str
    transport: MCPTransport
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[NamedValue, ...] = ()
    headers: tuple[NamedValue, ...] = ()
    scope: MCPScope = MCPScope.INTERNAL
    tool_filter: ToolFilterEntry = Field(default_factory=ToolFilterEntry)
    investigation_tools: InvestigationTools = InvestigationTools.READ_ONLY
    health: HealthState = HealthState.UNKNOWN
    # Tool names known from the last probe, with the tool filter applied; empty when never probed.
    tools: tuple[str, ...] = ()
    description: str | None = None


class EmbeddingModelEntry(ConfigModel):
    """The LLMModel (``purpose: embedding``) that embeds runbooks; without one the chat embeds locally."""

    name: str
    model: str
    provider: ProviderEntry
    api_key_secret_ref: SecretRef | None = None
    timeout_seconds: int = 60
    parameters: dict[str, Any] = Field(default_factory=dict)


class RunbookShardRef(ConfigModel):
    """One shard of the namespace's runbooks: the chat reloads a shard when its checksum changes."""

    name: str
    checksum: str
    runbooks: int = Field(ge=0)


class AgentConfig(ConfigModel):
    """Everything the chat service needs to run the agent of one namespace."""

    api_version: Literal["ai-ops.dev/agent-config/v1"] = "ai-ops.dev/agent-config/v1"
    kind: Literal["AgentConfig"] = "AgentConfig"
    namespace: str
    default_model: str | None = None
    models: tuple[ModelEntry, ...] = ()
    mcp_servers: tuple[MCPServerEntry, ...] = ()
    embedding_model: EmbeddingModelEntry | None = None
    runbook_shards: tuple[RunbookShardRef, ...] = ()
    # sha256 of the canonical JSON of every other field; set by ``finalize``.
    checksum: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(f"defaultModel {self.default_model!r} is not one of the models")
        servers = [s.name for s in self.mcp_servers]
        if len(set(servers)) != len(servers):
            raise ValueError("MCP server names must be unique")
        return self

    def content_checksum(self) -> str:
        body = self.model_dump(by_alias=True, mode="json", exclude={"checksum"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def finalize(self) -> AgentConfig:
        """A copy with the content checksum filled in."""
        return self.model_copy(update={"checksum": self.content_checksum()})

    def to_json(self) -> str:
        """The canonical serialized form (stable key order, so equal configs are equal bytes)."""
        body = self.model_dump(by_alias=True, mode="json")
        return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def model_by_name(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)


class RunbookMatchEntry(ConfigModel):
    alert_names: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    severities: tuple[str, ...] = ()


class RunbookEntry(ConfigModel):
    """A Ready runbook as the chat indexes it (its content resolved, ConfigMap references included)."""

    name: str
    title: str
    description: str = ""
    content: str
    tags: tuple[str, ...] = ()
    match: RunbookMatchEntry = Field(default_factory=RunbookMatchEntry)
    content_hash: str


class RunbookShard(ConfigModel):
    """The document in one runbook shard."""

    api_version: Literal["ai-ops.dev/runbooks/v1"] = "ai-ops.dev/runbooks/v1"
    namespace: str
    runbooks: tuple[RunbookEntry, ...] = ()

    def to_json(self) -> str:
        body = self.model_dump(by_alias=True, mode="json")
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def checksum(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()


def parse_runbook_shard(text: str | bytes) -> RunbookShard:
    try:
        return RunbookShard.model_validate_json(text)
    except ValidationError as exc:
        raise AgentConfigError(f"runbook shard is invalid: {exc.errors()[0]['msg']}") from None


class AgentConfigError(ValueError):
    """The document is not a valid agent config; the message says where and why."""


def parse_agent_config(text: str | bytes) -> AgentConfig:
    """Parse and validate a serialized agent config, checking its checksum when present."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentConfigError(f"agent config is not valid JSON: {exc}") from None
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise AgentConfigError(f"agent config is invalid: {problems}") from None
    if config.checksum and config.checksum != config.content_checksum():
        raise AgentConfigError("agent config checksum does not match its content (edited by hand?)")
    return config
