"""What the service tells about itself when things go wrong: a log line per failed turn, the provider's
reachability in ``/api/status`` after failed calls, whether it runs as the demo, and a default system prompt
that offers only what the loaded tools can do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from chat_service.app import create_app
from chat_service.settings import load_settings
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.ports import free_port
from tests.support.chat_support import (
    agent_config,
    mcp_server,
    model_entry,
    running,
    settings_for,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "sk-status-test-key-0123456789"
TURNS_LOGGER = "chat_service.engine.turns"


def failed_turn_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == TURNS_LOGGER and r.levelno == logging.WARNING and "turn failed" in r.getMessage()
    ]


def model_status(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in status["models"] if m["name"] == name)


async def test_a_failed_turn_logs_one_warning_with_its_code_model_and_sanitized_reason(
    tmp_path: Path, fresh_fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url)]))
    caplog.set_level(logging.WARNING, logger=TURNS_LOGGER)
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        fresh_fake_llm.enqueue(Reply.error(500, f"upstream broke; Authorization: Bearer {PROVIDER_KEY}"))
        response = await client.post(
            "/api/chat", json={"message": "my private question", "thread_id": "thread-seven"}
        )
        assert response.status_code == 502
        assert failed_turn_lines(caplog) == [failed_turn_lines(caplog)[0]], "exactly one line"
        line = failed_turn_lines(caplog)[0]
        assert "provider_error" in line and "model main" in line and "upstream broke" in line
        assert PROVIDER_KEY not in line, "the reason is sanitized like the client's message"
        assert "my private question" not in line and "thread-seven" not in line
        # Streamed turns that fail log the same way.
        fresh_fake_llm.enqueue(Reply.error(500, "down again"))
        async with client.stream("POST", "/api/chat/stream", json={"message": "x"}) as stream:
            await stream.aread()
        fresh_fake_llm.enqueue(Reply.error(500, "and on /v1"))
        await client.post(
            "/v1/chat/completions", json={"model": "main", "messages": [{"role": "user", "content": "y"}]}
        )
    assert len(failed_turn_lines(caplog)) == 3
    assert "down again" in failed_turn_lines(caplog)[1] and "and on /v1" in failed_turn_lines(caplog)[2]


async def test_status_shows_a_refused_provider_connection_as_unreachable(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("local", closed, default=True)]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        before = model_status((await client.get("/api/status")).json(), "local")
        assert before["provider_status"] is None and before["available"] is not False
        response = await client.post("/api/chat", json={"message": "hi"})
        assert response.status_code == 502
        status = (await client.get("/api/status")).json()
    local = model_status(status, "local")
    assert local["available"] is False and "does not answer" in local["unavailable_reason"]
    assert local["provider_status"]["reachable"] is False
    assert "Connection error" in local["provider_status"]["reason"]
    assert local["provider_status"]["since"] and local["provider_status"]["at"]
    assert any("'local' cannot answer now" in w for w in status["warnings"])


async def test_a_provider_outage_shows_until_a_call_succeeds_and_4xx_is_no_outage(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(
        path,
        agent_config(
            [
                model_entry("main", fresh_fake_llm.base_url, default=True),
                model_entry("other", "http://127.0.0.1:9/v1"),
            ]
        ),
    )
    async with running(create_app(settings_for(path))) as app, app.client() as client:

        async def main_status() -> dict[str, Any]:
            return model_status((await client.get("/api/status")).json(), "main")

        fresh_fake_llm.enqueue(Reply.error(503, "overloaded"))
        assert (await client.post("/api/chat", json={"message": "a"})).status_code == 502
        down = await main_status()
        assert down["available"] is False and down["provider_status"]["reachable"] is False
        assert "overloaded" in down["provider_status"]["reason"]
        # Another failure keeps the outage's start.
        fresh_fake_llm.enqueue(Reply.error(502, "still down"))
        await client.post("/api/chat", json={"message": "b"})
        still = await main_status()
        assert still["provider_status"]["since"] == down["provider_status"]["since"]
        assert "still down" in still["provider_status"]["reason"]
        # The other model has its own provider: not affected.
        assert model_status((await client.get("/api/status")).json(), "other")["provider_status"] is None

        assert (await client.post("/api/chat", json={"message": "c"})).status_code == 200
        up = await main_status()
        assert up["available"] is True and up["unavailable_reason"] is None
        assert up["provider_status"]["reachable"] is True and up["provider_status"]["reason"] is None

        # A refused request (HTTP 4xx) says nothing about reachability.
        fresh_fake_llm.enqueue(Reply.error(400, "context too long"))
        assert (await client.post("/api/chat", json={"message": "d"})).status_code == 502
        assert (await main_status())["provider_status"]["reachable"] is True


async def test_status_says_whether_the_service_runs_as_the_demo(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config())
    env = {"AI_OPS_CONFIG": str(path), "AI_OPS_KUBERNETES_WATCH": "false"}
    assert load_settings(environ={**env, "AI_OPS_DEMO": "true"}).demo is True
    assert load_settings(environ=env).demo is False
    for demo in (False, True):
        async with running(create_app(settings_for(path, demo=demo))) as app, app.client() as client:
            assert (await client.get("/api/status")).json()["demo"] is demo


def system_prompt(fake_llm: FakeLLM) -> str:
    first = fake_llm.chat_requests[-1]["json"]["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_the_default_prompt_offers_only_what_the_loaded_tools_can_do(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url)]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        await client.post("/api/chat", json={"message": "any failing pods?"})
    bare = system_prompt(fresh_fake_llm)
    assert "Kubernetes" not in bare and "no tools" in bare

    with_tools = agent_config(
        [model_entry("main", fresh_fake_llm.base_url)],
        [mcp_server("fx", mcp_fixture_servers.healthy.url, include=["add", "echo"])],
    )
    write_config(path, with_tools)
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        await client.post("/api/chat", json={"message": "add?"})
    prompt = system_prompt(fresh_fake_llm)
    assert "fx: add, echo" in prompt and "no tools" not in prompt and "Kubernetes" not in prompt


def test_the_demo_example_does_not_promise_kubernetes_answers() -> None:
    """`make run` renders examples/local/: without a kubeconfig it has no Kubernetes MCP server, so a prompt
    of its own must not claim a cluster (the derived default prompt is used when there is none)."""
    docs = list(yaml.safe_load_all((REPO / "examples" / "local" / "ollama.yaml").read_text()))
    prompts = [d["spec"].get("systemPrompt") or "" for d in docs if d and d.get("kind") == "LLMModel"]
    assert prompts and not any("kubernetes" in p.lower() for p in prompts)
