"""What the chat service costs on top of the agent, measured side by side in one run.

(a) a bare ``ChatOpenAI`` call; (b) a minimal FastAPI + ``create_agent`` + in-memory checkpointer endpoint, as
a user would write it by hand, and (b-redis) the same with the Redis checkpointer ai-ops uses
(``langgraph-checkpoint-plainredis``, a session TTL): what a user would write for several replicas; (c) our
``/api/chat`` with Redis conversations, bearer auth, metrics and a three-middleware chain (logging,
model_retry, tool_retry: wrapping middleware), and (c') the same with pii instead of tool_retry (PII adds
graph steps); (c-mem) (c) with in-memory conversations (what Redis costs); (c0) ours bare (in memory, no
auth, no middleware) shows what the service itself costs. All against the scripted OpenAI-compatible server
with no delay; every server in its own process; a new conversation per request. Targets: (c) within 1.10x
of (b-redis) and 1.25x of (b), p50 and throughput. Server CPU per request is the steadiest column on a
loaded machine.

    .venv/bin/python benchmarks/chat_overhead.py [--requests 300] [--concurrency 1 32] [--only c p-on p-off]

``--only`` keeps the named ai-ops variants (the tag in parentheses) beside (a) and (b).

Usage accounting (its target: at most 2% per turn) is measured by (p-on)/(p-off): (c) with accounting on
and (c) with it off as two apps served by *one* process (``serve_pair``), measured in short interleaved
blocks (``interleaved``), in two processes, one serving on first and the other off first. Two processes of
the same service differ here by up to about 5% (``--only c u-off c2`` prints that cross-process A/A
control), more than the 2% asked about: a process' heap, hash seed and memory layout cost or save a few
percent of their own, which two apps of one process share. ``--only p-on pa1`` adds the A/A control of the
same method, (pa1)/(pa2), both apps on. The pairs run unless ``--only`` leaves them out. The cross-process
rows are still there: (u-off) is (c) with accounting off in a process of its own, and
``--only c u-off c2 u-off2`` starts two processes of each and prints on/off averaged over the four
pairings.

Each of ``--rounds`` rounds measures every row once (odd rounds in reverse order); every ratio is printed as
the ratio of the best runs and as the median of the ratios within each round. A row's server CPU is read a
second after its last request, so a ledger flush its turns cause counts in that row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOG_DIR, PYTHON, Child, Stats, free_port, measure, start_chat_service, start_fake_llm
from pydantic import BaseModel

TOKEN = "bench-token-0123456789"


class Body(BaseModel):
    message: str
    thread_id: str


def serve_minimal(port: int, llm_url: str, redis_url: str | None = None) -> None:
    """(b): the hand-written baseline; with ``redis_url``, (b-redis): its conversations in Redis."""
    import uvicorn
    from fastapi import FastAPI
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph_checkpoint_plainredis import AsyncRedisSaver

    checkpointer: BaseCheckpointSaver[Any] = (
        AsyncRedisSaver(url=redis_url, ttl=24 * 3600) if redis_url else InMemorySaver()
    )
    agent = create_agent(
        ChatOpenAI(model="fake", base_url=llm_url, api_key="x", max_retries=0),
        tools=[],
        system_prompt="You are helpful.",
        checkpointer=checkpointer,
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


def serve_pair(config_path: str, *arms: str) -> None:
    """Our service twice in one process, one uvicorn server per ``PORT:ACCOUNTING`` arm on one event loop,
    each arm an app of its own with usage accounting on (``true``) or off (``false``); the rest of the
    environment (Redis, tokens) is the process'. Two arms of one process share its heap, hash seed and
    memory layout, which two processes do not: the on/off comparison without a process' own few percent."""
    import logging
    import os

    import uvicorn

    from chat_service.app import create_app
    from chat_service.cli import freeze_startup_heap
    from chat_service.settings import load_settings

    logging.basicConfig(level="WARNING")

    async def serve() -> None:
        servers = []
        for arm in arms:
            port, accounting = arm.split(":")
            environ = {**os.environ, "AI_OPS_USAGE_ACCOUNTING": accounting}
            overrides = {
                "config_path": config_path,
                "host": "127.0.0.1",
                "port": int(port),
                "log_level": "WARNING",
            }
            app = create_app(load_settings(overrides, environ=environ), environ=environ)
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=int(port),
                log_level="warning",
                proxy_headers=True,
                timeout_graceful_shutdown=5,
            )
            servers.append(uvicorn.Server(config))
        freeze_startup_heap()  # as ``ai-ops chat`` does before it serves
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(serve())


