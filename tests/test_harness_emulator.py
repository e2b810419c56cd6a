"""The k8s_emulator fixture answers like an API server, and kopf runs against it."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tests.harness.emulator import EmulatorHandle, matches_label_selector
from tests.harness.kopf_runner import kopf_operator
from tests.harness.waiting import eventually

API = "ai-ops.dev/v1alpha1"
MCPSERVERS = f"/apis/{API}/namespaces/default/mcpservers"


def mcp_server(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"url": "http://mcp.example:8080/mcp", **spec},
    }


@pytest.fixture
async def http(k8s_emulator: EmulatorHandle) -> Any:
    async with httpx.AsyncClient(base_url=k8s_emulator.url, timeout=10) as client:
        yield client


async def test_discovery_lists_ai_ops_kinds_builtins_and_namespaces(http: httpx.AsyncClient) -> None:
    resources = (await http.get(f"/apis/{API}")).json()["resources"]
    assert {r["name"] for r in resources} == {
        "llmproviders", "llmmodels", "llmmiddlewares", "mcpservers", "runbooks",
        "llmproviders/status", "llmmodels/status", "llmmiddlewares/status", "mcpservers/status",
        "runbooks/status",
        "investigations", "investigations/status", "actionrequests", "actionrequests/status",
    }  # fmt: skip
    mcps = next(r for r in resources if r["name"] == "mcpservers")
    assert (mcps["kind"], mcps["namespaced"], mcps["shortNames"]) == ("MCPServer", True, ["mcps"])
    core = {r["name"] for r in (await http.get("/api/v1")).json()["resources"]}
    assert {"namespaces", "secrets", "configmaps", "events"} <= core
    groups = {g["name"] for g in (await http.get("/apis")).json()["groups"]}
    assert {"apps", "coordination.k8s.io", "kopf.dev", "ai-ops.dev"} <= groups
    namespaces = (await http.get("/api/v1/namespaces")).json()["items"]
    assert [ns["metadata"]["name"] for ns in namespaces] == ["default"]
    default = (await http.get("/api/v1/namespaces/default")).json()
    assert default["status"]["phase"] == "Active"
    created = await http.post(
        "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    )
    assert created.status_code == 200
    assert (await http.get("/api/v1/namespaces/team-a")).json()["metadata"]["uid"]


async def test_create_stamps_metadata_applies_defaults_and_drops_status(http: httpx.AsyncClient) -> None:
    body = mcp_server("kube", status={"health": "Healthy"})
    body["metadata"]["uid"] = "client-chosen"
    response = await http.post(MCPSERVERS, json=body)
    assert response.status_code == 200, response.text
    obj = response.json()
    meta = obj["metadata"]
    assert meta["namespace"] == "default"
    assert meta["generation"] == 1
    assert meta["uid"] != "client-chosen"
    assert meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z")
    assert obj["spec"]["transport"] == "streamable_http"
    assert obj["spec"]["healthCheck"]["intervalSeconds"] == 30
    assert "status" not in obj
    fetched = (await http.get(f"{MCPSERVERS}/kube")).json()
    assert fetched == obj
    again = await http.post(MCPSERVERS, json=mcp_server("kube"))
    assert again.status_code == 409
    assert again.json()["reason"] == "AlreadyExists"
    missing = await http.get(f"{MCPSERVERS}/nope")
    assert (missing.status_code, missing.json()["kind"], missing.json()["reason"]) == (
        404,
        "Status",
        "NotFound",
    )


async def test_generation_counts_spec_changes_only(http: httpx.AsyncClient) -> None:
    merge = {"Content-Type": "application/merge-patch+json"}
    created = (await http.post(MCPSERVERS, json=mcp_server("gen"))).json()
    versions = [int(created["metadata"]["resourceVersion"])]

    async def patch(body: Any, path: str = f"{MCPSERVERS}/gen") -> dict[str, Any]:
        response = await http.patch(path, json=body, headers=merge)
        assert response.status_code == 200, response.text
        obj: dict[str, Any] = response.json()
        versions.append(int(obj["metadata"]["resourceVersion"]))
        return obj

    assert (await patch({"spec": {"description": "changed"}}))["metadata"]["generation"] == 2
    labelled = await patch({"metadata": {"labels": {"team": "ops"}}})
    assert labelled["metadata"]["generation"] == 2
    status = await patch(
        {"status": {"health": "Healthy", "observedGeneration": 2}}, f"{MCPSERVERS}/gen/status"
    )
    assert (status["metadata"]["generation"], status["status"]["health"]) == (2, "Healthy")
    # The main resource ignores status (status subresource), /status ignores spec.
    ignored = await patch({"status": {"health": "Unhealthy"}, "spec": {"maintenance": True}})
    assert (ignored["status"]["health"], ignored["spec"]["maintenance"], ignored["metadata"]["generation"]) == (
        "Healthy", True, 3)  # fmt: skip
    status_only = await patch({"spec": {"maintenance": False}}, f"{MCPSERVERS}/gen/status")
    assert (status_only["spec"]["maintenance"], status_only["metadata"]["generation"]) == (True, 3)
    assert versions[:-1] == sorted(set(versions[:-1]))  # each change got a newer resourceVersion


async def test_invalid_mcpserver_gets_422_with_field_path(http: httpx.AsyncClient) -> None:
    response = await http.post(MCPSERVERS, json=mcp_server("bad", transport="carrier-pigeon"))
    assert response.status_code == 422
    status = response.json()
    assert (status["kind"], status["reason"]) == ("Status", "Invalid")
    assert "spec.transport" in status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.transport"]
    created = await http.post(MCPSERVERS, json=mcp_server("good"))
    assert created.status_code == 200
    bad_patch = await http.patch(
        f"{MCPSERVERS}/good",
        json={"spec": {"healthCheck": {"intervalSeconds": 1}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert bad_patch.status_code == 422
    assert "spec.healthCheck.intervalSeconds" in bad_patch.json()["message"]
    # Unknown fields are pruned like the API server does, unless the client asks for strict validation.
    unknown = mcp_server("extra", colour="blue")
    assert "colour" not in (await http.post(MCPSERVERS, json=unknown)).json()["spec"]
    strict = await http.post(
        MCPSERVERS, params={"fieldValidation": "Strict"}, json=mcp_server("x", colour="b")
    )
    assert strict.status_code == 422


async def test_stale_resource_version_conflicts(http: httpx.AsyncClient) -> None:
    created = (await http.post(MCPSERVERS, json=mcp_server("rv"))).json()
    stale = created["metadata"]["resourceVersion"]
    merge = {"Content-Type": "application/merge-patch+json"}
    ok = await http.patch(
        f"{MCPSERVERS}/rv",
        headers=merge,
        json={"metadata": {"resourceVersion": stale}, "spec": {"description": "a"}},
    )
    assert ok.status_code == 200
    conflict = await http.patch(
        f"{MCPSERVERS}/rv",
        headers=merge,
        json={"metadata": {"resourceVersion": stale}, "spec": {"description": "b"}},
    )
    assert (conflict.status_code, conflict.json()["reason"]) == (409, "Conflict")
    json_patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    failed = await http.patch(
        f"{MCPSERVERS}/rv", json=json_patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert failed.status_code == 422
    current = (await http.get(f"{MCPSERVERS}/rv")).json()
    assert current["spec"]["description"] == "a"
    assert "finalizers" not in current["metadata"]


async def test_store_helpers_and_label_selectors(
    k8s_emulator: EmulatorHandle, http: httpx.AsyncClient
) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default", "labels": {"app": "x"}},
        "data": {"k": "v"},
    }
    created = k8s_emulator.create(cm)
    assert created["metadata"]["generation"] == 1
    assert k8s_emulator.get("v1", "configmaps", "default", "c") == created
    assert k8s_emulator.get("v1", "configmaps", "default", "nope") is None
    k8s_emulator.patch("v1", "configmaps", "default", "c", {"data": {"k": "w"}})
    listed = (
        await http.get("/api/v1/namespaces/default/configmaps", params={"labelSelector": "app=x"})
    ).json()
    assert [item["data"] for item in listed["items"]] == [{"k": "w"}]
    assert listed["metadata"]["resourceVersion"].isdigit()
    none = (
        await http.get("/api/v1/namespaces/default/configmaps", params={"labelSelector": "app!=x"})
    ).json()
    assert none["items"] == []
    with pytest.raises(kmock.KubernetesError) as invalid:
        k8s_emulator.create(mcp_server("bad", transport="stdio"))
    assert invalid.value.status == 422
    k8s_emulator.delete("v1", "configmaps", "default", "c")
    assert k8s_emulator.list("v1", "configmaps", "default") == []
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "t0p"}}
    stored = (await http.post("/api/v1/namespaces/default/secrets", json=secret)).json()
    assert (stored["data"], "stringData" in stored) == ({"token": "dDBw"}, False)  # base64, as the API server
    await http.delete("/api/v1/namespaces/default/secrets")  # deletecollection
    assert k8s_emulator.list("v1", "secrets") == []
    assert matches_label_selector({"a": "1", "b": "2"}, "a in (1,3),b,!c")
    assert not matches_label_selector({"a": "1"}, "a notin (1)")


async def test_sync_kubernetes_client_works_through_a_thread(k8s_emulator: EmulatorHandle) -> None:
    def use_client() -> tuple[Any, ...]:
        api_client = k8s_config.new_client_from_config(config_file=str(k8s_emulator.kubeconfig_path))
        try:
            core = k8s_client.CoreV1Api(api_client)
            core.create_namespaced_config_map(
                "default",
                k8s_client.V1ConfigMap(metadata=k8s_client.V1ObjectMeta(name="from-client"), data={"a": "b"}),
            )
            read = core.read_namespaced_config_map("from-client", "default")
            namespaces = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata]
            custom = k8s_client.CustomObjectsApi(api_client)
            custom.create_namespaced_custom_object(
                "ai-ops.dev", "v1alpha1", "default", "mcpservers", mcp_server("via-client")
            )
            patched: Any = custom.patch_namespaced_custom_object_status(
                "ai-ops.dev",
                "v1alpha1",
                "default",
                "mcpservers",
                "via-client",
                {"status": {"health": "Unknown"}},
            )
            return (read.data or {}).get("a"), namespaces, patched["status"]["health"]
        finally:
            api_client.close()

    # The sync client blocks: run it in a thread, so this loop keeps serving the emulator.
    assert await asyncio.to_thread(use_client) == ("b", ["default"], "Unknown")
    with pytest.raises(k8s_client.ApiException) as missing:
        await asyncio.to_thread(
            lambda: k8s_client.CoreV1Api(
                k8s_config.new_client_from_config(config_file=str(k8s_emulator.kubeconfig_path))
            ).read_namespaced_secret("nope", "default")
        )
    assert missing.value.status == 404


HANDLERS = """
import kopf

