"""The rules of a whole middleware chain (``check_chain``), and the operator and the chat service agreeing.

One corpus of chains runs through both sides: the operator's ``evaluate`` + ``translate``, and the chat's
``build_middleware_chain`` on the translated config and on the raw chains (every active middleware, as if
the operator had let everything through). The chat must build exactly what the operator marked Ready:
nothing unavailable or skipped in a Ready chain, and on the raw chains it refuses exactly the middleware
the operator refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ai_ops_api.agent_config import AgentConfig, MiddlewareEntry, ModelEntry, ProviderEntry
from ai_ops_api.conditions import CONFIG_VALID, Reason
from ai_ops_api.middleware import ChainRule, check_chain
from ai_ops_api.specs import LLMMiddlewareSpec
from ai_ops_operator.core.evaluate import evaluate, middleware_entry
from ai_ops_operator.core.snapshot import Evaluation, Snapshot
from ai_ops_operator.core.translate import translate
from chat_service.middleware.chain import build_middleware_chain
from tests.support.chat_middleware_support import make_context
from tests.support.resources import middleware, model, provider

# Nothing listens here: the chat builds ChatOpenAI clients, which connect only when called.
LLM_URL = "http://127.0.0.1:9/v1"
MODELS = ("main", "backup", "summarizer")


@dataclass(frozen=True)
class Chain:
    id: str
    middleware: dict[str, dict[str, Any]]  # name -> LLMMiddleware spec fields (modelRef defaults to main)
    # Expected Ready reasons of the middleware that are not Ready, and the models that are not Ready.
    refused: dict[str, str] = field(default_factory=dict)
    models_down: frozenset[str] = frozenset()


def mw(type_: str, model_name: str = "main", **spec: Any) -> dict[str, Any]:
    return {"model": model_name, "type": type_, **spec}


CORPUS = [
    Chain("empty", {}),
    Chain(
        "everyday-chain",
        {
            "log": mw("logging", priority=1),
            "cache": mw("cache", priority=5),
            "retry": mw("model_retry", priority=10, critical=True),
            "pii": mw("pii", config={"piiTypes": ["email", "ip"]}),
            "guard": mw("prompt_injection", critical=True),
            "trim": mw("context_editing"),
        },
    ),
    Chain(
        "fallback-to-another-model",
        {"fb": mw("model_fallback", critical=True, config={"models": ["backup"]})},
    ),
    Chain(
        "summarization-on-itself-and-on-another",
        {
            "sum-self": mw("summarization", config={"triggerTokens": 1000}),
            "sum-other": mw("summarization", "backup", config={"model": "summarizer"}),
        },
    ),
    Chain(
        "self-fallback-not-critical",
        {"fb": mw("model_fallback", config={"models": ["main"]}), "log": mw("logging")},
        refused={"fb": "SelfFallback"},
    ),
    Chain(
        "self-fallback-critical",
        {"fb": mw("model_fallback", critical=True, config={"models": ["backup", "main"]})},
        refused={"fb": "SelfFallback"},
        models_down=frozenset({"main"}),
    ),
    Chain(
        "the-reproduction",
        {
            "fallback": mw("model_fallback", critical=True, config={"models": ["main"]}),
            "limit-a": mw("model_call_limit", critical=True, config={"runLimit": 5}),
            "limit-b": mw("model_call_limit", critical=True, config={"runLimit": 3}),
        },
        refused={"fallback": "SelfFallback", "limit-b": "DuplicateCounter"},
        models_down=frozenset({"main"}),
    ),
    Chain(
        "two-model-limits-not-critical",
        {
            "limit-a": mw("model_call_limit", config={"runLimit": 5}),
            "limit-b": mw("model_call_limit", config={"threadLimit": 9}),
        },
        refused={"limit-b": "DuplicateCounter"},
    ),
    Chain(
        "two-model-limits-the-later-in-chain-order-is-at-fault",
        {
            "a-late": mw("model_call_limit", priority=20, critical=True, config={"runLimit": 5}),
            "z-early": mw("model_call_limit", priority=10, config={"runLimit": 3}),
        },
        refused={"a-late": "DuplicateCounter"},
        models_down=frozenset({"main"}),
    ),
    Chain(
        "three-model-limits",
        {
            "limit-1": mw("model_call_limit", config={"runLimit": 1}),
            "limit-2": mw("model_call_limit", config={"runLimit": 2}),
            "limit-3": mw("model_call_limit", config={"runLimit": 3}),
        },
        refused={"limit-2": "DuplicateCounter", "limit-3": "DuplicateCounter"},
    ),
    Chain(
        "two-unscoped-tool-limits",
        {
            "tools-a": mw("tool_call_limit", config={"runLimit": 5}),
            "tools-b": mw("tool_call_limit", critical=True, config={"runLimit": 9}),
        },
        refused={"tools-b": "DuplicateCounter"},
        models_down=frozenset({"main"}),
    ),
    Chain(
        "two-tool-limits-on-the-same-tool",
        {
            "lookup-a": mw("tool_call_limit", config={"runLimit": 5, "toolName": "lookup"}),
            "lookup-b": mw("tool_call_limit", config={"threadLimit": 2, "toolName": "lookup"}),
        },
        refused={"lookup-b": "DuplicateCounter"},
    ),
    Chain(
        "tool-limits-on-different-tools-and-unscoped",
        {
            "lookup": mw("tool_call_limit", critical=True, config={"runLimit": 5, "toolName": "lookup"}),
            "ping": mw("tool_call_limit", critical=True, config={"runLimit": 5, "toolName": "ping"}),
            "all": mw("tool_call_limit", critical=True, config={"runLimit": 20}),
            "models": mw("model_call_limit", critical=True, config={"runLimit": 20}),
        },
    ),
    Chain(
        "limits-on-different-models",
        {
            "main-limit": mw("model_call_limit", critical=True, config={"runLimit": 5}),
            "backup-limit": mw("model_call_limit", "backup", critical=True, config={"runLimit": 5}),
        },
    ),
    Chain(
        "inactive-limit-shares-no-counter",
        {
            "old-limit": mw("model_call_limit", priority=1, active=False, config={"runLimit": 1}),
            "limit": mw("model_call_limit", critical=True, config={"runLimit": 5}),
        },
    ),
    Chain(
        "inactive-critical-self-fallback",
        {"fb": mw("model_fallback", active=False, critical=True, config={"models": ["main"]})},
        refused={"fb": "SelfFallback"},
    ),
    Chain(
        "an-invalid-limit-owns-no-counter",
        {
            "broken": mw("model_call_limit", priority=1, config={"runLimit": 0}),
            "limit": mw("model_call_limit", critical=True, config={"runLimit": 5}),
        },
        refused={"broken": "InvalidConfig"},
    ),
    Chain(
        "cascade-through-a-fallback",
        {
            "fb": mw("model_fallback", critical=True, config={"models": ["backup"]}),
            "backup-a": mw("tool_call_limit", "backup", config={"runLimit": 5, "toolName": "x"}),
            "backup-b": mw(
                "tool_call_limit", "backup", critical=True, config={"runLimit": 2, "toolName": "x"}
            ),
        },
        refused={"fb": "ReferencedModelNotReady", "backup-b": "DuplicateCounter"},
        models_down=frozenset({"main", "backup"}),
    ),
    Chain(
        "a-plan-and-a-tool-selector-on-another-model",
        {
            "plan": mw("todo_list", critical=True),
            "pick": mw("tool_selector", critical=True, config={"model": "summarizer", "maxTools": 5}),
        },
    ),
    Chain(
        "two-todo-lists",
        {"plan-a": mw("todo_list", critical=True), "plan-b": mw("todo_list", config={"systemPrompt": "x"})},
        refused={"plan-b": "DuplicateTool"},
    ),
    Chain(
        "custom-without-its-entry-point",
        {"audit": mw("custom", config={"entryPoint": "not-installed"}), "log": mw("logging")},
        refused={"audit": "EntryPointNotFound"},
    ),
]


def snapshot_of(chain: Chain) -> Snapshot:
    middlewares = {
        name: middleware(
            name,
            fields["model"],
            fields["type"],
            **{k: v for k, v in fields.items() if k not in ("model", "type")},
        )
        for name, fields in chain.middleware.items()
    }
    return Snapshot(
        "agreement",
        providers={"fake": provider("fake", type="openai_compatible", baseURL=LLM_URL)},
        models={name: model(name, "fake") for name in MODELS},
        middlewares=middlewares,
        secrets={},
        health={},
        custom_middleware=frozenset(),
    )


def raw_chain(ev: Evaluation, model_name: str) -> tuple[MiddlewareEntry, ...]:
    """Every active, valid-spec middleware of the model: the chain without the operator's verdicts."""
    specs: list[tuple[str, LLMMiddlewareSpec]] = [
        (v.name, v.spec)
        for v in ev.middlewares.values()
        if v.spec is not None and v.spec.model_ref.name == model_name
    ]
    return tuple(middleware_entry(name, spec) for name, spec in specs if spec.active)


