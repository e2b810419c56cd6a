"""The operator end to end: real kopf against the Kubernetes API emulator, real MCP fixture servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai_ops_operator.handlers import OperatorRuntime
from ai_ops_operator.kube import KubeClient
from ai_ops_operator.settings import OperatorSettings
from chat_service.agent_config import parse_agent_config
from tests.harness.waiting import eventually

NS = "default"
AI = "ai-ops.dev/v1alpha1"
CM = "ai-ops-agent-config"


def quick(settings: Any) -> None:
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.watching.reconnect_backoff = 0.1
    settings.batching.idle_timeout = 0.5
    settings.batching.batch_window = 0.02
    settings.batching.exit_timeout = 0.5


@contextlib.asynccontextmanager
async def running_operator(emulator: Any, **overrides: Any) -> AsyncIterator[OperatorRuntime]:
    settings = OperatorSettings(namespaces=(NS,), allow_loopback=True, **overrides)
    kube = KubeClient.from_environment(str(emulator.kubeconfig_path))
    runtime = OperatorRuntime(settings, kube)
    ready = asyncio.Event()
    task = asyncio.create_task(runtime.run(ready_flag=ready, tune=quick))
    try:
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait([task, waiter], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            task.result()
        yield runtime
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        kube.close()


def provider(name: str = "openai", secret: str | None = "openai-key", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "openai", **spec}
    if secret:
        body["apiKeySecretRef"] = {"name": secret, "key": "api-key"}
    return {"apiVersion": AI, "kind": "LLMProvider", "metadata": {"name": name, "namespace": NS}, "spec": body}


def model(name: str, provider_name: str = "openai", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": AI, "kind": "LLMModel", "metadata": {"name": name, "namespace": NS},
        "spec": {"providerRef": {"name": provider_name}, "model": name, **spec},
    }


def secret(name: str, **data: str) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def status_of(emulator: Any, plural: str, name: str) -> dict[str, Any]:
    obj = emulator.get(AI, plural, NS, name) or {}
    return obj.get("status") or {}


def condition(emulator: Any, plural: str, name: str, type_: str = "Ready") -> dict[str, Any]:
    for cond in status_of(emulator, plural, name).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def agent_config(emulator: Any) -> Any:
    cm = emulator.get("v1", "configmaps", NS, CM)
    return parse_agent_config(cm["data"]["agent-config.json"]) if cm else None


async def test_smoke(k8s_emulator: Any) -> None:
    k8s_emulator.create(secret("openai-key", api_key="sk-very-secret"))
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o", default=True))
    async with running_operator(k8s_emulator):
        await eventually(lambda: condition(k8s_emulator, "llmmodels", "gpt-4o").get("status") == "True", "model ready")
        config = await eventually(lambda: agent_config(k8s_emulator), "configmap")
        print(config.to_json())
