"""The kubernetes-actions server against the real API server, as the chart deploys it: its ServiceAccount
holding exactly the chart's ClusterRoles (rendered, bound to a test account, a TokenRequest token).

What only a real API server shows: a dry run (dryRun=All) stores nothing yet answers the object as it
would be; every tool works with exactly these grants; anything else (a Secret) is a 403 named plainly.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mcp_servers.kubernetes_actions.actions import RESTARTED_AT
from mcp_servers.kubernetes_actions.cluster import connect_actions
from mcp_servers.kubernetes_actions.server import KubernetesActionsSettings, build_server
from tests.cluster.controlplane import ControlPlane
from tests.cluster.rest import request
from tests.support.chart_render import load_chart, render
from tests.support.mcp_server_helpers import ThreadedMcpServer, mcp_client

COMPONENT = "mcp-kubernetes-actions"
ACCOUNT = "kubernetes-actions"


@dataclass
class Setup:
    plane: ControlPlane
    namespace: str
    node: str
    url: str


def ok(answer: Any) -> Any:
    assert answer.ok, (answer.status, answer.message)
    return answer.body


def template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def workloads(namespace: str) -> list[tuple[str, dict[str, Any]]]:
    selector = {"matchLabels": {"app": "web"}}
    return [
        (
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 2, "selector": selector, "template": template("web")},
            },
        ),
        (
            f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": template("db"),
                },
            },
        ),
        (
            f"/apis/apps/v1/namespaces/{namespace}/daemonsets",
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")},
            },
        ),
        (
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "debug"},
                "spec": template("debug")["spec"],
            },
        ),
        (
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db-password"},
                "stringData": {"p": "x"},
            },
        ),
    ]


def chart_roles(namespace: str, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    """The chart's ClusterRoles and bindings of the actions server, renamed for this test and bound to
    the test's ServiceAccount (the rules are the chart's, untouched)."""
    rendered = render(load_chart(), {"mcpServers": {"kubernetesActions": {"enabled": True}}})
    objects = []
    for kind, path in (
        ("ClusterRole", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
        ("ClusterRoleBinding", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    ):
        for obj in rendered.of_kind(kind):
            if obj["metadata"]["labels"].get("app.kubernetes.io/component") != COMPONENT:
                continue
            obj = copy.deepcopy(obj)
            obj["metadata"]["name"] += f"-{suffix}"
            if kind == "ClusterRoleBinding":
                obj["roleRef"]["name"] += f"-{suffix}"
                obj["subjects"] = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}]
            objects.append((path, obj))
    assert len(objects) == 4  # workloads and pods; nodes
    return objects


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane) -> Iterator[Setup]:
    plane = control_plane
    namespace = plane.create_namespace("actions")
    suffix = uuid.uuid4().hex[:8]
    node = f"node-{suffix}"
    for path, body in workloads(namespace):
        ok(request(plane, "POST", path, body))
    ok(
        request(
            plane, "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        )
    )
    for path, body in chart_roles(namespace, suffix):
        ok(request(plane, "POST", path, body))
    token = plane.service_account_token(namespace, ACCOUNT)
    kubeconfig = plane.write_kubeconfig(token, user=ACCOUNT)
    cluster = connect_actions(kubeconfig=str(kubeconfig))
    with ThreadedMcpServer(build_server(cluster, KubernetesActionsSettings())) as server:
        yield Setup(plane, namespace, node, server.url)


class Client:
    """One MCP session per call: a session must close in the task that opened it (not a fixture's)."""

    def __init__(self, setup: Setup) -> None:
        self.url = setup.url

    async def call(self, tool: str, **arguments: Any) -> Any:
        async with mcp_client(self.url) as session:
            return await session.call(tool, **arguments)


@pytest.fixture
def client(setup: Setup) -> Client:
    return Client(setup)


def stored(setup: Setup, path: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(request(setup.plane, "GET", path))
    return body


async def test_dry_runs_change_nothing_and_show_the_change(setup: Setup, client: Client) -> None:
    ns = setup.namespace
    paths = [
        f"/apis/apps/v1/namespaces/{ns}/deployments/web",
        f"/apis/apps/v1/namespaces/{ns}/statefulsets/db",
        f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent",
        f"/api/v1/namespaces/{ns}/pods/debug",
        f"/api/v1/nodes/{setup.node}",
    ]
    before = [stored(setup, path) for path in paths]
    restart = (await client.call("rollout_restart", kind="Deployment", namespace=ns, name="web")).json()
    scaled = (await client.call("scale", kind="StatefulSet", namespace=ns, name="db", replicas=5)).json()
    restart_ds = (await client.call("rollout_restart", kind="DaemonSet", namespace=ns, name="agent")).json()
    deleted = (await client.call("delete_pod", namespace=ns, name="debug")).json()
    cordoned = (await client.call("cordon", node=setup.node)).json()
    after = [stored(setup, path) for path in paths]
    assert [obj["metadata"]["resourceVersion"] for obj in after] == [
        obj["metadata"]["resourceVersion"] for obj in before
    ]
    for body in (restart, scaled, restart_ds, deleted, cordoned):
        assert body["ok"] and body["dryRun"] is True, body
    # The dry run's answer is the API server's object as it would be.
    assert restart["changes"][0]["before"] is None and restart["changes"][0]["after"]
    assert scaled["changes"] == [{"field": "spec.replicas", "before": 3, "after": 5}]
    assert deleted["changes"][0]["after"] is None and "nothing replaces it" in deleted["message"]
    assert cordoned["changes"] == [{"field": "spec.unschedulable", "before": False, "after": True}]


async def test_every_tool_works_with_exactly_the_chart_grants(setup: Setup, client: Client) -> None:
    ns = setup.namespace
    restart = await client.call("rollout_restart", kind="StatefulSet", namespace=ns, name="db", dry_run=False)
    stamp = restart.json()["changes"][0]["after"]
    db = stored(setup, f"/apis/apps/v1/namespaces/{ns}/statefulsets/db")
    assert db["spec"]["template"]["metadata"]["annotations"] == {RESTARTED_AT: stamp}
    scaled = await client.call(
        "scale", kind="Deployment", namespace=ns, name="web", replicas=4, dry_run=False
    )
    assert scaled.json()["changes"] == [{"field": "spec.replicas", "before": 2, "after": 4}]
    assert stored(setup, f"/apis/apps/v1/namespaces/{ns}/deployments/web")["spec"]["replicas"] == 4
    cordoned = await client.call("cordon", node=setup.node, dry_run=False)
    assert cordoned.json()["changes"][0]["after"] is True
    assert stored(setup, f"/api/v1/nodes/{setup.node}")["spec"]["unschedulable"] is True
    uncordoned = await client.call("uncordon", node=setup.node, dry_run=False)
    assert uncordoned.json()["changes"] == [{"field": "spec.unschedulable", "before": True, "after": False}]
    assert not stored(setup, f"/api/v1/nodes/{setup.node}")["spec"].get("unschedulable")
    deleted = await client.call("delete_pod", namespace=ns, name="debug", dry_run=False)
    assert deleted.json()["dryRun"] is False
    # No kubelet here: the pod is gone at once or marked for deletion with its grace period.
    gone = request(setup.plane, "GET", f"/api/v1/namespaces/{ns}/pods/debug")
    assert gone.status == 404 or gone.body["metadata"].get("deletionTimestamp")


async def test_nothing_beyond_the_grants(setup: Setup, client: Client) -> None:
    from kubernetes import client as kube

    token = setup.plane.service_account_token(setup.namespace, ACCOUNT)
    with setup.plane.api_client(token) as api:
        with pytest.raises(kube.exceptions.ApiException) as secret:
            kube.CoreV1Api(api).read_namespaced_secret("db-password", setup.namespace)
        with pytest.raises(kube.exceptions.ApiException) as listing:
            kube.CoreV1Api(api).list_namespaced_pod(setup.namespace)
    assert secret.value.status == 403 and listing.value.status == 403
    # A namespace with no such objects: the grant is cluster-wide, so the API answers 404, not 403.
    missing = await client.call("delete_pod", namespace="kube-system", name="nope")
    assert missing.is_error and "not found" in missing.text
