"""What the page says about the service it talks to, in a real headless Chromium against the real chat service:

- a banner while MCP servers are unavailable (the agent then has fewer tools than configured), with the
  reason, or while the selected model's provider does not answer;
- the empty conversation's hint, from the tools actually configured (no Kubernetes examples without a
  Kubernetes MCP server);
- advice for the local demo (start Ollama, run make run) only when the service says it is the demo.

The MCP servers are real: the bundled kubernetes and netops servers as processes (the kubernetes one with a
kubeconfig for a cluster that is not there: listing its tools needs no cluster), the fixture server, and
ports where nothing listens.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from ai_ops_api.agent_config import AgentConfig, MCPServerEntry, ModelEntry
from tests.chat.test_web_page import WAIT_MS, browser, fake_model, page, send, serve_chat, wait_for_reply
from tests.harness.ports import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.harness.fake_llm import FakeLLM
    from tests.harness.mcp_servers import McpFixtureServers

__all__ = ["browser", "page"]  # fixtures, used by name

KUBERNETES_HINT = "Which pods in namespace default are not running?"


def server(name: str, url: str) -> MCPServerEntry:
    return MCPServerEntry(name=name, transport="streamable_http", url=url, health="Healthy")


def nowhere() -> str:
    """An MCP URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/mcp"


