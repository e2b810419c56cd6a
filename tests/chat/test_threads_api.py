"""``GET /api/threads``: each caller's own conversations, newest first, titled by their first message, in
Redis and in memory; deleting one takes it off the list; and the history of a thread keeps, per reply, the
model that answered and its tokens.

The chat service is the real app on 127.0.0.1 with auth on (two callers), the scripted fake LLM behind it.
Caller names are unique per test, since the session's Redis is shared by every test.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from chat_service.app import create_app
from chat_service.thread_index import (
    MAX_THREADS_PER_CALLER,
    REDIS_KEY_PREFIX,
    TITLE_LENGTH,
    MemoryThreadIndex,
    RedisThreadIndex,
)
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    model_entry,
    running,
    settings_for,
    write_config,
)


@dataclass
class Callers:
    app: RunningApp
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    alice_name: str


@pytest.fixture(params=["memory", "redis"])
async def callers(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_fake_llm: FakeLLM
) -> AsyncIterator[Callers]:
    suffix = uuid.uuid4().hex[:8]
    alice_name, bob_name = f"alice-{suffix}", f"bob-{suffix}"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{alice_name}:tok-alice-{suffix}\n{bob_name}:tok-bob-{suffix}\n")
    path = tmp_path / "agent-config.json"
    write_config(path, agent_config([model_entry("main", fresh_fake_llm.base_url)]))
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    settings = settings_for(path, auth_tokens_file=tokens, redis_url=redis_url)
    async with running(create_app(settings)) as app:
        assert app.services.thread_index.backend == request.param
        async with app.client(f"tok-alice-{suffix}") as alice, app.client(f"tok-bob-{suffix}") as bob:
            yield Callers(app, alice, bob, alice_name)


async def say(client: httpx.AsyncClient, message: str, thread_id: str | None = None) -> str:
    body: dict[str, Any] = {"message": message}
    if thread_id:
        body["thread_id"] = thread_id
    response = await client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    thread: str = response.json()["thread_id"]
    return thread


async def listed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/threads")
    assert response.status_code == 200, response.text
    threads: list[dict[str, Any]] = response.json()["threads"]
    return threads


async def test_each_caller_lists_only_their_own_threads_newest_first(callers: Callers) -> None:
    first = await say(callers.alice, "How are the pods in default?")
    bobs = await say(callers.bob, "Bob's own question")
    second = await say(callers.alice, "Which nodes are cordoned?")
    assert [t["id"] for t in await listed(callers.alice)] == [second, first]

    # A later turn in the first thread moves it to the top; its title stays its first message.
    await say(callers.alice, "and in kube-system?", first)
    threads = await listed(callers.alice)
    assert [(t["id"], t["title"]) for t in threads] == [
        (first, "How are the pods in default?"),
        (second, "Which nodes are cordoned?"),
    ]
    newest, older = (datetime.datetime.fromisoformat(t["updatedAt"]) for t in threads)
    assert newest >= older and newest.tzinfo is not None

    assert [(t["id"], t["title"]) for t in await listed(callers.bob)] == [(bobs, "Bob's own question")]


async def test_deleting_a_thread_takes_it_off_the_list(callers: Callers) -> None:
    first = await say(callers.alice, "first")
    second = await say(callers.alice, "second")
    bobs = await say(callers.bob, "bob's")

    # Bob cannot delete Alice's thread, even knowing its id; her list is untouched.
    assert (await callers.bob.delete(f"/api/threads/{first}")).status_code == 404
    assert [t["id"] for t in await listed(callers.alice)] == [second, first]

    assert (await callers.alice.delete(f"/api/threads/{first}")).status_code == 204
    assert [t["id"] for t in await listed(callers.alice)] == [second]
    assert (await callers.alice.get(f"/api/threads/{first}")).status_code == 404
    assert [t["id"] for t in await listed(callers.bob)] == [bobs]


async def test_streamed_turns_are_listed_and_failed_ones_are_not(
    callers: Callers, fresh_fake_llm: FakeLLM
) -> None:
    async with callers.alice.stream("POST", "/api/chat/stream", json={"message": "streamed one"}) as response:
        assert response.status_code == 200
        body = (await response.aread()).decode()
    assert "event: done" in body
    assert [t["title"] for t in await listed(callers.alice)] == ["streamed one"]

    fresh_fake_llm.enqueue(Reply.error(400, "the model refuses"))
    failed = await callers.alice.post("/api/chat", json={"message": "this turn fails"})
    assert failed.status_code == 502
    assert [t["title"] for t in await listed(callers.alice)] == ["streamed one"]


async def test_a_thread_is_listed_while_the_model_answers_and_stays_once_the_turn_is_done(
    callers: Callers, fresh_fake_llm: FakeLLM
) -> None:
    """The list is written while the model works, not after it: by the time the reply is back there is
    nothing left to wait for."""
    gate = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(gate))
    turn = asyncio.create_task(
        callers.alice.post("/api/chat", json={"message": "slow one", "thread_id": "s1"})
    )
    try:
        await eventually(
            lambda: _listed_ids(callers.alice), "the thread listed while its model call is in flight", 30
        )
        assert not turn.done()
    finally:
        gate.set()
    answered = await turn
    assert answered.status_code == 200, answered.text
    assert [(t["id"], t["title"]) for t in await listed(callers.alice)] == [("s1", "slow one")]


async def _listed_ids(client: httpx.AsyncClient) -> list[str]:
    return [t["id"] for t in await listed(client)]


async def test_a_failed_turn_leaves_the_list_as_it_was(callers: Callers, fresh_fake_llm: FakeLLM) -> None:
    first = await say(callers.alice, "first question")
    await say(callers.alice, "second question")
    before = await listed(callers.alice)

    fresh_fake_llm.enqueue(Reply.error(400, "the model refuses"))
    failed = await callers.alice.post("/api/chat", json={"message": "fails", "thread_id": first})
    assert failed.status_code == 502
    fresh_fake_llm.enqueue(Reply.error(400, "the model refuses"))
    new = await callers.alice.post("/api/chat", json={"message": "fails too", "thread_id": "never-listed"})
    assert new.status_code == 502
    # The first thread is not moved to the top, nor its time changed; the new one is not there.
    assert await listed(callers.alice) == before


async def test_a_turn_cut_off_by_the_client_leaves_the_list_as_it_was(
    callers: Callers, fresh_fake_llm: FakeLLM
) -> None:
    gate = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(gate))
    try:
        async with callers.alice.stream(
            "POST", "/api/chat/stream", json={"message": "cut off", "thread_id": "cut"}
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: start"):
                    break
            await eventually(lambda: _listed_ids(callers.alice), "listed while the model answers", 30)
        # The client has gone: the turn is cancelled and its entry taken back.
        await eventually(lambda: _not_listed(callers.alice), "the entry of the cancelled turn withdrawn", 30)
    finally:
        gate.set()


async def _not_listed(client: httpx.AsyncClient) -> bool:
    return await _listed_ids(client) == []


async def test_titles_are_the_first_message_on_one_line_truncated(callers: Callers) -> None:
    message = "Why does\n\nthe deployment   web " + "x" * 200
    await say(callers.alice, message)
    (entry,) = await listed(callers.alice)
    title = entry["title"]
    assert title.startswith("Why does the deployment web xxx") and title.endswith("…")
    assert len(title) == TITLE_LENGTH and "\n" not in title


async def test_a_message_that_looks_like_a_script_is_stored_and_listed_as_text(
    callers: Callers, fresh_fake_llm: FakeLLM
) -> None:
    """What a chat user writes reaches the Redis scripts (the list's title, the checkpoint) as values only."""
    message = "') redis.call('FLUSHALL') -- ]] \\x00 %s {{ \u202e \U0001f4a5 " + "é" * 40
    fresh_fake_llm.enqueue(Reply.text("noted"))
    thread = await say(callers.alice, message)
    second = await say(callers.alice, "and a second thread")
    assert [t["id"] for t in await listed(callers.alice)] == [second, thread]  # nothing flushed
    (entry,) = [t for t in await listed(callers.alice) if t["id"] == thread]
    assert entry["title"].startswith("') redis.call('FLUSHALL') -- ]]")
    view = (await callers.alice.get(f"/api/threads/{thread}")).json()
    assert view["messages"][0] == {"role": "user", "content": message}


async def test_list_needs_a_token(callers: Callers) -> None:
    async with httpx.AsyncClient(base_url=callers.app.url) as anonymous:
        assert (await anonymous.get("/api/threads")).status_code == 401


async def test_history_keeps_model_and_tokens_per_reply(callers: Callers, fresh_fake_llm: FakeLLM) -> None:
    fresh_fake_llm.enqueue(Reply.text("All pods are running.", usage=(31, 7)))
    thread = await say(callers.alice, "How are the pods?")
    view = (await callers.alice.get(f"/api/threads/{thread}")).json()
    user, reply = view["messages"]
    assert user == {"role": "user", "content": "How are the pods?"}
    assert reply["name"] == "main"  # the LLMModel that answered
    assert reply["model"] == "main"  # the provider's model (model_entry names it after the entry)
    assert reply["usage"] == {"input_tokens": 31, "output_tokens": 7}


# ------------------------------------------------------------------------------------------- the index itself


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def index_and_clock(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Clock, Any]]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryThreadIndex(60, clock=clock), clock, None
        return
    client = aioredis.from_url(request.getfixturevalue("redis_server").url)
    prefix = f"{REDIS_KEY_PREFIX}-test-{uuid.uuid4().hex[:8]}"
    try:
        yield RedisThreadIndex(client, 60, prefix=prefix, clock=clock), clock, client
    finally:
        await client.aclose()


