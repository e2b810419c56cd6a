"""Typed errors of the chat service and their JSON form ``{"error": {"code", "message"}}``.

The engine raises these; the app maps each to its HTTP status in one place, so no route ever answers
with a bare 500 and a traceback. Messages are for people and never carry a secret value.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from typing import Any


class ChatError(Exception):
    """Base of the errors a client sees: an HTTP status, a stable code and a plain message."""

    status = 500
    code = "internal_error"
    # Set when the error stands for a failed provider call: whether that call said "provider down".
    provider_outage: bool | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class InvalidRequest(ChatError):
    status = 422
    code = "invalid_request"


class UnsupportedParameter(ChatError):
    """A request field the service understands but cannot honour (client tools on the OpenAI-compatible
    API, several choices). 400 with OpenAI's ``type`` and ``param``, so OpenAI clients raise
    BadRequestError naming the field."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"].update(type="invalid_request_error", param=self.param)
        return body


class Unauthorized(ChatError):
    status = 401
    code = "unauthorized"


class ModelNotFound(ChatError):
    status = 404
    code = "model_not_found"


class ThreadNotFound(ChatError):
    status = 404
    code = "thread_not_found"


class ThreadBusy(ChatError):
    """The conversation is being written by something else (an investigation still running on it)."""

    status = 409
    code = "thread_busy"


class StoreUnavailable(ChatError):
    status = 503
    code = "store_unavailable"


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
# Encoded forms are looked for only for values this long: a shorter one would match ordinary text.
MIN_ENCODED_VALUE = 8


def _escaped(char: str) -> str:
    """A regex for ``char`` as it may appear in an echoed request: itself, percent-encoded (any hex case),
    JSON/Python-escaped, or ``+`` for a space (form encoding)."""
    forms = [re.escape(char)]
    code = ord(char)
    if code < 0x10000:
        forms.append(f"\\\\u(?i:{code:04x})")
    for byte in char.encode():
        forms.append(f"%(?i:{byte:02x})")
    if char == " ":
        forms.append(r"\+")
    if char in "/\"'":
        forms.append(re.escape("\\" + char))
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _base64_forms(raw: bytes) -> list[str]:
    """The base64 texts (standard and URL-safe alphabet) that carry ``raw``: its own encoding without
    padding, and the characters that depend on ``raw`` alone when it sits at any of the three byte
    offsets of a longer encoded text (``user:key`` in a basic-auth header, a JSON body...)."""
    found = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start, end = -(-8 * offset // 6), 8 * (offset + len(raw)) // 6
        found.append(encoded[start:end])
        if offset == 0:
            found.append(encoded.rstrip("="))
    return found + [f.replace("+", "-").replace("/", "_") for f in found]


@functools.lru_cache(maxsize=1024)
def _secret_pattern(value: str) -> re.Pattern[str]:
    """One regex for every form of ``value``: plain, base64 (both alphabets, any alignment, padded or
    not), each also percent-encoded, form-encoded or escaped; longest forms first."""
    forms = [value]
    if len(value) >= MIN_ENCODED_VALUE:
        forms += _base64_forms(value.encode())
    unique = sorted(set(forms), key=len, reverse=True)
    return re.compile("|".join("".join(_escaped(c) for c in form) for form in unique))


def sanitize(message: str, secret_values: Iterable[str] = ()) -> str:
    """A provider's error message with known secret values (in any of the encodings above) and
    credential-shaped strings removed."""
    text = message
    for value in secret_values:
        if value and len(value) >= 4:
            text = _secret_pattern(value).sub("***", text)
    text = _CREDENTIAL_PATTERNS[0].sub("***", text)
    text = _CREDENTIAL_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    if len(text) > MAX_PROVIDER_MESSAGE:
        text = text[:MAX_PROVIDER_MESSAGE] + "..."
    return text
