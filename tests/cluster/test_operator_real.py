"""The operator (kopf, in the test's loop) against the real kube-apiserver of tests/cluster.

What the emulator cannot show: the server's own `metadata.generation`, that status is stored only through
the `/status` subresource, the server's defaulting of a real Deployment (the chart's chat Deployment, as
rendered from the chart) under the operator's patch, Event validation, and structural pruning of status
fields the CRD schema does not know (a pruned field would make the operator rewrite the status forever).
No kubelet: the Deployment is stored, its pods never run.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from ai_ops_api.agent_config import parse_agent_config
from ai_ops_api.specs import RESOURCES_BY_PLURAL, USABLE_SECRET_LABEL, USABLE_SECRET_LABEL_VALUE
from tests.cluster.controlplane import ControlPlane
from tests.cluster.helpers import AI, PLURALS, install_crds, running_operator
from tests.harness.mcp_servers import McpFixtureServer
from tests.harness.waiting import eventually

CM = "ai-ops-agent-config"
CHAT = "ai-ops-chat"
API_KEY_VALUE = "sk-real-apiserver-DO-NOT-LEAK-9c1e"
# Polling a real server: a few requests a second are plenty.
POLL = 0.2


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    return control_plane


@pytest.fixture
def namespace(plane: ControlPlane) -> str:
    return plane.create_namespace(prefix="op")


@pytest.fixture(scope="module")
def restartable() -> Iterator[McpFixtureServer]:
    """An MCP fixture server of this module's own, stopped and started by the health test."""
    with tempfile.TemporaryDirectory(prefix="ai-ops-mcp-real-") as folder:
        server = McpFixtureServer("restartable", Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()


# --- objects ------------------------------------------------------------------------------------


class Cluster:
    """Admin access to one namespace of the control plane, reading what a user would see."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.api = plane.api_client()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def create(self, plural: str, spec: dict[str, Any], name: str) -> dict[str, Any]:
        body = {
            "apiVersion": AI,
            "kind": RESOURCES_BY_PLURAL[plural].kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            "ai-ops.dev", "v1alpha1", self.namespace, plural, body
        )
        return created

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "ai-ops.dev", "v1alpha1", self.namespace, plural, name
        )
        return obj

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.get(plural, name).get("status") or {})

    def ready(self, plural: str, name: str) -> dict[str, Any]:
        for cond in self.status(plural, name).get("conditions") or []:
            if cond["type"] == "Ready":
                return dict(cond)
        return {}

    def secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.namespace,
            client.V1Secret(
                # Only Secrets that opt in may be referenced by ai-ops resources.
                metadata=client.V1ObjectMeta(
                    name=name, labels={USABLE_SECRET_LABEL: USABLE_SECRET_LABEL_VALUE}
                ),
                data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            ),
        )

    def chart_chat_deployment(self) -> dict[str, Any]:
        """The chart's chat Deployment, rendered by Helm's engine, created in this namespace."""
        from tests.support.chart_render import load_chart, render

        rendered = render(load_chart(), {}, namespace=self.namespace)
        body = rendered.get("Deployment", CHAT)
        created: dict[str, Any] = self.api.sanitize_for_serialization(
            self.apps.create_namespaced_deployment(self.namespace, body)
        )
        return created

    def deployment(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.sanitize_for_serialization(
            self.apps.read_namespaced_deployment(CHAT, self.namespace)
        )
        return obj

    def agent_config(self) -> Any:
        try:
            cm = self.core.read_namespaced_config_map(CM, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return parse_agent_config(cm.data["agent-config.json"])

    def server_names(self) -> list[str]:
        config = self.agent_config()
        return [s.name for s in config.mcp_servers] if config else []

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [self.api.sanitize_for_serialization(e) for e in items if e.involved_object.name == name]

    def evaluated(self) -> bool:
        """Every ai-ops object has conditions for its current generation."""
        for plural in PLURALS:
            listed = self.custom.list_namespaced_custom_object(
                "ai-ops.dev", "v1alpha1", self.namespace, plural
            )
            for obj in listed["items"]:
                status = obj.get("status") or {}
                if status.get("observedGeneration") != obj["metadata"]["generation"] or not status.get(
                    "conditions"
                ):
                    return False
        return True

    def versions(self) -> dict[str, str]:
        """resourceVersion of everything the operator may write: any write changes one or adds one."""
        found = {
            f"configmaps/{o.metadata.name}": o.metadata.resource_version
            for o in self.core.list_namespaced_config_map(self.namespace).items
        }
        found |= {
            f"events/{o.metadata.name}": o.metadata.resource_version
            for o in self.core.list_namespaced_event(self.namespace).items
        }
        found |= {
            f"deployments/{o.metadata.name}": o.metadata.resource_version
            for o in self.apps.list_namespaced_deployment(self.namespace).items
        }
        for plural in PLURALS:
            listed = self.custom.list_namespaced_custom_object(
                "ai-ops.dev", "v1alpha1", self.namespace, plural
            )
            found |= {
                f"{plural}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in listed["items"]
            }
        return found


@pytest.fixture
def cluster(plane: ControlPlane, namespace: str) -> Iterator[Cluster]:
    view = Cluster(plane, namespace)
    try:
        yield view
    finally:
        view.close()


def provider_spec() -> dict[str, Any]:
    return {"type": "openai", "apiKeySecretRef": {"name": "openai-key", "key": "api-key"}}


def model_spec(**extra: Any) -> dict[str, Any]:
    return {"providerRef": {"name": "openai"}, "model": "gpt-4o", "default": True, **extra}


def operator_writes(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The managedFields entries of the operator's own writes (kopf and our client share the process)."""
    return [
        entry
        for entry in obj["metadata"].get("managedFields") or []
        if entry.get("operation") == "Update" and entry.get("manager") != "kubectl-create"
    ]


# --- the tests ----------------------------------------------------------------------------------


async def test_conditions_configmap_events_and_the_chart_deployment_wired(
    plane: ControlPlane, cluster: Cluster, mcp_fixture_servers: Any
) -> None:
    cluster.secret("openai-key", {"api-key": API_KEY_VALUE})
    chart_deployment = cluster.chart_chat_deployment()
    chart_template = chart_deployment["spec"]["template"]
    cluster.create("llmproviders", provider_spec(), "openai")
    cluster.create("llmmodels", model_spec(temperature=0.2), "gpt-4o")
    cluster.create("mcpservers", {"url": mcp_fixture_servers.healthy.url}, "tools")

    async with running_operator(plane.kubeconfig, cluster.namespace) as runtime:
        await eventually(lambda: cluster.server_names() == ["tools"], "the server in the ConfigMap", 30, POLL)
        await eventually(cluster.evaluated, "every object evaluated", 30, POLL)
        await eventually(
            lambda: cluster.status("mcpservers", "tools").get("health") == "Healthy", "Healthy", 30, POLL
        )

        model_status = cluster.status("llmmodels", "gpt-4o")
        assert [(c["type"], c["status"]) for c in model_status["conditions"]] == [
            ("ProviderRefValidated", "True"),
            ("SecretRefValidated", "True"),
            ("Default", "True"),
            ("Ready", "True"),
        ]
        assert model_status["observedGeneration"] == 1
        tools = cluster.status("mcpservers", "tools")
        # Every field the operator writes survived the server's structural pruning.
        assert tools["tools"]["count"] == 5
        assert tools["serverInfo"]["name"] == "ai-ops-fixture-healthy"
        assert tools["consecutiveFailures"] == 0 and tools["lastProbeTime"]

        # Status writes never touch the spec: the server's generation stays where the create left it.
        for plural, name in (("llmproviders", "openai"), ("llmmodels", "gpt-4o"), ("mcpservers", "tools")):
            assert cluster.get(plural, name)["metadata"]["generation"] == 1

        config = cluster.agent_config()
        assert config.default_model == "gpt-4o"
        assert config.model_by_name("gpt-4o").api_key_secret_ref.name == "openai-key"

        def wired() -> dict[str, Any] | None:
            deployment = cluster.deployment()
            annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            return deployment if "ai-ops.dev/secret-refs-checksum" in annotations else None

        deployment = await eventually(wired, "the chat Deployment wired", 30, POLL)
        template = deployment["spec"]["template"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        # The chart's own volumes are all kept, as the server stored them, and the projected one added.
        for volume in chart_template["spec"]["volumes"]:
            assert volumes[volume["name"]] == volume
        assert set(volumes) == {v["name"] for v in chart_template["spec"]["volumes"]} | {"ai-ops-secrets"}
        assert volumes["ai-ops-secrets"]["projected"]["sources"] == [
            {
                "secret": {
                    "name": "openai-key",
                    "items": [{"key": "api-key", "path": "openai-key/api-key"}],
                    "optional": True,
                }
            }
        ]
        (container,) = template["spec"]["containers"]
        (chart_container,) = chart_template["spec"]["containers"]
        assert container["volumeMounts"] == [
            *chart_container["volumeMounts"],
            {"name": "ai-ops-secrets", "mountPath": "/var/run/secrets/ai-ops", "readOnly": True},
        ]
        # Labels and annotations of the chart's pod template are kept.
        for key, value in (chart_template["metadata"].get("annotations") or {}).items():
            assert template["metadata"]["annotations"][key] == value
        assert template["metadata"]["labels"] == chart_template["metadata"]["labels"]
        # A new pod template: the server bumped the generation (a controller manager would roll the pods).
        assert deployment["metadata"]["generation"] == 2

        # Events, accepted by the server's validation, one per transition.
        ready_events = [e for e in cluster.events("gpt-4o") if e["reason"] == "Ready"]
        assert len(ready_events) == 1
        assert ready_events[0]["type"] == "Normal"
        assert ready_events[0]["source"]["component"] == "ai-ops-operator"
        assert (
            ready_events[0]["involvedObject"]["uid"] == cluster.get("llmmodels", "gpt-4o")["metadata"]["uid"]
        )
        assert runtime.status_writer.events_posted >= 3

    # No Secret value in any ConfigMap, status, event or the Deployment.
    scanned = json.dumps(
        [
            [
                cluster.api.sanitize_for_serialization(o)
                for o in cluster.core.list_namespaced_config_map(cluster.namespace).items
            ],
            [
                cluster.api.sanitize_for_serialization(o)
                for o in cluster.core.list_namespaced_event(cluster.namespace).items
            ],
            cluster.deployment(),
            [
                cluster.get(p, n)
                for p, n in (("llmproviders", "openai"), ("llmmodels", "gpt-4o"), ("mcpservers", "tools"))
            ],
        ]
    )
    assert API_KEY_VALUE not in scanned
    assert base64.b64encode(API_KEY_VALUE.encode()).decode() not in scanned


async def test_a_spec_change_is_observed_at_the_servers_new_generation(
    plane: ControlPlane, cluster: Cluster
) -> None:
    cluster.secret("openai-key", {"api-key": API_KEY_VALUE})
    cluster.create("llmproviders", provider_spec(), "openai")
    cluster.create("llmmodels", model_spec(), "gpt-4o")
    async with running_operator(plane.kubeconfig, cluster.namespace):
        await eventually(
            lambda: cluster.ready("llmmodels", "gpt-4o").get("status") == "True", "Ready", 30, POLL
        )
        cluster.custom.patch_namespaced_custom_object(
            "ai-ops.dev", "v1alpha1", cluster.namespace, "llmmodels", "gpt-4o", {"spec": {"temperature": 0.7}}
        )
        assert cluster.get("llmmodels", "gpt-4o")["metadata"]["generation"] == 2
        status = await eventually(
            lambda: (s := cluster.status("llmmodels", "gpt-4o")).get("observedGeneration") == 2 and s,
            "observedGeneration 2",
            30,
            POLL,
        )
        assert {c["type"]: c["observedGeneration"] for c in status["conditions"]} == {
            "ProviderRefValidated": 2,
            "SecretRefValidated": 2,
            "Default": 2,
            "Ready": 2,
        }
        config = await eventually(
            lambda: (c := cluster.agent_config()) and c.model_by_name("gpt-4o").temperature == 0.7 and c,
            "the new temperature in the ConfigMap",
            30,
            POLL,
        )
        assert config.default_model == "gpt-4o"


async def test_status_is_written_through_the_status_subresource(
    plane: ControlPlane, cluster: Cluster
) -> None:
    cluster.create(
        "llmproviders", {"type": "openai", "apiKeySecretRef": {"name": "missing", "key": "k"}}, "openai"
    )
    # The real server ignores status in a write of the main resource (the CRDs enable /status): what the
    # operator writes there would be dropped without an error.
    cluster.custom.patch_namespaced_custom_object(
        "ai-ops.dev",
        "v1alpha1",
        cluster.namespace,
        "llmproviders",
        "openai",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Forged",
                        "message": "",
                        "lastTransitionTime": "2020-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )
    assert cluster.status("llmproviders", "openai") == {}

    async with running_operator(plane.kubeconfig, cluster.namespace):
        ready = await eventually(
            lambda: cluster.ready("llmproviders", "openai"), "a Ready condition", 30, POLL
        )
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    obj = cluster.get("llmproviders", "openai")
    status_writers = [e for e in obj["metadata"]["managedFields"] if e.get("subresource") == "status"]
    assert status_writers, obj["metadata"]["managedFields"]
    assert all("f:status" in e["fieldsV1"] for e in status_writers)
    # No write of the main resource by the operator ever carried the status.
    main_writers = [e for e in obj["metadata"]["managedFields"] if not e.get("subresource")]
    assert not any("f:status" in e["fieldsV1"] for e in main_writers)
    assert obj["metadata"]["generation"] == 1


async def test_mcp_server_stopped_turns_unhealthy_and_comes_back(
    plane: ControlPlane, cluster: Cluster, restartable: McpFixtureServer
) -> None:
    check = {"intervalSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2}
    cluster.create("mcpservers", {"url": restartable.url, "healthCheck": check}, "flaky")
    async with running_operator(plane.kubeconfig, cluster.namespace):
        await eventually(
            lambda: cluster.server_names() == ["flaky"], "healthy server in the ConfigMap", 30, POLL
        )
        restartable.stop()
        try:
            await eventually(
                lambda: cluster.status("mcpservers", "flaky").get("health") == "Unhealthy",
                "Unhealthy",
                40,
                POLL,
            )
            status = cluster.status("mcpservers", "flaky")
            assert status["consecutiveFailures"] == 2
            ready = cluster.ready("mcpservers", "flaky")
            assert (ready["status"], ready["reason"]) == ("False", "Unhealthy")
            assert "connection failed" in ready["message"]
            await eventually(lambda: cluster.server_names() == [], "gone from the ConfigMap", 30, POLL)
            await eventually(
                lambda: any(
                    (e["type"], e["reason"]) == ("Warning", "Unhealthy") for e in cluster.events("flaky")
                ),
                "event Warning Unhealthy",
                30,
                POLL,
            )
        finally:
            restartable.start()
        await eventually(lambda: cluster.server_names() == ["flaky"], "back in the ConfigMap", 40, POLL)
        await eventually(
            lambda: cluster.status("mcpservers", "flaky").get("consecutiveFailures") == 0, "healed", 30, POLL
        )
        await eventually(
            lambda: any((e["type"], e["reason"]) == ("Normal", "Healthy") for e in cluster.events("flaky")),
            "event Normal Healthy",
            30,
            POLL,
        )


async def test_a_restart_converges_with_no_extra_writes(
    plane: ControlPlane, cluster: Cluster, mcp_fixture_servers: Any
) -> None:
    cluster.secret("openai-key", {"api-key": API_KEY_VALUE})
    cluster.chart_chat_deployment()
    cluster.create("llmproviders", provider_spec(), "openai")
    cluster.create("llmmodels", model_spec(), "gpt-4o")
    cluster.create(
        "llmmiddlewares", {"modelRef": {"name": "gpt-4o"}, "type": "model_retry", "config": {}}, "retry"
    )
    cluster.create("llmmodels", {"providerRef": {"name": "missing"}, "model": "x"}, "broken")
    cluster.create("mcpservers", {"url": mcp_fixture_servers.healthy.url}, "tools")
    async with running_operator(plane.kubeconfig, cluster.namespace) as first:
        await eventually(lambda: cluster.server_names() == ["tools"], "converged", 30, POLL)
        await eventually(
            lambda: "ai-ops.dev/secret-refs-checksum" in str(cluster.deployment()["spec"]["template"]),
            "wired",
            30,
            POLL,
        )
        await eventually(cluster.evaluated, "every object evaluated", 30, POLL)
        await eventually(lambda: first.reconciler.idle, "settled", 30, POLL)
    before = cluster.versions()
    async with running_operator(plane.kubeconfig, cluster.namespace) as second:
        # One full pass over the namespace and one probe of the server, both finished.
        await eventually(
            lambda: second.reconciler.passes >= 1 and second.prober.probes_done >= 1,
            "second run active",
            30,
            POLL,
        )
        await eventually(lambda: second.reconciler.idle, "second run settled", 30, POLL)
        # What the second run might still write arrives within a pass or two: give it the time.
        await eventually(lambda: second.reconciler.passes >= 1, "", 1, POLL)
    after = cluster.versions()
    assert after == before


async def test_runbooks_are_ready_and_published_in_shards(plane: ControlPlane, cluster: Cluster) -> None:
    from ai_ops_api.agent_config import RUNBOOK_SHARD_DATA_KEY, parse_runbook_shard

    cluster.core.create_namespaced_config_map(
        cluster.namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="texts"), data={"dns.md": "## Check\nCoreDNS."}),
    )
    cluster.create("runbooks", {"title": "Pod crash-looping", "content": "## Symptoms\nRestarts."}, "crash")
    cluster.create(
        "runbooks",
        {"title": "DNS failures", "contentFrom": {"configMapKeyRef": {"name": "texts", "key": "dns.md"}}},
        "dns",
    )

    def shard_runbooks() -> dict[str, str] | None:
        config = cluster.agent_config()
        if config is None or not config.runbook_shards:
            return None
        (ref,) = config.runbook_shards
        data = cluster.core.read_namespaced_config_map(ref.name, cluster.namespace).data
        shard = parse_runbook_shard(data[RUNBOOK_SHARD_DATA_KEY])
        assert shard.checksum() == ref.checksum
        return {entry.name: entry.content for entry in shard.runbooks}

    async with running_operator(plane.kubeconfig, cluster.namespace):
        for name in ("crash", "dns"):
            await eventually(
                lambda n=name: cluster.ready("runbooks", n).get("status") == "True", name, 30, POLL
            )
        status = cluster.status("runbooks", "dns")
        assert {c["type"]: c["reason"] for c in status["conditions"]}["ContentResolved"] == "ConfigMapFound"
        assert status["observedGeneration"] == 1 and status["sections"] >= 1
        assert await eventually(
            lambda: (
                (r := shard_runbooks()) == {"crash": "## Symptoms\nRestarts.", "dns": "## Check\nCoreDNS."}
                and r
            ),
            "both runbooks in the shard",
            30,
            POLL,
        )
        cluster.core.patch_namespaced_config_map(
            "texts", cluster.namespace, {"data": {"dns.md": "## Check\nNodeLocal DNS."}}
        )
        await eventually(
            lambda: (r := shard_runbooks()) is not None and r.get("dns") == "## Check\nNodeLocal DNS.",
            "the changed ConfigMap in the shard",
            30,
            POLL,
        )
