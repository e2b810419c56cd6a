"""How the usage ledger is written: a replica's calls are batched into one Redis write per interval, kept
through a Redis outage and written once it is back, counted by budgets and ``GET /api/usage`` before they
are written, and written at shutdown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from ai_ops_api.agent_config import AgentConfig
from chat_service.metrics import ChatMetrics
from chat_service.usage.ledger import MemoryLedger, RedisLedger, day_key, field
from chat_service.usage.pricing import TokenCounts
from chat_service.usage.recorder import MODEL_METADATA_KEY, UsageRecorder
from chat_service.usage.summary import Totals, caller_totals, grouped
from tests.chat.test_usage import ALICE, _app, _conversation
from tests.harness.fake_llm import FakeLLM
from tests.harness.redis_server import RedisServer
from tests.harness.waiting import eventually
from tests.support.chat_support import running

NEVER = 3600.0  # a flush interval no test outlives: only settled() and shutdown write the ledger
CALLS = field("m", "alice", "main", "chat", "calls")


def _command_calls(url: str, *commands: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands}


def _ledger_today(url: str, namespace: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        values = client.hgetall(day_key(namespace, dt.datetime.now(dt.UTC).date()))
    finally:
        client.close()
    return {k: int(v) for k, v in values.items()}


async def test_many_calls_are_one_ledger_write_and_are_read_before_it(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    app, namespace = await _app(tmp_path, "batched", redis_server.url, fresh_fake_llm, mcp_fixture_servers)
    async with running(app) as server:
        recorder = server.services.usage
        recorder.flush_interval = NEVER
        before = _command_calls(redis_server.url, "hincrby", "expireat")
        async with server.client(ALICE) as client:
            for _ in range(5):  # each turn: two model calls and a tool call
                fresh_fake_llm.enqueue(*_conversation())
                assert (await client.post("/api/chat", json={"message": "2 + 40?"})).status_code == 200
            # Nothing written yet, and /api/usage already counts every call of this replica.
            assert _ledger_today(redis_server.url, namespace) == {}
            row = (await client.get("/api/usage", params={"group_by": "model"})).json()["rows"][0]
            assert (row["model_calls"], row["input_tokens"], row["output_tokens"]) == (10, 5 * 270, 5 * 16)
            await recorder.settled()
            written = _ledger_today(redis_server.url, namespace)
            # Read again after the write: the same counts, nothing twice.
            again = (await client.get("/api/usage", params={"group_by": "model"})).json()["rows"][0]
        assert again == row
    after = _command_calls(redis_server.url, "hincrby", "expireat")
    assert written[CALLS] == 10 and written[field("t", "alice", "fx", "add", "calls")] == 5
    # 15 calls: one write (one EXPIREAT), one HINCRBY per distinct counter, not one per call.
    assert after["expireat"] - before["expireat"] == 1
    assert after["hincrby"] - before["hincrby"] == len([v for v in written.values() if v])


async def test_a_budget_counts_the_calls_not_yet_written(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    # Each turn is 270 + 16 tokens: two turns reach a 500-token budget, the third is refused.
    app, namespace = await _app(
        tmp_path,
        "budget-pending",
        redis_server.url,
        fresh_fake_llm,
        mcp_fixture_servers,
        caller_daily_budget="tokens=500",
    )
    async with running(app) as server:
        server.services.usage.flush_interval = NEVER
        statuses = []
        async with server.client(ALICE) as client:
            for _ in range(3):
                fresh_fake_llm.enqueue(*_conversation())
                statuses.append((await client.post("/api/chat", json={"message": "sum?"})).status_code)
            assert _ledger_today(redis_server.url, namespace) == {}  # the budget saw only pending deltas
    assert statuses == [200, 200, 429]


async def test_shutdown_writes_the_pending_usage(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM, mcp_fixture_servers: Any
) -> None:
    app, namespace = await _app(tmp_path, "shutdown", redis_server.url, fresh_fake_llm, mcp_fixture_servers)
    async with running(app) as server:
        server.services.usage.flush_interval = NEVER
        async with server.client(ALICE) as client:
            for _ in range(2):
                fresh_fake_llm.enqueue(*_conversation())
                assert (await client.post("/api/chat", json={"message": "2 + 40?"})).status_code == 200
        assert _ledger_today(redis_server.url, namespace) == {}
    assert _ledger_today(redis_server.url, namespace)[CALLS] == 4


async def test_usage_pending_during_a_redis_outage_is_written_once_it_is_back() -> None:
    own_redis = RedisServer()
    own_redis.start()
    port = own_redis.port
    client = redis.asyncio.Redis.from_url(own_redis.url, socket_timeout=2, socket_connect_timeout=0.5)
    config = AgentConfig(namespace="outage")
    recorder = UsageRecorder(
        metrics=ChatMetrics(),
        ledger=RedisLedger(client, retention_days=7),
        config=lambda: config,
        known_callers=lambda: {"alice"},
        flush_interval=0.05,
    )
    metadata = {MODEL_METADATA_KEY: "main", "ai_ops_caller": "alice"}
    try:
        recorder.model_call(metadata, TokenCounts(input=10, output=2))
        await eventually(lambda: _ledger_today(own_redis.url, "outage").get(CALLS) == 1, "first write")
        own_redis.kill()  # Redis down (and, without persistence, empty when it comes back)
        for _ in range(500):
            recorder.model_call(metadata, TokenCounts(input=10, output=2))
        recorder.tool_call({"ai_ops_caller": "alice", "ai_ops_server": "fx"}, "add", False, 0.25)
        assert not await recorder.flush()  # the write fails; the deltas are kept...
        kept = recorder.pending_counters
        for _ in range(500):
            recorder.model_call(metadata, TokenCounts(input=10, output=2))
        assert not await recorder.flush()
        # ...merged: one counter per distinct field (in, out, calls; tool calls, errors, ms), however
        # many calls and failed attempts.
        assert recorder.pending_counters == kept == 6
        own_redis.start(port=port)  # Redis is back where the recorder points

        def written() -> dict[str, int] | None:
            values = _ledger_today(own_redis.url, "outage")
            return values if values.get(CALLS) == 1000 else None

        values = await eventually(written, "the kept deltas written by the flusher", timeout=30)
        assert values[field("m", "alice", "main", "chat", "in")] == 10_000
        assert values[field("t", "alice", "fx", "add", "errors")] == 1
        assert values[field("t", "alice", "fx", "add", "ms")] == 250
        assert recorder.pending_counters == 0
    finally:
        await recorder.aclose()
        await client.aclose()
        own_redis.stop()


async def test_hostile_tool_and_server_names_cannot_forge_another_callers_usage() -> None:
    """An MCP server chooses its own tool names (and a CR author the server's): the separator and the
    escape character in them stay part of the name, so nothing lands on bob's counters or a model's."""
    recorder = UsageRecorder(
        metrics=ChatMetrics(),
        ledger=MemoryLedger(retention_days=7),
        config=lambda: AgentConfig(namespace="hostile"),
        known_callers=lambda: {"alice", "bob"},
    )
    server, tool = "fx|t|bob|x", "add|calls%7C|m|bob|main|chat|in"
    recorder.tool_call({"ai_ops_caller": "alice", "ai_ops_server": server}, tool, False, 0.25)
    recorder.model_call({MODEL_METADATA_KEY: "main|x%25", "ai_ops_caller": "alice"}, TokenCounts(5, 1))
    today = dt.datetime.now(dt.UTC).date()
    days = await recorder.read_days("hostile", [today])
    assert caller_totals(days[today], "bob") == Totals()
    assert set(grouped(days, "caller", None)) == {"alice"}
    tools = grouped(days, "tool", None)
    assert set(tools) == {f"{server}/{tool}"}
    assert (tools[f"{server}/{tool}"].tool_calls, tools[f"{server}/{tool}"].tool_errors) == (1, 1)
    models = grouped(days, "model", None)
    assert set(models) == {"main|x%25"} and models["main|x%25"].input_tokens == 5
    await recorder.aclose()
