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
        tokens = CounterMetricFamily(
            "ai_ops_llm_tokens",
            "LLM tokens by namespace, model and kind (input, output, cached; cached is part of input).",
            labels=["namespace", "model", "kind"],
        )
        cost = CounterMetricFamily(
            "ai_ops_llm_cost",
            "LLM cost from the model's pinned prices, by namespace, model and currency.",
            labels=["namespace", "model", "currency"],
        )
        estimated = CounterMetricFamily(
            "ai_ops_llm_estimated_calls",
            "LLM calls whose provider sent no usage (tokens estimated from the text length).",
            labels=["namespace", "model"],
        )
        caller_tokens = CounterMetricFamily(
            "ai_ops_llm_caller_tokens",
            "LLM tokens by namespace, caller (from the tokens file, else other) and kind.",
            labels=["namespace", "caller", "kind"],
        )
        caller_cost = CounterMetricFamily(
            "ai_ops_llm_caller_cost",
            "LLM cost by namespace, caller (from the tokens file, else other) and currency.",
            labels=["namespace", "caller", "currency"],
        )
        families = (tokens, cost, estimated, caller_tokens, caller_cost)
        # per family (by position): label values -> [value, created]; a series is as old as the oldest
        # totals summed into it. Integer sums (costs in nano-units), so a cost is exact.
        sums: list[defaultdict[tuple[str, ...], list[float]]] = [defaultdict(_new_sum) for _ in families]

        def add(family: int, labels: tuple[str, ...], value: int, created: float) -> None:
            entry = sums[family][labels]
            entry[0] += value
            entry[1] = min(entry[1], created)

        for (namespace, model, caller, currency), t in list(self.totals()):  # a copy: calls go on meanwhile
            for kind, count in (("input", t.input), ("output", t.output), ("cached", t.cached)):
                add(0, (namespace, model, kind), count, t.created)
                add(3, (namespace, caller, kind), count, t.created)
            if t.estimated_calls:  # only once there was one
                add(2, (namespace, model), t.estimated_calls, t.created)
            if currency is not None:
                add(1, (namespace, model, currency), t.cost_nanos, t.created)
                add(4, (namespace, caller, currency), t.cost_nanos, t.created)
        for family, series in zip(families, sums, strict=True):
            unit = NANOS_PER_UNIT if family is cost or family is caller_cost else 1  # costs in nano-units
            for labels, (value, created) in series.items():
                family.add_metric(list(labels), value / unit, created=created)
            yield family


def _new_sum() -> list[float]:
    return [0, float("inf")]  # value (an integer sum), created
