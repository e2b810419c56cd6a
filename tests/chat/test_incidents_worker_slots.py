"""A worker takes the next Pending investigation as soon as one of its runs ends, not at the next poll."""

from __future__ import annotations

import asyncio
from typing import Any

from chat_service.incidents.store import KubernetesInvestigationStore, StoredInvestigation
from chat_service.incidents.worker import InvestigationWorker


async def test_a_freed_slot_claims_the_next_pending_one_before_the_poll(k8s_emulator: Any) -> None:
    # The Kubernetes store wakes workers only on this replica's creates; the poll here is an hour away.
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=3600)
    runs: list[str] = []

    async def run(item: StoredInvestigation) -> dict[str, Any]:
        runs.append(item.name)
        return {"phase": "Diagnosed", "summary": "done"}

    for i in range(4):
        await store.create(f"inv-{i}", {"question": "q"})
    worker = InvestigationWorker(store, run, identity="w", concurrency=1, lease_seconds=3600)
    worker.start()
    try:
        for _ in range(600):
            if len(runs) == 4 and not worker.running:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await store.aclose()
    assert runs == [f"inv-{i}" for i in range(4)]


async def test_two_workers_on_the_kubernetes_store_run_each_once_from_their_stale_candidates(
    k8s_emulator: Any,
) -> None:
    # Both list everything once, then claim from what they read: half of each one's candidates are
    # taken by the other meanwhile, and only the resourceVersion stops a second claim.
    stores = [KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=3600) for _ in (1, 2)]
    runs: list[str] = []

    async def run(item: StoredInvestigation) -> dict[str, Any]:
        runs.append(item.name)
        await asyncio.sleep(0.01)
        return {"phase": "Diagnosed", "summary": "done"}

    for i in range(12):
        await stores[0].create(f"inv-{i:02}", {"question": "q"})
    workers = [
        InvestigationWorker(store, run, identity=f"w{n}", concurrency=2, lease_seconds=3600)
        for n, store in enumerate(stores)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in range(600):
            if len(runs) >= 12 and not any(w.running for w in workers):
                break
            await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            await worker.stop()
    items = await stores[0].list()
    for store in stores:
        await store.aclose()
    assert sorted(runs) == [f"inv-{i:02}" for i in range(12)]
    assert {i.phase for i in items} == {"Diagnosed"}
