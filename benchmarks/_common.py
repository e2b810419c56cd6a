"""Shared pieces of the chat benchmarks: child processes on loopback, a load generator, percentiles.

Every server runs in its own process (the fake LLM, the MCP server, each chat service), so the process that
measures does not share a GIL with the servers it measures. Run from the repository root with the project's
venv, e.g. ``.venv/bin/python benchmarks/chat_overhead.py``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks run as scripts: make the repository root importable for tests.harness.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from tests.harness.ports import free_port  # noqa: E402

PYTHON = sys.executable
LOG_DIR = Path(tempfile.mkdtemp(prefix="ai-ops-bench-"))


class Child:
    """A child process waited for until an HTTP URL answers; killed by PID on stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready_url: str | Sequence[str],
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.ready_urls = [ready_url] if isinstance(ready_url, str) else list(ready_url)  # all must answer
        log = open(LOG_DIR / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        full_env = {**os.environ, **(env or {})}
        self.process = subprocess.Popen(list(argv), stdout=log, stderr=log, env=full_env, cwd=str(ROOT))

    def wait_ready(self, timeout: float = 180.0) -> None:  # a ceiling: start-up on a loaded machine
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {LOG_DIR / (self.name + '.log')}")
            try:
                if all(httpx.get(url, timeout=1.0).status_code < 500 for url in self.ready_urls):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child so far (from /proc; Linux only)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> float:
        """CPU time of the child's live threads, to the nanosecond (/proc/PID/task/*/schedstat; Linux).
        A thread that has exited is no longer in it: only for spans over which the threads stay (the
        service's are its event loop and its executor's, which stay while there is load)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # exited while we read
                continue
        return total / 1e9

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_fake_llm() -> tuple[Child, str]:
    """The scripted OpenAI-compatible server (echo answers, no delay) in its own process."""
    port = free_port()
    child = Child(
        "fake-llm",
        [PYTHON, str(ROOT / "benchmarks" / "_fake_llm_server.py"), str(port)],
        f"http://127.0.0.1:{port}/v1/models",
    )
    child.wait_ready()
    return child, f"http://127.0.0.1:{port}/v1"


def start_mcp_server() -> tuple[Child, str]:
    """The test harness' MCP fixture server (streamable HTTP; tools echo, add, ...) in its own process."""
    port = free_port()
    from tests.harness.subprocesses import python_module_command

    argv = python_module_command("tests.harness.mcp_fixture_server", "--kind", "healthy", "--port", str(port))
    child = Child("mcp", argv, f"http://127.0.0.1:{port}/healthz")
    child.wait_ready()
    return child, f"http://127.0.0.1:{port}/mcp"


def start_chat_service(config_path: Path, port: int, env: dict[str, str]) -> Child:
    child = Child(
        f"chat-{port}",
        [
            PYTHON,
            "-m",
            "ai_ops_cli",
            "chat",
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        f"http://127.0.0.1:{port}/healthz",
        env={"AI_OPS_KUBERNETES_WATCH": "false", **env},
    )
    child.wait_ready()
    return child


@dataclass
class Stats:
    label: str
    concurrency: int
    latencies: list[float]
    wall: float
    server_cpu: float | None = None  # CPU seconds the measured server spent on these requests

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def cpu_per_request(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / len(self.latencies)

    def row(self) -> str:
        cpu = (
            "" if self.cpu_per_request is None else f"   server CPU {self.cpu_per_request * 1000:6.2f} ms/req"
        )
        return (
            f"{self.label:<52} c={self.concurrency:<3} p50 {self.p50 * 1000:8.2f} ms   "
            f"p99 {self.p99 * 1000:8.2f} ms   {self.throughput:8.1f} req/s{cpu}"
        )


async def measure(
    label: str,
    call: Callable[[int], Awaitable[None]],
    requests: int,
    concurrency: int,
    warmup: int = 10,
    server: Child | None = None,
    settle: float = 0.0,
) -> Stats:
    """Run ``call(i)`` ``requests`` times with ``concurrency`` in flight; latencies per call (and the server's
    CPU time, which other load on the machine disturbs far less than latency). The CPU time is read
    ``settle`` seconds after the last call, so that work a row leaves behind (a background flush) counts
    in that row and not in the next."""
    for i in range(warmup):
        await call(-1 - i)
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    cpu_before = server.cpu_seconds() if server else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    if settle:
        await asyncio.sleep(settle)
    cpu = server.cpu_seconds() - cpu_before if server else None
    return Stats(label, concurrency, latencies, wall, cpu)
