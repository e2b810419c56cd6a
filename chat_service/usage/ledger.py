"""Daily usage rollups: one hash per (namespace, UTC day), integer counters only.

A field is ``<what>|<caller>|<name parts...>|<counter>``:

- ``m|<caller>|<model>|<kind>|in`` / ``out`` / ``cached`` / ``calls`` / ``est`` (estimated calls) /
  ``cost:<CUR>`` (nano-units): model calls, ``kind`` being chat, summarization or investigation;
- ``t|<caller>|<server>|<tool>|calls`` / ``errors`` / ``ms``: tool calls.

Every field carries the caller, so one caller's own view and every grouping are sums over fields. Names
are escaped so an untrusted tool name cannot forge a field. In Redis the writes are HINCRBY in one
pipeline with EXPIRE (``AI_OPS_USAGE_RETENTION_DAYS``); without Redis the same hashes live in memory.
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


class Ledger(Protocol):
    backend: str

    async def add(self, namespace: str, day: dt.date, deltas: Mapping[str, int]) -> None: ...

    async def days(self, namespace: str, days: Iterable[dt.date]) -> dict[dt.date, dict[str, int]]: ...


class MemoryLedger:
    """The ledger of a single replica without Redis (lost on restart), days past retention dropped."""

    backend = "memory"

    def __init__(self, retention_days: int):
        self.retention_days = retention_days
        self._hashes: dict[str, defaultdict[str, int]] = {}

    async def add(self, namespace: str, day: dt.date, deltas: Mapping[str, int]) -> None:
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
        key = day_key(namespace, day)
        expires = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=self.retention_days + 1)
        pipe = self.client.pipeline(transaction=False)
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
