"""The error responses the routes document: every error body is ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    retry_after: str | None = Field(
        default=None, description="With rate_limited: the provider's Retry-After (also the header)"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    401: "Missing or invalid bearer token",
    404: "Unknown model (model_not_found)",
    422: "Invalid input, or content blocked by a middleware (content_blocked)",
    413: "The request body is larger than AI_OPS_MAX_BODY_BYTES (payload_too_large)",
    429: "A middleware's call limit was reached (limit_exceeded), or the model provider rate-limits "
    "(rate_limited, with its Retry-After header)",
    502: "The model provider failed (provider_error)",
    503: "No model configured (no_model) or model unavailable",
    504: "The request timed out",
}

_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "With rate_limited, when the provider sent one: seconds or an HTTP date",
            "schema": {"type": "string"},
        }
    },
}


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of some statuses, with ``descriptions`` worded for the route."""
    wording = {**_ERROR_DESCRIPTIONS, **(descriptions or {})}
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        found[status] = {"model": ErrorResponse, "description": wording[status]}
        if status in _ERROR_HEADERS:
            found[status]["headers"] = _ERROR_HEADERS[status]
    return found


ERROR_RESPONSES = error_responses(*(status for status in _ERROR_DESCRIPTIONS if status != 413))


# What EdgeGuard (chat_service/asgi.py) answers on every protected route before the route runs.
EDGE_ERROR_RESPONSES = error_responses(401, 413)
