"""Runbook retrieval: quality of BM25, vectors and the hybrid side by side, then speed at scale.

Quality on examples/runbooks and the labelled queries of benchmarks/data (the tuning file, and the
held-out file that no tuning used, reported apart): recall@1, recall@3 and MRR over queries that have a
runbook, and abstention (queries labelled null must get "no runbook matches"; the others must not).
Speed: index build time and query latency p50/p95 at 40 runbooks and at 10,000 generated ones, and the time
from a changed runbook to its new text being searchable.

    .venv/bin/python benchmarks/runbook_retrieval.py [--scale 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from chat_service.runbooks.documents import RunbookDocument  # noqa: E402
from chat_service.runbooks.embeddings import CachedEmbedder, LocalEmbeddings  # noqa: E402
from chat_service.runbooks.index import RunbookIndex  # noqa: E402

RUNBOOKS = ROOT / "examples" / "runbooks"
QUERIES = ROOT / "benchmarks" / "data" / "runbook_queries.yaml"
HELD_OUT = ROOT / "benchmarks" / "data" / "runbook_queries_heldout.yaml"
METHODS = {
    "bm25": frozenset({"bm25"}),
    "vectors": frozenset({"vector"}),
    "hybrid": frozenset({"bm25", "vector"}),
}


def load_runbooks() -> list[RunbookDocument]:
    docs = []
    for path in sorted(RUNBOOKS.glob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            if isinstance(manifest, dict) and manifest.get("kind") == "Runbook":
                spec = manifest["spec"]
                docs.append(RunbookDocument.from_entry({"name": manifest["metadata"]["name"], **spec}))
    return docs


def load_queries(path: Path) -> list[tuple[str, str | None]]:
    return [(str(q["query"]), q.get("runbook")) for q in yaml.safe_load(path.read_text())["queries"]]


async def quality(
    index: RunbookIndex, queries: list[tuple[str, str | None]], methods: frozenset[str]
) -> dict[str, float]:
    hits1 = hits3 = 0
    reciprocal = 0.0
    answerable = [q for q in queries if q[1]]
    unanswerable = [q for q in queries if not q[1]]
    false_abstentions = 0
    for query, expected in answerable:
        result = await index.search(query, limit=10, methods=methods)
        if not result.matched:
            false_abstentions += 1
        names = [h.runbook for h in result.hits]
        if names[:1] == [expected]:
            hits1 += 1
        if expected in names[:3]:
            hits3 += 1
        if expected in names:
            reciprocal += 1 / (names.index(expected) + 1)
    abstained = 0
    for query, _ in unanswerable:
        if not (await index.search(query, limit=10, methods=methods)).matched:
            abstained += 1
    n = max(1, len(answerable))
    return {
        "recall@1": hits1 / n,
        "recall@3": hits3 / n,
        "mrr": reciprocal / n,
        "abstain_ok": abstained / max(1, len(unanswerable)),
        "false_abstain": false_abstentions / n,
        "n": len(answerable),
        "n_null": len(unanswerable),
    }


def generated_runbooks(base: list[RunbookDocument], count: int, seed: int = 7) -> list[RunbookDocument]:
    """``count`` distinct runbooks made by recombining the real ones' sections with invented service names."""
    rng = random.Random(seed)
    services = [f"svc-{rng.randrange(10**6):06d}" for _ in range(count)]
    out = []
    for i in range(count):
        a, b = rng.choice(base), rng.choice(base)
        content = (
            f"## Context\nService {services[i]} in team {i % 97}.\n"
            + a.content
            + "\n"
            + b.content[: len(b.content) // 2]
        )
        out.append(
            RunbookDocument(f"gen-{i:05d}", f"{a.title} ({services[i]})", content, a.description, a.tags)
        )
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def speed(
    docs: list[RunbookDocument], queries: list[str], embedder: CachedEmbedder
) -> dict[str, float]:
    index = RunbookIndex(embedder)
    started = time.perf_counter()
    await index.update(docs)
    build = time.perf_counter() - started
    latencies = []
    for query in queries:
        t = time.perf_counter()
        await index.search(query, limit=5)
        latencies.append((time.perf_counter() - t) * 1000)
    changed = RunbookDocument(
        docs[0].name,
        docs[0].title,
        docs[0].content + "\n## Note\nzebracorn quokka",
        docs[0].description,
        docs[0].tags,
    )
    t = time.perf_counter()
    await index.update([changed, *docs[1:]])
    found = (await index.search("zebracorn quokka", limit=1)).hits
    change = time.perf_counter() - t
    assert found and found[0].runbook == docs[0].name
    return {
        "build_s": build,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "change_s": change,
    }


async def main(scale: int) -> int:
    docs = load_runbooks()
    tuning, held_out = load_queries(QUERIES), load_queries(HELD_OUT)
    local = LocalEmbeddings()
    index = RunbookIndex(CachedEmbedder(local, local.model_id))
    await index.update(docs)
    print(f"runbooks: {len(docs)}; queries: {len(tuning)} tuning, {len(held_out)} held out")
    for label, queries in (("tuning", tuning), ("held-out", held_out)):
        print(
            f"\n{label} queries ({sum(1 for q in queries if q[1])} with a runbook, {sum(1 for q in queries if not q[1])} without)"
        )
        print(
            f"{'method':8} {'recall@1':>9} {'recall@3':>9} {'MRR':>6} {'abstain-ok':>11} {'false-abstain':>14}"
        )
        for name, methods in METHODS.items():
            q = await quality(index, queries, methods)
            print(
                f"{name:8} {q['recall@1']:9.3f} {q['recall@3']:9.3f} {q['mrr']:6.3f} {q['abstain_ok']:11.3f} {q['false_abstain']:14.3f}"
            )

    texts = [q for q, _ in tuning]
    print("\nspeed (local embedder, hybrid, limit 5)")
    print(f"{'runbooks':>9} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} {'change->searchable s':>21}")
    for size, corpus in ((len(docs), docs), (scale, generated_runbooks(docs, scale))):
        s = await speed(corpus, texts, CachedEmbedder(local, local.model_id))
        print(f"{size:9d} {s['build_s']:8.2f} {s['p50_ms']:7.2f} {s['p95_ms']:7.2f} {s['change_s']:21.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10_000)
    sys.exit(asyncio.run(main(parser.parse_args().scale)))
