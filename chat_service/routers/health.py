"""``/healthz`` (liveness), ``/readyz`` (readiness with reasons) and ``/metrics`` (Prometheus); no auth."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from chat_service.metrics import CONTENT_TYPE_LATEST
from chat_service.routers.deps import Services
from chat_service.routers.info import ReloadErrorOut, RunbooksStateOut

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyConfigOut(BaseModel):
    checksum: str
    loaded_at: str
    source: str


class ReadinessOut(BaseModel):
    """``config``, ``reload_error`` and ``warnings`` are there once a config is loaded."""

    status: Literal["ready", "not ready"]
    reasons: list[str]
    conversation_store: str
    config: ReadyConfigOut | None = None
    reload_error: ReloadErrorOut | None = None
    warnings: list[str] | None = None
    runbooks: RunbooksStateOut | None = None


class MetricsResponse(Response):
    """The Prometheus text format; as ``response_class`` it puts the media type in OpenAPI."""

    media_type = CONTENT_TYPE_LATEST


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "Not ready: the reasons say why"}},
)
async def readyz(services: Services) -> JSONResponse:
    """200 when a config is loaded and the conversation store answers, else 503 with reasons.

    Also shows the config in force, a rejected reload (the old config stays), and warnings such as
    skipped middleware or MCP servers.
    """
    ready, body = await services.engine.readiness()
    # Returned as is (keys absent until a config is loaded); ReadinessOut documents the shape.
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=MetricsResponse, response_description="The Prometheus text format")
async def metrics(services: Services) -> MetricsResponse:
    """Counters and histograms of requests, turns, model and tool calls, MCP sessions and config reloads."""
    return MetricsResponse(services.metrics.render())
