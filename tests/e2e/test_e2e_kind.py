"""The kind end-to-end suite: the real chart on a real cluster (`make e2e`; marker `e2e`, deselected by default).

One release in its own namespace, which enforces the `restricted` Pod Security Standard, so an admission
refusal fails the install. The steps run in file order and share the cluster; after a failed step the
rest are skipped. What they verify that nothing on a developer machine can is listed in docs/testing.md.

Settings (environment): AI_OPS_E2E_CLUSTER (kind cluster, default ai-ops-e2e), AI_OPS_E2E_IMAGE
(default ai-ops:e2e, loaded into kind by `make e2e`), AI_OPS_E2E_NAMESPACE (default ai-ops-e2e).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY, parse_agent_config
from tests.e2e.kind_cluster import Cluster, CommandError, missing_prerequisite
from tests.e2e.manifests import fixture_server, resources

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("AI_OPS_E2E_CLUSTER", "ai-ops-e2e")
IMAGE = os.environ.get("AI_OPS_E2E_IMAGE", "ai-ops:e2e")
NAMESPACE = os.environ.get("AI_OPS_E2E_NAMESPACE", "ai-ops-e2e")
RELEASE = "ai-ops-e2e"
CHAT = f"{RELEASE}-chat"
CONFIGMAP = "ai-ops-agent-config"
LLM_KEY = "e2e-key"
GROUP = "ai-ops.dev"
KINDS = ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")

_failed: list[str] = []


@pytest.fixture(autouse=True)
def _stop_after_a_failed_step(request: pytest.FixtureRequest) -> Iterator[None]:
    if _failed:
        pytest.skip(f"an earlier step failed: {_failed[0]}")
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        _failed.append(request.node.name)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    reason = missing_prerequisite(CLUSTER)
    if reason is not None:
        pytest.skip(reason)
    return Cluster(context=f"kind-{CLUSTER}", namespace=NAMESPACE)


def _image() -> tuple[str, str]:
    repository, _, tag = IMAGE.rpartition(":")
    return (repository, tag) if repository else (IMAGE, "latest")


def _helm_values_args(*extra: str) -> list[str]:
    repository, tag = _image()
    return [
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", "redis.image.pullPolicy=IfNotPresent",
        # Another release may own the fixed-name aggregated ClusterRoles in a shared cluster.
        "--set", "rbac.aggregateClusterRoles=false",
        *extra,
    ]  # fmt: skip


def _agent_config(cluster: Cluster) -> Any:
    configmap = cluster.get("configmap", CONFIGMAP)
    return parse_agent_config(configmap["data"][AGENT_CONFIG_DATA_KEY])


def _health(cluster: Cluster, name: str) -> str | None:
    return cluster.get("mcpservers.ai-ops.dev", name).get("status", {}).get("health")


def _chat_token(cluster: Cluster) -> str:
    data = cluster.get("secret", f"{CHAT}-auth")["data"]["tokens"]
    first_line = base64.b64decode(data).decode().splitlines()[0]
    return first_line.split(":", 1)[1]


def _secret_data(cluster: Cluster, name: str) -> dict[str, str]:
    return cluster.get("secret", name)["data"]


# --- the steps ------------------------------------------------------------------------------------


def test_install_into_a_restricted_namespace(cluster: Cluster):
    cluster.kubectl("create", "namespace", NAMESPACE, namespaced=False, check=False)
    labels = [f"pod-security.kubernetes.io/{mode}=restricted" for mode in ("enforce", "audit", "warn")]
    cluster.kubectl("label", "namespace", NAMESPACE, "--overwrite", *labels, namespaced=False)
    servers = ROOT / "tests" / "e2e" / "servers"
    manifest = cluster.kubectl(
        "create", "configmap", "e2e-servers", "--dry-run=client", "-o", "yaml",
        f"--from-file={servers / 'llm.py'}", f"--from-file={servers / 'mcp_echo.py'}",
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    cluster.apply(
        *fixture_server("e2e-llm", "llm.py", {"E2E_LLM_API_KEY": LLM_KEY}, IMAGE),
        *fixture_server("e2e-mcp", "mcp_echo.py", {}, IMAGE),
    )
    # --wait on the first install: the chat starts before its agent config exists (503 until then) and the
    # operator writes an empty one for a namespace with the chat Deployment, so every pod turns Ready
    # before Helm runs the register hook Job.
    install = cluster.helm(
        "upgrade", "--install", RELEASE, str(ROOT / "charts" / "ai-ops"), "--wait", "--timeout", "6m",
        *_helm_values_args(),
    )  # fmt: skip
    assert "STATUS: deployed" in install.stdout
    assert "kubectl port-forward" in install.stdout  # NOTES.txt
    deployments = (
        "e2e-llm",
        "e2e-mcp",
        f"{RELEASE}-operator",
        f"{RELEASE}-mcp-kubernetes",
        f"{RELEASE}-mcp-netops",
    )
    for deployment in deployments:
        cluster.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=180s")
    cluster.kubectl("rollout", "status", f"statefulset/{RELEASE}-redis", "--timeout=180s")
    # The register Job created the bundled MCPServers; the operator then writes the agent config.
    assert cluster.exists(f"mcpserver/{RELEASE}-mcp-netops")
    cluster.kubectl("rollout", "status", f"deployment/{CHAT}", "--timeout=360s")


def test_api_server_enforces_the_crd_schema_and_cel_rules(cluster: Cluster):
    stdio_with_url = {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "MCPServer", "metadata": {"name": "bad-stdio"},
        "spec": {"transport": "stdio", "url": "http://x.example/mcp", "command": "server"},
    }  # fmt: skip
    unknown_type = {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMProvider", "metadata": {"name": "bad-type"},
        "spec": {"type": "not-a-provider"},
    }  # fmt: skip
    for bad in (stdio_with_url, unknown_type):
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(bad), check=False)
        assert result.returncode != 0 and "invalid" in result.stderr.lower(), result.stderr
    # Defaults are applied by the API server.
    good = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "MCPServer", "metadata": {"name": "defaults"},
            "spec": {"url": "http://x.example/mcp"}}  # fmt: skip
    stored = json.loads(cluster.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-",
                                        stdin=json.dumps(good)).stdout)  # fmt: skip
    assert (
        stored["spec"]["transport"] == "streamable_http"
        and stored["spec"]["healthCheck"]["intervalSeconds"] == 30
    )


def test_resources_become_ready(cluster: Cluster):
    cluster.apply(*resources(NAMESPACE, LLM_KEY))
    cluster.kubectl(
        "wait", "--for=condition=Ready", "--timeout=180s",
        "llmprovider/e2e", "llmmodel/e2e-model", "llmmiddleware/e2e-limit", "mcpserver/e2e-echo",
        f"mcpserver/{RELEASE}-mcp-kubernetes", f"mcpserver/{RELEASE}-mcp-netops",
    )  # fmt: skip
    listing = cluster.kubectl("get", "ai-ops").stdout
    for name in ("e2e-model", "e2e-echo", f"{RELEASE}-mcp-netops"):
        assert name in listing
    # Status is written through the status subresource; the spec was left as applied.
    echo = cluster.get("mcpservers.ai-ops.dev", "e2e-echo")
    assert echo["status"]["health"] == "Healthy"
    assert echo["status"]["tools"]["names"] == ["add", "echo"]
    assert echo["status"]["observedGeneration"] == echo["metadata"]["generation"]


def test_agent_configmap_holds_the_usable_set(cluster: Cluster):
    cluster.wait_for(
        "the agent ConfigMap lists e2e-echo",
        lambda: (
            cluster.exists("configmap", CONFIGMAP)
            and "e2e-echo" in {s.name for s in _agent_config(cluster).mcp_servers}
        ),
        timeout=60,
    )
    config = _agent_config(cluster)
    assert config.default_model == "e2e-model"
    (model,) = config.models
    assert model.provider.base_url == f"http://e2e-llm.{NAMESPACE}.svc:8000/v1"
    assert model.api_key_secret_ref is not None and model.api_key_secret_ref.name == "e2e-llm-key"
    assert [m.type for m in model.middleware] == ["model_call_limit"]
    servers = {s.name: s for s in config.mcp_servers}
    assert servers["e2e-echo"].tools == ("add", "echo")
    assert {f"{RELEASE}-mcp-kubernetes", f"{RELEASE}-mcp-netops"} <= servers.keys()
    raw = cluster.get("configmap", CONFIGMAP)["data"][AGENT_CONFIG_DATA_KEY]
    assert LLM_KEY not in raw


def test_operator_wires_the_key_into_the_chat_deployment(cluster: Cluster):
    def wired() -> bool:
        spec = cluster.get("deployment", CHAT)["spec"]["template"]["spec"]
        return any(v["name"] == "ai-ops-secrets" for v in spec.get("volumes", []))

    cluster.wait_for("the chat Deployment has the ai-ops-secrets volume", wired, timeout=60)
    cluster.kubectl("rollout", "status", f"deployment/{CHAT}", "--timeout=180s")
    spec = cluster.get("deployment", CHAT)["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "ai-ops-secrets"]
    assert "e2e-llm-key" in json.dumps(volume["projected"])
    # The chart's own volumes are still there.
    assert {"agent-config", "auth-tokens", "tmp"} <= {v["name"] for v in spec["volumes"]}


def test_chat_through_a_port_forward(cluster: Cluster):
    token = _chat_token(cluster)
    with cluster.port_forward(f"svc/{CHAT}", 8080) as port:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            cluster.wait_for("chat /readyz", lambda: client.get("/readyz").status_code == 200, timeout=90)
            assert client.post("/api/chat", json={"message": "hi"}).status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            answer = client.post("/api/chat", json={"message": "hello there"}, headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["reply"] == "echo: hello there"  # the LLM accepted the key from the Secret
            answer = client.post(
                "/api/chat", json={"message": 'call echo {"text": "from kind"}'}, headers=auth
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert [c["args"] for c in body["tool_calls"]] == [{"text": "from kind"}]
            assert body["tool_calls"][0]["output"] == "from kind"
            assert body["reply"].endswith("said: from kind")
            completion = client.post(
                "/v1/chat/completions", headers=auth,
                json={"model": "default", "messages": [{"role": "user", "content": "openai style"}]},
            )  # fmt: skip
            assert completion.json()["choices"][0]["message"]["content"] == "echo: openai style"


def test_rbac_denies_what_the_chart_does_not_grant(cluster: Cluster):
    def can(account: str, *what: str) -> bool:
        result = cluster.kubectl(
            "auth", "can-i", *what, f"--as=system:serviceaccount:{NAMESPACE}:{account}", check=False
        )
        return result.stdout.strip() == "yes"

    assert can(CHAT, "get", f"configmap/{CONFIGMAP}")
    assert not can(CHAT, "get", "configmap/e2e-servers")
    assert not can(CHAT, "get", "secrets")
    operator = f"{RELEASE}-operator"
    assert can(operator, "get", "secrets") and not can(operator, "delete", "secrets")
    assert not can(operator, "create", "secrets") and not can(operator, "delete", "configmaps")
    assert can(operator, "patch", f"deployment/{CHAT}") and not can(operator, "patch", "deployment/e2e-llm")
    assert can(operator, "patch", "mcpservers.ai-ops.dev/status")
    assert not can(f"{RELEASE}-mcp-kubernetes", "get", "secrets")
    assert can(f"{RELEASE}-mcp-kubernetes", "get", "pods/log")
    assert not can(f"{RELEASE}-mcp-netops", "list", "pods")


def test_a_stopped_mcp_server_goes_unhealthy_and_leaves_the_config(cluster: Cluster):
    cluster.kubectl("scale", "deployment/e2e-mcp", "--replicas=0")
    # failureThreshold 2 x intervalSeconds 5, plus probe timeouts and jitter.
    cluster.wait_for("e2e-echo Unhealthy", lambda: _health(cluster, "e2e-echo") == "Unhealthy", timeout=90)
    cluster.wait_for(
        "e2e-echo gone from the agent ConfigMap",
        lambda: "e2e-echo" not in {s.name for s in _agent_config(cluster).mcp_servers},
        timeout=30,
    )
    ready = cluster.get("mcpservers.ai-ops.dev", "e2e-echo")["status"]["conditions"]
    assert {c["type"]: c["status"] for c in ready}["Ready"] == "False"
    cluster.kubectl("scale", "deployment/e2e-mcp", "--replicas=1")
    cluster.wait_for("e2e-echo Healthy again", lambda: _health(cluster, "e2e-echo") == "Healthy", timeout=120)
    cluster.wait_for(
        "e2e-echo back in the agent ConfigMap",
        lambda: "e2e-echo" in {s.name for s in _agent_config(cluster).mcp_servers},
        timeout=30,
    )


def test_a_rotated_key_is_used_without_a_restart(cluster: Cluster):
    """kubelet refreshes the projected Secret volume; the chat reads the key per request."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=chat"
    pods_before = cluster.kubectl("get", "pods", "-l", selector, "-o", "name").stdout.split()
    new_key = "e2e-key-rotated"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "e2e-llm-key"},
            "stringData": {"api-key": new_key},
        }
    )
    cluster.kubectl("set", "env", "deployment/e2e-llm", f"E2E_LLM_API_KEY={new_key}")
    cluster.kubectl("rollout", "status", "deployment/e2e-llm", "--timeout=120s")
    token = _chat_token(cluster)
    with (
        cluster.port_forward(f"svc/{CHAT}", 8080) as port,
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"Authorization": f"Bearer {token}"}
        ) as client,
    ):

        def answers() -> bool:
            return client.post("/api/chat", json={"message": "rotated"}).status_code == 200

        # kubelet syncs projected volumes about once a minute.
        cluster.wait_for("a chat turn with the rotated key", answers, timeout=180, interval=5)
    assert cluster.kubectl("get", "pods", "-l", selector, "-o", "name").stdout.split() == pods_before


