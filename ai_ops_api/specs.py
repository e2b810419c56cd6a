"""The spec and status models of the ai-ops custom resources.

This module is the single source of truth for the CRDs: ``crdgen`` turns these pydantic models into the
openAPIV3Schema of each CRD (``make crds`` writes ``crds/*.yaml``; a test checks the files are current).
Field descriptions become ``kubectl explain`` text; ``Field`` bounds become schema bounds; the CEL rules in
``x-kubernetes-validations`` are declared beside the model they guard, and the pydantic validators below
enforce the same rules in Python (a test runs a broken-manifest corpus through both).
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue

GROUP = "ai-ops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "ai-ops"

# Kubernetes object names (DNS subdomain) and Secret data keys.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Inline header values: no control characters but tab (a CR or LF would start another header or the body).
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0A-\x1F\x7F]*$"
# Inline environment values: no NUL, CR or LF (one line, as an environment entry is).
ENV_VALUE_PATTERN = r"^[^\x00\r\n]*$"
# The label a Secret needs before ai-ops resources may reference it: creating an ai-ops resource must not
# let its author read (through a probe or the chat pod) a Secret nobody offered.
USABLE_SECRET_LABEL = "ai-ops.dev/usable"
USABLE_SECRET_LABEL_VALUE = "true"

# Bounds of integer fields that have no natural limit: Kubernetes' int32, and for a generation (an int64)
# the largest integer a float64 holds exactly. The API server holds a bound as a float64, and against one
# that is no exact integer (2**63 - 1) it refuses every value: "Maximum boundary value must be of type
# integer".
INT32_MAX = 2**31 - 1
GENERATION_MAX = 2**53 - 1


def check_absolute_url(value: str) -> str:
    """The ``uri`` format as ai-ops reads it: an absolute URL with a scheme and a host."""
    parsed = urlparse(value)
    if not parsed.scheme or not parsed.netloc:
        raise ValueError(f"{value!r} is not an absolute URL (scheme://host...)")
    return value


ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]
# The API server's `uri` format is Go's url.ParseRequestURI, which takes `ollama:11434` (scheme "ollama");
# the pattern makes it refuse what check_absolute_url refuses: no `scheme://host`.
ABSOLUTE_URL_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]"
URL = Annotated[
    str,
    Field(min_length=1, max_length=2048, pattern=ABSOLUTE_URL_PATTERN, json_schema_extra={"format": "uri"}),
    AfterValidator(check_absolute_url),
]
ShortText = Annotated[str, Field(max_length=1024)]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class SpecModel(BaseModel):
    """Base of every spec part: camelCase on the wire, unknown fields refused (the API server prunes them).

    Strict, like the CRD schema: ``"yes"`` is not a boolean and ``"30"`` not an integer. Parse a manifest's
    spec with ``ResourceKind.parse_spec``, which also refuses Python field names (``base_url``) that
    ``populate_by_name`` accepts for code that builds models by keyword.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)

    # CEL rules of this object; they become its x-kubernetes-validations.
    cel_rules: ClassVar[list[dict[str, str]]] = []

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        if cls.cel_rules:
            handler.resolve_ref_schema(json_schema)["x-kubernetes-validations"] = list(cls.cel_rules)
        return json_schema

    def wire(self) -> dict[str, Any]:
        """The object as it appears in a manifest (camelCase, no unset optional fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- shared parts -------------------------------------------------------------------------------


class SecretKeyRef(SpecModel):
    """A key in a Secret of the resource's own namespace."""

    name: ObjectName = Field(
        description="Name of the Secret, in the same namespace as this resource. The Secret must carry the "
        f"label {USABLE_SECRET_LABEL}={USABLE_SECRET_LABEL_VALUE}, else the resource is not Ready."
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        description="Key inside the Secret's data whose value is used."
    )


