"""``GET /api/usage``: the ledger's daily rollups, grouped by model, caller, tool or day.

Who sees what: a caller named in ``AI_OPS_USAGE_VIEWERS`` (and anyone when auth is off) sees everyone's
usage; every other caller sees only their own calls, whatever the grouping.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from chat_service.auth import ANONYMOUS
from chat_service.errors import UnsupportedParameter
from chat_service.routers.deps import Caller, Services
from chat_service.routers.responses import ERROR_RESPONSES, error_responses
from chat_service.usage.pricing import nanos_to_decimal
from chat_service.usage.summary import Totals, grouped

router = APIRouter(prefix="/api", tags=["usage"])

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7


class GroupBy(StrEnum):
    MODEL = "model"
    CALLER = "caller"
    TOOL = "tool"
    DAY = "day"


class UsageRow(BaseModel):
    key: str = Field(description="The model, caller, server/tool or day (ISO date) of the row.")
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = Field(
        default=0, description="Input tokens read from the provider's cache (part of input)."
    )
    model_calls: int = 0
    estimated_calls: int = Field(default=0, description="Model calls without provider usage (estimated).")
    cost: dict[str, str] | None = Field(
        default=None, description="Cost per currency, exact decimal text; absent without pricing."
    )
    tool_calls: int = 0
    tool_errors: int = 0
    tool_seconds: float = 0.0


class UsageResponse(BaseModel):
    from_: dt.date = Field(alias="from", serialization_alias="from")
    to: dt.date
    group_by: GroupBy
    scope: str = Field(description="all (every caller) or the caller's own name.")
    accounting: bool = Field(description="False when AI_OPS_USAGE_ACCOUNTING is off: nothing is counted.")
    rows: list[UsageRow]
    total: UsageRow


def row(key: str, totals: Totals) -> UsageRow:
    return UsageRow(
        key=key,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cached_tokens=totals.cached_tokens,
        model_calls=totals.model_calls,
        estimated_calls=totals.estimated_calls,
        cost={c: str(nanos_to_decimal(n)) for c, n in sorted(totals.cost_nanos.items())} or None,
        tool_calls=totals.tool_calls,
        tool_errors=totals.tool_errors,
        tool_seconds=totals.tool_milliseconds / 1000,
    )


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UnsupportedParameter(
            f"{name}: expected an ISO date (YYYY-MM-DD), got {value[:40]!r}", name
        ) from None


_BAD_QUERY = error_responses(
    400, descriptions={400: "A bad from, to or group_by, or a range longer than allowed (invalid_request)"}
)


@router.get(
    "/usage",
    response_model=UsageResponse,
    response_model_by_alias=True,
    responses={**ERROR_RESPONSES, **_BAD_QUERY},
)
async def usage(
    identity: Caller,
    services: Services,
    from_: Annotated[
        str | None, Query(alias="from", max_length=40, description="First day (UTC), ISO date.")
    ] = None,
    to: Annotated[
        str | None, Query(max_length=40, description="Last day (UTC), ISO date; today when unset.")
    ] = None,
    group_by: Annotated[str, Query(max_length=40, description="model, caller, tool or day.")] = "day",
) -> UsageResponse:
    """Tokens, cost and tool calls per model, caller, tool or day over a range of UTC days."""
    try:
        grouping = GroupBy(group_by)
    except ValueError:
        raise UnsupportedParameter(
            f"group_by: expected model, caller, tool or day, got {group_by[:40]!r}", "group_by"
        ) from None
    today = dt.datetime.now(dt.UTC).date()
    last = _date(to, "to") or today
    first = _date(from_, "from") or last - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first > last:
        raise UnsupportedParameter("from is after to", "from")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise UnsupportedParameter(f"the range is longer than {MAX_RANGE_DAYS} days", "from")
    sees_all = identity == ANONYMOUS or identity in services.settings.usage_viewers
    recorder = services.usage
    rows: list[UsageRow] = []
    total = Totals()
    if recorder is not None:
        namespace, _config = recorder._namespace()
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        values = await recorder.read_days(namespace, days)  # this replica's unflushed calls included
        groups = grouped(values, grouping.value, None if sees_all else identity)
        rows = [row(key, totals) for key, totals in sorted(groups.items())]
        for totals in grouped(values, "day", None if sees_all else identity).values():
            _merge(total, totals)
    return UsageResponse.model_validate(
        {
            "from": first,
            "to": last,
            "group_by": grouping,
            "scope": "all" if sees_all else identity,
            "accounting": recorder is not None,
            "rows": rows,
            "total": row("total", total),
        }
    )


def _merge(into: Totals, other: Totals) -> None:
    into.input_tokens += other.input_tokens
    into.output_tokens += other.output_tokens
    into.cached_tokens += other.cached_tokens
    into.model_calls += other.model_calls
    into.estimated_calls += other.estimated_calls
    into.tool_calls += other.tool_calls
    into.tool_errors += other.tool_errors
    into.tool_milliseconds += other.tool_milliseconds
    for currency, nanos in other.cost_nanos.items():
        into.cost_nanos[currency] = into.cost_nanos.get(currency, 0) + nanos
