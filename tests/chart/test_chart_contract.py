"""The chart and the processes agree: every container's arguments and environment, as rendered, are
accepted by the real `ai-ops` command-line parser and settings loaders and mean what the chart intends.

Environment values are resolved as the kubelet would: the downward API from the pod, Secret references
with a stand-in value, and `$(VAR)` references to variables defined earlier in the list.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import helm_python as helm
import pytest

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY
from ai_ops_cli import build_parser
from ai_ops_operator.core.wiring import SECRETS_MOUNT_PATH
from ai_ops_operator.runtime.settings import resolve as resolve_operator_settings
from chat_service.settings import load_settings as load_chat_settings
from mcp_servers.netops.allowlist import ALLOW_ENV_VAR
from tests.support.chart_render import NAMESPACE, RELEASE, Rendered, load_chart, render

POD_NAME = "pod-0"
SECRET_VALUE = "s3cr3tPassw0rd"


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def defaults(chart: helm.Chart) -> Rendered:
    return render(chart, {})


def kubelet_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"]
            )
        else:
            source = entry["valueFrom"]
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                env[entry["name"]] = {"metadata.namespace": NAMESPACE, "metadata.name": POD_NAME}[field]
            elif "secretKeyRef" in source:
                env[entry["name"]] = SECRET_VALUE
            else:
                raise AssertionError(f"unexpected env source {source}")
    return env


def container_of(rendered: Rendered, deployment: str) -> dict[str, Any]:
    (container,) = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def parse(container: dict[str, Any]) -> argparse.Namespace:
    """The container's arguments through the real `ai-ops` parser (its entrypoint)."""
    assert "command" not in container, "the image's entrypoint is ai-ops"
    return build_parser().parse_args(container["args"])


def mount_paths(rendered: Rendered, deployment: str) -> dict[str, dict[str, Any]]:
    """mountPath -> volume, for the deployment's one container."""
    pod = rendered.get("Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container_of(rendered, deployment)["volumeMounts"]}


@pytest.mark.parametrize(
    ("values", "clusterwide", "namespaces"),
    [({}, True, ()), ({"rbac": {"scope": "namespace"}, "watchNamespaces": ["a", "b"]}, False, ("a", "b"))],
)
def test_operator_accepts_its_settings(
    chart: helm.Chart, values: dict[str, Any], clusterwide: bool, namespaces: tuple[str, ...]
):
    rendered = render(chart, values)
    container = container_of(rendered, f"{RELEASE}-operator")
    settings = resolve_operator_settings(parse(container), kubelet_env(container))
    assert (settings.clusterwide, settings.namespaces) == (clusterwide, namespaces)
    assert settings.chat_deployment == f"{RELEASE}-chat"
    assert settings.configmap_name == "ai-ops-agent-config"
    assert settings.probe_concurrency == 50
    assert settings.peering_name == RELEASE
    assert settings.metrics_port == 9090
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": settings.metrics_port}
    assert not settings.allow_loopback


def test_operator_without_peering_runs_standalone(chart: helm.Chart):
    container = container_of(
        render(chart, {"operator": {"peering": {"enabled": False}}}), f"{RELEASE}-operator"
    )
    assert resolve_operator_settings(parse(container), kubelet_env(container)).peering_name is None


def _chat_settings(rendered: Rendered) -> Any:
    container = container_of(rendered, f"{RELEASE}-chat")
    args = parse(container)
    overrides = {
        "config_path": args.config,
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
    }
    return load_chat_settings(overrides, environ=kubelet_env(container))


def test_chat_accepts_its_settings(defaults: Rendered):
    settings = _chat_settings(defaults)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.redis_url == f"redis://:{SECRET_VALUE}@{RELEASE}-redis.{NAMESPACE}.svc:6379/0"
    assert settings.configmap_name == "ai-ops-agent-config" and settings.namespace == NAMESPACE
    assert settings.session_ttl_seconds == 3600 and settings.request_timeout_seconds == 120
    assert settings.kubernetes_watch
    mounts = mount_paths(defaults, f"{RELEASE}-chat")
    # The config file is the agent ConfigMap's key, in a volume of that ConfigMap.
    config_volume = mounts[str(settings.config_path.parent)]
    assert config_volume["configMap"]["name"] == settings.configmap_name
    assert settings.config_path.name == AGENT_CONFIG_DATA_KEY
    # The tokens file is the auth Secret's key.
    tokens_volume = mounts[str(settings.auth_tokens_file.parent)]
    assert tokens_volume["secret"]["items"] == [{"key": "tokens", "path": settings.auth_tokens_file.name}]
    # The operator mounts the Secrets volume where the chat looks for keys.
    assert str(settings.secrets_dir) == SECRETS_MOUNT_PATH


def test_chat_with_external_redis_and_without_auth(chart: helm.Chart):
    values = {
        "redis": {
            "external": {"url": "rediss://redis.example.com:6380/2?ssl_cert_reqs=none", "existingSecret": "r"}
        },
        "chat": {"auth": {"enabled": False}},
    }
    settings = _chat_settings(render(chart, values))
    assert settings.redis_url == f"rediss://:{SECRET_VALUE}@redis.example.com:6380/2?ssl_cert_reqs=none"
    assert settings.auth_tokens_file is None
    in_memory = _chat_settings(render(chart, {"redis": {"enabled": False}}))
    assert in_memory.redis_url is None


@pytest.mark.parametrize(("server", "port"), [("kubernetes", 8091), ("netops", 8092)])
def test_mcp_servers_accept_their_arguments(chart: helm.Chart, server: str, port: int):
    rendered = render(chart, {"mcpServers": {"netops": {"allowedTargets": ["*.example.com", "10.0.0.0/8"]}}})
    container = container_of(rendered, f"{RELEASE}-mcp-{server}")
    args = parse(container)
    assert (args.mcp_server, args.host, args.port, args.path) == (server, "0.0.0.0", port, "/mcp")
    assert args.max_response_bytes == 64000 and args.log_level == "info"
    env = kubelet_env(container)
    if server == "netops":
        assert env[ALLOW_ENV_VAR] == "*.example.com,10.0.0.0/8"
    # The MCPServer the register Job creates points at this Service and port.
    url = rendered.get_registered("MCPServer", f"{RELEASE}-mcp-{server}")["spec"]["url"]
    service = rendered.get("Service", f"{RELEASE}-mcp-{server}")
    assert (
        url
        == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/mcp"
    )
