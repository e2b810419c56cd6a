"""``POST /api/alerts/alertmanager`` (Alertmanager's webhook receiver) and ``/api/investigations``.

Creation only: answers 202 at once, the chat's workers run the investigations (chat_service/incidents).
"""

from __future__ import annotations

import datetime
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai_ops_api.investigations import MAX_QUESTION
from chat_service.errors import ChatError, StoreUnavailable
from chat_service.incidents.alertmanager import BadNotification, parse_notification
from chat_service.incidents.service import Incidents
from chat_service.incidents.store import StoredInvestigation, StoreError, parse_time
from chat_service.routers.deps import Caller, NamePath, Services
from chat_service.routers.responses import error_responses

router = APIRouter(tags=["incidents"])
_BAD = {400: "Not a valid payload; the message says where (invalid_request)"}
MAX_BODY = 16 * 1024 * 1024


class BadPayload(ChatError):
    status = 400
    code = "invalid_request"


class InvestigationNotFound(ChatError):
    status = 404
    code = "not_found"


async def incidents(services: Services) -> Incidents:
    found: Incidents | None = getattr(services, "incidents", None)
    if found is None:
        raise StoreUnavailable("investigations are not enabled on this service")
    return found


IncidentsDep = Annotated[Incidents, Depends(incidents)]


class CreatedOut(BaseModel):
    name: str
    created: bool


class CreatedListOut(BaseModel):
    investigations: list[CreatedOut]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=63)
    namespace: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class QuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    target: TargetIn | None = None
    model: str | None = Field(default=None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class InvestigationSummary(BaseModel):
    name: str
    alert: str | None
    severity: str | None
    phase: str
    summary: str | None
    age_seconds: float | None = Field(description="Seconds since it was created")


class InvestigationsOut(BaseModel):
    investigations: list[InvestigationSummary]


class ThreadLinkOut(BaseModel):
    id: str = Field(description="The conversation's id (``status.threadId``), for /api/threads and /api/chat")
    url: str = Field(description="Where its messages are read: GET /api/threads/{id}")


class InvestigationOut(BaseModel):
    name: str
    phase: str
    spec: dict[str, Any]
    status: dict[str, Any]
    created_at: str
    thread: ThreadLinkOut | None = Field(
        default=None,
        description="The investigator's conversation, which any caller may read and continue with "
        "POST /api/chat (thread_id); none before it has run",
    )


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadPayload(f"body larger than {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"body is not JSON: {exc}") from None


def _summary(item: StoredInvestigation) -> dict[str, Any]:
    alert = item.spec.get("alert") or {}
    created = parse_time(item.created_at)
    age = (datetime.datetime.now(datetime.UTC) - created).total_seconds() if created else None
    return {
        "name": item.name,
        "alert": alert.get("name"),
        "severity": (alert.get("labels") or {}).get("severity"),
        "phase": item.phase,
        "summary": item.status.get("summary"),
        "age_seconds": age,
    }


def _detail(item: StoredInvestigation) -> dict[str, Any]:
    thread_id = item.status.get("threadId")
    return {
        "name": item.name,
        "phase": item.phase,
        "spec": item.spec,
        "status": item.status,
        "created_at": item.created_at,
        "thread": {"id": thread_id, "url": f"/api/threads/{thread_id}"} if thread_id else None,
    }


@router.post(
    "/api/alerts/alertmanager",
    status_code=202,
    response_model=CreatedListOut,
    responses=error_responses(400, 401, 503, descriptions=_BAD),
)
async def alertmanager_webhook(request: Request, _identity: Caller, found: IncidentsDep) -> dict[str, Any]:
    """Alertmanager's webhook (payload version 4): one Investigation per firing alert, created once."""
    try:
        notification = parse_notification(await _json_body(request))
    except BadNotification as exc:
        raise BadPayload(str(exc)) from None
    try:
        return {"investigations": await found.receive(notification)}
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None


@router.post(
    "/api/investigations",
    status_code=202,
    response_model=CreatedOut,
    responses=error_responses(400, 401, 503, descriptions=_BAD),
)
async def ask(request: Request, identity: Caller, found: IncidentsDep) -> dict[str, Any]:
    """A person's question about a workload, investigated like an alert."""
    try:
        question = QuestionIn.model_validate(await _json_body(request))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise BadPayload(problems) from None
    target = question.target.model_dump(exclude_none=True) if question.target else None
    try:
        name = await found.ask(question.question, identity, target, question.model)
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    return {"name": name, "created": True}


@router.get("/api/investigations", response_model=InvestigationsOut, responses=error_responses(401, 503))
async def list_investigations(_identity: Caller, found: IncidentsDep) -> dict[str, Any]:
    try:
        items = await found.store.list()
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    items.sort(key=lambda i: i.created_at, reverse=True)
    return {"investigations": [_summary(i) for i in items]}


@router.get(
    "/api/investigations/{name}",
    response_model=InvestigationOut,
    responses=error_responses(401, 404, 422, 503),
)
async def get_investigation(
    _identity: Caller, found: IncidentsDep, name: Annotated[str, NamePath]
) -> dict[str, Any]:
    try:
        item = await found.store.get(name)
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    if item is None:
        raise InvestigationNotFound(f"no investigation named {name!r}")
    return _detail(item)


@router.post(
    "/api/investigations/{name}/retry",
    response_model=InvestigationOut,
    responses=error_responses(401, 404, 422, 503),
)
async def retry(_identity: Caller, found: IncidentsDep, name: Annotated[str, NamePath]) -> dict[str, Any]:
    """Run it again: phase Pending (a running one is left alone)."""
    try:
        item = await found.retry(name)
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from None
    if item is None:
        raise InvestigationNotFound(f"no investigation named {name!r}")
    return _detail(item)
