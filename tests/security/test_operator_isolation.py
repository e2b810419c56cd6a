"""One object's trouble stays with that object: the rest of the namespace is reconciled as usual.

Against the Kubernetes API emulator, with faults injected where a real cluster produces them: an
admission policy that keeps refusing the status writes of some objects (403), and a bug computing one
object's status (an unexpected exception).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from typing import Any

import pytest

from ai_ops_operator.runtime import status_writer
from tests.harness.emulator import api_error
from tests.harness.waiting import eventually
from tests.operator.test_operator_kopf import (
    AI,
    API_KEY_VALUE,
    NS,
    agent_config,
    condition,
    is_ready,
    model,
    provider,
    running_operator,
    secret,
)


async def test_a_refused_status_write_backs_off_per_object_across_passes(
    k8s_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy refuses the status writes of three models: each is retried after 1 s, 2 s, 4 s... however
    many namespace passes run meanwhile, and the other objects get their status at once."""
    refused = {"denied-0", "denied-1", "denied-2"}
    attempts: dict[str, list[float]] = {name: [] for name in refused}
    store = k8s_emulator.emulator
    update_object = store.update_object

    def policy(resource: Any, namespace: Any, name: str, patch: Any, **kwargs: Any) -> Any:
        if kwargs.get("subresource") == "status" and name in refused:
            attempts[name].append(time.monotonic())
            raise api_error(403, "Forbidden", f'llmmodels.ai-ops.dev "{name}" is forbidden: denied by policy')
        return update_object(resource, namespace, name, patch, **kwargs)

    monkeypatch.setattr(store, "update_object", policy)
    k8s_emulator.create(provider("local", key_secret=None, type="ollama"))
    for name in sorted(refused):
        k8s_emulator.create(model(name, provider_name="local"))
    k8s_emulator.create(model("allowed", provider_name="local"))
    k8s_emulator.create(secret("noise", {"n": "0"}))
    async with running_operator(k8s_emulator) as runtime:
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "allowed"), "the allowed model Ready")
        await eventually(lambda: all(attempts.values()), "every refused model tried once")
        passes = runtime.reconciler.passes
        # Many namespace passes (each Secret change schedules one) over about six seconds.
        for i in range(30):
            value = base64.b64encode(str(i).encode()).decode()
            k8s_emulator.patch("v1", "secrets", NS, "noise", {"data": {"n": value}})
            await asyncio.sleep(0.2)
        assert runtime.reconciler.passes - passes >= 20
        for name, times in attempts.items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            # 1 + 1 s + 2 s + 4 s covers the ~7 s: four writes at most, not one per pass.
            assert 2 <= len(times) <= 4, (name, gaps)
            assert all(later >= earlier * 1.5 for earlier, later in itertools.pairwise(gaps)), gaps
        assert runtime.metrics.status_write_errors.labels("LLMModel")._value.get() >= 6
        # The policy is lifted: each model is written at its next retry.
        refused.clear()
        for name in attempts:
            await eventually(lambda: is_ready(k8s_emulator, "llmmodels", name), f"{name} Ready", timeout=15)  # noqa: B023


async def test_an_error_computing_one_status_marks_that_object_and_the_namespace_proceeds(
    k8s_emulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    compute = status_writer.desired_status

    def buggy(verdict: Any, *args: Any, **kwargs: Any) -> Any:
        if verdict.name == "broken":
            raise RuntimeError("no status for this one")
        return compute(verdict, *args, **kwargs)

    monkeypatch.setattr(status_writer, "desired_status", buggy)
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(provider())
    k8s_emulator.create(model("broken"))
    k8s_emulator.create(model("fine"))
    async with running_operator(k8s_emulator) as runtime:
        await eventually(
            lambda: is_ready(k8s_emulator, "llmmodels", "broken", "False", "StatusNotComputed"), "marked"
        )
        message = condition(k8s_emulator, "llmmodels", "broken")["message"]
        assert "RuntimeError: no status for this one" in message
        # The other objects' status writes are independent of the broken one's: they may land just after it.
        await eventually(
            lambda: is_ready(k8s_emulator, "llmmodels", "fine"), "the other model Ready", timeout=5
        )
        await eventually(
            lambda: is_ready(k8s_emulator, "llmproviders", "openai"), "the provider Ready", timeout=5
        )
        # A new valid model goes through at once: no namespace pass is failing and backing off.
        k8s_emulator.create(model("later"))
        await eventually(
            lambda: is_ready(k8s_emulator, "llmmodels", "later"), "the new model Ready", timeout=5
        )
        await eventually(
            lambda: "later" in [m.name for m in agent_config(k8s_emulator).models],
            "the new model in the ConfigMap",
            timeout=5,
        )
        assert runtime.metrics.reconcile_errors.labels(NS)._value.get() == 0
    scanned = json.dumps(
        [
            *k8s_emulator.list("v1", "events", NS),
            *(obj.get("status") for obj in k8s_emulator.list(AI, "llmmodels", NS)),
        ]
    )
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert API_KEY_VALUE not in scanned and API_KEY_VALUE not in logs
