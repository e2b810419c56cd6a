"""How exceptions from a turn become API errors (pure: no servers)."""

from __future__ import annotations

import logging

import httpx as httpx1
import httpx2 as httpx  # the HTTP library openai 3 is built on
import openai
import pytest
import redis
from langchain.agents.middleware import PIIDetectionError
from langchain.agents.middleware.model_call_limit import ModelCallLimitExceededError
from langchain.agents.middleware.tool_call_limit import ToolCallLimitExceededError
from langchain_core.exceptions import ModelError
from langgraph.errors import GraphRecursionError

from chat_service.engine import map_exception
from chat_service.errors import ChatError, NotReady
from chat_service.providers import ProviderUnavailable

KEY = "sk-live-0123456789abcdef"


def _openai_error(status: int, message: str) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://llm/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": {"message": message}})
    return openai.APIStatusError(message, response=response, body={"error": {"message": message}})


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (TimeoutError(), 504, "timeout"),
        (openai.APITimeoutError(request=httpx.Request("POST", "http://llm")), 504, "timeout"),
        (_openai_error(500, "boom"), 502, "provider_error"),
        (openai.APIConnectionError(request=httpx.Request("POST", "http://llm")), 502, "provider_error"),
        (GraphRecursionError("Recursion limit of 50 reached"), 502, "step_limit"),
        (PIIDetectionError("email", []), 422, "content_blocked"),
        (ModelCallLimitExceededError(5, 5, 5, None), 429, "limit_exceeded"),
        (redis.ConnectionError("Connection refused"), 503, "not_ready"),
        (ProviderUnavailable("install the anthropic extra"), 503, "model_unavailable"),
        (ExceptionGroup("wrapped", [TimeoutError()]), 504, "timeout"),
        (NotReady("x"), 503, "not_ready"),
    ],
)
def test_exception_to_status_and_code(exc: BaseException, status: int, code: str) -> None:
    error = map_exception(exc)
    assert (error.status, error.code) == (status, code)
    assert error.message


def test_wrapped_provider_error_is_found_through_its_cause_and_sanitized() -> None:
    cause = _openai_error(401, f"Incorrect API key provided: {KEY}")
    try:
        raise RuntimeError("model node failed") from cause
    except RuntimeError as wrapped:
        error = map_exception(wrapped, [KEY])
    assert error.status == 502 and "HTTP 401" in error.message and KEY not in error.message


def test_unexpected_error_is_500_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        error = map_exception(ValueError(f"bug while handling {KEY}"), [KEY])
    assert type(error) is ChatError and error.status == 500 and error.code == "internal_error"
    assert KEY not in error.message and "ValueError" in error.message
    assert KEY not in caplog.text and "bug while handling ***" in caplog.text


class ReadTimeout(Exception):
    """Named like httpx's timeout, but of no provider library."""


class APITimeoutError(Exception):
    """Named like openai's timeout, but of no provider library."""


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ReadTimeout("read timed out"), 504, "timeout"),
        (httpx1.ConnectTimeout("connect timed out"), 504, "timeout"),
        (httpx1.ConnectError("All connection attempts failed"), 502, "provider_error"),
        (ModelError("the model refused"), 502, "provider_error"),
        (ToolCallLimitExceededError(3, 3, 3, None), 429, "limit_exceeded"),
        (redis.TimeoutError("Timeout reading from socket"), 503, "not_ready"),
    ],
)
def test_exceptions_are_matched_by_their_class(exc: BaseException, status: int, code: str) -> None:
    error = map_exception(exc)
    assert (error.status, error.code) == (status, code)


@pytest.mark.parametrize("exc", [ReadTimeout("slow"), APITimeoutError("slow")])
def test_a_look_alike_name_of_another_library_is_an_internal_error(exc: BaseException) -> None:
    error = map_exception(exc)
    assert type(error) is ChatError and error.code == "internal_error"
