"""The usage of a finished agent run, from its messages: what an Investigation's status reports.

The provider's usage rides on each AI message (``usage_metadata``); the cost comes from the model's pinned
prices like every other call's (pricing.py), absent without pricing.
"""

from __future__ import annotations

from typing import Any

from ai_ops_api.agent_config import PricingEntry
from chat_service.usage.pricing import TokenCounts, cost_nanos, nanos_to_decimal


def run_usage(messages: list[Any], pricing: PricingEntry | None) -> dict[str, Any]:
    """``{"input", "output", "total"}`` tokens, plus ``cost`` (exact decimal text) and ``currency`` when
    the model has pricing."""
    used = {"input": 0, "output": 0, "total": 0}
    nanos = 0
    for message in messages:
        meta = getattr(message, "usage_metadata", None) or {}
        tokens = TokenCounts(
            input=int(meta.get("input_tokens") or 0),
            output=int(meta.get("output_tokens") or 0),
            cached=int((meta.get("input_token_details") or {}).get("cache_read") or 0),
        )
        used["input"] += tokens.input
        used["output"] += tokens.output
        used["total"] += int(meta.get("total_tokens") or 0)
        nanos += cost_nanos(pricing, tokens) or 0
    result: dict[str, Any] = dict(used)
    if pricing is not None:
        result["cost"] = str(nanos_to_decimal(nanos))
        result["currency"] = pricing.currency
    return result
