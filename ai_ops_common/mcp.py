"""The paged MCP ``tools/list``: the operator's probes and the chat service's toolbox both need every tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import ListToolsResult, Tool

# Fetches one page of tools/list: the cursor of the page (None for the first) -> the page.
PageFetcher = Callable[[str | None], Awaitable["ListToolsResult"]]


async def list_tools_page(session: ClientSession, cursor: str | None) -> ListToolsResult:
    """One page of ``tools/list`` on an initialized session."""
    from mcp import types  # the SDK is heavy to import; only sessions need it

    return await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)


async def list_all_tools(fetch_page: PageFetcher, max_pages: int | None = None) -> list[Tool]:
    """Every tool, following ``nextCursor`` until the last page, or until ``max_pages`` pages."""
    tools: list[Tool] = []
    cursor: str | None = None
    pages = 0
    while max_pages is None or pages < max_pages:
        page = await fetch_page(cursor)
        pages += 1
        tools.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            break
    return tools
