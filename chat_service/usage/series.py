"""The model-call counters Prometheus reads, kept as plain integers and exported at scrape time.

Why not prometheus-client Counters: a model call adds to up to eight series (tokens of three kinds and the
cost, per model and per caller), and each ``Counter.inc`` takes a lock and two checks; on the turn path
that was most of what counting a call cost. Here a call adds to one ``ModelTotals`` (per namespace, model,
caller label and currency) and the collector sums them into the same families when scraped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from chat_service.usage.pricing import NANOS_PER_UNIT

SeriesKey = tuple[str, str, str, str | None]  # namespace, model, caller label, currency (None: no pricing)

TOKENS, COST, ESTIMATED, CALLER_TOKENS, CALLER_COST = range(5)  # the places in FAMILIES
FAMILIES = (  # name, help, labels
    (
        "ai_ops_llm_tokens",
        "LLM tokens by namespace, model and kind (input, output, cached; cached is part of input).",
        ["namespace", "model", "kind"],
    ),
    (
        "ai_ops_llm_cost",
        "LLM cost from the model's pinned prices, by namespace, model and currency.",
        ["namespace", "model", "currency"],
    ),
    (
        "ai_ops_llm_estimated_calls",
        "LLM calls whose provider sent no usage (tokens estimated from the text length).",
        ["namespace", "model"],
    ),
    (
        "ai_ops_llm_caller_tokens",
        "LLM tokens by namespace, caller (from the tokens file, else other) and kind.",
        ["namespace", "caller", "kind"],
    ),
    (
        "ai_ops_llm_caller_cost",
        "LLM cost by namespace, caller (from the tokens file, else other) and currency.",
        ["namespace", "caller", "currency"],
    ),
)


@dataclass(slots=True)
class ModelTotals:
    """Everything one (namespace, model, caller label, currency) has used since the process started."""

    input: int = 0
    output: int = 0
    cached: int = 0
    estimated_calls: int = 0
    cost_nanos: int = 0
    created: float = field(default_factory=time.time)


class ModelSeriesCollector(Collector):
    """``ai_ops_llm_tokens``, ``_cost``, ``_estimated_calls``, ``_caller_tokens`` and ``_caller_cost``."""

    def __init__(self, totals: Callable[[], Iterable[tuple[SeriesKey, ModelTotals]]]):
        self.totals = totals

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = [CounterMetricFamily(name, doc, labels=labels) for name, doc, labels in FAMILIES]
        # per family (by position): label values -> [value, created]; a series is as old as the oldest
        # totals summed into it. Integer sums (costs in nano-units), so a cost is exact.
        sums: list[defaultdict[tuple[str, ...], list[float]]] = [defaultdict(_new_sum) for _ in families]

        def add(family: int, labels: tuple[str, ...], value: int, created: float) -> None:
            entry = sums[family][labels]
            entry[0] += value
            entry[1] = min(entry[1], created)

        for (namespace, model, caller, currency), t in list(self.totals()):  # a copy: calls go on meanwhile
            for kind, count in (("input", t.input), ("output", t.output), ("cached", t.cached)):
                add(TOKENS, (namespace, model, kind), count, t.created)
                add(CALLER_TOKENS, (namespace, caller, kind), count, t.created)
            if t.estimated_calls:  # only once there was one
                add(ESTIMATED, (namespace, model), t.estimated_calls, t.created)
            if currency is not None:
                add(COST, (namespace, model, currency), t.cost_nanos, t.created)
                add(CALLER_COST, (namespace, caller, currency), t.cost_nanos, t.created)
        for index, (family, series) in enumerate(zip(families, sums, strict=True)):
            unit = NANOS_PER_UNIT if index in (COST, CALLER_COST) else 1  # costs were summed in nano-units
            for labels, (value, created) in series.items():
                family.add_metric(list(labels), value / unit, created=created)
            yield family


def _new_sum() -> list[float]:
    return [0, float("inf")]  # value (an integer sum), created
