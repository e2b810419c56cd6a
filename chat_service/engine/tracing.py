"""LangSmith's bookkeeping around each middleware hook runs inline while tracing is off.

``create_agent`` wraps every ``wrap_model_call``/``wrap_tool_call`` hook in LangSmith's ``traceable``,
whose async wrapper sets up and ends its (untraced) run in the default thread pool: two thread hops and
a task per hook per call, with nothing to send. Our agents always have at least two such hooks (the
error boundary and the tool-argument check) plus the configured chain, so that was most of what a turn
cost beyond the hand-written agent. LangSmith's own ``set_runtime_overrides`` hook runs that setup
inline instead; with tracing turned on (``LANGSMITH_TRACING``) the default thread hop stays.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import langsmith
from langsmith.utils import tracing_is_enabled

DefaultToThread = Callable[..., Awaitable[Any]]


async def inline_unless_tracing(
    default_aio_to_thread: DefaultToThread,
    ctx: contextvars.Context,
    func: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """LangSmith's ``aio_to_thread``: ``func`` runs in ``ctx`` on the loop when no run is traced."""
    if tracing_is_enabled():
        return await default_aio_to_thread(ctx, func, *args, **kwargs)
    return ctx.run(func, *args, **kwargs)


def install() -> None:
    """Process-wide (LangSmith keeps one override): called when the chat service is built."""
    langsmith.set_runtime_overrides(aio_to_thread=inline_unless_tracing)
