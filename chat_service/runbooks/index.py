"""Hybrid search over runbook sections: BM25 and vector similarity fused by reciprocal rank.

BM25 (bm25s) finds the exact words people and alerts use (alert names, error strings, commands); vectors find
paraphrases ("my app keeps restarting" for CrashLoopBackOff). Reciprocal rank fusion combines the two rank
lists without calibrating their scores against each other. Because fused ranks always produce a first hit,
an abstention rule on the raw signals decides whether anything matches at all: an assistant that says "no
runbook matches" is better than one that cites the wrong procedure.

An exact in-memory search: a matrix product over every section is a few milliseconds at 10,000 runbooks, so
an approximate index would add a dependency and recall loss for nothing (benchmarks/runbook_retrieval.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import bm25s
import numpy as np
import Stemmer

from chat_service.runbooks.documents import RunbookDocument, Section, split_sections
from chat_service.runbooks.embeddings import CachedEmbedder

log = logging.getLogger(__name__)

RRF_K = 60
# Tuned on the tuning queries of benchmarks/data (never on the held-out file): below both, nothing matches.
MIN_SIMILARITY = 0.45
MIN_COVERAGE = 0.5

_stemmer = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stemmed words without English stop words (the same for sections and queries)."""
    tokens = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_stemmer, return_ids=False, show_progress=False
    )
    return [list(t) for t in tokens]


@dataclass(frozen=True)
class SearchHit:
    runbook: str
    title: str
    section: str
    score: float
    text: str


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    # False: the best candidates were too weak; ``hits`` is empty and the answer is "no runbook matches".
    matched: bool
    mode: str  # "hybrid", or "bm25" while vectors are unavailable
    similarity: float = 0.0
    coverage: float = 0.0


@dataclass
class UpdateStats:
    runbooks: int = 0
    sections: int = 0
    embedded_sections: int = 0  # sections whose text reached the embedding model (not from the cache)
    changed_runbooks: int = 0
    seconds: float = 0.0


@dataclass
class _State:
    documents: dict[str, RunbookDocument] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    bm25: bm25s.BM25 | None = None
    vectors: np.ndarray | None = None  # one unit row per section, or None without an embedder