DELETED = []


@kopf.on.create("ai-ops.dev", "v1alpha1", "mcpservers")
def created(body, patch, **_):
    patch.status["health"] = "NotProbed"
    patch.status["observedGeneration"] = body["metadata"]["generation"]


@kopf.on.delete("ai-ops.dev", "v1alpha1", "mcpservers")
def deleted(name, **_):
    DELETED.append(name)
"""


async def test_kopf_handles_create_and_delete(
    k8s_emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_name = f"throwaway_handlers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(HANDLERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    async with kopf_operator(module_name, namespaces=["team-a"]):
        k8s_emulator.create({**mcp_server("watched"), "metadata": {"name": "watched", "namespace": "team-a"}})
        handled = await eventually(
            lambda: (k8s_emulator.get(API, "mcpservers", "team-a", "watched") or {}).get("status"),
            "the create handler patched the status",
        )
        assert handled == {"health": "NotProbed", "observedGeneration": 1}
        obj = k8s_emulator.get(API, "mcpservers", "team-a", "watched")
        assert obj is not None and obj["metadata"]["finalizers"]  # kopf's, because of the delete handler
        k8s_emulator.delete(API, "mcpservers", "team-a", "watched")
        await eventually(
            lambda: k8s_emulator.get(API, "mcpservers", "team-a", "watched") is None,
            "kopf removed its finalizer after the delete handler",
        )
    assert sys.modules[module_name].DELETED == ["watched"]
