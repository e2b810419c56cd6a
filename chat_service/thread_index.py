"""Each caller's list of conversations: thread ids, newest first, each titled by its first message.

The checkpointer finds a thread by id but cannot list a caller's threads, so every completed turn also
records its thread here, next to the conversations: in Redis a sorted set per caller (score: the time of
the thread's last turn) and a hash of titles, both with the conversations' sliding TTL; in memory, a dict.
An entry whose last turn is older than the TTL belongs to a conversation that has expired, so it is
never listed and is dropped on the next write. The index is a convenience: when it cannot be written the
turn still stands (logged), and the conversation stays reachable by its id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "ai-ops:threads"
# A caller's list keeps its newest threads only; older ones stay reachable by id until they expire.
MAX_THREADS_PER_CALLER = 200
TITLE_LENGTH = 80


@dataclass(frozen=True)
class ThreadEntry:
    thread_id: str
    title: str
    updated_at: float  # Unix time of the thread's last turn


def title_of(message: str) -> str:
    """The first message on one line, truncated to ``TITLE_LENGTH`` characters (an ellipsis marks a cut)."""
    line = " ".join(message.split())
    if len(line) <= TITLE_LENGTH:
        return line
    return line[: TITLE_LENGTH - 1].rstrip() + "…"


class ThreadIndex(Protocol):
    backend: str

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        """A turn of ``thread_id`` completed; ``message`` is its user message (the title if it is the first)."""

    async def threads(self, identity: str) -> list[ThreadEntry]:
        """The caller's live threads, the most recently used first."""

    async def forget(self, identity: str, thread_id: str) -> None:
        """The thread was deleted."""


class MemoryThreadIndex:
    """The index for in-memory conversations (one process; gone on restart, like the conversations)."""

    backend = "memory"

    def __init__(self, ttl_seconds: int, *, clock: Any = time.time):
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._threads: dict[str, dict[str, ThreadEntry]] = {}

    def _live(self, identity: str) -> dict[str, ThreadEntry]:
        entries = self._threads.get(identity, {})
        cutoff = self._clock() - self.ttl_seconds
        for thread_id in [t for t, e in entries.items() if e.updated_at < cutoff]:
            del entries[thread_id]
        return entries

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        entries = self._live(identity)
        self._threads[identity] = entries
        known = entries.pop(thread_id, None)  # re-inserted last: dicts keep insertion order
        title = known.title if known else title_of(message)
        entries[thread_id] = ThreadEntry(thread_id, title, self._clock())
        while len(entries) > MAX_THREADS_PER_CALLER:
            del entries[next(iter(entries))]

    async def threads(self, identity: str) -> list[ThreadEntry]:
        return sorted(self._live(identity).values(), key=lambda e: e.updated_at, reverse=True)

    async def forget(self, identity: str, thread_id: str) -> None:
        self._threads.get(identity, {}).pop(thread_id, None)


class RedisThreadIndex:
    """The index in Redis, shared by every replica, next to the conversations' checkpoints."""

    backend = "redis"

    def __init__(
        self, client: Any, ttl_seconds: int, *, prefix: str = REDIS_KEY_PREFIX, clock: Any = time.time
    ):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self._clock = clock

    def _keys(self, identity: str) -> tuple[str, str]:
        # Caller names and thread ids contain no ':' (auth.py, THREAD_ID_PATTERN), so keys cannot collide.
        return f"{self.prefix}:{identity}", f"{self.prefix}:{identity}:titles"

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        try:
            await self._record(identity, thread_id, message)
        except Exception as exc:
            log.warning("the conversation list of %s could not be updated: %s", identity, type(exc).__name__)

    async def _record(self, identity: str, thread_id: str, message: str) -> None:
        order, titles = self._keys(identity)
        now = self._clock()
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(order, {thread_id: now})
        pipe.hsetnx(titles, thread_id, title_of(message))
        pipe.expire(order, self.ttl_seconds)
        pipe.expire(titles, self.ttl_seconds)
        # Expired threads and those beyond the newest MAX_THREADS_PER_CALLER leave the list and their titles.
        pipe.zrangebyscore(order, "-inf", f"({now - self.ttl_seconds}")
        pipe.zrange(order, 0, -(MAX_THREADS_PER_CALLER + 1))
        *_, expired, surplus = await pipe.execute()
        dropped = list({*expired, *surplus})
        if dropped:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(order, *dropped)
            pipe.hdel(titles, *dropped)
            await pipe.execute()

    async def threads(self, identity: str) -> list[ThreadEntry]:
        order, titles = self._keys(identity)
        cutoff = self._clock() - self.ttl_seconds
        found = await self.client.zrevrangebyscore(order, "+inf", f"({cutoff}", withscores=True)
        if not found:
            return []
        names = [member for member, _ in found]
        shown = await self.client.hmget(titles, names)
        return [
            ThreadEntry(_text(member), _text(title) if title is not None else "", float(score))
            for (member, score), title in zip(found, shown, strict=True)
        ]

    async def forget(self, identity: str, thread_id: str) -> None:
        try:
            await self._forget(identity, thread_id)
        except Exception as exc:  # the conversation is gone anyway; its entry expires with the TTL
            log.warning("the conversation list of %s could not be updated: %s", identity, type(exc).__name__)

    async def _forget(self, identity: str, thread_id: str) -> None:
        order, titles = self._keys(identity)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(order, thread_id)
        pipe.hdel(titles, thread_id)
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def thread_index_for(redis_client: Any, ttl_seconds: int) -> ThreadIndex:
    """The index where the conversations live: Redis when they are in Redis, else memory."""
    if redis_client is not None:
        return RedisThreadIndex(redis_client, ttl_seconds)
    return MemoryThreadIndex(ttl_seconds)
