"""Runbook retrieval: quality of BM25, vectors and the hybrid side by side, then speed at scale.

Quality on examples/runbooks and the labelled queries of benchmarks/data (the tuning file, and the
held-out file that no tuning used, reported apart), per method:
- ranking: recall@1, recall@3 and MRR over the queries that have a runbook, every query answered (how well
  each method orders the runbooks, the same question for all three);
- served: the search as the service runs it, with that method's abstention bar (a BM25-only search is what
  the service runs while no embedding model answers, with its own, lower bar): recall@3, and abstention
  (queries labelled null must get "no runbook matches"; the others must not).
Speed: index build time and query latency p50/p95 at 40 of the example runbooks, at all of them and at
10,000 generated ones, and the time from a changed runbook to its new text being searchable (in the index
alone).

With ``--end-to-end``, also the time from a Runbook applied, changed or deleted in the API server to the
chat's search showing it (median and max over ``--changes`` of each): the Kubernetes API emulator of
tests/harness and the chat app (reading the agent ConfigMap and the shards through ``KubeConfigMapSource``,
as in a pod, and polled on ``/api/runbooks/search``) in this process, the operator as its own process
(``ai-ops operator``, production settings), the example runbooks applied first.

    .venv/bin/python benchmarks/runbook_retrieval.py [--scale 10000] [--end-to-end [--changes 10]]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def example_manifests() -> list[dict[str, Any]]:
    manifests = []
    for path in sorted(RUNBOOKS.glob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            if isinstance(manifest, dict) and manifest.get("kind") == "Runbook":
                manifests.append(manifest)
    return manifests


def load_runbooks() -> list[RunbookDocument]:
    return [
        RunbookDocument.from_entry({"name": m["metadata"]["name"], **m["spec"]}) for m in example_manifests()
    ]


def load_queries(path: Path) -> list[tuple[str, str | None]]:
    return [(str(q["query"]), q.get("runbook")) for q in yaml.safe_load(path.read_text())["queries"]]


async def ranking(
    index: RunbookIndex, queries: list[tuple[str, str | None]], methods: frozenset[str]
) -> dict[str, float]:
    """``quality`` with every query answered: the index's abstention bars lowered for the call."""
    bars = (index.min_similarity, index.min_coverage, index.min_coverage_without_vectors)
    index.min_similarity, index.min_coverage, index.min_coverage_without_vectors = -2.0, 0.0, 0.0
    try:
        return await quality(index, queries, methods)
    finally:
        index.min_similarity, index.min_coverage, index.min_coverage_without_vectors = bars


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


# --- end to end: API server -> operator -> agent ConfigMap and shards -> the chat's index ----------------

NAMESPACE = "bench"
AI = "ai-ops.dev/v1alpha1"
CEILING = 120.0  # seconds: a step that takes longer is a failure, not a figure
Hits = list[dict[str, Any]]


def bench_runbook(name: str, word: str) -> dict[str, Any]:
    return {
        "apiVersion": AI,
        "kind": "Runbook",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"title": f"Bench {name}", "content": bench_content(word)},
    }


def bench_content(word: str) -> str:
    return f"## Symptoms\nThe {word} service answers 503.\n## Resolution\nRestart the {word} pods.\n"


def on_top(name: str, word: str) -> Callable[[Hits], bool]:
    return lambda hits: bool(hits) and hits[0]["runbook"] == name and word in hits[0]["text"]


def absent(name: str) -> Callable[[Hits], bool]:
    return lambda hits: name not in [h["runbook"] for h in hits]


class ChatProbe:
    """The chat's search, polled until it answers as expected; fails past CEILING or if the operator died."""

    def __init__(self, client: Any, operator: subprocess.Popen[bytes], log_path: Path) -> None:
        self.client = client
        self.operator = operator
        self.log_path = log_path

    def check_operator(self) -> None:
        if self.operator.poll() is not None:
            raise SystemExit(f"the operator exited; see {self.log_path}")

    async def seconds_until(self, query: str, check: Callable[[Hits], bool], since: float) -> float:
        while True:
            response = await self.client.get("/api/runbooks/search", params={"q": query, "limit": 5})
            if check(response.json()["hits"]):
                return time.monotonic() - since
            if time.monotonic() - since > CEILING:
                raise SystemExit(f"{query!r} not answered after {CEILING:.0f} s; see {self.log_path}")
            self.check_operator()
            await asyncio.sleep(0.01)

    async def wait_for_count(self, count: int) -> float:
        began = time.monotonic()
        while len((await self.client.get("/api/runbooks")).json()["runbooks"]) < count:
            if time.monotonic() - began > CEILING:
                raise SystemExit(f"{count} runbooks never reached the chat; see {self.log_path}")
            self.check_operator()
            await asyncio.sleep(0.1)
        return time.monotonic() - began


