"""What Prometheus reads of model calls (chat_service/usage/series.py): the sums per model and per caller
label, the cost only for priced models and exact in nano-units, estimated calls only once there was one,
callers outside the tokens file as ``other``, and a ``_created`` time per series. No server."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from ai_ops_api.agent_config import AgentConfig, PricingEntry, ProviderEntry
from ai_ops_api.agent_config import ModelEntry as Entry
from chat_service.metrics import ChatMetrics
from chat_service.usage.ledger import MemoryLedger
from chat_service.usage.pricing import TokenCounts
from chat_service.usage.recorder import MODEL_METADATA_KEY, UsageRecorder

PROVIDER = ProviderEntry(name="p", type="openai_compatible", base_url="http://127.0.0.1:9")
PRICED = Entry(
    name="priced",
    model="m1",
    provider=PROVIDER,
    pricing=PricingEntry(input_per_million_tokens=Decimal("0.1"), output_per_million_tokens=Decimal("0.3")),
)
FREE = Entry(name="free", model="m2", provider=PROVIDER)


def _samples(metrics: ChatMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("ai_ops_llm_"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "namespace"))
                found[(sample.name, labels)] = sample.value
    return found


def _call(recorder: UsageRecorder, model: str, caller: str, tokens: TokenCounts) -> None:
    recorder.model_call({MODEL_METADATA_KEY: model, "ai_ops_caller": caller}, tokens)


def test_model_series_sum_per_model_and_per_caller_with_exact_costs() -> None:
    metrics = ChatMetrics()
    config = AgentConfig(namespace="series", models=(PRICED, FREE)).finalize()
    recorder = UsageRecorder(
        metrics=metrics, ledger=MemoryLedger(7), config=lambda: config, known_callers=lambda: {"alice"}
    )
    before = time.time()
    assert _samples(metrics) == {}  # nothing called yet: no series at all
    for _ in range(3):  # 0.1 + 0.3 per million, three times: 0.0000012 exactly, not a float's sum
        _call(recorder, "priced", "alice", TokenCounts(input=1, output=1, cached=0))
    _call(recorder, "priced", "mallory", TokenCounts(input=1_000_000, output=0, cached=400_000))
    _call(recorder, "free", "alice", TokenCounts(input=10, output=2))
    samples = _samples(metrics)

    def tokens(model: str, kind: str) -> float:
        return samples[("ai_ops_llm_tokens_total", (("kind", kind), ("model", model)))]

    assert (tokens("priced", "input"), tokens("priced", "output"), tokens("priced", "cached")) == (
        1_000_003,
        3,
        400_000,
    )
    assert (tokens("free", "input"), tokens("free", "output"), tokens("free", "cached")) == (10, 2, 0)
    # Per caller: mallory is not in the tokens file, so "other"; alice's sums span both models.
    assert samples[("ai_ops_llm_caller_tokens_total", (("caller", "alice"), ("kind", "input")))] == 13
    assert samples[("ai_ops_llm_caller_tokens_total", (("caller", "other"), ("kind", "input")))] == 1_000_000
    assert not any(dict(labels).get("caller") == "mallory" for _name, labels in samples)
    cost = {labels: v for (name, labels), v in samples.items() if name == "ai_ops_llm_cost_total"}
    assert cost == {(("currency", "USD"), ("model", "priced")): 0.1000012}  # the free model has no cost
    caller_cost = {
        dict(labels)["caller"]: v
        for (name, labels), v in samples.items()
        if name == "ai_ops_llm_caller_cost_total"
    }
    assert caller_cost == {"alice": 0.0000012, "other": 0.1}
    assert not any(name == "ai_ops_llm_estimated_calls_total" for name, _labels in samples)
    created = samples[("ai_ops_llm_tokens_created", (("kind", "input"), ("model", "priced")))]
    assert before <= created <= time.time()

    _call(recorder, "free", "alice", TokenCounts(input=5, output=5, estimated=True))
    samples = _samples(metrics)
    assert samples[("ai_ops_llm_estimated_calls_total", (("model", "free"),))] == 1
    assert samples[("ai_ops_llm_tokens_total", (("kind", "input"), ("model", "free")))] == 15


def test_a_scrape_on_another_thread_while_calls_make_new_series_does_not_fail() -> None:
    """prometheus-client may scrape from a thread of its own while the event loop counts calls: the
    collector reads a copy of the series, so a series made meanwhile cannot break the scrape."""
    metrics = ChatMetrics()
    recorder = UsageRecorder(
        metrics=metrics,
        ledger=MemoryLedger(7),
        config=lambda: AgentConfig(namespace="series"),
        known_callers=lambda: {"alice"},
    )
    errors: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                metrics.render()
            except BaseException as exc:
                errors.append(exc)
                return

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(5000):
            _call(recorder, f"model-{i}", "alice", TokenCounts(input=1, output=1))
    finally:
        done.set()
        scraper.join()
    assert errors == []
    samples = _samples(metrics)
    assert samples[("ai_ops_llm_caller_tokens_total", (("caller", "alice"), ("kind", "input")))] == 5000
