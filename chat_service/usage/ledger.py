"""Daily usage rollups: one hash per (namespace, UTC day), integer counters only.

A field is ``<what>|<caller>|<name parts...>|<counter>``:

- ``m|<caller>|<model>|<kind>|in`` / ``out`` / ``cached`` / ``calls`` / ``est`` (estimated calls) /
  ``cost:<CUR>`` (nano-units): model calls, ``kind`` being chat, summarization or investigation;
- ``t|<caller>|<server>|<tool>|calls`` / ``errors`` / ``ms``: tool calls.

Every field carries the caller, so one caller's own view and every grouping are sums over fields. Names
are escaped so an untrusted tool name cannot forge a field. The recorder writes a batch of deltas (every
namespace and day it has pending) with ``add_many``: in Redis one MULTI/EXEC of HINCRBY per field and
EXPIREAT per hash (``AI_OPS_USAGE_RETENTION_DAYS``), so a batch lands whole or not at all; without Redis
the same hashes live in memory.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis.asyncio

KEY_PREFIX = "ai-ops:usage"
SEP = "|"


def escape(name: str) -> str:
    return name.replace("%", "%25").replace(SEP, "%7C")


def unescape(name: str) -> str:
    return name.replace("%7C", SEP).replace("%25", "%")


def field(*parts: str) -> str:
    return SEP.join(escape(p) for p in parts)


def split_field(name: str) -> list[str]:
    return [unescape(p) for p in name.split(SEP)]


def day_key(namespace: str, day: dt.date) -> str:
    return f"{KEY_PREFIX}:{namespace}:{day.isoformat()}"


Batch = Mapping[tuple[str, dt.date], Mapping[str, int]]  # (namespace, day) -> field -> delta


class Ledger(Protocol):
    backend: str
    retention_days: int

    async def add_many(self, batch: Batch) -> None: ...

    async def days(self, namespace: str, days: Iterable[dt.date]) -> dict[dt.date, dict[str, int]]: ...


class MemoryLedger:
    """The ledger of a single replica without Redis (lost on restart), days past retention dropped."""

    backend = "memory"

    def __init__(self, retention_days: int):
        self.retention_days = retention_days
        self._hashes: dict[str, defaultdict[str, int]] = {}

    async def add(self, namespace: str, day: dt.date, deltas: Mapping[str, int]) -> None:
        await self.add_many({(namespace, day): deltas})

    async def add_many(self, batch: Batch) -> None:
        for (namespace, day), deltas in batch.items():
            values = self._hashes.setdefault(day_key(namespace, day), defaultdict(int))
            for name, delta in deltas.items():
                values[name] += delta
        oldest = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=self.retention_days)).isoformat()
        for key in [k for k in self._hashes if k.rsplit(":", 1)[-1] < oldest]:
            del self._hashes[key]

    async def days(self, namespace: str, days: Iterable[dt.date]) -> dict[dt.date, dict[str, int]]:
        return {day: dict(self._hashes.get(day_key(namespace, day), {})) for day in days}


class RedisLedger:
    """Shared by every replica; a day's hash expires ``retention_days`` after that day."""

    backend = "redis"

    def __init__(self, client: redis.asyncio.Redis, retention_days: int):
        self.client = client
        self.retention_days = retention_days

    async def add(self, namespace: str, day: dt.date, deltas: Mapping[str, int]) -> None:
        await self.add_many({(namespace, day): deltas})

    async def add_many(self, batch: Batch) -> None:
        """One round trip for the whole batch; a transaction, so a failed write adds nothing and the
        recorder can retry the same deltas (a lost reply to a committed write would count it twice)."""
        pipe = self.client.pipeline(transaction=True)
        for (namespace, day), deltas in batch.items():
            key = day_key(namespace, day)
            expires = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=self.retention_days + 1)
            for name, delta in deltas.items():
                if delta:
                    pipe.hincrby(key, name, delta)
            pipe.expireat(key, int(expires.timestamp()))
        await pipe.execute()

    async def days(self, namespace: str, days: Iterable[dt.date]) -> dict[dt.date, dict[str, int]]:
        wanted = list(days)
        pipe = self.client.pipeline(transaction=False)
        for day in wanted:
            pipe.hgetall(day_key(namespace, day))
        found = await pipe.execute()
        return {
            day: {_text(k): int(v) for k, v in (values or {}).items()}
            for day, values in zip(wanted, found, strict=True)
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
