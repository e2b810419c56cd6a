"""Conversations in a real Redis: the saver passes LangGraph's conformance suite, a conversation goes on in
another service instance, the TTL slides with each turn and then expires it, and a dead Redis shows."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from langgraph.checkpoint.conformance import checkpointer_test, validate

from chat_service.app import create_app
from chat_service.conversations import REDIS_KEY_PREFIX, SlidingTTLRedisSaver
from tests.harness.fake_llm import FakeLLM
from tests.harness.ports import free_port
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config


async def test_checkpoint_conformance_of_our_redis_saver(redis_server: Any) -> None:
    prefix = f"conformance-{uuid.uuid4().hex[:8]}"

    @checkpointer_test(name="SlidingTTLRedisSaver")
    async def factory() -> Any:
        saver = SlidingTTLRedisSaver(
            url=redis_server.url, prefix=f"{prefix}-{uuid.uuid4().hex[:6]}", ttl=3600
        )
        try:
            yield saver
        finally:
            await saver.aclose()

    report = await validate(factory)
    assert report.passed_all_base(), report.to_dict()


def _config_file(tmp_path: Path, fake_llm: FakeLLM) -> Path:
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fake_llm.base_url)]))
    return path


def _user_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["json"]["messages"] if m["role"] in ("user", "assistant")]


async def test_conversation_continues_on_another_instance(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM
) -> None:
    path = _config_file(tmp_path, fresh_fake_llm)
    settings = settings_for(path, redis_url=redis_server.url)
    thread = f"replicas-{uuid.uuid4().hex[:8]}"
    async with running(create_app(settings)) as first, running(create_app(settings)) as second:
        async with first.client() as client:
            assert (
                await client.post("/api/chat", json={"message": "remember 42", "thread_id": thread})
            ).status_code == 200
        async with second.client() as client:
            reply = await client.post("/api/chat", json={"message": "what number?", "thread_id": thread})
            assert reply.status_code == 200
            view = (await client.get(f"/api/threads/{thread}")).json()
        assert _user_texts(fresh_fake_llm.chat_requests[-1]) == [
            "remember 42",
            "echo: remember 42",
            "what number?",
        ]
        assert [m["content"] for m in view["messages"]] == [
            "remember 42",
            "echo: remember 42",
            "what number?",
            "echo: what number?",
        ]
        # Deleted on one instance, gone on the other.
        async with first.client() as client:
            assert (await client.delete(f"/api/threads/{thread}")).status_code == 204
        async with second.client() as client:
            assert (await client.get(f"/api/threads/{thread}")).status_code == 404
        status = (await first.client().get("/api/status")).json()
        assert status["conversation_store"] == "redis"


async def _exists(client: Any, thread: str) -> bool:
    response = await client.get(f"/api/threads/{thread}")
    assert response.status_code in (200, 404)
    return response.status_code == 200


async def test_session_ttl_slides_with_each_turn_then_expires(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM
) -> None:
    ttl = 4
    path = _config_file(tmp_path, fresh_fake_llm)
    settings = settings_for(path, redis_url=redis_server.url, session_ttl_seconds=ttl)
    thread = f"ttl-{uuid.uuid4().hex[:8]}"
    redis = aioredis.from_url(redis_server.url)
    async with running(create_app(settings)) as app, app.client() as client:
        await client.post("/api/chat", json={"message": "one", "thread_id": thread})
        keys = [k async for k in redis.scan_iter(match=f"{REDIS_KEY_PREFIX}:*:anonymous:{thread}:*")]
        assert keys, "the conversation is stored in Redis"
        ttls = [await redis.pttl(k) for k in keys]
        assert all(0 < t <= ttl * 1000 for t in ttls), "every key of the thread has the TTL"
        await asyncio.sleep(ttl * 0.6)
        await client.post("/api/chat", json={"message": "two", "thread_id": thread})
        await asyncio.sleep(ttl * 0.6)
        # Longer than the TTL since the first turn, shorter since the second: still there, whole.
        view = (await client.get(f"/api/threads/{thread}")).json()
        assert [m["content"] for m in view["messages"]] == ["one", "echo: one", "two", "echo: two"]
        for _ in range(100):
            if not await _exists(client, thread):
                break
            await asyncio.sleep(0.1)
        assert not await _exists(client, thread), "the conversation expired after the TTL without a turn"
    await redis.aclose()


async def test_redis_down_makes_readyz_fail_and_turns_answer_503(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = _config_file(tmp_path, fresh_fake_llm)
    settings = settings_for(path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(create_app(settings)) as app, app.client() as client:
        ready = await client.get("/readyz")
        turn = await client.post("/api/chat", json={"message": "hi"})
        thread = await client.get("/api/threads/abc")
    assert ready.status_code == 503 and any("Redis" in r for r in ready.json()["reasons"])
    for response in (turn, thread):
        assert response.status_code == 503, response.text
        assert (
            response.json()["error"]["code"] == "not_ready" and "Redis" in response.json()["error"]["message"]
        )


@pytest.mark.parametrize("ttl", [2])
async def test_in_memory_conversations_expire_too(tmp_path: Path, fresh_fake_llm: FakeLLM, ttl: int) -> None:
    path = _config_file(tmp_path, fresh_fake_llm)
    async with (
        running(create_app(settings_for(path, session_ttl_seconds=ttl))) as app,
        app.client() as client,
    ):
        await client.post("/api/chat", json={"message": "one", "thread_id": "mem"})
        assert await _exists(client, "mem")
        for _ in range(100):
            if not await _exists(client, "mem"):
                break
            await asyncio.sleep(0.1)
        assert not await _exists(client, "mem")


async def test_ttl_of_channels_unchanged_since_an_earlier_turn_is_refreshed(redis_server: Any) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    ttl = 10
    saver = SlidingTTLRedisSaver(url=redis_server.url, prefix=f"slide-{uuid.uuid4().hex[:6]}", ttl=ttl)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    first = empty_checkpoint()
    first["channel_values"] = {"messages": ["a"], "settings": {"x": 1}}
    first["channel_versions"] = {"messages": "1", "settings": "1"}
    saved = await saver.aput(config, first, {}, {"messages": "1", "settings": "1"})
    blob = saver._key_blob("t", "", "settings", "1")
    await asyncio.sleep(2)
    second = empty_checkpoint()
    second["channel_values"] = {"messages": ["a", "b"], "settings": {"x": 1}}
    second["channel_versions"] = {"messages": "2", "settings": "1"}
    await saver.aput(saved, second, {}, {"messages": "2"})
    # "settings" was written 2 s ago and not since; the second checkpoint still uses it.
    assert await saver.client.pttl(blob) > (ttl - 1) * 1000
    latest = await saver.aget_tuple(config)
    assert latest is not None and latest.checkpoint["channel_values"]["settings"] == {"x": 1}
    await saver.aclose()


async def test_a_checkpoint_write_is_one_redis_command(redis_server: Any) -> None:
    """Each turn writes one checkpoint: its blobs, sequence number, index, registry entry and refreshed TTLs
    are one script (EVALSHA), not an INCR and a MULTI/EXEC pipeline of a dozen commands."""
    from langgraph.checkpoint.base import empty_checkpoint

    saver = SlidingTTLRedisSaver(url=redis_server.url, prefix=f"one-{uuid.uuid4().hex[:6]}", ttl=60)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    first = empty_checkpoint()
    first["channel_values"] = {"messages": ["a"], "settings": {"x": 1}}
    first["channel_versions"] = {"messages": "1", "settings": "1"}
    saved = await saver.aput(config, first, {}, {"messages": "1", "settings": "1"})
    second = empty_checkpoint()
    second["channel_values"] = {"messages": ["a", "b"], "settings": {"x": 1}}
    second["channel_versions"] = {"messages": "2", "settings": "1"}

    # What the client sends (a pipeline is one send however many commands it holds) ...
    sent: list[str] = []
    execute, pipeline = saver.client.execute_command, saver.client.pipeline

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await execute(*args, **options)

    def counted_pipeline(*args: Any, **options: Any) -> Any:
        sent.append("PIPELINE")
        return pipeline(*args, **options)

    saver.client.execute_command = counted
    saver.client.pipeline = counted_pipeline
    before = await _command_calls(saver.client)
    await saver.aput(saved, second, {}, {"messages": "2"})
    after = await _command_calls(saver.client)
    # ... and what Redis ran (commandstats also counts the commands a script calls).
    ran = {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}
    assert sent == ["INFO", "EVALSHA", "INFO"], sent
    assert ran.get("evalsha") == 1 and "multi" not in ran and "exec" not in ran, ran
    # Same order as the base saver: the second checkpoint is the latest, the first its parent.
    latest = await saver.aget_tuple(config)
    assert latest is not None and latest.checkpoint["id"] == second["id"]
    assert [t.checkpoint["id"] async for t in saver.alist(config)] == [second["id"], first["id"]]
    # A Redis that lost its scripts (a restart, a failover) is sent the script again.
    await saver.client.script_flush()
    third = empty_checkpoint()
    third["channel_versions"] = {"messages": "3", "settings": "1"}
    third["channel_values"] = {"messages": ["a", "b", "c"], "settings": {"x": 1}}
    await saver.aput(latest.config, third, {}, {"messages": "3"})
    assert (await saver.aget_tuple(config)).checkpoint["id"] == third["id"]  # type: ignore[union-attr]
    await saver.aclose()


async def _stored(redis: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (named without it): its value and whether it expires."""
    found: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=f"{prefix}:*"):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        else:
            value = {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}
        found[key.removeprefix(prefix)] = (
            kind,
            str(value).replace(prefix, "<prefix>"),
            await redis.ttl(key) > 0,
        )
    return found


