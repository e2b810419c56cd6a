"""Typed errors of the chat service and their JSON form ``{"error": {"code", "message"}}``.

The engine raises these; the app maps each to its HTTP status in one place, so no route ever answers
with a bare 500 and a traceback. Messages are for people and never carry a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class ChatError(Exception):
    """Base of the errors a client sees: an HTTP status, a stable code and a plain message."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class InvalidRequest(ChatError):
    status = 422
    code = "invalid_request"


class Unauthorized(ChatError):
    status = 401
    code = "unauthorized"


class ModelNotFound(ChatError):
    status = 404
    code = "model_not_found"


class ThreadNotFound(ChatError):
    status = 404
    code = "thread_not_found"


class ContentBlocked(ChatError):
    """A middleware refused the input (PII with the block strategy)."""

    status = 422
    code = "content_blocked"


class StepLimit(ChatError):
    """The agent did not finish within the recursion limit (tool-call loop)."""

    status = 502
    code = "step_limit"


class LimitExceeded(ChatError):
    """A call-limit middleware configured to raise stopped the turn."""

    status = 429
    code = "limit_exceeded"


class RateLimited(ChatError):
    """The model provider answered 429; ``retry_after`` is its ``Retry-After`` (checked) when it sent one."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.retry_after is not None:
            # Also in the body: a stream's error event cannot carry the header.
            body["error"]["retry_after"] = self.retry_after
        return body


class PayloadTooLarge(ChatError):
    """The request body is over ``AI_OPS_MAX_BODY_BYTES``."""

    status = 413
    code = "payload_too_large"


class ProviderError(ChatError):
    """The LLM provider failed (its message, sanitized)."""

    status = 502
    code = "provider_error"


class NoModelConfigured(ChatError):
    status = 503
    code = "no_model"


class ModelUnavailable(ChatError):
    """The model exists but cannot be built now (missing key, missing extra, critical middleware)."""

    status = 503
    code = "model_unavailable"


class NotReady(ChatError):
    status = 503
    code = "not_ready"


class RequestTimeout(ChatError):
    status = 504
    code = "timeout"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


NO_MODEL_MESSAGE = (
    "No LLM model is configured. Create an LLMProvider and an LLMModel in this namespace "
    "(kubectl apply -f ...), or render a local config with `ai-ops render` and restart with --config."
)

# Shapes of credentials that providers sometimes echo back in error messages.
_CREDENTIAL_PATTERNS = (
    re.compile(r"\b(sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-*]{6,}"),
    re.compile(
        r"(?i)(bearer|api[-_ ]?key|authorization|token|password|secret)(\s*[:=]\s*|\s+)((?:bearer|basic)\s+)?"
        r"['\"]?[^\s'\",}]{4,}"
    ),
)
MAX_PROVIDER_MESSAGE = 500


def sanitize(message: str, secret_values: Iterable[str] = ()) -> str:
    """A provider's error message with known secret values and credential-shaped strings removed."""
    text = message
    for value in secret_values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _CREDENTIAL_PATTERNS[0].sub("***", text)
    text = _CREDENTIAL_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    if len(text) > MAX_PROVIDER_MESSAGE:
        text = text[:MAX_PROVIDER_MESSAGE] + "..."
    return text