class LocalObjectRef(SpecModel):
    """A reference to another resource in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced resource, in the same namespace.")


class ValueSource(SpecModel):
    """Where a value comes from when it is not written inline."""

    secret_key_ref: SecretKeyRef = Field(description="Read the value from a key of a Secret.")


# --- LLMProvider --------------------------------------------------------------------------------


class ProviderType(enum.StrEnum):
    OLLAMA = "ollama"
    OPENAI = "openai"
    AZURE_OPENAI = "azure_openai"
    ANTHROPIC = "anthropic"
    HUGGINGFACE = "huggingface"
    OPENAI_COMPATIBLE = "openai_compatible"


PROVIDERS_NEEDING_BASE_URL = (ProviderType.AZURE_OPENAI, ProviderType.OPENAI_COMPATIBLE)
# A model of these providers needs an API key, from the model or from its provider.
PROVIDERS_NEEDING_API_KEY = (ProviderType.OPENAI, ProviderType.AZURE_OPENAI, ProviderType.ANTHROPIC)


class LLMProviderSpec(SpecModel):
    """An LLM backend that LLMModels use: its type, endpoint and default credentials."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel(
            "!(self.type in ['azure_openai', 'openai_compatible']) || has(self.baseURL)",
            "baseURL is required when type is azure_openai or openai_compatible",
            ".baseURL",
        ),
    ]

    type: ProviderType = Field(
        strict=False,
        description="Kind of backend: ollama, openai, azure_openai, anthropic, huggingface or "
        "openai_compatible (any OpenAI-compatible endpoint such as vLLM, LM Studio or LiteLLM).",
    )
    base_url: URL | None = Field(
        default=None,
        alias="baseURL",
        description="Endpoint of the backend, e.g. http://ollama.ollama:11434 or "
        "https://NAME.openai.azure.com. Required for azure_openai and openai_compatible.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Default API key for the models of this provider; a model's own apiKeySecretRef wins.",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="Provider settings: Azure's apiVersion and deployment, OpenAI's organization, "
        "streamUsage, handler, and the generation settings the provider type allows (see docs/providers.md). "
        "Anything else is refused (ParameterNotAllowed): baseURL, keys, proxies, headers and clients would "
        "redirect or expose the API key.",
    )
    enabled: bool = Field(default=True, description="A disabled provider makes all its models unavailable.")
    description: ShortText | None = Field(default=None, description="Free text for humans.")

    @model_validator(mode="after")
    def _base_url_required(self) -> LLMProviderSpec:
        if self.type in PROVIDERS_NEEDING_BASE_URL and not self.base_url:
            raise ValueError("baseURL is required when type is azure_openai or openai_compatible")
        return self


# --- LLMModel -----------------------------------------------------------------------------------


class ModelPurpose(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


PRICE_MAX = Decimal(1_000_000)


def _price(value: Any) -> Decimal:
    """A price as an exact Decimal: YAML gives a float, whose shortest text (``0.15``) is what the author
    wrote, so money never carries binary float drift. Strings and booleans are refused, as the CRD does."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("expected a number")
    price = value if isinstance(value, Decimal) else Decimal(str(value))
    if not price.is_finite() or price < 0 or price > PRICE_MAX:
        raise ValueError(f"expected a number from 0 to {PRICE_MAX}")
    return price


Price = Annotated[
    Decimal,
    BeforeValidator(_price),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": int(PRICE_MAX)}),
]
CURRENCY_PATTERN = r"^[A-Z]{3}$"


class ModelPricing(SpecModel):
    """What the provider charges for this model, pinned by the user (no price table is fetched)."""

    input_per_million_tokens: Price = Field(
        strict=False, description="Price of one million input (prompt) tokens."
    )
    output_per_million_tokens: Price = Field(
        strict=False, description="Price of one million output (completion) tokens."
    )
    cached_input_per_million_tokens: Price | None = Field(
        default=None,
        strict=False,
        description="Price of one million input tokens read from the provider's prompt cache; "
        "unset: they cost as much as other input tokens.",
    )
    currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)] = Field(
        default="USD", description="ISO 4217 code of the prices (USD, EUR, ...)."
    )


class ModelBudget(SpecModel):
    """A daily limit of this model (UTC days, all callers together); past it, turns get 429."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("has(self.tokens) || has(self.cost)", "set tokens, cost or both"),
    ]

    tokens: int | None = Field(
        default=None, ge=1, le=GENERATION_MAX, description="Tokens (input + output) a day."
    )
    cost: Price | None = Field(
        default=None,
        strict=False,
        description="Cost a day, in the currency of spec.pricing (needs spec.pricing).",
    )

    @model_validator(mode="after")
    def _something(self) -> ModelBudget:
        if self.tokens is None and self.cost is None:
            raise ValueError("set tokens, cost or both")
        return self


