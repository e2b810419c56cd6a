"""The chat app with its investigations in a Kubernetes API (the emulator or a real kube-apiserver), and
what the incident tests share: the diagnosis a scripted model reports, an auth tokens file, polling an
Investigation until it settles.

Outside a cluster the chat keeps Investigations in memory (``build_incidents`` looks for the in-cluster
service account); these tests hand it the Kubernetes store for an explicit URL instead, before the app
starts, so everything else (routes, workers, runner, events) is the production code path.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx

from chat_service.app import create_app
from chat_service.incidents.service import build_incidents
from chat_service.incidents.store import KubernetesInvestigationStore
from chat_service.settings import Settings

HOOK = "/api/alerts/alertmanager"
SETTLED = ("Diagnosed", "Failed", "Resolved")


def app_with_store(settings: Settings, store: KubernetesInvestigationStore) -> Any:
    """``create_app(settings)`` whose incidents (routes and worker) use ``store``."""
    app = create_app(settings)
    services = app.state.services
    services.incidents = build_incidents(settings, services.engine, store=store)
    return app


def tokens_file(folder: Path, caller: str = "alertmanager") -> tuple[Path, str]:
    """An AI_OPS_AUTH_TOKENS_FILE with one ``caller:token`` line; returns its path and the token."""
    token = secrets.token_urlsafe(24)
    path = folder / "tokens"
    path.write_text(f"{caller}:{token}\n")
    return path, token


def diagnosis(summary: str, **overrides: Any) -> dict[str, Any]:
    """The arguments of a scripted ``diagnosis`` tool call."""
    return {
        "summary": summary,
        "rootCause": "the checkout pod's memory grew past its limit",
        "confidence": "high",
        "evidence": [
            {"tool": "query", "arguments": '{"expr": "ai_ops_test_memory_ratio"}', "excerpt": "0.97"}
        ],
        "recommendations": ["raise the memory limit"],
        "runbooksUsed": [],
        **overrides,
    }


async def investigation(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    answer = await client.get(f"/api/investigations/{name}")
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()
    return detail


async def investigations(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await client.get("/api/investigations")
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["investigations"]
    return rows
