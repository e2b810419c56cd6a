"""The objects the kind suite applies besides the chart: its fixture servers and a set of ai-ops resources.

Kept apart from the suite so a test that runs everywhere (test_e2e_servers.py) can check them.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.kind_cluster import restricted_pod_security

GROUP = "ai-ops.dev"


def fixture_server(name: str, script: str, env: dict[str, str], image: str) -> list[dict[str, Any]]:
    """A Deployment + Service running one of tests/e2e/servers/ from the ai-ops image."""
    security = restricted_pod_security()
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ai-ops-e2e"}
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", f"/e2e/{script}", "8000"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
        "securityContext": security["container"],
        "resources": {
            "requests": {"cpu": "20m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "volumeMounts": [
            {"name": "servers", "mountPath": "/e2e", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": security["pod"],
                    "containers": [container],
                    "volumes": [
                        {"name": "servers", "configMap": {"name": "e2e-servers"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
    }
    return [deployment, service]


def resources(namespace: str, llm_key: str) -> list[dict[str, Any]]:
    meta = {"labels": {"app.kubernetes.io/part-of": "ai-ops-e2e"}}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e2e-llm-key", **meta},
         "stringData": {"api-key": llm_key}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMProvider", "metadata": {"name": "e2e", **meta},
         "spec": {"type": "openai_compatible", "baseURL": f"http://e2e-llm.{namespace}.svc:8000/v1",
                  "apiKeySecretRef": {"name": "e2e-llm-key", "key": "api-key"}}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMModel", "metadata": {"name": "e2e-model", **meta},
         "spec": {"providerRef": {"name": "e2e"}, "model": "e2e", "default": True, "timeoutSeconds": 30}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMMiddleware", "metadata": {"name": "e2e-limit", **meta},
         "spec": {"modelRef": {"name": "e2e-model"}, "type": "model_call_limit", "config": {"runLimit": 10}}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "MCPServer", "metadata": {"name": "e2e-echo", **meta},
         "spec": {"url": f"http://e2e-mcp.{namespace}.svc:8000/mcp",
                  "healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}}},
    ]  # fmt: skip