class LLMModelSpec(SpecModel):
    """A model offered by an LLMProvider, with its generation settings."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel(
            "self.purpose != 'embedding' || !self.default",
            "an embedding model cannot be the default (chat) model",
            ".default",
        ),
        cel(
            "!has(self.budget) || !has(self.budget.cost) || has(self.pricing)",
            "budget.cost needs spec.pricing (a cost cannot be counted without prices)",
            ".budget.cost",
        ),
    ]

    provider_ref: LocalObjectRef = Field(description="The LLMProvider serving this model.")
    model: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="The provider's model id (e.g. gpt-4o, llama3.1:8b) or, for azure_openai, "
        "the deployment name."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="API key of this model; overrides the provider's apiKeySecretRef."
    )
    default: bool = Field(
        default=False,
        description="Use this model when a request names none. "
        "With several defaults in a namespace the oldest wins.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature, 0 to 2.")
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Upper bound of tokens in one model response."
    )
    timeout_seconds: int = Field(
        default=60, ge=1, le=600, description="Timeout of one model call, 1 to 600 s."
    )
    system_prompt: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None, description="System prompt of the agent when it runs on this model."
    )
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="Extra generation settings of the model client, from the provider type's allowlist "
        "(e.g. top_p, seed, stop; see docs/providers.md). Anything else is refused (ParameterNotAllowed): "
        "base_url, api_key, proxies, headers and clients would redirect or expose the API key.",
    )
    description: ShortText | None = Field(default=None, description="Free text for humans.")
    purpose: ModelPurpose = Field(
        strict=False,
        default=ModelPurpose.CHAT,
        description="chat: the agent can run on it; embedding: it embeds runbooks for search (the "
        "namespace's oldest Ready embedding model is used; it is never a chat model or a fallback).",
    )
    pricing: ModelPricing | None = Field(
        default=None,
        description="Prices per million tokens, for usage accounting; unset: tokens are counted, cost is not.",
    )
    budget: ModelBudget | None = Field(
        default=None, description="Daily token and/or cost limit of this model (see docs/usage.md)."
    )

    @model_validator(mode="after")
    def _embedding_not_default(self) -> LLMModelSpec:
        if self.purpose == ModelPurpose.EMBEDDING and self.default:
            raise ValueError("an embedding model cannot be the default (chat) model")
        if self.budget is not None and self.budget.cost is not None and self.pricing is None:
            raise ValueError("budget.cost needs spec.pricing (a cost cannot be counted without prices)")
        return self


# --- LLMMiddleware ------------------------------------------------------------------------------


class MiddlewareType(enum.StrEnum):
    LOGGING = "logging"
    CACHE = "cache"
    MODEL_RETRY = "model_retry"
    TOOL_RETRY = "tool_retry"
    MODEL_FALLBACK = "model_fallback"
    MODEL_CALL_LIMIT = "model_call_limit"
    TOOL_CALL_LIMIT = "tool_call_limit"
    PII = "pii"
    PROMPT_INJECTION = "prompt_injection"
    SUMMARIZATION = "summarization"
    CONTEXT_EDITING = "context_editing"
    CUSTOM = "custom"
    TODO_LIST = "todo_list"
    TOOL_SELECTOR = "tool_selector"
    HUMAN_IN_THE_LOOP = "human_in_the_loop"


class LLMMiddlewareSpec(SpecModel):
    """One step of a model's middleware chain."""

    model_ref: LocalObjectRef = Field(description="The LLMModel whose chain this middleware joins.")
    type: MiddlewareType = Field(
        strict=False, description="What the middleware does; config holds the settings of that type."
    )
    priority: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Position in the chain, 1 to 100: lower runs first, ties by name.",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="Settings of this middleware type; see docs/middleware.md for each type's fields.",
    )
    active: bool = Field(default=True, description="An inactive middleware is left out of the chain.")
    critical: bool = Field(
        default=False,
        description="When true, a middleware that cannot be set up makes its model unavailable; "
        "when false it is skipped with a warning.",
    )


# --- MCPServer ----------------------------------------------------------------------------------


class MCPTransport(enum.StrEnum):
    STREAMABLE_HTTP = "streamable_http"
    SSE = "sse"
    STDIO = "stdio"


