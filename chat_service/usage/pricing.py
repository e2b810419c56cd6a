"""The cost of one model call from its token counts and the model's pinned prices.

Money is ``Decimal`` and is stored as integer nano-units of the currency (1e-9): a price per million
tokens with up to three decimals gives an exact integer per call, so sums in Redis never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ai_ops_api.agent_config import PricingEntry

NANOS_PER_UNIT = 1_000_000_000
_NANOS_PER_PRICE_TOKEN = Decimal(NANOS_PER_UNIT) / Decimal(1_000_000)  # price is per million tokens


@dataclass(frozen=True)
class TokenCounts:
    input: int = 0  # every prompt token, cached ones included (as providers count them)
    output: int = 0
    cached: int = 0  # of ``input``, read from the provider's prompt cache
    estimated: bool = False  # the provider sent no usage: counted from the text length

    @property
    def total(self) -> int:
        return self.input + self.output


def cost_nanos(pricing: PricingEntry | None, tokens: TokenCounts) -> int | None:
    """The call's cost in nano-units of ``pricing.currency``; None without pricing (cost absent, not 0)."""
    if pricing is None:
        return None
    cached = min(max(tokens.cached, 0), tokens.input)
    cached_price = pricing.cached_input_per_million_tokens
    if cached_price is None:  # no separate price: cached input costs as much as other input
        cached_price = pricing.input_per_million_tokens
    cost = (
        (tokens.input - cached) * pricing.input_per_million_tokens
        + cached * cached_price
        + tokens.output * pricing.output_per_million_tokens
    ) * _NANOS_PER_PRICE_TOKEN
    return int(cost.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def nanos_to_decimal(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS_PER_UNIT).normalize() if nanos else Decimal(0)


def decimal_to_nanos(amount: Decimal) -> int:
    return int((amount * NANOS_PER_UNIT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
