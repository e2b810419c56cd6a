"""The kubernetes-actions MCP server: the pure rules directly, then every tool through a real MCP client
against the server reading and writing the `k8s_emulator` fixture.

The emulator ignores `dryRun` (it stores every write), so here a dry run is checked on the wire (the
write request carries dryRun=All); that nothing changes on a dry run, and that the chart's RBAC is
enough and no more, is checked against the real API server in tests/cluster/test_kubernetes_actions_real.py.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_servers.common import InvalidArgument
from mcp_servers.kubernetes_actions.actions import (
    RESTARTED_AT,
    ActionSettings,
    check_namespace,
    check_replica_bounds,
    check_scale_step,
    parse_namespaces,
    scale_step_allowed,
)
from mcp_servers.kubernetes_actions.cluster import connect_actions
from mcp_servers.kubernetes_actions.server import KubernetesActionsSettings, build_server
from tests.support.mcp_server_helpers import McpServerProcess, ThreadedMcpServer, mcp_client

TOOLS = ["cordon", "delete_pod", "rollout_restart", "scale", "uncordon"]
# Written by the API server on every change, whatever the change.
SERVER_FIELDS = ("resourceVersion", "generation", "managedFields")


def workload(kind: str, name: str, replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": {"team": "shop"}},
            "spec": {"containers": [{"name": "app", "image": f"shop/{name}:1.0"}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": spec,
    }


def pod(name: str, owner: str | None = "web-5d8f") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": "u1", "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "shop/web:1.0"}]},
    }


def node(name: str, unschedulable: bool = False) -> dict[str, Any]:
    spec = {"unschedulable": True} if unschedulable else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


def seed(emulator: Any) -> None:
    emulator.seed_namespace("shop")
    emulator.seed_namespace("billing")
    emulator.create(workload("Deployment", "web", replicas=2))
    emulator.create(workload("StatefulSet", "db", replicas=3), plural="statefulsets")
    emulator.create(workload("DaemonSet", "agent"), plural="daemonsets")
    billing = workload("Deployment", "invoices", replicas=1)
    billing["metadata"]["namespace"] = "billing"
    emulator.create(billing)
    emulator.create(pod("web-abc12"))
    emulator.create(pod("debug", owner=None))
    emulator.create(node("node-1"), plural="nodes")
    emulator.create(node("node-2", unschedulable=True), plural="nodes")


def without_server_fields(obj: dict[str, Any] | None) -> dict[str, Any]:
    assert obj is not None
    copied = copy.deepcopy(obj)
    for key in SERVER_FIELDS:
        copied["metadata"].pop(key, None)
    return copied


def requests_of(emulator: Any) -> list[Any]:
    """Every request the emulator has answered so far (kmock records them all)."""
    return list(emulator.emulator)


def writes_of(emulator: Any) -> list[Any]:
    return [r for r in requests_of(emulator) if str(r.method).upper() not in ("GET", "METHOD.GET")]


def build(emulator: Any, **limits: Any) -> Any:
    cluster = connect_actions(kubeconfig=str(emulator.kubeconfig_path))
    return build_server(cluster, KubernetesActionsSettings(actions=ActionSettings(**limits)))


@pytest.fixture
async def actions_mcp(k8s_emulator: Any) -> AsyncIterator[ThreadedMcpServer]:
    seed(k8s_emulator)
    with ThreadedMcpServer(build(k8s_emulator)) as server:
        yield server


# --------------------------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("current", "wanted", "allowed"),
    [
        (2, 7, True),  # the step (5) is larger than the current count
        (2, 8, False),
        (2, 40, False),
        (10, 20, True),  # doubling
        (10, 21, False),
        (10, 0, True),  # scaling down to zero always passes
        (0, 5, True),
        (0, 6, False),
        (3, 3, True),
    ],
)
def test_scale_step_rule(current: int, wanted: int, allowed: bool) -> None:
    assert scale_step_allowed(current, wanted, max_step=5) is allowed


def test_limits_refuse_in_plain_words() -> None:
    settings = ActionSettings(max_replicas=20, max_scale_step=2, namespaces=frozenset({"shop"}))
    with pytest.raises(
        InvalidArgument, match=r"21 replicas is above this server's limit of 20 \(--max-replicas\)"
    ):
        check_replica_bounds(settings, 21)
    with pytest.raises(InvalidArgument, match="must not be negative"):
        check_replica_bounds(settings, -1)
    with pytest.raises(InvalidArgument, match=r"from 2 to 5 replicas is too large a step: .* at most 2"):
        check_scale_step(settings, 2, 5)
    with pytest.raises(InvalidArgument, match="namespace billing is not one this server may change"):
        check_namespace(settings, "billing")
    with pytest.raises(InvalidArgument, match="not a namespace name"):
        check_namespace(ActionSettings(), "../kube-system")
    check_namespace(settings, "shop")
    check_namespace(ActionSettings(), "anything")  # no list: RBAC decides
    assert parse_namespaces(" shop, billing ,,") == {"shop", "billing"}
    assert parse_namespaces("") == frozenset()
    with pytest.raises(InvalidArgument, match="not a namespace name"):
        parse_namespaces("shop,Bad_Name")


# --------------------------------------------------------------------------------------- through MCP


async def test_tools_and_their_annotations(actions_mcp: ThreadedMcpServer) -> None:
    async with mcp_client(actions_mcp.url) as client:
        listed = {tool.name: tool for tool in (await client.session.list_tools()).tools}
    assert sorted(listed) == TOOLS
    hints = {
        name: (a.readOnlyHint, a.destructiveHint, a.idempotentHint, a.openWorldHint)
        for name, tool in listed.items()
        if (a := tool.annotations) is not None
    }
    assert hints == {
        "rollout_restart": (False, False, False, False),
        "scale": (False, True, True, False),
        "delete_pod": (False, True, True, False),
        "cordon": (False, False, True, False),
        "uncordon": (False, False, True, False),
    }
    for tool in listed.values():
        # Dry run unless asked otherwise; and no tool takes a manifest, patch or URL.
        assert set(tool.inputSchema["properties"]) <= {
            "kind",
            "namespace",
            "name",
            "replicas",
            "node",
            "dry_run",
        }
        assert tool.inputSchema["properties"]["dry_run"]["default"] is True


async def test_real_runs_change_exactly_the_field(actions_mcp: ThreadedMcpServer, k8s_emulator: Any) -> None:
    get = k8s_emulator.get
    before = {
        "web": get("apps/v1", "deployments", "shop", "web"),
        "db": get("apps/v1", "statefulsets", "shop", "db"),
        "agent": get("apps/v1", "daemonsets", "shop", "agent"),
        "node-1": get("v1", "nodes", None, "node-1"),
        "node-2": get("v1", "nodes", None, "node-2"),
    }
    async with mcp_client(actions_mcp.url) as client:
        restarted = (
            await client.call(
                "rollout_restart", kind="DaemonSet", namespace="shop", name="agent", dry_run=False
            )
        ).json()
        scaled = (
            await client.call(
                "scale", kind="StatefulSet", namespace="shop", name="db", replicas=5, dry_run=False
            )
        ).json()
        deleted = (await client.call("delete_pod", namespace="shop", name="web-abc12", dry_run=False)).json()
        cordoned = (await client.call("cordon", node="node-1", dry_run=False)).json()
        uncordoned = (await client.call("uncordon", node="node-2", dry_run=False)).json()

    assert restarted["ok"] and restarted["dryRun"] is False
    assert restarted["target"] == {"kind": "DaemonSet", "namespace": "shop", "name": "agent"}
    [restart_change] = restarted["changes"]
    assert restart_change["field"] == f"spec.template.metadata.annotations[{RESTARTED_AT}]"
    assert restart_change["before"] is None and restart_change["after"]
    agent = without_server_fields(get("apps/v1", "daemonsets", "shop", "agent"))
    expected = without_server_fields(before["agent"])
    expected["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = restart_change["after"]
    assert agent == expected  # the team annotation is kept; nothing else moved

    assert scaled["changes"] == [{"field": "spec.replicas", "before": 3, "after": 5}]
    expected = without_server_fields(before["db"])
    expected["spec"]["replicas"] = 5
    assert without_server_fields(get("apps/v1", "statefulsets", "shop", "db")) == expected
    assert get("apps/v1", "deployments", "shop", "web") == before["web"]  # the other workload is untouched

    assert get("v1", "pods", "shop", "web-abc12") is None
    assert get("v1", "pods", "shop", "debug") is not None
    assert deleted["changes"][0]["before"]["controlledBy"] == "ReplicaSet/web-5d8f"
    assert "creates a replacement" in deleted["message"]

    assert cordoned["changes"] == [{"field": "spec.unschedulable", "before": False, "after": True}]
    assert get("v1", "nodes", None, "node-1")["spec"] == {"unschedulable": True}
    assert uncordoned["changes"] == [{"field": "spec.unschedulable", "before": True, "after": False}]
    assert not get("v1", "nodes", None, "node-2")["spec"].get("unschedulable")


async def test_dry_runs_ask_the_api_server_for_a_dry_run(
    actions_mcp: ThreadedMcpServer, k8s_emulator: Any
) -> None:
    async with mcp_client(actions_mcp.url) as client:
        answers = [
            await client.call("rollout_restart", kind="Deployment", namespace="shop", name="web"),
            await client.call("scale", kind="Deployment", namespace="shop", name="web", replicas=3),
            await client.call("delete_pod", namespace="shop", name="debug"),
            await client.call("cordon", node="node-1"),
            await client.call("uncordon", node="node-2"),
        ]
    for answer in answers:
        body = answer.json()
        assert body["dryRun"] is True and body["message"].startswith("dry run: ")
        assert body["changes"], body
    writes = writes_of(k8s_emulator)
    assert len(writes) == 5
    assert all(write.params.get("dryRun") == "All" for write in writes), [w.params for w in writes]
    assert {write.url.path for write in writes} == {
        "/apis/apps/v1/namespaces/shop/deployments/web",
        "/api/v1/namespaces/shop/pods/debug",
        "/api/v1/nodes/node-1",
        "/api/v1/nodes/node-2",
    }


async def test_bounds_are_refused_before_any_api_call(k8s_emulator: Any) -> None:
    seed(k8s_emulator)
    with ThreadedMcpServer(build(k8s_emulator, max_replicas=10, namespaces=frozenset({"shop"}))) as server:
        async with mcp_client(server.url) as client:
            seen = len(requests_of(k8s_emulator))
            too_many = await client.call(
                "scale", kind="Deployment", namespace="shop", name="web", replicas=11
            )
            negative = await client.call(
                "scale", kind="Deployment", namespace="shop", name="web", replicas=-1
            )
            elsewhere = [
                await client.call(
                    "scale", kind="Deployment", namespace="billing", name="invoices", replicas=2
                ),
                await client.call("rollout_restart", kind="Deployment", namespace="billing", name="invoices"),
                await client.call("delete_pod", namespace="billing", name="x", dry_run=False),
            ]
            bad_name = await client.call("delete_pod", namespace="shop", name="../../nodes/node-1")
            assert len(requests_of(k8s_emulator)) == seen  # none of these reached the API
            # The step needs the current count: one read, and still no write.
            too_far = await client.call(
                "scale", kind="Deployment", namespace="shop", name="web", replicas=9, dry_run=False
            )
    assert too_many.is_error and "11 replicas is above this server's limit of 10" in too_many.text
    assert negative.is_error and "must not be negative" in negative.text
    for answer in elsewhere:
        assert answer.is_error and "namespace billing is not one this server may change" in answer.text
    assert bad_name.is_error and "'name'" in bad_name.text
    assert too_far.is_error and "from 2 to 9 replicas is too large a step" in too_far.text
    assert writes_of(k8s_emulator) == []
    assert k8s_emulator.get("apps/v1", "deployments", "shop", "web")["spec"]["replicas"] == 2


async def test_no_change_needed_writes_nothing(actions_mcp: ThreadedMcpServer, k8s_emulator: Any) -> None:
    async with mcp_client(actions_mcp.url) as client:
        same = (
            await client.call(
                "scale", kind="Deployment", namespace="shop", name="web", replicas=2, dry_run=False
            )
        ).json()
        cordoned = (await client.call("cordon", node="node-2", dry_run=False)).json()
    assert same["changes"] == [] and "already has 2 replicas" in same["message"]
    assert cordoned["changes"] == [] and "already cordoned" in cordoned["message"]
    assert writes_of(k8s_emulator) == []


async def test_api_failures_are_plain_tool_errors(actions_mcp: ThreadedMcpServer, k8s_emulator: Any) -> None:
    forbidden = {
        "kind": "Status",
        "code": 403,
        "message": 'deployments.apps "web" is forbidden: User "mcp" cannot patch resource "deployments"',
    }
    k8s_emulator.emulator["patch /apis/apps/v1/namespaces/shop/deployments/web"] << 403 << forbidden
    async with mcp_client(actions_mcp.url) as client:
        denied = await client.call("rollout_restart", kind="Deployment", namespace="shop", name="web")
        missing = await client.call("delete_pod", namespace="shop", name="gone")
    assert denied.is_error
    assert "lacks the RBAC permission to patch deployments in namespace shop" in denied.text
    assert "verb: patch, resource: deployments, apiGroup: apps" in denied.text
    assert missing.is_error and "not found: pods gone in namespace shop" in missing.text


async def test_a_concurrent_scale_is_not_overridden(k8s_emulator: Any) -> None:
    """The step rule judged the count it read; if the count changed before the write, the write fails."""
    seed(k8s_emulator)
    read_earlier = k8s_emulator.get("apps/v1", "deployments", "shop", "web")
    k8s_emulator.patch("apps/v1", "deployments", "shop", "web", {"spec": {"replicas": 1}})  # someone else
    # The server's read answers the object as it was before that change (it raced with it).
    k8s_emulator.emulator["get /apis/apps/v1/namespaces/shop/deployments/web"] << read_earlier
    with ThreadedMcpServer(build(k8s_emulator)) as server:
        async with mcp_client(server.url) as client:
            answer = await client.call(
                "scale", kind="Deployment", namespace="shop", name="web", replicas=4, dry_run=False
            )
    assert answer.is_error and "409" in answer.text and "modified" in answer.text
    assert k8s_emulator.get("apps/v1", "deployments", "shop", "web")["spec"]["replicas"] == 1


async def test_cli_serves_the_actions_server_with_its_limits(k8s_emulator: Any) -> None:
    seed(k8s_emulator)
    server = McpServerProcess(
        [
            "kubernetes-actions",
            "--kubeconfig",
            str(k8s_emulator.kubeconfig_path),
            "--namespaces",
            "shop",
            "--max-replicas",
            "3",
        ]
    )
    await asyncio.to_thread(server.start)
    try:
        async with mcp_client(server.url) as client:
            scaled = (
                await client.call(
                    "scale", kind="Deployment", namespace="shop", name="web", replicas=3, dry_run=False
                )
            ).json()
            over = await client.call("scale", kind="Deployment", namespace="shop", name="web", replicas=4)
            elsewhere = await client.call(
                "rollout_restart", kind="Deployment", namespace="billing", name="invoices"
            )
    finally:
        await asyncio.to_thread(server.stop)
    assert scaled["changes"] == [{"field": "spec.replicas", "before": 2, "after": 3}]
    assert over.is_error and "limit of 3" in over.text
    assert elsewhere.is_error and "allowed: shop" in elsewhere.text


def test_cli_refuses_bad_limits() -> None:
    import subprocess
    import sys

    for flags, problem in (
        (["--namespaces", "Shop!"], "not a namespace name"),
        (["--max-replicas", "-1"], "must be between 0 and"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ai_ops_cli", "mcp", "kubernetes-actions", *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and problem in done.stderr, done.stderr


async def test_docs_list_every_tool_with_its_arguments() -> None:
    from mcp_servers.kubernetes_actions.cluster import ActionCluster

    doc = (Path(__file__).resolve().parents[2] / "docs" / "mcp-servers.md").read_text()
    section = doc.split("\n## kubernetes-actions\n", 1)[1].split("\n## ", 1)[0]
    server = build_server(ActionCluster(api_client=None, host="", source=""), KubernetesActionsSettings())
    for tool in await server.list_tools():
        [row] = [line for line in section.splitlines() if line.startswith(f"| `{tool.name}` |")]
        for argument in tool.inputSchema["properties"]:
            assert f"`{argument}`" in row, f"{tool.name}({argument}) is not documented"
