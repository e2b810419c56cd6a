"""Where conversations live: LangGraph checkpoints in Redis (plain Redis 6+/Valkey) or in memory.

Both expire a conversation after ``AI_OPS_SESSION_TTL_SECONDS`` without a turn (a sliding TTL). Thread
ids are scoped by the caller's identity, so one caller cannot read or delete another's conversation
even when it guesses the id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph_checkpoint_plainredis import AsyncRedisSaver
from langgraph_checkpoint_plainredis.saver import _MISSING

log = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "ai-ops:lg"
# The readiness ping's bound: /readyz must answer well within the chart's 3 s readiness timeout.
PING_TIMEOUT_SECONDS = 1.0


# Set in a turn's run config when the server has just generated the thread's id: no checkpoint can exist for
# it, so the saver answers the graph's opening read without asking Redis. The "__" keeps the flag out of the
# checkpoint's metadata (LangGraph copies the other configurable keys into it).
NEW_THREAD_KEY = "__ai_ops_new_thread"


def is_new_thread_read(config: RunnableConfig) -> bool:
    """The graph's opening read of a thread the server has just created (its root namespace, no id)."""
    configurable = config.get("configurable") or {}
    return (
        bool(configurable.get(NEW_THREAD_KEY))
        and not configurable.get("checkpoint_ns")
        and get_checkpoint_id(config) is None
    )


# A thread's checkpoint (the latest, or ARGV[1]) and its pending writes in one step, where the base saver
# takes three round trips (the index, the checkpoint, the writes); the channel blobs, named in the checkpoint,
# are a second. ARGV[2] and ARGV[3] are the saver's checkpoint and writes keys without the checkpoint id.
_LOAD_CHECKPOINT = """
local cid = ARGV[1]
if cid == '' then
  local latest = redis.call('ZREVRANGE', KEYS[1], 0, 0)
  if #latest == 0 then return false end
  cid = latest[1]
end
local payload = redis.call('GET', ARGV[2] .. cid)
if not payload then return false end
return {cid, payload, redis.call('HGETALL', ARGV[3] .. cid)}
"""

# The checkpoint's place in its thread's index: the saver's sequence number and the index entry in one step,
# so the number needs no round trip of its own before the write.
_INDEX_CHECKPOINT = (
    "local seq = redis.call('INCR', KEYS[1]) redis.call('ZADD', KEYS[2], seq, ARGV[1]) return seq"
)


class SlidingTTLRedisSaver(AsyncRedisSaver):
    """AsyncRedisSaver whose TTL slides: every checkpoint write also refreshes the blobs it still uses.

    The base saver sets the TTL only on keys it writes, so a channel unchanged since the first turn would
    expire under a conversation that is still going on.

    ``aput`` writes the same keys and values as the base saver's (the checkpoint conformance suite checks
    it), in one round trip instead of two or three: the base saver takes the sequence number with an
    ``INCR`` of its own before its transaction, and the refreshed TTLs would be a third. A turn's one
    checkpoint write is a round trip on every turn (EVAL is core Redis, no module).

    A read is two round trips instead of four (``_LOAD_CHECKPOINT``), and the opening read of a thread the
    server has just created (``NEW_THREAD_KEY``) none: there is nothing to find. A thread id a client sent
    is always read.
    """

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if is_new_thread_read(config):
            return None
        thread_id: str = config["configurable"]["thread_id"]
        ns: str = config["configurable"].get("checkpoint_ns", "")
        found = await self.client.eval(
            _LOAD_CHECKPOINT,
            1,
            self._key_index(thread_id, ns),
            get_checkpoint_id(config) or "",
            self._key_checkpoint(thread_id, ns, ""),
            self._key_writes(thread_id, ns, ""),
        )
        if not found:
            return None
        raw_cid, raw, flat_writes = found
        cid = raw_cid.decode() if isinstance(raw_cid, bytes) else raw_cid
        stored, metadata, parent_id, versions = self._parse_checkpoint_payload(raw)
        channel_values: dict[str, Any] = {}
        if versions:
            blobs = cast(list[bytes | None], await self.client.mget(self._blob_keys(thread_id, ns, versions)))
            for channel, blob in zip(versions, blobs, strict=True):
                value = self._decode_blob(blob)
                if value is not _MISSING:
                    channel_values[channel] = value
        raw_writes = dict(zip(flat_writes[::2], flat_writes[1::2], strict=True))
        pending_writes = self._parse_pending_writes(thread_id, ns, cid, raw_writes)
        return self._build_tuple(
            thread_id, ns, cid, stored, metadata, parent_id, channel_values, pending_writes
        )

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id: str = config["configurable"]["thread_id"]
        ns: str = config["configurable"].get("checkpoint_ns", "")
        cid: str = checkpoint["id"]
        cp_key = self._key_checkpoint(thread_id, ns, cid)
        idx_key = self._key_index(thread_id, ns)
        payload = self._payload_for_checkpoint(config, checkpoint, metadata)
        blobs = self._plan_blobs(thread_id, ns, checkpoint.get("channel_values") or {}, new_versions)
        pipe = self.client.pipeline()
        pipe.set(cp_key, payload)
        for key, value in blobs:
            pipe.set(key, value)
            if self.ttl:
                pipe.expire(key, self.ttl)
        pipe.eval(_INDEX_CHECKPOINT, 2, self._key_seq(), idx_key, cid)
        pipe.hset(
            self._key_threads(), idx_key, json.dumps({"thread": thread_id, "ns": ns}, ensure_ascii=False)
        )
        if self.ttl:
            pipe.expire(cp_key, self.ttl)
            pipe.expire(idx_key, self.ttl)
            unchanged = {
                channel: version
                for channel, version in (checkpoint.get("channel_versions") or {}).items()
                if channel not in new_versions
            }
            for key in self._blob_keys(thread_id, ns, unchanged):
                pipe.expire(key, self.ttl)
        await pipe.execute()
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}


