"""Prometheus answers made small enough for a model to read: pure functions, no I/O.

A range query can return thousands of points per series; a model needs the shape, not the samples. Each
series becomes its labels plus min, max, first, last, mean and a trend (the least-squares slope per minute,
named rising, falling or flat), and only the most interesting series are kept when there are many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

# A slope is "flat" when it would move the value by less than this share of its range over the window.
FLAT_SHARE = 0.05


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def trend(points: Sequence[tuple[float, float]]) -> tuple[str, float]:
    """(rising|falling|flat, slope per minute) of (timestamp, value) points by least squares."""
    if len(points) < 2:
        return "flat", 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return "flat", 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t  # per second
    span = points[-1][0] - points[0][0]
    values = [v for _, v in points]
    value_range = max(values) - min(values)
    movement = abs(slope * span)
    if value_range == 0 or movement < FLAT_SHARE * value_range:
        return "flat", _round(slope * 60)
    return ("rising" if slope > 0 else "falling"), _round(slope * 60)


def summarize_series(series: JSON) -> JSON:
    points = [(float(t), v) for t, raw in series.get("values") or [] if (v := _number(raw)) is not None]
    summary: JSON = {"metric": series.get("metric") or {}, "points": len(points)}
    if not points:
        return summary
    values = [v for _, v in points]
    direction, per_minute = trend(points)
    summary.update(
        first=_round(values[0]),
        last=_round(values[-1]),
        min=_round(min(values)),
        max=_round(max(values)),
        mean=_round(sum(values) / len(values)),
        trend=direction,
        slope_per_minute=per_minute,
        from_time=_iso(points[0][0]),
        to_time=_iso(points[-1][0]),
    )
    return summary


def summarize_matrix(result: Sequence[JSON], max_series: int) -> JSON:
    """A range query's series, summarized; the ``max_series`` with the largest last value are kept
    (for the usual "what is highest now" question), and the answer says how many were left out."""
    summaries = [summarize_series(s) for s in result]

    def highest_last(summary: JSON) -> tuple[float, str]:
        last = summary.get("last")
        return (-last if isinstance(last, float) else math.inf, str(summary["metric"]))

    summaries.sort(key=highest_last)
    answer: JSON = {"series": summaries[:max_series], "series_total": len(summaries)}
    if len(summaries) > max_series:
        answer["truncated"] = f"showing {max_series} of {len(summaries)} series (highest last value first)"
    return answer


def instant_vector(result: Sequence[JSON], max_series: int) -> JSON:
    rows = []
    for sample in result:
        _, raw = (sample.get("value") or [None, None])[:2]
        value = _number(raw)
        rows.append(
            {"metric": sample.get("metric") or {}, "value": _round(value) if value is not None else raw}
        )
    rows.sort(key=lambda r: -(r["value"] if isinstance(r["value"], float) else -math.inf))
    answer: JSON = {"samples": rows[:max_series], "series_total": len(rows)}
    if len(rows) > max_series:
        answer["truncated"] = f"showing {max_series} of {len(rows)} series (highest value first)"
    return answer


def query_answer(data: JSON, max_series: int) -> JSON:
    """An instant query's ``data`` in a readable form for each result type Prometheus can return."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "vector":
        return {"result_type": kind, **instant_vector(result or [], max_series)}
    if kind == "matrix":  # an instant query with a range selector, e.g. up[5m]
        return {"result_type": kind, **summarize_matrix(result or [], max_series)}
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        return {"result_type": kind, "value": result[1], "time": _iso(float(result[0]))}
    return {"result_type": kind, "result": result}


def alert_rows(alerts: Sequence[JSON]) -> list[JSON]:
    rows = [
        {
            "name": (a.get("labels") or {}).get("alertname", ""),
            "state": a.get("state", ""),
            "severity": (a.get("labels") or {}).get("severity", ""),
            "active_since": a.get("activeAt", ""),
            "value": a.get("value", ""),
            "labels": {
                k: v for k, v in (a.get("labels") or {}).items() if k not in ("alertname", "severity")
            },
            "summary": (a.get("annotations") or {}).get("summary")
            or (a.get("annotations") or {}).get("description", ""),
        }
        for a in alerts
    ]
    order = {"firing": 0, "pending": 1}
    rows.sort(key=lambda r: (order.get(r["state"], 2), r["name"]))
    return rows


def rule_rows(groups: Sequence[JSON]) -> list[JSON]:
    rows = []
    for group in groups:
        for rule in group.get("rules") or []:
            row: JSON = {
                "group": group.get("name", ""),
                "name": rule.get("name", ""),
                "type": rule.get("type", ""),
                "query": rule.get("query", ""),
                "health": rule.get("health", ""),
            }
            if rule.get("type") == "alerting":
                row.update(state=rule.get("state", ""), duration_seconds=rule.get("duration", 0))
                row["severity"] = (rule.get("labels") or {}).get("severity", "")
            if rule.get("lastError"):
                row["last_error"] = rule["lastError"]
            rows.append(row)
    return rows


def target_rows(active: Sequence[JSON]) -> list[JSON]:
    rows = [
        {
            "job": (t.get("labels") or {}).get("job") or t.get("scrapePool", ""),
            "instance": (t.get("labels") or {}).get("instance", ""),
            "health": t.get("health", ""),
            "last_scrape": t.get("lastScrape", ""),
            "last_scrape_seconds": t.get("lastScrapeDuration", 0),
            "last_error": t.get("lastError", ""),
            "url": t.get("scrapeUrl", ""),
        }
        for t in active
    ]
    order = {"down": 0, "unknown": 1, "up": 2}
    rows.sort(key=lambda r: (order.get(r["health"], 3), r["job"], r["instance"]))
    return rows
