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
# bm25s sets its own logger to DEBUG and logs every index build; the service's log level decides, not it.
logging.getLogger("bm25s").setLevel(logging.WARNING)

RRF_K = 60
# Tuned on the tuning queries of benchmarks/data (never on the held-out file): below both, nothing matches.
MIN_SIMILARITY = 0.42
MIN_COVERAGE = 0.55
# Without vectors (no embedding model answers) keywords are the only signal: the hybrid's coverage bar
# would refuse most paraphrases (a 0.28 held-out recall@3), so the bar is lower, tuned the same way.
MIN_COVERAGE_WITHOUT_VECTORS = 0.3

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
class _Segment:
    """BM25 and vectors over a fixed list of sections."""

    sections: list[Section]
    tokens: list[list[str]]
    bm25: bm25s.BM25 | None
    vectors: np.ndarray | None  # one unit row per section, or None without an embedder


@dataclass
class _State:
    documents: dict[str, RunbookDocument] = field(default_factory=dict)
    # The bulk of the sections, built in one go, and the sections of runbooks changed since, in a small
    # overlay: a change to one runbook among thousands rebuilds only the overlay (milliseconds), and the
    # base sections of changed or deleted runbooks are masked out until the next full build.
    base: _Segment | None = None
    base_live: np.ndarray | None = None
    overlay: _Segment | None = None
    dirty: frozenset[str] = frozenset()

    @property
    def segments(self) -> list[tuple[_Segment, np.ndarray | None]]:
        out: list[tuple[_Segment, np.ndarray | None]] = []
        if self.base is not None:
            out.append((self.base, self.base_live))
        if self.overlay is not None:
            out.append((self.overlay, None))
        return out

    @property
    def has_vectors(self) -> bool:
        return any(segment.vectors is not None for segment, _ in self.segments)


