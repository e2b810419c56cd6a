"""The prompt_injection middleware's default patterns on the labelled set in tests/support/data.

Benign operations questions (system prompts, instructions, roles, tokens, modes asked about in good faith)
must never be blocked; the injection attempts of the tuning set must all be caught. The held-out part is
only measured (benchmarks/prompt_injection.py), never asserted, so it stays a fair estimate.
"""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import HumanMessage

from ai_ops_api.middleware import PromptInjectionConfig
from chat_service.middleware.injection import PromptInjectionMiddleware
from tests.support.injection_cases import load_cases

TUNING_BENIGN, TUNING_INJECTION = load_cases()
HELD_OUT_BENIGN, _ = load_cases(held_out=True)


@pytest.fixture(scope="module")
def middleware() -> PromptInjectionMiddleware:
    return PromptInjectionMiddleware(
        PromptInjectionConfig(), model_name="m", logger=logging.getLogger("test.injection")
    )


def test_the_set_is_large_enough() -> None:
    assert len(TUNING_BENIGN) >= 60
    assert len(TUNING_INJECTION) >= 60


@pytest.mark.parametrize("text", [*TUNING_BENIGN, *HELD_OUT_BENIGN])
def test_a_benign_question_passes(middleware: PromptInjectionMiddleware, text: str) -> None:
    found = middleware.find([HumanMessage(text)])
    assert found is None, f"blocked by {found[1].pattern if found else ''!r}"


@pytest.mark.parametrize("text", TUNING_INJECTION)
def test_an_injection_attempt_is_caught(middleware: PromptInjectionMiddleware, text: str) -> None:
    assert middleware.find([HumanMessage(text)]) is not None
