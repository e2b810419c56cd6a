"""The runbook index's embedding model: the config's embeddingModel (here an OpenAI-compatible one on the
fake LLM's /v1/embeddings), cached in the conversations' Redis; one that is down (a closed port) or cannot be
built leaves the search on BM25, turns working, and /readyz and /api/status saying why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.agent_config import ProviderEntry
from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM
from tests.harness.ports import free_port
from tests.support.chat_support import model_entry, running, settings_for, write_config
from tests.support.runbooks import (
    CRASHLOOP,
    DNS,
    config_with_runbooks,
    embedding_model,
    hit_names,
    shard,
    wait_for_search,
    write_shard_file,
)


def embedding_requests(fake_llm: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake_llm.requests if r["path"] == "/v1/embeddings"]


async def test_an_embedding_model_from_the_config_embeds_the_runbooks_into_redis(
    tmp_path: Path, fresh_fake_llm: FakeLLM, redis_server: Any
) -> None:
    import redis.asyncio

    redis_server.flushall()
    runbooks = shard(CRASHLOOP, DNS)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    config = config_with_runbooks(
        [model_entry("m", fresh_fake_llm.base_url)],
        [(0, runbooks)],
        embedding_model=embedding_model(fresh_fake_llm.base_url, "fake-embed-1"),
    )
    write_config(path, config)
    settings = settings_for(path, redis_url=redis_server.url)
    async with running(create_app(settings)) as app, app.client() as client:
        found = await wait_for_search(
            client, "lookups answer NXDOMAIN", lambda r: "dns-failures" in hit_names(r)
        )
        assert found["mode"] == "hybrid"
        ready = (await client.get("/readyz")).json()
        assert ready["runbooks"]["mode"] == "hybrid" and ready["runbooks"]["reason"] is None
        assert ready["runbooks"]["embedding_model"] == "embedder (openai_compatible fake-embed-1)"
        requests = embedding_requests(fresh_fake_llm)
        assert requests and all(r["json"]["model"] == "fake-embed-1" for r in requests)
        # Text, not token ids: OpenAI-compatible servers take no tiktoken tokens.
        assert all(isinstance(t, str) for r in requests for t in r["json"]["input"])
        assert any("CoreDNS" in t for r in requests for t in r["json"]["input"])

    client_ = redis.asyncio.from_url(redis_server.url)
    try:
        keys = [k async for k in client_.scan_iter("ai-ops:embedding:*")]
    finally:
        await client_.aclose()
    assert keys and all(b"openai_compatible:fake-embed-1:" in k for k in keys)

    # A restart (or another replica) embeds nothing again: the vectors come from Redis.
    fresh_fake_llm.reset()
    async with running(create_app(settings)) as app, app.client() as client:
        found = await wait_for_search(
            client, "lookups answer NXDOMAIN", lambda r: "dns-failures" in hit_names(r)
        )
        assert found["mode"] == "hybrid"
        inputs = [t for r in embedding_requests(fresh_fake_llm) for t in r["json"]["input"]]
        assert all("CoreDNS" not in t and "CrashLoopBackOff" not in t for t in inputs)  # only queries


async def test_an_embedding_model_that_is_down_leaves_bm25_and_turns_working(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    runbooks = shard(CRASHLOOP, DNS)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    write_config(
        path,
        config_with_runbooks(
            [model_entry("m", fresh_fake_llm.base_url)],
            [(0, runbooks)],
            embedding_model=embedding_model(closed),
        ),
    )
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        found = await wait_for_search(client, "CrashLoopBackOff restart", lambda r: bool(r["hits"]))
        assert found["mode"] == "bm25" and found["hits"][0]["runbook"] == "pod-crashloop"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        state = ready.json()["runbooks"]
        assert state["mode"] == "bm25" and state["count"] == 2
        assert "embedding model unavailable" in state["reason"] and "Connection" in state["reason"]
        status = (await client.get("/api/status")).json()
        assert status["runbooks"]["mode"] == "bm25"
        assert any("BM25 only" in w for w in status["warnings"])
        turn = await client.post("/api/chat", json={"message": "still there?"})
        assert turn.status_code == 200 and turn.json()["reply"] == "echo: still there?"


async def test_vectors_come_back_when_the_embedding_model_answers_again(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    runbooks = shard(CRASHLOOP)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    config = config_with_runbooks(
        [model_entry("m", fresh_fake_llm.base_url)],
        [(0, runbooks)],
        embedding_model=embedding_model(fresh_fake_llm.base_url),
    )
    write_config(path, config)
    fresh_fake_llm.fail_embeddings(503)
    settings = settings_for(path, runbook_vector_retry_seconds=0.3)
    async with running(create_app(settings)) as app, app.client() as client:
        await wait_for_search(client, "CrashLoopBackOff", lambda r: r["mode"] == "bm25" and bool(r["hits"]))
        assert "InternalServerError" in (await client.get("/readyz")).json()["runbooks"]["reason"]
        fresh_fake_llm.fail_embeddings(None)  # same config, same URL: only the retry can notice
        await wait_for_search(client, "CrashLoopBackOff", lambda r: r["mode"] == "hybrid" and bool(r["hits"]))
        assert (await client.get("/readyz")).json()["runbooks"]["reason"] is None


async def test_an_embedding_provider_without_its_package_says_which_extra(
    tmp_path: Path, fresh_fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test extra installs langchain-ollama: an installation without the ollama extra is one where
    # importing it fails.
    monkeypatch.setitem(sys.modules, "langchain_ollama", None)
    runbooks = shard(CRASHLOOP)
    write_shard_file(tmp_path, 0, runbooks)
    path = tmp_path / "agent-config.json"
    ollama = embedding_model("http://127.0.0.1:9").model_copy(
        update={"provider": ProviderEntry(name="ollama", type="ollama", base_url="http://127.0.0.1:9")}
    )
    write_config(
        path,
        config_with_runbooks(
            [model_entry("m", fresh_fake_llm.base_url)], [(0, runbooks)], embedding_model=ollama
        ),
    )
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        found = await wait_for_search(client, "CrashLoopBackOff", lambda r: bool(r["hits"]))
        assert found["mode"] == "bm25"
        reason = (await client.get("/readyz")).json()["runbooks"]["reason"]
        assert "langchain-ollama" in reason and "pip install 'ai-ops[ollama]'" in reason