def model_entry(config: AgentConfig, name: str, chain: tuple[MiddlewareEntry, ...]) -> ModelEntry:
    translated = config.model_by_name(name)
    if translated is not None:
        return translated.model_copy(update={"middleware": chain})
    provider_entry = ProviderEntry(name="fake", type="openai_compatible", base_url=LLM_URL)
    return ModelEntry(name=name, model=f"{name}-id", provider=provider_entry, middleware=chain)


def built_names(chain_build: Any) -> set[str]:
    # PII builds one instance per type, "<entry>[<type>]"; every other type one named after its entry.
    return {m.name.split("[")[0] for m in chain_build.middleware}


def test_the_corpus_is_large_and_covers_both_rules() -> None:
    assert len(CORPUS) >= 15
    reasons = {reason for chain in CORPUS for reason in chain.refused.values()}
    assert {rule.value for rule in ChainRule} <= reasons


@pytest.mark.parametrize("chain", CORPUS, ids=[c.id for c in CORPUS])
def test_operator_and_chat_agree_on_the_chain(chain: Chain) -> None:
    snap = snapshot_of(chain)
    ev = evaluate(snap)
    refused = {name: v.reason for name, v in ev.middlewares.items() if not v.ready}
    assert refused == chain.refused
    assert {name for name, v in ev.models.items() if not v.ready} == chain.models_down
    for name in chain.models_down:
        assert ev.models[name].reason == Reason.CRITICAL_MIDDLEWARE_NOT_READY
        # The model's message names each rule its critical entries broke, not only the entries.
        message = ev.models[name].condition("Ready").message  # type: ignore[union-attr]
        for entry, reason in chain.refused.items():
            if ev.middlewares[entry].spec.critical and ev.middlewares[entry].spec.model_ref.name == name:  # type: ignore[union-attr]
                assert f"{entry} ({reason})" in message
    config = translate(snap, ev)
    assert {m.name for m in config.models} == set(MODELS) - chain.models_down

    # The chat builds every chain the operator wrote, whole.
    ctx = make_context(config)
    for entry in config.models:
        built = build_middleware_chain(entry, ctx)
        assert built.unavailable is None, built.unavailable
        assert built.warnings == []
        assert built_names(built) == {mw.name for mw in entry.middleware}

    # Without the operator's verdicts the chat refuses exactly what the operator refused. Each model is
    # built in a config of itself and the models the operator kept, so references resolve as in the cluster.
    for name in MODELS:
        entry = model_entry(config, name, raw_chain(ev, name))
        others = tuple(m for m in config.models if m.name != name)
        built = build_middleware_chain(
            entry, make_context(AgentConfig(namespace="agreement", models=(entry, *others)))
        )
        operator_ready = {mw.name for mw in entry.middleware if ev.middlewares[mw.name].ready}
        assert built_names(built) == operator_ready, name
        assert (built.unavailable is not None) == (name in chain.models_down), built.unavailable


