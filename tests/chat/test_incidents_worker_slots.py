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
