"""One object's trouble stays with that object: the rest of the namespace is reconciled as usual.

Against the Kubernetes API emulator, with faults injected where a real cluster produces them: an
admission policy that keeps refusing the status writes of some objects (403, 422), a bug computing one
object's status and a bug evaluating one object (unexpected exceptions); and the pure core alone, with a
bug evaluating one object of each kind.
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

from ai_ops_api.conditions import READY
from ai_ops_api.specs import HealthState
from ai_ops_operator.core import evaluate as evaluate_module
from ai_ops_operator.core.snapshot import ServerHealth, Snapshot
from ai_ops_operator.core.translate import translate
from ai_ops_operator.runtime import reconciler, status_writer
from tests.harness.emulator import api_error
from tests.harness.waiting import eventually
from tests.operator.test_operator_kopf import (
    AI,
    API_KEY_VALUE,
    NS,
    agent_config,
    condition,
    is_ready,
    middleware,
    model,
    provider,
    running_operator,
    secret,
    status_of,
)
from tests.support import resources

# What an exception's text could carry from a spec (an inline header value); it must stay out of the status.
LEAKY = "Bearer inline-token-0d9e"


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


async def test_a_422_refusal_backs_off_and_a_new_generation_ends_the_backoff_at_once(
    k8s_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status the API server refuses as invalid (422: a webhook, a schema the status does not fit) backs
    off like a 403, however many passes offer it; a spec edit is written at once, whatever the delay."""
    # A delay no test outlasts: a second write can only come from the new generation.
    monkeypatch.setattr(status_writer, "FIRST_RETRY", 3600.0)
    monkeypatch.setattr(status_writer, "MAX_RETRY", 3600.0)
    refused = {"denied"}
    attempts: list[Any] = []  # the observedGeneration of each refused write
    store = k8s_emulator.emulator
    update_object = store.update_object

    def policy(resource: Any, namespace: Any, name: str, patch: Any, **kwargs: Any) -> Any:
        if kwargs.get("subresource") == "status" and name in refused:
            attempts.append(patch["status"].get("observedGeneration"))
            raise api_error(422, "Invalid", f'llmmodels.ai-ops.dev "{name}" is invalid: refused by a webhook')
        return update_object(resource, namespace, name, patch, **kwargs)

    monkeypatch.setattr(store, "update_object", policy)
    k8s_emulator.create(provider("local", key_secret=None, type="ollama"))
    k8s_emulator.create(model("denied", provider_name="local"))
    k8s_emulator.create(model("allowed", provider_name="local"))
    k8s_emulator.create(secret("noise", {"n": "0"}))
    async with running_operator(k8s_emulator) as runtime:
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "allowed"), "the allowed model Ready")
        await eventually(lambda: attempts, "the refused model tried once")
        for i in range(5):  # passes that offer the refused model again (each Secret change schedules one)
            passes = runtime.reconciler.passes
            value = base64.b64encode(str(i + 1).encode()).decode()
            k8s_emulator.patch("v1", "secrets", NS, "noise", {"data": {"n": value}})
            await eventually(lambda: runtime.reconciler.passes > passes, f"pass {i}")  # noqa: B023
        await eventually(lambda: runtime.reconciler.idle, "nothing due")
        assert attempts == [1]
        assert runtime.metrics.status_write_errors.labels("LLMModel")._value.get() == 1
        # A spec edit: the new generation is tried at once, and backs off again when refused again.
        k8s_emulator.patch(AI, "llmmodels", NS, "denied", {"spec": {"temperature": 0.5}})
        await eventually(lambda: attempts == [1, 2], "the new generation tried at once")
        await eventually(lambda: runtime.reconciler.idle, "nothing due")
        assert attempts == [1, 2]
        # The refusal lifted, the next edit is written (the backoff never delays a new generation).
        refused.clear()
        k8s_emulator.patch(AI, "llmmodels", NS, "denied", {"spec": {"temperature": 0.7}})
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "denied"), "written at once")
        assert status_of(k8s_emulator, "llmmodels", "denied")["observedGeneration"] == 3


