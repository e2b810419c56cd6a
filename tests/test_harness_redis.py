"""The redis_server fixture runs a real redis-server that clients reach through its URL."""

from __future__ import annotations

import os

import pytest
import redis
import redis.asyncio as aioredis

from tests.harness.ports import port_accepts
from tests.harness.redis_server import RedisServer


async def test_async_client_reaches_server_by_url_and_flushall_empties_it(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set("harness:key", "value")
        assert await client.get("harness:key") == b"value"
        redis_server.flushall()
        assert await client.get("harness:key") is None
        info = await client.info("persistence")
        assert info["aof_enabled"] == 0
    finally:
        await client.aclose()


def test_stop_kills_the_process_and_frees_the_port() -> None:
    server = RedisServer()
    server.start()
    pid, port = server.pid, server.port
    assert pid is not None
    with redis.Redis(host=server.host, port=port) as client:
        assert client.ping()
    server.stop()
    assert not port_accepts(server.host, port)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"redis-server {pid} still runs after stop()")


def test_kill_then_start_on_the_same_port_is_redis_coming_back() -> None:
    server = RedisServer()
    server.start()
    port = server.port
    try:
        server.kill()
        assert not port_accepts(server.host, port)
        server.start(port=port)
        with redis.Redis(host=server.host, port=port) as client:
            assert client.ping()
    finally:
        server.stop()


def test_missing_redis_server_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    server = RedisServer()
    with pytest.raises(RuntimeError, match="redis-server is not installed"):
        server.start()
    server.stop()
