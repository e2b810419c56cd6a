"""``/api/actions``: the ActionRequests the agent proposed, and a person's decision on one.

Listing and reading are open to every caller; approving and rejecting only to the callers named in
``AI_OPS_ACTION_APPROVERS``. The decision is recorded with the caller's identity from auth (``by:
chat:<caller>``), never one the client sends. The chat only records it: the operator executes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from chat_service.actions.service import (
    MAX_COMMENT,
    ActionNotFound,
    ActionService,
    AlreadyDecided,
    NotAnApprover,
)
from chat_service.actions.store import StoredAction, StoreError
from chat_service.errors import ChatError, StoreUnavailable
from chat_service.routers.deps import Caller, NamePath, Services
from chat_service.routers.responses import error_responses

router = APIRouter(tags=["actions"])

NO_EXECUTOR_NOTE = (
    "No operator executes these requests: the chat keeps them in memory (no Kubernetes API), so an "
    "approved request is recorded and never runs."
)
_DESCRIPTIONS = {
    403: "The caller is not an approver (AI_OPS_ACTION_APPROVERS) (forbidden)",
    404: "No ActionRequest of that name (not_found)",
    409: "Already decided, expired or over (conflict)",
    503: "The ActionRequest store cannot be reached (store_unavailable)",
}


class Forbidden(ChatError):
    status = 403
    code = "forbidden"


class ActionConflict(ChatError):
    status = 409
    code = "conflict"


class ActionMissing(ChatError):
    status = 404
    code = "not_found"


def actions(services: Services) -> ActionService:
    found: ActionService | None = getattr(services, "actions", None)
    if found is None:
        raise StoreUnavailable("actions are not enabled on this service")
    return found


ActionsDep = Annotated[ActionService, Depends(actions)]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)


class TargetOut(BaseModel):
    api_version: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class DecisionOut(BaseModel):
    approved: bool
    by: str
    at: str | None = None
    comment: str | None = None


class ExcerptOut(BaseModel):
    ok: bool | None = None
    is_error: bool | None = None
    excerpt: str | None = None


class ActionOut(BaseModel):
    name: str
    phase: str
    server: str
    tool: str
    arguments: dict[str, Any]
    target: TargetOut
    reason: str
    risk: str
    requested_by: dict[str, str]
    expires_at: str | None
    created_at: str
    decision: DecisionOut | None
    dry_run: ExcerptOut | None
    result: ExcerptOut | None
    executed_at: str | None
    status_reason: str | None = Field(description="Why it is in this phase, when the operator said")
    executes: bool = Field(description="False when no operator executes requests of this service")


class ActionsOut(BaseModel):
    actions: list[ActionOut] = Field(description="Pending first (newest first), then the others")
    executes: bool
    note: str | None = None
    can_decide: bool = Field(description="Whether the caller may approve or reject")


def _excerpt(value: Any, flag: str, out: str) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not value:
        return None
    return {out: value.get(flag), "excerpt": value.get("excerpt")}


def _out(item: StoredAction, executes: bool) -> dict[str, Any]:
    spec, status = item.spec, item.status
    target = spec.get("target") or {}
    decision = item.decision
    return {
        "name": item.name,
        "phase": item.phase,
        "server": str(spec.get("server", "")),
        "tool": str(spec.get("tool", "")),
        "arguments": dict(spec.get("arguments") or {}),
        "target": {
            "api_version": target.get("apiVersion"),
            "kind": target.get("kind"),
            "namespace": target.get("namespace"),
            "name": target.get("name"),
        },
        "reason": str(spec.get("reason", "")),
        "risk": str(spec.get("risk", "medium")),
        "requested_by": {str(k): str(v) for k, v in (spec.get("requestedBy") or {}).items()},
        "expires_at": spec.get("expiresAt"),
        "created_at": item.created_at,
        "decision": decision if decision and "by" in decision and "approved" in decision else None,
        "dry_run": _excerpt(status.get("dryRun"), "ok", "ok"),
        "result": _excerpt(status.get("result"), "isError", "is_error"),
        "executed_at": status.get("executedAt"),
        "status_reason": status.get("reason"),
        "executes": executes,
    }


async def _get(found: ActionService, name: str) -> StoredAction:
    try:
        item = await found.store.get(name)
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    if item is None:
        raise ActionMissing(f"no ActionRequest named {name!r}")
    return item


@router.get(
    "/api/actions", response_model=ActionsOut, responses=error_responses(401, 503, descriptions=_DESCRIPTIONS)
)
async def list_actions(identity: Caller, found: ActionsDep) -> dict[str, Any]:
    """Every ActionRequest of the namespace: the pending ones first, then the history."""
    try:
        items = await found.store.list()
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    items.sort(key=lambda i: i.created_at, reverse=True)
    items.sort(key=lambda i: i.phase != "Pending")  # stable: newest first within each group
    return {
        "actions": [_out(i, found.executes) for i in items],
        "executes": found.executes,
        "note": None if found.executes else NO_EXECUTOR_NOTE,
        "can_decide": identity in found.approvers,
    }


@router.get(
    "/api/actions/{name}",
    response_model=ActionOut,
    responses=error_responses(401, 404, 422, 503, descriptions=_DESCRIPTIONS),
)
async def get_action(_identity: Caller, found: ActionsDep, name: Annotated[str, NamePath]) -> dict[str, Any]:
    return _out(await _get(found, name), found.executes)


async def _decide(
    found: ActionService, name: str, identity: str, approved: bool, body: DecisionIn | None
) -> dict[str, Any]:
    try:
        item = await found.decide(name, identity, approved, body.comment if body else None)
    except NotAnApprover:
        raise Forbidden(
            f"{identity!r} may not approve or reject actions: only the callers named in "
            "AI_OPS_ACTION_APPROVERS may"
        ) from None
    except ActionNotFound:
        raise ActionMissing(f"no ActionRequest named {name!r}") from None
    except AlreadyDecided as exc:
        raise ActionConflict(str(exc)) from None
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    return _out(item, found.executes)


_DECISION_ERRORS = error_responses(401, 403, 404, 409, 422, 503, descriptions=_DESCRIPTIONS)


@router.post("/api/actions/{name}/approve", response_model=ActionOut, responses=_DECISION_ERRORS)
async def approve(
    identity: Caller,
    found: ActionsDep,
    name: Annotated[str, NamePath],
    body: Annotated[DecisionIn | None, Body()] = None,
) -> dict[str, Any]:
    """Approve: the operator then runs the tool once (after its dry run) and records the result."""
    return await _decide(found, name, identity, True, body)


@router.post("/api/actions/{name}/reject", response_model=ActionOut, responses=_DECISION_ERRORS)
async def reject(
    identity: Caller,
    found: ActionsDep,
    name: Annotated[str, NamePath],
    body: Annotated[DecisionIn | None, Body()] = None,
) -> dict[str, Any]:
    """Reject, with an optional comment the assistant is told."""
    return await _decide(found, name, identity, False, body)