class MCPScope(enum.StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"


class InvestigationTools(enum.StrEnum):
    """Which of a server's tools the investigator (alerts, /api/investigations) may call. A tool that is not
    annotated ``readOnlyHint: true`` (unannotated ones too) is never callable by any agent: it is offered
    as a proposal that creates an ActionRequest, so no value can let an investigation write."""

    READ_ONLY = "readOnly"  # tools annotated readOnlyHint: true, and proposals for the others
    NONE = "none"  # the server is not offered to investigations


class HealthState(enum.StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    UNAUTHENTICATED = "Unauthenticated"
    UNKNOWN = "Unknown"
    MAINTENANCE = "Maintenance"
    NOT_PROBED = "NotProbed"


# Health states whose server the agent may use.
USABLE_HEALTH = (HealthState.HEALTHY, HealthState.DEGRADED, HealthState.NOT_PROBED)


class NameValue(SpecModel):
    """A named value, written inline or read from a Secret."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("has(self.value) != has(self.valueFrom)", "exactly one of value and valueFrom must be set"),
    ]

    name: Annotated[str, Field(min_length=1, max_length=256)] = Field(description="Name.")
    value: Annotated[str, Field(max_length=8192)] | None = Field(
        default=None, description="Inline value. Use valueFrom for anything secret."
    )
    value_from: ValueSource | None = Field(
        default=None, description="Read the value from a Secret key instead."
    )

    @model_validator(mode="after")
    def _one_source(self) -> NameValue:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("exactly one of value and valueFrom must be set")
        return self


class HTTPHeader(NameValue):
    """An HTTP header sent to the MCP server (e.g. Authorization)."""

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)] = Field(
        description="Header name, e.g. Authorization."
    )
    value: Annotated[str, Field(max_length=8192, pattern=HEADER_VALUE_PATTERN)] | None = Field(
        default=None,
        description="Inline value, without control characters (CR, LF...). Use valueFrom for anything secret.",
    )


class EnvVar(NameValue):
    """An environment variable of a stdio MCP server."""

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)] = Field(
        description="Variable name."
    )
    value: Annotated[str, Field(max_length=8192, pattern=ENV_VALUE_PATTERN)] | None = Field(
        default=None,
        description="Inline value, one line (no NUL, CR or LF). Use valueFrom for anything secret.",
    )


class HealthCheck(SpecModel):
    """How the operator probes the server (an MCP initialize and tools/list)."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel(
            "self.timeoutSeconds < self.intervalSeconds",
            "healthCheck.timeoutSeconds must be below healthCheck.intervalSeconds",
            ".timeoutSeconds",
        ),
    ]

    enabled: bool = Field(default=True, description="Probe the server; when false its health is NotProbed.")
    interval_seconds: int = Field(
        default=30, ge=5, le=86400, description="Seconds between probes, at least 5."
    )
    timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="Deadline of one whole probe; must be below intervalSeconds."
    )
    failure_threshold: int = Field(
        default=3, ge=1, le=100, description="Consecutive failed probes that make the server Unhealthy."
    )
    success_threshold: int = Field(
        default=1, ge=1, le=100, description="Consecutive successful probes that make the server Healthy."
    )
    path: Annotated[str, Field(max_length=1024, pattern=r"^/")] | None = Field(
        default=None, description="Optional extra HTTP GET path on the server's host that must answer 2xx."
    )

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> HealthCheck:
        if self.timeout_seconds >= self.interval_seconds:
            raise ValueError("healthCheck.timeoutSeconds must be below healthCheck.intervalSeconds")
        return self


class ToolFilter(SpecModel):
    """Which tools of the server the agent may use. Globs as in fnmatch (*, ?, [abc])."""

    include: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=256, description="Tool-name globs to keep; empty or unset keeps all."
    )
    exclude: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=256, description="Tool-name globs to drop; applied after include."
    )


