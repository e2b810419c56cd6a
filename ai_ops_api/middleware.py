"""The ``config`` schema of each LLMMiddleware type.

Defined once, here in the contract: the chat service builds the middleware from it and the operator sets
the ``ConfigValid`` condition with it, so a config the operator accepts is one the chat service can build.
``check_chain`` does the same for the rules that span several middleware of one model.
Field names are camelCase on the wire like every other ai-ops field. Each type maps onto a LangChain v1
built-in agent middleware where one exists; the field names follow that middleware's parameters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ai_ops_api.agent_config import MiddlewareEntry
from ai_ops_api.specs import MiddlewareType

PositiveLimit = Annotated[int, Field(ge=1, le=100_000)]


class MiddlewareConfig(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def referenced_models(self) -> tuple[str, ...]:
        """Names of other LLMModels this middleware needs (for reference validation)."""
        return ()


class LoggingConfig(MiddlewareConfig):
    """One structured log line per model call and tool call."""

    include_content: bool = Field(default=False, description="Also log prompts, replies and tool arguments.")
    level: Literal["DEBUG", "INFO", "WARNING"] = "INFO"
    max_content_chars: int = Field(default=2000, ge=1, le=100_000)


class CacheConfig(MiddlewareConfig):
    """Exact-match response cache (Redis when configured, else in memory)."""

    ttl_seconds: int = Field(default=300, ge=1, le=7 * 86400)
    # conversation: a hit needs the same conversation history in the same thread;
    # global: identical histories share an answer across conversations (only for stateless prompts).
    scope: Literal["conversation", "global"] = "conversation"
    max_entries: int = Field(default=1000, ge=1, le=1_000_000, description="In-memory cache size.")


class _RetryConfig(MiddlewareConfig):
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_factor: float = Field(default=2.0, ge=0, le=10)
    initial_delay_seconds: float = Field(default=1.0, ge=0, le=60)
    max_delay_seconds: float = Field(default=60.0, ge=0, le=600)
    jitter: bool = True
    on_failure: Literal["continue", "error"] = "continue"


class ModelRetryConfig(_RetryConfig):
    """Retry failed model calls with exponential backoff (LangChain ModelRetryMiddleware)."""


class ToolRetryConfig(_RetryConfig):
    """Retry failed tool calls (LangChain ToolRetryMiddleware)."""

    tools: tuple[str, ...] | None = Field(default=None, description="Only these tools; unset retries all.")


class ModelFallbackConfig(MiddlewareConfig):
    """On a model error, try these other LLMModels in order (LangChain ModelFallbackMiddleware)."""

    models: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1, max_length=10)

    def referenced_models(self) -> tuple[str, ...]:
        return self.models


class ModelCallLimitConfig(MiddlewareConfig):
    """Stop after a number of model calls (LangChain ModelCallLimitMiddleware)."""

    thread_limit: PositiveLimit | None = None
    run_limit: PositiveLimit | None = None
    exit_behavior: Literal["end", "error"] = "end"

    @model_validator(mode="after")
    def _a_limit(self) -> ModelCallLimitConfig:
        if self.thread_limit is None and self.run_limit is None:
            raise ValueError("set threadLimit, runLimit or both")
        return self


class ToolCallLimitConfig(MiddlewareConfig):
    """Stop after a number of tool calls (LangChain ToolCallLimitMiddleware)."""

    tool_name: str | None = Field(default=None, description="Only count this tool; unset counts all.")
    thread_limit: PositiveLimit | None = None
    run_limit: PositiveLimit | None = None
    exit_behavior: Literal["continue", "error", "end"] = "continue"

    @model_validator(mode="after")
    def _a_limit(self) -> ToolCallLimitConfig:
        if self.thread_limit is None and self.run_limit is None:
            raise ValueError("set threadLimit, runLimit or both")
        return self


BUILTIN_PII_TYPES = ("email", "credit_card", "ip", "mac_address", "url")


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class PIIConfig(MiddlewareConfig):
    """Detect personal data and block, redact, mask or hash it (LangChain PIIMiddleware, one per type)."""

    pii_types: tuple[str, ...] = Field(
        min_length=1, max_length=20, description="Built-in or custom type names."
    )
    strategy: Literal["block", "redact", "mask", "hash"] = "redact"
    # Custom types: type name -> regular expression.
    detectors: dict[str, str] = Field(default_factory=dict)
    apply_to_input: bool = True
    apply_to_output: bool = False
    apply_to_tool_results: bool = False

    @field_validator("detectors")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _check_regex(pattern)
        return value

    @model_validator(mode="after")
    def _known_types(self) -> PIIConfig:
        unknown = [t for t in self.pii_types if t not in BUILTIN_PII_TYPES and t not in self.detectors]
        if unknown:
            raise ValueError(
                f"unknown PII type(s) {', '.join(unknown)}: use one of {', '.join(BUILTIN_PII_TYPES)} "
                "or give a regular expression for it in detectors"
            )
        return self


class PromptInjectionConfig(MiddlewareConfig):
    """Look for prompt-injection phrases in user input (and optionally tool results)."""

    action: Literal["block", "warn", "sanitize"] = "block"
    patterns: tuple[str, ...] = Field(default=(), description="Extra regular expressions (case-insensitive).")
    use_default_patterns: bool = True
    check_tool_results: bool = False
    block_message: str = Field(
        default="The request was blocked because it looks like a prompt-injection attempt.", max_length=2000
    )

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            _check_regex(pattern)
        return value

    @model_validator(mode="after")
    def _some_pattern(self) -> PromptInjectionConfig:
        if not self.use_default_patterns and not self.patterns:
            raise ValueError("with useDefaultPatterns false, give at least one pattern")
        return self


class SummarizationConfig(MiddlewareConfig):
    """Summarize old messages when the history grows (LangChain SummarizationMiddleware)."""

    model: str | None = Field(
        default=None, description="LLMModel that summarizes; unset uses the model itself."
    )
    trigger_tokens: int | None = Field(default=4000, ge=100, le=10_000_000)
    trigger_messages: int | None = Field(default=None, ge=2, le=100_000)
    keep_messages: int = Field(default=20, ge=1, le=10_000)

    def referenced_models(self) -> tuple[str, ...]:
        return (self.model,) if self.model else ()

    @model_validator(mode="after")
    def _a_trigger(self) -> SummarizationConfig:
        if self.trigger_tokens is None and self.trigger_messages is None:
            raise ValueError("set triggerTokens, triggerMessages or both")
        return self


class ContextEditingConfig(MiddlewareConfig):
    """Clear old tool results when the context grows (LangChain ContextEditingMiddleware + ClearToolUsesEdit)."""

    trigger_tokens: int = Field(default=100_000, ge=100, le=10_000_000)
    keep: int = Field(default=3, ge=0, le=1000)
    clear_at_least: int = Field(default=0, ge=0, le=10_000_000)
    clear_tool_inputs: bool = False
    exclude_tools: tuple[str, ...] = ()
    placeholder: str = Field(default="[cleared]", max_length=200)


class TodoListConfig(MiddlewareConfig):
    """A ``write_todos`` tool for a step-by-step plan the agent keeps up to date (LangChain TodoListMiddleware).

    The chat streams each version of the plan to the client (SSE event ``plan``)."""

    system_prompt: str | None = Field(
        default=None,
        max_length=20_000,
        description="Replaces LangChain's guidance on when to plan; unset keeps it.",
    )
    tool_description: str | None = Field(
        default=None, max_length=20_000, description="Replaces the write_todos tool's description."
    )


class ToolSelectorConfig(MiddlewareConfig):
    """A small model picks the tools relevant to the question before each model call, so an agent with many
    MCP tools sends only a few tool schemas (LangChain LLMToolSelectorMiddleware)."""

    model: str | None = Field(
        default=None,
        description="LLMModel that selects the tools (a small one); unset uses the model itself.",
    )
    max_tools: int | None = Field(
        default=None, ge=1, le=1000, description="At most this many; unset: no cap."
    )
    always_include: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        default=(), max_length=100, description="Tools always offered (not counted in maxTools)."
    )
    # "all" by default: a selector that answers nonsense should cost tokens, not the turn.
    on_parsing_failure: Literal["all", "none", "error"] = "all"

    def referenced_models(self) -> tuple[str, ...]:
        return (self.model,) if self.model else ()


class HumanInTheLoopConfig(MiddlewareConfig):
    """More tools that need a person's approval: a call of one of them records an ActionRequest instead of
    running (as every tool that is not read-only always does); the operator executes it once approved."""

    tools: tuple[Annotated[str, Field(min_length=1, max_length=253)], ...] = Field(
        min_length=1,
        max_length=200,
        description="Tool names or `server/tool` patterns (shell-style wildcards: `netops/*`).",
    )


class CustomConfig(MiddlewareConfig):
    """A middleware from an installed package, registered in the entry-point group ``ai_ops.middleware``."""

    entry_point: str = Field(min_length=1, max_length=200)
    options: dict[str, Any] = Field(default_factory=dict)


# The config schema of each type; a test checks every MiddlewareType has one (and a builder in the chat).
MIDDLEWARE_CONFIG_MODELS: dict[MiddlewareType, type[MiddlewareConfig]] = {
    MiddlewareType.LOGGING: LoggingConfig,
    MiddlewareType.CACHE: CacheConfig,
    MiddlewareType.MODEL_RETRY: ModelRetryConfig,
    MiddlewareType.TOOL_RETRY: ToolRetryConfig,
    MiddlewareType.MODEL_FALLBACK: ModelFallbackConfig,
    MiddlewareType.MODEL_CALL_LIMIT: ModelCallLimitConfig,
    MiddlewareType.TOOL_CALL_LIMIT: ToolCallLimitConfig,
    MiddlewareType.PII: PIIConfig,
    MiddlewareType.PROMPT_INJECTION: PromptInjectionConfig,
    MiddlewareType.SUMMARIZATION: SummarizationConfig,
    MiddlewareType.CONTEXT_EDITING: ContextEditingConfig,
    MiddlewareType.CUSTOM: CustomConfig,
    MiddlewareType.TODO_LIST: TodoListConfig,
    MiddlewareType.TOOL_SELECTOR: ToolSelectorConfig,
    MiddlewareType.HUMAN_IN_THE_LOOP: HumanInTheLoopConfig,
}

CUSTOM_MIDDLEWARE_GROUP = "ai_ops.middleware"


class MiddlewareConfigError(ValueError):
    """A middleware config that does not fit its type's schema; ``problems`` holds (field path, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))


