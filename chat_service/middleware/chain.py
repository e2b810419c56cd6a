"""Build a model's middleware chain from its LLMMiddleware entries.

Each type maps onto a LangChain v1 built-in agent middleware where one exists (retry, fallback, call limits,
PII, summarization, context editing, task plans, tool selection); ``logging``, ``cache`` and ``prompt_injection`` are ours
(``mw_*.py``), and ``custom`` comes from an installed package through the entry-point group
``ai_ops.middleware``.

The chain is in priority-then-name order; for the wrapping hooks the first is the outermost, so a lower
priority sees a call first (``logging`` at priority 1 times the whole call, retries included). A middleware
whose config is invalid, that breaks a rule of the whole chain (``check_chain``, which the operator applies
too) or whose setup raises makes the model unavailable when it is ``critical``, and is skipped with a
warning otherwise.

Every middleware instance is renamed after its LLMMiddleware (``create_agent`` needs unique names, and
several PII types or two middleware of one type would otherwise collide).
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware import (
    AgentMiddleware,
    ClearToolUsesEdit,
    ContextEditingMiddleware,
    LLMToolSelectorMiddleware,
    ModelCallLimitMiddleware,
    ModelFallbackMiddleware,
    ModelRetryMiddleware,
    PIIMiddleware,
    SummarizationMiddleware,
    TodoListMiddleware,
    ToolCallLimitMiddleware,
    ToolRetryMiddleware,
)
from langchain_core.exceptions import ModelError
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages.utils import count_tokens_approximately

from ai_ops_api.agent_config import AgentConfig, MiddlewareEntry, ModelEntry
from ai_ops_api.middleware import (
    CUSTOM_MIDDLEWARE_GROUP,
    CacheConfig,
    ContextEditingConfig,
    CustomConfig,
    HumanInTheLoopConfig,
    LoggingConfig,
    MiddlewareConfigError,
    ModelCallLimitConfig,
    ModelFallbackConfig,
    ModelRetryConfig,
    PIIConfig,
    PromptInjectionConfig,
    SummarizationConfig,
    TodoListConfig,
    ToolCallLimitConfig,
    ToolRetryConfig,
    ToolSelectorConfig,
    chain_order,
    check_chain,
    parse_middleware_config,
)
from ai_ops_api.specs import MiddlewareType
from chat_service.actions.approval import ApprovalRequired
from chat_service.actions.proposals import Proposer
from chat_service.middleware.cache import ResponseCacheMiddleware
from chat_service.middleware.call_logging import LoggingMiddleware
from chat_service.middleware.injection import PromptInjectionMiddleware
from chat_service.secrets import SecretResolver

if TYPE_CHECKING:
    import redis.asyncio

# Any middleware, whatever its state schema, context and response types.
AnyMiddleware = AgentMiddleware[Any, Any, Any]

MIDDLEWARE_ENTRY_POINT_GROUP = CUSTOM_MIDDLEWARE_GROUP  # "ai_ops.middleware"


@dataclass
class MiddlewareContext:
    config: AgentConfig
    secrets: SecretResolver
    redis: redis.asyncio.Redis | None  # for the cache middleware; None -> in memory
    build_model: Callable[[str], BaseChatModel]  # another LLMModel of the config, by name
    logger: logging.Logger
    # Records ActionRequests (the human_in_the_loop middleware); None when actions are not enabled.
    proposer: Callable[[], Proposer | None] = lambda: None


@dataclass
class ChainBuild:
    middleware: list[AnyMiddleware]  # priority-then-name order, ready for create_agent(middleware=...)
    warnings: list[str] = field(default_factory=list)  # non-critical middleware skipped, with why
    unavailable: str | None = None  # a critical middleware failed: the model must not be used
    stateful: bool = False  # some middleware keeps per-instance state: build a chain per conversation


class MiddlewareSetupError(Exception):
    """A middleware cannot be built; the message says why (never a secret value)."""


@dataclass
class _Built:
    middleware: list[AnyMiddleware]
    stateful: bool = False


# --- naming ------------------------------------------------------------------------------------------

_renamed_classes: dict[type, type] = {}


def _named(middleware: AnyMiddleware, name: str) -> AnyMiddleware:
    """Give ``middleware`` the name ``name`` (``name`` is a class property in LangChain, hence a subclass)."""
    base = type(middleware)
    if base in _renamed_classes.values():  # renamed before: only the name changes
        middleware.__dict__["_ai_ops_name"] = name
        return middleware
    renamed = _renamed_classes.get(base)
    if renamed is None:
        renamed = type(
            base.__name__,
            (base,),
            {"name": property(lambda self: self.__dict__["_ai_ops_name"]), "__module__": base.__module__},
        )
        _renamed_classes[base] = renamed
    middleware.__dict__["_ai_ops_name"] = name
    middleware.__class__ = renamed
    return middleware


# --- retry predicate ---------------------------------------------------------------------------------

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def is_transient_model_error(exc: Exception) -> bool:
    """Retry server errors, rate limits, timeouts and connection failures; not 400/401/403/404 (a retry
    cannot fix a bad key or an unknown model, and would only delay the error)."""
    if isinstance(exc, ModelError):
        return exc.is_retryable
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in _RETRYABLE_STATUS or status >= 500
    return True


def _retry_failure_message(exc: Exception) -> str:
    # Instead of LangChain's default, which quotes the provider's whole error body to the user.
    status = getattr(exc, "status_code", None)
    detail = f"{type(exc).__name__}, HTTP {status}" if isinstance(status, int) else type(exc).__name__
    return f"The model could not answer ({detail}). Please try again later."


# --- builders, one per type --------------------------------------------------------------------------

Builder = Callable[[MiddlewareEntry, Any, ModelEntry, MiddlewareContext], _Built]


def _logging(entry: MiddlewareEntry, cfg: LoggingConfig, model: ModelEntry, ctx: MiddlewareContext) -> _Built:
    return _Built([LoggingMiddleware(cfg, model.name, ctx.logger)])


def _cache(entry: MiddlewareEntry, cfg: CacheConfig, model: ModelEntry, ctx: MiddlewareContext) -> _Built:
    cache = ResponseCacheMiddleware(
        cfg, model_name=model.name, namespace=ctx.config.namespace, redis=ctx.redis, logger=ctx.logger
    )
    return _Built([cache])


def _retry_settings(cfg: ModelRetryConfig | ToolRetryConfig) -> dict[str, Any]:
    return {
        "max_retries": cfg.max_retries,
        "backoff_factor": cfg.backoff_factor,
        "initial_delay": cfg.initial_delay_seconds,
        "max_delay": cfg.max_delay_seconds,
        "jitter": cfg.jitter,
    }


def _model_retry(
    entry: MiddlewareEntry, cfg: ModelRetryConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    on_failure: Any = "error" if cfg.on_failure == "error" else _retry_failure_message
    # Inside a fallback (a model_fallback earlier in the chain wraps this retry), giving up must raise, or
    # the fallback would take the failure notice for an answer and never try its models.
    if any(
        e.type == MiddlewareType.MODEL_FALLBACK and chain_order(e) < chain_order(entry)
        for e in model.middleware
    ):
        on_failure = "error"
    return _Built(
        [
            ModelRetryMiddleware(
                retry_on=is_transient_model_error, on_failure=on_failure, **_retry_settings(cfg)
            )
        ]
    )


def _tool_retry(
    entry: MiddlewareEntry, cfg: ToolRetryConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    tools: list[Any] | None = list(cfg.tools) if cfg.tools else None
    return _Built([ToolRetryMiddleware(tools=tools, on_failure=cfg.on_failure, **_retry_settings(cfg))])


def _referenced_model(name: str, model: ModelEntry, ctx: MiddlewareContext, role: str) -> BaseChatModel:
    if ctx.config.model_by_name(name) is None:
        known = ", ".join(m.name for m in ctx.config.models) or "none"
        raise MiddlewareSetupError(
            f"{role} model {name!r} is not an LLMModel of this config (known: {known})"
        )
    try:
        return ctx.build_model(name)
    except Exception as exc:
        raise MiddlewareSetupError(f"{role} model {name!r} cannot be built: {exc}") from None


def _model_fallback(
    entry: MiddlewareEntry, cfg: ModelFallbackConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    first, *others = (_referenced_model(name, model, ctx, "fallback") for name in cfg.models)
    return _Built([ModelFallbackMiddleware(first, *others)])


def _model_call_limit(
    entry: MiddlewareEntry, cfg: ModelCallLimitConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    limit = ModelCallLimitMiddleware(
        thread_limit=cfg.thread_limit, run_limit=cfg.run_limit, exit_behavior=cfg.exit_behavior
    )
    return _Built([limit])


def _tool_call_limit(
    entry: MiddlewareEntry, cfg: ToolCallLimitConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    limit = ToolCallLimitMiddleware(
        tool_name=cfg.tool_name,
        thread_limit=cfg.thread_limit,
        run_limit=cfg.run_limit,
        exit_behavior=cfg.exit_behavior,
    )
    return _Built([limit])


def _pii(entry: MiddlewareEntry, cfg: PIIConfig, model: ModelEntry, ctx: MiddlewareContext) -> _Built:
    # LangChain's PIIMiddleware handles one type; one instance per type, each named "<entry>[<type>]".
    built: list[AnyMiddleware] = []
    for pii_type in cfg.pii_types:
        middleware = PIIMiddleware(
            pii_type,
            strategy=cfg.strategy,
            detector=cfg.detectors.get(pii_type),
            apply_to_input=cfg.apply_to_input,
            apply_to_output=cfg.apply_to_output,
            apply_to_tool_results=cfg.apply_to_tool_results,
        )
        built.append(_named(middleware, f"{entry.name}[{pii_type}]"))
    return _Built(built)


def _prompt_injection(
    entry: MiddlewareEntry, cfg: PromptInjectionConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    return _Built([PromptInjectionMiddleware(cfg, model_name=model.name, logger=ctx.logger)])


def _summarization(
    entry: MiddlewareEntry, cfg: SummarizationConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    summarizer = _referenced_model(cfg.model or model.name, model, ctx, "summarization")
    triggers: list[Any] = []
    if cfg.trigger_tokens is not None:
        triggers.append(("tokens", cfg.trigger_tokens))
    if cfg.trigger_messages is not None:
        triggers.append(("messages", cfg.trigger_messages))
    trigger = triggers[0] if len(triggers) == 1 else triggers  # several thresholds: any of them
    # Tokens estimated from characters, never counted by the model: ChatOpenAI counts with tiktoken,
    # whose tokenizer is downloaded on first use.
    return _Built(
        [
            SummarizationMiddleware(
                summarizer,
                trigger=trigger,
                keep=("messages", cfg.keep_messages),
                token_counter=count_tokens_approximately,
            )
        ]
    )


def _context_editing(
    entry: MiddlewareEntry, cfg: ContextEditingConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    edit = ClearToolUsesEdit(
        trigger=cfg.trigger_tokens,
        keep=cfg.keep,
        clear_at_least=cfg.clear_at_least,
        clear_tool_inputs=cfg.clear_tool_inputs,
        exclude_tools=cfg.exclude_tools,
        placeholder=cfg.placeholder,
    )
    # Not "model": ChatOpenAI counts with tiktoken, whose tokenizer is downloaded on first use.
    return _Built([ContextEditingMiddleware(edits=[edit], token_count_method="approximate")])


def _todo_list(
    entry: MiddlewareEntry, cfg: TodoListConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    prompts: dict[str, str] = {}
    if cfg.system_prompt is not None:
        prompts["system_prompt"] = cfg.system_prompt
    if cfg.tool_description is not None:
        prompts["tool_description"] = cfg.tool_description
    return _Built([TodoListMiddleware(**prompts)])


class ToolSelector(LLMToolSelectorMiddleware[Any, Any]):
    """LangChain's selector, except that ``alwaysInclude`` names a tool the agent does not have now are
    left out instead of failing every model call: MCP servers come and go, and a tool like
    search_runbooks is only there while the namespace has runbooks."""

    def _present(self, request: Any) -> ToolSelector:
        names = {getattr(t, "name", None) for t in request.tools or ()}
        if all(name in names for name in self.always_include):
            return self
        narrowed = copy.copy(self)  # per call: the instance is shared by every conversation
        narrowed.always_include = [name for name in self.always_include if name in names]
        return narrowed

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return LLMToolSelectorMiddleware.wrap_model_call(self._present(request), request, handler)

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        return await LLMToolSelectorMiddleware.awrap_model_call(self._present(request), request, handler)


def _tool_selector(
    entry: MiddlewareEntry, cfg: ToolSelectorConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    selector = _referenced_model(cfg.model or model.name, model, ctx, "tool selector")
    return _Built(
        [
            ToolSelector(
                model=selector,
                max_tools=cfg.max_tools,
                always_include=list(cfg.always_include),
                on_parsing_failure=cfg.on_parsing_failure,
            )
        ]
    )


def _human_in_the_loop(
    entry: MiddlewareEntry, cfg: HumanInTheLoopConfig, model: ModelEntry, ctx: MiddlewareContext
) -> _Built:
    return _Built([ApprovalRequired(cfg.tools, ctx.proposer)])


def _custom(entry: MiddlewareEntry, cfg: CustomConfig, model: ModelEntry, ctx: MiddlewareContext) -> _Built:
    matches = importlib.metadata.entry_points(group=MIDDLEWARE_ENTRY_POINT_GROUP, name=cfg.entry_point)
    if not matches:
        raise MiddlewareSetupError(
            f"no entry point {cfg.entry_point!r} in group {MIDDLEWARE_ENTRY_POINT_GROUP!r}: "
            "is the package that provides it installed in the chat service image?"
        )
    entry_point = next(iter(matches))
    try:
        factory = entry_point.load()
    except Exception as exc:
        raise MiddlewareSetupError(
            f"entry point {cfg.entry_point!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    try:
        middleware = factory(dict(cfg.options), ctx)
    except Exception as exc:
        raise MiddlewareSetupError(
            f"custom middleware {cfg.entry_point!r} failed to set up: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(middleware, AgentMiddleware):
        raise MiddlewareSetupError(
            f"custom middleware {cfg.entry_point!r} returned {type(middleware).__name__}, not an AgentMiddleware"
        )
    return _Built([middleware], stateful=bool(getattr(factory, "stateful", False)))


# One builder per MiddlewareType (a test checks none is missing).
BUILDERS: dict[MiddlewareType, Builder] = {
    MiddlewareType.LOGGING: _logging,
    MiddlewareType.CACHE: _cache,
    MiddlewareType.MODEL_RETRY: _model_retry,
    MiddlewareType.TOOL_RETRY: _tool_retry,
    MiddlewareType.MODEL_FALLBACK: _model_fallback,
    MiddlewareType.MODEL_CALL_LIMIT: _model_call_limit,
    MiddlewareType.TOOL_CALL_LIMIT: _tool_call_limit,
    MiddlewareType.PII: _pii,
    MiddlewareType.PROMPT_INJECTION: _prompt_injection,
    MiddlewareType.SUMMARIZATION: _summarization,
    MiddlewareType.CONTEXT_EDITING: _context_editing,
    MiddlewareType.CUSTOM: _custom,
    MiddlewareType.TODO_LIST: _todo_list,
    MiddlewareType.TOOL_SELECTOR: _tool_selector,
    MiddlewareType.HUMAN_IN_THE_LOOP: _human_in_the_loop,
}


def build_middleware_chain(model: ModelEntry, ctx: MiddlewareContext) -> ChainBuild:
    """The middleware of ``model`` ready for ``create_agent``, with warnings and availability."""
    chain = ChainBuild(middleware=[])
    # The rules across entries, shared with the operator (which leaves such entries out of the config).
    broken_rules = {problem.entry: problem for problem in check_chain(model.name, model.middleware)}
    for entry in sorted(model.middleware, key=chain_order):
        try:
            cfg = parse_middleware_config(entry.type, entry.config)
            if entry.name in broken_rules:
                raise MiddlewareSetupError(broken_rules[entry.name].message)
            built = BUILDERS[entry.type](entry, cfg, model, ctx)
        except (MiddlewareConfigError, MiddlewareSetupError) as exc:
            reason = str(exc)
        except Exception as exc:  # a setup bug must not take the whole service down
            reason = f"{type(exc).__name__}: {exc}"
        else:
            for index, middleware in enumerate(built.middleware):
                if entry.type != MiddlewareType.PII:  # PII instances are already named per type
                    _named(middleware, entry.name if len(built.middleware) == 1 else f"{entry.name}[{index}]")
                chain.middleware.append(middleware)
            chain.stateful = chain.stateful or built.stateful
            continue
        if entry.critical:
            problem = (
                f"critical middleware {entry.name!r} ({entry.type}) of model {model.name!r} "
                f"cannot be set up: {reason}"
            )
            chain.unavailable = chain.unavailable or problem  # the first one is reported
            ctx.logger.error("model %s unavailable: %s", model.name, problem)
        else:
            warning = f"middleware {entry.name!r} ({entry.type}) of model {model.name!r} skipped: {reason}"
            chain.warnings.append(warning)
            ctx.logger.warning("%s", warning)
    return chain