class MCPServerSpec(SpecModel):
    """A Model Context Protocol server whose tools the agent may use."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel(
            "self.transport == 'stdio' || has(self.url)",
            "url is required for the streamable_http and sse transports",
            ".url",
        ),
        cel(
            "self.transport != 'stdio' || !has(self.url)",
            "url must not be set for the stdio transport",
            ".url",
        ),
        cel(
            "self.transport != 'stdio' || has(self.command)",
            "command is required for the stdio transport",
            ".command",
        ),
        cel(
            "self.transport == 'stdio' || (!has(self.command) && !has(self.args) && !has(self.env))",
            "command, args and env are only allowed for the stdio transport",
        ),
    ]

    transport: MCPTransport = Field(
        strict=False,
        default=MCPTransport.STREAMABLE_HTTP,
        description="How to reach the server: streamable_http, sse or stdio.",
    )
    url: URL | None = Field(
        default=None, description="Endpoint of the server, e.g. http://mcp.tools:8000/mcp. Not for stdio."
    )
    command: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Executable of a stdio server, run inside the chat service's container."
    )
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=64, description="Arguments of the stdio command."
    )
    env: list[EnvVar] | None = Field(
        default=None, max_length=64, description="Environment of the stdio command."
    )
    headers: list[HTTPHeader] | None = Field(
        default=None, max_length=32, description="HTTP headers sent with every request, e.g. a bearer token."
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheck,
        description="How the server is probed.",
        # Spelt out, not {}: the API server checks a default against the CEL rules as it stands, without
        # the nested defaults, and refuses the CRD when `self.timeoutSeconds` is missing from it.
        json_schema_extra={
            "default": HealthCheck().model_dump(by_alias=True, exclude_none=True, mode="json")
        },
    )
    maintenance: bool = Field(
        default=False, description="A server in maintenance is left out of the agent and never probed."
    )
    scope: MCPScope = Field(
        strict=False,
        default=MCPScope.INTERNAL,
        description="internal: in or near the cluster; external: a third-party service (shown to users).",
    )
    tool_filter: ToolFilter | None = Field(
        default=None, description="Which of the server's tools the agent may use."
    )
    investigation_tools: InvestigationTools = Field(
        strict=False,
        default=InvestigationTools.READ_ONLY,
        description=(
            "Which of its tools investigations may use: readOnly (the tools annotated readOnlyHint true, "
            "and the others only as proposals a person must approve) or none (nothing of this server)."
        ),
    )
    description: ShortText | None = Field(default=None, description="Free text for humans.")

    @model_validator(mode="after")
    def _transport_fields(self) -> MCPServerSpec:
        stdio = self.transport == MCPTransport.STDIO
        if not stdio and not self.url:
            raise ValueError("url is required for the streamable_http and sse transports")
        if stdio and self.url:
            raise ValueError("url must not be set for the stdio transport")
        if stdio and not self.command:
            raise ValueError("command is required for the stdio transport")
        if not stdio and (self.command or self.args or self.env):
            raise ValueError("command, args and env are only allowed for the stdio transport")
        return self


# --- Runbook ------------------------------------------------------------------------------------

# The longest runbook, in characters (inline or from a ConfigMap): a shard of runbooks is one ConfigMap.
RUNBOOK_CONTENT_MAX = 262144
ConfigMapKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]


class ConfigMapKeyRef(SpecModel):
    """A key in a ConfigMap of the resource's own namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the same namespace as this resource.")
    key: ConfigMapKey = Field(description="Key inside the ConfigMap's data whose value is used.")


class RunbookContentSource(SpecModel):
    """Where a runbook's Markdown comes from when it is not written inline."""

    config_map_key_ref: ConfigMapKeyRef = Field(
        description="Read the Markdown from a key of a ConfigMap (re-read whenever the ConfigMap changes)."
    )


class RunbookMatch(SpecModel):
    """Which alerts the runbook is attached to; every part given must match (none given: no alert)."""

    alert_names: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=64, description="Alert names (the alertname label), any of them."
    )
    labels: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None, max_length=32, description="Alert labels that must have exactly these values."
    )
    severities: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=16, description="Values of the alert's severity label, any of them."
    )


class RunbookSpec(SpecModel):
    """An operational procedure in Markdown that the agent can search and cite."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel(
            "has(self.content) != has(self.contentFrom)", "exactly one of content and contentFrom must be set"
        ),
    ]

    title: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="What the runbook is for, in a few words; shown with every citation."
    )
    description: ShortText | None = Field(
        default=None, description="When to use the runbook; searched along with the content."
    )
    content: Annotated[str, Field(max_length=RUNBOOK_CONTENT_MAX)] | None = Field(
        default=None,
        description="The procedure in Markdown; each heading starts a section the agent can cite. "
        "Exactly one of content and contentFrom.",
    )
    content_from: RunbookContentSource | None = Field(
        default=None, description="Read the Markdown from a ConfigMap instead of writing it inline."
    )
    match: RunbookMatch | None = Field(default=None, description="The alerts this runbook is attached to.")
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=20, description="Keywords that help the search find the runbook."
    )
    enabled: bool = Field(default=True, description="A disabled runbook is not published to the agent.")

    @model_validator(mode="after")
    def _one_source(self) -> RunbookSpec:
        if (self.content is None) == (self.content_from is None):
            raise ValueError("exactly one of content and contentFrom must be set")
        return self


# --- status -------------------------------------------------------------------------------------


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class StatusModel(SpecModel):
    """Base of the status parts: written by the operator only, so reading is tolerant (lax types, fields
    of other versions ignored), unlike the strict spec models."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", strict=False)


