"""What the chat service costs on top of the agent, measured side by side in one run.

(a) a bare ``ChatOpenAI`` call; (b) a minimal FastAPI + ``create_agent`` + in-memory checkpointer endpoint, as
a user would write it by hand; (c) our ``/api/chat`` with Redis conversations, bearer auth, metrics and a
three-middleware chain (logging, model_retry, pii). All against the scripted OpenAI-compatible server with no
delay; every server in its own process; a new conversation per request. Target: (c) within 1.25x of (b).

    .venv/bin/python benchmarks/chat_overhead.py [--requests 300] [--concurrency 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under PYTHONSAFEPATH (as `make` runs Python)

from _common import LOG_DIR, PYTHON, Child, Stats, free_port, measure, start_chat_service, start_fake_llm
from pydantic import BaseModel

TOKEN = "bench-token-0123456789"


class Body(BaseModel):
    message: str
    thread_id: str


def serve_minimal(port: int, llm_url: str) -> None:
    """(b): the hand-written baseline."""
    import uvicorn
    from fastapi import FastAPI
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.memory import InMemorySaver

    agent = create_agent(
        ChatOpenAI(model="fake", base_url=llm_url, api_key="x", max_retries=0),
        tools=[],
        system_prompt="You are helpful.",
        checkpointer=InMemorySaver(),
    )
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/chat")
    async def chat(body: Body) -> dict[str, str]:
        result = await agent.ainvoke(
            {"messages": [{"role": "user", "content": body.message}]},
            {"configurable": {"thread_id": body.thread_id}},
        )
        return {"reply": result["messages"][-1].content}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def our_config(llm_url: str, path: Path, middleware: bool = True) -> None:
    from chat_service.agent_config import AgentConfig, MiddlewareEntry, ModelEntry, ProviderEntry

    chain = (
        MiddlewareEntry(name="log", type="logging", priority=1),
        MiddlewareEntry(name="retry", type="model_retry", priority=10, config={"maxRetries": 2}),
        MiddlewareEntry(name="pii", type="pii", priority=20, config={"piiTypes": ["email"]}),
    )
    model = ModelEntry(
        name="main",
        model="fake",
        provider=ProviderEntry(name="p", type="openai_compatible", base_url=llm_url.removesuffix("/v1")),
        middleware=chain if middleware else (),
    )
    path.write_text(AgentConfig(namespace="bench", models=(model,)).finalize().to_json())


async def run(requests: int, levels: list[int]) -> None:
    import httpx
    from langchain_openai import ChatOpenAI

    from tests.harness.redis_server import RedisServer

    llm_child, llm_url = start_fake_llm()
    redis = RedisServer()
    redis.start()
    children: list[Child] = [llm_child]
    try:
        minimal_port = free_port()
        minimal = Child(
            "minimal",
            [PYTHON, __file__, "--serve-minimal", str(minimal_port), llm_url],
            f"http://127.0.0.1:{minimal_port}/healthz",
        )
        children.append(minimal)
        config = LOG_DIR / "agent-config.json"
        our_config(llm_url, config, middleware=True)
        bare_config = LOG_DIR / "agent-config-bare.json"
        our_config(llm_url, bare_config, middleware=False)
        tokens = LOG_DIR / "tokens"
        tokens.write_text(f"bench:{TOKEN}\n")
        ours_port, plain_port = free_port(), free_port()
        ours = start_chat_service(
            config, ours_port, {"AI_OPS_REDIS_URL": redis.url, "AI_OPS_AUTH_TOKENS_FILE": str(tokens)}
        )
        plain = start_chat_service(bare_config, plain_port, {})
        children += [ours, plain]
        minimal.wait_ready()

        model = ChatOpenAI(model="fake", base_url=llm_url, api_key="x", max_retries=0)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)

        def client(port: int, **kwargs: Any) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60, **kwargs)

        async with (
            client(minimal_port) as b,
            client(plain_port) as c0,
            client(ours_port, headers={"Authorization": f"Bearer {TOKEN}"}) as c,
        ):

            async def bare(_i: int) -> None:
                await model.ainvoke("hello")

            async def baseline(_i: int) -> None:
                response = await b.post("/chat", json={"message": "hello", "thread_id": uuid.uuid4().hex})
                response.raise_for_status()

            def ours_call(http: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
                async def call(_i: int) -> None:
                    response = await http.post(
                        "/api/chat", json={"message": "hello", "thread_id": uuid.uuid4().hex}
                    )
                    response.raise_for_status()

                return call

            print(
                f"chat overhead: {requests} requests per row, fake LLM without delay, a new conversation per "
                f"request; logs in {LOG_DIR}"
            )
            for level in levels:
                a_stats = await measure("(a) bare ChatOpenAI call", bare, requests, level)
                # Interleaved and repeated (best of 2), so a noisy moment on the shared machine hits all alike.
                runs: dict[str, list[Stats]] = {"b": [], "c0": [], "c": []}
                for _ in range(2):
                    runs["b"].append(
                        await measure(
                            "(b) FastAPI + create_agent + InMemorySaver",
                            baseline,
                            requests,
                            level,
                            server=minimal,
                        )
                    )
                    runs["c0"].append(
                        await measure(
                            "(c0) ai-ops /api/chat: memory, no auth, no middleware",
                            ours_call(c0),
                            requests,
                            level,
                            server=plain,
                        )
                    )
                    runs["c"].append(
                        await measure(
                            "(c) ai-ops /api/chat: Redis, auth, metrics, 3 middleware",
                            ours_call(c),
                            requests,
                            level,
                            server=ours,
                        )
                    )
                best = {k: max(v, key=lambda s: s.throughput) for k, v in runs.items()}
                for row in (a_stats, best["b"], best["c0"], best["c"]):
                    print("  " + row.row())
                b_stats, c_stats, c0_stats = best["b"], best["c"], best["c0"]
                print(
                    f"  c={level}: (c)/(b) p50 {c_stats.p50 / b_stats.p50:.2f}x, p99 {c_stats.p99 / b_stats.p99:.2f}x, "
                    f"throughput (b)/(c) {b_stats.throughput / c_stats.throughput:.2f}x, server CPU per request "
                    f"(c)/(b) {ratio(c_stats.cpu_per_request, b_stats.cpu_per_request)}; "
                    f"(c0)/(b) p50 {c0_stats.p50 / b_stats.p50:.2f}x, CPU "
                    f"{ratio(c0_stats.cpu_per_request, b_stats.cpu_per_request)}"
                )
    finally:
        for child in reversed(children):
            child.stop()
        redis.stop()


def ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:.2f}x" if x and y else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--serve-minimal", nargs=2, metavar=("PORT", "LLM_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_minimal:
        serve_minimal(int(args.serve_minimal[0]), args.serve_minimal[1])
        return
    asyncio.run(run(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
