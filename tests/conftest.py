"""Shared fixtures: real servers on 127.0.0.1 (see tests/harness/README.md).

Heavy imports stay inside the fixtures so test files that use none of them start fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.harness.emulator import EmulatorHandle
    from tests.harness.fake_llm import FakeLLM
    from tests.harness.mcp_servers import McpFixtureServers
    from tests.harness.redis_server import RedisServer


# The control plane's timings from the pytest-xdist workers (tests/cluster/conftest.py prints its own when
# the run has no workers): the first worker's figures stand for the run.
_control_plane_timings: dict[str, float] = {}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown without it
def pytest_testnodedown(node: object, error: object) -> None:
    timings = getattr(node, "workeroutput", {}).get("control_plane_timings")
    if timings and not _control_plane_timings:
        _control_plane_timings.update(timings)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _control_plane_timings:
        from tests.cluster.controlplane import timings_line

        terminalreporter.write_line(f"{timings_line(_control_plane_timings)} (first worker)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server (no persistence) for the whole session; killed by PID at the end."""
    from tests.harness.redis_server import RedisServer

    server = RedisServer()
    try:
        server.start()
    except RuntimeError as error:
        server.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    """The scripted OpenAI-compatible server for the whole session (call .reset() between uses)."""
    from tests.harness.fake_llm import FakeLLM

    server = FakeLLM()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_fake_llm(fake_llm: FakeLLM) -> Iterator[FakeLLM]:
    """The session's fake LLM, reset before and after this test (empty queues, no recorded requests)."""
    fake_llm.reset()
    yield fake_llm
    fake_llm.reset()


@pytest.fixture(scope="session")
def mcp_fixture_servers() -> Iterator[McpFixtureServers]:
    """Real MCP servers (streamable HTTP), one process each: .healthy, .auth, .restartable, .hanging."""
    from tests.harness.mcp_servers import McpFixtureServers

    servers = McpFixtureServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()  # kills every process, also when start() or the tests failed


@pytest.fixture
async def k8s_emulator(tmp_path: Path) -> AsyncIterator[EmulatorHandle]:
    """A fresh Kubernetes API emulator per test (kmock + API-server semantics), namespace `default` seeded."""
    import kmock

    from tests.harness import kopf_runner
    from tests.harness.emulator import EmulatorHandle, KubernetesApiEmulator, write_kubeconfig

    async with KubernetesApiEmulator() as emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        handle = EmulatorHandle(emulator, url, write_kubeconfig(url, tmp_path))
        emulator.seed_namespace("default")
        kopf_runner.current_emulator = handle
        try:
            yield handle
        finally:
            kopf_runner.current_emulator = None
