"""Schemathesis against the chat's own OpenAPI document: generated requests (valid and invalid) for every
operation, authenticated, against the real app under uvicorn on loopback with the fake LLM behind it. No
answer may be a 5xx, and every answer must match what the document says (status, content type, headers,
body schema).

The budget is bounded (a few examples per operation, no shrinking) so the test stays within a minute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.harness.ports import bound_socket, wait_until
from tests.support.chat_support import agent_config, model_entry, settings_for, write_config

TOKEN = "tok-schemathesis-0123456789"


class ThreadedApp:
    """The chat app under uvicorn in a thread of its own: schemathesis' calls are synchronous."""

    def __init__(self, app: Any):
        self.app = app
        self._socket = bound_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self._thread = threading.Thread(target=self._serve, name="chat-schemathesis", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        wait_until(lambda: self._server.started or not self._thread.is_alive(), 20, "chat app")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> Iterator[ThreadedApp]:
    root: Path = tmp_path_factory.mktemp("chat-schemathesis")
    (root / "tokens").write_text(f"fuzz:{TOKEN}\n")
    path = root / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    fake_llm.reset()
    with ThreadedApp(create_app(settings_for(path, auth_tokens_file=root / "tokens"))) as served:
        yield served
    fake_llm.reset()


# schemathesis' pytest plugin does not run on this pytest (it sets a node attribute pytest 9 removed), so the
# operations are driven through its Python API: one Hypothesis run per operation and generation mode.
@pytest.mark.parametrize(
    ("mode", "examples"),
    [(GenerationMode.POSITIVE, 12), (GenerationMode.NEGATIVE, 8)],
    ids=["valid", "invalid"],
)
def test_the_api_keeps_to_its_openapi_document(
    served: ThreadedApp, mode: GenerationMode, examples: int
) -> None:
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
    assert not failures, "\n\n".join(failures)
