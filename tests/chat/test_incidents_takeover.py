"""Two chat replicas share the Investigations in the Kubernetes emulator; the first claims one and dies (or
freezes) mid-investigation, the second takes it over once the lease has expired and diagnoses it.

Replica 1 is its own process (tests/harness/chat_replica.py): its model call is held in the fake LLM, so
it is provably mid-investigation when the test SIGKILLs it (a crash) or SIGSTOPs it (a frozen node, a
long pause: the lease is not renewed, yet the process comes back later with an answer). Replica 2 is the
app in the test's loop. A frozen replica that wakes up must not overwrite replica 2's diagnosis.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

from chat_service.incidents.store import KubernetesInvestigationStore
from tests.harness.chat_replica import ChatReplica
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config
from tests.support.incidents_support import app_with_store, diagnosis, investigation

LEASE = 3.0
LIMIT = 60.0
STALE = "replica 1's late diagnosis, after its claim was taken over"
SUMMARY = "replica 2's diagnosis: checkout-1 is out of memory."


@pytest.mark.parametrize("death", ["killed", "frozen"])
async def test_a_replica_that_dies_mid_investigation_is_taken_over_after_its_lease(
    tmp_path: Path,
    fresh_fake_llm: FakeLLM,
    k8s_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    death: str,
) -> None:
    config = tmp_path / "agent.json"
    write_config(config, agent_config([model_entry("m", fresh_fake_llm.base_url, default=True)]))
    released = threading.Event()
    fresh_fake_llm.enqueue(
        Reply.held(released, then=Reply.tool_call("diagnosis", diagnosis(STALE))),
        Reply.tool_call("diagnosis", diagnosis(SUMMARY)),
    )
    first = ChatReplica(config, k8s_emulator.url, "replica-1", LEASE)
    try:
        first.start()
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as one:
            asked = await one.post("/api/investigations", json={"question": "why does checkout restart?"})
            assert asked.status_code == 202, asked.text
            name = asked.json()["name"]

            async def in_flight() -> dict[str, Any] | None:
                detail = await investigation(one, name)
                claimed = detail["status"].get("claimedBy", "")
                return detail if claimed.startswith("replica-1-") and fresh_fake_llm.chat_requests else None

            claimed = await eventually(in_flight, "replica 1 claimed it and asked the model", LIMIT, 0.1)
        assert claimed["phase"] == "Running" and claimed["status"]["attempts"] == 1
        first.signal(signal.SIGKILL if death == "killed" else signal.SIGSTOP)

        monkeypatch.setenv("HOSTNAME", "replica-2")  # the identity of the in-process replica
        settings = settings_for(config, investigation_lease_seconds=LEASE)
        store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
        async with running(app_with_store(settings, store)) as second, second.client() as client:

            async def diagnosed() -> dict[str, Any] | None:
                detail = await investigation(client, name)
                return detail if detail["phase"] not in ("Pending", "Running") else None

            detail = await eventually(diagnosed, "replica 2 took it over and finished", LIMIT, 0.1)
            status = detail["status"]
            assert detail["phase"] == "Diagnosed", status
            assert status["summary"] == SUMMARY and status["attempts"] == 2
            assert status["claimedBy"].startswith("replica-2-")

            if death == "frozen":
                # Replica 1 wakes up with its model's answer in hand: it notices the claim is gone and
                # drops its outcome (or its run is stopped before it has one).
                released.set()
                first.signal(signal.SIGCONT)

                async def settled_again() -> bool:
                    noticed = "claim lost" in first.output() or "outcome dropped" in first.output()
                    overwritten = (await investigation(client, name))["status"]["summary"] != SUMMARY
                    return noticed or overwritten

                await eventually(settled_again, "replica 1 noticed it was taken over", LIMIT, 0.1)
            after = await investigation(client, name)
            assert after["phase"] == "Diagnosed" and after["status"]["summary"] == SUMMARY
            assert after["status"]["claimedBy"] == status["claimedBy"] and after["status"]["attempts"] == 2
            events = k8s_emulator.emulator.stored(kmock.resource("v1/events"), "default")
            assert [(e["reason"], e["message"]) for e in events] == [("InvestigationDiagnosed", SUMMARY)]
    finally:
        first.stop()


async def test_a_failed_lease_renewal_is_retried_not_the_end_of_renewing(
    tmp_path: Path, fresh_fake_llm: FakeLLM, k8s_emulator: Any
) -> None:
    """The API server answers a renewal's status patch with 500 twice (a blip): the worker renews at its next
    tick, so the lease stays alive and no other replica would take a healthy run over."""
    config = tmp_path / "agent.json"
    write_config(config, agent_config([model_entry("m", fresh_fake_llm.base_url, default=True)]))
    released = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(released, then=Reply.tool_call("diagnosis", diagnosis(SUMMARY))))
    settings = settings_for(config, investigation_lease_seconds=LEASE)
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
    blips = {"left": 0}

    def blip(_request: Any) -> bool:
        if blips["left"] > 0:
            blips["left"] -= 1
            return True
        return False

    async with running(app_with_store(settings, store)) as chat, chat.client() as client:
        name = (await client.post("/api/investigations", json={"question": "why?"})).json()["name"]
        path = f"/apis/ai-ops.dev/v1alpha1/namespaces/default/investigations/{name}"
        (  # the renewal's status patch (made with the claim's resourceVersion, no read first)
            k8s_emulator.emulator[f"patch {path}/status"][blip]
            << 500
            << {"kind": "Status", "code": 500, "message": "blip"}
        )

        def stored() -> dict[str, Any]:
            obj = k8s_emulator.get("ai-ops.dev/v1alpha1", "investigations", "default", name)
            return dict((obj or {}).get("status") or {})

        await eventually(lambda: fresh_fake_llm.chat_requests, "the model asked", LIMIT, 0.05)
        first_lease = stored()["leaseExpiresAt"]
        blips["left"] = 2  # the next two renewals fail
        await eventually(lambda: blips["left"] == 0, "both blips served", LIMIT, 0.05)
        await eventually(
            lambda: stored().get("leaseExpiresAt", first_lease) > first_lease,
            "the lease renewed after the blips",
            LIMIT,
            0.1,
        )
        released.set()
        await eventually(lambda: stored().get("phase") == "Diagnosed", "diagnosed", LIMIT, 0.1)
    assert stored()["attempts"] == 1 and stored()["summary"] == SUMMARY


async def test_an_outcome_is_stored_through_a_blip_of_the_api(
    tmp_path: Path, fresh_fake_llm: FakeLLM, k8s_emulator: Any
) -> None:
    """The API server fails the status patches right as the run finishes: the worker stores its outcome once the
    API answers again, instead of losing it (and running the investigation a second time)."""
    config = tmp_path / "agent.json"
    write_config(config, agent_config([model_entry("m", fresh_fake_llm.base_url, default=True)]))
    released = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(released, then=Reply.tool_call("diagnosis", diagnosis(SUMMARY))))
    settings = settings_for(config, investigation_lease_seconds=30)
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
    blips = {"left": 0}

    def blip(_request: Any) -> bool:
        if blips["left"] > 0:
            blips["left"] -= 1
            return True
        return False

    async with running(app_with_store(settings, store)) as chat, chat.client() as client:
        name = (await client.post("/api/investigations", json={"question": "why?"})).json()["name"]
        path = f"/apis/ai-ops.dev/v1alpha1/namespaces/default/investigations/{name}"
        (  # the outcome's status patch (and the reads after a failed one)
            k8s_emulator.emulator[f"patch {path}/status"][blip]
            << 503
            << {"kind": "Status", "code": 503, "message": "blip"}
        )

        def stored() -> dict[str, Any]:
            obj = k8s_emulator.get("ai-ops.dev/v1alpha1", "investigations", "default", name)
            return dict((obj or {}).get("status") or {})

        await eventually(lambda: fresh_fake_llm.chat_requests, "the model asked", LIMIT, 0.05)
        blips["left"] = 3  # the patches as the run ends (a renewal takes none: its next tick is 10 s away)
        released.set()
        await eventually(lambda: blips["left"] == 0, "the blips served", LIMIT, 0.05)
        await eventually(lambda: stored().get("phase") == "Diagnosed", "diagnosed", LIMIT, 0.1)
    assert stored()["attempts"] == 1 and stored()["summary"] == SUMMARY
    assert len(fresh_fake_llm.chat_requests) == 1  # ran once


async def test_a_replica_that_shuts_down_hands_its_investigations_back(
    tmp_path: Path, fresh_fake_llm: FakeLLM, k8s_emulator: Any
) -> None:
    """A graceful stop (a rolling update's SIGTERM) puts the investigation it was running back to Pending,
    so the next replica starts on it at once instead of after the lease (60 s by default)."""
    config = tmp_path / "agent.json"
    write_config(config, agent_config([model_entry("m", fresh_fake_llm.base_url, default=True)]))
    released = threading.Event()
    fresh_fake_llm.enqueue(
        Reply.held(released, then=Reply.tool_call("diagnosis", diagnosis(STALE))),
        Reply.tool_call("diagnosis", diagnosis(SUMMARY)),
    )
    settings = settings_for(config, investigation_lease_seconds=600)

    def stored(name: str) -> dict[str, Any]:
        obj = k8s_emulator.get("ai-ops.dev/v1alpha1", "investigations", "default", name)
        return dict((obj or {}).get("status") or {})

    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
    async with running(app_with_store(settings, store)) as first, first.client() as client:
        name = (await client.post("/api/investigations", json={"question": "why?"})).json()["name"]
        await eventually(lambda: fresh_fake_llm.chat_requests, "replica 1 asked the model", LIMIT, 0.05)
    released.set()
    handed_back = stored(name)
    assert handed_back.get("phase", "Pending") == "Pending", handed_back
    assert "claimedBy" not in handed_back and "leaseExpiresAt" not in handed_back
    assert handed_back["attempts"] == 1
    store = KubernetesInvestigationStore(k8s_emulator.url, "default", poll_seconds=0.5)
    async with running(app_with_store(settings, store)) as _second:
        await eventually(lambda: stored(name).get("phase") == "Diagnosed", "replica 2 diagnosed", LIMIT, 0.1)
    assert stored(name)["summary"] == SUMMARY and stored(name)["attempts"] == 2