async def test_an_entry_expires_with_the_conversation_ttl(index_and_clock: tuple[Any, Clock, Any]) -> None:
    index, clock, client = index_and_clock
    await index.record("carol", "old", "old question")
    clock.now += 40
    await index.record("carol", "recent", "recent question")
    assert [e.thread_id for e in await index.threads("carol")] == ["recent", "old"]
    clock.now += 30  # "old" is 70 s without a turn: past the 60 s TTL, like its conversation
    assert [e.thread_id for e in await index.threads("carol")] == ["recent"]
    if client is not None:
        order, titles = index._keys("carol")
        assert 0 < await client.ttl(order) <= 60 and 0 < await client.ttl(titles) <= 60
        await index.record("carol", "recent", "ignored: not the first message")
        assert await client.zrange(order, 0, -1) == [b"recent"]  # the expired entry is gone
        assert await client.hgetall(titles) == {b"recent": b"recent question"}


async def test_a_caller_keeps_only_the_newest_threads(index_and_clock: tuple[Any, Clock, Any]) -> None:
    index, clock, _ = index_and_clock
    for number in range(MAX_THREADS_PER_CALLER + 3):
        clock.now += 0.01
        await index.record("dave", f"t{number}", f"question {number}")
    entries = await index.threads("dave")
    assert len(entries) == MAX_THREADS_PER_CALLER
    assert entries[0].thread_id == f"t{MAX_THREADS_PER_CALLER + 2}" and entries[-1].thread_id == "t3"