class Condition(StatusModel):
    """One aspect of the resource's state, following the Kubernetes API conventions."""

    type: Annotated[str, Field(max_length=316)] = Field(
        description="Type of condition in CamelCase, e.g. Ready."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(max_length=1024)] = Field(description="Machine-readable CamelCase reason.")
    message: Annotated[str, Field(max_length=32768)] = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        le=GENERATION_MAX,
        description="The metadata.generation this condition was computed from.",
    )


class CommonStatus(StatusModel):
    """What the operator observed of the resource."""

    observed_generation: int | None = Field(
        default=None, ge=0, le=GENERATION_MAX, description="Last metadata.generation processed."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Current state: Ready and the checks behind it.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ServerInfo(StatusModel):
    """What the server said of itself in its MCP initialize answer."""

    name: str | None = Field(default=None, description="Server name.")
    version: str | None = Field(default=None, description="Server version.")
    protocol_version: str | None = Field(default=None, description="Negotiated MCP protocol version.")


class ToolsSummary(StatusModel):
    """The tools the server listed at the last successful probe."""

    count: int = Field(default=0, ge=0, le=INT32_MAX, description="Number of tools the server offers.")
    names: list[str] | None = Field(
        default=None, max_length=100, description="Tool names, sorted, at most 100."
    )


class MCPServerStatus(CommonStatus):
    """Conditions plus the result of the latest probes."""

    health: HealthState | None = Field(
        default=None, description="Health of the server as seen by the probes."
    )
    server_info: ServerInfo | None = Field(default=None, description="The server's own description.")
    tools: ToolsSummary | None = Field(default=None, description="Tools found at the last successful probe.")
    last_probe_time: str | None = Field(
        default=None,
        description="When the server was last probed.",
        json_schema_extra={"format": "date-time"},
    )
    last_probe_latency_ms: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Duration of the last probe in milliseconds."
    )
    consecutive_failures: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Failed probes in a row."
    )


class RunbookStatus(CommonStatus):
    """Conditions plus what the operator published of the runbook."""

    content_hash: str | None = Field(
        default=None, description="sha256 of the published title, description, tags and content."
    )
    sections: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Number of Markdown sections of the content."
    )


# --- the kinds -----------------------------------------------------------------------------


class PrinterColumn(BaseModel):
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


READY_COLUMN = PrinterColumn(
    name="Ready",
    type="string",
    json_path='.status.conditions[?(@.type=="Ready")].status',
    description="Whether the resource is usable by the agent.",
)
AGE_COLUMN = PrinterColumn(
    name="Age", type="date", json_path=".metadata.creationTimestamp", description="Time since creation."
)
REASON_COLUMN = PrinterColumn(
    name="Reason",
    type="string",
    json_path='.status.conditions[?(@.type=="Ready")].reason',
    description="Why the resource is or is not ready.",
    priority=1,
)