class RunbookIndex:
    """The searchable runbooks of one namespace; ``update`` with the full current set, ``search`` anytime.

    Updates swap a new state in one assignment, so a search never sees a half-built index.
    """

    def __init__(
        self,
        embedder: CachedEmbedder | None,
        *,
        min_similarity: float = MIN_SIMILARITY,
        min_coverage: float = MIN_COVERAGE,
    ) -> None:
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.min_coverage = min_coverage
        self._state = _State()
        self._section_vectors: dict[str, np.ndarray] = {}  # section content hash -> unit row
        self._section_tokens: dict[str, list[str]] = {}
        self.vector_error: str | None = None  # why vectors are unavailable (the index then runs on BM25)

    @property
    def documents(self) -> dict[str, RunbookDocument]:
        return self._state.documents

    @property
    def mode(self) -> str:
        return "hybrid" if self._state.vectors is not None else "bm25"

    def __len__(self) -> int:
        return len(self._state.documents)

    async def update(self, documents: Sequence[RunbookDocument]) -> UpdateStats:
        """Make the index hold exactly ``documents``; only sections whose text changed are embedded."""
        started = time.perf_counter()
        old = self._state.documents
        by_name = {d.name: d for d in documents}
        changed = sum(1 for d in documents if d.name not in old or old[d.name].content_hash != d.content_hash)
        changed += sum(1 for name in old if name not in by_name)
        sections = [s for d in sorted(by_name.values(), key=lambda d: d.name) for s in split_sections(d)]
        hashes = [s.content_hash for s in sections]

        new_tokens = [i for i, h in enumerate(hashes) if h not in self._section_tokens]
        fresh = tokenize([sections[i].indexed_text for i in new_tokens])
        for i, section_tokens in zip(new_tokens, fresh, strict=True):
            self._section_tokens[hashes[i]] = section_tokens
        tokens = [self._section_tokens[h] or ["\x00"] for h in hashes]
        bm25: bm25s.BM25 | None = None
        if sections:
            bm25 = bm25s.BM25()
            bm25.index(tokens, show_progress=False)

        stats = UpdateStats(runbooks=len(by_name), sections=len(sections), changed_runbooks=changed)
        vectors = await self._vectors(sections, hashes, stats)
        self._state = _State(by_name, sections, tokens, bm25, vectors)
        live = set(hashes)
        self._section_tokens = {h: t for h, t in self._section_tokens.items() if h in live}
        self._section_vectors = {h: v for h, v in self._section_vectors.items() if h in live}
        stats.seconds = time.perf_counter() - started
        return stats

    async def _vectors(
        self, sections: list[Section], hashes: list[str], stats: UpdateStats
    ) -> np.ndarray | None:
        if self.embedder is None or not sections:
            return None
        todo = [i for i, h in enumerate(hashes) if h not in self._section_vectors]
        if todo:
            before = self.embedder.embedded_texts
            try:
                rows = await self.embedder.embed([sections[i].indexed_text for i in todo])
            except Exception as exc:  # a model that is down leaves BM25 working; the next update retries
                self.vector_error = f"embedding model unavailable: {type(exc).__name__}: {exc}"[:300]
                log.warning("runbook index without vectors: %s", self.vector_error)
                return None
            stats.embedded_sections = self.embedder.embedded_texts - before
            for i, row in zip(todo, rows, strict=True):
                self._section_vectors[hashes[i]] = row
        self.vector_error = None
        return np.vstack([self._section_vectors[h] for h in hashes])

    async def search(self, query: str, limit: int = 5) -> SearchResult:
        """The best section of each of the best ``limit`` runbooks, or no match."""
        state = self._state
        mode = "hybrid" if state.vectors is not None else "bm25"
        if not state.sections or not query.strip():
            return SearchResult((), False, mode)
        limit = max(1, min(limit, 50))
        depth = min(len(state.sections), max(50, limit * 10))

        query_tokens = tokenize([query])[0]
        bm25_order: list[int] = []
        coverage = 0.0
        if state.bm25 is not None and query_tokens:
            scores = state.bm25.get_scores(query_tokens)
            bm25_order = [int(i) for i in np.argsort(-scores)[:depth] if scores[i] > 0]
            if bm25_order:
                best = set(state.tokens[bm25_order[0]])
                coverage = sum(1 for t in set(query_tokens) if t in best) / len(set(query_tokens))

        vector_order: list[int] = []
        similarity = 0.0
        if state.vectors is not None and self.embedder is not None:
            try:
                query_vector = await self.embedder.embed_query(query)
            except Exception as exc:
                log.warning("runbook search without vectors for this query: %s", type(exc).__name__)
                mode = "bm25"
            else:
                sims = state.vectors @ query_vector
                top = np.argpartition(-sims, depth - 1)[:depth] if depth < len(sims) else np.arange(len(sims))
                vector_order = [int(i) for i in top[np.argsort(-sims[top])]]
                similarity = float(sims[vector_order[0]])

        if similarity < self.min_similarity and coverage < self.min_coverage:
            return SearchResult((), False, mode, similarity, coverage)

        fused: dict[int, float] = {}
        for order in (bm25_order, vector_order):
            for rank, index in enumerate(order):
                fused[index] = fused.get(index, 0.0) + 1.0 / (RRF_K + rank + 1)
        best_per_runbook: dict[str, tuple[float, int]] = {}
        for index, score in fused.items():
            name = state.sections[index].runbook
            if name not in best_per_runbook or score > best_per_runbook[name][0]:
                best_per_runbook[name] = (score, index)
        ranked = sorted(best_per_runbook.values(), key=lambda pair: (-pair[0], pair[1]))[:limit]
        hits = tuple(
            SearchHit(
                runbook=state.sections[i].runbook,
                title=state.sections[i].title,
                section=state.sections[i].heading,
                score=round(score, 6),
                text=state.sections[i].text,
            )
            for score, i in ranked
        )
        return SearchResult(hits, True, mode, similarity, coverage)
