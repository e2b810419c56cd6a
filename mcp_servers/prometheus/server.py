"""The prometheus MCP server: read-only PromQL queries, alerts, rules, targets and label values.

Every tool only reads (``readOnlyHint``), is bounded in time (Prometheus' own query timeout) and answers
capped JSON; range queries are summarized per series (min, max, last, trend) instead of returning samples.
The Prometheus URL comes from the administrator's settings, never from a tool argument, so the tools can
reach nothing else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_servers.common import DEFAULT_MAX_RESPONSE_BYTES, add_health_route, cap_text, fit_items, to_json
from mcp_servers.prometheus.client import PrometheusClient, PrometheusError
from mcp_servers.prometheus.summaries import (
    alert_rows,
    query_answer,
    rule_rows,
    summarize_matrix,
    target_rows,
)
from mcp_servers.tool_server import ToolServer

INSTRUCTIONS = (
    "Read-only access to Prometheus: instant and range PromQL queries (range results summarized per series), "
    "active alerts, alerting and recording rules, scrape targets and label values."
)
MAX_SERIES = 50
# Prometheus refuses more than 11,000 points per series; stay well below and widen the step instead.
MAX_POINTS = 1_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

Expr = Annotated[str, Field(min_length=1, max_length=4000, description="a PromQL expression")]
Duration = Annotated[
    str,
    Field(
        max_length=16,
        description="a duration such as 30s, 15m, 6h or 7d",
        pattern=r"^\d+(\.\d+)?(ms|s|m|h|d|w)$",
    ),
]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=200)]
READ_ONLY = ToolAnnotations(
    readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False
)


def seconds(duration: str) -> float:
    found = _DURATION.match(duration.strip())
    if not found:
        raise ToolError(f"{duration!r} is not a duration (use e.g. 30s, 15m, 6h, 7d)")
    return float(found.group(1)) * _SECONDS[found.group(2)]


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    timeout_seconds: float = 30.0
    bearer_token: str | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


async def _answer(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except PrometheusError as error:
        raise ToolError(str(error)) from None


def build_server(settings: PrometheusSettings, *, host: str = "127.0.0.1", path: str = "/mcp") -> FastMCP:
    client = PrometheusClient(settings.url, settings.timeout_seconds, settings.bearer_token)
    limit = settings.max_response_bytes
    server = ToolServer(
        "ai-ops-prometheus",
        instructions=INSTRUCTIONS,
        host=host,
        streamable_http_path=path,
        stateless_http=True,
        json_response=True,
    )

    @server.tool(annotations=READ_ONLY)
    async def query(
        expr: Expr,
        time: Annotated[str | None, Field(description="RFC 3339 or unix time; default now")] = None,
    ) -> str:
        """Evaluate a PromQL expression at one instant. Vectors are sorted by value, highest first."""
        data = await _answer(client.query(expr, time))
        return cap_text(to_json(query_answer(data or {}, MAX_SERIES)), limit)

    @server.tool(annotations=READ_ONLY)
    async def query_range(
        expr: Expr,
        window: Duration = "1h",
        step: Annotated[Duration | None, Field(description="resolution; default: the window / 240")] = None,
    ) -> str:
        """Evaluate a PromQL expression over the last `window`; each series is summarized as
        min, max, first, last, mean and trend (rising, falling or flat) rather than raw samples."""
        span = seconds(window)
        if span <= 0 or span > 90 * 86400:
            raise ToolError("window must be between 1s and 90d")
        resolution = seconds(step) if step else max(span / 240, 1.0)
        if span / resolution > MAX_POINTS:
            resolution = span / MAX_POINTS
        end = time.time()
        data = await _answer(client.query_range(expr, end - span, end, resolution))
        summary = summarize_matrix((data or {}).get("result") or [], MAX_SERIES)
        summary.update(window=window, step_seconds=round(resolution, 3))
        return cap_text(to_json(summary), limit)

    @server.tool(annotations=READ_ONLY)
    async def alerts(state: Literal["any", "firing", "pending"] = "any") -> str:
        """Alerts Prometheus evaluates right now: firing first, then pending, with labels and summary."""
        rows = alert_rows(await _answer(client.alerts()))
        if state != "any":
            rows = [r for r in rows if r["state"] == state]
        return fit_items({"count": len(rows)}, "alerts", rows, limit, "filter by state")

    @server.tool(annotations=READ_ONLY)
    async def rules(kind: Literal["any", "alert", "record"] = "any") -> str:
        """Alerting and recording rules with their expression, health and (for alerts) state."""
        rows = rule_rows(await _answer(client.rules(None if kind == "any" else kind)))
        return fit_items({"count": len(rows)}, "rules", rows, limit, "ask for kind alert or record")

    @server.tool(annotations=READ_ONLY)
    async def targets(health: Literal["any", "up", "down", "unknown"] = "any") -> str:
        """Scrape targets with their health, last scrape and last error: down ones first."""
        data = await _answer(client.targets())
        rows = target_rows(data.get("activeTargets") or [])
        if health != "any":
            rows = [r for r in rows if r["health"] == health]
        return fit_items({"count": len(rows)}, "targets", rows, limit, "filter by health")

    @server.tool(annotations=READ_ONLY)
    async def label_values(
        label: LabelName,
        match: Annotated[
            str | None, Field(max_length=4000, description='a series selector, e.g. up{job="api"}')
        ] = None,
    ) -> str:
        """The values a label takes, e.g. every `namespace` or every `job` (optionally within a selector)."""
        values = await _answer(client.label_values(label, match))
        return fit_items({"label": label, "count": len(values)}, "values", values, limit, "narrow with match")

    add_health_route(server)
    return server