class ResourceKind(BaseModel):
    """Everything the CRD generator, the operator and the tests need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    description: str
    spec_model: type[SpecModel]
    status_model: type[SpecModel]
    columns: list[PrinterColumn]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    def parse_spec(self, spec: Any) -> SpecModel:
        """The ``spec`` of a manifest of this kind as its model; raises pydantic's ValidationError.

        Wire names only (``baseURL``, not ``base_url``), as the CRD schema has them.
        """
        return self.spec_model.model_validate(spec, by_name=False)


RESOURCES: dict[str, ResourceKind] = {
    r.kind: r
    for r in [
        ResourceKind(
            kind="LLMProvider",
            plural="llmproviders",
            singular="llmprovider",
            short_names=["llmp"],
            description="An LLM backend (Ollama, OpenAI, Azure OpenAI, Anthropic, Hugging Face or any "
            "OpenAI-compatible endpoint) that LLMModels use.",
            spec_model=LLMProviderSpec,
            status_model=CommonStatus,
            columns=[
                PrinterColumn(
                    name="Type", type="string", json_path=".spec.type", description="Provider type."
                ),
                PrinterColumn(
                    name="Enabled",
                    type="boolean",
                    json_path=".spec.enabled",
                    description="Whether it is enabled.",
                ),
                READY_COLUMN,
                REASON_COLUMN,
                AGE_COLUMN,
            ],
        ),
        ResourceKind(
            kind="LLMModel",
            plural="llmmodels",
            singular="llmmodel",
            short_names=["llmm"],
            description="A model of an LLMProvider that the ai-ops agent can run on.",
            spec_model=LLMModelSpec,
            status_model=CommonStatus,
            columns=[
                PrinterColumn(
                    name="Provider",
                    type="string",
                    json_path=".spec.providerRef.name",
                    description="LLMProvider.",
                ),
                PrinterColumn(name="Model", type="string", json_path=".spec.model", description="Model id."),
                PrinterColumn(
                    name="Default",
                    type="boolean",
                    json_path=".spec.default",
                    description="Requested as default.",
                ),
                READY_COLUMN,
                REASON_COLUMN,
                AGE_COLUMN,
            ],
        ),
        ResourceKind(
            kind="LLMMiddleware",
            plural="llmmiddlewares",
            singular="llmmiddleware",
            short_names=["llmmw"],
            description="A step in an LLMModel's middleware chain "
            "(retry, fallback, PII, limits, logging, ...).",
            spec_model=LLMMiddlewareSpec,
            status_model=CommonStatus,
            columns=[
                PrinterColumn(
                    name="Model", type="string", json_path=".spec.modelRef.name", description="LLMModel."
                ),
                PrinterColumn(
                    name="Type", type="string", json_path=".spec.type", description="Middleware type."
                ),
                PrinterColumn(
                    name="Priority",
                    type="integer",
                    json_path=".spec.priority",
                    description="Lower runs first.",
                ),
                PrinterColumn(
                    name="Active", type="boolean", json_path=".spec.active", description="In the chain."
                ),
                READY_COLUMN,
                REASON_COLUMN,
                AGE_COLUMN,
            ],
        ),
        ResourceKind(
            kind="MCPServer",
            plural="mcpservers",
            singular="mcpserver",
            short_names=["mcps"],
            description="A Model Context Protocol server whose tools the ai-ops agent may use.",
            spec_model=MCPServerSpec,
            status_model=MCPServerStatus,
            columns=[
                PrinterColumn(
                    name="Transport", type="string", json_path=".spec.transport", description="MCP transport."
                ),
                PrinterColumn(
                    name="Health", type="string", json_path=".status.health", description="Probe health."
                ),
                PrinterColumn(
                    name="Tools",
                    type="integer",
                    json_path=".status.tools.count",
                    description="Tools offered.",
                ),
                READY_COLUMN,
                REASON_COLUMN,
                AGE_COLUMN,
                PrinterColumn(
                    name="URL", type="string", json_path=".spec.url", description="Endpoint.", priority=1
                ),
            ],
        ),
        ResourceKind(
            kind="Runbook",
            plural="runbooks",
            singular="runbook",
            short_names=["rb"],
            description="An operational procedure in Markdown that the ai-ops agent can search and cite.",
            spec_model=RunbookSpec,
            status_model=RunbookStatus,
            columns=[
                PrinterColumn(name="Title", type="string", json_path=".spec.title", description="Title."),
                PrinterColumn(
                    name="Match",
                    type="string",
                    json_path=".spec.match.alertNames",
                    description="Alert names it is attached to.",
                ),
                READY_COLUMN,
                REASON_COLUMN,
                AGE_COLUMN,
                PrinterColumn(
                    name="Sections",
                    type="integer",
                    json_path=".status.sections",
                    description="Markdown sections.",
                    priority=1,
                ),
            ],
        ),
    ]
}

RESOURCES_BY_PLURAL = {r.plural: r for r in RESOURCES.values()}

import ai_ops_api.actions  # noqa: E402  (registers ActionRequest; it imports this module)
import ai_ops_api.investigations  # noqa: E402, F401  (registers Investigation; it imports this module)
