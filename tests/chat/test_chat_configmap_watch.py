"""The agent ConfigMap watched through the Kubernetes API (the kmock-based emulator stands in for the API
server): a change applies without waiting for the volume, a bad one is refused, other ConfigMaps are
ignored, and the lagging volume file cannot bring back an older version."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY, AgentConfig
from chat_service.app import create_app
from chat_service.config.kubernetes import KubeConfigMapSource
from tests.chat.test_chat_reload import wait_for_checksum, wait_for_reload_error
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config

NAME = "ai-ops-agent-config"


def configmap(name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {AGENT_CONFIG_DATA_KEY: text},
    }


def config_with(fake_llm: FakeLLM, model: str) -> AgentConfig:
    return agent_config([model_entry(model, fake_llm.base_url)])


async def test_configmap_changes_apply_through_the_api(
    tmp_path: Path, k8s_emulator: Any, fresh_fake_llm: FakeLLM
) -> None:
    initial = config_with(fresh_fake_llm, "from-file")
    path = tmp_path / "agent-config.json"
    write_config(path, initial)
    k8s_emulator.create(configmap(NAME, initial.to_json()))
    source = KubeConfigMapSource(k8s_emulator.url, "default", NAME, retry_seconds=0.2)
    async with running(create_app(settings_for(path), kube_source=source)) as app, app.client() as client:
        changed = config_with(fresh_fake_llm, "from-api")
        k8s_emulator.patch(
            "v1", "configmaps", "default", NAME, {"data": {AGENT_CONFIG_DATA_KEY: changed.to_json()}}
        )
        status = await wait_for_checksum(app, changed.checksum)
        assert status["config"]["source"].startswith(f"configmap default/{NAME}@")
        assert (await client.post("/api/chat", json={"message": "hi"})).json()["model"] == "from-api"

        # Another ConfigMap in the namespace is not ours.
        other = config_with(fresh_fake_llm, "not-ours")
        k8s_emulator.create(configmap("something-else", other.to_json()))
        # The volume catches up late with the version the API already replaced: no step back.
        write_config(path, initial)
        newest = config_with(fresh_fake_llm, "newest")
        k8s_emulator.patch(
            "v1", "configmaps", "default", NAME, {"data": {AGENT_CONFIG_DATA_KEY: newest.to_json()}}
        )
        await wait_for_checksum(app, newest.checksum)
        await asyncio.sleep(0.5)  # give the file watcher its chance to (wrongly) apply the old file
        assert (await client.get("/api/status")).json()["config"]["checksum"] == newest.checksum

        k8s_emulator.patch("v1", "configmaps", "default", NAME, {"data": {AGENT_CONFIG_DATA_KEY: "{broken"}})
        ready = await wait_for_reload_error(app)
        assert ready["config"]["checksum"] == newest.checksum
        assert "not valid JSON" in ready["reload_error"]["message"]
        assert ready["reload_error"]["source"].startswith("configmap default/")