async def test_a_failed_turn_takes_back_only_its_own_entry(index_and_clock: tuple[Any, Clock, Any]) -> None:
    index, clock, client = index_and_clock
    await index.record("erin", "older", "older question")
    clock.now += 1
    await index.record("erin", "kept", "kept question")
    clock.now += 1

    # A failed turn of a new thread: neither the entry nor its title stays.
    failed_new = await index.begin("erin", "new", "new question")
    assert (await index.threads("erin"))[0].thread_id == "new"
    await failed_new.withdraw()
    assert [(e.thread_id, e.updated_at) for e in await index.threads("erin")] == [
        ("kept", clock.now - 1),
        ("older", clock.now - 2),
    ]
    # A failed turn of a listed thread: back to its old time and place.
    failed_old = await index.begin("erin", "older", "ignored")
    await failed_old.withdraw()
    assert [(e.thread_id, e.updated_at) for e in await index.threads("erin")] == [
        ("kept", clock.now - 1),
        ("older", clock.now - 2),
    ]
    # Two turns of one thread, the first fails after the second has started: the second's entry stays.
    clock.now += 1
    first = await index.begin("erin", "busy", "busy question")
    clock.now += 1
    await index.begin("erin", "busy", "busy again")
    await first.withdraw()
    newest = (await index.threads("erin"))[0]
    assert (newest.thread_id, newest.title, newest.updated_at) == ("busy", "busy question", clock.now)
    if client is not None:
        _, titles = index._keys("erin")
        assert await client.hget(titles, "new") is None


async def test_a_failed_turn_on_a_full_list_gives_back_the_place_it_took(
    index_and_clock: tuple[Any, Clock, Any],
) -> None:
    index, clock, _ = index_and_clock
    for number in range(MAX_THREADS_PER_CALLER):
        clock.now += 0.01
        await index.record("fay", f"t{number}", f"question {number}")
    before = await index.threads("fay")
    clock.now += 0.01
    pending = await index.begin("fay", "new", "new question")
    during = await index.threads("fay")
    assert len(during) == MAX_THREADS_PER_CALLER and during[0].thread_id == "new"
    assert during[-1].thread_id == "t1"  # the oldest makes room while the turn runs
    await pending.withdraw()
    assert await index.threads("fay") == before
