"""The agent's built-in ``search_runbooks`` tool, and which of its hits an answer cites.

The tool answers the model with the hits as JSON text and hands the same hits to the turn as the tool
message's artifact (LangChain's ``content_and_artifact``), so the citations come from what the search
really returned, never from the model's text alone.

The citation rule: a section returned by a ``search_runbooks`` call of the turn is cited when the final
answer names its runbook (by name or by title, case-insensitive). Hits the answer does not name were
looked at, not used, and a runbook the answer names without having searched it this turn is no citation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from chat_service.runbooks.index import SearchResult

SEARCH_RUNBOOKS = "search_runbooks"
NO_MATCH = "no runbook matches"
MAX_LIMIT = 10

DESCRIPTION = (
    "Search this team's runbooks (their documented procedures for incidents and operations) for the "
    "sections that fit a problem, an alert name or an error message. Returns, for each hit, the runbook's "
    "name, title, the section's heading, a score and the section's text; or 'no runbook matches'. Search "
    "before troubleshooting from scratch, follow a matching runbook's steps, and name the runbook you used "
    "in your answer."
)

# Added to the default system prompt while the tool is there.
RUNBOOKS_PROMPT = (
    "You can also search this team's runbooks (their documented procedures) with search_runbooks: search "
    "them for a problem before troubleshooting from scratch, and name the runbook you follow."
)


class SearchRunbooksInput(BaseModel):
    query: str = Field(
        min_length=1, max_length=2000, description="The problem in words, an alert name or an error message."
    )
    limit: int = Field(default=3, description=f"How many runbooks to return, 1 to {MAX_LIMIT}.")


Search = Callable[[str, int], Awaitable[SearchResult]]


def hit_records(result: SearchResult) -> list[dict[str, Any]]:
    return [
        {"name": h.runbook, "title": h.title, "section": h.section, "score": h.score, "text": h.text}
        for h in result.hits
    ]


def search_runbooks_tool(search: Search) -> BaseTool:
    async def search_runbooks(query: str, limit: int = 3) -> tuple[str, list[dict[str, Any]]]:
        result = await search(query, max(1, min(int(limit), MAX_LIMIT)))
        hits = hit_records(result)
        if not hits:
            return NO_MATCH, []
        return json.dumps({"hits": hits}, ensure_ascii=False), hits

    return StructuredTool.from_function(
        coroutine=search_runbooks,
        name=SEARCH_RUNBOOKS,
        description=DESCRIPTION,
        args_schema=SearchRunbooksInput,
        response_format="content_and_artifact",
        metadata={"ai_ops_builtin": True},
    )


def _mentions(reply: str, phrase: str) -> bool:
    if not phrase.strip():
        return False
    # Whole words only: a runbook named "dns" is not cited by "dnsmasq".
    return re.search(rf"(?<![\w-]){re.escape(phrase.strip())}(?![\w-])", reply, re.IGNORECASE) is not None


def cited_hits(reply: str, hits: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The returned sections whose runbook the reply names, once each, in the order they were returned."""
    citations: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for hit in hits:
        name, title, section = (
            str(hit.get("name", "")),
            str(hit.get("title", "")),
            str(hit.get("section", "")),
        )
        if (name, section) in seen or not (_mentions(reply, name) or _mentions(reply, title)):
            continue
        seen.add((name, section))
        citations.append({"runbook": name, "title": title, "section": section})
    return citations
