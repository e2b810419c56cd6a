"""The outcome of a call the executor made is recorded, not lost, when writing it fails at first.

The executor (the operator's KubeClient) talks to the Kubernetes emulator through a fault-injecting proxy,
and to a real MCP server holding the real call; while the call is held, the test makes the final status
write fail: the API answers 503 to it a few times (a blip), or the request's metadata changes so the write
meets a 409. Only
this process knows the tool's answer, so it must write it again rather than leave the request Executing,
for the next look at it to call "outcome unknown".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.actions import OUTCOME_UNKNOWN, format_time
from ai_ops_operator.runtime.actions import ActionExecutor
from ai_ops_operator.runtime.kube import KubeClient
from ai_ops_operator.runtime.metrics import OperatorMetrics
from tests.harness.emulator import write_kubeconfig
from tests.harness.fault_proxy import FaultProxy
from tests.harness.waiting import eventually
from tests.support.actions_support import CountingServer
from tests.support.mcp_server_helpers import ThreadedMcpServer

API = "ai-ops.dev/v1alpha1"
PLURAL = "actionrequests"
NAME = "restart-web"
STATUS_PATH = f"/apis/{API}/namespaces/default/{PLURAL}/{NAME}/status"
LIMIT = 60.0
PAUSES = (0.2, 0.4, 0.8, 1.6, 3.2, 6.4)


@dataclass
class Setup:
    emulator: Any
    proxy: FaultProxy
    server: CountingServer
    executor: ActionExecutor

    def stored(self) -> dict[str, Any]:
        return dict(self.emulator.get(API, PLURAL, "default", NAME) or {})

    def phase(self) -> str | None:
        return (self.stored().get("status") or {}).get("phase")


@pytest.fixture
def counting() -> Iterator[tuple[CountingServer, str]]:
    server = CountingServer()
    server.hold = True
    with ThreadedMcpServer(server.mcp) as threaded:
        try:
            yield server, threaded.url
        finally:
            server.release.set()


@pytest.fixture
async def setup(
    k8s_emulator: Any, counting: tuple[CountingServer, str], tmp_path: Path
) -> AsyncIterator[Setup]:
    server, url = counting
    k8s_emulator.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}},
        }
    )
    k8s_emulator.create(
        {
            "apiVersion": API,
            "kind": "MCPServer",
            "metadata": {"name": "counting", "namespace": "default"},
            "spec": {"url": url},
        }
    )
    k8s_emulator.create(
        {
            "apiVersion": API,
            "kind": "ActionRequest",
            "metadata": {"name": NAME, "namespace": "default"},
            "spec": {
                "server": "counting",
                "tool": "restart",
                "arguments": {"name": "web"},
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": "default",
                    "name": "web",
                },
                "reason": "stale connection pool",
                "requestedBy": {"caller": "alice", "threadId": "t-1"},
                "expiresAt": format_time(datetime.now(UTC) + timedelta(minutes=10)),
            },
        }
    )
    decision = {"approved": True, "by": "admin", "at": format_time(datetime.now(UTC))}
    k8s_emulator.patch(API, PLURAL, "default", NAME, {"status": {"decision": decision}}, subresource="status")
    async with FaultProxy(k8s_emulator.url).running() as proxy:
        (tmp_path / "proxied").mkdir()
        kube = KubeClient.from_environment(str(write_kubeconfig(proxy.url, tmp_path / "proxied")))
        executor = ActionExecutor(
            kube, OperatorMetrics(), "outcome-test", allow_loopback=True, outcome_write_pauses=PAUSES
        )
        try:
            yield Setup(k8s_emulator, proxy, server, executor)
        finally:
            server.release.set()
            await executor.aclose()
            kube.close()


async def held_execution(setup: Setup) -> asyncio.Task[None]:
    """The request approved and executing, its real call held at the server."""
    run = asyncio.create_task(setup.executor.handle(setup.stored()))
    await eventually(setup.server.entered.is_set, "the real call reached the server", LIMIT, 0.05)
    assert setup.phase() == "Executing"
    return run


def assert_succeeded_once(setup: Setup) -> None:
    status = setup.stored()["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"isError": False, "excerpt": "web restarted"}
    assert OUTCOME_UNKNOWN not in str(status.get("reason"))
    assert setup.server.real_calls() == 1


async def test_the_outcome_is_stored_through_a_blip_of_the_api(setup: Setup) -> None:
    run = await held_execution(setup)
    blip = setup.proxy.fail("PUT", STATUS_PATH, times=4)
    setup.server.release.set()
    await eventually(lambda: blip.served > 0, "the first write of the outcome refused", LIMIT, 0.02)
    # A timer tick meanwhile sees the request Executing: this process still holds the call's answer.
    await setup.executor.handle(setup.stored())
    assert setup.phase() == "Executing"
    await eventually(lambda: blip.left == 0, "every blip served", LIMIT, 0.05)
    await eventually(lambda: setup.phase() == "Succeeded", "the outcome stored", LIMIT, 0.05)
    await run
    assert_succeeded_once(setup)


async def test_the_outcome_is_stored_when_the_object_changed_during_the_call(setup: Setup) -> None:
    run = await held_execution(setup)
    # Somebody labels the request while the call runs: a new resourceVersion, still Executing.
    setup.emulator.patch(API, PLURAL, "default", NAME, {"metadata": {"labels": {"team": "shop"}}})
    setup.server.release.set()
    await run
    assert_succeeded_once(setup)
    assert setup.stored()["metadata"]["labels"] == {"team": "shop"}
