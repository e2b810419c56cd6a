"""``ai-ops render``: its exit status when the config leaves resources out, the stderr list of what was
left out and why, and what ``--probe`` says of a name that does not resolve (in a network namespace with a
local DNS responder: no name is looked up outside it)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ai_ops_cli import main
from tests.mcp.test_mcp_netops import DnsResponder
from tests.security.netns import run_in_netns

AI_OPS = Path(sys.executable).with_name("ai-ops")

PROVIDER = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMProvider
metadata:
  name: ollama
spec:
  type: ollama
"""
MODEL = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMModel
metadata:
  name: {name}
spec:
  providerRef:
    name: {provider}
  model: llama3.1
"""
SERVER = """\
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata:
  name: {name}
spec:
  url: {url}
"""


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AI_OPS), "render", *args], capture_output=True, text=True, check=False)


def test_everything_rendered_exits_0_with_nothing_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(f"{PROVIDER}---\n{MODEL.format(name='m', provider='ollama')}")
    result = render(str(tmp_path))
    assert (result.returncode, result.stderr) == (0, "")
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["m"]


def test_left_out_resources_exit_3_and_each_is_listed_with_where_and_why(tmp_path: Path) -> None:
    file = tmp_path / "all.yaml"
    file.write_text(
        "---\n".join(
            [
                PROVIDER,
                MODEL.format(name="kept", provider="ollama"),
                MODEL.format(name="dangling", provider="open-ai"),
                SERVER.format(name="typo", url="htps://tools.svc/mcp"),
                SERVER.format(name="ftp", url="ftp://tools.svc/mcp"),
                SERVER.format(name="tools", url="http://tools.svc/mcp"),
            ]
        )
    )
    result = render(str(file))
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"{file}:17:1: LLMModel/dangling: left out: ProviderNotFound: LLMProvider 'open-ai' not found",
        f"{file}:33:1: MCPServer/ftp: left out: URLNotAllowed: URL scheme 'ftp' is not allowed (use http or "
        "https)",
        f"{file}:26:1: MCPServer/typo: left out: URLNotAllowed: URL scheme 'htps' is not allowed (use http "
        "or https)",
        "ai-ops render: left out 3 resources (exit status 3; --allow-partial accepts this)",
    ]
    # The config is written all the same: what is usable.
    config = json.loads(result.stdout)
    assert [m["name"] for m in config["models"]] == ["kept"]
    assert [s["name"] for s in config["mcpServers"]] == ["tools"]


def test_allow_partial_exits_0_and_still_lists_what_was_left_out(tmp_path: Path) -> None:
    file = tmp_path / "model.yaml"
    file.write_text(MODEL.format(name="dangling", provider="open-ai"))
    out = tmp_path / "config.json"
    result = render(str(file), "--allow-partial", "-o", str(out))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"{file}:1:1: LLMModel/dangling: left out: ProviderNotFound: LLMProvider 'open-ai' not found",
        "ai-ops render: left out 1 resource",
    ]
    assert json.loads(out.read_text())["models"] == []


def test_a_loopback_server_is_left_out_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SERVER.format(name="local", url="http://127.0.0.1:8000/mcp"))
    refused = render(str(tmp_path))
    assert refused.returncode == 3
    assert (
        "left out: URLNotAllowed: 127.0.0.1 is a loopback address (allowed only with --allow-loopback)"
        in (refused.stderr)
    )
    assert render(str(tmp_path), "--allow-loopback").returncode == 0


# --- --probe: a name that does not resolve ----------------------------------------------------------


def render_probe_in_namespace(url: str) -> dict[str, Any]:
    """``ai-ops render --probe`` of one server (failing once makes it Unhealthy), with a DNS responder on
    127.0.0.1:53 that knows no name (it answers NXDOMAIN)."""
    with tempfile.TemporaryDirectory() as folder, DnsResponder({}, port=53) as responder:
        manifest = Path(folder) / "server.yaml"
        manifest.write_text(SERVER.format(name="tools", url=url) + "  healthCheck: {failureThreshold: 1}\n")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(["render", str(manifest), "--probe"])
    return {"code": code, "stderr": stderr.getvalue(), "queries": responder.queries}


def test_probe_says_a_name_does_not_resolve_rather_than_that_an_address_was_refused() -> None:
    run = run_in_netns(render_probe_in_namespace, "http://tools.missing.test:8000/mcp")
    assert run.result["queries"], "the name was looked up (in the namespace)"
    stderr = run.result["stderr"]
    assert run.result["code"] == 3
    assert "MCPServer/tools: left out: Unhealthy: " in stderr
    assert "last: name tools.missing.test does not resolve (Name or service not known)" in stderr
    assert "address refused" not in stderr
    assert run.connections == []


def test_help_documents_the_exit_status() -> None:
    result = render("--help")
    assert "--allow-partial" in result.stdout
    assert "3 rendered but left resources out" in " ".join(result.stdout.split())
