"""The operator end to end: real kopf against the Kubernetes API emulator, real MCP fixture servers.

Each test starts the operator (``OperatorRuntime.run``, as ``ai-ops operator`` does) in the test's loop
against a fresh emulator, applies resources like ``kubectl apply`` would, and waits for what a user would
see: conditions, events, the agent ConfigMap and the chat Deployment's Secret wiring.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai_ops_api.agent_config import parse_agent_config
from ai_ops_api.specs import USABLE_SECRET_LABEL, USABLE_SECRET_LABEL_VALUE
from ai_ops_operator.runtime.kube import KubeClient
from ai_ops_operator.runtime.operator import OperatorRuntime
from ai_ops_operator.runtime.settings import OperatorSettings
from tests.harness.waiting import eventually
from tests.support import resources

NS = "default"
AI = "ai-ops.dev/v1alpha1"
CM = "ai-ops-agent-config"
API_KEY_VALUE = "sk-test-DO-NOT-LEAK-4f1d2c"
FIXTURE_TOOLS = ["add", "echo", "fail", "get_pod_status", "slow"]


def quick(settings: Any) -> None:
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.watching.reconnect_backoff = 0.1
    settings.batching.idle_timeout = 0.5
    settings.batching.batch_window = 0.02
    settings.batching.exit_timeout = 0.5


@contextlib.asynccontextmanager
async def running_operator(emulator: Any, **overrides: Any) -> AsyncIterator[OperatorRuntime]:
    settings = OperatorSettings(**{"namespaces": (NS,), "allow_loopback": True, **overrides})
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


# --- manifests ----------------------------------------------------------------------------------


def meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NS}


def provider(name: str = "openai", key_secret: str | None = "openai-key", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "openai", **spec}
    if key_secret:
        body["apiKeySecretRef"] = {"name": key_secret, "key": "api-key"}
    return resources.provider(name, namespace=NS, created=None, **body)


def model(name: str, provider_name: str = "openai", **spec: Any) -> dict[str, Any]:
    """An LLMModel whose provider's model id is its own name."""
    return resources.model(name, provider_name, model_id=name, namespace=NS, created=None, **spec)