class ExpiringMemorySaver(InMemorySaver):
    """InMemorySaver that forgets a thread after ``ttl`` seconds without a write (checked lazily)."""

    def __init__(self, ttl: int):
        super().__init__()
        self.ttl = ttl
        self._last_write: dict[str, float] = {}
        self._last_sweep = time.monotonic()

    def _expired(self, thread_id: str) -> bool:
        last = self._last_write.get(thread_id)
        return last is not None and time.monotonic() - last > self.ttl

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < min(60.0, self.ttl):
            return
        self._last_sweep = now
        for thread_id in [t for t, last in self._last_write.items() if now - last > self.ttl]:
            self._forget(thread_id)

    def _forget(self, thread_id: str) -> None:
        self._last_write.pop(thread_id, None)
        super().delete_thread(thread_id)

    def get_tuple(self, config: RunnableConfig) -> Any:
        thread_id = config["configurable"]["thread_id"]
        if self._expired(thread_id):
            self._forget(thread_id)
        return super().get_tuple(config)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._sweep()
        self._last_write[config["configurable"]["thread_id"]] = time.monotonic()
        return super().put(config, checkpoint, metadata, new_versions)

    def delete_thread(self, thread_id: str) -> None:
        self._last_write.pop(thread_id, None)
        super().delete_thread(thread_id)


def scoped_thread_id(identity: str, thread_id: str) -> str:
    """The stored thread id: caller identity + the client's id (neither can contain ':')."""
    return f"{identity}:{thread_id}"


# An Investigation's conversation is stored as the identity ``investigations``'s thread ``<name>``. Clients
# name it by that stored id itself (the Investigation's ``status.threadId``): it is shared by every caller
# (docs/incidents.md), where a client's own thread ids (no ':') are always scoped to the caller.
INVESTIGATION_THREAD_PREFIX = "investigations:"


def is_investigation_thread(thread_id: str) -> bool:
    return thread_id.startswith(INVESTIGATION_THREAD_PREFIX)


class ConversationStore:
    """The checkpointer shared by every compiled graph, plus thread lookups for the API."""

    def __init__(
        self,
        redis_url: str | None,
        ttl_seconds: int,
        *,
        prefix: str = REDIS_KEY_PREFIX,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
    ):
        self.ttl_seconds = ttl_seconds
        self.redis_url = redis_url
        self.checkpointer: BaseCheckpointSaver[Any]
        if redis_url:
            self.backend = "redis"
            self.checkpointer = SlidingTTLRedisSaver(
                url=redis_url,
                ttl=ttl_seconds,
                prefix=prefix,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
            )
        else:
            self.backend = "memory"
            self.checkpointer = ExpiringMemorySaver(ttl_seconds)

    @property
    def redis_client(self) -> Any:
        """The Redis client (for the cache middleware), or None with in-memory conversations."""
        return self.checkpointer.client if isinstance(self.checkpointer, AsyncRedisSaver) else None

    async def ping(self) -> str | None:
        """None when the store answers, else the reason."""
        if not isinstance(self.checkpointer, AsyncRedisSaver):
            return None
        try:
            await asyncio.wait_for(self.checkpointer.client.ping(), PING_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"Redis does not answer: no reply within {PING_TIMEOUT_SECONDS:g} s"
        except Exception as exc:
            return f"Redis does not answer: {type(exc).__name__}"
        return None

    @staticmethod
    def _config(scoped: str) -> RunnableConfig:
        return {"configurable": {"thread_id": scoped, "checkpoint_ns": ""}}

    async def messages(self, scoped: str) -> list[Any] | None:
        """The thread's messages, or None when the thread does not exist (or expired)."""
        found = await self.checkpointer.aget_tuple(self._config(scoped))
        if found is None:
            return None
        return list(found.checkpoint.get("channel_values", {}).get("messages", []))

    async def exists(self, scoped: str) -> bool:
        return await self.checkpointer.aget_tuple(self._config(scoped)) is not None

    async def delete(self, scoped: str) -> bool:
        if not await self.exists(scoped):
            return False
        await self.checkpointer.adelete_thread(scoped)
        return True

    async def aclose(self) -> None:
        if isinstance(self.checkpointer, AsyncRedisSaver):
            await self.checkpointer.aclose()