def parse_middleware_config(middleware_type: str, config: dict[str, Any] | None) -> MiddlewareConfig:
    """Validate one middleware's ``config``; field paths in errors start at ``config``."""
    try:
        model = MIDDLEWARE_CONFIG_MODELS[MiddlewareType(middleware_type)]
    except ValueError:
        raise MiddlewareConfigError([("type", f"unknown middleware type {middleware_type!r}")]) from None
    try:
        return model.model_validate(config or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(["config", *(str(p) for p in err["loc"])])
            message = err["msg"].removeprefix("Value error, ")
            problems.append((path, message))
        raise MiddlewareConfigError(problems) from None


# --- rules of a whole chain ---------------------------------------------------------------------


class ChainRule(enum.StrEnum):
    """A rule that spans the middleware of one model; the value is the condition reason when broken."""

    # A model_fallback lists the model itself: on an error it would call the failing model again.
    SELF_FALLBACK = "SelfFallback"
    # Two call limits on one agent-state counter: each would count every call (LangChain keeps one count
    # per counter), so the stricter one silently wins and the other is dead configuration.
    DUPLICATE_COUNTER = "DuplicateCounter"
    # Two todo_list middleware on one model: both add a ``write_todos`` tool, and an agent's tool names
    # must be unique (and both would write the one ``todos`` list of the conversation).
    DUPLICATE_TOOL = "DuplicateTool"


@dataclass(frozen=True)
class ChainProblem:
    """One middleware of a chain that breaks a chain rule: which, which rule, where, and why."""

    entry: str  # the LLMMiddleware's name
    rule: ChainRule
    path: str  # the offending field of the LLMMiddleware, e.g. spec.config.models[0]
    message: str


def chain_order(entry: MiddlewareEntry) -> tuple[int, str]:
    """The position of a middleware in its model's chain: priority, then name."""
    return (entry.priority, entry.name)


def _state_counter(cfg: MiddlewareConfig) -> tuple[str, str] | None:
    """The agent-state counter a call-limit middleware uses, and the field that selects it."""
    if isinstance(cfg, ModelCallLimitConfig):
        return "model calls", "spec.type"
    if isinstance(cfg, ToolCallLimitConfig):
        return (f"calls of tool {cfg.tool_name!r}" if cfg.tool_name else "tool calls"), "spec.config.toolName"
    return None


def check_chain(model_name: str, entries: Iterable[MiddlewareEntry]) -> list[ChainProblem]:
    """The problems of the chain of ``model_name`` made of ``entries`` (any order; taken in chain order).

    Of two entries that conflict, the later one in chain order is at fault, so the earlier one keeps
    working. Entries whose config does not parse are left out: their own config check reports them.
    The operator (conditions, ``ai-ops validate``) and the chat service (building the chain) both call
    this, so a chain the operator marks Ready is one the chat service builds.
    """
    problems: list[ChainProblem] = []
    counters: dict[str, str] = {}  # counter -> the entry that owns it
    planner: str | None = None  # the todo_list entry that owns the write_todos tool
    for entry in sorted(entries, key=chain_order):
        try:
            cfg = parse_middleware_config(entry.type, entry.config)
        except MiddlewareConfigError:
            continue
        if isinstance(cfg, ModelFallbackConfig) and model_name in cfg.models:
            problems.append(
                ChainProblem(
                    entry.name,
                    ChainRule.SELF_FALLBACK,
                    f"spec.config.models[{cfg.models.index(model_name)}]",
                    f"the fallback models include the model itself ({model_name!r})",
                )
            )
        if isinstance(cfg, TodoListConfig):
            if planner is None:
                planner = entry.name
            else:
                problems.append(
                    ChainProblem(
                        entry.name,
                        ChainRule.DUPLICATE_TOOL,
                        "spec.type",
                        f"{planner!r} already gives this model the write_todos tool; "
                        "a model has one plan, and tool names must be unique",
                    )
                )
        counter = _state_counter(cfg)
        if counter is None:
            continue
        what, path = counter
        if what in counters:
            problems.append(
                ChainProblem(
                    entry.name,
                    ChainRule.DUPLICATE_COUNTER,
                    path,
                    f"{counters[what]!r} already limits {what} of this model; "
                    "two limits on one counter would each count every call",
                )
            )
        else:
            counters[what] = entry.name
    return problems
