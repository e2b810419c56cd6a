"""The FastAPI application: ``create_app(settings)`` builds the services (services.py), includes the
routers and installs the error handlers; the lifespan starts and stops the services.

The agent config is loaded and validated when the app is created, so a bad config stops ``ai-ops chat``
before it listens. Watchers (file, ConfigMap) and MCP sessions start in the lifespan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service.config.kubernetes import KubeConfigMapSource
from chat_service.errors import ChatError, error_body
from chat_service.metrics import ChatMetrics
from chat_service.routers import chat, health, incidents, info, openai_compat, threads
from chat_service.services import ChatServices
from chat_service.settings import Settings
from chat_service.web import router as web

log = logging.getLogger("ai_ops.chat")


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
    for module in (chat, threads, info, openai_compat, health, incidents):
        app.include_router(module.router)
    # The web chat page and its assets (open like /docs: they hold no data; the page asks for a token).
    app.include_router(web.router)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
