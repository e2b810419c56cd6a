"""The two servers the kind suite runs inside the cluster, exercised here on 127.0.0.1.

The kind suite cannot run on this machine; these tests make sure its in-cluster LLM and MCP servers work,
so a failure there points at the chart or the cluster, not at the fixtures. Each server runs as a real
subprocess, exactly as the suite starts it (`python <file> <port>`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.ports import free_port, port_accepts, wait_until

SERVERS = Path(__file__).parent / "servers"
API_KEY = "e2e-key"


def _start(script: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVERS / script), str(port)],
        env={**os.environ, "HOST": "127.0.0.1", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: process.poll() is not None or port_accepts("127.0.0.1", port), 30, script)
    except TimeoutError:
        process.kill()
        raise
    assert process.poll() is None, f"{script} exited with {process.returncode}"
    return process, port


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    process, port = _start("llm.py", {"E2E_LLM_API_KEY": API_KEY})
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    process, port = _start("mcp_echo.py", {})
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()


ECHO_TOOL = {"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_llm_refuses_a_wrong_key(llm_url: str):
    response = httpx.post(
        f"{llm_url}/chat/completions", json={"messages": []}, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 401


def test_llm_echoes_and_calls_a_requested_tool(llm_url: str):
    def ask(messages: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"model": "m", "messages": messages, "tools": [ECHO_TOOL]}
        response = httpx.post(f"{llm_url}/chat/completions", json=body, headers=AUTH)
        response.raise_for_status()
        message: dict[str, Any] = response.json()["choices"][0]["message"]
        return message

    assert ask([{"role": "user", "content": "hello"}])["content"] == "echo: hello"
    call_message = ask([{"role": "user", "content": 'call echo {"text": "hi"}'}])
    (call,) = call_message["tool_calls"]
    assert call["function"] == {"name": "echo", "arguments": '{"text": "hi"}'}
    history: list[dict[str, Any]] = [
        {"role": "user", "content": 'call echo {"text": "hi"}'},
        call_message,
        {"role": "tool", "tool_call_id": call["id"], "content": [{"type": "text", "text": "hi"}]},
    ]
    assert ask(history)["content"] == "tool echo said: hi"
    # An unknown tool is not called.
    assert ask([{"role": "user", "content": "call rm {}"}])["content"] == "echo: call rm {}"


def test_llm_streams_tool_calls_and_usage(llm_url: str):
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": 'call echo {"text": "x"}'}],
        "tools": [ECHO_TOOL],
    }
    with httpx.stream("POST", f"{llm_url}/chat/completions", json=body, headers=AUTH) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1]["tool_calls"][0]["function"]["name"] == "echo"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_mcp_echo_server_lists_and_calls_tools(mcp_url: str):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(mcp_url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        assert sorted(t.name for t in tools.tools) == ["add", "echo"]
        result = await session.call_tool("add", {"a": 2, "b": 3})
        assert result.content[0].text == "5"  # type: ignore[union-attr]


def test_the_suites_manifests_are_valid():
    """What the kind suite applies passes the project's validation and the restricted Pod Security checks."""
    import kubernetes_validate

    from ai_ops_operator.core.validation import validate_resource
    from tests.e2e.manifests import fixture_server, resources

    custom = resources("ns", "key")
    assert {obj["kind"] for obj in custom} >= {"LLMProvider", "LLMModel", "LLMMiddleware", "MCPServer"}
    for obj in custom:
        if obj["apiVersion"].startswith("ai-ops.dev/"):
            assert validate_resource(obj) == [], obj["metadata"]["name"]
        else:
            kubernetes_validate.validate(obj, "1.29", strict=True)
    for obj in fixture_server("e2e-llm", "llm.py", {"K": "V"}, "ai-ops:e2e"):
        kubernetes_validate.validate(obj, "1.29", strict=True)
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
