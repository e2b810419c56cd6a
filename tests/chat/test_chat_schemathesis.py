"""Schemathesis against the chat's own OpenAPI document: generated requests (valid and invalid) for every
operation, authenticated, against the real app under uvicorn on loopback with the fake LLM behind it. No
answer may be a 5xx, and every answer must match what the document says (status, content type, headers,
body schema).

The budget is bounded (a few examples per operation, no shrinking) so the test stays within a minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    model_entry,
    running,
    settings_for,
    write_config,
)

TOKEN = "tok-schemathesis-0123456789"


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> AsyncIterator[RunningApp]:
    root: Path = tmp_path_factory.mktemp("chat-schemathesis")
    (root / "tokens").write_text(f"fuzz:{TOKEN}\n")
    path = root / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    fake_llm.reset()
    async with running(create_app(settings_for(path, auth_tokens_file=root / "tokens"))) as app:
        yield app
    fake_llm.reset()


# schemathesis' pytest plugin does not run on this pytest (it sets a node attribute pytest 9 removed), so the
# operations are driven through its Python API: one Hypothesis run per operation and generation mode. Its
# calls are synchronous: they run in a worker thread while the app serves in this test's event loop (a
# second loop would share langchain-openai's process-wide HTTP client across loops).
@pytest.mark.parametrize(
    ("mode", "examples"),
    [(GenerationMode.POSITIVE, 12), (GenerationMode.NEGATIVE, 8)],
    ids=["valid", "invalid"],
)
async def test_the_api_keeps_to_its_openapi_document(
    served: RunningApp, mode: GenerationMode, examples: int
) -> None:
    failures = await asyncio.to_thread(_check_every_operation, served, mode, examples)
    assert not failures, "\n\n".join(failures)


def _check_every_operation(served: RunningApp, mode: GenerationMode, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_dict(served.app.openapi())
    headers = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11

    for operation in operations:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            # The same examples every run: CI must not depend on which random examples came up. Ignored
            # unknown query parameters (FastAPI's default) are reported by some random negative examples.
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            # Schema-valid is not always valid (a user message is required, a model must exist): a 422
            # for those is right, so "valid data must be accepted" does not apply.
            case.call_and_validate(
                base_url=served.url, headers=headers, timeout=30, excluded_checks=[positive_data_acceptance]
            )

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # no parameters: nothing invalid to send
        except Exception as failure:
            failures.append(f"{operation.label}: {failure}")
    return failures
