"""The operator executing ActionRequests against the real kube-apiserver, on real MCP servers.

The full path uses the bundled kubernetes-actions server (its writes land in the API server: a rollout
restart bumps the Deployment's generation once per real call, and its dry run bumps nothing). The other
tests use a small MCP server of this module that counts the calls it receives and can hold a call open
while the operator is stopped, which is how "killed between Executing and the result" is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ai_ops_api.actions import OUTCOME_UNKNOWN, format_time
from ai_ops_operator.runtime.actions import ActionExecutor
from ai_ops_operator.runtime.kube import KubeClient
from ai_ops_operator.runtime.metrics import OperatorMetrics
from mcp_servers.kubernetes_actions.actions import RESTARTED_AT
from mcp_servers.kubernetes_actions.cluster import connect_actions
from mcp_servers.kubernetes_actions.server import KubernetesActionsSettings, build_server
from tests.cluster.controlplane import ControlPlane
from tests.cluster.helpers import running_operator
from tests.harness.waiting import eventually
from tests.support.actions_support import CountingServer
from tests.support.mcp_server_helpers import ThreadedMcpServer

GROUP, VERSION, PLURAL = "ai-ops.dev", "v1alpha1", "actionrequests"
SWEEP = 0.3  # the operator's timer interval here: expiry is seen quickly


@pytest.fixture(scope="module")
def plane(ai_ops_crds: ControlPlane) -> ControlPlane:
    return ai_ops_crds


@pytest.fixture(scope="module")
def actions_url(plane: ControlPlane) -> Iterator[str]:
    cluster = connect_actions(kubeconfig=str(plane.kubeconfig))
    with ThreadedMcpServer(build_server(cluster, KubernetesActionsSettings())) as server:
        yield server.url


@pytest.fixture
def counting() -> Iterator[tuple[CountingServer, str]]:
    server = CountingServer()
    threaded = ThreadedMcpServer(server.mcp)
    with threaded:
        try:
            yield server, threaded.url
        finally:
            server.release.set()


class Namespace:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.name = plane.create_namespace(prefix="act")
        self.api = plane.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)

    def deployment(self, name: str) -> dict[str, Any]:
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        }
        return dict(self.apps.create_namespaced_deployment(self.name, body).to_dict())

    def read_deployment(self, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, self.name)

    def mcp_server(self, name: str, url: str, **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MCPServer",
            "metadata": {"name": name},
            "spec": {"url": url, **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.name, "mcpservers", body)

    def action(
        self, name: str, server: str, tool: str, arguments: dict[str, Any], target: str, **spec: Any
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ActionRequest",
            "metadata": {"name": name},
            "spec": {
                "server": server,
                "tool": tool,
                "arguments": arguments,
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": self.name,
                    "name": target,
                },
                "reason": "the pods hold a stale connection pool",
                "risk": "low",
                "requestedBy": {"caller": "alice", "threadId": "t-1"},
                "expiresAt": format_time(datetime.now(UTC) + timedelta(minutes=10)),
                **spec,
            },
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.name, PLURAL, body
        )
        return created

    def decide(self, name: str, approved: bool, by: str = "admin") -> None:
        decision = {"approved": approved, "by": by, "at": format_time(datetime.now(UTC)), "comment": "ok"}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.name, PLURAL, name, {"status": {"decision": decision}}
        )

    def status(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.name, PLURAL, name)
        return dict(obj.get("status") or {})

    def metadata(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.name, PLURAL, name)
        return dict(obj["metadata"])

    def phase(self, name: str) -> str | None:
        return self.status(name).get("phase")

    def events_on(self, kind: str, name: str) -> list[Any]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        return list(self.core.list_namespaced_event(self.name, field_selector=selector).items)


@pytest.fixture
def ns(plane: ControlPlane) -> Iterator[Namespace]:
    namespace = Namespace(plane)
    try:
        yield namespace
    finally:
        namespace.api.close()


async def until(probe: Any, what: str, timeout: float = 60.0) -> Any:
    # A few requests a second: the probes are blocking calls in the loop the operator runs in.
    return await eventually(probe, what, timeout=timeout, interval=0.2)


def operator(plane: ControlPlane, ns: Namespace) -> Any:
    return running_operator(plane.kubeconfig, ns.name, action_sweep_seconds=SWEEP)


async def test_an_approved_request_runs_once_on_the_real_server_and_succeeds(
    plane: ControlPlane, ns: Namespace, actions_url: str
) -> None:
    ns.deployment("web")
    ns.mcp_server("kubernetes-actions", actions_url)
    arguments = {"kind": "Deployment", "namespace": ns.name, "name": "web"}
    ns.action("restart-web", "kubernetes-actions", "rollout_restart", arguments, "web")
    async with operator(plane, ns) as runtime:
        await until(lambda: ns.phase("restart-web") in (None, "Pending"), "seen Pending")
        assert ns.read_deployment("web").metadata.generation == 1  # not approved: nothing ran
        ns.decide("restart-web", approved=True)
        await until(lambda: ns.phase("restart-web") == "Succeeded", "restart-web Succeeded")
        status = ns.status("restart-web")
        assert status["dryRun"]["ok"] is True and "would restart" in status["dryRun"]["excerpt"]
        assert status["result"]["isError"] is False and "is restarting" in status["result"]["excerpt"]
        assert status["executedAt"] and status["decision"]["by"] == "admin"
        deployment = ns.read_deployment("web")
        # One real write: the dry run stored nothing, the real call bumped the generation once.
        assert deployment.metadata.generation == 2
        assert RESTARTED_AT in deployment.spec.template.metadata.annotations
        await until(
            lambda: any(e.reason == "ActionSucceeded" for e in ns.events_on("Deployment", "web")), "event"
        )
        assert any(e.reason == "ActionSucceeded" for e in ns.events_on("ActionRequest", "restart-web"))
        executing = runtime.metrics.registry.get_sample_value("ai_ops_actions_total", {"phase": "Executing"})
        assert executing == 1
        # The expiry timer's finalizer goes with the last open phase: deleting it never waits.
        await until(lambda: not ns.metadata("restart-web").get("finalizers"), "finalizer removed")
    assert ns.read_deployment("web").metadata.generation == 2


async def test_an_expired_request_never_runs(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    server, url = counting
    ns.deployment("web")
    ns.mcp_server("counting", url)
    soon = format_time(datetime.now(UTC) + timedelta(seconds=2))
    ns.action("late", "counting", "restart", {"name": "web"}, "web", expiresAt=soon)
    past = format_time(datetime.now(UTC) - timedelta(minutes=1))
    ns.action("stale", "counting", "restart", {"name": "web"}, "web", expiresAt=past)
    ns.decide("stale", approved=True)  # approved, but after its expiry
    async with operator(plane, ns):
        await until(lambda: ns.phase("stale") == "Expired", "stale Expired")
        # Nobody decides in time: the timer expires it without any event.
        await until(lambda: ns.phase("late") == "Expired", "late Expired")
        ns.decide("late", approved=True)
        await until(lambda: ns.status("late").get("decision") is not None, "decision stored")
        # A few sweeps later it is still Expired and nothing was called.
        await anyio.sleep(SWEEP * 5)
        assert ns.phase("late") == "Expired"
    assert server.calls == []


async def test_a_rejected_request_never_runs(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    server, url = counting
    ns.deployment("web")
    ns.mcp_server("counting", url)
    ns.action("no", "counting", "restart", {"name": "web"}, "web")
    ns.decide("no", approved=False)
    async with operator(plane, ns):
        await until(lambda: ns.phase("no") == "Rejected", "no Rejected")
        await anyio.sleep(SWEEP * 5)
    assert ns.phase("no") == "Rejected"
    assert server.calls == []


async def test_a_missing_target_fails_without_a_call(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    server, url = counting
    ns.mcp_server("counting", url)
    ns.action("ghost", "counting", "restart", {"name": "gone"}, "gone")
    ns.decide("ghost", approved=True)
    async with operator(plane, ns):
        await until(lambda: ns.phase("ghost") == "Failed", "ghost Failed")
    assert "target not found" in ns.status("ghost")["reason"]
    assert server.calls == []


async def test_a_tool_the_mcpserver_excludes_is_never_called(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    server, url = counting
    ns.deployment("web")
    ns.mcp_server("counting", url, toolFilter={"exclude": ["restart"]})
    ns.action("filtered", "counting", "restart", {"name": "web"}, "web")
    ns.decide("filtered", approved=True)
    async with operator(plane, ns):
        await until(lambda: ns.phase("filtered") == "Failed", "filtered Failed")
    assert "excluded" in ns.status("filtered")["reason"]
    assert server.calls == []


async def test_an_operator_killed_mid_call_leaves_outcome_unknown_and_never_calls_twice(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    server, url = counting
    server.hold = True
    ns.deployment("web")
    ns.mcp_server("counting", url)
    ns.action("held", "counting", "restart", {"name": "web"}, "web")
    ns.decide("held", approved=True)
    async with operator(plane, ns):
        await until(server.entered.is_set, "the real call reached the server")
        assert ns.phase("held") == "Executing"
    # The operator is gone while the server still holds the call; the next one must not call again.
    assert ns.phase("held") == "Executing"
    async with operator(plane, ns):
        await until(lambda: ns.phase("held") == "Failed", "held Failed")
        server.release.set()
        await anyio.sleep(SWEEP * 5)
    status = ns.status("held")
    assert status["phase"] == "Failed" and status["reason"] == OUTCOME_UNKNOWN
    assert server.real_calls() == 1
    assert server.calls == [("web", True), ("web", False)]


async def test_an_event_and_the_timer_executing_at_once_call_once_and_record_the_result(
    plane: ControlPlane, ns: Namespace, counting: tuple[CountingServer, str]
) -> None:
    """kopf runs an object's timer beside its event handler: both may start executing the same Approved
    request. Driven here on the executor itself, both before either has written Executing, with the
    server holding the winner's call; then the Executing object arrives (the next event or tick), which
    this process must recognise as its own call in flight, not abandon as "outcome unknown"."""
    server, url = counting
    server.hold = True
    ns.deployment("web")
    ns.mcp_server("counting", url)
    ns.action("twice", "counting", "restart", {"name": "web"}, "web")
    ns.decide("twice", approved=True)
    ns.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns.name, PLURAL, "twice", {"status": {"phase": "Approved"}}
    )
    approved = ns.custom.get_namespaced_custom_object(GROUP, VERSION, ns.name, PLURAL, "twice")
    kube = KubeClient.from_environment(str(plane.kubeconfig))
    executor = ActionExecutor(kube, OperatorMetrics(), "race-test", allow_loopback=True)
    try:
        runs = [asyncio.create_task(executor.handle(approved)) for _ in range(2)]
        await until(server.entered.is_set, "the real call reached the server")
        await until(lambda: any(run.done() for run in runs), "the second execution gave way")
        executing = ns.custom.get_namespaced_custom_object(GROUP, VERSION, ns.name, PLURAL, "twice")
        assert executing["status"]["phase"] == "Executing"
        await executor.handle(executing)  # a later event or timer tick while the call is in flight
        assert ns.phase("twice") == "Executing", ns.status("twice")
        server.release.set()
        await asyncio.gather(*runs)
    finally:
        server.release.set()
        await executor.aclose()
        kube.close()
    status = ns.status("twice")
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"isError": False, "excerpt": "web restarted"}
    assert OUTCOME_UNKNOWN not in str(status.get("reason"))
    assert server.calls == [("web", True), ("web", False)], "one dry run, one real call"


def test_the_spec_and_a_made_decision_cannot_be_changed(plane: ControlPlane, ns: Namespace) -> None:
    ns.action("fixed", "counting", "restart", {"name": "web"}, "web")
    with pytest.raises(ApiException) as refused:
        ns.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns.name, PLURAL, "fixed", {"spec": {"reason": "something else"}}
        )
    assert refused.value.status == 422 and "spec is immutable" in str(refused.value.body)
    ns.decide("fixed", approved=False)
    with pytest.raises(ApiException) as changed:
        ns.decide("fixed", approved=True)
    assert changed.value.status == 422 and "cannot be changed" in str(changed.value.body)
