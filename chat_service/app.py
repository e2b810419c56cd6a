"""The FastAPI application: ``create_app(settings)`` wires the parts, the lifespan starts and stops them.

The agent config is loaded and validated when the app is created, so a bad config stops ``ai-ops chat``
before it listens. Watchers (file, ConfigMap) and MCP sessions start in the lifespan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service.auth import TokenAuth
from chat_service.config.store import AgentConfigMissing, ConfigStore, KubeConfigMapSource
from chat_service.conversations import ConversationStore
from chat_service.engine.turns import ChatEngine
from chat_service.errors import ChatError, error_body
from chat_service.metrics import ChatMetrics
from chat_service.secrets import SecretResolver
from chat_service.settings import Settings, in_cluster
from chat_service.tools.toolbox import MCPToolbox
from chat_service.web import router as web

log = logging.getLogger("ai_ops.chat")


@dataclass
class ChatServices:
    """Everything a request needs, built once per app."""

    settings: Settings
    config_store: ConfigStore
    conversations: ConversationStore
    secrets: SecretResolver
    toolbox: MCPToolbox
    engine: ChatEngine
    auth: TokenAuth
    metrics: ChatMetrics
    kube_source: KubeConfigMapSource | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        kube_source: KubeConfigMapSource | None = None,
    ) -> ChatServices:
        """Raises AgentConfigError (bad config) or TokensFileError (bad tokens file) with a clear message."""
        if settings.openai_fast_requests:
            from chat_service import openai_fastpath

            openai_fastpath.install()
        metrics = ChatMetrics()
        config_store = ConfigStore(settings.config_path)
        if kube_source is None and settings.kubernetes_watch and in_cluster():
            kube_source = KubeConfigMapSource.from_service_account(
                settings.configmap_name, settings.namespace
            )
        try:
            metrics.set_config(config_store.load_initial().checksum)
        except AgentConfigMissing as exc:
            # A missing file is fatal locally (a typo in --config), but not in a cluster, where the
            # operator writes the optional ConfigMap after the pod starts: serve 503 until it is there.
            if kube_source is None and not settings.wait_for_config:
                raise
            config_store.started_empty = True
            log.warning("%s; waiting for it (not ready until then)", exc)
        config_store.on_reload.append(lambda result: metrics.config_reloads.labels(result=result).inc())
        auth = TokenAuth(settings.auth_tokens_file)
        secrets = SecretResolver(settings.secrets_dir, environ)
        conversations = ConversationStore(settings.redis_url, settings.session_ttl_seconds)
        toolbox = MCPToolbox(
            secrets,
            connect_timeout=settings.mcp_connect_timeout_seconds,
            tool_timeout=settings.mcp_tool_timeout_seconds,
            retry_interval=settings.mcp_retry_interval_seconds,
            metrics=metrics,
        )
        engine = ChatEngine(settings, config_store, conversations, secrets, toolbox, metrics)
        return cls(
            settings, config_store, conversations, secrets, toolbox, engine, auth, metrics, kube_source
        )

    async def start(self) -> None:
        self.config_store.start_watching(self.kube_source)
        if self.config_store.loaded:
            self.engine.prepare_in_background()
        if not self.auth.enabled:
            log.warning("AI_OPS_AUTH_TOKENS_FILE is not set: the API is open to anyone who can reach it")
        log.info(
            "chat service started: config %s, conversations in %s",
            self.config_store.current.checksum if self.config_store.loaded else "(waiting for one)",
            self.conversations.backend,
        )

    async def stop(self) -> None:
        await self.config_store.stop_watching()
        await self.engine.close()
        await self.toolbox.aclose()
        await self.conversations.aclose()


class MetricsMiddleware:
    """Counts requests and measures latency by route template and status (streams until their end)."""

    def __init__(self, app: ASGIApp, metrics: ChatMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "static" if scope["path"].startswith("/static") else "other"
            )
            self.metrics.requests.labels(route=template, status=str(status)).inc()
            self.metrics.request_duration.labels(route=template).observe(time.perf_counter() - started)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "too_large"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatError)
    async def chat_error(_request: Request, exc: ChatError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("invalid_request", "; ".join(problems)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "internal error; see the service log"), status_code=500
        )


def create_app(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    kube_source: KubeConfigMapSource | None = None,
) -> FastAPI:
    from chat_service.routers import chat, health, info, openai_compat, threads

    services = ChatServices.build(settings, environ=environ, kube_source=kube_source)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="ai-ops chat",
        description="The ai-ops operations assistant: chat API, OpenAI-compatible API, health and metrics.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    _install_error_handlers(app)
    for module in (chat, threads, info, openai_compat, health):
        app.include_router(module.router)
    # The web chat page and its assets (open like /docs: they hold no data; the page asks for a token).
    app.include_router(web.router)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
