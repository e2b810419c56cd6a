"""The turn path stays on the event loop: no thread hop for what needs no thread.

A chat turn with auth and a middleware chain is answered while every thread of the pool FastAPI uses
for plain ``def`` dependencies is taken (a dependency that needs a thread would wait for one forever),
and LangSmith's bookkeeping around each middleware hook runs in the calling thread unless tracing is on.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path

import anyio.to_thread
from langsmith import tracing_context
from langsmith._internal._aiter import _default_aio_to_thread

from ai_ops_api.agent_config import MiddlewareEntry
from chat_service.app import create_app
from chat_service.engine.tracing import inline_unless_tracing
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config

TOKEN = "turn-path-token-0123456789"
# Long enough for a loaded CI machine; a turn that needs a pool thread never gets one.
HANG_LIMIT_SECONDS = 30


async def test_a_turn_is_answered_while_the_dependency_thread_pool_is_exhausted(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    chain = [
        MiddlewareEntry(name="log", type="logging", priority=10),
        MiddlewareEntry(name="retry", type="model_retry", priority=20, config={"maxRetries": 1}),
    ]
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url, middleware=chain)]))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{TOKEN}\n")
    async with running(create_app(settings_for(path, auth_tokens_file=tokens))) as app:
        limiter = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        try:
            async with app.client(TOKEN) as client:
                answered = await asyncio.wait_for(
                    client.post("/api/chat", json={"message": "hi", "thread_id": "t1"}), HANG_LIMIT_SECONDS
                )
                listed = await asyncio.wait_for(client.get("/api/threads"), HANG_LIMIT_SECONDS)
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)
    assert answered.status_code == 200, answered.text
    assert answered.json()["reply"] == "echo: hi"
    assert [t["id"] for t in listed.json()["threads"]] == ["t1"]


async def test_langsmith_run_setup_runs_in_the_calling_thread_unless_tracing_is_on() -> None:
    here = threading.get_ident()

    untraced = await inline_unless_tracing(
        _default_aio_to_thread, contextvars.copy_context(), threading.get_ident
    )
    with tracing_context(enabled=True):  # no traced function runs: nothing is sent anywhere
        traced = await inline_unless_tracing(
            _default_aio_to_thread, contextvars.copy_context(), threading.get_ident
        )

    assert untraced == here
    assert traced != here, "with tracing on, LangSmith's own thread hop stays"


async def test_the_chat_service_installs_the_inline_run_setup(tmp_path: Path, fake_llm: FakeLLM) -> None:
    import langsmith
    from langsmith._runtime_overrides import get_runtime_overrides

    langsmith.set_runtime_overrides()  # the library default: a thread per hook
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url)]))
    create_app(settings_for(path))
    assert get_runtime_overrides().aio_to_thread is inline_unless_tracing
