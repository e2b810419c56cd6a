"""ai_ops_common: the one exception describer and the one paged tools/list, used by operator and chat."""

from __future__ import annotations

import httpx
import pytest
from mcp.types import ListToolsResult, Tool

from ai_ops_common.errors import describe_exception, http_status, walk_exception
from ai_ops_common.mcp import list_all_tools


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://mcp.example/mcp", headers={"Authorization": "Bearer s3cr3t"})
    return httpx.HTTPStatusError("bad", request=request, response=httpx.Response(code, request=request))


def raised(exc: BaseException, cause: BaseException | None = None, suppress: bool = False) -> BaseException:
    try:
        try:
            if cause is not None:
                raise cause
        except BaseException:
            if suppress:
                raise exc from None
            raise exc  # noqa: B904  # the context is what the test is about
        raise exc
    except BaseException as caught:
        return caught


def test_the_http_status_is_found_deep_inside_groups_without_the_headers() -> None:
    nested = BaseExceptionGroup("outer", [ValueError("noise"), ExceptionGroup("inner", [status_error(401)])])
    assert http_status(nested) == 401
    assert describe_exception(nested) == "HTTP 401"
    assert "s3cr3t" not in describe_exception(nested)


def test_timeouts_and_connection_failures_are_named_as_such() -> None:
    assert describe_exception(ExceptionGroup("g", [TimeoutError()])) == "timed out"
    refused = ExceptionGroup(
        "g", [RuntimeError("wrapper"), httpx.ConnectError("All connection attempts failed")]
    )
    assert describe_exception(refused) == "connection failed: ConnectError: All connection attempts failed"


def test_otherwise_the_first_error_with_the_first_line_of_its_text() -> None:
    group = ExceptionGroup("g", [LookupError("first\nsecond line"), ValueError("later")])
    assert describe_exception(group) == "LookupError: first"
    assert describe_exception(ValueError()) == "ValueError"
    assert len(describe_exception(ValueError("x" * 1000))) == 300


def test_causes_are_followed_and_suppressed_contexts_are_not() -> None:
    with_cause = raised(RuntimeError("session ended"), cause=ConnectionResetError("reset by peer"))
    assert [type(e) for e in walk_exception(with_cause)] == [RuntimeError, ConnectionResetError]
    assert describe_exception(with_cause) == "connection failed: ConnectionResetError: reset by peer"
    suppressed = raised(RuntimeError("session ended"), cause=ConnectionResetError("reset"), suppress=True)
    assert describe_exception(suppressed) == "RuntimeError: session ended"


def pages(count: int) -> dict[str | None, ListToolsResult]:
    cursors: list[str | None] = [None, *(f"c{i}" for i in range(1, count))]
    return {
        cursor: ListToolsResult(
            tools=[Tool(name=f"tool-{i}", inputSchema={"type": "object"})],
            nextCursor=cursors[i + 1] if i + 1 < count else None,
        )
        for i, cursor in enumerate(cursors)
    }


@pytest.mark.parametrize(
    ("count", "max_pages", "expected"), [(1, None, 1), (5, None, 5), (5, 3, 3), (2, 3, 2)]
)
async def test_list_all_tools_follows_the_cursor(count: int, max_pages: int | None, expected: int) -> None:
    served = pages(count)
    asked: list[str | None] = []

    async def fetch(cursor: str | None) -> ListToolsResult:
        asked.append(cursor)
        return served[cursor]

    tools = await list_all_tools(fetch, max_pages)
    assert [t.name for t in tools] == [f"tool-{i}" for i in range(expected)]
    assert asked == list(served)[:expected]
