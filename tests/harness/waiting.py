"""Wait for an eventual condition without timed assertions: poll until true, fail only after a generous limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]], what: str, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Await `probe()` (sync or async) until it returns a truthy value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s: {what}")
        await asyncio.sleep(interval)
