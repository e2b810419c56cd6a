"""What keeps a burst of alerts cheap: the workers watch the store (another replica's create is claimed
without a poll), patch with the resourceVersion of their own last write (no read before storing an
outcome), share the work between replicas, and post Events off the run's slot."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from chat_service.incidents.store import (
    KubernetesInvestigationStore,
    MemoryInvestigationStore,
    StoredInvestigation,
    rfc3339,
)
from chat_service.incidents.worker import InvestigationWorker, claim_order
from tests.harness.waiting import eventually

LIMIT = 60.0  # a ceiling for a loaded machine, not a timing
PATH = "/apis/ai-ops.dev/v1alpha1/namespaces/default/investigations"


def phase(k8s_emulator: Any, name: str) -> str | None:
    obj = k8s_emulator.get("ai-ops.dev/v1alpha1", "investigations", "default", name) or {}
    return (obj.get("status") or {}).get("phase")


async def diagnose(item: StoredInvestigation) -> dict[str, Any]:
    return {"phase": "Diagnosed", "summary": f"{item.name} diagnosed"}


async def test_another_replicas_create_is_claimed_without_waiting_for_the_poll(k8s_emulator: Any) -> None:
    # The poll is an hour away: only a watch can tell this worker that the other replica created one.
    creator = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=3600)
    watching = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=3600)
    runs: list[str] = []

    async def run(item: StoredInvestigation) -> dict[str, Any]:
        runs.append(item.name)
        return await diagnose(item)

    worker = InvestigationWorker(watching, run, identity="w", concurrency=2, lease_seconds=3600)
    worker.start()
    try:
        await eventually(lambda: watching._synced, "the worker's store is watching", LIMIT, 0.05)
        await creator.create("inv-elsewhere", {"question": "q"})
        await eventually(lambda: runs == ["inv-elsewhere"], "claimed and run", LIMIT, 0.05)
        await eventually(lambda: phase(k8s_emulator, "inv-elsewhere") == "Diagnosed", "stored", LIMIT, 0.05)
    finally:
        await worker.stop()
        await watching.aclose()
        await creator.aclose()


async def test_an_outcome_is_stored_without_reading_the_investigation_first(k8s_emulator: Any) -> None:
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.2)
    await store.create("inv-read", {"question": "q"})
    worker = InvestigationWorker(store, diagnose, identity="w", concurrency=1, lease_seconds=3600)
    worker.start()
    try:
        await eventually(lambda: phase(k8s_emulator, "inv-read") == "Diagnosed", "diagnosed", LIMIT, 0.05)
    finally:
        await worker.stop()
        await store.aclose()
    # The claim and the outcome: two patches, each with the resourceVersion of what came before.
    assert len(k8s_emulator.emulator[f"get {PATH}/inv-read"]) == 0
    assert len(k8s_emulator.emulator[f"patch {PATH}/inv-read/status"]) == 2


def test_two_replicas_start_on_different_investigations() -> None:
    moment = datetime.datetime(2026, 1, 1, 10, 0, 5, tzinfo=datetime.UTC)
    items = [
        StoredInvestigation(f"inv-{i:02}", "default", {}, {}, str(i), rfc3339(moment)) for i in range(16)
    ]
    first = [i.name for i in claim_order(items, "replica-a", {"replica-b"}, moment)]
    second = [i.name for i in claim_order(items, "replica-b", {"replica-a"}, moment)]
    assert sorted(first) == sorted(second) == [i.name for i in items]  # every one is a candidate of both
    # Each takes its own share first; the other's share comes last, from the other end.
    for slots in (1, 2, 4):
        assert not set(first[:slots]) & set(second[:slots])
    # A lone replica works oldest first.
    assert claim_order(reversed(items), "replica-a", (), moment)[0].name == "inv-15"
    old = StoredInvestigation(
        "inv-old", "default", {}, {}, "99", rfc3339(moment - datetime.timedelta(minutes=5))
    )
    # An investigation of the other's share that has waited long is not left for last.
    for identity, peer in (("replica-a", "replica-b"), ("replica-b", "replica-a")):
        ordered = [i.name for i in claim_order([*items, old], identity, {peer}, moment)]
        assert ordered.index("inv-old") < len(ordered) // 2 + 1


async def test_a_slow_events_api_does_not_hold_the_next_investigation() -> None:
    store = MemoryInvestigationStore()
    released = asyncio.Event()
    recorded: list[str] = []

    async def finished(item: StoredInvestigation) -> None:
        await released.wait()  # the Events API hangs
        recorded.append(item.name)

    for name in ("inv-1", "inv-2"):
        await store.create(name, {"question": "q"})
    worker = InvestigationWorker(store, diagnose, identity="w", concurrency=1, finished=finished)
    worker.start()
    try:

        async def both_diagnosed() -> bool:
            return {i.phase for i in await store.list()} == {"Diagnosed"}

        await eventually(both_diagnosed, "both diagnosed while the Events wait", LIMIT, 0.05)
        assert recorded == []
        released.set()
        await eventually(lambda: sorted(recorded) == ["inv-1", "inv-2"], "the Events posted", LIMIT, 0.05)
    finally:
        await worker.stop()