async def measure_writes(k8s: Any, probe: ChatProbe, changes: int) -> dict[str, list[float]]:
    """Seconds from each write (the emulator stores it when the call returns) to the chat's search
    answering accordingly, by kind of write. Each runbook carries a word no other has."""
    figures: dict[str, list[float]] = {"applied": [], "changed": [], "deleted": []}
    words: dict[str, str] = {}
    for i in range(changes):
        name = f"bench-{i:02d}"
        words[name] = f"zebracorn{i:02d}"
        began = time.monotonic()
        k8s.create(bench_runbook(name, words[name]))
        figures["applied"].append(await probe.seconds_until(words[name], on_top(name, words[name]), began))
    for i in range(changes):
        words["bench-00"] = f"quokkafish{i:02d}"
        began = time.monotonic()
        k8s.patch(
            AI, "runbooks", NAMESPACE, "bench-00", {"spec": {"content": bench_content(words["bench-00"])}}
        )
        figures["changed"].append(
            await probe.seconds_until(words["bench-00"], on_top("bench-00", words["bench-00"]), began)
        )
    for name, word in words.items():
        began = time.monotonic()
        k8s.delete(AI, "runbooks", NAMESPACE, name)
        figures["deleted"].append(await probe.seconds_until(word, absent(name), began))
    return figures


async def end_to_end(changes: int) -> dict[str, list[float]]:
    import kmock

    from chat_service.app import create_app
    from chat_service.config.kubernetes import KubeConfigMapSource
    from tests.harness.emulator import EmulatorHandle, KubernetesApiEmulator, write_kubeconfig
    from tests.support.chat_support import running, settings_for, write_config
    from tests.support.runbooks import config_with_runbooks

    # The chat, the emulator and httpx log every request and reload at INFO (wordllama's import set the
    # root logger to INFO): only warnings may interleave with the figures.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("ai_ops.chat").setLevel(logging.ERROR)  # its warning that no API tokens are set
    work = Path(tempfile.mkdtemp(prefix="ai-ops-bench-runbooks-"))
    log_path = work / "operator.log"

    async with KubernetesApiEmulator() as emulator, kmock.Server(emulator) as server:
        trimmer = asyncio.create_task(emulator.keep_recent_requests())
        url = str(server.url).rstrip("/")
        k8s = EmulatorHandle(emulator, url, write_kubeconfig(url, work))
        k8s.seed_namespace(NAMESPACE)
        examples = example_manifests()
        for manifest in examples:
            k8s.create({**manifest, "metadata": {**manifest["metadata"], "namespace": NAMESPACE}})
        env = {**os.environ, "AI_OPS_WATCH_NAMESPACES": NAMESPACE, "AI_OPS_LOG_LEVEL": "WARNING"}
        argv = [sys.executable, "-m", "ai_ops_cli", "operator", "--kubeconfig", str(k8s.kubeconfig_path)]
        with open(log_path, "wb") as log:
            operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        config_path = work / "agent-config.json"
        write_config(config_path, config_with_runbooks([], namespace=NAMESPACE))
        source = KubeConfigMapSource(url, NAMESPACE, "ai-ops-agent-config")
        try:
            async with (
                running(create_app(settings_for(config_path), kube_source=source)) as app,
                app.client() as client,
            ):
                probe = ChatProbe(client, operator, log_path)
                took = await probe.wait_for_count(len(examples))
                print(
                    f"\n{len(examples)} example runbooks in the chat {took:.1f} s after the operator started"
                )
                return await measure_writes(k8s, probe, changes)
        finally:
            trimmer.cancel()
            operator.terminate()
            try:
                operator.wait(10)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()


async def main(scale: int, e2e_changes: int | None) -> int:
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
        print(f"{'':8} {'ranking':^26} | {'served':^37}")
        print(
            f"{'method':8} {'recall@1':>9} {'recall@3':>9} {'MRR':>6} | {'recall@3':>9} {'abstain-ok':>11}"
            f" {'false-abstain':>14}"
        )
        for name, methods in METHODS.items():
            r = await ranking(index, queries, methods)
            q = await quality(index, queries, methods)
            print(
                f"{name:8} {r['recall@1']:9.3f} {r['recall@3']:9.3f} {r['mrr']:6.3f} | {q['recall@3']:9.3f}"
                f" {q['abstain_ok']:11.3f} {q['false_abstain']:14.3f}"
            )

    texts = [q for q, _ in tuning]
    print("\nspeed (local embedder, hybrid, limit 5)")
    print(f"{'runbooks':>9} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} {'change->searchable s':>21}")
    in_process: list[float] = []
    for size, corpus in ((40, docs[:40]), (len(docs), docs), (scale, generated_runbooks(docs, scale))):
        s = await speed(corpus, texts, CachedEmbedder(local, local.model_id))
        print(f"{size:9d} {s['build_s']:8.2f} {s['p50_ms']:7.2f} {s['p95_ms']:7.2f} {s['change_s']:21.2f}")
        in_process.append(s["change_s"])

    if e2e_changes:
        figures = await end_to_end(e2e_changes)
        print(
            f"\nchange -> searchable, end to end ({len(docs)} example runbooks and the bench ones; target 2 s):"
            f"\nAPI emulator -> operator process -> shard and agent ConfigMaps -> chat (KubeConfigMapSource)"
        )
        print(f"{'':38} {'median s':>9} {'max s':>7} {'writes':>7}")
        for kind, values in figures.items():
            label = f"{kind} -> {'gone' if kind == 'deleted' else 'searchable'} in the chat"
            print(f"{label:38} {statistics.median(values):9.2f} {max(values):7.2f} {len(values):7d}")
        print(f"{'changed -> searchable, the index alone':38} {in_process[1]:9.2f} {'':7} {1:7d}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10_000)
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also measure Runbook applied/changed/deleted -> searchable through emulator, operator and chat",
    )
    parser.add_argument("--changes", type=int, default=10, help="writes of each kind for --end-to-end")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.scale, args.changes if args.end_to_end else None)))