# A full rebuild once the overlay holds this share of all sections (and at least OVERLAY_MIN of them).
OVERLAY_SHARE = 0.05
OVERLAY_MIN = 500


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
        min_coverage_without_vectors: float = MIN_COVERAGE_WITHOUT_VECTORS,
    ) -> None:
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.min_coverage = min_coverage
        self.min_coverage_without_vectors = min_coverage_without_vectors
        self._state = _State()
        self._doc_sections: dict[str, list[Section]] = {}  # runbook content hash -> its sections
        self._section_vectors: dict[str, np.ndarray] = {}  # section content hash -> unit row
        self._section_tokens: dict[str, list[str]] = {}
        self.vector_error: str | None = None  # why vectors are unavailable (the index then runs on BM25)

    @property
    def documents(self) -> dict[str, RunbookDocument]:
        return self._state.documents

    @property
    def mode(self) -> str:
        return "hybrid" if self._state.has_vectors else "bm25"

    def __len__(self) -> int:
        return len(self._state.documents)

    def sections_of(self, doc: RunbookDocument) -> list[Section]:
        """The sections ``doc`` is indexed as."""
        return self._sections_of(doc)

    def _sections_of(self, doc: RunbookDocument) -> list[Section]:
        key = doc.content_hash + doc.name
        sections = self._doc_sections.get(key)
        if sections is None:
            sections = self._doc_sections[key] = split_sections(doc)
        return sections

    async def update(self, documents: Sequence[RunbookDocument]) -> UpdateStats:
        """Make the index hold exactly ``documents``; only sections whose text changed are embedded."""
        started = time.perf_counter()
        old = self._state
        by_name = {d.name: d for d in sorted(documents, key=lambda d: d.name)}
        changed = {
            d.name
            for d in by_name.values()
            if d.name not in old.documents or old.documents[d.name].content_hash != d.content_hash
        } | {name for name in old.documents if name not in by_name}
        stats = UpdateStats(runbooks=len(by_name), changed_runbooks=len(changed))
        dirty = old.dirty | changed
        overlay_sections = [
            s for name in sorted(dirty & by_name.keys()) for s in self._sections_of(by_name[name])
        ]
        base_size = len(old.base.sections) if old.base is not None else 0
        full = old.base is None or len(overlay_sections) > max(OVERLAY_MIN, OVERLAY_SHARE * base_size)
        if full:
            sections = [s for d in by_name.values() for s in self._sections_of(d)]
            base = await self._segment(sections, stats)
            state = _State(by_name, base, None, None, frozenset())
            live_keys = {s.content_hash for s in sections}
            self._section_tokens = {h: v for h, v in self._section_tokens.items() if h in live_keys}
            self._section_vectors = {h: v for h, v in self._section_vectors.items() if h in live_keys}
            live_docs = {d.content_hash + d.name for d in by_name.values()}
            self._doc_sections = {k: v for k, v in self._doc_sections.items() if k in live_docs}
            stats.sections = len(sections)
        elif not changed:
            state = _State(by_name, old.base, old.base_live, old.overlay, old.dirty)
            stats.sections = base_size + (len(old.overlay.sections) if old.overlay else 0)
        else:
            assert old.base is not None
            live = np.fromiter((s.runbook not in dirty for s in old.base.sections), dtype=bool)
            overlay = await self._segment(overlay_sections, stats) if overlay_sections else None
            state = _State(by_name, old.base, live, overlay, frozenset(dirty))
            stats.sections = int(live.sum()) + len(overlay_sections)
        self._state = state
        stats.seconds = time.perf_counter() - started
        return stats

    async def _segment(self, sections: list[Section], stats: UpdateStats) -> _Segment:
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
        vectors = await self._vectors(sections, hashes, stats)
        return _Segment(sections, tokens, bm25, vectors)

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
            stats.embedded_sections += self.embedder.embedded_texts - before
            for i, row in zip(todo, rows, strict=True):
                self._section_vectors[hashes[i]] = row
        self.vector_error = None
        return np.vstack([self._section_vectors[h] for h in hashes])

    async def search(
        self, query: str, limit: int = 5, methods: frozenset[str] = frozenset({"bm25", "vector"})
    ) -> SearchResult:
        """The best section of each of the best ``limit`` runbooks, or no match.

        ``methods`` narrows the search to one signal, for measuring each against the fusion.
        """
        state = self._state
        mode = "hybrid" if state.has_vectors else "bm25"
        segments = state.segments
        if not segments or not query.strip():
            return SearchResult((), False, mode)
        limit = max(1, min(limit, 50))
        depth = max(50, limit * 10)

        # Candidates as (raw score, segment number, section number), best first, per signal.
        query_tokens = tokenize([query])[0]
        bm25_hits: list[tuple[float, int, int]] = []
        if query_tokens and "bm25" in methods:
            for number, (segment, live) in enumerate(segments):
                if segment.bm25 is None:
                    continue
                scores = segment.bm25.get_scores(query_tokens)
                if live is not None:
                    scores = scores * live
                bm25_hits.extend(
                    (float(scores[i]), number, int(i)) for i in _top(scores, depth) if scores[i] > 0
                )
            bm25_hits.sort(key=lambda hit: -hit[0])
            bm25_hits = bm25_hits[:depth]
        coverage = 0.0
        if bm25_hits:
            _, number, index = bm25_hits[0]
            best = set(segments[number][0].tokens[index])
            unique = set(query_tokens)
            coverage = sum(1 for t in unique if t in best) / len(unique)

        vector_hits: list[tuple[float, int, int]] = []
        if state.has_vectors and self.embedder is not None and "vector" in methods:
            try:
                query_vector = await self.embedder.embed_query(query)
            except Exception as exc:
                log.warning("runbook search without vectors for this query: %s", type(exc).__name__)
                mode = "bm25"
            else:
                for number, (segment, live) in enumerate(segments):
                    if segment.vectors is None:
                        continue
                    sims = segment.vectors @ query_vector
                    if live is not None:
                        sims = np.where(live, sims, -1.0)
                    vector_hits.extend(
                        (float(sims[i]), number, int(i)) for i in _top(sims, depth) if sims[i] > -1.0
                    )
                vector_hits.sort(key=lambda hit: -hit[0])
                vector_hits = vector_hits[:depth]
        similarity = vector_hits[0][0] if vector_hits else 0.0

        if vector_hits:
            weak = similarity < self.min_similarity and coverage < self.min_coverage
        else:
            weak = coverage < self.min_coverage_without_vectors
        if weak:
            return SearchResult((), False, mode, similarity, coverage)

        fused: dict[tuple[int, int], float] = {}
        for candidates in (bm25_hits, vector_hits):
            for rank, (_, number, index) in enumerate(candidates):
                fused[number, index] = fused.get((number, index), 0.0) + 1.0 / (RRF_K + rank + 1)
        best_per_runbook: dict[str, tuple[float, Section]] = {}
        for (number, index), score in fused.items():
            section = segments[number][0].sections[index]
            kept = best_per_runbook.get(section.runbook)
            if kept is None or score > kept[0]:
                best_per_runbook[section.runbook] = (score, section)
        ranked = sorted(best_per_runbook.values(), key=lambda pair: (-pair[0], pair[1].runbook))[:limit]
        hits = tuple(
            SearchHit(section.runbook, section.title, section.heading, round(score, 6), section.text)
            for score, section in ranked
        )
        return SearchResult(hits, True, mode, similarity, coverage)


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, best first (a partial sort: the full one costs more)."""
    if count >= len(scores):
        return np.argsort(-scores)
    top = np.argpartition(-scores, count - 1)[:count]
    return top[np.argsort(-scores[top])]
