"""The web chat page in a real headless Chromium against the real chat service.

The service is ``create_app`` served by uvicorn on 127.0.0.1 (on an event loop in a thread of its own, so
Playwright's sync API can drive the browser from the test), with models on the scripted fake LLM and the healthy fixture MCP
server. A second instance has auth on and no model, for the token prompt and the no-model message.
The page's assets are also checked over plain HTTP (no browser needed for those), and so is its module
graph: every ``import`` of every served module names a module the router serves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from ai_ops_api.agent_config import AgentConfig, MCPServerEntry, ModelEntry, ProviderEntry, SecretRef
from tests.harness.fake_llm import Reply
from tests.harness.mcp_fixture_server import pod_status_text
from tests.harness.ports import bound_socket, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

    from tests.harness.fake_llm import FakeLLM
    from tests.harness.mcp_servers import McpFixtureServers

# Debian's chromium (Playwright's own browser download does not work here).
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "web-test-token-1234"
# How long to wait for something to appear on the page (a ceiling, not a timed assertion).
WAIT_MS = 20_000
# The page's ES modules, spelled out here so that a module the router stops serving fails a test.
MODULE_NAMES = (
    "api.js",
    "app.js",
    "approvals.js",
    "chat.js",
    "citations.js",
    "composer.js",
    "elements.js",
    "errors.js",
    "format.js",
    "hints.js",
    "incidents.js",
    "markdown.js",
    "models.js",
    "notices.js",
    "plan.js",
    "render.js",
    "service.js",
    "sidebar.js",
    "status.js",
    "storage.js",
    "stream.js",
    "thread.js",
    "token.js",
    "usage.js",
)
# Third-party modules, shipped as published (chat_service/web/static/vendor/README.md).
VENDOR_MODULES = ("vendor/marked.esm.js", "vendor/purify.es.mjs")
VENDOR_DOCS = (
    "vendor/README.md",
    "vendor/LICENSE.marked",
    "vendor/LICENSE.dompurify",
    "vendor/LICENSE-MPL.dompurify",
)


# ------------------------------------------------------------------------------------------- serving


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1, on the event loop that every served app shares.

    One loop for all of them, running in a thread of its own for the whole test process: langchain-openai
    caches its HTTP clients per base URL across instances, and a client cached on the loop of an app that
    stopped would fail in the next app ("Event loop is closed").
    """

    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def shared_loop(cls) -> asyncio.AbstractEventLoop:
        if cls._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="web-test-apps", daemon=True).start()
            cls._loop = loop
        return cls._loop

    def __init__(self, app: Any):
        import uvicorn

        self._socket = bound_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self._serving: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        self._serving = asyncio.run_coroutine_threadsafe(
            self.server.serve(sockets=[self._socket]), self.shared_loop()
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.server.started:
                return
            if self._serving.done():
                raise RuntimeError(f"chat app did not start: {self._serving.exception()!r}")
            time.sleep(0.01)
        raise RuntimeError("chat app did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._serving is not None:
            with contextlib.suppress(Exception):
                self._serving.result(15)
        self._socket.close()


@contextlib.contextmanager
def serve_chat(config: AgentConfig, directory: Path, **settings: Any) -> Iterator[str]:
    from chat_service.app import create_app
    from chat_service.settings import Settings

    config_path = directory / "agent-config.json"
    config_path.write_text(config.to_json())
    values: dict[str, Any] = {
        "config_path": config_path,
        "secrets_dir": directory / "secrets",
        "kubernetes_watch": False,
        "mcp_connect_timeout_seconds": 3.0,
        "request_timeout_seconds": 20.0,
        "allow_loopback": True,  # the MCP fixture servers listen on 127.0.0.1
        **settings,
    }
    served = ServedApp(create_app(Settings(**values)))
    served.start()
    try:
        yield served.url
    finally:
        served.stop()


def fake_model(name: str, model: str, base_url: str, *, default: bool = False) -> ModelEntry:
    return ModelEntry(
        name=name,
        model=model,
        provider=ProviderEntry(name=f"{name}-provider", type="openai_compatible", base_url=base_url),
        default=default,
        timeout_seconds=10,
    )


@pytest.fixture(scope="module")
def chat_url(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM, mcp_fixture_servers: McpFixtureServers
) -> Iterator[str]:
    """The chat service: two models on the fake LLM, one on a closed port, one without its API key, and the
    healthy MCP server."""
    closed_port = free_port()  # nothing listens there: the "no LLM reachable" case
    config = AgentConfig(
        namespace="web-test",
        default_model="fast",
        models=(
            fake_model("fast", "fake-fast", fake_llm.base_url, default=True),
            fake_model("careful", "fake-careful", fake_llm.base_url),
            fake_model("offline", "fake-offline", f"http://127.0.0.1:{closed_port}/v1"),
            # Its API key is in no Secret: the service reports it unavailable.
            ModelEntry(
                name="keyless",
                model="gpt-4o",
                provider=ProviderEntry(name="openai", type="openai"),
                api_key_secret_ref=SecretRef(name="no-such-secret", key="api-key"),
            ),
        ),
        mcp_servers=(
            MCPServerEntry(
                name="fixture",
                transport="streamable_http",
                url=mcp_fixture_servers.healthy.url,
                health="Healthy",
            ),
        ),
    ).finalize()
    with serve_chat(config, tmp_path_factory.mktemp("web-chat")) as url:
        yield url


@pytest.fixture(scope="module")
def locked_chat_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A chat service with auth on and no model configured."""
    directory = tmp_path_factory.mktemp("web-chat-locked")
    tokens = directory / "tokens"
    tokens.write_text(f"web-tester:{TOKEN}\n")
    config = AgentConfig(namespace="web-test-empty").finalize()
    with serve_chat(config, directory, auth_tokens_file=tokens) as url:
        yield url


# ------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make system-deps installs Debian's chromium with apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, fresh_fake_llm: FakeLLM) -> Iterator[Page]:
    """A fresh browser context (empty localStorage) per test; JavaScript errors and CSP violations fail it."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    # A Content-Security-Policy violation means some part of the page silently does not work.
    new_page.on(
        "console",
        lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
    )
    try:
        yield new_page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)  # found by its accessible name
    box.fill(text)
    box.press("Enter")


def wait_for_reply(page: Page, count: int = 1) -> Any:
    """The count-th assistant turn, once it has finished (no longer busy)."""
    turn = page.locator("article.message.assistant").nth(count - 1)
    turn.wait_for()
    # Locator assertions, not wait_for_function: the page's CSP forbids the eval that the latter needs.
    expect(turn).not_to_have_attribute("aria-busy", re.compile(".*"), timeout=WAIT_MS)
    return turn


def stored(page: Page, key: str) -> str | None:
    value: str | None = page.evaluate("k => localStorage.getItem(k)", key)
    return value


def user_texts(request: dict[str, Any]) -> list[str]:
    """The user messages of one request the fake LLM received."""
    out = []
    for message in request["json"]["messages"]:
        if message["role"] != "user":
            continue
        content = message["content"]
        out.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return out


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.browser
def test_streamed_reply_with_expandable_tool_call(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("get_pod_status", {"namespace": "default", "name": "web-1"}),
        Reply.text("Pod web-1 is `Running` with one ready container."),
    )
    # Count how often the reply text grows, to see that it arrives in pieces rather than at once.
    page.add_init_script(
        "window.__textGrowth = 0; new MutationObserver(ms => { for (const m of ms)"
        " if (m.type === 'characterData' && m.target.parentElement?.classList.contains('text'))"
        " window.__textGrowth++; }).observe(document, {subtree: true, characterData: true});"
    )
    page.goto(chat_url)
    send(page, "How is pod web-1 in default?")

    turn = wait_for_reply(page)
    assert page.locator("article.message.user").inner_text().endswith("How is pod web-1 in default?")
    text = turn.locator(".text").inner_text()
    assert text == "Pod web-1 is Running with one ready container."
    assert turn.locator(".text code").inner_text() == "Running"
    assert page.evaluate("window.__textGrowth") >= 2, "the reply was not streamed token by token"
    assert "fast" in turn.locator(".role").inner_text()

    tool = turn.locator("details.tool")
    assert tool.count() == 1
    assert tool.locator(".tool-name").inner_text() == "get_pod_status"
    assert tool.locator(".tool-state").inner_text() == "done"
    assert tool.get_attribute("open") is None  # collapsed until asked
    assert not tool.locator(".tool-output").is_visible()
    tool.locator("summary").click()
    assert tool.get_attribute("open") is not None
    assert json.loads(tool.locator(".tool-args pre").inner_text()) == {
        "namespace": "default",
        "name": "web-1",
    }
    # The output came from the real MCP server through the agent.
    assert tool.locator(".tool-output pre").inner_text() == pod_status_text("default", "web-1")

    thread_id = stored(page, "ai-ops.thread")
    assert thread_id and page.locator("#thread-label").inner_text() == f"Conversation {thread_id}"
    assert page.locator("#banner").is_hidden()
    # The conversation is announced politely to screen readers.
    assert page.locator("#conversation").get_attribute("aria-live") == "polite"
    page.screenshot(path=str(Path("/tmp") / "ai-ops-web-page.png"), full_page=True)


@pytest.mark.browser
def test_reload_keeps_the_thread(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(
        Reply.tool_call("add", {"a": 2, "b": 3}),
        Reply.text("2 + 3 = 5"),
    )
    page.goto(chat_url)
    send(page, "What is 2 + 3?")
    wait_for_reply(page)
    thread_id = stored(page, "ai-ops.thread")

    page.reload()
    # The history comes back from GET /api/threads/{id}, tool call included.
    turn = page.locator("article.message.assistant")
    turn.locator(".text").wait_for()
    assert stored(page, "ai-ops.thread") == thread_id
    assert page.locator("article.message.user .body").all_inner_texts() == ["What is 2 + 3?"]
    assert turn.locator(".text").inner_text() == "2 + 3 = 5"
    tool = turn.locator("details.tool")
    tool.locator("summary").click()
    assert tool.locator(".tool-name").inner_text() == "add"
    assert json.loads(tool.locator(".tool-args pre").inner_text()) == {"a": 2, "b": 3}
    assert tool.locator(".tool-output pre").inner_text() == "5"

    # The next message continues the same conversation: the model sees the earlier question.
    send(page, "And times 4?")
    wait_for_reply(page, 2)
    assert user_texts(fresh_fake_llm.chat_requests[-1]) == ["What is 2 + 3?", "And times 4?"]
    assert stored(page, "ai-ops.thread") == thread_id


@pytest.mark.browser
def test_new_conversation_clears(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    page.goto(chat_url)
    send(page, "first question")
    wait_for_reply(page)  # nothing queued: the fake LLM echoes
    first_thread = stored(page, "ai-ops.thread")
    assert first_thread

    page.click("#new-conversation")
    assert page.locator("article.message").count() == 0
    assert page.locator("#empty-hint").is_visible()
    assert stored(page, "ai-ops.thread") is None

    send(page, "second question")
    turn = wait_for_reply(page)
    assert turn.locator(".text").inner_text() == "echo: second question"
    assert user_texts(fresh_fake_llm.chat_requests[-1]) == ["second question"]
    second_thread = stored(page, "ai-ops.thread")
    assert second_thread and second_thread != first_thread


@pytest.mark.browser
def test_model_picker(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    page.goto(chat_url)
    picker = page.locator("#model-select")
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    assert picker.locator("option").evaluate_all("os => os.map(o => o.value)") == [
        "fast",
        "careful",
        "offline",
        "keyless",
    ]
    assert picker.input_value() == "fast"  # the default, preselected
    assert page.locator("label[for=model-select]").inner_text() == "Model"

    picker.select_option("careful")
    send(page, "which model answers?")
    turn = wait_for_reply(page)
    assert fresh_fake_llm.chat_requests[-1]["json"]["model"] == "fake-careful"
    assert "careful" in turn.locator(".role").inner_text()

    page.reload()
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    assert picker.input_value() == "careful"  # the choice is remembered


@pytest.mark.browser
def test_unreachable_llm_is_explained(page: Page, chat_url: str) -> None:
    page.goto(chat_url)
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    page.locator("#model-select").select_option("offline")
    send(page, "anyone there?")
    turn = wait_for_reply(page)
    error = turn.locator(".error").inner_text()
    assert error.startswith("No reply: the model's provider could not be reached or failed")
    banner = page.locator("#banner")
    assert banner.is_visible() and banner.get_attribute("role") == "alert"
    advice = banner.inner_text()
    # The reason, naming the model and where its provider is; no advice meant for the local demo only.
    assert advice.startswith("The model's provider could not be reached or failed: model 'offline'")
    assert "127.0.0.1" in advice
    assert "Ollama" not in advice and "make run" not in advice
    assert "Traceback" not in page.content()

    # A working model afterwards clears the banner.
    page.locator("#model-select").select_option("fast")
    send(page, "and now?")
    wait_for_reply(page, 2)
    assert banner.is_hidden()


@pytest.mark.browser
def test_stop_ends_a_reply_in_progress(page: Page, chat_url: str, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.hang())  # the model never answers (released when the fixture resets)
    page.goto(chat_url)
    send(page, "a question nobody answers")
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()
    assert page.locator("#send-button").is_hidden()
    assert page.locator("article.message.assistant").get_attribute("aria-busy") == "true"
    stop.click()
    turn = wait_for_reply(page)
    assert turn.locator(".error").inner_text() == "Stopped."
    assert page.locator("#send-button").is_visible() and stop.is_hidden()


@pytest.mark.browser
def test_unusable_model_is_explained(page: Page, chat_url: str) -> None:
    # The service finds out in the background after start; wait until it reports the model unusable.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(chat_url + "api/status", timeout=10).json()
        if any(m["name"] == "keyless" and m["available"] is False for m in status["models"]):
            break
        time.sleep(0.1)
    page.goto(chat_url)
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    page.locator("#status-panel summary").click()
    listed = page.locator("#status-body li", has_text="gpt-4o · openai")
    assert "unavailable: model 'keyless': API key unavailable" in listed.inner_text()
    banner = page.locator("#banner")
    assert banner.is_hidden()  # the default model is fine

    page.locator("#model-select").select_option("keyless")
    text = page.locator("#banner-text").inner_text()
    assert text.startswith("The model keyless cannot be used right now:")
    assert "API key unavailable" in text and "Pick another model" in text
    send(page, "hello")
    turn = wait_for_reply(page)
    assert (
        turn.locator(".error")
        .inner_text()
        .startswith("No reply: the selected model cannot be used right now")
    )

    page.locator("#model-select").select_option("fast")
    assert banner.is_hidden()


@pytest.mark.browser
def test_service_unreachable_is_explained(page: Page, chat_url: str) -> None:
    page.goto(chat_url)
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    # The browser cannot connect (as when the service is down).
    page.route("**/api/chat/stream", lambda route: route.abort("connectionrefused"))
    send(page, "hello?")
    turn = wait_for_reply(page)
    assert turn.locator(".error").inner_text().startswith("No reply: the chat service cannot be reached")
    assert page.get_by_label("Message", exact=True).input_value() == "hello?"  # given back to send again
    assert page.locator("#banner-text").inner_text().startswith("Cannot reach the ai-ops chat service. Check")


@pytest.mark.browser
def test_token_prompt_and_no_model(page: Page, locked_chat_url: str) -> None:
    page.goto(locked_chat_url)
    dialog = page.locator("#token-dialog")
    dialog.wait_for(state="visible")
    assert page.locator("label[for=token-input]").inner_text() == "Access token"
    assert page.locator("#model-select").inner_text() == "Token needed"

    page.fill("#token-input", "wrong-token")
    page.click("#token-save")
    expect(page.locator("#token-reason")).to_contain_text("not accepted", timeout=WAIT_MS)
    assert dialog.is_visible()

    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    dialog.wait_for(state="hidden")
    assert stored(page, "ai-ops.token") == TOKEN
    # Authenticated now; this service has no model, and the page says how to configure one.
    expect(page.locator("#banner-text")).to_contain_text("No language model", timeout=WAIT_MS)
    assert "LLMModel" in page.locator("#banner-text").inner_text()
    assert page.locator("#model-select").inner_text() == "No model configured"

    send(page, "hello")
    turn = wait_for_reply(page)
    assert turn.locator(".error").inner_text().startswith("No reply: no language model is configured")
    # The service's message, which says how to configure a model.
    assert "Create an LLMProvider and an LLMModel" in page.locator("#banner-text").inner_text()

    # The token survives a reload: no prompt the second time.
    page.reload()
    expect(page.locator("#model-select")).to_contain_text("No model", timeout=WAIT_MS)
    assert dialog.is_hidden()


# ------------------------------------------------------------------------------------------- assets over HTTP


def test_page_and_assets_are_served_safely(chat_url: str) -> None:
    with httpx.Client(base_url=chat_url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="static/app.js"' in page.text
        assert '<script src="static/app.js" type="module">' in page.text
        for name, kind in (
            ("app.js", "javascript"),
            ("app.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
            *((module, "javascript") for module in (*MODULE_NAMES, *VENDOR_MODULES)),
        ):
            asset = client.get(f"/static/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert client.get("/static/nothing.js").status_code == 404
        assert client.get("/static/../web.py").status_code == 404
        assert client.get("/static/%2e%2e/web.py").status_code == 404
        # Only the vendored modules themselves: not their licences, not anything else in vendor/.
        for name in (*VENDOR_DOCS, "vendor/", "vendor/%2e%2e/app.js", "vendor/marked.esm.js.map"):
            assert client.get(f"/static/{name}").status_code == 404, name


def test_page_is_open_when_auth_is_on(locked_chat_url: str) -> None:
    # The page holds no data; it asks for the token itself. The API stays locked.
    with httpx.Client(base_url=locked_chat_url, timeout=10) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/api/models").status_code == 401


def test_the_vendored_libraries_are_the_files_their_readme_hashes() -> None:
    # "Byte for byte as published": an edit to a vendored file, or an upgrade that forgets the README's
    # hashes, fails here.
    from chat_service.web import router as web

    readme = (web.STATIC_DIR / "vendor" / "README.md").read_text()
    listed = dict(re.findall(r"`([\w.-]+)` ([0-9a-f]{64})\b", readme))
    assert set(listed) == {name.removeprefix("vendor/") for name in VENDOR_MODULES}
    found = {
        name: hashlib.sha256((web.STATIC_DIR / "vendor" / name).read_bytes()).hexdigest() for name in listed
    }
    assert found == listed


def test_web_router_headers() -> None:
    # chat_service.web.router.router on its own: a strict CSP on the page, nosniff on every asset, exact names only.
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from chat_service.web import router as web

    app = FastAPI()
    app.include_router(web.router)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
        assert page.headers["x-frame-options"] == "DENY"
        script = client.get("/static/app.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.headers["x-content-type-options"] == "nosniff"
        assert sorted(web.ASSETS) == sorted(["app.css", "favicon.svg", *MODULE_NAMES, *VENDOR_MODULES])
        for module in (*MODULE_NAMES, *VENDOR_MODULES):
            assert client.get(f"/static/{module}").headers["content-type"] == "text/javascript; charset=utf-8"
        missing = client.get("/static/index.html")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


# ------------------------------------------------------------------------------------------- module graph

# Static imports and re-exports: `import {a, b as c} from "./x.js";`, `import "./x.js";`,
# `export {a} from "./x.js";`. No parentheses or semicolons inside, so a function body never matches.
_FROM_IMPORT = re.compile(r"""^(import|export)\b([^;"'()]*?)\bfrom\s*(["'])([^"']+)\3""", re.MULTILINE)
_BARE_IMPORT = re.compile(r"""^import\s*(["'])([^"']+)\1""", re.MULTILINE)
_EXPORTED = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|class|const|let)\s+(\w+)", re.MULTILINE)
# An export list, as bundled modules end: `export{A as Hooks,x as marked}` or `export { d as default };`.
_EXPORT_LIST = re.compile(r"\bexport\s*\{([^}]*)\}\s*;?\s*(?://[^\n]*\s*)*$")
_ENTRY_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc="(static/[^"]+)"[^>]*>""")


def exported_names(source: str) -> set[str]:
    """The names an ES module exports: declarations, and the export list a bundled module ends with."""
    names = set(_EXPORTED.findall(source))
    listed = _EXPORT_LIST.search(source)
    if listed:
        names |= {part.split(" as ")[-1].strip() for part in listed.group(1).split(",") if part.strip()}
    return names


def _imports(source: str) -> list[tuple[str, list[str]]]:
    """The import specifiers of an ES module, each with the names it imports."""
    found: list[tuple[str, list[str]]] = []
    understood = 0  # import statements (not re-exports) the patterns read
    for match in _FROM_IMPORT.finditer(source):
        braces = re.search(r"\{([^}]*)\}", match.group(2))
        names = [part.split(" as ")[0].strip() for part in braces.group(1).split(",")] if braces else []
        found.append((match.group(4), [name for name in names if name]))
        if match.group(1) == "import":
            understood += 1
    for match in _BARE_IMPORT.finditer(source):
        found.append((match.group(2), []))
        understood += 1
    # Every import statement must be one the patterns understood, or the walk below would miss a module.
    statements = len(re.findall(r"^import\b", source, re.MULTILINE))
    assert statements == understood, "an import statement the test cannot parse"
    assert not re.search(r"\bimport\s*\(", source), "dynamic import(): the test cannot follow it"
    return found


def test_every_import_resolves_to_a_served_module() -> None:
    # Walk the module graph as the browser would: from the page's script tags, over HTTP, through the router.
    from urllib.parse import urljoin

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from chat_service.web import router as web

    app = FastAPI()
    app.include_router(web.router)
    with TestClient(app) as client:
        page = client.get("/").text
        entries = [urljoin("/", src) for src in _ENTRY_SCRIPT.findall(page)]
        assert entries == ["/static/app.js"]
        sources: dict[str, str] = {}
        pending = list(entries)
        while pending:
            path = pending.pop()
            if path in sources:
                continue
            response = client.get(path)
            assert response.status_code == 200, f"{path} is imported but not served"
            assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
            sources[path] = response.text
            for specifier, _ in _imports(response.text):
                # Relative specifiers only: a bare one ("lodash") needs an import map or a bundler.
                assert specifier.startswith("./") and specifier.endswith((".js", ".mjs")), (
                    f"{path}: {specifier!r}"
                )
                pending.append(urljoin(path, specifier))

        # Every imported name is exported by the module it comes from (else the page fails to link).
        imported_by: dict[str, set[str]] = {}
        for path, source in sources.items():
            for specifier, names in _imports(source):
                target = urljoin(path, specifier)
                imported_by.setdefault(path, set()).add(target)
                exported = exported_names(sources[target])
                assert set(names) <= exported, f"{path} imports {set(names) - exported} from {specifier}"

    # No import cycles: in a cycle one module runs before the other's exports are initialised.
    def assert_no_cycle(path: str, chain: tuple[str, ...]) -> None:
        assert path not in chain, "import cycle: " + " -> ".join((*chain, path))
        for target in imported_by.get(path, ()):
            assert_no_cycle(target, (*chain, path))

    assert_no_cycle("/static/app.js", ())

    served_modules = {name for name in web.ASSETS if name.endswith((".js", ".mjs"))}
    assert {path.removeprefix("/static/") for path in sources} == served_modules
    assert served_modules == {*MODULE_NAMES, *VENDOR_MODULES}
    # Nothing ships in static/ that the router does not serve (a stray module would be dead code), except
    # the vendored libraries' licences and README.
    shipped = {str(p.relative_to(web.STATIC_DIR)) for p in web.STATIC_DIR.rglob("*") if p.is_file()}
    assert shipped == {"index.html", *web.ASSETS, *VENDOR_DOCS}


@pytest.mark.browser
def test_page_loads_every_module(page: Page, chat_url: str) -> None:
    scripts: dict[str, tuple[int, str]] = {}  # module name: (HTTP status, content type)

    def record_script(response: Response) -> None:
        if "/static/" in response.url and response.url.endswith((".js", ".mjs")):
            name = response.url.split("/static/", 1)[1]
            scripts[name] = (response.status, response.headers.get("content-type", ""))

    page.on("response", record_script)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(chat_url)
    # The picker is enabled once app.js has run and loaded the models: the whole graph linked.
    expect(page.locator("#model-select")).to_be_enabled(timeout=WAIT_MS)
    assert failed == []
    assert sorted(scripts) == sorted((*MODULE_NAMES, *VENDOR_MODULES))
    assert all(status == 200 and "text/javascript" in kind for status, kind in scripts.values()), scripts