@contextlib.contextmanager
def bundled_mcp_server(kind: str, directory: Path, *args: str) -> Iterator[str]:
    """A bundled MCP server (`ai-ops mcp KIND`) as a process on 127.0.0.1; yields its MCP URL."""
    port = free_port()
    log = (directory / f"mcp-{kind}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ai_ops_cli", "mcp", kind, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60  # a ceiling: two processes import the MCP SDK on 2 cores
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"ai-ops mcp {kind} did not start: {(directory / f'mcp-{kind}.log').read_text()}"
                )
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture(scope="module")
def bundled_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The bundled kubernetes and netops MCP servers: {kind: MCP URL}."""
    directory = tmp_path_factory.mktemp("bundled-mcp")
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: absent\n"
        f"clusters: [{{name: absent, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: nobody, user: {token: not-a-token}}]\n"
        "contexts: [{name: absent, context: {cluster: absent, user: nobody}}]\n"
    )
    with (
        bundled_mcp_server("kubernetes", directory, "--kubeconfig", str(kubeconfig)) as kubernetes,
        bundled_mcp_server("netops", directory, "--allow", "127.0.0.1") as netops,
    ):
        yield {"kubernetes": kubernetes, "netops": netops}


@contextlib.contextmanager
def chat_with(
    directory: Path, fake_llm: FakeLLM, servers: tuple[MCPServerEntry, ...] = (), **settings: Any
) -> Iterator[str]:
    models: tuple[ModelEntry, ...] = (
        fake_model("fast", "fake-fast", fake_llm.base_url, default=True),
        fake_model("offline", "fake-offline", f"http://127.0.0.1:{free_port()}/v1"),
    )
    config = AgentConfig(namespace="web-state", models=models, mcp_servers=servers).finalize()
    with serve_chat(config, directory, **settings) as url:
        yield url


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)


# ------------------------------------------------------------------------------------------- tools banner


@pytest.mark.browser
def test_banner_names_the_mcp_server_that_is_down(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: McpFixtureServers
) -> None:
    servers = (server("fixture", mcp_fixture_servers.healthy.url), server("inventory", nowhere()))
    with chat_with(tmp_path, fresh_fake_llm, servers) as url:
        open_page(page, url)
        banner = page.locator("#health-banner")
        expect(banner).to_be_visible(timeout=WAIT_MS)
        text = page.locator("#health-banner-text").inner_text()
        assert text.startswith(
            "1 of 2 MCP servers unavailable: inventory: MCP server 'inventory' is unreachable"
        )
        assert "connection failed" in text and text.endswith("The assistant answers without their tools.")
        # The healthy server's tools are what the hint offers.
        hint = page.locator("#empty-hint").inner_text()
        assert "echo, add, get_pod_status" in hint and "inventory" not in hint

        # It stays while the server is down: a successful reply clears error notices, not this one.
        send(page, "hello")
        wait_for_reply(page)
        assert page.locator("#banner").is_hidden()
        expect(banner).to_be_visible()


@pytest.mark.browser
def test_banner_when_every_mcp_server_is_down(page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM) -> None:
    with chat_with(tmp_path, fresh_fake_llm, (server("alpha", nowhere()), server("beta", nowhere()))) as url:
        open_page(page, url)
        text = page.locator("#health-banner-text")
        expect(text).to_have_text(
            re.compile(
                r"^2 of 2 MCP servers unavailable: alpha: MCP server 'alpha' is unreachable.*; "
                r"beta: MCP server 'beta' is unreachable.*\. The assistant has no tools until they are back\.$"
            ),
            timeout=WAIT_MS,
        )
        expect(page.locator("#empty-hint")).to_contain_text("None of the configured MCP servers is available")


@pytest.mark.browser
def test_no_banner_when_every_mcp_server_answers(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: McpFixtureServers
) -> None:
    with chat_with(tmp_path, fresh_fake_llm, (server("fixture", mcp_fixture_servers.healthy.url),)) as url:
        open_page(page, url)
        expect(page.locator("#empty-hint")).to_contain_text("get_pod_status", timeout=WAIT_MS)
        assert page.locator("#health-banner").is_hidden()


@pytest.mark.browser
def test_banner_when_the_selected_models_provider_does_not_answer(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    with chat_with(tmp_path, fresh_fake_llm) as url:
        open_page(page, url)
        page.locator("#model-select").select_option("offline")
        send(page, "anyone there?")
        wait_for_reply(page)
        page.reload()
        open_page(page, url)
        page.locator("#model-select").select_option("offline")
        expect(page.locator("#health-banner-text")).to_contain_text(
            "The provider of the model offline could not be reached: ", timeout=WAIT_MS
        )
        page.locator("#model-select").select_option("fast")
        expect(page.locator("#health-banner")).to_be_hidden()


# ------------------------------------------------------------------------------------------- hints


@pytest.mark.browser
def test_hints_promise_no_kubernetes_without_a_kubernetes_server(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM, bundled_servers: dict[str, str]
) -> None:
    with chat_with(tmp_path, fresh_fake_llm, (server("netops", bundled_servers["netops"]),)) as url:
        open_page(page, url)
        hint = page.locator("#empty-hint")
        expect(hint).to_contain_text("tls_certificate", timeout=WAIT_MS)
        examples = hint.locator("button.example").all_inner_texts()
        assert examples and any("TLS certificate" in e for e in examples)
        assert KUBERNETES_HINT not in hint.inner_text()
        assert not re.search(r"\bpods?\b|kubernetes", hint.inner_text(), re.IGNORECASE)


@pytest.mark.browser
def test_hints_from_the_kubernetes_server(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM, bundled_servers: dict[str, str]
) -> None:
    with chat_with(tmp_path, fresh_fake_llm, (server("kubernetes", bundled_servers["kubernetes"]),)) as url:
        open_page(page, url)
        example = page.locator("#empty-hint button.example", has_text=KUBERNETES_HINT)
        expect(example).to_be_visible(timeout=WAIT_MS)
        assert "TLS certificate" not in page.locator("#empty-hint").inner_text()
        # An example goes into the message box, to send as it is or edit first.
        example.click()
        assert page.get_by_label("Message", exact=True).input_value() == KUBERNETES_HINT


@pytest.mark.browser
def test_hint_without_mcp_servers(page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM) -> None:
    with chat_with(tmp_path, fresh_fake_llm) as url:
        open_page(page, url)
        hint = page.locator("#empty-hint")
        expect(hint).to_contain_text("No MCP servers are configured here", timeout=WAIT_MS)
        assert hint.locator("button").count() == 0
        assert page.locator("#health-banner").is_hidden()


# ------------------------------------------------------------------------------------------- demo advice


def provider_error_banner(page: Page, url: str) -> str:
    open_page(page, url)
    page.locator("#model-select").select_option("offline")
    send(page, "anyone there?")
    wait_for_reply(page)
    banner = page.locator("#banner-text")
    expect(banner).to_contain_text("The model's provider could not be reached or failed: model 'offline'")
    text: str = banner.inner_text()
    return text


@pytest.mark.browser
def test_unreachable_provider_outside_the_demo_gets_no_demo_advice(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    with chat_with(tmp_path, fresh_fake_llm) as url:
        text = provider_error_banner(page, url)
        assert "Ollama" not in text and "make run" not in text and "OPENAI_API_KEY" not in text


@pytest.mark.browser
def test_unreachable_provider_in_the_demo_gets_demo_advice(
    page: Page, tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    with chat_with(tmp_path, fresh_fake_llm, demo=True) as url:
        assert httpx.get(url + "api/status", timeout=10).json().get("demo") is True
        text = provider_error_banner(page, url)
        assert "For the local demo: start Ollama and pull the model" in text and "make run" in text
