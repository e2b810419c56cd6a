"""``GET /api/models`` and ``GET /api/status``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chat_service.routers.deps import Caller, Engine, Services
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


class ProviderStatusOut(BaseModel):
    """What the last call to the model's provider showed; a failure stays until a call succeeds."""

    reachable: bool
    reason: str | None = Field(None, description="Why the last call failed (connection, timeout, HTTP 5xx)")
    since: str | None = Field(None, description="When the current outage began (first failed call)")
    at: str | None = Field(None, description="When the last call finished")


class ModelStatusOut(ModelOut):
    # None: not built yet (the config is still being prepared). False also while its provider is down.
    available: bool | None = None
    unavailable_reason: str | None = None
    provider_status: ProviderStatusOut | None = Field(
        None, description="None until a call to the model's provider finished"
    )


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
    investigation_store: Literal["kubernetes", "memory"] | None = Field(
        None,
        description="Where Investigations live: kubernetes (the API server) or memory (this process, lost "
        "on restart); None without the incidents service",
    )
    runbooks: RunbooksStateOut | None = None
    warnings: list[str]
    demo: bool = Field(
        description="The service runs as the local demo (`make run`, AI_OPS_DEMO): advice such as "
        "'start Ollama' fits only then"
    )


@router.get("/models", response_model=ModelsOut, responses=_RESPONSES)
async def models(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """The configured LLM models (name, provider type, model, whether it is the default)."""
    return {"models": engine.models()}


@router.get("/status", response_model=StatusOut, responses=_RESPONSES)
async def status(_identity: Caller, engine: Engine, services: Services) -> dict[str, Any]:
    """Config checksum and load time, models, MCP servers with their tools, middleware per model, warnings,
    and where investigations live."""
    incidents = services.incidents
    store = incidents.store_kind if incidents is not None else None
    return {**engine.status(), "demo": engine.settings.demo, "investigation_store": store}