def entries(*specs: tuple[str, str, dict[str, Any]]) -> list[MiddlewareEntry]:
    return [MiddlewareEntry(name=n, type=t, priority=50, config=c) for n, t, c in specs]


def test_check_chain_names_the_entry_the_rule_and_the_field() -> None:
    problems = check_chain(
        "m",
        entries(
            ("fb", "model_fallback", {"models": ["other", "m"]}),
            ("calls-a", "model_call_limit", {"runLimit": 1}),
            ("calls-b", "model_call_limit", {"runLimit": 2}),
            ("tool-a", "tool_call_limit", {"runLimit": 1, "toolName": "t"}),
            ("tool-b", "tool_call_limit", {"runLimit": 1, "toolName": "t"}),
            ("tools-a", "tool_call_limit", {"runLimit": 1}),
            ("tools-b", "tool_call_limit", {"runLimit": 1}),
        ),
    )
    assert [(p.entry, p.rule, p.path) for p in problems] == [
        ("calls-b", ChainRule.DUPLICATE_COUNTER, "spec.type"),
        ("fb", ChainRule.SELF_FALLBACK, "spec.config.models[1]"),
        ("tool-b", ChainRule.DUPLICATE_COUNTER, "spec.config.toolName"),
        ("tools-b", ChainRule.DUPLICATE_COUNTER, "spec.config.toolName"),
    ]
    assert "'calls-a' already limits model calls" in problems[0].message
    assert "'tool-a' already limits calls of tool 't'" in problems[2].message


def test_check_chain_takes_entries_in_chain_order_whatever_order_they_come_in() -> None:
    late = MiddlewareEntry(name="a", type="model_call_limit", priority=90, config={"runLimit": 1})
    early = MiddlewareEntry(name="z", type="model_call_limit", priority=10, config={"runLimit": 1})
    assert [p.entry for p in check_chain("m", [late, early])] == ["a"]
    assert [p.entry for p in check_chain("m", [early, late])] == ["a"]


def test_check_chain_leaves_unparsable_configs_to_the_config_check() -> None:
    assert (
        check_chain("m", entries(("a", "model_call_limit", {}), ("b", "model_call_limit", {"runLimit": 1})))
        == []
    )
    assert check_chain("m", entries(("fb", "model_fallback", {"models": []}))) == []


def test_operator_condition_names_the_rule_and_the_field() -> None:
    chain = next(c for c in CORPUS if c.id == "the-reproduction")
    ev = evaluate(snapshot_of(chain))
    fallback = ev.middlewares["fallback"].condition(CONFIG_VALID)
    assert fallback is not None and (fallback.status, fallback.reason) == ("False", "SelfFallback")
    assert fallback.message.startswith("spec.config.models[0]: the fallback models include the model itself")
    limit = ev.middlewares["limit-b"].condition(CONFIG_VALID)
    assert (
        limit is not None and limit.reason == "DuplicateCounter" and limit.message.startswith("spec.type: ")
    )
    message = ev.models["main"].condition("Ready").message  # type: ignore[union-attr]
    assert "fallback (SelfFallback), limit-b (DuplicateCounter)" in message