def test_upgrade_keeps_secrets_and_the_operator_wiring(cluster: Cluster):
    tokens_before = _secret_data(cluster, f"{CHAT}-auth")
    redis_before = _secret_data(cluster, f"{RELEASE}-redis")
    cluster.helm(
        "upgrade", RELEASE, str(ROOT / "charts" / "ai-ops"), "--wait", "--timeout", "6m",
        *_helm_values_args("--set", "chat.replicas=2", "--set", "operator.replicas=2"),
    )  # fmt: skip
    assert _secret_data(cluster, f"{CHAT}-auth") == tokens_before
    assert _secret_data(cluster, f"{RELEASE}-redis") == redis_before
    cluster.kubectl("rollout", "status", f"deployment/{CHAT}", "--timeout=180s")
    chat = cluster.get("deployment", CHAT)
    assert chat["status"].get("readyReplicas") == 2
    assert any(v["name"] == "ai-ops-secrets" for v in chat["spec"]["template"]["spec"]["volumes"])
    # The CRDs and the resources survived; the register Job updated the bundled MCPServers.
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=120s", "mcpserver/e2e-echo",
                    f"mcpserver/{RELEASE}-mcp-netops")  # fmt: skip
    # Two operator replicas: both join the peering object (kopf lets one of them work).
    cluster.kubectl("rollout", "status", f"deployment/{RELEASE}-operator", "--timeout=180s")
    operator_selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"

    def both_peered() -> bool:
        pods = {
            p.split("/", 1)[1]
            for p in cluster.kubectl("get", "pods", "-l", operator_selector, "-o", "name").stdout.split()
        }
        peering = cluster.get("clusterkopfpeerings.kopf.dev", RELEASE, namespaced=False)
        return len(pods) == 2 and pods <= set(peering.get("status") or {})  # kopf's identity is POD_ID

    cluster.wait_for("both operator pods in the peering object", both_peered, timeout=120)
    assert "e2e-echo" in {s.name for s in _agent_config(cluster).mcp_servers}


def test_uninstall_is_clean(cluster: Cluster):
    cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    leftovers = cluster.kubectl(
        "get", "deployments,statefulsets,services,secrets,roles,rolebindings,serviceaccounts",
        "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name",
    ).stdout.split()  # fmt: skip
    assert leftovers == []
    # Kept on purpose (docs/helm.md): the CRDs, and the register Job's objects until removed by hand.
    for crd in KINDS:
        assert cluster.exists("crd", f"{crd}.{GROUP}")
    # Deleting resources does not hang without the operator (no stray finalizers).
    cluster.kubectl("delete", *[f"{kind}.{GROUP}" for kind in KINDS], "--all", "--timeout=60s")
    cluster.kubectl("delete", "clusterkopfpeerings.kopf.dev", RELEASE, "--ignore-not-found", namespaced=False)
    try:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=180s", namespaced=False)
    except CommandError as error:
        pytest.fail(f"namespace {NAMESPACE} did not go away: {error}")
