"""Per-turn latency as one conversation grows, with Redis: turn 1, 50 and 200, side by side in one run for a
model without middleware and one with the summarization middleware (which keeps the history bounded).

Each service is an ``ai-ops chat`` process with Redis conversations; the fake LLM answers at once. The two
conversations advance in lockstep (a turn on one, then on the other) so machine noise hits both alike.
Target: turn 200 within 1.5x of turn 1 (summarization may be configured).

    .venv/bin/python benchmarks/history_growth.py [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOG_DIR, Child, free_port, start_chat_service, start_fake_llm


def write_config(path: Path, llm_url: str, summarize: bool) -> None:
    from ai_ops_api.agent_config import AgentConfig, MiddlewareEntry, ModelEntry, ProviderEntry

    provider = ProviderEntry(name="p", type="openai_compatible", base_url=llm_url.removesuffix("/v1"))
    middleware = (
        (
            MiddlewareEntry(
                name="summarize",
                type="summarization",
                priority=10,
                config={
                    "model": "summarizer",
                    "triggerMessages": 24,
                    "keepMessages": 12,
                    "triggerTokens": None,
                },
            ),
        )
        if summarize
        else ()
    )
    models = (
        ModelEntry(name="main", model="fake", provider=provider, middleware=middleware),
        ModelEntry(name="summarizer", model="summarizer", provider=provider),
    )
    path.write_text(AgentConfig(namespace="bench", default_model="main", models=models).finalize().to_json())


def window(latencies: list[float], turn: int, width: int = 2) -> float:
    """Median latency of the turns around ``turn`` (1-based), in ms."""
    low, high = max(1, turn - width), min(len(latencies), turn + width)
    return statistics.median(latencies[low - 1 : high]) * 1000


async def run(turns: int) -> None:
    import httpx

    from tests.harness.redis_server import RedisServer

    llm_child, llm_url = start_fake_llm()
    redis = RedisServer()
    redis.start()
    children: list[Child] = [llm_child]
    try:
        services: dict[str, int] = {}
        for label, summarize in (("no middleware", False), ("summarization (24 -> keep 12)", True)):
            config = LOG_DIR / f"agent-config-{int(summarize)}.json"
            write_config(config, llm_url, summarize)
            port = free_port()
            children.append(start_chat_service(config, port, {"AI_OPS_REDIS_URL": redis.url}))
            services[label] = port
        clients = {
            label: httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120)
            for label, port in services.items()
        }
        threads = {label: f"history-{uuid.uuid4().hex[:8]}" for label in services}
        latencies: dict[str, list[float]] = {label: [] for label in services}
        for client in clients.values():  # warm up: graphs compiled, connections open
            for _ in range(5):
                (await client.post("/api/chat", json={"message": "warm up"})).raise_for_status()
        for turn in range(1, turns + 1):
            for label, client in clients.items():
                started = time.perf_counter()
                response = await client.post(
                    "/api/chat", json={"message": f"message number {turn}", "thread_id": threads[label]}
                )
                response.raise_for_status()
                latencies[label].append(time.perf_counter() - started)
        print(f"history growth: one conversation of {turns} turns per service, Redis, fake LLM without delay")
        checkpoints = [t for t in (1, 50, 200) if t <= turns]
        for label, values in latencies.items():
            kept = len((await clients[label].get(f"/api/threads/{threads[label]}")).json()["messages"])
            figures = "   ".join(f"turn {t}: {window(values, t):6.2f} ms" for t in checkpoints)
            last = checkpoints[-1]
            print(
                f"  {label:<32} {figures}   turn {last}/turn 1: {window(values, last) / window(values, 1):.2f}x"
                f"   (messages kept: {kept})"
            )
        for client in clients.values():
            await client.aclose()
    finally:
        for child in reversed(children):
            child.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.turns))


if __name__ == "__main__":
    main()
