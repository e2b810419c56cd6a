"""Helpers for the chat-service tests: agent configs built with the contract models, and the app served by
uvicorn on a free port inside the test's event loop (so any HTTP client, the OpenAI SDK included, can use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ai_ops_api.agent_config import (
    AgentConfig,
    MCPServerEntry,
    MiddlewareEntry,
    ModelEntry,
    NamedValue,
    ProviderEntry,
    SecretRef,
    ToolFilterEntry,
)
from chat_service.settings import Settings
from tests.harness.ports import bound_socket


def model_entry(
    name: str,
    base_url: str,
    *,
    model: str | None = None,
    default: bool = False,
    key: tuple[str, str] | None = None,
    system_prompt: str | None = None,
    middleware: Iterable[MiddlewareEntry] = (),
    timeout_seconds: int = 30,
) -> ModelEntry:
    """A model on the fake LLM (an openai_compatible provider); ``model`` defaults to the entry's name."""
    return ModelEntry(
        name=name,
        model=model or name,
        provider=ProviderEntry(name=f"{name}-provider", type="openai_compatible", base_url=base_url),
        api_key_secret_ref=SecretRef(name=key[0], key=key[1]) if key else None,
        default=default,
        system_prompt=system_prompt,
        timeout_seconds=timeout_seconds,
        middleware=tuple(middleware),
    )


def mcp_server(
    name: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    secret_headers: dict[str, tuple[str, str]] | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> MCPServerEntry:
    values = [NamedValue(name=k, value=v) for k, v in (headers or {}).items()]
    values += [
        NamedValue(name=k, secret_ref=SecretRef(name=s, key=key))
        for k, (s, key) in (secret_headers or {}).items()
    ]
    return MCPServerEntry(
        name=name,
        transport="streamable_http",
        url=url,
        headers=tuple(values),
        tool_filter=ToolFilterEntry(include=tuple(include), exclude=tuple(exclude)),
        health="Healthy",
    )


def agent_config(
    models: Iterable[ModelEntry] = (),
    servers: Iterable[MCPServerEntry] = (),
    default_model: str | None = None,
    namespace: str = "test",
) -> AgentConfig:
    return AgentConfig(
        namespace=namespace, default_model=default_model, models=tuple(models), mcp_servers=tuple(servers)
    ).finalize()


def write_config(path: Path, config: AgentConfig) -> None:
    """Write atomically (rename), as kubelet and editors do, so the watcher never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config.to_json())
    tmp.replace(path)


def settings_for(config_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "config_path": config_path,
        "secrets_dir": config_path.parent / "secrets",
        "kubernetes_watch": False,
        "mcp_connect_timeout_seconds": 3.0,
        "request_timeout_seconds": 20.0,
        "allow_loopback": True,  # every test server listens on 127.0.0.1
    }
    base.update(values)
    return Settings(**base)


class RunningApp:
    """The chat app served by uvicorn on 127.0.0.1 in the current event loop."""

    def __init__(self, app: Any):
        self.app = app
        self._socket = bound_socket()
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        for _ in range(500):
            if self.server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError("chat app did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        self._socket.close()

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[RunningApp]:
    server = RunningApp(app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            events.append((event, json.loads(data)))
            event, data = "message", ""
    return events
