"""The investigation store's semantics, the same in memory and through the Kubernetes API (emulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chat_service.incidents.store import (
    Conflict,
    InvestigationStore,
    KubernetesInvestigationStore,
    MemoryInvestigationStore,
    NotFound,
    ObjectRef,
)

SPEC = {"source": "api", "question": "Why does checkout restart?"}


@pytest.fixture(params=["memory", "kubernetes"])
async def store(request: pytest.FixtureRequest, k8s_emulator: Any) -> AsyncIterator[InvestigationStore]:
    if request.param == "memory":
        yield MemoryInvestigationStore()
        return
    kube = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.2)
    try:
        yield kube
    finally:
        await kube.aclose()


async def test_create_is_the_deduplication(store: InvestigationStore) -> None:
    first, created = await store.create("inv-a", SPEC)
    again, created_again = await store.create("inv-a", {**SPEC, "question": "something else"})
    assert (created, created_again) == (True, False)
    assert again.spec["question"] == "Why does checkout restart?"
    assert [i.name for i in await store.list()] == ["inv-a"]
    assert first.phase == "Pending" and first.status == {}


async def test_a_status_patch_with_a_stale_resource_version_conflicts(store: InvestigationStore) -> None:
    item, _ = await store.create("inv-b", SPEC)
    won = await store.patch_status("inv-b", {"phase": "Running", "claimedBy": "one"}, item.resource_version)
    with pytest.raises(Conflict):
        await store.patch_status("inv-b", {"phase": "Running", "claimedBy": "two"}, item.resource_version)
    current = await store.get("inv-b")
    assert current is not None and current.status["claimedBy"] == "one"
    assert current.resource_version == won.resource_version != item.resource_version
    # Without a precondition the patch merges; None removes a field.
    merged = await store.patch_status("inv-b", {"claimedBy": None, "summary": "done"})
    assert merged.status == {"phase": "Running", "summary": "done"}
    assert merged.spec == await_spec(await store.get("inv-b"))


def await_spec(item: Any) -> dict[str, Any]:
    return item.spec


async def test_missing_investigations(store: InvestigationStore) -> None:
    assert await store.get("inv-none") is None
    with pytest.raises(NotFound):
        await store.patch_status("inv-none", {"phase": "Running"})


async def test_memory_events_are_recorded() -> None:
    store = MemoryInvestigationStore()
    await store.record_event(ObjectRef("v1", "Pod", "checkout-1", "shop"), "Diagnosed", "OOMKilled")
    (event,) = store.events
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "checkout-1",
        "namespace": "shop",
    }
    assert (event["reason"], event["message"], event["type"]) == ("Diagnosed", "OOMKilled", "Normal")


async def test_events_reach_the_kubernetes_api(k8s_emulator: Any) -> None:
    store = KubernetesInvestigationStore(k8s_emulator.url, "default")
    try:
        item, _ = await store.create("inv-c", SPEC)
        await store.record_event(
            ObjectRef("ai-ops.dev/v1alpha1", "Investigation", "inv-c", "default", item.uid),
            "Diagnosed",
            "x" * 5000,
        )
    finally:
        await store.aclose()
    import kmock

    (event,) = k8s_emulator.emulator.stored(kmock.resource("v1/events"), "default")
    assert event["involvedObject"]["name"] == "inv-c" and event["involvedObject"]["uid"] == item.uid
    assert event["reason"] == "Diagnosed" and len(event["message"]) == 1024


async def test_the_api_server_refuses_a_spec_the_crd_refuses(k8s_emulator: Any) -> None:
    from chat_service.incidents.store import StoreError

    store = KubernetesInvestigationStore(k8s_emulator.url, "default")
    try:
        with pytest.raises(StoreError, match="422"):
            await store.create("inv-d", {"source": "api"})  # neither alert nor question
    finally:
        await store.aclose()
