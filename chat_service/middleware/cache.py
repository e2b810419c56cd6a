"""The ``cache`` middleware: an exact-match cache of model answers.

The key is a hash of the LLMModel, the system prompt, the messages the model would see (type, content, tool
calls; not the random message ids) and the tool names, plus the conversation's thread id unless
``scope: global``. A hit returns the stored AIMessage without calling the model. Entries live in Redis with
a TTL when the service has Redis (shared by all replicas), else in an in-memory LRU with the same TTL.

Only real model answers are stored: messages made up by middleware (a retry's failure notice, a blocked
prompt, a cache hit) carry no provider metadata or carry our ``ai_ops`` marker and are never cached.
A Redis failure never fails the turn: the model is called as if the cache were empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict

from ai_ops_api.middleware import CacheConfig

if TYPE_CHECKING:
    import redis.asyncio

KEY_PREFIX = "ai-ops:cache:"
# A cache lookup must never cost more than it saves: the client's own retries on a dead Redis take seconds.
REDIS_TIMEOUT_SECONDS = 1.0
REDIS_BACKOFF_SECONDS = 10.0
# The marker our middleware puts in response_metadata of messages that did not come from the model.
AI_OPS_METADATA_KEY = "ai_ops"


class MemoryCacheStore:
    """A thread-safe LRU of serialized answers with a per-entry expiry."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires_at, value = item
            if time.monotonic() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _thread_id(request: ModelRequest[Any]) -> str | None:
    info = getattr(request.runtime, "execution_info", None)
    thread_id = getattr(info, "thread_id", None)
    if thread_id:
        return str(thread_id)
    try:
        from langgraph.config import get_config

        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # outside a graph run
        return None
    value = configurable.get("thread_id")
    return str(value) if value else None


def _message_fingerprint(message: BaseMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": message.type, "content": message.content}
    if message.name:
        entry["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        entry["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
    return entry


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        return str(
            tool.get("name") or (tool.get("function") or {}).get("name") or json.dumps(tool, sort_keys=True)
        )
    return str(getattr(tool, "name", tool))


def _cacheable(response: Any) -> AIMessage | None:
    """The answer to store, or None when the response is not a plain model answer."""
    if not isinstance(response, ModelResponse) or response.structured_response is not None:
        return None
    if len(response.result) != 1 or not isinstance(response.result[0], AIMessage):
        return None
    message = response.result[0]
    if not message.response_metadata or AI_OPS_METADATA_KEY in message.response_metadata:
        return None
    return message


def _hit(serialized: str) -> ModelResponse[Any] | None:
    try:
        (message,) = messages_from_dict([json.loads(serialized)])
    except (ValueError, KeyError, TypeError):
        return None  # an entry from an incompatible version: treat as a miss
    if not isinstance(message, AIMessage):
        return None
    # A fresh id: with the stored one, the checkpointer would replace the earlier message of that id.
    # No usage: a hit costs no tokens.
    hit = message.model_copy(
        update={
            "id": None,
            "usage_metadata": None,
            "response_metadata": {**message.response_metadata, AI_OPS_METADATA_KEY: {"cache": "hit"}},
        }
    )
    return ModelResponse(result=[hit])


class ResponseCacheMiddleware(AgentMiddleware):
    """Answers a model call from the cache when the same request was answered before."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        model_name: str,
        namespace: str,
        redis: redis.asyncio.Redis | None,
        logger: logging.Logger,
    ):
        super().__init__()
        self.config = config
        self.model_name = model_name
        self.namespace = namespace
        self.redis = redis
        self.logger = logger
        self.memory = MemoryCacheStore(config.max_entries)
        self._redis_retry_at = 0.0

    def cache_key(self, request: ModelRequest[Any]) -> str | None:
        """The key of this request, or None when it must not be cached (no thread id in conversation scope)."""
        thread_id = None
        if self.config.scope == "conversation":
            thread_id = _thread_id(request)
            if thread_id is None:
                return None
        system = request.system_message.content if request.system_message is not None else None
        body = {
            "model": self.model_name,
            "llm_model": getattr(request.model, "model_name", None),
            "system": system,
            "messages": [_message_fingerprint(m) for m in request.messages],
            "tools": sorted(_tool_name(t) for t in request.tools),
            "thread": thread_id,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return f"{KEY_PREFIX}{self.namespace}:{self.model_name}:{digest}"

    # -- sync: memory only (the Redis client is async; the service runs the agent asynchronously) ----------

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any] | AIMessage:
        key = self.cache_key(request)
        if key is None or self.redis is not None:
            return handler(request)
        stored = self.memory.get(key)
        if stored is not None and (hit := _hit(stored)) is not None:
            return hit
        response = handler(request)
        if (message := _cacheable(response)) is not None:
            self.memory.set(key, json.dumps(message_to_dict(message)), self.config.ttl_seconds)
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        key = self.cache_key(request)
        if key is None:
            return await handler(request)
        stored = await self._get(key)
        if stored is not None and (hit := _hit(stored)) is not None:
            return hit
        response = await handler(request)
        if (message := _cacheable(response)) is not None:
            await self._set(key, json.dumps(message_to_dict(message)))
        return response

    def _redis_usable(self) -> bool:
        # After a failure, leave Redis alone for a while instead of paying its timeout on every call.
        return self.redis is not None and time.monotonic() >= self._redis_retry_at

    def _redis_failed(self, operation: str, exc: BaseException) -> None:
        self._redis_retry_at = time.monotonic() + REDIS_BACKOFF_SECONDS
        self.logger.warning(
            "cache: Redis %s failed (%s); calling the model without the cache for %.0f s",
            operation,
            type(exc).__name__,
            REDIS_BACKOFF_SECONDS,
        )

    async def _get(self, key: str) -> str | None:
        if self.redis is None:
            return self.memory.get(key)
        if not self._redis_usable():
            return None
        try:
            value = await asyncio.wait_for(self.redis.get(key), REDIS_TIMEOUT_SECONDS)
        except Exception as exc:  # the cache is an optimisation: never fail the turn for it
            self._redis_failed("get", exc)
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return value

    async def _set(self, key: str, value: str) -> None:
        if self.redis is None:
            self.memory.set(key, value, self.config.ttl_seconds)
            return
        if not self._redis_usable():
            return
        try:
            await asyncio.wait_for(
                self.redis.set(key, value, ex=self.config.ttl_seconds), REDIS_TIMEOUT_SECONDS
            )
        except Exception as exc:
            self._redis_failed("set", exc)