CHAINS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "none": (),
    # Wrapping middleware only: no extra graph steps.
    "log+retry+tool_retry": (
        ("log", "logging", {}),
        ("retry", "model_retry", {"maxRetries": 2}),
        ("tool-retry", "tool_retry", {"maxRetries": 2}),
    ),
    # PII adds before/after-model steps to the graph.
    "log+retry+pii": (
        ("log", "logging", {}),
        ("retry", "model_retry", {"maxRetries": 2}),
        ("pii", "pii", {"piiTypes": ["email"]}),
    ),
}


def our_config(llm_url: str, path: Path, chain: str) -> None:
    from ai_ops_api.agent_config import AgentConfig, MiddlewareEntry, ModelEntry, ProviderEntry

    middleware = tuple(
        MiddlewareEntry(name=name, type=kind, priority=10 * (i + 1), config=config)
        for i, (name, kind, config) in enumerate(CHAINS[chain])
    )
    provider = ProviderEntry(name="p", type="openai_compatible", base_url=llm_url.removesuffix("/v1"))
    model = ModelEntry(name="main", model="fake", provider=provider, middleware=middleware)
    path.write_text(AgentConfig(namespace="bench", models=(model,)).finalize().to_json())


async def run(requests: int, levels: list[int], only: list[str] | None = None, rounds: int = 2) -> None:
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
        minimal_redis_port = free_port()
        minimal_redis = Child(
            "minimal-redis",
            [PYTHON, __file__, "--serve-minimal", str(minimal_redis_port), llm_url, redis.url],
            f"http://127.0.0.1:{minimal_redis_port}/healthz",
        )
        children.append(minimal_redis)
        tokens = LOG_DIR / "tokens"
        tokens.write_text(f"bench:{TOKEN}\n")
        full_env = {"AI_OPS_REDIS_URL": redis.url, "AI_OPS_AUTH_TOKENS_FILE": str(tokens)}
        # label -> (chain, environment)
        variants = {
            "(c0) ai-ops: memory, no auth, no middleware": ("none", {}),
            "(c) ai-ops: Redis, auth, metrics, log+retry+tool_retry": ("log+retry+tool_retry", full_env),
            "(c') ai-ops: Redis, auth, metrics, log+retry+pii": ("log+retry+pii", full_env),
            # Usage accounting on (the default in c) against off, otherwise the same: its cost per turn.
            "(u-off) ai-ops: as (c), usage accounting off": (
                "log+retry+tool_retry",
                {**full_env, "AI_OPS_USAGE_ACCOUNTING": "false"},
            ),
            # (c) again in a process of its own (only with --only ... c2): the A/A control. Two processes of
            # the same service differ by a few percent on this kind of machine, which bounds what an on/off
            # comparison between two processes can show.
            "(c2) ai-ops: as (c), a second process (A/A control)": ("log+retry+tool_retry", full_env),
            "(u-off2) ai-ops: as (u-off), a second process": (
                "log+retry+tool_retry",
                {**full_env, "AI_OPS_USAGE_ACCOUNTING": "false"},
            ),
            # (c) with in-memory conversations: what Redis costs within (c).
            "(c-mem) ai-ops: memory, auth, metrics, log+retry+tool_retry": (
                "log+retry+tool_retry",
                {"AI_OPS_AUTH_TOKENS_FILE": str(tokens)},
            ),
        }
        second = ("(c2)", "(u-off2)")  # second processes: only when asked for by name
        asked = {tag.strip("()") for tag in only or []}
        variants = {
            label: v
            for label, v in variants.items()
            if not label.startswith(second) or label.split(" ")[0].strip("()") in asked
        }
        if only:  # e.g. --only c u-off: just those of our rows, beside the baselines
            wanted = {tag.strip("()") for tag in only}
            variants = {
                label: v for label, v in variants.items() if label.split(" ")[0].strip("()") in wanted
            }
        services: dict[str, tuple[int, Child]] = {}
        for label, (chain, env) in variants.items():
            config = LOG_DIR / f"agent-config-{chain}.json"
            our_config(llm_url, config, chain)
            port = free_port()
            child = start_chat_service(config, port, env)
            children.append(child)
            services[label] = (port, child)
        # (c) with accounting on and off as two apps of one process (serve_pair), twice: the arm a process
        # serves first costs or saves a little of its own (seen with both arms the same), so one process
        # serves on first and the other off first, and their ratios are averaged. The A/A control (both
        # arms on, --only pa1 pa2) shows what the method reads when there is nothing to find.
        pairs = {
            "p": (
                ("(p-on) ai-ops: as (c), usage accounting on; one process with (p-off)", "true"),
                ("(p-off) ai-ops: as (c), usage accounting off; in the process of (p-on)", "false"),
            ),
            "p2": (
                ("(p2-off) ai-ops: as (p-off), served first in a process with (p2-on)", "false"),
                ("(p2-on) ai-ops: as (p-on), in the process of (p2-off)", "true"),
            ),
            "pa": (
                ("(pa1) ai-ops: as (p-on); one process with (pa2) (A/A control)", "true"),
                ("(pa2) ai-ops: as (p-on); in the process of (pa1)", "true"),
            ),
        }
        pair_servers: dict[str, tuple[Child, list[tuple[str, int]]]] = {}
        pair_config = LOG_DIR / "agent-config-log+retry+tool_retry.json"
        our_config(llm_url, pair_config, "log+retry+tool_retry")
        for name, arms in pairs.items():
            # --only p-on (or any tag of p or p2) asks for both on/off processes
            tags = {"pa1", "pa2"} if name == "pa" else {"p-on", "p-off", "p2-on", "p2-off"}
            if (only or name == "pa") and not tags & asked:
                continue
            ports = [free_port() for _ in arms]
            child = Child(
                f"chat-pair-{name}",
                [PYTHON, __file__, "--serve-pair", str(pair_config)]
                + [f"{port}:{accounting}" for port, (_label, accounting) in zip(ports, arms, strict=True)],
                [f"http://127.0.0.1:{port}/healthz" for port in ports],
                env={"AI_OPS_KUBERNETES_WATCH": "false", **full_env},
            )
            children.append(child)
            child.wait_ready()
            pair_servers[name] = (
                child,
                [(label, port) for port, (label, _a) in zip(ports, arms, strict=True)],
            )
        minimal.wait_ready()
        minimal_redis.wait_ready()

        model = ChatOpenAI(model="fake", base_url=llm_url, api_key="x", max_retries=0)
        # Idle connections are dropped before the servers' 5 s keep-alive timeout closes them: a row's client
        # idles while the other rows run, and reusing a connection the server is closing is a ReadError.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2.0)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        client_ports = {label: port for label, (port, _child) in services.items()}
        client_ports.update({label: port for _child, arms in pair_servers.values() for label, port in arms})
        clients = {
            label: httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60, headers=headers
            )
            for label, port in client_ports.items()
        }
        b_client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{minimal_port}", limits=limits, timeout=60)
        br_client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{minimal_redis_port}", limits=limits, timeout=60
        )

        async def bare(_i: int) -> None:
            await model.ainvoke("hello")

        def hand_written(http: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
            async def call(_i: int) -> None:
                response = await http.post("/chat", json={"message": "hello", "thread_id": uuid.uuid4().hex})
                response.raise_for_status()

            return call

        baseline = hand_written(b_client)
        baseline_redis = hand_written(br_client)

        def ours(http: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
            async def call(_i: int) -> None:
                response = await http.post(
                    "/api/chat", json={"message": "hello", "thread_id": uuid.uuid4().hex}
                )
                response.raise_for_status()

            return call

        print(
            f"chat overhead: {requests} requests per row, fake LLM without delay, a new conversation per "
            f"request; best of {rounds} interleaved runs; logs in {LOG_DIR}"
        )
        b_label = "(b) FastAPI + create_agent + InMemorySaver"
        br_label = "(b-redis) FastAPI + create_agent + AsyncRedisSaver"
        for level in levels:
            a_stats = await measure("(a) bare ChatOpenAI call", bare, requests, level)
            runs: dict[str, list[Stats]] = {b_label: [], br_label: [], **{label: [] for label in services}}
            # Every row once per round; odd rounds in the reverse order, so that no row always runs right
            # after the same other one (the fake LLM and Redis are shared and carry some state over).
            order: list[tuple[str, Callable[[int], Awaitable[None]], Child]] = [
                (b_label, baseline, minimal),
                (br_label, baseline_redis, minimal_redis),
                *((label, ours(clients[label]), child) for label, (_port, child) in services.items()),
            ]
            for round_ in range(rounds):
                for label, call, server in order if round_ % 2 == 0 else reversed(order):
                    # Read a row's CPU a second after it (over the 0.5 s ledger flush interval): a flush
                    # the row's turns cause counts in that row, not in the next one of the process.
                    runs[label].append(await measure(label, call, requests, level, server=server, settle=1.0))
            rounds_file = LOG_DIR / f"rounds-c{level}.json"  # every round's figures, for a closer look
            rounds_file.write_text(
                json.dumps(
                    {
                        label: [
                            {"p50": s.p50, "throughput": s.throughput, "cpu_per_request": s.cpu_per_request}
                            for s in stats
                        ]
                        for label, stats in runs.items()
                    },
                    indent=1,
                )
            )
            best = {label: max(stats, key=lambda s: s.throughput) for label, stats in runs.items()}
            for row in (a_stats, *best.values()):
                print("  " + row.row())
            for base_label in (b_label, br_label):
                b_stats = best[base_label]
                base = base_label.split(" ")[0]
                for label in services:
                    c_stats = best[label]
                    print(
                        f"  c={level} {label.split(' ')[0]}/{base}: p50 {c_stats.p50 / b_stats.p50:.2f}x, "
                        f"p99 {c_stats.p99 / b_stats.p99:.2f}x, throughput {c_stats.throughput / b_stats.throughput:.2f}x, "
                        f"server CPU per request {ratio(c_stats.cpu_per_request, b_stats.cpu_per_request)}; "
                        f"{paired([runs[label]], [runs[base_label]])}"
                    )
            on = next((k for k in services if k.startswith("(c) ")), None)
            off = next((k for k in services if k.startswith("(u-off)")), None)
            if on is not None and off is not None:
                print(
                    f"  c={level} usage accounting on/off: p50 {best[on].p50 / best[off].p50:.3f}x, "
                    f"throughput {best[on].throughput / best[off].throughput:.3f}x, "
                    f"server CPU per request {ratio(best[on].cpu_per_request, best[off].cpu_per_request)}; "
                    f"{paired([runs[on]], [runs[off]], digits=3)}"
                )
                control = next((k for k in services if k.startswith("(c2)")), None)
                if control is not None:
                    print(
                        f"  c={level} A/A control, (c)/(c2), both on: {paired([runs[on]], [runs[control]], digits=3)}"
                    )
                    print(
                        f"  c={level} usage accounting on/off as (c2)/(u-off): "
                        f"{paired([runs[control]], [runs[off]], digits=3)}"
                    )
                off2 = next((k for k in services if k.startswith("(u-off2)")), None)
                if control is not None and off2 is not None:
                    print(
                        f"  c={level} usage accounting on/off over two processes each: "
                        f"{paired([runs[on], runs[control]], [runs[off], runs[off2]], digits=3)}"
                    )
            on_off: list[tuple[float, float, float]] = []  # (p50, throughput, CPU) on/off per process
            for name, (child, ((first_label, _), (second_label, _))) in pair_servers.items():
                block = PAIR_BLOCK if level == 1 else PAIR_BLOCK * 4
                first, second = await interleaved(
                    (first_label, ours(clients[first_label])),
                    (second_label, ours(clients[second_label])),
                    child,
                    level,
                    block,
                )
                print("  " + first.row())
                print("  " + second.row())
                on, off = (second, first) if name == "p2" else (first, second)
                figures = (on.p50 / off.p50, on.throughput / off.throughput, pair_cpu(on) / pair_cpu(off))
                if name != "pa":
                    on_off.append(figures)
                title = {
                    "p": "usage accounting on/off in one process, (p-on)/(p-off)",
                    "p2": "usage accounting on/off in one process, (p2-on)/(p2-off)",
                    "pa": "A/A control in one process, (pa1)/(pa2), both on",
                }[name]
                print(
                    f"  c={level} {title}, {PAIR_BLOCKS} ABBA blocks of {block} requests each: "
                    f"p50 {figures[0]:.3f}x, throughput {figures[1]:.3f}x, server CPU per request {figures[2]:.3f}x"
                )
            if len(on_off) == 2:
                p50, throughput, cpu = (statistics.geometric_mean(f) for f in zip(*on_off, strict=True))
                print(
                    f"  c={level} usage accounting on/off, both processes (geometric mean): p50 {p50:.3f}x, "
                    f"throughput {throughput:.3f}x, server CPU per request {cpu:.3f}x"
                )
        for http in (*clients.values(), b_client, br_client):
            await http.aclose()
    finally:
        for child in reversed(children):
            child.stop()
        redis.stop()


def paired(ons: list[list[Stats]], offs: list[list[Stats]], digits: int = 2) -> str:
    """The median over the rounds of the ratio within each round (the rows measured one after the other):
    steadier than the ratio of the two bests when the machine's load drifts between rounds. With several
    processes of each side, a round's ratio is the geometric mean over every pairing of processes: a
    process of its own costs or saves a few percent here (the A/A control shows it), which averages out."""

    def median(value: Callable[[Stats], float | None]) -> float | None:
        ratios: list[float] = []
        for round_ in range(len(ons[0])):
            pairs = [(value(a[round_]), value(b[round_])) for a in ons for b in offs]
            if all(x and y for x, y in pairs):  # a round without the figure (no server CPU) is left out
                ratios.append(statistics.geometric_mean(x / y for x, y in pairs if x and y))
        return statistics.median(ratios) if ratios else None

    pairings = len(ons) * len(offs)
    rounds = (
        f"{len(ons[0])} paired rounds" if pairings == 1 else f"{len(ons[0])} rounds of {pairings} pairings"
    )
    text = (
        f"median of {rounds}: p50 {median(lambda s: s.p50):.{digits}f}x, "
        f"throughput {median(lambda s: s.throughput):.{digits}f}x"
    )
    cpu = median(lambda s: s.cpu_per_request)
    return text + (f", server CPU per request {cpu:.{digits}f}x" if cpu else "")


def ratio(x: float | None, y: float | None, digits: int = 2) -> str:
    return f"{x / y:.{digits}f}x" if x and y else "n/a"


PAIR_BLOCKS = 60  # blocks per arm of an interleaved pair
PAIR_BLOCK = 50  # requests per block at concurrency 1 (four times as many above)
PAIR_WARMUP = 200  # requests per arm before the first block


async def interleaved(
    a: tuple[str, Callable[[int], Awaitable[None]]],
    b: tuple[str, Callable[[int], Awaitable[None]]],
    server: Child,
    concurrency: int,
    block: int,
) -> tuple[Stats, Stats]:
    """Two arms of one process measured in short blocks in ABBA order (A B, B A, A B, ...), their figures
    pooled: the machine's drift over a run falls on both arms alike, which whole rows one after the other
    leave to chance (a row's CPU per request swings by several percent from one round to the next here).
    A block's CPU is the process' threads' own (nanoseconds, not clock ticks: a block is a quarter of a
    second), read after a settle longer than the ledger flush interval so that its flush counts in it."""
    for label, call in (a, b):
        await measure(label, call, PAIR_WARMUP, concurrency)
    pooled = {label: Stats(label, concurrency, [], 0.0, 0.0) for label, _call in (a, b)}
    for i in range(PAIR_BLOCKS):
        for label, call in (a, b) if i % 2 == 0 else (b, a):
            before = server.thread_cpu_seconds()
            stats = await measure(label, call, block, concurrency, warmup=0, settle=0.6)
            total = pooled[label]
            total.latencies += stats.latencies
            total.wall += stats.wall
            total.server_cpu = (total.server_cpu or 0.0) + server.thread_cpu_seconds() - before
    return pooled[a[0]], pooled[b[0]]


def pair_cpu(stats: Stats) -> float:
    assert stats.cpu_per_request is not None  # interleaved always measures it
    return stats.cpu_per_request


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--only", nargs="+", metavar="ROW", help="only these of our rows, e.g. c u-off")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved runs of every row per concurrency (best kept)"
    )
    parser.add_argument(
        "--serve-minimal", nargs="+", metavar="PORT LLM_URL [REDIS_URL]", help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-pair", nargs="+", metavar="CONFIG PORT:ACCOUNTING", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pair:
        serve_pair(*args.serve_pair)
        return
    if args.serve_minimal:
        serve_minimal(int(args.serve_minimal[0]), *args.serve_minimal[1:])
        return
    asyncio.run(run(args.requests, args.concurrency, args.only, args.rounds))


if __name__ == "__main__":
    main()
