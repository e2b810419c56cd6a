"""How an exception raised while running a turn becomes the typed ``ChatError`` a client sees.

Matched by exception class, not by name: a class named like a provider's elsewhere (``ReadTimeout`` of an
unrelated library) must not pass for a provider failure. Provider SDKs that are optional extras
(anthropic, ollama, huggingface_hub) are looked up among the modules already imported: an exception of a
library that was never imported cannot have been raised, and importing one just to test against it would
slow down every service that does not use it.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

import httpcore
import httpx
import openai
import redis
from langchain.agents.middleware import PIIDetectionError
from langchain.agents.middleware.model_call_limit import ModelCallLimitExceededError
from langchain.agents.middleware.tool_call_limit import ToolCallLimitExceededError
from langchain_core.exceptions import LangChainException
from langgraph.errors import GraphRecursionError

from ai_ops_api.agent_config import ModelEntry
from chat_service.errors import (
    ChatError,
    ContentBlocked,
    LimitExceeded,
    ModelUnavailable,
    NotReady,
    ProviderError,
    RequestTimeout,
    StepLimit,
    sanitize,
)
from chat_service.providers import ProviderUnavailable
from chat_service.secrets import SecretUnavailable

log = logging.getLogger(__name__)

ExceptionTypes = tuple[type[BaseException], ...]

# httpx raises a few errors outside its HTTPError tree; httpcore has no common base class at all.
_HTTPX_ERRORS: ExceptionTypes = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)
_HTTPCORE_ERRORS: ExceptionTypes = (
    httpcore.ConnectionNotAvailable,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
)

# (module, class) of provider libraries that need not be installed (httpx2: the HTTP library of openai 3).
_OPTIONAL_PROVIDER_ERRORS = (
    ("httpx2", "HTTPError"),
    ("httpx2", "InvalidURL"),
    ("httpx2", "CookieConflict"),
    ("httpx2", "StreamError"),
    ("anthropic", "AnthropicError"),
    ("ollama", "ResponseError"),
    ("ollama", "RequestError"),
    ("huggingface_hub.errors", "HfHubHTTPError"),
    ("huggingface_hub.errors", "InferenceTimeoutError"),
)
_OPTIONAL_TIMEOUTS = (
    ("httpx2", "TimeoutException"),
    ("anthropic", "APITimeoutError"),
    ("huggingface_hub.errors", "InferenceTimeoutError"),
    ("requests.exceptions", "Timeout"),
)


def _loaded(names: Sequence[tuple[str, str]]) -> ExceptionTypes:
    """The classes of ``names`` whose modules are imported (see the module docstring)."""
    found: list[type[BaseException]] = []
    for module_name, class_name in names:
        candidate = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(candidate, type) and issubclass(candidate, BaseException):
            found.append(candidate)
    return tuple(found)


def provider_errors() -> ExceptionTypes:
    """Errors of the model providers' SDKs and of the HTTP libraries under them."""
    return (openai.OpenAIError, *_HTTPX_ERRORS, *_HTTPCORE_ERRORS, *_loaded(_OPTIONAL_PROVIDER_ERRORS))


def provider_timeouts() -> ExceptionTypes:
    return (
        openai.APITimeoutError,
        httpx.TimeoutException,
        httpcore.TimeoutException,
        *_loaded(_OPTIONAL_TIMEOUTS),
    )


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _provider_detail(exc: BaseException) -> str:
    """The provider's own message: the ``error.message`` of an API error body when there is one."""
    body = getattr(exc, "body", None)
    detail = ""
    if isinstance(body, dict):
        detail = str(
            (body.get("error") or body).get("message", "")
            if isinstance(body.get("error", body), dict)
            else body
        )
    return detail or str(exc)


def map_exception(exc: BaseException, secret_values: Sequence[str] = ()) -> ChatError:
    """The ChatError a client sees for an exception raised while running a turn."""
    exc = _unwrap(exc)
    if isinstance(exc, ChatError):
        return exc
    providers = provider_errors()
    # Provider clients wrap their errors (langchain-openai re-raises openai's): judge by the whole chain,
    # preferring the OpenAI SDK's error (it carries the HTTP status and body) over the transport's.
    provider = next((e for e in _chain(exc) if isinstance(e, providers)), None)
    if provider is not None and not isinstance(exc, TimeoutError):
        exc = next((e for e in _chain(exc) if isinstance(e, openai.OpenAIError)), provider)
    if isinstance(exc, TimeoutError):
        return RequestTimeout("the request timed out")
    if isinstance(exc, ModelCallLimitExceededError | ToolCallLimitExceededError):
        return LimitExceeded(str(exc))
    if isinstance(exc, PIIDetectionError):
        return ContentBlocked(
            f"the message was blocked: it contains {getattr(exc, 'pii_type', 'personal data')}"
        )
    if isinstance(exc, GraphRecursionError):
        return StepLimit("the agent did not finish within its step limit (too many tool calls in one turn)")
    kind = type(exc).__name__
    if isinstance(exc, redis.RedisError):
        return NotReady(f"the conversation store (Redis) does not answer: {kind}")
    if isinstance(exc, ProviderUnavailable | SecretUnavailable):
        return ModelUnavailable(sanitize(str(exc), secret_values))
    if isinstance(exc, provider_timeouts()):
        return RequestTimeout("the model provider did not answer in time")
    if isinstance(exc, providers):
        status = getattr(exc, "status_code", None)
        prefix = f"the model provider answered HTTP {status}" if status else "the model provider failed"
        return ProviderError(f"{prefix}: {sanitize(_provider_detail(exc), secret_values)}")
    if isinstance(exc, LangChainException):
        return ProviderError(f"the model failed: {sanitize(str(exc), secret_values)}")
    # No exc_info: an exception message may carry a provider's echo of a key; frames are enough to debug.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected error in a turn: %s: %s\n%s", kind, sanitize(str(exc), secret_values), frames)
    return ChatError(f"internal error ({kind}); see the service log")


def describe_model(entry: ModelEntry) -> str:
    """``model 'main' (ollama at http://localhost:11434)``: which endpoint failed, for the error message."""
    where = f" at {entry.provider.base_url}" if entry.provider.base_url else ""
    return f"model {entry.name!r} ({entry.provider.type}{where})"


def is_outage(exc: BaseException) -> bool:
    """Whether a failed provider call says the provider is down (no connection, a timeout, HTTP 5xx),
    not that the request was wrong (4xx: a bad key, an unknown model, a rate limit) or the answer odd.
    A ChatError mapped inside the graph (ModelErrorBoundary) carries the verdict on the raw exception."""
    outage = getattr(exc, "provider_outage", None)
    if isinstance(outage, bool):
        return outage
    down = (
        openai.APIConnectionError,
        httpx.TransportError,
        TimeoutError,
        ConnectionError,
        *provider_timeouts(),
    )
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        status = getattr(current, "status_code", None)
        if isinstance(current, httpx.HTTPStatusError):
            status = current.response.status_code
        if isinstance(status, int):
            return status >= 500
        if isinstance(current, down):
            return True
        current = current.__cause__ or current.__context__
    return False
