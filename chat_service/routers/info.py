"""``GET /api/models`` and ``GET /api/status``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from chat_service.routers.deps import Caller, Engine
from chat_service.routers.responses import error_responses

router = APIRouter(prefix="/api", tags=["info"])

_RESPONSES = error_responses(401, 503, descriptions={503: "No agent config loaded yet (not_ready)"})


class ModelOut(BaseModel):
    name: str
    provider: str
    model: str
    default: bool
    description: str | None = None


class ModelsOut(BaseModel):
    models: list[ModelOut]


class ReloadErrorOut(BaseModel):
    """A config version that was rejected; the previous one stays in force."""

    message: str
    source: str
    at: str


class ConfigOut(BaseModel):
    checksum: str
    loaded_at: str
    source: str
    namespace: str
    reload_error: ReloadErrorOut | None


class ModelStatusOut(ModelOut):
    available: bool | None = None  # None: not built yet (the config is still being prepared)
    unavailable_reason: str | None = None


class MCPServerStatusOut(BaseModel):
    name: str
    transport: str
    url: str | None
    health: str
    connected: bool
    tools: list[str]
    error: str | None


class MiddlewareOut(BaseModel):
    name: str
    type: str
    priority: int
    critical: bool


class ShardProblemOut(BaseModel):
    shard: str
    message: str


class RunbooksStateOut(BaseModel):
    """The namespace's runbooks: how many are searchable, and how (``bm25``: without vectors, ``reason``)."""

    count: int
    mode: Literal["hybrid", "bm25"]
    reason: str | None
    embedding_model: str | None
    shards: int
    problems: list[ShardProblemOut]


class StatusOut(BaseModel):
    config: ConfigOut
    models: list[ModelStatusOut]
    mcp_servers: list[MCPServerStatusOut]
    middleware: dict[str, list[MiddlewareOut]]
    conversation_store: str
    runbooks: RunbooksStateOut | None = None
    warnings: list[str]


@router.get("/models", response_model=ModelsOut, responses=_RESPONSES)
async def models(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """The configured LLM models (name, provider type, model, whether it is the default)."""
    return {"models": engine.models()}


@router.get("/status", response_model=StatusOut, responses=_RESPONSES)
async def status(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """Config checksum and load time, models, MCP servers with their tools, middleware per model, warnings."""
    return engine.status()
