"""A faster request path for OpenAI chat completions: skip the SDK's params transform for plain JSON.

Before sending, the OpenAI SDK walks every request param against its TypedDict types (for key aliases and
formats). For chat completions those types declare no alias or format, so for plain JSON data the walk only
drops the ``omit`` sentinels, yet it costs about 0.18 ms per message: 75 ms per turn at 400 messages of
history, and a third of the service's CPU on a short turn (benchmarks/history_growth.py, chat_overhead.py).

``install()`` wraps the SDK's ``async_maybe_transform`` as used by ``chat.completions.create``: for the
create params, when every value is plain JSON, it only drops the sentinels; anything else (other endpoints,
non-JSON values) goes through the original transform. tests/test_chat_openai_fastpath.py checks that the
request the server receives is the same with and without it. Turn it off with
``AI_OPS_OPENAI_FAST_REQUESTS=false``.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_ai_ops_fastpath"
# How many chat requests took the fast path and how many fell back to the SDK's transform.
counts = {"fast": 0, "fallback": 0}
_SCALARS = (str, int, float, bool, type(None))


def is_plain_json(value: Any, depth: int = 0) -> bool:
    """Only dicts with string keys, lists and JSON scalars (what LangChain builds for a request)."""
    if isinstance(value, _SCALARS):
        return True
    if depth > 64:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_json(v, depth + 1) for v in value)
    return False


def install() -> bool:
    """Install the fast path (idempotent); False when this openai version does not look as expected."""
    try:
        import openai.resources.chat.completions.completions as completions
        from openai._types import NotGiven, Omit
        from openai.types.chat import completion_create_params as params
    except ImportError:
        return False
    original = getattr(completions, "async_maybe_transform", None)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True
    targets = (params.CompletionCreateParamsStreaming, params.CompletionCreateParamsNonStreaming)

    async def fast_maybe_transform(data: object, expected_type: object) -> Any:
        if expected_type in targets and isinstance(data, dict):
            body = {k: v for k, v in data.items() if not isinstance(v, Omit | NotGiven)}
            if is_plain_json(body):
                counts["fast"] += 1
                return body
            counts["fallback"] += 1
        return await original(data, expected_type)

    setattr(fast_maybe_transform, _MARK, True)
    fast_maybe_transform.original = original  # type: ignore[attr-defined]
    completions.async_maybe_transform = fast_maybe_transform
    log.debug("OpenAI chat-completions fast request path installed")
    return True


def uninstall() -> None:
    """Restore the SDK's own transform (for tests that compare both)."""
    import openai.resources.chat.completions.completions as completions

    current = completions.async_maybe_transform
    if getattr(current, _MARK, False):
        completions.async_maybe_transform = current.original  # type: ignore[attr-defined]
