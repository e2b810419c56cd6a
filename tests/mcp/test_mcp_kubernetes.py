"""The read-only Kubernetes MCP server: pure views directly, then every tool through a real MCP client
against the server (started on 127.0.0.1) reading the `k8s_emulator` fixture seeded with a healthy pod,
a crash-looping pod, a half-available Deployment, events, and a Secret whose value must never appear."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest

from mcp_servers.common import InvalidArgument
from mcp_servers.kubernetes.cluster import connect
from mcp_servers.kubernetes.errors import ApiCall, api_error_message
from mcp_servers.kubernetes.redaction import (
    clean_object,
    is_secret_name,
    redact_command,
    redact_env_var,
    redact_text,
    secret_summary,
)
from mcp_servers.kubernetes.selectors import (
    labels_match,
    parse_label_selector,
    requirements_of,
    selector_string,
)
from mcp_servers.kubernetes.server import KubernetesSettings, build_server
from mcp_servers.kubernetes.summaries import age, describe_pod, describe_workload, pod_status
from tests.support.mcp_server_helpers import McpServerProcess, ThreadedMcpServer, mcp_client

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
SECRET_VALUE = "s3cr3t-P@ssw0rd-7f9e2d"
LITERAL_TOKEN = "literal-token-4c1b8a"


def ts(minutes_ago: float, now: datetime = NOW) -> str:
    return (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_env() -> list[dict[str, Any]]:
    return [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}},
        {"name": "API_TOKEN", "value": LITERAL_TOKEN},
        {"name": "LOG_LEVEL", "value": "debug"},
    ]


def crashlooping_pod(now: datetime = NOW) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-def34",
            "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "5d8f"},
            "creationTimestamp": ts(90, now),
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "web-5d8f", "apiVersion": "apps/v1", "uid": "1"}
            ],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "app",
                    "image": "shop/web:1.4",
                    "env": container_env(),
                    "resources": {"limits": {"memory": "128Mi"}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.1.0.12",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "message": "containers with unready status: [app]",
                },
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "shop/web:1.4",
                    "ready": False,
                    "restartCount": 7,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 5m0s restarting failed container=app",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "reason": "Error",
                            "exitCode": 1,
                            "finishedAt": ts(3, now),
                            "startedAt": ts(4, now),
                        }
                    },
                }
            ],
        },
    }


def healthy_pod(now: datetime = NOW) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-abc12",
            "namespace": "shop",
            "labels": {"app": "web"},
            "creationTimestamp": ts(90, now),
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app", "image": "shop/web:1.4", "env": container_env()}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.1.0.11",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "shop/web:1.4",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": ts(89, now)}},
                }
            ],
        },
    }


def web_deployment(now: datetime = NOW) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "creationTimestamp": ts(120, now),
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"token": LITERAL_TOKEN})
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "shop/web:1.4", "env": container_env()}]},
            },
        },
        "status": {
            "replicas": 2,
            "readyReplicas": 1,
            "updatedReplicas": 2,
            "availableReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                },
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    }


def event(
    name: str, kind: str, obj: str, reason: str, message: str, type_: str, minutes_ago: float, count: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "shop"},
        "involvedObject": {"kind": kind, "name": obj, "namespace": "shop"},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "lastTimestamp": ts(minutes_ago, datetime.now(UTC)),
    }


# --------------------------------------------------------------------------------------------- pure logic


def test_label_selector_parsing_and_matching() -> None:
    requirements = parse_label_selector("app=web, tier!=cache,env in (prod, staging),!debug,team")
    labels = {"app": "web", "env": "prod", "team": "a"}
    assert labels_match(labels, requirements)
    assert not labels_match({**labels, "debug": "1"}, requirements)
    assert not labels_match({**labels, "tier": "cache"}, requirements)
    assert not labels_match({**labels, "env": "dev"}, requirements)
    assert not labels_match({"app": "web", "env": "prod"}, requirements)  # team missing
    assert labels_match(labels, parse_label_selector(selector_string(requirements)))
    with pytest.raises(InvalidArgument, match="not valid"):
        parse_label_selector("app=web,=oops")


def test_structured_selector_requirements() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    }
    requirements = requirements_of(selector)
    assert requirements is not None
    assert labels_match({"app": "web", "tier": "front"}, requirements)
    assert not labels_match({"app": "web", "tier": "db"}, requirements)
    assert requirements_of({}) is None  # selects nothing, not everything


def test_forbidden_error_names_the_missing_permission() -> None:
    body = json.dumps(
        {"kind": "Status", "message": 'pods is forbidden: User "system:serviceaccount:ops:mcp" cannot list'}
    )
    message = api_error_message(ApiCall("list", "pods", "", "payments"), 403, body)
    assert "forbidden" in message
    assert "verb: list, resource: pods" in message
    assert "namespace: payments" in message
    assert "cannot list" in message  # the API server's own words follow
    cluster_wide = api_error_message(ApiCall("list", "deployments", "apps"), 403, None)
    assert "cluster-wide" in cluster_wide and "apiGroup: apps" in cluster_wide
    assert (
        api_error_message(ApiCall("get", "pods", "", "shop", "nope"), 404, None)
        == "not found: pods nope in namespace shop"
    )
    assert "credentials" in api_error_message(ApiCall("list", "pods"), 401, None)


def test_env_from_secrets_is_a_reference_and_credential_literals_are_hidden() -> None:
    ref, token, plain = (redact_env_var(var) for var in container_env())
    assert ref == {"name": "DB_PASSWORD", "valueFrom": "secretKeyRef: db-credentials/password"}
    assert token["value"] != LITERAL_TOKEN and "redacted" in token["value"]
    assert plain == {"name": "LOG_LEVEL", "value": "debug"}


def test_clean_object_drops_noise_and_redacts_templates() -> None:
    cleaned = clean_object(web_deployment())
    text = json.dumps(cleaned)
    assert LITERAL_TOKEN not in text
    assert "managedFields" not in cleaned["metadata"]
    assert "secretKeyRef: db-credentials/password" in text
    assert web_deployment()["metadata"]["managedFields"]  # the input is not modified
    with pytest.raises(ValueError, match="never returned"):
        clean_object({"kind": "Secret", "data": {"password": "eA=="}})
    summary = secret_summary(
        {
            "metadata": {"name": "s", "namespace": "n", "annotations": {"x": "y"}},
            "type": "Opaque",
            "data": {"k": "dg=="},
        }
    )
    assert summary == {"name": "s", "namespace": "n", "type": "Opaque", "created": None}


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DB_PASS", True),
        ("MYSQL_PWD", True),
        ("OPENAI_KEY", True),
        ("api_key", True),
        ("apiKey", True),
        ("X-Api-Key", True),
        ("AUTH", True),
        ("BEARER", True),
        ("Authorization", True),
        ("SESSION_SECRET", True),
        ("COOKIE", True),
        ("SENTRY_DSN", True),
        ("AZURE_STORAGE_CONNECTION_STRING", True),
        ("SSH_PRIVATE_KEY", True),
        ("HFTOKEN", True),
        ("DBPASSWORD", True),
        ("requirepass", True),
        # "key" must be a word of its own, and a key's id, a public key or a prefix are no credentials.
        ("KEYCLOAK_URL", False),
        ("MONKEY", False),
        ("PUBLIC_KEY", False),
        ("REDIS_KEY_PREFIX", False),
        # Names that describe a credential without holding it.
        ("DB_PASSWORD_FILE", False),
        ("AUTH_ENABLED", False),
        ("TOKEN_URL", False),
        ("MAX_TOKENS", False),
        ("TOKENIZER_PATH", False),
        ("BYPASS_CACHE", False),
        ("PWD", False),
        ("DATABASE_URL", False),  # redacted by its value instead: the URL stays, its password goes
        ("LOG_LEVEL", False),
    ],
)
def test_secret_like_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgres://app:pw@db:5432/shop", "postgres://app:<redacted>@db:5432/shop"),
        ("redis://:Sec@ret@cache:6379/0", "redis://:<redacted>@cache:6379/0"),
        ("Authorization: Bearer abc.DEF.123xyz", "Authorization: Bearer <redacted: bearer credential>"),
        ("use eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. now", "use <redacted: JWT> now"),
        ("key sk-Ab3dEf6hIj9kLm2nOp5qRs8t", "key <redacted: API key>"),
        ("ghp_0123456789abcdefghijABCDEFGHIJ0123", "<redacted: GitHub token>"),
        ("xoxp-123-456-abcdefABCDEF", "<redacted: Slack token>"),
        ("id AKIAIOSFODNN7EXAMPLE", "id <redacted: AWS access key>"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----", "<redacted: private key>"),
        (
            "host=db password=pw1 dbname=shop",
            "host=db password=<redacted: the name suggests a credential> dbname=shop",
        ),
        ('{"client_secret": "x"}', '{"client_secret": "<redacted: the name suggests a credential>"}'),
        ("token: Zx9Qw8Er7Ty6", "token: <redacted: the name suggests a credential>"),
    ],
)
def test_credentials_are_found_by_their_value(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "ERROR: cannot connect to postgres: password authentication failed",
        "token: expired",
        "Basic authentication required",
        "https://sso.shop:8443/realms/ops",
        "pod sk-learn-worker-7d9f8b6c5d-x2x4z is running",  # a lowercase object name, not a key
        "redis://:$(AI_OPS_REDIS_PASSWORD)@redis:6379/0",  # a reference, not a password
        "secret db-credentials not found",
    ],
)
def test_text_without_credentials_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_command_lines_lose_their_credentials_not_their_shape() -> None:
    hidden = "<redacted: the name suggests a credential>"
    assert redact_command(["app", "--token", "t1", "--password=p1", "--port", "8080"]) == [
        "app",
        "--token",
        hidden,
        f"--password={hidden}",
        "--port",
        "8080",
    ]
    assert redact_command(["mysql", "-uroot", "-pp2", "shop"]) == ["mysql", "-uroot", f"-p{hidden}", "shop"]
    # -p is a port for psql and redis-cli; redis-cli's password is -a.
    assert redact_command(["psql", "-p", "5432"]) == ["psql", "-p", "5432"]
    assert redact_command(["redis-cli", "-p", "6379", "-a", "p3"]) == [
        "redis-cli",
        "-p",
        "6379",
        "-a",
        hidden,
    ]
    assert redact_command(["sh", "-c", "export DB_PASS=p4; mysql -pp5 && curl -u ops:p6 https://x"]) == [
        "sh",
        "-c",
        f"export DB_PASS={hidden}; mysql -p{hidden} && curl -u ops:<redacted> https://x",
    ]


def test_pod_status_column() -> None:
    assert pod_status(crashlooping_pod()) == "CrashLoopBackOff"
    assert pod_status(healthy_pod()) == "Running"
    terminating = healthy_pod()
    terminating["metadata"]["deletionTimestamp"] = ts(1)
    assert pod_status(terminating) == "Terminating"
    init = healthy_pod()
    init["status"]["initContainerStatuses"] = [
        {"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}}
    ]
    assert pod_status(init) == "Init:PodInitializing"
    assert age(ts(90), NOW) == "1h"
    assert age(ts(0.5), NOW) == "30s"


def test_describe_crashlooping_pod_explains_why() -> None:
    events = [
        event(
            "e1",
            "Pod",
            "web-def34",
            "BackOff",
            "Back-off restarting failed container app",
            "Warning",
            1,
            count=30,
        )
    ]
    described = describe_pod(crashlooping_pod(), events, NOW)
    container = described["containers"][0]
    assert container["restarts"] == 7
    assert container["last_termination"]["reason"] == "Error"
    assert container["last_termination"]["exit_code"] == 1
    assert described["findings"][0].startswith(
        "container app is crash-looping (7 restarts); it last terminated with reason Error (exit code 1)"
    )
    assert any("BackOff" in finding for finding in described["findings"])


def test_describe_names_oom_kills_with_the_memory_limit() -> None:
    pod = crashlooping_pod()
    pod["status"]["containerStatuses"][0]["lastState"]["terminated"].update(reason="OOMKilled", exitCode=137)
    findings = describe_pod(pod, [], NOW)["findings"]
    assert "ran out of memory (memory limit 128Mi)" in findings[0]


def test_describe_pending_and_image_pull_problems() -> None:
    pending = {
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ],
        },
    }
    assert describe_pod(pending, [], NOW)["findings"] == [
        "the pod is not scheduled: 0/3 nodes are available: 3 Insufficient cpu."
    ]
    pulling = healthy_pod()
    pulling["status"]["containerStatuses"][0].update(
        ready=False, state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    )
    assert (
        describe_pod(pulling, [], NOW)["findings"][0]
        == "container app cannot pull its image shop/web:1.4: Back-off pulling image"
    )
    assert describe_pod(healthy_pod(), [], NOW)["findings"] == [
        "all containers are running and ready; no recent warning events"
    ]


def test_describe_deployment_counts_replicas_and_blames_pods() -> None:
    described = describe_workload(
        "Deployment", web_deployment(), [healthy_pod(), crashlooping_pod()], [], NOW
    )
    assert described["replicas"] == {"desired": 2, "ready": 1, "updated": 2, "available": 1}
    assert described["findings"][0] == "1 of 2 replicas are available"
    assert any(
        f.startswith("condition Available is False: MinimumReplicasUnavailable")
        for f in described["findings"]
    )
    assert any(f.startswith("pod web-def34: container app is crash-looping") for f in described["findings"])
    assert [row["name"] for row in described["pods"]] == ["web-abc12", "web-def34"]


# --------------------------------------------------------------------------------------------- through MCP


def register_extra_kinds(emulator: Any) -> None:
    """Kinds the shared emulator does not list in discovery (registered here, for this test file only)."""
    for key, kind, namespaced in (
        ("apps/v1/statefulsets", "StatefulSet", True),
        ("apps/v1/daemonsets", "DaemonSet", True),
        ("apps/v1/replicasets", "ReplicaSet", True),
        ("v1/nodes", "Node", False),
    ):
        emulator.resources[key] = kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs={"get", "list", "watch", "create"},
            subresources={"status"},
        )


def seed(k8s: Any) -> None:
    now = datetime.now(UTC)
    register_extra_kinds(k8s.emulator)
    k8s.seed_namespace("shop")
    k8s.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "db-credentials",
                "namespace": "shop",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                        {"stringData": {"password": SECRET_VALUE}}
                    )
                },
            },
            "type": "Opaque",
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
        }
    )
    for obj, plural in (
        (healthy_pod(now), "pods"),
        (crashlooping_pod(now), "pods"),
        (web_deployment(now), "deployments"),
    ):
        status = obj.pop("status")
        k8s.create(obj)
        api_version = obj["apiVersion"]
        k8s.patch(
            api_version, plural, "shop", obj["metadata"]["name"], {"status": status}, subresource="status"
        )
    other = healthy_pod(now)
    other["metadata"].update(name="cache-0", labels={"app": "cache"})
    k8s.create(other)
    k8s.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.20",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        }
    )
    k8s.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "cache", "namespace": "shop"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "cache"}},
                "template": {
                    "spec": {"containers": [{"name": "redis", "image": "redis:7", "env": container_env()}]}
                },
            },
        },
        plural="statefulsets",
    )
    k8s.patch(
        "apps/v1", "statefulsets", "shop", "cache", {"status": {"readyReplicas": 1}}, subresource="status"
    )
    k8s.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/worker": ""}},
        },
        plural="nodes",
    )
    node_status = {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
        "nodeInfo": {"kubeletVersion": "v1.33.1"},
    }
    k8s.patch("v1", "nodes", None, "node-1", {"status": node_status}, subresource="status")
    for item in (
        event(
            "web-def34.1",
            "Pod",
            "web-def34",
            "BackOff",
            "Back-off restarting failed container app in pod web-def34",
            "Warning",
            1,
            30,
        ),
        event(
            "web-abc12.1",
            "Pod",
            "web-abc12",
            "Scheduled",
            "Successfully assigned shop/web-abc12 to node-1",
            "Normal",
            80,
        ),
        event("cache-0.1", "Pod", "cache-0", "Unhealthy", "Readiness probe failed", "Warning", 2),
    ):
        k8s.create(item)
    (
        k8s.emulator["get /api/v1/namespaces/shop/pods/web-def34/log"]
        << b"starting web\nERROR: cannot connect to postgres: password authentication failed\n"
    )
    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'secrets is forbidden: User "system:serviceaccount:ai-ops:kubernetes-mcp" cannot list resource "secrets" in API group "" in the namespace "locked"',
    }
    k8s.emulator["get /api/v1/namespaces/locked/secrets"] << 403 << forbidden


@pytest.fixture
async def kube_mcp(k8s_emulator: Any) -> AsyncIterator[ThreadedMcpServer]:
    seed(k8s_emulator)
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_server(cluster, KubernetesSettings())) as server:
        yield server


async def test_tools_and_healthz(kube_mcp: ThreadedMcpServer) -> None:
    import httpx

    async with mcp_client(kube_mcp.url) as client:
        assert await client.tool_names() == [
            "describe_workload",
            "get_pod_logs",
            "get_resource",
            "list_events",
            "list_namespaces",
            "list_resources",
            "list_secrets",
        ]
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{kube_mcp.base_url}/healthz")).json()["status"] == "ok"


async def test_list_and_get(kube_mcp: ThreadedMcpServer) -> None:
    async with mcp_client(kube_mcp.url) as client:
        namespaces = (await client.call("list_namespaces")).json()
        pods = (await client.call("list_resources", kind="pods", namespace="shop")).json()
        web_pods = (
            await client.call("list_resources", kind="pods", namespace="shop", label_selector="app=web")
        ).json()
        by_name = (await client.call("list_resources", kind="pods", name_contains="def")).json()
        deployments = (await client.call("list_resources", kind="deployments", namespace="shop")).json()
        services = (await client.call("list_resources", kind="services", namespace="shop")).json()
        statefulsets = (await client.call("list_resources", kind="statefulsets")).json()
        nodes = (await client.call("list_resources", kind="nodes")).json()
        pod = (await client.call("get_resource", kind="pods", name="web-def34", namespace="shop")).json()
        missing = await client.call("get_resource", kind="pods", name="nope", namespace="shop")
        bad_selector = await client.call("list_resources", kind="pods", label_selector="app=(")
    assert {"default", "shop"} <= {row["name"] for row in namespaces["items"]}
    statuses = {row["name"]: row for row in pods["items"]}
    assert statuses["web-def34"]["status"] == "CrashLoopBackOff"
    assert statuses["web-def34"]["restarts"] == 7
    assert statuses["web-def34"]["ready"] == "0/1"
    assert statuses["web-abc12"]["status"] == "Running"
    assert sorted(row["name"] for row in web_pods["items"]) == ["web-abc12", "web-def34"]
    assert [row["name"] for row in by_name["items"]] == ["web-def34"]
    assert deployments["items"][0]["ready"] == "1/2"
    assert deployments["items"][0]["failing_conditions"][0]["reason"] == "MinimumReplicasUnavailable"
    assert services["items"][0]["ports"] == ["80/TCP->8080"]
    assert statefulsets["items"][0]["images"] == ["redis:7"]
    assert nodes["items"][0] == {
        **nodes["items"][0],
        "name": "node-1",
        "status": "Ready",
        "roles": ["worker"],
        "version": "v1.33.1",
    }
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "Error"
    assert pod["spec"]["containers"][0]["env"][0] == {
        "name": "DB_PASSWORD",
        "valueFrom": "secretKeyRef: db-credentials/password",
    }
    assert missing.is_error and "not found: pods nope in namespace shop" in missing.text
    assert bad_selector.is_error and "label selector" in bad_selector.text


async def test_describe_explains_crashloop_and_deployment(kube_mcp: ThreadedMcpServer) -> None:
    async with mcp_client(kube_mcp.url) as client:
        pod = (await client.call("describe_workload", kind="pod", name="web-def34", namespace="shop")).json()
        deployment = (
            await client.call("describe_workload", kind="deployment", name="web", namespace="shop")
        ).json()
    assert pod["findings"][0].startswith(
        "container app is crash-looping (7 restarts); it last terminated with reason Error (exit code 1)"
    )
    assert [e["reason"] for e in pod["warning_events"]] == ["BackOff"]
    assert deployment["findings"][0] == "1 of 2 replicas are available"
    assert sorted(p["name"] for p in deployment["pods"]) == [
        "web-abc12",
        "web-def34",
    ]  # cache-0 is not selected
    assert any(f.startswith("pod web-def34: container app is crash-looping") for f in deployment["findings"])
    assert {e["object"] for e in deployment["warning_events"]} == {"Pod/web-def34"}


async def test_events_filters(kube_mcp: ThreadedMcpServer) -> None:
    async with mcp_client(kube_mcp.url) as client:
        everything = (await client.call("list_events", namespace="shop")).json()
        warnings = (await client.call("list_events", namespace="shop", type="Warning")).json()
        about_pod = (await client.call("list_events", involved_kind="Pod", involved_name="web-abc12")).json()
    assert everything["count"] == 3
    assert [e["reason"] for e in warnings["items"]] == ["BackOff", "Unhealthy"]  # newest first
    assert warnings["items"][0]["count"] == 30
    assert [e["reason"] for e in about_pod["items"]] == ["Scheduled"]


async def test_pod_logs_pass_tail_and_previous(kube_mcp: ThreadedMcpServer, k8s_emulator: Any) -> None:
    async with mcp_client(kube_mcp.url) as client:
        logs = await client.call(
            "get_pod_logs", name="web-def34", namespace="shop", tail_lines=50, previous=True
        )
        too_many = await client.call("get_pod_logs", name="web-def34", namespace="shop", tail_lines=5000)
    assert not logs.is_error
    assert "password authentication failed" in logs.text
    log_request = k8s_emulator.emulator["get /api/v1/namespaces/shop/pods/web-def34/log"][0]
    assert log_request.params["tailLines"] == "50"
    assert log_request.params["previous"] == "true"
    assert too_many.is_error and "tail_lines" in too_many.text


async def test_forbidden_is_a_tool_error_naming_the_permission(kube_mcp: ThreadedMcpServer) -> None:
    async with mcp_client(kube_mcp.url) as client:
        answer = await client.call("list_secrets", namespace="locked")
    assert answer.is_error
    assert "lacks the RBAC permission to list secrets in namespace locked" in answer.text
    assert "verb: list, resource: secrets" in answer.text


async def test_secret_data_never_leaves_the_server(kube_mcp: ThreadedMcpServer) -> None:
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_namespaces", {}),
        ("list_secrets", {}),
        ("list_secrets", {"namespace": "shop"}),
        ("list_events", {}),
        ("get_pod_logs", {"name": "web-def34", "namespace": "shop"}),
        ("describe_workload", {"kind": "pod", "name": "web-def34", "namespace": "shop"}),
        ("describe_workload", {"kind": "deployment", "name": "web", "namespace": "shop"}),
        ("describe_workload", {"kind": "statefulset", "name": "cache", "namespace": "shop"}),
    ]
    for kind in ("pods", "deployments", "statefulsets", "services", "nodes"):
        calls.append(("list_resources", {"kind": kind}))
    for kind, name in (
        ("pods", "web-def34"),
        ("pods", "web-abc12"),
        ("deployments", "web"),
        ("statefulsets", "cache"),
    ):
        calls.append(("get_resource", {"kind": kind, "name": name, "namespace": "shop"}))
    async with mcp_client(kube_mcp.url) as client:
        answers = [(tool, args, await client.call(tool, **args)) for tool, args in calls]
        secrets = (await client.call("list_secrets", namespace="shop")).json()
    for tool, args, answer in answers:
        assert not answer.is_error, (tool, args, answer.text)
        for forbidden in (SECRET_VALUE, encoded, LITERAL_TOKEN):
            assert forbidden not in answer.text, f"{tool}({args}) leaked a secret value"
    assert secrets["items"] == [
        {
            "name": "db-credentials",
            "namespace": "shop",
            "type": "Opaque",
            "created": secrets["items"][0]["created"],
        }
    ]


async def test_credentials_in_a_spec_and_a_log_are_redacted_by_the_server(
    kube_mcp: ThreadedMcpServer, k8s_emulator: Any
) -> None:
    pod = healthy_pod(datetime.now(UTC))
    pod["metadata"].update(name="worker-0", annotations={"example.com/api-token": "Ann0tat10nTok"})
    pod["spec"]["containers"][0].update(
        env=[{"name": "DATABASE_URL", "value": "postgres://app:UrlPassw0rd@db.shop:5432/orders"}],
        args=["--listen", ":8080", "--db-password", "ArgPassw0rd"],
    )
    pod.pop("status")
    k8s_emulator.create(pod)
    log = b"connecting to postgres://app:L0gPassw0rd@db.shop/orders\npassword authentication failed\n"
    k8s_emulator.emulator["get /api/v1/namespaces/shop/pods/worker-0/log"] << log
    async with mcp_client(kube_mcp.url) as client:
        got = await client.call("get_resource", kind="pods", name="worker-0", namespace="shop")
        logs = await client.call("get_pod_logs", name="worker-0", namespace="shop")
    for secret in ("UrlPassw0rd", "ArgPassw0rd", "Ann0tat10nTok"):
        assert secret not in got.text
    container = got.json()["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "DATABASE_URL", "value": "postgres://app:<redacted>@db.shop:5432/orders"}
    ]
    assert container["args"][:3] == ["--listen", ":8080", "--db-password"]
    assert "L0gPassw0rd" not in logs.text
    assert "postgres://app:<redacted>@db.shop/orders\npassword authentication failed" in logs.text


async def test_responses_are_capped_with_a_note(k8s_emulator: Any) -> None:
    seed(k8s_emulator)
    for index in range(60):
        pod = healthy_pod(datetime.now(UTC))
        pod["metadata"]["name"] = f"batch-{index:02d}"
        k8s_emulator.create(pod)
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_server(cluster, KubernetesSettings(max_response_bytes=1500))) as server:
        async with mcp_client(server.url) as client:
            listed = await client.call("list_resources", kind="pods", namespace="shop")
            got = await client.call("describe_workload", kind="deployment", name="web", namespace="shop")
    assert len(listed.text.encode()) <= 1500
    body = json.loads(listed.text)
    assert body["count"] == 63
    assert f"showing {len(body['items'])} of 63 items" in body["truncated"]
    assert len(got.text.encode()) <= 1500
    assert "[truncated: " in got.text


async def test_cli_serves_the_kubernetes_server(k8s_emulator: Any) -> None:
    seed(k8s_emulator)
    server = McpServerProcess(["kubernetes", "--kubeconfig", str(k8s_emulator.kubeconfig_path)])
    import asyncio

    await asyncio.to_thread(server.start)
    try:
        async with mcp_client(server.url) as client:
            pods = (
                await client.call("list_resources", kind="pods", namespace="shop", label_selector="app=cache")
            ).json()
    finally:
        await asyncio.to_thread(server.stop)
    assert [row["name"] for row in pods["items"]] == ["cache-0"]


# --------------------------------------------------------------------------------------------- in an agent turn


async def test_chat_agent_turn_uses_kubernetes(
    kube_mcp: ThreadedMcpServer, fresh_fake_llm: Any, tmp_path: Path
) -> None:
    """The scripted model asks describe_workload why a pod crash-loops; the finding reaches the model and
    the API answer, and the Secret's value reaches neither."""
    from chat_service.app import create_app
    from tests.harness.fake_llm import Reply
    from tests.support.chat_support import (
        agent_config,
        mcp_server,
        model_entry,
        running,
        settings_for,
        write_config,
    )

    config_path = tmp_path / "agent-config.json"
    write_config(
        config_path,
        agent_config(
            models=[model_entry("main", fresh_fake_llm.base_url, default=True)],
            servers=[mcp_server("kubernetes", kube_mcp.url, include=["describe_workload", "get_resource"])],
        ),
    )
    fresh_fake_llm.enqueue(
        Reply.tool_calls(
            [
                ("describe_workload", {"kind": "pod", "name": "web-def34", "namespace": "shop"}),
                ("get_resource", {"kind": "deployments", "name": "web", "namespace": "shop"}),
            ]
        ),
        Reply.text("web-def34 crash-loops: its app container exits with code 1."),
    )
    async with running(create_app(settings_for(config_path))) as app, app.client() as client:
        response = await client.post("/api/chat", json={"message": "Why is web-def34 in shop crash-looping?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "web-def34 crash-loops: its app container exits with code 1."
    calls = {call["name"]: call for call in body["tool_calls"]}
    assert calls["describe_workload"]["error"] is None
    described = json.loads(calls["describe_workload"]["output"])
    assert described["findings"][0].startswith("container app is crash-looping (7 restarts)")
    offered = {tool["function"]["name"] for tool in fresh_fake_llm.chat_requests[0]["json"]["tools"]}
    assert offered == {"describe_workload", "get_resource"}
    everything_sent = json.dumps(fresh_fake_llm.chat_requests) + response.text
    assert "crash-looping (7 restarts)" in everything_sent
    for forbidden in (SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode(), LITERAL_TOKEN):
        assert forbidden not in everything_sent


async def test_docs_list_every_tool_with_its_arguments() -> None:
    from mcp_servers.kubernetes.cluster import Cluster

    doc = (Path(__file__).resolve().parents[2] / "docs" / "mcp-servers.md").read_text()
    section = doc.split("\n## kubernetes\n", 1)[1].split("\n## ", 1)[0]
    server = build_server(Cluster(api_client=None, host="", source=""), KubernetesSettings())
    for tool in await server.list_tools():
        [row] = [line for line in section.splitlines() if line.startswith(f"| `{tool.name}` |")]
        for argument in tool.inputSchema["properties"]:
            assert f"`{argument}`" in row, f"{tool.name}({argument}) is not documented"


def test_connection_problems_are_short() -> None:
    import urllib3.exceptions

    from mcp_servers.kubernetes.cluster import connection_problem

    refused = urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/api/v1/namespaces",
        urllib3.exceptions.NewConnectionError(
            None,  # type: ignore[arg-type]
            "HTTPConnection(host='10.0.0.1', port=6443): Failed to establish a new connection: "
            "[Errno 111] Connection refused",
        ),
    )
    assert connection_problem(refused) == "Connection refused"
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out. (read timeout=30)")  # type: ignore[arg-type]
    assert connection_problem(timeout) == "timed out"


async def test_describe_still_explains_when_events_are_forbidden(k8s_emulator: Any) -> None:
    seed(k8s_emulator)
    forbidden = {
        "kind": "Status",
        "code": 403,
        "message": 'events is forbidden: User "mcp" cannot list resource "events"',
    }
    k8s_emulator.emulator["get /api/v1/namespaces/shop/events"] << 403 << forbidden
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_server(cluster, KubernetesSettings())) as server:
        async with mcp_client(server.url) as client:
            described = (
                await client.call("describe_workload", kind="pod", name="web-def34", namespace="shop")
            ).json()
            events = await client.call("list_events", namespace="shop")
    assert described["findings"][0].startswith("container app is crash-looping (7 restarts)")
    assert described["warning_events"] == []
    [note] = described["notes"]
    assert note.startswith("events unavailable: forbidden:") and "list events in namespace shop" in note
    assert events.is_error and "verb: list, resource: events" in events.text
