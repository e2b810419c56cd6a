"""The chart's incidents settings and the bundled prometheus MCP server, rendered by the real Helm engine:
the AI_OPS_INVESTIGATION* env of the chat, the Alertmanager token (its own Secret and a line of the chat's
tokens file), and the prometheus server (off without a URL; when on a restricted pod, a Service, a
NetworkPolicy and a registered MCPServer)."""

from __future__ import annotations

import base64
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from ai_ops_operator.core.validation import validate_resource
from chat_service.auth import parse_tokens
from tests.chart import test_chart as chart_checks
from tests.support.chart_render import (
    NAMESPACE,
    RELEASE,
    Rendered,
    container_env,
    env_value,
    load_chart,
    render,
)

PROMETHEUS = f"{RELEASE}-mcp-prometheus"
COMPONENT = "mcp-prometheus"
PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
TOKEN_SECRET = f"{RELEASE}-alertmanager-token"


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return load_chart()


def chat_pod(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.get("Deployment", f"{RELEASE}-chat")["spec"]["template"]["spec"]
    return spec


def mine(rendered: Rendered) -> list[dict[str, Any]]:
    return [o for _, o in rendered.objects if (o["metadata"].get("labels") or {}).get(
        "app.kubernetes.io/component") == COMPONENT]  # fmt: skip


def test_incidents_values_become_the_chats_environment(chart: helm.Chart) -> None:
    defaults = chat_pod(render(chart, {}))
    assert env_value(defaults, "chat", "AI_OPS_INVESTIGATIONS") == "true"
    assert env_value(defaults, "chat", "AI_OPS_INVESTIGATION_MAX_TOKENS") == "200000"
    values = {
        "incidents": {
            "enabled": False,
            "concurrency": 5,
            "leaseSeconds": 90,
            "budget": {"maxSteps": 40, "maxSeconds": 600, "maxTokens": 1500000},
        }
    }
    pod = chat_pod(render(chart, values))
    assert {
        name: env_value(pod, "chat", name)
        for name in (
            "AI_OPS_INVESTIGATIONS",
            "AI_OPS_INVESTIGATIONS_CONCURRENCY",
            "AI_OPS_INVESTIGATION_LEASE_SECONDS",
            "AI_OPS_INVESTIGATION_MAX_STEPS",
            "AI_OPS_INVESTIGATION_MAX_SECONDS",
            "AI_OPS_INVESTIGATION_MAX_TOKENS",
        )
    } == {
        "AI_OPS_INVESTIGATIONS": "false",
        "AI_OPS_INVESTIGATIONS_CONCURRENCY": "5",
        "AI_OPS_INVESTIGATION_LEASE_SECONDS": "90",
        "AI_OPS_INVESTIGATION_MAX_STEPS": "40",
        "AI_OPS_INVESTIGATION_MAX_SECONDS": "600",
        "AI_OPS_INVESTIGATION_MAX_TOKENS": "1500000",
    }


def test_the_alertmanager_token_is_its_own_secret_and_a_line_of_the_tokens_file(chart: helm.Chart) -> None:
    assert TOKEN_SECRET not in render(chart, {}).names("Secret")
    rendered = render(chart, {"incidents": {"alertmanager": {"createToken": True}}})
    token = base64.b64decode(rendered.get("Secret", TOKEN_SECRET)["data"]["token"]).decode()
    assert len(token) == 48
    tokens_file = base64.b64decode(rendered.get("Secret", f"{RELEASE}-chat-auth")["data"]["tokens"]).decode()
    entries = dict((name, value.decode()) for name, value in parse_tokens(tokens_file))
    assert set(entries) == {"admin", "alertmanager"} and entries["alertmanager"] == token
    assert entries["admin"] != token
    named = render(chart, {"incidents": {"alertmanager": {"createToken": True, "callerName": "am-prod"}}})
    named_file = base64.b64decode(named.get("Secret", f"{RELEASE}-chat-auth")["data"]["tokens"]).decode()
    assert {name for name, _ in parse_tokens(named_file)} == {"admin", "am-prod"}


@pytest.mark.parametrize(
    "chat_auth", [{"enabled": False}, {"existingSecret": "my-tokens"}], ids=["auth-off", "own-secret"]
)
def test_the_alertmanager_token_needs_the_charts_tokens_secret(
    chart: helm.Chart, chat_auth: dict[str, Any]
) -> None:
    values = {"chat": {"auth": chat_auth}, "incidents": {"alertmanager": {"createToken": True}}}
    with pytest.raises(Exception, match="createToken needs the chart's own tokens Secret"):
        render(chart, values)


def test_the_notification_webhook_is_off_by_default_and_its_url_comes_from_the_secret(
    chart: helm.Chart,
) -> None:
    names = {e["name"] for e in chat_env(render(chart, {}))}
    assert not names & {"AI_OPS_INVESTIGATION_NOTIFY_URL", "AI_OPS_PUBLIC_URL"}
    values = {"incidents": {"notify": {"secretName": "slack-webhook", "secretKey": "incoming",
                                       "publicUrl": "https://ai-ops.example.test"}}}  # fmt: skip
    rendered = render(chart, values)
    env = {e["name"]: e for e in chat_env(rendered)}
    assert env["AI_OPS_INVESTIGATION_NOTIFY_URL"] == {
        "name": "AI_OPS_INVESTIGATION_NOTIFY_URL",
        "valueFrom": {"secretKeyRef": {"name": "slack-webhook", "key": "incoming"}},
    }
    assert env["AI_OPS_PUBLIC_URL"]["value"] == "https://ai-ops.example.test"
    for configmap in rendered.of_kind("ConfigMap"):
        assert "slack-webhook" not in str(configmap) and "NOTIFY_URL" not in str(configmap)


def chat_env(rendered: Rendered) -> list[dict[str, Any]]:
    return container_env(chat_pod(rendered), "chat")


def test_the_prometheus_server_is_off_without_a_url(chart: helm.Chart) -> None:
    rendered = render(chart, {"networkPolicy": {"enabled": True}})
    assert mine(rendered) == []
    assert PROMETHEUS not in {o["metadata"]["name"] for o in rendered.registered("MCPServer")}


def test_the_prometheus_server_with_a_url(chart: helm.Chart) -> None:
    values = {
        "mcpServers": {"prometheus": {"url": PROMETHEUS_URL, "timeoutSeconds": 12}},
        "networkPolicy": {"enabled": True},
    }
    rendered = render(chart, values)
    chart_checks.test_every_pod_meets_the_restricted_pod_security_standard(rendered)
    objects = mine(rendered)
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Deployment", "Service", "NetworkPolicy"}
    for obj in objects:
        for version in (chart_checks.OLDEST_KUBERNETES, chart_checks.NEWEST_KUBERNETES):
            kubernetes_validate.validate(obj, version, strict=True)
    pod = rendered.get("Deployment", PROMETHEUS)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # Prometheus' API only: no Kubernetes token
    args = pod["containers"][0]["args"]
    assert args[:2] == ["mcp", "prometheus"]
    assert args[args.index("--prometheus-url") + 1] == PROMETHEUS_URL
    assert args[args.index("--timeout-seconds") + 1] == "12"
    assert args[args.index("--port") + 1] == "8093"
    server = rendered.get_registered("MCPServer", PROMETHEUS)
    assert server["spec"]["url"] == f"http://{PROMETHEUS}.{NAMESPACE}.svc:8093/mcp"
    assert validate_resource(server) == []
    policy = rendered.get("NetworkPolicy", PROMETHEUS)
    expressions = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert next(e for e in expressions if e["key"].endswith("component"))["values"] == ["chat", "operator"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # Prometheus' address unknown: egress left open
    # The chat may reach it.
    chat_policy = rendered.get("NetworkPolicy", f"{RELEASE}-chat")
    assert any(
        rule.get("to", [{}])[0]
        .get("podSelector", {})
        .get("matchLabels", {})
        .get("app.kubernetes.io/component")
        == COMPONENT
        for rule in chat_policy["spec"]["egress"]
    )


def test_the_prometheus_egress_when_given_is_all_it_may_reach(chart: helm.Chart) -> None:
    egress = [{"cidr": "10.40.0.0/16", "ports": [9090]}]
    values = {
        "mcpServers": {"prometheus": {"url": PROMETHEUS_URL, "egress": egress}},
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["172.18.0.0/16"]}},
    }
    policy = render(chart, values).get("NetworkPolicy", PROMETHEUS)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["spec"]["egress"]
    assert {p["port"] for p in rules[0]["ports"]} == {53}  # DNS
    assert rules[1:] == [
        {"ports": [{"protocol": "TCP", "port": 9090}], "to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}]}
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"mcpServers": {"prometheus": {"url": "prometheus:9090"}}},
        {"mcpServers": {"prometheus": {"url": PROMETHEUS_URL, "unknown": 1}}},
        {"incidents": {"concurrency": 0}},
        {"incidents": {"budget": {"maxTokens": 10}}},
        {"incidents": {"alertmanager": {"callerName": "has space"}}},
        {"incidents": {"surprise": True}},
        {"incidents": {"notify": {"secretName": "Not_A_Name"}}},
        {"incidents": {"notify": {"publicUrl": "ai-ops.example.test"}}},
        {"incidents": {"notify": {"url": "https://hooks.example.test/x"}}},
    ],
)
def test_schema_refuses_bad_values(chart: helm.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"(?i)schema|values"):
        render(chart, values)
