"""``GET /api/runbooks`` (the namespace's searchable runbooks) and ``GET /api/runbooks/search`` (the same
search the agent's search_runbooks tool runs), for people and the web page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from chat_service.errors import InvalidRequest
from chat_service.routers.deps import Caller, Engine, Services
from chat_service.routers.responses import error_responses

router = APIRouter(prefix="/api/runbooks", tags=["runbooks"])


class EmptyQuery(InvalidRequest):
    status = 400


class RunbookMatchOut(BaseModel):
    alert_names: list[str]
    labels: dict[str, str]
    severities: list[str]


class RunbookOut(BaseModel):
    name: str
    title: str
    description: str
    sections: int
    tags: list[str]
    match: RunbookMatchOut


class RunbooksOut(BaseModel):
    runbooks: list[RunbookOut]
    mode: Literal["hybrid", "bm25"]


class HitOut(BaseModel):
    runbook: str
    title: str
    section: str
    score: float
    text: str


class SearchOut(BaseModel):
    hits: list[HitOut]
    # False: nothing fits well enough (the agent is told "no runbook matches").
    matched: bool
    mode: Literal["hybrid", "bm25"]


_RESPONSES = error_responses(401, 503, descriptions={503: "No agent config loaded yet (not_ready)"})


@router.get("", response_model=RunbooksOut, responses=_RESPONSES)
async def list_runbooks(_identity: Caller, engine: Engine, services: Services) -> dict[str, Any]:
    """The runbooks the search holds now, by name, with their section count, tags and alert match."""
    _ = engine.snapshot  # 503 until a config is loaded, like the other routes
    runbooks = services.runbooks
    return {
        "runbooks": [
            {
                "name": doc.name,
                "title": doc.title,
                "description": doc.description,
                "sections": runbooks.sections_of(doc),
                "tags": list(doc.tags),
                "match": {
                    "alert_names": list(doc.match.alert_names),
                    "labels": dict(doc.match.labels),
                    "severities": list(doc.match.severities),
                },
            }
            for doc in runbooks.documents
        ],
        "mode": runbooks.state().mode,
    }


@router.get(
    "/search",
    response_model=SearchOut,
    responses={
        **error_responses(400, 401, 422, 503, descriptions={400: "The query is empty", 422: "Invalid limit"}),
        **_RESPONSES,
    },
)
async def search_runbooks(
    _identity: Caller,
    engine: Engine,
    services: Services,
    q: Annotated[str, Query(max_length=2000, description="The problem, an alert name or an error")] = "",
    limit: Annotated[int, Query(ge=1, le=50, description="How many runbooks at most")] = 5,
) -> dict[str, Any]:
    """The best section of each of the best-matching runbooks (hybrid BM25 + vectors, or BM25 alone)."""
    if not q.strip():
        raise EmptyQuery("q is empty: give the words to search for")
    _ = engine.snapshot
    result = await services.runbooks.search(q, limit)
    return {
        "hits": [
            {"runbook": h.runbook, "title": h.title, "section": h.section, "score": h.score, "text": h.text}
            for h in result.hits
        ],
        "matched": result.matched,
        "mode": result.mode,
    }
