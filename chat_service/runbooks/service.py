"""The runbooks of the namespace, kept searchable while the agent config changes.

On every change of the agent config (and at start) a background task reads the shards whose checksum
changed (source.py) and updates the namespace's ``RunbookIndex`` with the full set; the index re-embeds only
runbooks whose content changed. Changes are coalesced: a burst of configs costs one update with the newest.
A shard that is missing or not yet the version the config names is read again with a short backoff, so a
config that arrives before its shard still reaches the index within a second or two.

The embedding model is the config's ``embeddingModel`` (else the local one), behind a cache in Redis when
conversations are in Redis. When it cannot be built or does not answer, the index runs on BM25 alone, turns
go on, ``/readyz`` and ``/api/status`` say why, and vectors are tried again every
``vector_retry_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ai_ops_api.agent_config import AgentConfig
from chat_service.runbooks.documents import RunbookDocument
from chat_service.runbooks.embedding_models import (
    EmbeddingChoice,
    EmbeddingsUnavailable,
    choose_embeddings,
    local_choice,
)
from chat_service.runbooks.embeddings import CachedEmbedder
from chat_service.runbooks.index import RunbookIndex, SearchResult
from chat_service.runbooks.source import RunbookSource, ShardProblem, ShardReader
from chat_service.runbooks.tool import search_runbooks_tool

if TYPE_CHECKING:
    import redis.asyncio
    from langchain_core.tools import BaseTool

    from chat_service.config.store import ConfigSnapshot, ConfigStore
    from chat_service.secrets import SecretResolver

log = logging.getLogger(__name__)

# Re-reads of a shard that is not there yet, in seconds; then every RETRY_MAX seconds.
RETRY_FIRST = 0.2
RETRY_MAX = 30.0


@dataclass(frozen=True)
class RunbooksState:
    """What /readyz and /api/status show."""

    count: int
    mode: str  # "hybrid" or "bm25"
    reason: str | None  # why vectors are not used (mode "bm25"), else None
    embedding_model: str | None
    shards: int
    problems: tuple[ShardProblem, ...]

    def public(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mode": self.mode,
            "reason": self.reason,
            "embedding_model": self.embedding_model,
            "shards": self.shards,
            "problems": [{"shard": p.shard, "message": p.message} for p in self.problems],
        }


class RunbookService:
    def __init__(
        self,
        reader: ShardReader,
        secrets: SecretResolver,
        *,
        redis: redis.asyncio.Redis | None = None,
        tool_enabled: bool = True,
        vector_retry_seconds: float = 30.0,
    ):
        self.source = RunbookSource(reader)
        self.secrets = secrets
        self.redis = redis
        self.tool_enabled = tool_enabled
        self.vector_retry_seconds = vector_retry_seconds
        self.index = RunbookIndex(None)
        self._namespace: str | None = None
        self._choice: EmbeddingChoice | None = None
        self._index_key: tuple[str, str | None] | None = None
        self._embedding_error: str | None = None
        self._problems: tuple[ShardProblem, ...] = ()
        self._documents: list[RunbookDocument] = []
        self._wanted: AgentConfig | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.warm_up_task: asyncio.Task[None] | None = None
        self._tool = search_runbooks_tool(self.search)
        self.updates = 0  # completed syncs (tests wait on it)

    # -- lifecycle -----------------------------------------------------------------------------------

    def attach(self, config_store: ConfigStore) -> None:
        """Follow the config store: every applied config is synced (call before the store starts watching)."""
        config_store.on_change.append(self._config_changed)

    def start(self, config_store: ConfigStore) -> None:
        """The first sync, with the config loaded at start; and the local model loaded meanwhile."""
        if config_store.loaded:
            self.request_sync(config_store.current.config)
        self.warm_up_task = asyncio.get_running_loop().create_task(
            self.warm_up(), name="ai-ops-runbooks-warm-up"
        )

    def _config_changed(self, _old: ConfigSnapshot | None, new: ConfigSnapshot) -> None:
        self.request_sync(new.config)

    def request_sync(self, config: AgentConfig) -> None:
        self._wanted = config
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="ai-ops-runbooks")

    async def stop(self) -> None:
        if self.warm_up_task is not None:
            self.warm_up_task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None

    async def _wait(self, timeout: float | None) -> bool:
        """True when a new config woke the loop, False when ``timeout`` passed first."""
        if timeout is None:
            await self._wake.wait()
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        pending = False  # some shard must be read again
        delay = RETRY_FIRST
        while True:
            timeout: float | None = None
            if pending:
                timeout = delay
            elif (self.index.vector_error or self._embedding_error) and self._documents:
                timeout = self.vector_retry_seconds
            woken = await self._wait(timeout)
            try:
                if not woken and not pending:
                    await self._retry_vectors()
                    continue
                delay = RETRY_FIRST if woken else min(delay * 2, RETRY_MAX)
                self._wake.clear()
                if self._wanted is not None:
                    pending = await self.sync(self._wanted)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("updating the runbook index failed")
                pending = True

    # -- syncing -------------------------------------------------------------------------------------

    def _choose(self, config: AgentConfig) -> EmbeddingChoice | None:
        """The config's embedding model; None (BM25 only) when it cannot be built, with the reason kept."""
        try:
            choice = choose_embeddings(config.embedding_model, self.secrets)
        except EmbeddingsUnavailable as exc:
            if self._embedding_error != str(exc):
                log.warning("runbook search without vectors: %s", exc)
            self._embedding_error = str(exc)
            return None
        self._embedding_error = None
        return choice

    async def sync(self, config: AgentConfig) -> bool:
        """Bring the index to the runbooks ``config`` names; True while some shard must be read again."""
        choice = self._choose(config)
        key = (config.namespace, choice.fingerprint if choice else None)
        if key != self._index_key:
            # Another namespace or another embedding model (or key): a new index, since vectors of one model
            # do not compare with another's. The embedding cache makes a rebuild for a rotated key cheap.
            embedder = (
                CachedEmbedder(choice.embeddings, choice.model_id, redis=self.redis) if choice else None
            )
            self.index = RunbookIndex(embedder)
            self._index_key = key
            self._choice = choice
        loaded = await self.source.load(config.runbook_shards, config.namespace)
        self._problems = tuple(loaded.problems)
        stats = await self.index.update(loaded.documents)
        self._documents = loaded.documents
        self.updates += 1
        if stats.changed_runbooks:
            log.info(
                "runbook index of %s: %d runbooks, %d changed, %d sections embedded, %s, %.2f s",
                config.namespace,
                stats.runbooks,
                stats.changed_runbooks,
                stats.embedded_sections,
                self.index.mode,
                stats.seconds,
            )
        return loaded.pending

    async def _retry_vectors(self) -> None:
        if self._embedding_error is not None and self._wanted is not None:
            await self.sync(self._wanted)  # the model may be buildable now (its Secret arrived)
            return
        # Same model: an index built anew embeds, in its first update, what failed before.
        fresh = RunbookIndex(self.index.embedder)
        await fresh.update(self._documents)
        if fresh.vector_error is None:
            self.index = fresh
            log.info("runbook search has vectors again")
        else:
            self.index.vector_error = fresh.vector_error

    async def warm_up(self) -> None:
        """Load the local embedding model ahead of the first update (it takes a second or two)."""
        if self._wanted is None or self._wanted.embedding_model is None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(local_choice().embeddings.embed_query, "warm up")

    # -- reading -------------------------------------------------------------------------------------

    async def search(self, query: str, limit: int = 3) -> SearchResult:
        return await self.index.search(query, limit)

    @property
    def documents(self) -> list[RunbookDocument]:
        return list(self.index.documents.values())

    def sections_of(self, doc: RunbookDocument) -> int:
        return len(self.index.sections_of(doc))

    def tools(self) -> list[BaseTool]:
        """The agent's built-in runbook tool, while the namespace has runbooks (and it is not turned off)."""
        return [self._tool] if self.tool_enabled and len(self.index) else []

    def state(self) -> RunbooksState:
        reason = self._embedding_error or self.index.vector_error
        has_vectors = self.index.mode == "hybrid"
        if not len(self.index):
            has_vectors = self.index.embedder is not None and reason is None
        return RunbooksState(
            count=len(self.index),
            mode="hybrid" if has_vectors else "bm25",
            reason=None if has_vectors else reason,
            embedding_model=self._choice.description if self._choice else None,
            shards=len(self.source.shards),
            problems=self._problems,
        )

    def warnings(self) -> list[str]:
        state = self.state()
        found = [f"runbook shard {p.shard}: {p.message}" for p in state.problems]
        if state.mode == "bm25" and state.reason:
            found.append(f"runbook search runs on BM25 only: {state.reason}")
        return found