@pytest.mark.parametrize("ttl", [60, None])
async def test_a_checkpoint_write_stores_what_the_base_saver_stores(
    redis_server: Any, ttl: int | None
) -> None:
    """Same keys, values and expiries as langgraph-checkpoint-plainredis's own ``aput`` (for a first write,
    where the sliding TTL has no unchanged blob to refresh), with and without a TTL."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph_checkpoint_plainredis import AsyncRedisSaver

    ours_prefix, base_prefix = f"ours-{uuid.uuid4().hex[:6]}", f"base-{uuid.uuid4().hex[:6]}"
    ours = SlidingTTLRedisSaver(url=redis_server.url, prefix=ours_prefix, ttl=ttl)
    base = AsyncRedisSaver(url=redis_server.url, prefix=base_prefix, ttl=ttl)
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": ["a", "b"], "settings": {"x": 1}}
    checkpoint["channel_versions"] = {"messages": "1", "settings": "1", "cleared": "1"}
    config: Any = {"configurable": {"thread_id": "user:t", "checkpoint_ns": ""}}
    for saver in (ours, base):
        saved = await saver.aput(config, checkpoint, {"step": 1}, dict(checkpoint["channel_versions"]))
        assert saved["configurable"]["checkpoint_id"] == checkpoint["id"]
    stored_ours, stored_base = (
        await _stored(ours.client, ours_prefix),
        await _stored(base.client, base_prefix),
    )
    assert stored_ours == stored_base
    assert len(stored_ours) == 7  # checkpoint, three blobs, index, registry, sequence
    await ours.aclose()
    await base.aclose()


async def _command_calls(redis: Any) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_a_new_conversation_is_not_read_from_redis_but_a_thread_id_a_client_sends_is(
    tmp_path: Path, redis_server: Any, fresh_fake_llm: FakeLLM
) -> None:
    """A thread id the server has just made cannot have a checkpoint: the turn does not look for one
    (the read of a thread's latest checkpoint starts with a ZREVRANGE of its index). A client's id is
    read, whether it exists or not, and the server's id is read once the client sends it back."""
    path = _config_file(tmp_path, fresh_fake_llm)
    redis = aioredis.from_url(redis_server.url)
    async with (
        running(create_app(settings_for(path, redis_url=redis_server.url))) as app,
        app.client() as client,
    ):

        async def reads_of(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            before = await _command_calls(redis)
            response = await client.post("/api/chat", json=body)
            assert response.status_code == 200, response.text
            return (await _command_calls(redis)).get("zrevrange", 0) - before.get(
                "zrevrange", 0
            ), response.json()

        reads, new = await reads_of({"message": "remember 7"})
        assert reads == 0
        reads, _ = await reads_of({"message": "what number?", "thread_id": new["thread_id"]})
        assert reads == 1
        assert _user_texts(fresh_fake_llm.chat_requests[-1]) == [
            "remember 7",
            "echo: remember 7",
            "what number?",
        ]

        unknown = f"client-{uuid.uuid4().hex[:8]}"
        reads, _ = await reads_of({"message": "hello", "thread_id": unknown})
        assert reads == 1
        view = (await client.get(f"/api/threads/{unknown}")).json()
        assert [m["content"] for m in view["messages"]] == ["hello", "echo: hello"]
    await redis.aclose()


async def test_reading_a_conversation_is_two_round_trips(redis_server: Any) -> None:
    """The checkpoint with its pending writes is one script, the channel blobs it names one MGET: not the
    index, the checkpoint, the blobs and the writes one after another."""
    from langgraph.checkpoint.base import empty_checkpoint

    saver = SlidingTTLRedisSaver(url=redis_server.url, prefix=f"read-{uuid.uuid4().hex[:6]}", ttl=60)
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": ["a", "b"], "settings": {"x": 1}}
    checkpoint["channel_versions"] = {"messages": "1", "settings": "1"}
    saved = await saver.aput(config, checkpoint, {"step": 1}, {"messages": "1", "settings": "1"})
    await saver.aput_writes(saved, [("messages", "c")], task_id="task-1")

    await saver.aget_tuple(config)  # the first read on a Redis that has not seen the script loads it
    sent: list[str] = []
    execute = saver.client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await execute(*args, **options)

    saver.client.execute_command = counted
    latest = await saver.aget_tuple(config)
    assert sent == ["EVALSHA", "MGET"], sent
    assert latest is not None and latest.checkpoint["id"] == checkpoint["id"]
    assert latest.checkpoint["channel_values"] == {"messages": ["a", "b"], "settings": {"x": 1}}
    assert latest.pending_writes == [("task-1", "messages", "c")]
    assert latest.metadata["step"] == 1
    await saver.aclose()
