"""Daily budgets: per caller (``AI_OPS_CALLER_DAILY_BUDGET``) and per model (``LLMModel.spec.budget``).

A turn is refused (429 ``budget_exceeded``) once the day's usage has reached a budget; the turn that
crosses it runs to its end, so a budget is a limit on starting turns. Streamed, plain and ``/v1`` turns
are checked by the same call before anything runs, so they stop at the same point.

The setting: ``tokens=100000,cost=5`` for every caller, or per caller ``alice:tokens=1000;*:cost=5``
(``*``: the others); ``currency=EUR`` (default USD) says which costs a cost budget counts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ai_ops_api.agent_config import ModelEntry
from chat_service.errors import RateLimited
from chat_service.usage.pricing import decimal_to_nanos, nanos_to_decimal
from chat_service.usage.summary import caller_totals, model_totals

ANY_CALLER = "*"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class BudgetExceeded(RateLimited):
    """A daily budget is used up; ``retry_after`` is the seconds until it resets (UTC midnight)."""

    code = "budget_exceeded"


class BudgetSettingError(ValueError):
    pass


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    cost: Decimal | None = None
    currency: str = "USD"


def parse_caller_budgets(text: str) -> dict[str, Budget]:
    """``tokens=N,cost=X[,currency=CUR]`` or ``name:...;name:...;*:...``; raises BudgetSettingError."""
    budgets: dict[str, Budget] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        caller, sep, terms = part.partition(":")
        if not sep or "=" in caller:
            caller, terms = ANY_CALLER, part
        caller = caller.strip()
        if not caller:
            raise BudgetSettingError(f"{part!r}: empty caller name")
        if caller in budgets:
            raise BudgetSettingError(f"caller {caller!r} has two budgets")
        budgets[caller] = _parse_terms(terms, part)
    return budgets


def _parse_terms(terms: str, part: str) -> Budget:
    values: dict[str, str] = {}
    for term in (t.strip() for t in terms.split(",")):
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ("tokens", "cost", "currency") or not value or key in values:
            raise BudgetSettingError(
                f"{part!r}: expected tokens=N, cost=X and/or currency=CUR, each once (got {term!r})"
            )
        values[key] = value
    tokens = cost = None
    if "tokens" in values:
        if not values["tokens"].isdigit() or int(values["tokens"]) < 1:
            raise BudgetSettingError(f"{part!r}: tokens must be a positive integer")
        tokens = int(values["tokens"])
    if "cost" in values:
        try:
            cost = Decimal(values["cost"])
        except InvalidOperation:
            raise BudgetSettingError(f"{part!r}: cost must be a number") from None
        if not cost.is_finite() or cost <= 0:
            raise BudgetSettingError(f"{part!r}: cost must be a positive number")
    if tokens is None and cost is None:
        raise BudgetSettingError(f"{part!r}: set tokens, cost or both")
    currency = values.get("currency", "USD")
    if not _CURRENCY.match(currency):
        raise BudgetSettingError(f"{part!r}: currency must be an ISO 4217 code such as USD")
    return Budget(tokens, cost, currency)


def next_reset(now: dt.datetime) -> dt.datetime:
    """The next UTC midnight: when every daily budget starts over."""
    return dt.datetime.combine(now.astimezone(dt.UTC).date() + dt.timedelta(days=1), dt.time(), dt.UTC)


def exceeded(
    today: Mapping[str, int],
    caller: str,
    model: ModelEntry,
    caller_budgets: Mapping[str, Budget],
    now: dt.datetime,
) -> BudgetExceeded | None:
    """The error for the first budget today's usage has reached, or None."""
    reasons: list[str] = []
    budget = caller_budgets.get(caller) or caller_budgets.get(ANY_CALLER)
    if budget is not None:
        used = caller_totals(today, caller)
        if budget.tokens is not None and used.tokens >= budget.tokens:
            reasons.append(
                f"the daily token budget of caller {caller!r} ({used.tokens}/{budget.tokens} tokens)"
            )
        spent = used.cost_nanos.get(budget.currency, 0)
        if budget.cost is not None and spent >= decimal_to_nanos(budget.cost):
            reasons.append(
                f"the daily cost budget of caller {caller!r} "
                f"({nanos_to_decimal(spent)}/{budget.cost} {budget.currency})"
            )
    if model.budget is not None:
        used = model_totals(today, model.name)
        if model.budget.tokens is not None and used.tokens >= model.budget.tokens:
            reasons.append(
                f"the daily token budget of model {model.name!r} ({used.tokens}/{model.budget.tokens} tokens)"
            )
        currency = model.pricing.currency if model.pricing else "USD"
        spent = used.cost_nanos.get(currency, 0)
        if model.budget.cost is not None and spent >= decimal_to_nanos(model.budget.cost):
            reasons.append(
                f"the daily cost budget of model {model.name!r} "
                f"({nanos_to_decimal(spent)}/{model.budget.cost} {currency})"
            )
    if not reasons:
        return None
    reset = next_reset(now)
    seconds = max(int((reset - now).total_seconds()) + 1, 1)
    return BudgetExceeded(
        f"{'; '.join(reasons)} is used up; it resets at {reset.isoformat().replace('+00:00', 'Z')}",
        retry_after=str(seconds),
    )
