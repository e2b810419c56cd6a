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

# A checkpoint write in one step (the base saver's INCR, then a MULTI/EXEC of about ten commands): the
# checkpoint and the blobs of the channels it changed, its sequence number and index entry, the thread's
# registry entry, and the TTLs of the index and of the blobs it still uses unchanged (the sliding TTL).
# KEYS: sequence, index, threads registry, checkpoint, the ARGV[4] written blobs, then the unchanged blobs.
# ARGV: checkpoint id, registry entry, TTL ('' = none), number of written blobs, checkpoint payload, blobs.
# ``SET ... EX`` is the base saver's SET then EXPIRE in one command.
_WRITE_CHECKPOINT = """
local ttl = ARGV[3]
local written = tonumber(ARGV[4])
for i = 0, written do
  if ttl == '' then
    redis.call('SET', KEYS[4 + i], ARGV[5 + i])
  else
    redis.call('SET', KEYS[4 + i], ARGV[5 + i], 'EX', ttl)
  end
end
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[3], KEYS[2], ARGV[2])
if ttl ~= '' then
  redis.call('EXPIRE', KEYS[2], ttl)
  for i = 5 + written, #KEYS do
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return seq
"""


class SlidingTTLRedisSaver(AsyncRedisSaver):
    """AsyncRedisSaver whose TTL slides: every checkpoint write also refreshes the blobs it still uses.

    The base saver sets the TTL only on keys it writes, so a channel unchanged since the first turn would
    expire under a conversation that is still going on.

    ``aput`` writes the same keys, values and TTLs as the base saver's (the checkpoint conformance suite
    checks the values), in one Redis command instead of about a dozen: one script (``_WRITE_CHECKPOINT``)
    sets the checkpoint and its new blobs with their TTL, takes the sequence number and adds the index
    entry, registers the thread and refreshes the TTLs of the index and the unchanged blobs, atomically like
    the base saver's MULTI/EXEC, where the base saver sends an ``INCR`` of its own before its transaction.
    Every turn writes a checkpoint, and redis-py's client CPU for a pipeline grows with each command in it.

    Both scripts go as EVALSHA (redis-py's ``register_script``: the script's digest, the script itself
    only after a NOSCRIPT from a Redis that has not seen it yet). EVAL and scripts are core Redis, no module.

    A read is two round trips instead of four (``_LOAD_CHECKPOINT``), and the opening read of a thread the
    server has just created (``NEW_THREAD_KEY``) none: there is nothing to find. A thread id a client sent
    is always read.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # EVALSHA with the script's digest, loading the script on NOSCRIPT (a restarted Redis, a failover).
        self._load_checkpoint = self.client.register_script(_LOAD_CHECKPOINT)
        self._write_checkpoint = self.client.register_script(_WRITE_CHECKPOINT)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if is_new_thread_read(config):
            return None
        thread_id: str = config["configurable"]["thread_id"]
        ns: str = config["configurable"].get("checkpoint_ns", "")
        found = await self._load_checkpoint(
            keys=[self._key_index(thread_id, ns)],
            args=[
                get_checkpoint_id(config) or "",
                self._key_checkpoint(thread_id, ns, ""),
                self._key_writes(thread_id, ns, ""),
            ],
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
        unchanged: dict[str, Any] = {}
        if self.ttl:
            unchanged = {
                channel: version
                for channel, version in (checkpoint.get("channel_versions") or {}).items()
                if channel not in new_versions
            }
        await self._write_checkpoint(
            keys=[
                self._key_seq(),
                idx_key,
                self._key_threads(),
                cp_key,
                *(key for key, _ in blobs),
                *self._blob_keys(thread_id, ns, unchanged),
            ],
            args=[
                cid,
                json.dumps({"thread": thread_id, "ns": ns}, ensure_ascii=False),
                self.ttl or "",
                len(blobs),
                payload,
                *(value for _, value in blobs),
            ],
        )
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
