"""Attempts to get a credential out of the read-only Kubernetes MCP server: credentials placed where a
careless manifest puts them (env literals, URLs, command lines, shell scripts, probe headers, annotations,
embedded manifests, termination messages, events, logs). Each case also names what must stay visible,
so redaction cannot pass by hiding everything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from mcp_servers.kubernetes.cluster import connect
from mcp_servers.kubernetes.redaction import clean_object
from mcp_servers.kubernetes.server import KubernetesSettings, build_server
from tests.mcp.test_mcp_kubernetes import event, seed, ts
from tests.support.mcp_server_helpers import ThreadedMcpServer, mcp_client

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcHMtYm90Iiwicm9sZSI6ImFkbWluIn0.Qm9ndXNTaWduYXR1cmU4Mw"
)
OPENAI = "sk-proj-Zq8XvN3pL0aT7yRw2KsB5mHd9Fe4Gj6C"
GITHUB = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngXyZ98765AbC"
SLACK = "xoxb-2048-77321-Hj3KsL9qPzW4mN7"
AWS_KEY_ID = "AKIAZ7Q3XJ5NR2WV6KPL"
PEM_BODY = "MIIEowIBAAKCAQEAw7Zq9pLx3vN2T8kR4mJ5sQ1uY6hB0cD7eF8gH9iJ2kL3mN4oP5"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY[::-1]}\n-----END RSA PRIVATE KEY-----"


def pod_with(container: dict[str, Any], *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "leaky", "namespace": "shop", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "shop/app:2.0", **container}]},
    }


def env(**values: str) -> dict[str, Any]:
    return {"env": [{"name": name, "value": value} for name, value in values.items()]}


# (case, pod, the credential, text that must still be there)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("env DB_PASS", pod_with(env(DB_PASS="Winter2026!db", DB_HOST="db.shop")), "Winter2026!db", "db.shop"),
    ("env MYSQL_PWD", pod_with(env(MYSQL_PWD="my5qlR00tPw")), "my5qlR00tPw", "MYSQL_PWD"),
    (
        "env OPENAI_KEY, not KEYCLOAK_URL",
        pod_with(env(OPENAI_KEY="opaque-provider-key-77", KEYCLOAK_URL="https://sso.shop/realms/ops")),
        "opaque-provider-key-77",
        "https://sso.shop/realms/ops",
    ),
    ("env AUTH", pod_with(env(AUTH="admin:Hunter2hunter")), "Hunter2hunter", '"AUTH"'),
    ("env BEARER", pod_with(env(BEARER="b3arerValue42x")), "b3arerValue42x", '"BEARER"'),
    ("env camelCase dbPass", pod_with(env(dbPass="c4mElPassValue")), "c4mElPassValue", "dbPass"),
    ("env SESSION_ID", pod_with(env(SESSION_ID="s3ss10nCook1e")), "s3ss10nCook1e", "SESSION_ID"),
    (
        "env SENTRY_DSN",
        pod_with(env(SENTRY_DSN="https://pUbl1cK3y@o1.ingest.example/42")),
        "pUbl1cK3y",
        "DSN",
    ),
    (
        "env connection string",
        pod_with(env(DB_CONNECTION_STRING="Server=sql;Database=shop;User Id=app;Password=C0nnStr!ng")),
        "C0nnStr!ng",
        "DB_CONNECTION_STRING",
    ),
    (
        "DATABASE_URL keeps the URL without its password",
        pod_with(env(DATABASE_URL="postgres://app:Pg-Pass-991@db.shop:5432/orders")),
        "Pg-Pass-991",
        "postgres://app:<redacted>@db.shop:5432/orders",
    ),
    (
        "URL password with an unencoded @",
        pod_with(env(BROKER="amqp://svc:at@sign@Pass@mq.shop:5672/")),
        "sign@Pass",
        "@mq.shop:5672/",
    ),
    ("JWT under an innocent name", pod_with(env(CONFIG_BLOB=JWT)), JWT, "<redacted: JWT>"),
    ("OpenAI key under an innocent name", pod_with(env(LLM=OPENAI)), OPENAI, "<redacted: API key>"),
    (
        "GitHub token in a git URL",
        pod_with(env(REPO=f"https://{GITHUB}@github.com/shop/app")),
        GITHUB,
        "github.com/shop/app",
    ),
    ("Slack token", pod_with(env(NOTIFY=SLACK)), SLACK, "<redacted: Slack token>"),
    (
        "AWS key id under an innocent name",
        pod_with(env(S3_USER=AWS_KEY_ID)),
        AWS_KEY_ID,
        "<redacted: AWS access key>",
    ),
    ("PEM private key", pod_with(env(TLS_BUNDLE=PEM)), PEM_BODY, "<redacted: private key>"),
    (
        "args --password=",
        pod_with({"args": ["--listen=:8080", "--password=Arg5ecret!"]}),
        "Arg5ecret!",
        "--listen=:8080",
    ),
    (
        "args --token value",
        pod_with({"command": ["/app"], "args": ["--token", "t0kenAsNextArg", "--port", "8080"]}),
        "t0kenAsNextArg",
        "8080",
    ),
    ("mysql -p secret", pod_with({"command": ["mysql", "-u", "root", "-p", "MyP4ssw"]}), "MyP4ssw", "root"),
    ("mysql -psecret", pod_with({"command": ["mysql", "-uroot", "-pAtt4ched"]}), "Att4ched", "-uroot"),
    (
        "redis-cli -a, not -p",
        pod_with({"command": ["redis-cli", "-p", "6380", "-a", "R3disPw"]}),
        "R3disPw",
        '"6380"',
    ),
    (
        "sh -c script",
        pod_with(
            {
                "command": ["/bin/sh", "-c"],
                "args": ["export API_TOKEN=Scr1ptT0ken && curl -u ops:Cur1Pass https://api.shop/health"],
            }
        ),
        "Scr1ptT0ken",
        "https://api.shop/health",
    ),
    (
        "curl -u in a script",
        pod_with({"args": ["sh", "-c", "curl -fsS -u ops:Cur1Pass https://api.shop/health"]}),
        "Cur1Pass",
        "ops:<redacted>",
    ),
    (
        "probe Authorization header",
        pod_with(
            {
                "readinessProbe": {
                    "httpGet": {
                        "path": "/ready",
                        "port": 8080,
                        "httpHeaders": [{"name": "Authorization", "value": "Basic b3BzOnByb2JlUGFzcw=="}],
                    }
                }
            }
        ),
        "b3BzOnByb2JlUGFzcw==",
        "/ready",
    ),
    (
        "lifecycle hook command",
        pod_with({"lifecycle": {"preStop": {"exec": {"command": ["/drain", "--api-key", "Dr41nK3y"]}}}}),
        "Dr41nK3y",
        "/drain",
    ),
    (
        "Bearer token in an arg",
        pod_with({"args": ["-H", "Authorization: Bearer opaque.Tok3n.Value99"]}),
        "opaque.Tok3n.Value99",
        "Authorization: Bearer",
    ),
    (
        "annotation named like a token",
        pod_with({}, annotations={"ci.example.com/deploy-token": "d3pl0yT0k3n", "team": "payments"}),
        "d3pl0yT0k3n",
        "payments",
    ),
    (
        "annotation holding a Secret manifest",
        pod_with(
            {},
            annotations={
                "backup.example.com/original": json.dumps(
                    {"apiVersion": "v1", "kind": "Secret", "data": {"password": "QmFja3VwUGFzcw=="}}
                ),
                "team": "payments",
            },
        ),
        "QmFja3VwUGFzcw==",
        "backup.example.com/original",
    ),
    (
        "annotation holding a manifest with a literal credential",
        pod_with(
            {},
            annotations={
                "previous.example.com/spec": json.dumps(
                    {"env": [{"name": "DB_PASSWORD", "value": "Prev10usPw"}]}
                )
            },
        ),
        "Prev10usPw",
        "previous.example.com/spec",
    ),
    (
        "credential in an annotation's free text",
        pod_with({}, annotations={"notes": f"rotate soon, current key {GITHUB}"}),
        GITHUB,
        "rotate soon",
    ),
]


@pytest.mark.parametrize(("pod", "credential", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_credential_placed_in_a_pod_never_comes_back(
    pod: dict[str, Any], credential: str, kept: str
) -> None:
    text = json.dumps(clean_object(pod))
    assert credential not in text
    assert kept in text


def test_values_that_only_point_at_a_credential_stay_readable() -> None:
    # `$(VAR)` references and file paths disclose nothing and are what an operator needs to debug.
    pod = pod_with(
        {
            "command": ["redis-server", "--requirepass", "$(REDIS_PASSWORD)", "--save", ""],
            "args": ["--password-file", "/run/secrets/db", "--tls-key-file=/tls/key.pem"],
            **env(
                DB_PASSWORD_FILE="/run/secrets/db",
                AI_OPS_REDIS_URL="redis://:$(AI_OPS_REDIS_PASSWORD)@redis:6379/0",
                AUTH_ENABLED="true",
                SECRET_SAUCE="Sauc3Recipe",
            ),
        }
    )
    cleaned = clean_object(pod)["spec"]["containers"][0]
    assert cleaned["command"] == ["redis-server", "--requirepass", "$(REDIS_PASSWORD)", "--save", ""]
    assert cleaned["args"] == ["--password-file", "/run/secrets/db", "--tls-key-file=/tls/key.pem"]
    values = {var["name"]: var["value"] for var in cleaned["env"]}
    assert values["DB_PASSWORD_FILE"] == "/run/secrets/db"
    assert values["AI_OPS_REDIS_URL"] == "redis://:$(AI_OPS_REDIS_PASSWORD)@redis:6379/0"
    assert values["AUTH_ENABLED"] == "true"
    assert "Sauc3Recipe" not in values["SECRET_SAUCE"]


async def test_no_tool_hands_out_a_planted_credential(k8s_emulator: Any) -> None:
    """The same attacks through the real server: a pod with credentials in its spec, its termination
    message, an event about it and its log; every tool that can see them is asked."""
    now = datetime.now(UTC)
    seed(k8s_emulator)
    planted = {
        "DB_PASS": "Winter2026!db",
        "url": "Pg-Pass-991",
        "arg": "Arg5ecret!",
        "script": "Scr1ptT0ken",
        "jwt": JWT,
        "openai": OPENAI,
        "github": GITHUB,
        "annotation": "d3pl0yT0k3n",
        "termination": "T3rm1nat10nPw",
        "event": "Ev3ntT0k3nXy",
        "log": "L0gLinePassw0rd",
        "pem": PEM_BODY,
    }
    pod = pod_with(
        {
            "command": ["/bin/sh", "-c"],
            "args": [f"export API_TOKEN={planted['script']}; exec /app --password={planted['arg']}"],
            **env(
                DB_PASS=planted["DB_PASS"],
                DATABASE_URL=f"postgres://app:{planted['url']}@db.shop:5432/orders",
                CONFIG_BLOB=planted["jwt"],
                LLM=planted["openai"],
            ),
        },
        annotations={
            "ci.example.com/deploy-token": planted["annotation"],
            "notes": f"key {planted['github']}",
        },
    )
    pod["metadata"].update(labels={"app": "leaky"}, creationTimestamp=ts(30, now))
    k8s_emulator.create(pod)
    status = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "reason": "Error",
                        "exitCode": 1,
                        "message": f"fatal: login failed for postgres://app:{planted['termination']}@db",
                    }
                },
            }
        ],
    }
    k8s_emulator.patch("v1", "pods", "shop", "leaky", {"status": status}, subresource="status")
    k8s_emulator.create(
        event(
            "leaky.1",
            "Pod",
            "leaky",
            "Failed",
            f"probe sent Authorization: Bearer {planted['event']}",
            "Warning",
            1,
        )
    )
    log = f"boot\nconnecting with password={planted['log']}\n{PEM}\nready for postgres://db.shop\n"
    k8s_emulator.emulator["get /api/v1/namespaces/shop/pods/leaky/log"] << log.encode()
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_server(cluster, KubernetesSettings())) as server:
        async with mcp_client(server.url) as client:
            answers = {
                "get_resource": await client.call(
                    "get_resource", kind="pods", name="leaky", namespace="shop"
                ),
                "list_resources": await client.call("list_resources", kind="pods", namespace="shop"),
                "describe_workload": await client.call(
                    "describe_workload", kind="pod", name="leaky", namespace="shop"
                ),
                "list_events": await client.call("list_events", namespace="shop", type="Warning"),
                "get_pod_logs": await client.call(
                    "get_pod_logs", name="leaky", namespace="shop", previous=True
                ),
            }
    for tool, answer in answers.items():
        assert not answer.is_error, (tool, answer.text)
        for where, credential in planted.items():
            assert credential not in answer.text, f"{tool} leaked the credential planted in {where}"
    # ... and the answers still say what is going on.
    assert "postgres://app:<redacted>@db.shop:5432/orders" in answers["get_resource"].text
    assert "login failed for postgres://app:<redacted>@db" in answers["describe_workload"].text
    assert "probe sent Authorization: Bearer <redacted" in answers["list_events"].text
    assert "ready for postgres://db.shop" in answers["get_pod_logs"].text
