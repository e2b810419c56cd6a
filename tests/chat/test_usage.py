"""Usage accounting end to end: the same conversation streamed (SSE) and plain (JSON) is counted the same
in the ledger (Redis), the metrics and /api/usage, and a daily budget stops both at the same turn."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ai_ops_api.agent_config import BudgetEntry, MiddlewareEntry, ModelEntry, PricingEntry
from ai_ops_api.investigations import InvestigationStatus
from chat_service import cli
from chat_service.app import create_app
from chat_service.settings import SettingsError, load_settings
from chat_service.usage.ledger import MemoryLedger, day_key, field
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import (
    agent_config,
    mcp_server,
    model_entry,
    read_sse,
    running,
    settings_for,
    write_config,
)

ALICE, BOB, CAROL = "alice-usage-token", "bob-usage-token", "carol-usage-token"
PRICING = PricingEntry(
    input_per_million_tokens=Decimal("2.5"),
    output_per_million_tokens=Decimal("10"),
    cached_input_per_million_tokens=Decimal("1.25"),
)


def _conversation() -> list[Reply]:
    """One turn: a tool call, then the answer (with cached prompt tokens); fixed provider usage."""
    return [
        Reply.tool_call("add", {"a": 2, "b": 40}, usage=(120, 7)),
        Reply.text("The sum is 42.", usage=(150, 9), cached_tokens=100),
    ]


def _metrics(text: str, namespace: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name.endswith("_total")
                and sample.name.startswith(("ai_ops_llm_", "ai_ops_tool_calls"))
                and (sample.labels.get("namespace") == namespace)
            ):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "namespace"))
                found[(sample.name, labels)] = sample.value
    return found


def _without_latency(view: dict[str, Any]) -> dict[str, Any]:
    """Tool latency is the one number that differs between two runs of one conversation."""
    for row in [*view["rows"], view["total"]]:
        row.pop("tool_seconds")
    return view


async def _app(
    tmp_path: Path,
    name: str,
    redis_url: str | None,
    llm: FakeLLM,
    mcp: Any,
    models: tuple[ModelEntry, ...] = (),
    **settings: Any,
) -> Any:
    """The app with auth (alice, bob, carol), the priced model ``main`` (or ``models``) and the fixture
    MCP server; Redis at ``redis_url``, else conversations and the ledger in memory."""
    root = tmp_path / name
    root.mkdir()
    tokens = root / "tokens"
    tokens.write_text(f"alice:{ALICE}\nbob:{BOB}\ncarol:{CAROL}\n")
    namespace = f"usage-{name}-{uuid.uuid4().hex[:6]}"
    main = model_entry("main", llm.base_url, default=True).model_copy(update={"pricing": PRICING})
    config = agent_config(models or [main], [mcp_server("fx", mcp.healthy.url)], namespace=namespace)
    write_config(root / "agent-config.json", config)
    app = create_app(
        settings_for(root / "agent-config.json", redis_url=redis_url, auth_tokens_file=tokens, **settings)
    )
    return app, namespace


@pytest.fixture
async def two_apps(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> AsyncIterator[tuple[Any, Any]]:
    plain, plain_ns = await _app(tmp_path, "plain", redis_server.url, fresh_fake_llm, mcp_fixture_servers)
    streamed, streamed_ns = await _app(
        tmp_path, "streamed", redis_server.url, fresh_fake_llm, mcp_fixture_servers
    )
    async with running(plain) as a, running(streamed) as b:
        a.namespace, b.namespace = plain_ns, streamed_ns
        yield a, b


async def test_streamed_and_plain_turns_are_counted_the_same(
    two_apps: tuple[Any, Any], fresh_fake_llm: FakeLLM
) -> None:
    plain, streamed = two_apps
    async with plain.client(ALICE) as client:
        for _ in range(2):
            fresh_fake_llm.enqueue(*_conversation())
            response = await client.post("/api/chat", json={"message": "what is 2 + 40?"})
            assert response.status_code == 200, response.text
    async with streamed.client(ALICE) as client:
        for _ in range(2):
            fresh_fake_llm.enqueue(*_conversation())
            async with client.stream("POST", "/api/chat/stream", json={"message": "what is 2 + 40?"}) as r:
                assert r.status_code == 200
                events = await read_sse(r)
            assert events[-1][0] == "done", events
    # The streamed requests asked for the usage chunk (else a stream would count nothing).
    assert all(
        r["json"].get("stream_options", {}).get("include_usage") for r in fresh_fake_llm.chat_requests[4:]
    )

    views = {}
    for app in (plain, streamed):
        async with app.client(ALICE) as client:
            for group in ("model", "caller", "tool", "day"):
                response = await client.get("/api/usage", params={"group_by": group})
                assert response.status_code == 200, response.text
                views[(app.namespace, group)] = _without_latency(response.json())
            metrics = (await client.get("/metrics")).text
        views[(app.namespace, "metrics")] = _metrics(metrics, app.namespace)

    for group in ("model", "caller", "tool", "day", "metrics"):
        assert views[(plain.namespace, group)] == views[(streamed.namespace, group)], group

    model_row = views[(plain.namespace, "model")]["rows"][0]
    assert model_row["key"] == "main"
    assert (model_row["input_tokens"], model_row["output_tokens"]) == (2 * 270, 2 * 16)
    assert model_row["cached_tokens"] == 200 and model_row["model_calls"] == 4
    assert model_row["estimated_calls"] == 0
    # Exact decimals: per turn 170 input at 2.5, 100 cached at 1.25, 16 output at 10 (per million).
    per_turn = (Decimal(170) * Decimal("2.5") + Decimal(100) * Decimal("1.25") + Decimal(16) * 10) / 10**6
    assert Decimal(model_row["cost"]["USD"]) == 2 * per_turn
    tool_row = views[(plain.namespace, "tool")]["rows"][0]
    assert (tool_row["key"], tool_row["tool_calls"], tool_row["tool_errors"]) == ("fx/add", 2, 0)
    metrics = views[(plain.namespace, "metrics")]
    assert metrics[("ai_ops_llm_tokens_total", (("kind", "input"), ("model", "main")))] == 540
    assert metrics[("ai_ops_llm_tokens_total", (("kind", "cached"), ("model", "main")))] == 200
    assert metrics[("ai_ops_llm_caller_tokens_total", (("caller", "alice"), ("kind", "output")))] == 32
    cost = metrics[("ai_ops_llm_cost_total", (("currency", "USD"), ("model", "main")))]
    assert cost == pytest.approx(float(2 * per_turn))
    assert metrics[("ai_ops_tool_calls_total", (("outcome", "ok"), ("server", "fx"), ("tool", "add")))] == 2


async def test_a_caller_sees_only_their_own_usage_and_bad_queries_are_400(
    two_apps: tuple[Any, Any], fresh_fake_llm: FakeLLM
) -> None:
    plain, _streamed = two_apps
    fresh_fake_llm.enqueue(Reply.text("hello", usage=(10, 2)))
    async with plain.client(ALICE) as client:
        assert (await client.post("/api/chat", json={"message": "hi"})).status_code == 200
    async with plain.client(BOB) as client:
        mine = (await client.get("/api/usage", params={"group_by": "caller"})).json()
        assert mine["scope"] == "bob" and mine["rows"] == []
        for params in (
            {"group_by": "planet"},
            {"from": "yesterday"},
            {"from": "2026-01-02", "to": "2026-01-01"},
            {"from": "2020-01-01", "to": "2026-01-01"},
        ):
            response = await client.get("/api/usage", params=params)
            assert response.status_code == 400, (params, response.text)
            assert response.json()["error"]["code"] == "invalid_request"


async def test_no_usage_from_the_provider_is_estimated_and_marked(
    two_apps: tuple[Any, Any], fresh_fake_llm: FakeLLM
) -> None:
    plain, _streamed = two_apps
    fresh_fake_llm.enqueue(Reply.text("x" * 40, omit_usage=True))
    async with plain.client(ALICE) as client:
        assert (await client.post("/api/chat", json={"message": "hi"})).status_code == 200
        row = (await client.get("/api/usage", params={"group_by": "model"})).json()["rows"][0]
    assert row["estimated_calls"] == 1 and row["output_tokens"] == 10 and row["input_tokens"] > 0


async def test_a_caller_budget_stops_plain_streamed_and_v1_turns_at_the_same_point(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    # Each turn is 270 + 16 tokens: two turns reach a 500-token budget, the third is refused.
    app, _ns = await _app(
        tmp_path,
        "budget",
        redis_server.url,
        fresh_fake_llm,
        mcp_fixture_servers,
        caller_daily_budget="alice:tokens=500;*:tokens=500",
    )
    async with running(app) as server:

        async def plain(client: Any) -> Any:
            return await client.post("/api/chat", json={"message": "sum?"})

        async def streamed(client: Any) -> Any:
            async with client.stream("POST", "/api/chat/stream", json={"message": "sum?"}) as r:
                await r.aread()
                return r

        async def v1(client: Any) -> Any:
            body = {"model": "main", "messages": [{"role": "user", "content": "sum?"}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                await r.aread()
                return r

        outcomes = {}
        for token, turn in ((ALICE, plain), (BOB, streamed), (CAROL, v1)):
            statuses = []
            async with server.client(token) as client:
                for _ in range(3):
                    fresh_fake_llm.enqueue(*_conversation())
                    response = await turn(client)
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        error = response.json()["error"]
                        assert error["code"] == "budget_exceeded"
                        assert "daily token budget of caller" in error["message"]
                        assert "resets at" in error["message"] and error["message"].endswith("T00:00:00Z")
                        assert int(response.headers["Retry-After"]) > 0
            outcomes[turn.__name__] = statuses
        assert outcomes == {"plain": [200, 200, 429], "streamed": [200, 200, 429], "v1": [200, 200, 429]}


@pytest.mark.parametrize("priced", [True, False], ids=["priced", "unpriced"])
async def test_an_investigation_status_carries_its_cost_when_the_model_has_pricing(
    tmp_path: Path, fresh_fake_llm: FakeLLM, priced: bool
) -> None:
    diagnosis = {
        "summary": "checkout-1 is OOMKilled",
        "rootCause": "memory limit too low",
        "confidence": "high",
        "evidence": [],
        "recommendations": [],
        "runbooksUsed": [],
    }
    answer = Reply.tool_call("diagnosis", diagnosis, usage=(1000, 200))
    fresh_fake_llm.enqueue(dataclasses.replace(answer, cached_tokens=400))
    model = model_entry("m", fresh_fake_llm.base_url, default=True)
    if priced:
        model = model.model_copy(update={"pricing": PRICING})
    write_config(tmp_path / "agent.json", agent_config([model]))
    async with running(create_app(settings_for(tmp_path / "agent.json"))) as chat, chat.client() as client:
        name = (await client.post("/api/investigations", json={"question": "why?"})).json()["name"]

        async def finished() -> dict[str, Any] | None:
            detail: dict[str, Any] = (await client.get(f"/api/investigations/{name}")).json()
            return None if detail["phase"] in ("Pending", "Running") else detail

        detail = await eventually(finished, "the investigation finished", timeout=60)
    usage = detail["status"]["usage"]
    assert detail["phase"] == "Diagnosed", detail
    assert (usage["input"], usage["output"], usage["total"]) == (1000, 200, 1200)
    InvestigationStatus.model_validate(detail["status"])  # what the CRD's status schema accepts
    if priced:
        # 600 input at 2.5, 400 cached at 1.25, 200 output at 10, per million tokens.
        expected = (Decimal(600) * Decimal("2.5") + Decimal(400) * Decimal("1.25") + 200 * 10) / 10**6
        assert (Decimal(usage["cost"]), usage["currency"]) == (expected, "USD")
    else:
        assert "cost" not in usage and "currency" not in usage


async def _turns(server: Any, llm: FakeLLM, turns: list[tuple[str, str]]) -> list[Any]:
    """(token, kind) turns of the usual conversation, kind plain, streamed, v1 or v1-streamed."""
    responses = []
    for token, kind in turns:
        llm.enqueue(*_conversation())
        async with server.client(token) as client:
            if kind == "plain":
                response = await client.post("/api/chat", json={"message": "sum?"})
            elif kind == "v1":
                body = {"model": "main", "messages": [{"role": "user", "content": "sum?"}]}
                response = await client.post("/v1/chat/completions", json=body)
            else:
                raise AssertionError(kind)
        responses.append(response)
    return responses


def _assert_budget_error(response: Any, which: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded" and which in error["message"], error
    assert int(response.headers["Retry-After"]) > 0


async def test_a_caller_budget_stops_non_streamed_v1_turns_like_the_others(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    app, _ns = await _app(
        tmp_path,
        "v1-budget",
        redis_server.url,
        fresh_fake_llm,
        mcp_fixture_servers,
        caller_daily_budget="tokens=500",
    )
    async with running(app) as server:
        first, second, third = await _turns(server, fresh_fake_llm, [(CAROL, "v1")] * 3)
        # Another caller's budget is their own: bob still gets an answer.
        (other,) = await _turns(server, fresh_fake_llm, [(BOB, "v1")])
    assert (first.status_code, second.status_code, other.status_code) == (200, 200, 200)
    assert first.json()["choices"][0]["message"]["content"] == "The sum is 42."
    _assert_budget_error(third, "the daily token budget of caller 'carol' (572/500 tokens)")


async def test_a_model_budget_counts_every_caller_together(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    # Each turn is 286 tokens: alice and bob use up the model's 500, carol's first turn is refused,
    # plain or /v1 alike; the other model, without a budget, still answers.
    main = model_entry("main", fresh_fake_llm.base_url, default=True).model_copy(
        update={"pricing": PRICING, "budget": BudgetEntry(tokens=500)}
    )
    spare = model_entry("spare", fresh_fake_llm.base_url)
    app, _ns = await _app(
        tmp_path, "model-budget", redis_server.url, fresh_fake_llm, mcp_fixture_servers, (main, spare)
    )
    async with running(app) as server:
        responses = await _turns(
            server, fresh_fake_llm, [(ALICE, "plain"), (BOB, "v1"), (CAROL, "plain"), (CAROL, "v1")]
        )
        fresh_fake_llm.enqueue(*_conversation())
        async with server.client(CAROL) as client:
            spare_turn = await client.post("/api/chat", json={"message": "sum?", "model": "spare"})
    assert [r.status_code for r in responses[:2]] == [200, 200]
    for refused in responses[2:]:
        _assert_budget_error(refused, "the daily token budget of model 'main' (572/500 tokens)")
    assert spare_turn.status_code == 200, spare_turn.text


async def test_a_model_cost_budget_stops_turns_once_the_cost_is_reached(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    # A turn costs 0.00071 USD (the first test): the second reaches 0.001, the third is refused.
    main = model_entry("main", fresh_fake_llm.base_url, default=True).model_copy(
        update={"pricing": PRICING, "budget": BudgetEntry(cost=Decimal("0.001"))}
    )
    app, _ns = await _app(tmp_path, "cost-budget", None, fresh_fake_llm, mcp_fixture_servers, (main,))
    async with running(app) as server:
        responses = await _turns(server, fresh_fake_llm, [(ALICE, "plain"), (BOB, "plain"), (CAROL, "plain")])
    assert [r.status_code for r in responses[:2]] == [200, 200]
    _assert_budget_error(responses[2], "the daily cost budget of model 'main' (0.00142/0.001 USD)")


async def test_without_redis_the_ledger_is_in_memory_and_answers_the_same(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    app, _ns = await _app(tmp_path, "memory", None, fresh_fake_llm, mcp_fixture_servers)
    async with running(app) as server:
        assert server.services.usage.ledger.backend == "memory"
        await _turns(server, fresh_fake_llm, [(ALICE, "plain"), (BOB, "plain")])
        async with server.client(ALICE) as client:
            by_caller = (await client.get("/api/usage", params={"group_by": "caller"})).json()
            by_tool = (await client.get("/api/usage", params={"group_by": "tool"})).json()
    # Not a viewer: alice sees her own turn only, as with Redis.
    assert by_caller["scope"] == "alice"
    [(key, row)] = [(r["key"], r) for r in by_caller["rows"]]
    assert key == "alice" and (row["input_tokens"], row["output_tokens"], row["model_calls"]) == (270, 16, 2)
    assert [(r["key"], r["tool_calls"]) for r in by_tool["rows"]] == [("fx/add", 1)]
    assert by_caller["total"]["cost"] == {"USD": "0.00071"}


async def test_the_memory_ledger_adds_up_and_drops_days_past_retention() -> None:
    ledger = MemoryLedger(retention_days=3)
    today = dt.datetime.now(dt.UTC).date()
    old, recent = today - dt.timedelta(days=4), today - dt.timedelta(days=3)
    name = field("m", "alice", "main", "chat", "in")
    await ledger.add("ns", old, {name: 5})
    await ledger.add("ns", recent, {name: 7})
    await ledger.add("ns", today, {name: 1})
    await ledger.add("ns", today, {name: 2, field("m", "alice", "main", "chat", "calls"): 1})
    await ledger.add("other", today, {name: 100})
    days = await ledger.days("ns", [old, recent, today])
    assert days == {
        old: {},
        recent: {name: 7},
        today: {name: 3, field("m", "alice", "main", "chat", "calls"): 1},
    }
    assert day_key("ns", today) != day_key("other", today)


async def test_summarization_calls_are_counted_as_summarization_under_their_own_model(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    summarize = MiddlewareEntry(
        name="summary",
        type="summarization",
        priority=50,
        critical=False,
        config={"model": "summarizer", "triggerTokens": None, "triggerMessages": 4, "keepMessages": 2},
    )
    main = model_entry(
        "main", fresh_fake_llm.base_url, model="main-llm", default=True, middleware=[summarize]
    )
    summarizer = model_entry("summarizer", fresh_fake_llm.base_url, model="sum-llm").model_copy(
        update={"pricing": PRICING}
    )
    app, namespace = await _app(
        tmp_path, "summarization", None, fresh_fake_llm, mcp_fixture_servers, (main, summarizer)
    )
    async with running(app) as server:
        thread = None
        async with server.client(ALICE) as client:
            for i, text in enumerate(("turn one", "turn two", "turn three")):
                fresh_fake_llm.enqueue(Reply.text(f"answer {i}", usage=(40, 4)), model="main-llm")
                if i == 2:
                    fresh_fake_llm.enqueue(Reply.text("SUMMARY", usage=(300, 30)), model="sum-llm")
                body = {"message": text, **({"thread_id": thread} if thread else {})}
                response = await client.post("/api/chat", json=body)
                assert response.status_code == 200, response.text
                thread = response.json()["thread_id"]
        recorder = server.services.usage
        await recorder.settled()
        today = dt.datetime.now(dt.UTC).date()
        values = (await recorder.ledger.days(namespace, [today]))[today]
    assert [r["json"]["model"] for r in fresh_fake_llm.chat_requests] == ["main-llm"] * 2 + [
        "sum-llm",
        "main-llm",
    ]
    calls = {name: value for name, value in values.items() if name.endswith("|calls") and name[0] == "m"}
    assert calls == {
        field("m", "alice", "main", "chat", "calls"): 3,
        field("m", "alice", "summarizer", "summarization", "calls"): 1,
    }
    assert values[field("m", "alice", "summarizer", "summarization", "in")] == 300
    assert values[field("m", "alice", "summarizer", "summarization", "cost:USD")] == 1_050_000  # 0.00105


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tokens=lots", "tokens must be a positive integer"),
        ("tokens=0", "tokens must be a positive integer"),
        ("cost=-1", "cost must be a positive number"),
        ("cost=abc", "cost must be a number"),
        ("tokens=5,currency=dollars", "currency must be an ISO 4217 code"),
        ("alice:tokens=5;alice:cost=1", "caller 'alice' has two budgets"),
        ("alice:", "expected tokens=N, cost=X and/or currency=CUR"),
        ("speed=fast", "expected tokens=N, cost=X and/or currency=CUR"),
        ("currency=EUR", "set tokens, cost or both"),
    ],
)
def test_a_bad_caller_budget_setting_is_a_clear_error_at_start_up(value: str, message: str) -> None:
    environ = {"AI_OPS_CONFIG": "/c.json", "AI_OPS_CALLER_DAILY_BUDGET": value}
    with pytest.raises(SettingsError, match="AI_OPS_CALLER_DAILY_BUDGET") as raised:
        load_settings({}, environ=environ)
    assert message in str(raised.value)


def test_a_good_caller_budget_setting_starts() -> None:
    environ = {
        "AI_OPS_CONFIG": "/c.json",
        "AI_OPS_CALLER_DAILY_BUDGET": "alice:tokens=1000;*:cost=5,currency=EUR",
    }
    assert load_settings({}, environ=environ).caller_daily_budget.startswith("alice:")


def test_ai_ops_chat_refuses_to_start_with_a_bad_caller_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.json"
    write_config(config, agent_config())
    monkeypatch.setenv("AI_OPS_CALLER_DAILY_BUDGET", "alice:tokens=many")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--config", str(config)])) == 2  # before any server starts
    err = capsys.readouterr().err
    assert "AI_OPS_CALLER_DAILY_BUDGET" in err and "tokens must be a positive integer" in err, err


async def test_a_fallback_models_call_is_counted_under_its_own_model_and_the_failed_call_not_at_all(
    tmp_path: Path, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    fallback = MiddlewareEntry(
        name="fallback", type="model_fallback", priority=10, config={"models": ["backup"]}
    )
    main = model_entry(
        "main", fresh_fake_llm.base_url, model="main-llm", default=True, middleware=[fallback]
    ).model_copy(update={"pricing": PRICING})
    backup = model_entry("backup", fresh_fake_llm.base_url, model="backup-llm")
    app, namespace = await _app(
        tmp_path, "fallback", None, fresh_fake_llm, mcp_fixture_servers, (main, backup)
    )
    fresh_fake_llm.enqueue(Reply.error(500), model="main-llm")
    fresh_fake_llm.enqueue(Reply.text("from backup", usage=(70, 5)), model="backup-llm")
    async with running(app) as server:
        async with server.client(ALICE) as client:
            response = await client.post("/api/chat", json={"message": "hello"})
            assert response.status_code == 200, response.text
            assert response.json()["reply"] == "from backup"
        recorder = server.services.usage
        await recorder.settled()
        today = dt.datetime.now(dt.UTC).date()
        values = (await recorder.ledger.days(namespace, [today]))[today]
    assert [r["json"]["model"] for r in fresh_fake_llm.chat_requests] == ["main-llm", "backup-llm"]
    models = {name: value for name, value in values.items() if name[0] == "m"}
    # The backup has no pricing: tokens without a cost; main answered nothing and counts nothing.
    assert models == {
        field("m", "alice", "backup", "chat", "in"): 70,
        field("m", "alice", "backup", "chat", "out"): 5,
        field("m", "alice", "backup", "chat", "calls"): 1,
    }
