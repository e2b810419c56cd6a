"""Bad input and broken dependencies lose nothing: a malformed notification is a 400 that says where, a
model that is down fails the investigation with the reason and a retry diagnoses it once the model is
back, and Redis (the conversation store) going away mid-investigation is a clear failure reason, never a
500, with a retry that works once Redis is back. (The caps on a flood of labels and annotations are in
test_incidents_flow.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.test_incidents_core import alert, notification
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.redis_server import RedisServer
from tests.harness.waiting import eventually
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config
from tests.support.incidents_support import HOOK, diagnosis, investigation

LIMIT = 60.0


def app_for(tmp_path: Path, llm: FakeLLM, **settings: Any) -> Any:
    from chat_service.app import create_app

    path = tmp_path / "agent.json"
    write_config(path, agent_config([model_entry("m", llm.base_url, default=True)]))
    return create_app(settings_for(path, investigation_lease_seconds=5, **settings))


async def finished(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        detail = await investigation(client, name)
        return detail if detail["phase"] not in ("Pending", "Running") else None

    return await eventually(settled, f"investigation {name} finished", LIMIT, 0.05)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"version": "4", "status": "firing"}, "alerts: Field required"),
        ({"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}, "alerts.0.labels"),
        (
            {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {}}]},
            "alerts.0.startsAt: Field required",
        ),
        ({"version": "3", "status": "firing", "alerts": []}, "version"),
        (
            notification(alert(labels={"alertname": "X", "pod": 5})),
            "alerts.0.labels.pod: Input should be a valid string",
        ),
        (notification(alert(status="burning")), "alerts.0.status"),
        (notification(*[alert()] * 1001), "alerts: List should have at most 1000 items"),
    ],
)
async def test_a_malformed_notification_is_a_400_that_says_where(
    tmp_path: Path, fake_llm: FakeLLM, payload: dict[str, Any], where: str
) -> None:
    async with running(app_for(tmp_path, fake_llm, investigations=False)) as chat, chat.client() as client:
        answer = await client.post(HOOK, json=payload)
        listing = await client.get("/api/investigations")
    assert answer.status_code == 400, answer.text
    assert where in answer.json()["error"]["message"]
    assert listing.json()["investigations"] == []  # nothing half-created


async def test_a_model_that_is_down_fails_and_a_retry_diagnoses_once_it_is_back(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    fresh_fake_llm.enqueue(*[Reply.error(503, "upstream overloaded")] * 10)
    async with running(app_for(tmp_path, fresh_fake_llm)) as chat, chat.client() as client:
        (created,) = (await client.post(HOOK, json=notification())).json()["investigations"]
        name = created["name"]
        failed = await finished(client, name)
        assert failed["phase"] == "Failed", failed
        assert failed["status"]["reason"] and "503" not in failed["status"].get("summary", "")
        assert (await client.get("/api/investigations")).status_code == 200

        fresh_fake_llm.reset()  # the model is back
        fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis("back: checkout-1 is OOMKilled")))
        retried = await client.post(f"/api/investigations/{name}/retry")
        assert retried.status_code == 200, retried.text
        detail = await finished(client, name)
    assert detail["phase"] == "Diagnosed", detail
    assert detail["status"]["summary"] == "back: checkout-1 is OOMKilled"
    assert detail["status"]["attempts"] == 2 and "reason" not in detail["status"]
    store = chat.services.incidents.store
    reasons = [e["reason"] for e in store.events if e["involvedObject"]["kind"] == "Investigation"]
    assert reasons == ["InvestigationFailed", "InvestigationDiagnosed"]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: it is stopped and started again on the same port."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_redis_down_mid_investigation_fails_it_clearly_and_a_retry_works_once_it_is_back(
    tmp_path: Path, fresh_fake_llm: FakeLLM, own_redis: RedisServer
) -> None:
    port = own_redis.port
    released = threading.Event()
    fresh_fake_llm.enqueue(Reply.held(released, then=Reply.text("looking")))
    app = app_for(tmp_path, fresh_fake_llm, redis_url=own_redis.url)
    async with running(app) as chat, chat.client() as client:
        asked = await client.post("/api/investigations", json={"question": "why is checkout slow?"})
        assert asked.status_code == 202, asked.text
        name = asked.json()["name"]
        await eventually(lambda: fresh_fake_llm.chat_requests, "the model asked", LIMIT)
        own_redis.kill()  # the conversation store goes away while the model thinks
        released.set()
        failed = await finished(client, name)
        assert failed["phase"] == "Failed", failed
        assert "Redis" in failed["status"]["reason"], failed["status"]
        # The routes answer (none is a 500) while Redis is down.
        for answer in (
            await client.get("/api/investigations"),
            await client.get(f"/api/investigations/{name}"),
            await client.post(HOOK, json=notification()),
        ):
            assert answer.status_code < 500, answer.text
        down_retry = await client.post(f"/api/investigations/{name}/retry")
        assert down_retry.status_code < 500, down_retry.text
        again = await finished(client, name)
        assert again["phase"] == "Failed" and "Redis" in again["status"]["reason"]
        assert again["status"]["attempts"] == 2  # the retry ran, and failed for the same clear reason

        own_redis.start(port=port)  # Redis is back, where the app points
        fresh_fake_llm.reset()
        fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis("checkout is slow: CPU throttled")))
        retried = await client.post(f"/api/investigations/{name}/retry")
        assert retried.status_code == 200, retried.text
        detail = await finished(client, name)
    assert detail["phase"] == "Diagnosed", detail
    assert detail["status"]["summary"] == "checkout is slow: CPU throttled"
    assert detail["status"]["attempts"] == 3 and "reason" not in detail["status"]
