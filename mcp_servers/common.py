"""Pieces both bundled MCP servers share: response formatting and size capping, `/healthz`, serving
(their FastMCP server class is in tool_server.py: importing FastMCP here would slow `ai-ops --help`).

The formatting helpers are pure functions (tested without a server); `serve` is the thin HTTP adapter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

# Big enough for a describe summary or a few hundred list rows, small enough not to flood a model's context.
DEFAULT_MAX_RESPONSE_BYTES = 64_000
# Below this a cap would leave no room for the truncation note itself.
MIN_MAX_RESPONSE_BYTES = 1_024


class InvalidArgument(ValueError):
    """A tool argument that cannot be used as given; the message says why (shown to the model)."""


def to_json(value: Any) -> str:
    """The text form of every tool result: JSON, lightly indented (models read it, tests parse it)."""
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)


def byte_size(text: str) -> int:
    return len(text.encode("utf-8"))


def cap_text(text: str, max_bytes: int, hint: str = "") -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, with a note saying that and how much was cut."""
    size = byte_size(text)
    if size <= max_bytes:
        return text
    note = f"\n[truncated: {size} bytes, limit {max_bytes}{'; ' + hint if hint else ''}]"
    keep = max(0, max_bytes - byte_size(note))
    # errors="ignore" drops a multi-byte character cut in half at the boundary.
    head = text.encode("utf-8")[:keep].decode("utf-8", errors="ignore")
    return head + note


def cap_text_keep_end(text: str, max_bytes: int, hint: str = "") -> str:
    """Like `cap_text` but keeps the end (the newest log lines matter most), the note first."""
    size = byte_size(text)
    if size <= max_bytes:
        return text
    note = f"[truncated: {size} bytes, limit {max_bytes}, earliest part cut{'; ' + hint if hint else ''}]\n"
    keep = max(0, max_bytes - byte_size(note))
    tail = text.encode("utf-8")[size - keep :].decode("utf-8", errors="ignore") if keep else ""
    return note + tail


def fit_items(
    envelope: dict[str, Any],
    items_key: str,
    items: Sequence[Any],
    max_bytes: int,
    hint: str = "narrow the query",
) -> str:
    """JSON of `envelope` with as many leading `items` under `items_key` as fit in `max_bytes`.

    Dropping whole items keeps the answer valid JSON (a cut in the middle would not be); when items are
    dropped the envelope says how many and how to get the rest.
    """

    def render(count: int) -> str:
        body = dict(envelope)
        body[items_key] = list(items[:count])
        if count < len(items):
            body["truncated"] = (
                f"showing {count} of {len(items)} {items_key}: the response limit is {max_bytes} bytes; {hint}"
            )
        return to_json(body)

    full = render(len(items))
    if byte_size(full) <= max_bytes:
        return full
    low, high = 0, len(items) - 1  # the largest count that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if byte_size(render(middle)) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    # Even zero items may not fit when the envelope itself is huge: cap the text as a last resort.
    return cap_text(render(low), max_bytes, hint)


def add_health_route(server: FastMCP) -> None:
    """`GET /healthz` for liveness probes: answers without touching any backend."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    @server.custom_route("/healthz", methods=["GET"], include_in_schema=False)
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "server": server.name})


def serve(server: FastMCP, host: str, port: int, log_level: str = "info") -> None:
    """Serve `server` on streamable HTTP at its configured path (blocks until stopped)."""
    import uvicorn

    uvicorn.run(server.streamable_http_app(), host=host, port=port, log_level=log_level)
