"""What happens when things overlap: an alert resolved while its diagnosis runs, and a model that
answers the diagnosis tool with something that is no diagnosis."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from tests.chat.test_incidents_core import alert, notification
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config
from tests.support.incidents_support import HOOK, diagnosis, investigation

LIMIT = 60.0


def app_for(tmp_path: Path, llm: FakeLLM) -> Any:
    from chat_service.app import create_app

    path = tmp_path / "agent.json"
    write_config(path, agent_config([model_entry("m", llm.base_url, default=True)]))
    return create_app(settings_for(path, investigation_lease_seconds=3))


async def finished(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        detail = await investigation(client, name)
        return detail if detail["phase"] not in ("Pending", "Running") else None

    return await eventually(settled, f"investigation {name} finished", LIMIT, 0.05)


async def test_an_alert_resolved_mid_diagnosis_ends_resolved_with_the_diagnosis(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    released = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(released, then=Reply.tool_call("diagnosis", diagnosis("it was OOM"))))
    async with running(app_for(tmp_path, fresh_fake_llm)) as chat, chat.client() as client:
        (created,) = (await client.post(HOOK, json=notification())).json()["investigations"]
        name = created["name"]
        await eventually(lambda: fresh_fake_llm.chat_requests, "the model asked", LIMIT)
        resolved = await client.post(HOOK, json=notification(alert(status="resolved"), status="resolved"))
        assert resolved.status_code == 202
        meanwhile = await investigation(client, name)
        assert meanwhile["phase"] == "Running" and meanwhile["status"]["alertStatus"] == "resolved"
        released.set()
        detail = await finished(client, name)
    assert detail["phase"] == "Resolved", detail
    assert detail["status"]["summary"] == "it was OOM" and detail["status"]["attempts"] == 1


async def test_a_diagnosis_that_is_no_diagnosis_is_a_clear_outcome(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    bogus = {"summary": 42, "confidence": "extreme", "evidence": "all of it", "recommendations": {"a": 1}}
    fresh_fake_llm.enqueue(*[Reply.tool_call("diagnosis", bogus)] * 4)
    async with running(app_for(tmp_path, fresh_fake_llm)) as chat, chat.client() as client:
        name = (await client.post("/api/investigations", json={"question": "why?"})).json()["name"]
        detail = await finished(client, name)
        listing = await client.get("/api/investigations")
    assert listing.status_code == 200
    # Not a diagnosis, and no words to fall back on: Failed, saying so (a retry can ask again).
    assert detail["phase"] == "Failed", detail
    assert "diagnosis" in detail["status"]["reason"] and "summary" not in detail["status"]