def test_the_retry_delay_doubles_up_to_its_cap_and_stays_there_however_long_a_refusal_lasts() -> None:
    first, cap = status_writer.FIRST_RETRY, status_writer.MAX_RETRY
    delays = [status_writer.retry_delay(n, first, cap) for n in range(1, 16)]
    assert delays[0] == first
    assert all(later == min(cap, 2 * earlier) for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == cap
    # A policy refusing for days: thousands of failures, for one object or a namespace's passes (a float
    # cannot hold 2 ** 1024: the delay must not overflow and kill the writer or the reconciler).
    assert status_writer.retry_delay(5000, first, cap) == cap
    assert status_writer.retry_delay(5000, 0.5, reconciler.MAX_BACKOFF) == reconciler.MAX_BACKOFF


async def a_new_model_goes_through_at_once(k8s_emulator: Any) -> None:
    """No namespace pass is failing and backing off: a new valid model is Ready and configured at once."""
    k8s_emulator.create(model("later"))
    await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "later"), "the new model Ready", timeout=5)
    await eventually(
        lambda: "later" in [m.name for m in agent_config(k8s_emulator).models],
        "the new model in the ConfigMap",
        timeout=5,
    )


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
        await a_new_model_goes_through_at_once(k8s_emulator)
        assert runtime.metrics.reconcile_errors.labels(NS)._value.get() == 0
    scanned = json.dumps(
        [
            *k8s_emulator.list("v1", "events", NS),
            *(obj.get("status") for obj in k8s_emulator.list(AI, "llmmodels", NS)),
        ]
    )
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert API_KEY_VALUE not in scanned and API_KEY_VALUE not in logs


