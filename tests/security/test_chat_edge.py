"""The chat service's edge under hostile or broken peers: callers that upload without a token or upload too
much, an LLM that answers garbage or rate-limits, a Redis that accepts connections and never answers, and
the API docs pages (open, same-origin with the chat page's token).

Real servers on loopback: the chat app under uvicorn, the scripted fake LLM, a frozen TCP listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.ports import bound_socket
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    model_entry,
    read_sse,
    running,
    settings_for,
    write_config,
)

TOKEN = "tok-edge-0123456789abcdef"
MiB = 1024 * 1024
DEFAULT_LIMIT = 4 * MiB
# What the kernel may take into loopback socket buffers (both ends) after the server stops reading: a
# refusal "before the body is read" must leave the rest of a 50 MB upload unsent.
SOCKET_BUFFERS = 12 * MiB


@dataclass
class Env:
    server: RunningApp
    llm: FakeLLM

    def client(self, token: str | None = TOKEN, timeout: float = 30.0) -> httpx.AsyncClient:
        return self.server.client(token, timeout=timeout)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("chat-edge")
    tokens = root / "tokens"
    tokens.write_text(f"edge:{TOKEN}\n")
    path = root / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    async with running(create_app(settings_for(path, auth_tokens_file=tokens))) as server:
        yield Env(server, fake_llm)


@pytest.fixture
def llm(env: Env) -> Iterator[FakeLLM]:
    env.llm.reset()
    yield env.llm
    env.llm.reset()


@dataclass
class UploadAnswer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    sent: int  # body bytes the client had handed to its socket when the answer came
    seconds: float


async def upload(
    port: int,
    path: str,
    *,
    total: int = 50 * MiB,
    token: str | None = None,
    chunked: bool = True,
    expect_continue: bool = False,
) -> UploadAnswer:
    """POST ``total`` bytes of body over a raw HTTP/1.1 connection, reading the answer while sending, as
    browsers do (a client that reads only after its last byte cannot see an early answer on a connection
    that the server closed unread). With ``expect_continue`` it waits for ``100 Continue`` first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"Authorization: Bearer {token}"] if token else []
    head += ["Transfer-Encoding: chunked"] if chunked else [f"Content-Length: {total}"]
    head += ["Expect: 100-continue"] if expect_continue else []
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = b"x" * (64 * 1024)
    sent = 0
    may_send = asyncio.Event()
    if not expect_continue:
        may_send.set()

    async def send_body() -> None:
        nonlocal sent
        await may_send.wait()
        with contextlib.suppress(ConnectionError):
            while sent < total:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                sent += len(chunk)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")

    started = time.monotonic()
    sending = asyncio.create_task(send_body())
    try:
        while True:
            status = int((await reader.readline()).split()[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if status != 100:
                break
            may_send.set()
        answered_after = time.monotonic() - started
        sent_then = sent
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
    finally:
        sending.cancel()
        writer.close()
    return UploadAnswer(status, headers, body, sent_then, answered_after)


# -- 1. auth and the body size limit come before the body ---------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream", "/v1/chat/completions", "/api/threads/x"])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_unauthenticated_upload_is_refused_before_its_body_is_read(
    env: Env, llm: FakeLLM, path: str, chunked: bool
) -> None:
    answer = await upload(env.server.port, path, chunked=chunked)
    assert answer.status == 401, answer.body
    assert answer.body["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"
    assert answer.sent < SOCKET_BUFFERS, f"{answer.sent} bytes of the upload were taken"
    assert answer.seconds < 5.0
    assert llm.chat_requests == []


async def test_a_wrong_token_is_refused_before_a_body_is_asked_for(env: Env) -> None:
    answer = await upload(
        env.server.port, "/api/chat", token="tok-wrong-0123456789", chunked=False, expect_continue=True
    )
    assert answer.status == 401 and answer.body["error"]["code"] == "unauthorized"
    assert answer.sent == 0


async def test_oversized_body_with_a_length_is_refused_at_once(env: Env, llm: FakeLLM) -> None:
    answer = await upload(env.server.port, "/v1/chat/completions", token=TOKEN, chunked=False)
    assert answer.status == 413, answer.body
    error = answer.body["error"]
    assert error["code"] == "payload_too_large"
    assert str(DEFAULT_LIMIT) in error["message"] and "AI_OPS_MAX_BODY_BYTES" in error["message"]
    assert answer.sent < SOCKET_BUFFERS
    # A client that asks first sends nothing at all.
    asked = await upload(env.server.port, "/api/chat", token=TOKEN, chunked=False, expect_continue=True)
    assert (asked.status, asked.sent) == (413, 0)
    assert llm.chat_requests == []


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream", "/v1/chat/completions"])
async def test_oversized_chunked_body_is_refused_once_it_crosses_the_limit(
    env: Env, llm: FakeLLM, path: str
) -> None:
    answer = await upload(env.server.port, path, token=TOKEN)
    assert answer.status == 413, answer.body
    assert answer.body["error"]["code"] == "payload_too_large"
    assert DEFAULT_LIMIT < answer.sent < DEFAULT_LIMIT + SOCKET_BUFFERS
    assert llm.chat_requests == []


async def test_a_body_within_the_limit_still_works_chunked(env: Env, llm: FakeLLM) -> None:
    payload = json.dumps({"message": "hello " + "y" * 20_000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    async with env.client() as client:
        response = await client.post(
            "/api/chat", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["reply"].startswith("echo: hello ")


async def test_open_routes_stay_open_and_the_others_need_a_token(env: Env) -> None:
    async with env.client(token=None) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        for path in ("/api/models", "/api/status", "/v1/models", "/api/threads/t-1", "/api/nothing-here"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"


# -- 3. a malformed or rate-limited provider answer ---------------------------------------------------


async def completion_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``data:`` objects of an OpenAI-style stream, up to ``[DONE]``."""
    found = []
    async for line in response.aiter_lines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            found.append(json.loads(line[5:]))
    return found


MALFORMED = {
    "invalid-json": Reply.raw("{this is not json"),
    "wrong-shape": Reply.raw(json.dumps({"unexpected": ["shape"]})),
    "choices-not-a-list": Reply.raw(json.dumps({"id": "x", "object": "chat.completion", "choices": "no"})),
    "empty-200": Reply.raw(""),
    "html-200": Reply.raw("<html>gateway</html>", content_type="text/html"),
}


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_provider_answer_is_a_provider_error(env: Env, llm: FakeLLM, reply: Reply) -> None:
    async with env.client() as client:
        llm.enqueue(reply)
        chat = await client.post("/api/chat", json={"message": "hi"})
        llm.enqueue(reply)
        completion = await client.post(
            "/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "hi"}]}
        )
        llm.enqueue(reply)
        async with client.stream("POST", "/api/chat/stream", json={"message": "hi"}) as streamed:
            events = await read_sse(streamed)
        llm.enqueue(reply)
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "default", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as openai_stream:
            chunks = await completion_chunks(openai_stream)
    assert (chat.status_code, chat.json()["error"]["code"]) == (502, "provider_error"), chat.text
    assert (completion.status_code, completion.json()["error"]["code"]) == (502, "provider_error")
    assert events[-1] == ("error", events[-1][1]) and events[-1][1]["code"] == "provider_error", events
    assert chunks[-1]["error"]["code"] == "provider_error", chunks


async def test_a_provider_429_is_our_429_with_its_retry_after(env: Env, llm: FakeLLM) -> None:
    limited = Reply.error(429, "Rate limit reached for requests", headers={"Retry-After": "17"})
    async with env.client() as client:
        llm.enqueue(limited)
        chat = await client.post("/api/chat", json={"message": "hi"})
        llm.enqueue(limited)
        completion = await client.post(
            "/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "hi"}]}
        )
        llm.enqueue(limited)
        async with client.stream("POST", "/api/chat/stream", json={"message": "hi"}) as streamed:
            events = await read_sse(streamed)
        llm.enqueue(limited)
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "default", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as openai_stream:
            chunks = await completion_chunks(openai_stream)
    for response in (chat, completion):
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limited"
        assert response.headers["retry-after"] == "17"
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "rate_limited" and events[-1][1]["retry_after"] == "17"
    assert chunks[-1]["error"]["code"] == "rate_limited"


async def test_a_hostile_retry_after_is_not_passed_through(env: Env, llm: FakeLLM) -> None:
    llm.enqueue(Reply.error(429, "slow down", headers={"Retry-After": "soon; Set-Cookie=x"}))
    async with env.client() as client:
        response = await client.post("/api/chat", json={"message": "hi"})
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"
    assert "retry-after" not in response.headers


# -- 7. a frozen Redis ------------------------------------------------------------------------------


class FrozenRedis:
    """A TCP listener on loopback that accepts connections, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self._socket = bound_socket()
        self.port = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def __aenter__(self) -> FrozenRedis:
        self._server = await asyncio.start_server(self._swallow, sock=self._socket)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()


async def test_readiness_answers_within_a_second_when_redis_is_frozen(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    async with FrozenRedis() as frozen:
        app = create_app(settings_for(path, redis_url=f"redis://127.0.0.1:{frozen.port}/0"))
        async with running(app) as server, server.client() as client:
            started = time.monotonic()
            ready = await client.get("/readyz")
            elapsed = time.monotonic() - started
    assert ready.status_code == 503
    assert any("Redis does not answer" in reason for reason in ready.json()["reasons"]), ready.json()
    # The bound is 1 s (the chart's readiness probe gives up after 3 s); the ceiling leaves room for load.
    assert elapsed < 2.5, f"/readyz took {elapsed:.1f}s"


REDIS_ROUTES = [
    ("GET", "/api/threads", None),
    ("GET", "/api/threads/t-1", None),
    ("DELETE", "/api/threads/t-1", None),
    ("POST", "/api/chat", {"message": "hi"}),
    ("GET", "/api/usage", None),
]


@pytest.mark.parametrize(
    ("method", "url", "body"), REDIS_ROUTES, ids=[f"{m} {u}" for m, u, _ in REDIS_ROUTES]
)
async def test_every_redis_route_answers_a_frozen_redis_with_a_503_inside_the_probe_timeout(
    tmp_path: Path, fake_llm: FakeLLM, method: str, url: str, body: dict[str, Any] | None
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url, default=True)]))
    async with FrozenRedis() as frozen:
        app = create_app(
            settings_for(
                path, redis_url=f"redis://127.0.0.1:{frozen.port}/0", redis_socket_timeout_seconds=0.5
            )
        )
        async with running(app) as server, server.client() as client:
            started = time.monotonic()
            response = await client.request(method, url, json=body)
            elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "Redis" in error["message"] and "does not answer" in error["message"]
    # Bounded by the socket timeout (0.5 s here, 2 s by default), not by the client giving up.
    assert elapsed < 2.5, f"{method} {url} took {elapsed:.1f}s"


# -- 6. the API docs pages ----------------------------------------------------------------------------

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"


async def test_docs_pages_load_only_their_own_scripts_under_a_strict_policy(env: Env) -> None:
    async with env.client(token=None) as client:
        for path in ("/docs", "/redoc"):
            page = await client.get(path)
            assert page.status_code == 200, path
            policy = page.headers["content-security-policy"]
            directives = dict(part.strip().partition(" ")[::2] for part in policy.split(";"))
            assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'", policy
            assert directives["frame-ancestors"] == "'none'"
            assert "//" not in page.text, f"{path} names another origin"
            scripts = re.findall(r"<script\b([^>]*)>", page.text)
            assert scripts and all("src=" in attributes for attributes in scripts), f"inline script on {path}"
            for source in re.findall(r'(?:src|href)="([^"]+)"', page.text):
                asset = await client.get(f"/{source}")
                assert asset.status_code == 200, source
                assert asset.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/docs/assets/core.py")).status_code == 404


@pytest.mark.browser
async def test_docs_pages_render_without_policy_violations(env: Env) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make system-deps installs Debian's chromium with apt)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            problems: list[str] = []
            blocked: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    blocked.append(message.text) if "Content Security Policy" in message.text else None
                ),
            )
            page.on(
                "requestfinished",
                lambda request: (
                    problems.append(f"loaded from elsewhere: {request.url}")
                    if not request.url.startswith((env.server.url, "data:", "blob:"))
                    else None
                ),
            )
            await page.goto(f"{env.server.url}/docs")
            await page.locator(".swagger-ui .opblock-summary-path", has_text="/api/chat").first.wait_for(
                timeout=20_000
            )
            await page.goto(f"{env.server.url}/redoc")
            await page.locator("h1", has_text="ai-ops chat").first.wait_for(timeout=20_000)
        finally:
            await browser.close()
    # The one thing the policy stops is ReDoc's "API docs by Redocly" badge, an image from its CDN.
    assert all(REDOC_BADGE in text and "img-src" in text for text in blocked), blocked
    assert problems == [], problems
