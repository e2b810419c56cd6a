"""The MCP probe against the real MCP fixture servers (streamable HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai_ops_api.specs import MCPServerSpec
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_operator.runtime.probe import probe_server, resolve_refusal

FIXTURE_TOOLS = ("add", "echo", "fail", "get_pod_status", "slow")


def spec(url: str, timeout: int = 2, **health_check: Any) -> MCPServerSpec:
    return MCPServerSpec.model_validate(
        {"url": url, "healthCheck": {"timeoutSeconds": timeout, "intervalSeconds": 10, **health_check}}
    )


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[SharedHttpPool]:
    shared = SharedHttpPool()
    yield shared
    await shared.aclose()


async def test_healthy_server_answers_initialize_and_tools_list(
    mcp_fixture_servers: Any, http: SharedHttpPool
) -> None:
    result = await probe_server(spec(mcp_fixture_servers.healthy.url), {}, http, allow_loopback=True)
    assert result.ok, result.error
    assert result.tools == FIXTURE_TOOLS
    assert result.server_info is not None and result.server_info.name == "ai-ops-fixture-healthy"
    assert result.server_info.protocol_version


async def test_health_path_must_answer_2xx(mcp_fixture_servers: Any, http: SharedHttpPool) -> None:
    url = mcp_fixture_servers.healthy.url
    assert (await probe_server(spec(url, path="/healthz"), {}, http, allow_loopback=True)).ok
    missing = await probe_server(spec(url, path="/missing"), {}, http, allow_loopback=True)
    assert not missing.ok and "404" in missing.error


async def test_bearer_server_is_unauthenticated_without_or_with_a_wrong_token(
    mcp_fixture_servers: Any, http: SharedHttpPool
) -> None:
    server = mcp_fixture_servers.auth
    bare = await probe_server(spec(server.url), {}, http, allow_loopback=True)
    assert bare.unauthenticated and "no headers are configured" in bare.error
    wrong = await probe_server(spec(server.url), {"Authorization": "Bearer wrong"}, http, allow_loopback=True)
    assert wrong.unauthenticated and "(Authorization) were not accepted" in wrong.error
    assert "wrong" not in wrong.error and server.token not in wrong.error
    good = await probe_server(spec(server.url), server.headers, http, allow_loopback=True)
    assert good.ok and good.tools == FIXTURE_TOOLS


async def test_hanging_server_fails_at_the_deadline(mcp_fixture_servers: Any, http: SharedHttpPool) -> None:
    started = time.monotonic()
    result = await probe_server(
        spec(mcp_fixture_servers.hanging.url, timeout=1), {}, http, allow_loopback=True
    )
    elapsed = time.monotonic() - started
    assert not result.ok and "within the timeout (1 s)" in result.error
    # The deadline holds: the probe returns after about one timeout, not after the SDK's 30 s default.
    assert elapsed < 5


async def test_closed_port_fails_with_a_connection_error(http: SharedHttpPool) -> None:
    result = await probe_server(spec("http://127.0.0.1:9/mcp"), {}, http, allow_loopback=True)
    assert not result.ok and not result.unauthenticated and "connection failed" in result.error


async def test_loopback_and_link_local_are_refused_at_probe_time(
    mcp_fixture_servers: Any, http: SharedHttpPool
) -> None:
    refused = await probe_server(spec(mcp_fixture_servers.healthy.url), {}, http, allow_loopback=False)
    assert not refused.ok and "loopback" in refused.error
    # A name that resolves to loopback is refused too (the URL check alone only sees literal addresses).
    assert "loopback" in (await resolve_refusal("http://localhost:1/mcp", allow_loopback=False) or "")
    assert "metadata" in (
        await resolve_refusal("http://metadata.google.internal/", allow_loopback=True) or ""
    )
    assert "link-local" in (await resolve_refusal("http://169.254.10.1/", allow_loopback=True) or "")


def test_render_probe_applies_the_health_rules(
    mcp_fixture_servers: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from ai_ops_cli import main

    manifest = tmp_path / "servers.yaml"
    manifest.write_text(
        f"""
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {{name: up}}
spec: {{url: "{mcp_fixture_servers.healthy.url}", toolFilter: {{include: ["e*"]}}}}
---
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {{name: locked}}
spec: {{url: "{mcp_fixture_servers.auth.url}"}}
---
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {{name: down}}
spec: {{url: "http://127.0.0.1:9/mcp", healthCheck: {{failureThreshold: 1}}}}
---
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {{name: new-and-down}}
spec: {{url: "http://127.0.0.1:9/mcp"}}
"""
    )
    # Servers were left out: rendered, with exit status 3 (EXIT_PARTIAL).
    assert main(["render", str(manifest), "--probe", "--allow-loopback"]) == 3
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert [(s["name"], s["health"], s["tools"]) for s in document["mcpServers"]] == [
        ("up", "Healthy", ["echo"])
    ]
    assert "MCPServer/locked: left out: Unauthenticated" in captured.err
    assert "MCPServer/down: left out: Unhealthy" in captured.err
    # One failure below the threshold: a new server stays Unknown, as in the cluster.
    assert "MCPServer/new-and-down: left out: Unknown" in captured.err


@pytest.fixture(scope="module")
def sse_server() -> Any:
    """A FastMCP server on the SSE transport (the fixture servers speak streamable HTTP only)."""
    import threading

    import uvicorn
    from mcp.server.fastmcp import FastMCP

    from tests.harness.ports import free_port

    mcp = FastMCP("sse-fixture", log_level="WARNING")

    @mcp.tool()
    def ping() -> str:
        """Answer pong."""
        return "pong"

    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(mcp.sse_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/sse"
    server.should_exit = True
    thread.join(timeout=5)


async def test_sse_transport_is_probed_too(sse_server: str, http: SharedHttpPool) -> None:
    spec = MCPServerSpec.model_validate({"transport": "sse", "url": sse_server})
    result = await probe_server(spec, {}, http, allow_loopback=True)
    assert result.ok, result.error
    assert result.tools == ("ping",)
    assert result.server_info is not None and result.server_info.name == "sse-fixture"
