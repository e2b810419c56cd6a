"""``ai-ops operator`` as a process: flags and env, JSON logs, liveness and metrics endpoints, the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.harness.ports import free_port
from tests.harness.waiting import eventually
from tests.support.resources import model, provider


async def test_operator_process_writes_the_configmap_and_serves_liveness_and_metrics(
    k8s_emulator: Any, tmp_path: Path
) -> None:
    k8s_emulator.create(provider("local", namespace="default", created=None, type="ollama"))
    k8s_emulator.create(model("llama", "local", model_id="llama3.1", namespace="default", created=None))
    health_port, metrics_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    env = {
        **os.environ,
        "AI_OPS_WATCH_NAMESPACES": "default",
        "AI_OPS_CONFIGMAP_NAME": "agent-cm",
        "AI_OPS_LIVENESS_ENDPOINT": f"http://127.0.0.1:{health_port}/healthz",
        "AI_OPS_METRICS_PORT": str(metrics_port),
        "AI_OPS_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "operator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ai_ops_cli",
                "operator",
                "--kubeconfig",
                str(k8s_emulator.kubeconfig_path),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        cm = await eventually(
            lambda: k8s_emulator.get("v1", "configmaps", "default", "agent-cm"),
            "ConfigMap written",
            timeout=30,
        )
        assert json.loads(cm["data"]["agent-config.json"])["defaultModel"] == "llama"
        async with httpx.AsyncClient() as client:
            liveness = await client.get(f"http://127.0.0.1:{health_port}/healthz")
            assert liveness.status_code == 200
            metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert 'ai_ops_configmap_writes_total{namespace="default"} 1.0' in metrics
        assert "ai_ops_mcp_probe_duration_seconds" in metrics
    finally:
        process.send_signal(signal.SIGTERM)  # what the kubelet sends
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text()[-2000:]
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("ConfigMap default/agent-cm created" in r["message"] for r in records)