async def test_an_error_evaluating_one_object_marks_that_object_and_the_namespace_proceeds(
    k8s_emulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    evaluate_model = evaluate_module._evaluate_model

    def buggy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "broken":
            raise RuntimeError(f"cannot handle header {LEAKY}")
        return evaluate_model(name, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "_evaluate_model", buggy)
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(provider())
    k8s_emulator.create(model("broken"))
    k8s_emulator.create(model("fine"))
    k8s_emulator.create(middleware("on-broken", "broken", "logging", {}))
    async with running_operator(k8s_emulator) as runtime:
        await eventually(
            lambda: is_ready(k8s_emulator, "llmmodels", "broken", "False", "StatusNotComputed"), "marked"
        )
        message = condition(k8s_emulator, "llmmodels", "broken")["message"]
        assert "RuntimeError" in message and LEAKY not in message
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "fine"), "the other model Ready")
        await eventually(lambda: is_ready(k8s_emulator, "llmproviders", "openai"), "the provider Ready")
        await eventually(
            lambda: is_ready(k8s_emulator, "llmmiddlewares", "on-broken", "False", "ModelNotReady"),
            "the broken model's middleware sees it not ready",
        )
        await a_new_model_goes_through_at_once(k8s_emulator)
        assert [m.name for m in agent_config(k8s_emulator).models] == ["fine", "later"]
        assert runtime.metrics.reconcile_errors.labels(NS)._value.get() == 0
        assert runtime.reconciler.passes >= 2
    # The traceback is in the log, once, however many passes evaluated the object again.
    logged = [r for r in caplog.records if "could not be evaluated" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "LLMModel" in logged[0].getMessage() and "broken" in logged[0].getMessage()
    scanned = json.dumps(
        [
            *k8s_emulator.list("v1", "events", NS),
            *(obj.get("status") for obj in k8s_emulator.list(AI, "llmmodels", NS)),
            *(obj.get("status") for obj in k8s_emulator.list(AI, "llmmiddlewares", NS)),
        ]
    )
    assert LEAKY not in scanned and API_KEY_VALUE not in scanned


# --- one object's evaluation failing (the pure core) --------------------------------------------


def namespace_with_one_broken_object_per_kind() -> Snapshot:
    """Each kind has an object named ``broken`` and an unrelated one; the dependents of each ``broken``
    are ``on-broken-*`` (and the model its critical middleware guards, ``guarded``)."""
    return Snapshot(
        "team-a",
        providers={
            "p": resources.provider("p", type="ollama"),
            "broken": resources.provider("broken", type="ollama"),
        },
        models={
            "m": resources.model("m", "p"),
            "broken": resources.model("broken", "p"),
            "guarded": resources.model("guarded", "p"),
            "on-broken-provider": resources.model("on-broken-provider", "broken"),
        },
        middlewares={
            "log": resources.middleware("log", "m", "logging"),
            "on-broken-model": resources.middleware("on-broken-model", "broken", "logging"),
            "broken": resources.middleware("broken", "guarded", "logging", critical=True),
        },
        mcpservers={
            "srv": resources.mcpserver("srv", url="http://a:8000/mcp"),
            "broken": resources.mcpserver("broken", url="http://b:8000/mcp"),
        },
        runbooks={
            "rb": resources.runbook("rb", "# Restart\nkubectl rollout restart"),
            "broken": resources.runbook("broken", "# Drain\nkubectl drain"),
        },
        secrets={},
        usable_secrets=frozenset(),
        stdio_commands=frozenset(),
        health={
            "srv": ServerHealth(HealthState.HEALTHY, ("echo",)),
            "broken": ServerHealth(HealthState.HEALTHY, ("echo",)),
        },
        custom_middleware=frozenset(),
    )


# (the per-object evaluator to break, the kind, what its dependents say: (kind, name) -> Ready reason)
BROKEN_EVALUATORS = [
    pytest.param(evaluator, kind, dependents, id=kind)
    for evaluator, kind, dependents in [
        ("_evaluate_provider", "LLMProvider", {("LLMModel", "on-broken-provider"): "ProviderNotReady"}),
        ("_evaluate_model", "LLMModel", {("LLMMiddleware", "on-broken-model"): "ModelNotReady"}),
        ("_evaluate_middleware", "LLMMiddleware", {("LLMModel", "guarded"): "CriticalMiddlewareNotReady"}),
        ("_evaluate_mcpserver", "MCPServer", {}),
        ("_evaluate_runbook", "Runbook", {}),
    ]
]


@pytest.mark.parametrize(("evaluator", "kind", "dependents"), BROKEN_EVALUATORS)
def test_an_error_evaluating_one_object_marks_it_and_the_rest_is_evaluated_as_usual(
    monkeypatch: pytest.MonkeyPatch, evaluator: str, kind: str, dependents: dict[tuple[str, str], str]
) -> None:
    snap = namespace_with_one_broken_object_per_kind()
    usual = {(v.kind, v.name): v for v in evaluate_module.evaluate(snap).all()}
    assert all(usual[key].ready for key in [(kind, "broken"), *dependents]), "the fault alone breaks them"
    original = getattr(evaluate_module, evaluator)

    def buggy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "broken":
            raise RuntimeError(f"cannot handle header {LEAKY}")
        return original(name, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, evaluator, buggy)
    evaluation = evaluate_module.evaluate(snap)
    verdicts = {(v.kind, v.name): v for v in evaluation.all()}
    assert set(verdicts) == set(usual)
    ready = verdicts[(kind, "broken")].condition(READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "StatusNotComputed")
    assert "RuntimeError" in ready.message and LEAKY not in ready.message
    assert [(k, n, type(e)) for (k, n), e in evaluation.failures.items()] == [(kind, "broken", RuntimeError)]
    for key, reason in dependents.items():
        dependent = verdicts[key].condition(READY)
        assert dependent is not None and (dependent.status, dependent.reason) == ("False", reason), key
    for key, verdict in usual.items():
        if key != (kind, "broken") and key not in dependents:
            assert verdicts[key].conditions == verdict.conditions, key
    config = translate(snap, evaluation)
    listed = {
        "LLMModel": [m.name for m in config.models],
        "LLMMiddleware": [mw.name for m in config.models for mw in m.middleware],
        "MCPServer": [s.name for s in config.mcp_servers],
        "Runbook": [r.name for shard in evaluation.runbook_shards for r in shard.runbooks],
    }
    for listed_kind, names in listed.items():
        expected = sorted(n for (k, n), v in verdicts.items() if k == listed_kind and v.ready)
        assert sorted(names) == expected, listed_kind
        assert ("broken" in names) == (listed_kind != kind and usual[(listed_kind, "broken")].ready)
