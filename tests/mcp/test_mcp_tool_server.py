"""What the bundled MCP servers show a model through a real MCP client: tool descriptions without the
docstrings' source indentation, and bad arguments answered in plain words naming the argument (no pydantic
repr, no documentation URLs)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from mcp_servers.kubernetes.cluster import connect
from mcp_servers.kubernetes.server import KubernetesSettings
from mcp_servers.kubernetes.server import build_server as build_kubernetes_server
from mcp_servers.kubernetes_actions.cluster import connect_actions
from mcp_servers.kubernetes_actions.server import KubernetesActionsSettings
from mcp_servers.kubernetes_actions.server import build_server as build_actions_server
from mcp_servers.netops.server import NetopsSettings
from mcp_servers.netops.server import build_server as build_netops_server
from mcp_servers.prometheus.server import PrometheusSettings
from mcp_servers.prometheus.server import build_server as build_prometheus_server
from mcp_servers.tool_server import ToolServer
from tests.harness.ports import free_port
from tests.support.mcp_server_helpers import ThreadedMcpServer, mcp_client

PYDANTIC_TRACES = ("errors.pydantic.dev", "validation error for", "Arguments", "[type=", "input_value=")


@pytest.fixture(scope="module")
def netops() -> Iterator[ThreadedMcpServer]:
    with ThreadedMcpServer(build_netops_server(NetopsSettings())) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus() -> Iterator[ThreadedMcpServer]:
    # Nothing listens there: listing tools and refusing bad arguments never reach Prometheus.
    settings = PrometheusSettings(url=f"http://127.0.0.1:{free_port()}")
    with ThreadedMcpServer(build_prometheus_server(settings)) as server:
        yield server


@pytest.fixture
def kubernetes(k8s_emulator: Any) -> Iterator[ThreadedMcpServer]:
    cluster = connect(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_kubernetes_server(cluster, KubernetesSettings())) as server:
        yield server


@pytest.fixture
def kubernetes_actions(k8s_emulator: Any) -> Iterator[ThreadedMcpServer]:
    cluster = connect_actions(kubeconfig=str(k8s_emulator.kubeconfig_path))
    with ThreadedMcpServer(build_actions_server(cluster, KubernetesActionsSettings())) as server:
        yield server


async def descriptions(url: str) -> dict[str, str]:
    async with mcp_client(url) as client:
        return {t.name: t.description or "" for t in (await client.session.list_tools()).tools}


def assert_clean(found: dict[str, str]) -> None:
    assert found
    for name, text in found.items():
        assert text.strip(), f"{name} has a description"
        indented = [line for line in text.splitlines() if line[:1].isspace()]
        assert indented == [], f"{name}: lines keep the docstring's indentation: {indented}"
        assert text == inspect.cleandoc(text)


async def test_netops_descriptions_have_no_docstring_indentation(netops: ThreadedMcpServer) -> None:
    found = await descriptions(netops.url)
    assert_clean(found)
    assert "\nor status NXDOMAIN" in found["dns_lookup"], "the second line starts at the margin"


async def test_kubernetes_descriptions_have_no_docstring_indentation(kubernetes: ThreadedMcpServer) -> None:
    assert_clean(await descriptions(kubernetes.url))


async def test_prometheus_descriptions_have_no_docstring_indentation(prometheus: ThreadedMcpServer) -> None:
    found = await descriptions(prometheus.url)
    assert_clean(found)
    assert "\nmin, max, first, last" in found["query_range"], "the second line starts at the margin"


async def test_kubernetes_actions_descriptions_have_no_docstring_indentation(
    kubernetes_actions: ThreadedMcpServer,
) -> None:
    found = await descriptions(kubernetes_actions.url)
    assert_clean(found)
    assert "\nkubectl.kubernetes.io/restartedAt" in found["rollout_restart"]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("tcp_check", {"host": "127.0.0.1", "port": 80, "timeout_seconds": 600}, "'timeout_seconds': "),
        ("tcp_check", {"host": "127.0.0.1", "port": "eighty"}, "'port': Input should be a valid integer"),
        ("tcp_check", {"port": 80}, "'host' is required"),
        ("dns_lookup", {"name": "svc.test", "record_type": "PTR"}, "'record_type': "),
    ],
)
async def test_netops_bad_arguments_answer_in_plain_words(
    netops: ThreadedMcpServer, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with mcp_client(netops.url) as client:
        answer = await client.call(tool, **arguments)
    assert answer.is_error
    assert answer.text.startswith(f"invalid arguments for {tool}: ") and expected in answer.text
    assert not [trace for trace in PYDANTIC_TRACES if trace in answer.text], answer.text


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("alerts", {"state": "bogus"}, "'state': Input should be 'any', 'firing' or 'pending' (got 'bogus')"),
        ("query", {"expr": ""}, "'expr': String should have at least 1 character"),
        ("query_range", {"expr": "up", "window": "forever"}, "'window': String should match pattern"),
        ("label_values", {}, "'label' is required"),
    ],
)
async def test_prometheus_bad_arguments_answer_in_plain_words(
    prometheus: ThreadedMcpServer, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with mcp_client(prometheus.url) as client:
        answer = await client.call(tool, **arguments)
    assert answer.is_error
    assert answer.text.startswith(f"invalid arguments for {tool}: ") and expected in answer.text
    assert not [trace for trace in PYDANTIC_TRACES if trace in answer.text], answer.text


async def test_kubernetes_actions_bad_arguments_answer_in_plain_words(
    kubernetes_actions: ThreadedMcpServer,
) -> None:
    async with mcp_client(kubernetes_actions.url) as client:
        answer = await client.call("scale", kind="Job", namespace="shop", name="web", replicas="many")
    assert answer.is_error and answer.text.startswith("invalid arguments for scale: ")
    assert "'kind': Input should be 'Deployment' or 'StatefulSet' (got 'Job')" in answer.text
    assert "'replicas': Input should be a valid integer" in answer.text
    assert not [trace for trace in PYDANTIC_TRACES if trace in answer.text], answer.text


async def test_kubernetes_bad_arguments_answer_in_plain_words(kubernetes: ThreadedMcpServer) -> None:
    async with mcp_client(kubernetes.url) as client:
        answer = await client.call("get_pod_logs", namespace="default", name="web", tail_lines="lots")
    assert answer.is_error and "'tail_lines': Input should be a valid integer" in answer.text
    assert "(got 'lots')" in answer.text
    assert not [trace for trace in PYDANTIC_TRACES if trace in answer.text], answer.text


class Inner(BaseModel):
    size: int


async def test_a_validation_error_inside_a_tool_is_not_taken_for_bad_arguments() -> None:
    server = ToolServer("inner", log_level="WARNING", stateless_http=True, json_response=True)

    @server.tool()
    def parse_size(text: str) -> str:
        """Parse a size."""
        return str(Inner.model_validate({"size": text}).size)

    with ThreadedMcpServer(server) as running:
        async with mcp_client(running.url) as client:
            fine = await client.call("parse_size", text="3")
            inner = await client.call("parse_size", text="x")
    assert fine.text == "3"
    assert inner.is_error and "invalid arguments" not in inner.text and "Inner" in inner.text
