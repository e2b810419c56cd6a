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

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_service import api_docs
from chat_service.asgi import EdgeGuard
from chat_service.config.kubernetes import KubeConfigMapSource
from chat_service.errors import ChatError, NotReady, RateLimited, error_body
from chat_service.metrics import ChatMetrics
from chat_service.routers import actions, chat, health, incidents, info, openai_compat, runbooks, threads
from chat_service.routers.responses import EDGE_ERROR_RESPONSES
from chat_service.services import ChatServices
from chat_service.settings import Settings
from chat_service.usage import router as usage_router
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


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}

# Routes anyone may call (probes, metrics scrapes, the web page and the API docs: they hold no data).
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
OPEN_PREFIXES = ("/static/", api_docs.ASSETS_PREFIX)


def _error_headers(exc: ChatError) -> dict[str, str] | None:
    if exc.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return {"Retry-After": exc.retry_after}
    return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatError)
    async def chat_error(_request: Request, exc: ChatError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=_error_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("invalid_request", "; ".join(problems)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "error parsing the body" (e.g. not UTF-8): invalid input like any other, a 422.
            return JSONResponse(
                error_body(
                    "invalid_request", f"the request body cannot be read: {type(exc.__cause__).__name__}"
                ),
                status_code=422,
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(redis.RedisError)
    async def store_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        # Every route that reads Redis (threads, usage, actions, budgets) answers an outage as turns do: a
        # 503 the client can retry, not a 500 that reads as a bug.
        log.warning("%s %s: Redis does not answer: %s", request.method, request.url.path, type(exc).__name__)
        error = NotReady(f"the conversation store (Redis) does not answer: {type(exc).__name__}")
        return JSONResponse(error.body(), status_code=error.status)

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
        # Served by api_docs: self-hosted assets under a strict CSP instead of FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    _install_error_handlers(app)
    # Every route but the open ones answers 401 and 413 from EdgeGuard, before the route runs.
    for module in (chat, threads, info, runbooks, incidents, actions, openai_compat):
        app.include_router(module.router, responses=EDGE_ERROR_RESPONSES)
    app.include_router(usage_router.router, responses=EDGE_ERROR_RESPONSES)
    app.include_router(health.router)
    # The web chat page and its assets (open like /docs: they hold no data; the page asks for a token).
    app.include_router(web.router)
    app.include_router(api_docs.router)
    # Added first, so it runs inside the metrics middleware: refused requests are counted too.
    app.add_middleware(
        EdgeGuard,
        auth=services.auth,
        max_body_bytes=settings.max_body_bytes,
        open_paths=OPEN_PATHS,
        open_prefixes=OPEN_PREFIXES,
    )
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    return app