def middleware(name: str, model_name: str, type_: str, config: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return resources.middleware(name, model_name, type_, namespace=NS, created=None, config=config, **spec)


def mcpserver(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return resources.mcpserver(name, namespace=NS, created=None, url=url, **spec)


def runbook(name: str, content: str | None = None, **spec: Any) -> dict[str, Any]:
    return resources.runbook(name, content, namespace=NS, created=None, **spec)


def secret(name: str, data: dict[str, str], usable: bool = True) -> dict[str, Any]:
    """A Secret; ``usable`` gives it the label ai-ops resources need to reference it."""
    labels = {USABLE_SECRET_LABEL: USABLE_SECRET_LABEL_VALUE} if usable else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**meta(name), "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def chat_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("ai-ops-chat"),
        "spec": {
            "selector": {"matchLabels": {"app": "chat"}},
            "template": {
                "metadata": {"labels": {"app": "chat"}, "annotations": {"keep": "me"}},
                "spec": {
                    "containers": [
                        {
                            "name": "chat",
                            "image": "ai-ops:dev",
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        },
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


# --- reading what a user sees -------------------------------------------------------------------


def status_of(emulator: Any, plural: str, name: str) -> dict[str, Any]:
    obj = emulator.get(AI, plural, NS, name) or {}
    return dict(obj.get("status") or {})


def condition(emulator: Any, plural: str, name: str, type_: str = "Ready") -> dict[str, Any]:
    for cond in status_of(emulator, plural, name).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def is_ready(emulator: Any, plural: str, name: str, status: str = "True", reason: str | None = None) -> bool:
    cond = condition(emulator, plural, name)
    return cond.get("status") == status and (reason is None or cond.get("reason") == reason)


def health_is(emulator: Any, name: str, health: str) -> bool:
    return status_of(emulator, "mcpservers", name).get("health") == health


def evaluated(emulator: Any) -> bool:
    """Every ai-ops object has conditions for its current generation (the writes of a pass are concurrent)."""
    for plural in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers"):
        for obj in emulator.list(AI, plural, NS):
            status = obj.get("status") or {}
            if status.get("observedGeneration") != obj["metadata"].get("generation") or not status.get(
                "conditions"
            ):
                return False
    return True


def agent_config(emulator: Any) -> Any:
    cm = emulator.get("v1", "configmaps", NS, CM)
    return parse_agent_config(cm["data"]["agent-config.json"]) if cm else None


def server_names(emulator: Any) -> list[str]:
    config = agent_config(emulator)
    return [s.name for s in config.mcp_servers] if config else []


def events_for(emulator: Any, name: str) -> list[tuple[str, str]]:
    return [
        (e["type"], e["reason"])
        for e in emulator.list("v1", "events", NS)
        if e.get("involvedObject", {}).get("name") == name
    ]


def versions(emulator: Any) -> dict[str, str]:
    """resourceVersion of every object the operator may write: any write changes one or adds one."""
    kinds = [("v1", "configmaps"), ("v1", "events"), ("apps/v1", "deployments")]
    kinds += [(AI, plural) for plural in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")]
    return {
        f"{plural}/{obj['metadata']['name']}": obj["metadata"]["resourceVersion"]
        for api_version, plural in kinds
        for obj in emulator.list(api_version, plural, NS)
    }


# --- the tests ----------------------------------------------------------------------------------


async def test_happy_path_conditions_configmap_and_deployment_wiring(
    k8s_emulator: Any, mcp_fixture_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = mcp_fixture_servers.auth
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(secret("mcp-token", {"authorization": f"Bearer {auth.token}"}))
    k8s_emulator.create(chat_deployment())
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o", default=True, temperature=0.2))
    k8s_emulator.create(middleware("retry", "gpt-4o", "model_retry", {"maxRetries": 3}, priority=10))
    k8s_emulator.create(
        mcpserver(
            "tools",
            mcp_fixture_servers.healthy.url,
            toolFilter={"exclude": ["fail", "slow"]},
            healthCheck={"path": "/healthz"},
        )
    )
    k8s_emulator.create(
        mcpserver(
            "secured",
            auth.url,
            scope="external",
            headers=[
                {
                    "name": "Authorization",
                    "valueFrom": {"secretKeyRef": {"name": "mcp-token", "key": "authorization"}},
                }
            ],
        )
    )
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: server_names(k8s_emulator) == ["secured", "tools"], "both servers in the ConfigMap"
        )

        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        for name in ("secured", "tools"):
            await eventually(lambda: health_is(k8s_emulator, name, "Healthy"), f"{name} Healthy")  # noqa: B023

        # Conditions, per kind.
        assert [
            (c["type"], c["status"], c["reason"])
            for c in status_of(k8s_emulator, "llmproviders", "openai")["conditions"]
        ] == [
            ("SecretRefValidated", "True", "SecretFound"),
            ("Ready", "True", "Ready"),
        ]
        model_status = status_of(k8s_emulator, "llmmodels", "gpt-4o")
        assert [(c["type"], c["status"], c["reason"]) for c in model_status["conditions"]] == [
            ("ProviderRefValidated", "True", "ProviderReady"),
            ("SecretRefValidated", "True", "SecretFound"),
            ("Default", "True", "IsDefault"),
            ("Ready", "True", "Ready"),
        ]
        assert model_status["observedGeneration"] == 1
        assert all(
            c["observedGeneration"] == 1 and c["lastTransitionTime"] for c in model_status["conditions"]
        )
        assert [
            (c["type"], c["status"]) for c in status_of(k8s_emulator, "llmmiddlewares", "retry")["conditions"]
        ] == [
            ("ModelRefValidated", "True"),
            ("ConfigValid", "True"),
            ("Ready", "True"),
        ]
        tools = status_of(k8s_emulator, "mcpservers", "tools")
        assert tools["health"] == "Healthy"
        assert tools["tools"] == {"count": 5, "names": FIXTURE_TOOLS}
        assert tools["serverInfo"]["name"] == "ai-ops-fixture-healthy"
        assert (
            tools["consecutiveFailures"] == 0 and tools["lastProbeTime"] and tools["lastProbeLatencyMs"] >= 0
        )
        assert [(c["type"], c["status"], c["reason"]) for c in tools["conditions"]] == [
            ("Accepted", "True", "Accepted"),
            ("Ready", "True", "Healthy"),
        ]
        await eventually(
            lambda: ("Normal", "Ready") in events_for(k8s_emulator, "gpt-4o"), "event Normal Ready"
        )

        # The exact ConfigMap.
        cm = k8s_emulator.get("v1", "configmaps", NS, CM)
        assert cm["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "ai-ops-operator"}
        config = parse_agent_config(cm["data"]["agent-config.json"])  # also checks the checksum
        assert cm["metadata"]["annotations"]["ai-ops.dev/checksum"] == config.checksum
        document = json.loads(cm["data"]["agent-config.json"])
        assert document == {
            "apiVersion": "ai-ops.dev/agent-config/v1",
            "kind": "AgentConfig",
            "namespace": NS,
            "checksum": config.checksum,
            "defaultModel": "gpt-4o",
            "embeddingModel": None,
            "runbookShards": [],
            "models": [
                {
                    "name": "gpt-4o",
                    "model": "gpt-4o",
                    "provider": {"name": "openai", "type": "openai", "baseURL": None, "config": {}},
                    "apiKeySecretRef": {"name": "openai-key", "key": "api-key"},
                    "default": True,
                    "temperature": 0.2,
                    "maxTokens": None,
                    "timeoutSeconds": 60,
                    "systemPrompt": None,
                    "parameters": {},
                    "description": None,
                    "pricing": None,
                    "budget": None,
                    "middleware": [
                        {
                            "name": "retry",
                            "type": "model_retry",
                            "priority": 10,
                            "critical": False,
                            "config": {"maxRetries": 3},
                        }
                    ],
                }
            ],
            "mcpServers": [
                {
                    "name": "secured",
                    "transport": "streamable_http",
                    "url": auth.url,
                    "command": None,
                    "args": [],
                    "env": [],
                    "headers": [
                        {
                            "name": "Authorization",
                            "value": None,
                            "secretRef": {"name": "mcp-token", "key": "authorization"},
                        }
                    ],
                    "scope": "external",
                    "toolFilter": {"include": [], "exclude": []},
                    "investigationTools": "readOnly",
                    "health": "Healthy",
                    "tools": FIXTURE_TOOLS,
                    "description": None,
                },
                {
                    "name": "tools",
                    "transport": "streamable_http",
                    "url": mcp_fixture_servers.healthy.url,
                    "command": None,
                    "args": [],
                    "env": [],
                    "headers": [],
                    "scope": "internal",
                    "toolFilter": {"include": [], "exclude": ["fail", "slow"]},
                    "investigationTools": "readOnly",
                    "health": "Healthy",
                    "tools": ["add", "echo", "get_pod_status"],
                    "description": None,
                },
            ],
        }

        # The Deployment: one projected volume with every referenced key, mounted in every container,
        # everything else kept. A pass that saw only some resources may have wired it first: wait for the
        # wiring of the pass that wrote the ConfigMap above.
        def wired() -> Any:
            template = k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["spec"]["template"]
            volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
            sources = volumes.get("ai-ops-secrets", {}).get("projected", {}).get("sources", [])
            return template if len(sources) == 2 else None

        template = await eventually(wired, "Deployment wired with both Secrets")
        assert "ai-ops.dev/secret-refs-checksum" in template["metadata"]["annotations"]
        assert template["metadata"]["annotations"]["keep"] == "me"
        assert template["metadata"]["labels"] == {"app": "chat"}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
        assert volumes["ai-ops-secrets"]["projected"]["sources"] == [
            {
                "secret": {
                    "name": "mcp-token",
                    "items": [{"key": "authorization", "path": "mcp-token/authorization"}],
                    "optional": True,
                }
            },
            {
                "secret": {
                    "name": "openai-key",
                    "items": [{"key": "api-key", "path": "openai-key/api-key"}],
                    "optional": True,
                }
            },
        ]
        mount = {"name": "ai-ops-secrets", "mountPath": "/var/run/secrets/ai-ops", "readOnly": True}
        chat, sidecar = template["spec"]["containers"]
        assert chat["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, mount]
        assert sidecar["volumeMounts"] == [mount]

    # No Secret value in any ConfigMap, status, event or log line.
    scanned = json.dumps(
        [
            *k8s_emulator.list("v1", "configmaps", NS),
            *k8s_emulator.list("v1", "events", NS),
            *k8s_emulator.list("apps/v1", "deployments", NS),
            *(
                obj.get("status")
                for plural in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")
                for obj in k8s_emulator.list(AI, plural, NS)
            ),
        ]
    )
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for value in (API_KEY_VALUE, auth.token):
        assert value not in scanned
        assert value not in logs
    assert "ConfigMap default/ai-ops-agent-config created" in logs  # the log capture works


async def test_missing_secret_then_created_flips_dependents_without_touching_them(k8s_emulator: Any) -> None:
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o"))
    async with running_operator(k8s_emulator):
        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        assert (
            condition(k8s_emulator, "llmproviders", "openai", "SecretRefValidated")["reason"]
            == "SecretNotFound"
        )
        assert condition(k8s_emulator, "llmmodels", "gpt-4o")["reason"] == "ProviderNotReady"
        await eventually(
            lambda: ("Warning", "SecretNotFound") in events_for(k8s_emulator, "openai"),
            "event Warning SecretNotFound",
        )
        assert agent_config(k8s_emulator).models == ()
        before = k8s_emulator.get(AI, "llmmodels", NS, "gpt-4o")

        k8s_emulator.create(secret("openai-key", {"wrong-key": "x"}))
        await eventually(
            lambda: (
                condition(k8s_emulator, "llmproviders", "openai", "SecretRefValidated").get("reason")
                == "SecretKeyNotFound"
            ),
            "key missing",
        )
        k8s_emulator.patch(
            "v1", "secrets", NS, "openai-key", {"data": {"api-key": base64.b64encode(b"v").decode()}}
        )
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "gpt-4o"), "model ready")
        await eventually(
            lambda: [m.name for m in agent_config(k8s_emulator).models] == ["gpt-4o"], "in ConfigMap"
        )
        after = k8s_emulator.get(AI, "llmmodels", NS, "gpt-4o")
        assert (
            after["spec"] == before["spec"]
            and after["metadata"]["generation"] == before["metadata"]["generation"]
        )
        assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
        assert after["metadata"].get("finalizers") is None
        # lastTransitionTime moved with the status, and an event told so.
        await eventually(
            lambda: ("Normal", "Ready") in events_for(k8s_emulator, "gpt-4o"), "event Normal Ready"
        )


async def test_dangling_references_then_fixed(k8s_emulator: Any) -> None:
    k8s_emulator.create(model("gpt-4o", provider_name="later"))
    k8s_emulator.create(middleware("limit", "ghost", "model_call_limit", {"runLimit": 5}))
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: (
                condition(k8s_emulator, "llmmodels", "gpt-4o", "ProviderRefValidated").get("reason")
                == "ProviderNotFound"
            ),
            "provider not found",
        )
        await eventually(
            lambda: (
                condition(k8s_emulator, "llmmiddlewares", "limit", "ModelRefValidated").get("reason")
                == "ModelNotFound"
            ),
            "model not found",
        )
        assert is_ready(k8s_emulator, "llmmiddlewares", "limit", "False", "ModelNotFound")

        k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
        k8s_emulator.create(provider("later"))
        k8s_emulator.create(model("ghost", provider_name="later"))
        await eventually(lambda: is_ready(k8s_emulator, "llmmodels", "gpt-4o"), "model ready")
        await eventually(lambda: is_ready(k8s_emulator, "llmmiddlewares", "limit"), "middleware ready")
        config = await eventually(
            lambda: (c := agent_config(k8s_emulator)) and len(c.models) == 2 and c,
            "both models in the ConfigMap",
        )
        assert [mw.name for mw in config.model_by_name("ghost").middleware] == ["limit"]


async def test_default_conflict_oldest_wins_with_a_warning(k8s_emulator: Any) -> None:
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(provider())
    k8s_emulator.create(model("first", default=True))
    await asyncio.sleep(1.1)  # creationTimestamp has one-second resolution
    k8s_emulator.create(model("second", default=True))
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: (
                condition(k8s_emulator, "llmmodels", "second", "Default").get("reason") == "DefaultConflict"
            ),
            "conflict reported",
        )

        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        assert condition(k8s_emulator, "llmmodels", "first", "Default")["status"] == "True"
        assert "'first' is older" in condition(k8s_emulator, "llmmodels", "second", "Default")["message"]
        assert is_ready(k8s_emulator, "llmmodels", "second")  # still usable, just not the default
        await eventually(
            lambda: ("Warning", "DefaultConflict") in events_for(k8s_emulator, "second"), "warning event"
        )
        assert agent_config(k8s_emulator).default_model == "first"


async def test_invalid_middleware_configs_name_the_field(k8s_emulator: Any) -> None:
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o"))
    k8s_emulator.create(middleware("retry", "gpt-4o", "model_retry", {"maxRetries": -1}))
    k8s_emulator.create(middleware("cache", "gpt-4o", "cache", {"ttlSeconds": 0, "bogus": 1}))
    k8s_emulator.create(middleware("fallback", "gpt-4o", "model_fallback", {"models": ["nope"]}))
    k8s_emulator.create(middleware("plugin", "gpt-4o", "custom", {"entryPoint": "not-installed"}))
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: condition(k8s_emulator, "llmmiddlewares", "plugin", "ConfigValid"), "evaluated"
        )

        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        retry = condition(k8s_emulator, "llmmiddlewares", "retry", "ConfigValid")
        assert (retry["status"], retry["reason"]) == ("False", "InvalidConfig")
        assert "config.maxRetries" in retry["message"]
        cache = condition(k8s_emulator, "llmmiddlewares", "cache", "ConfigValid")
        assert "config.ttlSeconds" in cache["message"] and "config.bogus" in cache["message"]
        assert (
            condition(k8s_emulator, "llmmiddlewares", "fallback", "ConfigValid")["reason"]
            == "ReferencedModelNotFound"
        )
        assert (
            condition(k8s_emulator, "llmmiddlewares", "plugin", "ConfigValid")["reason"]
            == "EntryPointNotFound"
        )
        await eventually(
            lambda: ("Warning", "InvalidConfig") in events_for(k8s_emulator, "retry"),
            "event Warning InvalidConfig",
        )
        # Not critical: the model stays usable, without the broken middleware.
        assert is_ready(k8s_emulator, "llmmodels", "gpt-4o")
        config = await eventually(lambda: agent_config(k8s_emulator), "ConfigMap")
        assert config.model_by_name("gpt-4o").middleware == ()


async def test_mcp_server_stopped_turns_unhealthy_and_comes_back(
    k8s_emulator: Any, mcp_fixture_servers: Any
) -> None:
    server = mcp_fixture_servers.restartable
    check = {"intervalSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2}
    k8s_emulator.create(mcpserver("flaky", server.url, healthCheck=check))
    async with running_operator(k8s_emulator):
        await eventually(lambda: server_names(k8s_emulator) == ["flaky"], "healthy server in the ConfigMap")
        server.stop()
        try:
            await eventually(
                lambda: status_of(k8s_emulator, "mcpservers", "flaky").get("health") == "Unhealthy",
                "Unhealthy",
                30,
            )
            status = status_of(k8s_emulator, "mcpservers", "flaky")
            assert status["consecutiveFailures"] == 2
            assert is_ready(k8s_emulator, "mcpservers", "flaky", "False", "Unhealthy")
            assert "connection failed" in condition(k8s_emulator, "mcpservers", "flaky")["message"]
            await eventually(lambda: server_names(k8s_emulator) == [], "gone from the ConfigMap")
            await eventually(
                lambda: ("Warning", "Unhealthy") in events_for(k8s_emulator, "flaky"),
                "event Warning Unhealthy",
            )
        finally:
            server.start()
        await eventually(lambda: server_names(k8s_emulator) == ["flaky"], "back in the ConfigMap", 30)
        await eventually(
            lambda: status_of(k8s_emulator, "mcpservers", "flaky").get("consecutiveFailures") == 0, "healed"
        )
        await eventually(
            lambda: ("Normal", "Healthy") in events_for(k8s_emulator, "flaky"),
            "event Normal Healthy",
        )


async def test_bearer_server_unauthenticated_then_healthy_with_the_header_secret(
    k8s_emulator: Any, mcp_fixture_servers: Any
) -> None:
    auth = mcp_fixture_servers.auth
    k8s_emulator.create(mcpserver("secured", auth.url))
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: status_of(k8s_emulator, "mcpservers", "secured").get("health") == "Unauthenticated",
            "Unauthenticated",
        )
        ready = condition(k8s_emulator, "mcpservers", "secured")
        assert (ready["status"], ready["reason"]) == ("False", "Unauthenticated")
        assert "no headers are configured" in ready["message"]
        assert server_names(k8s_emulator) == []

        header = {
            "name": "Authorization",
            "valueFrom": {"secretKeyRef": {"name": "mcp-token", "key": "authorization"}},
        }
        k8s_emulator.patch(AI, "mcpservers", NS, "secured", {"spec": {"headers": [header]}})
        await eventually(
            lambda: (
                condition(k8s_emulator, "mcpservers", "secured", "Accepted").get("reason") == "SecretNotFound"
            ),
            "header Secret missing",
        )
        k8s_emulator.create(secret("mcp-token", {"authorization": f"Bearer {auth.token}"}))
        await eventually(
            lambda: status_of(k8s_emulator, "mcpservers", "secured").get("health") == "Healthy", "Healthy"
        )
        await eventually(lambda: server_names(k8s_emulator) == ["secured"], "in the ConfigMap")
        assert status_of(k8s_emulator, "mcpservers", "secured")["observedGeneration"] == 2


async def test_hanging_server_is_cut_at_the_deadline(k8s_emulator: Any, mcp_fixture_servers: Any) -> None:
    check = {"intervalSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 1}
    k8s_emulator.create(mcpserver("hangs", mcp_fixture_servers.hanging.url, healthCheck=check))
    k8s_emulator.create(mcpserver("fine", mcp_fixture_servers.healthy.url, healthCheck=check))
    async with running_operator(k8s_emulator):
        await eventually(
            lambda: status_of(k8s_emulator, "mcpservers", "hangs").get("health") == "Unhealthy", "cut"
        )
        status = status_of(k8s_emulator, "mcpservers", "hangs")
        assert "within the timeout (1 s)" in condition(k8s_emulator, "mcpservers", "hangs")["message"]
        # It waited for the whole deadline, and no longer than a fraction of the interval.
        assert 1000 <= status["lastProbeLatencyMs"] < 5000
        await eventually(lambda: server_names(k8s_emulator) == ["fine"], "only the healthy one is used")


async def test_stdio_maintenance_refused_urls_and_no_deployment(
    k8s_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ai_ops.operator")
    k8s_emulator.create(mcpserver("metadata", "http://169.254.169.254/mcp"))
    k8s_emulator.create(
        {
            "apiVersion": AI,
            "kind": "MCPServer",
            "metadata": meta("local"),
            "spec": {"transport": "stdio", "command": "mcp-x"},
        }
    )
    k8s_emulator.create(mcpserver("parked", "http://mcp.example.com/mcp", maintenance=True))
    async with running_operator(k8s_emulator, stdio_commands=frozenset({"mcp-x"})):
        await eventually(lambda: server_names(k8s_emulator) == ["local"], "only the stdio server is usable")

        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        refused = condition(k8s_emulator, "mcpservers", "metadata", "Accepted")
        assert (refused["status"], refused["reason"]) == ("False", "URLNotAllowed")
        assert "metadata" in refused["message"]
        assert status_of(k8s_emulator, "mcpservers", "local")["health"] == "NotProbed"
        assert status_of(k8s_emulator, "mcpservers", "parked")["health"] == "Maintenance"
        assert is_ready(k8s_emulator, "mcpservers", "parked", "False", "Maintenance")
        # More passes, one log line about the missing Deployment.
        k8s_emulator.patch(AI, "mcpservers", NS, "parked", {"spec": {"description": "later"}})
        await eventually(
            lambda: status_of(k8s_emulator, "mcpservers", "parked").get("observedGeneration") == 2, "seen"
        )
    lines = [r for r in caplog.records if "nothing consumes it" in r.getMessage()]
    assert len(lines) == 1


async def test_restart_converges_with_no_extra_writes(k8s_emulator: Any, mcp_fixture_servers: Any) -> None:
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE}))
    k8s_emulator.create(chat_deployment())
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o", default=True))
    k8s_emulator.create(middleware("retry", "gpt-4o", "model_retry", {}))
    k8s_emulator.create(model("broken", provider_name="missing"))
    k8s_emulator.create(mcpserver("tools", mcp_fixture_servers.healthy.url))
    async with running_operator(k8s_emulator) as first:
        await eventually(lambda: server_names(k8s_emulator) == ["tools"], "converged")
        await eventually(
            lambda: (
                "ai-ops.dev/secret-refs-checksum"
                in str(k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat"))
            ),
            "wired",
        )
        await eventually(lambda: first.reconciler.idle, "settled")
        checksum = k8s_emulator.get("v1", "configmaps", NS, CM)["metadata"]["annotations"][
            "ai-ops.dev/checksum"
        ]
    before = versions(k8s_emulator)
    async with running_operator(k8s_emulator) as second:
        # One full pass over the namespace and one probe of the server, both finished.
        await eventually(
            lambda: second.reconciler.passes >= 1 and second.prober.probes_done >= 1, "second run active"
        )
        await eventually(lambda: second.reconciler.idle, "second run settled")
    assert versions(k8s_emulator) == before
    assert (
        k8s_emulator.get("v1", "configmaps", NS, CM)["metadata"]["annotations"]["ai-ops.dev/checksum"]
        == checksum
    )


async def test_peering_gate_lets_only_the_highest_priority_replica_probe(k8s_emulator: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from ai_ops_operator.runtime.peering import PeeringGate

    now = datetime.now(UTC)
    k8s_emulator.create(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "ai-ops", "namespace": NS}}
    )

    def peer(priority: int, seen: datetime) -> dict[str, Any]:
        return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": 60}

    kube = KubeClient.from_environment(str(k8s_emulator.kubeconfig_path))
    try:
        settings = OperatorSettings(namespaces=(NS,), peering_name="ai-ops")
        low = OperatorRuntime(settings, kube)
        high = OperatorRuntime(settings, kube)
        low.priority, high.priority = 10, 20
        k8s_emulator.patch(
            "kopf.dev/v1",
            "kopfpeerings",
            NS,
            "ai-ops",
            {
                "status": {
                    low.identity: peer(10, now),
                    high.identity: peer(20, now),
                    "gone": peer(99, now - timedelta(hours=1)),
                }
            },
            subresource="status",
        )
        assert await PeeringGate(high).active()  # the dead peer of priority 99 does not count
        assert not await PeeringGate(low).active()
        standalone = OperatorRuntime(OperatorSettings(namespaces=(NS,)), kube)
        assert await PeeringGate(standalone).active()
    finally:
        kube.close()


async def test_deleting_never_waits_for_the_operator_and_updates_the_configmap(k8s_emulator: Any) -> None:
    k8s_emulator.create(provider("local", key_secret=None, type="ollama"))
    k8s_emulator.create(model("llama", provider_name="local"))
    k8s_emulator.create(
        {
            "apiVersion": AI,
            "kind": "MCPServer",
            "metadata": meta("files"),
            "spec": {"transport": "stdio", "command": "mcp-files"},
        }
    )
    async with running_operator(k8s_emulator, stdio_commands=frozenset({"mcp-files"})) as runtime:
        await eventually(lambda: server_names(k8s_emulator) == ["files"], "in the ConfigMap")
        await eventually(lambda: evaluated(k8s_emulator), "all evaluated")
        labels = {"namespace": NS, "name": "files", "state": "NotProbed"}
        assert runtime.metrics.registry.get_sample_value("ai_ops_mcp_server_health", labels) == 1.0
        for plural, name in (("mcpservers", "files"), ("llmmodels", "llama")):
            assert not (k8s_emulator.get(AI, plural, NS, name)["metadata"].get("finalizers"))
            k8s_emulator.delete(AI, plural, NS, name)
            assert k8s_emulator.get(AI, plural, NS, name) is None  # gone at once: nothing to wait for
        config = await eventually(
            lambda: (c := agent_config(k8s_emulator)) and not c.models and not c.mcp_servers and c, "emptied"
        )
        assert config.default_model is None
        await eventually(
            lambda: runtime.metrics.registry.get_sample_value("ai_ops_mcp_server_health", labels) is None,
            "metrics series removed",
        )


async def test_only_a_new_set_of_referenced_keys_rolls_the_deployment(k8s_emulator: Any) -> None:
    k8s_emulator.create(secret("openai-key", {"api-key": API_KEY_VALUE, "other-key": "sk-2"}))
    k8s_emulator.create(chat_deployment())
    k8s_emulator.create(provider())
    k8s_emulator.create(model("gpt-4o"))

    def template_checksum() -> str | None:
        template = k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["spec"]["template"]
        return (template["metadata"].get("annotations") or {}).get("ai-ops.dev/secret-refs-checksum")

    async with running_operator(k8s_emulator) as runtime:
        first = await eventually(template_checksum, "Deployment wired")
        await eventually(lambda: runtime.reconciler.idle, "settled")
        version = k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["metadata"]["resourceVersion"]

        # A rotated value: a pass runs, nothing is patched (the kubelet refreshes projected volumes).
        passes = runtime.reconciler.passes
        k8s_emulator.patch(
            "v1", "secrets", NS, "openai-key", {"data": {"api-key": base64.b64encode(b"sk-new").decode()}}
        )
        await eventually(
            lambda: runtime.reconciler.passes > passes and runtime.reconciler.idle, "pass after rotation"
        )
        assert (
            k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["metadata"]["resourceVersion"]
            == version
        )

        # Another key referenced: the set changed, so the template is patched.
        k8s_emulator.patch(
            AI,
            "llmmodels",
            NS,
            "gpt-4o",
            {"spec": {"apiKeySecretRef": {"name": "openai-key", "key": "other-key"}}},
        )
        second = await eventually(lambda: (c := template_checksum()) != first and c, "rewired")
        assert second != first
        template = k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["spec"]["template"]
        sources = next(v for v in template["spec"]["volumes"] if v["name"] == "ai-ops-secrets")["projected"][
            "sources"
        ]
        assert sources == [
            {
                "secret": {
                    "name": "openai-key",
                    "items": [{"key": "other-key", "path": "openai-key/other-key"}],
                    "optional": True,
                }
            }
        ]


async def test_cluster_wide_one_configmap_per_namespace(k8s_emulator: Any) -> None:
    k8s_emulator.seed_namespace("team-b")
    for namespace, name in ((NS, "llama"), ("team-b", "mistral")):
        k8s_emulator.create(
            {
                "apiVersion": AI,
                "kind": "LLMProvider",
                "metadata": {"name": "local", "namespace": namespace},
                "spec": {"type": "ollama"},
            }
        )
        k8s_emulator.create(
            {
                "apiVersion": AI,
                "kind": "LLMModel",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"providerRef": {"name": "local"}, "model": name},
            }
        )
    async with running_operator(k8s_emulator, namespaces=(), clusterwide=True):

        def models_in(namespace: str) -> list[str] | None:
            cm = k8s_emulator.get("v1", "configmaps", namespace, CM)
            config = parse_agent_config(cm["data"]["agent-config.json"]) if cm else None
            return [m.name for m in config.models] if config else None

        assert await eventually(lambda: models_in(NS), "default's ConfigMap") == ["llama"]
        assert await eventually(lambda: models_in("team-b"), "team-b's ConfigMap") == ["mistral"]


async def test_a_chat_deployment_alone_gets_an_empty_config(k8s_emulator: Any) -> None:
    """A fresh install has the chat Deployment and no ai-ops resources yet: the chat must still get a
    config (no models), so it turns Ready and says how to configure a model, instead of waiting forever."""
    k8s_emulator.create(chat_deployment())
    async with running_operator(k8s_emulator):
        config = await eventually(lambda: agent_config(k8s_emulator), "an agent ConfigMap")
        assert (config.namespace, config.models, config.mcp_servers, config.default_model) == (
            NS,
            (),
            (),
            None,
        )
        template = k8s_emulator.get("apps/v1", "deployments", NS, "ai-ops-chat")["spec"]["template"]
        # No Secret is referenced, so the pod template is left alone (no rollout).
        assert all(v["name"] != "ai-ops-secrets" for v in template["spec"].get("volumes", []))


async def test_a_configmap_write_that_fails_shows_in_ready_and_is_retried(k8s_emulator: Any) -> None:
    """The agent ConfigMap cannot be written (a 403): the otherwise ready resources say so in Ready (the
    agent cannot use them), and the pass is retried with backoff until the write goes through."""
    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'configmaps is forbidden: User "system:serviceaccount:ai-ops:ai-ops-operator" cannot create',
    }
    k8s_emulator.emulator[f"post /api/v1/namespaces/{NS}/configmaps"] << 403 << forbidden
    k8s_emulator.create(provider("local", key_secret=None, type="ollama"))
    async with running_operator(k8s_emulator) as runtime:
        await eventually(
            lambda: is_ready(k8s_emulator, "llmproviders", "local", "False", "AgentConfigNotWritten"),
            "Ready False because the ConfigMap cannot be written",
        )
        message = condition(k8s_emulator, "llmproviders", "local")["message"]
        assert "agent ConfigMap could not be written" in message and "403" in message
        # kmock answers the scripted 403 once: the retry (with backoff) writes the ConfigMap and Ready recovers.
        await eventually(lambda: agent_config(k8s_emulator), "the ConfigMap written on retry")
        await eventually(lambda: is_ready(k8s_emulator, "llmproviders", "local"), "Ready again")
        assert runtime.metrics.reconcile_errors.labels(NS)._value.get() >= 1
