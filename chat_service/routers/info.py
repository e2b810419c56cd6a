"""``GET /api/models`` and ``GET /api/status``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from chat_service.routers.deps import Caller, Engine

router = APIRouter(prefix="/api", tags=["info"])


class ModelOut(BaseModel):
    name: str
    provider: str
    model: str
    default: bool
    description: str | None = None


class ModelsOut(BaseModel):
    models: list[ModelOut]


@router.get("/models", response_model=ModelsOut)
async def models(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """The configured LLM models (name, provider type, model, whether it is the default)."""
    return {"models": engine.models()}


@router.get("/status")
async def status(_identity: Caller, engine: Engine) -> dict[str, Any]:
    """Config checksum and load time, models, MCP servers with their tools, middleware per model, warnings."""
    return engine.status()
