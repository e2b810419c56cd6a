"""Where a turn of ``/api/chat`` spends its CPU: py-spy samples our chat service while the load runs.

The service is the (c) row of chat_overhead.py: Redis conversations, bearer auth, metrics and the
log+retry+tool_retry chain, against the scripted LLM without delay, a new conversation per request. For
each concurrency level py-spy records the service process for the whole load (samples of the thread
holding the GIL only: the Python work) and the script prints the frames with the largest share of samples,
inclusive and own ("self").
py-spy is not a project dependency: ``.venv/bin/pip install py-spy`` first (it needs ptrace rights).

    .venv/bin/python benchmarks/profile_turn.py [--requests 600] [--concurrency 1 32] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOG_DIR, free_port, measure, start_chat_service, start_fake_llm
from chat_overhead import TOKEN, our_config


def summarize(collapsed: Path, top: int) -> str:
    """The ``top`` frames by inclusive and by own share of samples, from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"  top {top} {title}:")
        lines += [f"    {n / total:6.1%}  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


async def run(requests: int, levels: list[int], top: int, chain: str) -> None:
    import httpx

    from tests.harness.redis_server import RedisServer

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    llm_child, llm_url = start_fake_llm()
    redis = RedisServer()
    redis.start()
    tokens = LOG_DIR / "tokens"
    tokens.write_text(f"bench:{TOKEN}\n")
    config = LOG_DIR / "agent-config.json"
    our_config(llm_url, config, chain)
    port = free_port()
    service = start_chat_service(
        config, port, {"AI_OPS_REDIS_URL": redis.url, "AI_OPS_AUTH_TOKENS_FILE": str(tokens)}
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=60
        ) as http:

            async def call(_i: int) -> None:
                response = await http.post(
                    "/api/chat", json={"message": "hello", "thread_id": uuid.uuid4().hex}
                )
                response.raise_for_status()

            for level in levels:
                for _ in range(20):  # warm: agent built, connections open
                    await call(-1)
                out = LOG_DIR / f"profile-c{level}.txt"
                argv = [py_spy, "record", "--pid", str(service.process.pid), "--format", "raw"]
                argv += ["--rate", "250", "--nolineno", "--gil", "--output", str(out), "--nonblocking"]
                recorder = subprocess.Popen(
                    argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)  # py-spy attached
                stats = await measure(f"ours ({chain})", call, requests, level, warmup=0, server=service)
                recorder.send_signal(2)  # SIGINT: py-spy writes what it has and exits
                recorder.wait(30)
                print(stats.row())
                print(summarize(out, top))
                print(f"  collapsed stacks: {out} (e.g. flamegraph.pl or speedscope.app)")
    finally:
        service.stop()
        llm_child.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--chain", default="log+retry+tool_retry")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency, args.top, args.chain))


if __name__ == "__main__":
    main()
