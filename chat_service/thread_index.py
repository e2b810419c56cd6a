"""Each caller's list of conversations: thread ids, newest first, each titled by its first message.

The checkpointer finds a thread by id but cannot list a caller's threads, so every completed turn also
records its thread here, next to the conversations: in Redis a sorted set per caller (score: the time of
the thread's last turn) and a hash of titles, both with the conversations' sliding TTL; in memory, a dict.
An entry whose last turn is older than the TTL belongs to a conversation that has expired, so it is
never listed and is dropped on the next write. The index is a convenience: when it cannot be written the
turn still stands (logged), and the conversation stays reachable by its id.

A turn lists its thread while it runs (``begin``, concurrently with the model call, so the write costs the
turn no round trip of its own) and withdraws the entry if it fails: a failed or cancelled turn leaves the
list as it was, unless another turn of the same thread has listed it since. So that a withdrawn entry gives
back the place it took, a list keeps one thread more than it shows (``MAX_THREADS_PER_CALLER``).
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


class PendingEntry(Protocol):
    async def withdraw(self) -> None:
        """The turn failed: the list is as before the turn, unless another turn has listed the thread since."""


class _Unlisted:
    """The entry of a turn whose thread could not be listed (logged): nothing to take back."""

    async def withdraw(self) -> None:
        return None


class ThreadIndex(Protocol):
    backend: str

    async def begin(self, identity: str, thread_id: str, message: str) -> PendingEntry:
        """A turn of ``thread_id`` started; ``message`` is its user message (the title if it is the first).
        The thread is listed when this returns; the turn withdraws the entry if it fails."""

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        """A turn of ``thread_id`` completed."""

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

    async def begin(self, identity: str, thread_id: str, message: str) -> PendingEntry:
        entries = self._live(identity)
        self._threads[identity] = entries
        known = entries.pop(thread_id, None)  # re-inserted last: dicts keep insertion order
        title = known.title if known else title_of(message)
        listed = entries[thread_id] = ThreadEntry(thread_id, title, self._clock())
        while len(entries) > MAX_THREADS_PER_CALLER + 1:
            del entries[next(iter(entries))]
        return _MemoryPendingEntry(self, identity, listed, known)

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        await self.begin(identity, thread_id, message)

    async def threads(self, identity: str) -> list[ThreadEntry]:
        newest = sorted(self._live(identity).values(), key=lambda e: e.updated_at, reverse=True)
        return newest[:MAX_THREADS_PER_CALLER]

    async def forget(self, identity: str, thread_id: str) -> None:
        self._threads.get(identity, {}).pop(thread_id, None)


@dataclass
class _MemoryPendingEntry:
    index: MemoryThreadIndex
    identity: str
    listed: ThreadEntry
    previous: ThreadEntry | None

    async def withdraw(self) -> None:
        entries = self.index._threads.get(self.identity, {})
        if entries.get(self.listed.thread_id) is not self.listed:
            return  # another turn has listed it since, or it was deleted
        del entries[self.listed.thread_id]
        if self.previous is not None:  # back in its place in the order
            entries[self.previous.thread_id] = self.previous
            for thread_id in [t for t, e in entries.items() if e.updated_at > self.previous.updated_at]:
                entries[thread_id] = entries.pop(thread_id)


# A turn's entry, one round trip: the thread's previous score (to take the entry back if the turn fails),
# the entry and its title, the TTLs; expired entries and those beyond the newest ARGV[6] leave the list with
# their titles.
_BEGIN = """
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local titled = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5])
local surplus = redis.call('ZRANGE', KEYS[1], 0, -(tonumber(ARGV[6]) + 1))
for _, dropped in ipairs({expired, surplus}) do
  for _, member in ipairs(dropped) do
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
  end
end
return {previous or false, titled}
"""

# A failed turn's entry taken back: its previous score restored (or the entry removed, with the title the
# turn set), unless the score is no longer the turn's own (another turn has listed the thread since).
_WITHDRAW = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
if ARGV[4] == '1' then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
"""


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

    async def begin(self, identity: str, thread_id: str, message: str) -> PendingEntry:
        order, titles = self._keys(identity)
        now = self._clock()
        try:
            previous, titled = await self.client.eval(
                _BEGIN,
                2,
                order,
                titles,
                thread_id,
                repr(now),
                title_of(message),
                self.ttl_seconds,
                repr(now - self.ttl_seconds),
                MAX_THREADS_PER_CALLER + 1,
            )
        except Exception as exc:
            _unlisted(identity, exc)
            return _Unlisted()
        return _RedisPendingEntry(
            self, identity, thread_id, now, _text(previous) if previous else "", bool(titled)
        )

    async def record(self, identity: str, thread_id: str, message: str) -> None:
        await self.begin(identity, thread_id, message)

    async def threads(self, identity: str) -> list[ThreadEntry]:
        order, titles = self._keys(identity)
        cutoff = self._clock() - self.ttl_seconds
        found = await self.client.zrevrangebyscore(
            order, "+inf", f"({cutoff}", start=0, num=MAX_THREADS_PER_CALLER, withscores=True
        )
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
            _unlisted(identity, exc)

    async def _forget(self, identity: str, thread_id: str) -> None:
        order, titles = self._keys(identity)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(order, thread_id)
        pipe.hdel(titles, thread_id)
        await pipe.execute()


@dataclass
class _RedisPendingEntry:
    index: RedisThreadIndex
    identity: str
    thread_id: str
    score: float
    previous_score: str  # "" when the thread was not listed
    titled: bool  # the turn set the title

    async def withdraw(self) -> None:
        try:
            await self.index.client.eval(
                _WITHDRAW,
                2,
                *self.index._keys(self.identity),
                self.thread_id,
                repr(self.score),
                self.previous_score,
                "1" if self.titled else "0",
            )
        except Exception as exc:
            _unlisted(self.identity, exc)


def _unlisted(identity: str, exc: BaseException) -> None:
    log.warning("the conversation list of %s could not be updated: %s", identity, type(exc).__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def thread_index_for(redis_client: Any, ttl_seconds: int) -> ThreadIndex:
    """The index where the conversations live: Redis when they are in Redis, else memory."""
    if redis_client is not None:
        return RedisThreadIndex(redis_client, ttl_seconds)
    return MemoryThreadIndex(ttl_seconds)
