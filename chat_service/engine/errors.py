"""How an exception raised while running a turn becomes the typed ``ChatError`` a client sees.

Matched by exception class, not by name: a class named like a provider's elsewhere (``ReadTimeout`` of an
unrelated library) must not pass for a provider failure. Provider SDKs that are optional extras
(anthropic, ollama, huggingface_hub) are looked up among the modules already imported: an exception of a
library that was never imported cannot have been raised, and importing one just to test against it would
slow down every service that does not use it.
"""

from __future__ import annotations

import email.utils
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

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
    InvalidRequest,
    LimitExceeded,
    ModelUnavailable,
    NotReady,
    ProviderError,
    RateLimited,
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


# Packages whose code runs while a model is called. A plain ValueError (JSONDecodeError and pydantic's
# ValidationError are ones), TypeError, KeyError... raised there is a provider answer that cannot be read:
# invalid JSON, a wrong shape, an empty 200. Raised in our own code, the same types are our bug.
_MODEL_CALL_PACKAGES = (
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "langchain_openai",
    "langchain_core.language_models",
    "langchain_core.output_parsers",
    "anthropic",
    "langchain_anthropic",
    "ollama",
    "langchain_ollama",
    "huggingface_hub",
    "langchain_huggingface",
)
_ANSWER_READING_ERRORS: ExceptionTypes = (ValueError, TypeError, KeyError, IndexError, AttributeError)
_OURS = "chat_service"
_RETRY_SECONDS = re.compile(r"[0-9]{1,9}")


def _in_package(module: str, packages: Sequence[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in packages)


def _raised_in_model_call(tb: TracebackType | None) -> bool:
    """True when the innermost frame of ours or of a model client is a model client's (see above)."""
    verdict = False
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if _in_package(module, _MODEL_CALL_PACKAGES):
            verdict = True
        elif _in_package(module, (_OURS,)):
            verdict = False
        tb = tb.tb_next
    return verdict


def _unreadable_answer(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that a model client raised reading a malformed answer, if any."""
    for error in _chain(exc):
        if isinstance(error, _ANSWER_READING_ERRORS) and _raised_in_model_call(error.__traceback__):
            return error
    return None


def retry_after(exc: BaseException) -> str | None:
    """The provider's ``Retry-After`` when it is well-formed (seconds, or an HTTP date), else None.

    It goes back to our client as a header, so anything else an untrusted provider sends is dropped.
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not isinstance(value, str):
        return None
    value = value.strip()
    if _RETRY_SECONDS.fullmatch(value):
        return value
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return email.utils.format_datetime(when, usegmt=True) if when.tzinfo is not None else None


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
    if any(isinstance(error, UnicodeEncodeError) for error in _chain(exc)):
        # Text that cannot go out as UTF-8: a lone surrogate that came in as a JSON \u escape.
        return InvalidRequest("the conversation contains text that is not valid Unicode (a lone surrogate)")
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
        if status == 429:
            return RateLimited(
                f"the model provider rate-limits: {sanitize(_provider_detail(exc), secret_values)}",
                retry_after(exc),
            )
        prefix = f"the model provider answered HTTP {status}" if status else "the model provider failed"
        return ProviderError(f"{prefix}: {sanitize(_provider_detail(exc), secret_values)}")
    if isinstance(exc, LangChainException):
        return ProviderError(f"the model failed: {sanitize(str(exc), secret_values)}")
    unreadable = _unreadable_answer(exc)
    if unreadable is not None:
        detail = sanitize(f"{type(unreadable).__name__}: {unreadable}", secret_values)
        log.warning("the model provider sent an answer that cannot be read: %s", detail)
        return ProviderError(f"the model provider sent an answer that cannot be read ({detail})")
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
