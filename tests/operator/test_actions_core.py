"""The operator's pure decisions on an ActionRequest (core/actions.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ai_ops_api.specs import MCPServerSpec
from ai_ops_operator.core.actions import Step, call_arguments, dry_run_argument, next_step, server_refusal

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def request(phase: str | None = None, approved: bool | None = None, expires_in: int = 60) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if approved is not None:
        status["decision"] = {"approved": approved, "by": "alice"}
    expires = (NOW + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": "a", "uid": "u"}, "spec": {"expiresAt": expires}, "status": status}


def test_next_step() -> None:
    assert next_step(request(), NOW, False) == Step.NOTHING
    assert next_step(request(approved=True), NOW, False) == Step.APPROVE
    assert next_step(request("Approved", approved=True), NOW, False) == Step.EXECUTE
    assert next_step(request(approved=False), NOW, False) == Step.REJECT
    # Expiry wins over a late decision; an Executing request is never expired, only abandoned.
    assert next_step(request("Approved", approved=True, expires_in=-1), NOW, False) == Step.EXPIRE
    assert next_step(request(expires_in=-1), NOW, False) == Step.EXPIRE
    assert next_step(request("Executing", approved=True, expires_in=-1), NOW, False) == Step.ABANDON
    # The process running it expects Executing, and starts nothing else for it.
    assert next_step(request("Executing", approved=True), NOW, True) == Step.NOTHING
    assert next_step(request("Approved", approved=True), NOW, True) == Step.NOTHING
    for final in ("Succeeded", "Failed", "Rejected", "Expired"):
        assert next_step(request(final, approved=True), NOW, False) == Step.NOTHING


def test_servers_the_operator_refuses() -> None:
    stdio = MCPServerSpec.model_validate({"transport": "stdio", "command": "tool"})
    assert "stdio" in (server_refusal(stdio, "x") or "")
    http = {"url": "http://mcp:8000/mcp"}
    assert server_refusal(MCPServerSpec.model_validate(http), "restart") is None
    assert server_refusal(MCPServerSpec.model_validate({**http, "maintenance": True}), "restart")
    only = MCPServerSpec.model_validate({**http, "toolFilter": {"include": ["scale"]}})
    assert server_refusal(only, "restart") and server_refusal(only, "scale") is None


def test_the_operator_sets_the_dry_run_flag_itself() -> None:
    schema = {"properties": {"name": {"type": "string"}, "dry_run": {"type": "boolean"}}}
    assert dry_run_argument(schema) == "dry_run" and dry_run_argument({"properties": {}}) is None
    proposed = {"name": "web", "dry_run": True, "dryRun": True}
    assert call_arguments(proposed, "dry_run", False) == {"name": "web", "dry_run": False}
    assert call_arguments(proposed, None, False) == {"name": "web"}
