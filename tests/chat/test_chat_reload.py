"""Configuration that changes without a restart: hot reload of the agent config, a rejected reload, a rotated
API key, and a turn in flight that keeps the config it started with."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.agent_config import AgentConfig
from chat_service.app import create_app
from chat_service.config.store import AgentConfigMissing
from chat_service.services import ChatServices
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    model_entry,
    running,
    settings_for,
    write_config,
)


async def wait_for_checksum(app: RunningApp, checksum: str) -> dict[str, Any]:
    async with app.client() as client:
        for _ in range(200):
            status = (await client.get("/api/status")).json()
            if status.get("config", {}).get("checksum") == checksum:
                return status
            await asyncio.sleep(0.05)
    raise AssertionError(f"config {checksum} was not applied")


async def wait_for_reload_error(app: RunningApp) -> dict[str, Any]:
    async with app.client() as client:
        for _ in range(200):
            ready = (await client.get("/readyz")).json()
            if ready.get("reload_error"):
                return ready
            await asyncio.sleep(0.05)
    raise AssertionError("the bad config was not noticed")


def two_models(fake_llm: FakeLLM, default: str) -> AgentConfig:
    return agent_config(
        [
            model_entry("alpha", fake_llm.base_url, default=default == "alpha"),
            model_entry("beta", fake_llm.base_url, default=default == "beta"),
        ]
    )


async def test_hot_reload_swaps_the_model_and_keeps_the_conversation(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("alpha", fresh_fake_llm.base_url, system_prompt="A")]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        first = (await client.post("/api/chat", json={"message": "hello alpha", "thread_id": "swap"})).json()
        assert first["model"] == "alpha"
        new = agent_config([model_entry("beta", fresh_fake_llm.base_url, system_prompt="B")])
        write_config(path, new)
        status = await wait_for_checksum(app, new.checksum)
        assert [m["name"] for m in status["models"]] == ["beta"]
        second = (await client.post("/api/chat", json={"message": "hello beta", "thread_id": "swap"})).json()
        assert second["model"] == "beta"
        request = fresh_fake_llm.chat_requests[-1]["json"]
        assert request["model"] == "beta"
        assert [(m["role"], m["content"]) for m in request["messages"]] == [
            ("system", "B"),
            ("user", "hello alpha"),
            ("assistant", "echo: hello alpha"),
            ("user", "hello beta"),
        ]
        thread = (await client.get("/api/threads/swap")).json()["messages"]
        assert [(m["content"], m.get("name")) for m in thread if m["role"] == "assistant"] == [
            ("echo: hello alpha", "alpha"),
            ("echo: hello beta", "beta"),
        ]


async def test_bad_reload_keeps_the_last_good_config_and_shows_in_readyz(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    good = two_models(fresh_fake_llm, "alpha")
    write_config(path, good)
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        path.write_text(
            '{"apiVersion": "ai-ops.dev/agent-config/v1", "kind": "AgentConfig", "models": "oops"}'
        )
        ready = await wait_for_reload_error(app)
        assert ready["config"]["checksum"] == good.checksum
        assert (
            "namespace" in ready["reload_error"]["message"] and "models" in ready["reload_error"]["message"]
        )
        assert any("rejected" in w for w in ready["warnings"])
        response = await client.get("/readyz")
        assert response.status_code == 200, "the service still serves with the last good config"
        turn = await client.post("/api/chat", json={"message": "still here?"})
        assert turn.status_code == 200 and turn.json()["model"] == "alpha"
        # A good config afterwards clears the error.
        fixed = two_models(fresh_fake_llm, "beta")
        write_config(path, fixed)
        await wait_for_checksum(app, fixed.checksum)
        ready = (await client.get("/readyz")).json()
        assert ready["reload_error"] is None
        assert (await client.post("/api/chat", json={"message": "now?"})).json()["model"] == "beta"
        metrics = (await client.get("/metrics")).text
        assert 'ai_ops_chat_config_reloads_total{result="rejected"}' in metrics
        assert f'ai_ops_chat_config_info{{checksum="{fixed.checksum}"}} 1.0' in metrics


async def test_a_rotated_key_file_is_used_on_the_next_request(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    key_file = tmp_path / "secrets" / "llm-key" / "api-key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("sk-first-0000000001\n")
    path = tmp_path / "agent-config.json"
    write_config(
        path, agent_config([model_entry("main", fresh_fake_llm.base_url, key=("llm-key", "api-key"))])
    )
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        assert (await client.post("/api/chat", json={"message": "one"})).status_code == 200
        key_file.write_text("sk-second-000000002\n")
        assert (await client.post("/api/chat", json={"message": "two"})).status_code == 200
        seen = [r["headers"]["authorization"] for r in fresh_fake_llm.chat_requests]
        assert seen == ["Bearer sk-first-0000000001", "Bearer sk-second-000000002"]
        key_file.unlink()
        missing = await client.post("/api/chat", json={"message": "three"})
        assert missing.status_code == 503 and missing.json()["error"]["code"] == "model_unavailable"
        assert "llm-key" in missing.json()["error"]["message"] and "sk-second" not in missing.text


async def test_a_turn_in_flight_finishes_on_the_config_it_started_with(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, two_models(fresh_fake_llm, "alpha"))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        fresh_fake_llm.enqueue(Reply.delay(1.0, then=Reply.text("slow alpha answer")), model="alpha")
        in_flight = asyncio.create_task(client.post("/api/chat", json={"message": "slow one"}))
        for _ in range(200):  # wait until the model call is on its way
            if fresh_fake_llm.chat_requests:
                break
            await asyncio.sleep(0.02)
        new = two_models(fresh_fake_llm, "beta")
        write_config(path, new)
        await wait_for_checksum(app, new.checksum)
        finished = (await in_flight).json()
        assert finished["model"] == "alpha" and finished["reply"] == "slow alpha answer"
        after = (await client.post("/api/chat", json={"message": "next"})).json()
        assert after["model"] == "beta"


async def test_sessions_of_removed_mcp_servers_close_after_turns_in_flight(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    from tests.support.chat_support import mcp_server

    path = tmp_path / "agent-config.json"
    write_config(
        path,
        agent_config(
            [model_entry("main", fresh_fake_llm.base_url)],
            [mcp_server("fx", mcp_fixture_servers.healthy.url)],
        ),
    )
    async with (
        running(create_app(settings_for(path, request_timeout_seconds=1.0))) as app,
        app.client() as client,
    ):
        assert (await client.post("/api/chat", json={"message": "hi"})).status_code == 200
        toolbox = app.services.toolbox
        assert toolbox.open_sessions == ["fx"]
        new = agent_config([model_entry("main", fresh_fake_llm.base_url)])
        write_config(path, new)
        await wait_for_checksum(app, new.checksum)
        assert toolbox.open_sessions == ["fx"], "kept while turns started on the old config may use it"
        for _ in range(200):
            if not toolbox.open_sessions:
                break
            await asyncio.sleep(0.05)
        assert toolbox.open_sessions == []


async def test_in_a_cluster_the_service_waits_for_its_config_and_serves_503_until_then(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    """The operator writes the (optional) ConfigMap after the pod starts: not ready, then ready on arrival."""
    path = tmp_path / "agent-config.json"
    async with running(create_app(settings_for(path, wait_for_config=True))) as app, app.client() as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["no agent config loaded"]
        models = await client.get("/api/models")
        assert models.status_code == 503
        assert models.json()["error"]["code"] == "not_ready"
        assert str(path) in models.json()["error"]["message"]
        turn = await client.post("/api/chat", json={"message": "anyone there?"})
        assert turn.status_code == 503 and turn.json()["error"]["code"] == "not_ready"

        config = two_models(fresh_fake_llm, "beta")
        write_config(path, config)
        await wait_for_checksum(app, config.checksum)
        assert (await client.get("/readyz")).status_code == 200
        answer = await client.post("/api/chat", json={"message": "now?"})
        assert answer.status_code == 200 and answer.json()["model"] == "beta"


def test_a_missing_config_outside_a_cluster_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigMissing, match="does not exist"):
        ChatServices.build(settings_for(tmp_path / "typo.json"))
