"""``/healthz`` (liveness), ``/readyz`` (readiness with reasons) and ``/metrics`` (Prometheus); no auth."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from chat_service.metrics import CONTENT_TYPE_LATEST
from chat_service.routers.deps import services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when a config is loaded and the conversation store answers, else 503 with reasons.

    Also shows the config in force, a rejected reload (the old config stays), and warnings such as
    skipped middleware or MCP servers.
    """
    ready, body = await services(request).engine.readiness()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
