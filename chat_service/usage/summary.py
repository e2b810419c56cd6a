"""Sums over ledger fields (ledger.py describes them): per model, caller, tool or day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chat_service.usage.ledger import split_field

COST_PREFIX = "cost:"


@dataclass
class Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    model_calls: int = 0
    estimated_calls: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)  # currency -> nano-units
    tool_calls: int = 0
    tool_errors: int = 0
    tool_milliseconds: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, counter: str, value: int, tool: bool) -> None:
        if tool:
            if counter == "calls":
                self.tool_calls += value
            elif counter == "errors":
                self.tool_errors += value
            elif counter == "ms":
                self.tool_milliseconds += value
            return
        if counter == "in":
            self.input_tokens += value
        elif counter == "out":
            self.output_tokens += value
        elif counter == "cached":
            self.cached_tokens += value
        elif counter == "calls":
            self.model_calls += value
        elif counter == "est":
            self.estimated_calls += value
        elif counter.startswith(COST_PREFIX):
            currency = counter[len(COST_PREFIX) :]
            self.cost_nanos[currency] = self.cost_nanos.get(currency, 0) + value


@dataclass(frozen=True)
class Entry:
    """One parsed field: a model call counter (``model``/``kind`` set) or a tool counter."""

    caller: str
    counter: str
    model: str | None = None
    kind: str | None = None
    tool: str | None = None  # "<server>/<tool>"


def parse(name: str) -> Entry | None:
    parts = split_field(name)
    if len(parts) == 5 and parts[0] == "m":
        return Entry(caller=parts[1], model=parts[2], kind=parts[3], counter=parts[4])
    if len(parts) == 5 and parts[0] == "t":
        return Entry(caller=parts[1], tool=f"{parts[2]}/{parts[3]}", counter=parts[4])
    return None  # not ours (a newer replica's field): ignored


def _sum(values: Mapping[str, int], keep: Callable[[Entry], bool]) -> Totals:
    totals = Totals()
    for name, value in values.items():
        entry = parse(name)
        if entry is not None and keep(entry):
            totals.add(entry.counter, value, entry.tool is not None)
    return totals


def caller_totals(values: Mapping[str, int], caller: str) -> Totals:
    return _sum(values, lambda e: e.caller == caller)


def model_totals(values: Mapping[str, int], model: str) -> Totals:
    return _sum(values, lambda e: e.model == model)


def grouped(
    days: Mapping[dt.date, Mapping[str, int]], group_by: str, caller: str | None
) -> dict[str, Totals]:
    """Totals per group key; ``caller`` set: only that caller's fields (a caller's own view)."""
    groups: dict[str, Totals] = {}
    for day, values in sorted(days.items()):
        for name, value in values.items():
            entry = parse(name)
            if entry is None or (caller is not None and entry.caller != caller):
                continue
            if group_by == "day":
                key: str | None = day.isoformat()
            elif group_by == "caller":
                key = entry.caller
            elif group_by == "model":
                key = entry.model
            else:
                key = entry.tool
            if key is None:  # tool counters have no model, model counters no tool
                continue
            groups.setdefault(key, Totals()).add(entry.counter, value, entry.tool is not None)
    return groups
