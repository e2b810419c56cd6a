"""Embeddings for the runbook index: a local model that needs no network, and a cache in front of any model.

The local embedder is WordLlama's 256-dimension model, shipped inside the ``wordllama`` wheel (numpy only,
no GPU). Its loader looks for the bundled tokenizer in the wrong folder and would then try a download, so it
is loaded from a private folder holding a copy of that file, with downloads disabled: nothing here ever
fetches a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

LOCAL_MODEL_ID = "wordllama/l2_supercat-256"
_TOKENIZER_FILE = "l2_supercat_tokenizer_config.json"


class LocalEmbeddings(Embeddings):
    """WordLlama from the installed wheel, loaded once per process on first use."""

    model_id = LOCAL_MODEL_ID

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import wordllama
                from wordllama import WordLlama

                package = Path(wordllama.__file__).parent
                folder = Path(tempfile.mkdtemp(prefix="ai-ops-wordllama-"))
                (folder / "tokenizers").mkdir()
                shutil.copy(package / "tokenizers" / _TOKENIZER_FILE, folder / "tokenizers" / _TOKENIZER_FILE)
                self._model = WordLlama.load(cache_dir=folder, disable_download=True)
        return self._model

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""
        if not texts:
            return np.zeros((0, 256), dtype=np.float32)
        vectors = np.asarray(self._load().embed(list(texts), norm=True), dtype=np.float32)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


# OpenAI's embedding models (and Azure's) take at most 8191 tokens per input and 300,000 per request. Their
# tokenizers never make more tokens than a text has UTF-8 bytes, so bounding bytes bounds tokens with no
# tokenizer (which would have to be downloaded). Sections are at most 4000 characters: only text of many
# multi-byte characters, a huge title or a long query is ever cut, and only for its vector.
MAX_INPUT_BYTES = 8000
MAX_REQUEST_BYTES = 250_000


def bounded_input(text: str, limit: int = MAX_INPUT_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def request_batches(texts: Sequence[str], limit: int = MAX_REQUEST_BYTES) -> list[list[str]]:
    """``texts`` in order, in consecutive groups of at most ``limit`` UTF-8 bytes (a longer text alone)."""
    batches: list[list[str]] = []
    size = 0
    for text in texts:
        length = len(text.encode())
        if not batches or size + length > limit:
            batches.append([])
            size = 0
        batches[-1].append(text)
        size += length
    return batches


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


class CachedEmbedder:
    """Any LangChain ``Embeddings`` with a cache by model and content hash (Redis when given, else memory),
    so replicas and restarts never embed the same text twice.

    LangChain's CacheBackedEmbeddings lives in langchain-classic, which the chat service does not install;
    this is the few lines of it we need, async, returning numpy rows for the index.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        model_id: str,
        *,
        redis: redis.asyncio.Redis | None = None,
        prefix: str = "ai-ops:embedding:",
        ttl_seconds: int = 30 * 86400,
        memory_entries: int = 200_000,
    ) -> None:
        self.embeddings = embeddings
        self.model_id = model_id
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_entries = memory_entries
        self.embedded_texts = 0  # texts that reached the model (the rest came from the cache)

    def _key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()
        return f"{self.prefix}{self.model_id}:{digest}"

    def _remember(self, key: str, value: bytes) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)

    async def _cached(self, keys: list[str]) -> list[bytes | None]:
        found: list[bytes | None] = [self._memory.get(k) for k in keys]
        missing = [i for i, v in enumerate(found) if v is None]
        if missing and self.redis is not None:
            try:
                values = await self.redis.mget([keys[i] for i in missing])
            except Exception as exc:  # a cache that is down costs embeddings, not the index
                log.warning("embedding cache unavailable: %s", type(exc).__name__)
                values = [None] * len(missing)
            for i, value in zip(missing, values, strict=True):
                if isinstance(value, bytes):
                    found[i] = value
                    self._remember(keys[i], value)
        return found

    async def _store(self, pairs: list[tuple[str, bytes]]) -> None:
        for key, value in pairs:
            self._remember(key, value)
        if self.redis is None or not pairs:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, value in pairs:
                    pipe.set(key, value, ex=self.ttl_seconds)
                await pipe.execute()
        except Exception as exc:
            log.warning("embedding cache unavailable: %s", type(exc).__name__)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length rows for ``texts``; raises what the model raises when it is unreachable."""
        keys = [self._key(t) for t in texts]
        cached = await self._cached(keys)
        todo = [i for i, v in enumerate(cached) if v is None]
        rows: list[np.ndarray | None] = [
            np.frombuffer(v, dtype=np.float32) if v is not None else None for v in cached
        ]
        if todo:
            new = await self._embed_uncached([texts[i] for i in todo])
            self.embedded_texts += len(todo)
            pairs = []
            for i, vector in zip(todo, new, strict=True):
                rows[i] = vector
                pairs.append((keys[i], vector.tobytes()))
            await self._store(pairs)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([r for r in rows if r is not None])

    async def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        if isinstance(self.embeddings, LocalEmbeddings):
            # CPU-bound and fast: a worker thread keeps the event loop serving.
            return await asyncio.to_thread(self.embeddings.embed_array, texts)
        vectors: list[list[float]] = []
        for batch in request_batches([bounded_input(t) for t in texts]):
            vectors.extend(await self.embeddings.aembed_documents(batch))
        return _normalized(np.asarray(vectors, dtype=np.float32))

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]
