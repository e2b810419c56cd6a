"""An Investigation's conversation, read and continued by people through /api/threads and /api/chat.

The rule (docs/incidents.md): any authenticated caller of the chat may read the thread of any Investigation
of its namespace, and continue it once the investigator has finished; it stays off the others' lists.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from chat_service.app import create_app
from tests.chat.test_incidents_core import notification
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config

HOOK = "/api/alerts/alertmanager"
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
DIAGNOSIS = {
    "summary": "checkout-1 is OOMKilled at its 512Mi limit",
    "rootCause": "the new cache needs about 700Mi",
    "confidence": "high",
    "evidence": [{"tool": "pods_get", "arguments": '{"name": "checkout-1"}', "excerpt": "OOMKilled"}],
    "recommendations": ["raise the limit to 1Gi"],
    "runbooksUsed": [],
}


def app_for(tmp_path: Path, llm: FakeLLM, **settings: Any) -> Any:
    path = tmp_path / "agent.json"
    write_config(path, agent_config([model_entry("m", llm.base_url, default=True)]))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    return create_app(settings_for(path, auth_tokens_file=tokens, investigation_lease_seconds=5, **settings))


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def finished(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    for _ in range(1000):
        detail: dict[str, Any] = (await client.get(f"/api/investigations/{name}", headers=as_(ALICE))).json()
        if detail["phase"] not in ("Pending", "Running"):
            return detail
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} did not finish: {detail}")


async def test_any_caller_reads_and_continues_an_investigations_thread(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", DIAGNOSIS, usage=(100, 20)))
    async with (
        running(app_for(tmp_path, fresh_fake_llm)) as chat,
        httpx.AsyncClient(base_url=chat.url, timeout=30) as client,
    ):
        (created,) = (await client.post(HOOK, json=notification(), headers=as_(ALICE))).json()[
            "investigations"
        ]
        name = created["name"]
        detail = await finished(client, name)
        thread_id = f"investigations:{name}"
        assert detail["phase"] == "Diagnosed"
        assert detail["thread"] == {"id": thread_id, "url": f"/api/threads/{thread_id}"}

        # Bob did not create it and is not the identity `investigations`: he reads it all the same.
        read = await client.get(f"/api/threads/{thread_id}", headers=as_(BOB))
        assert read.status_code == 200, read.text
        messages = read.json()["messages"]
        assert messages[0]["role"] == "user" and "<alert>" in messages[0]["content"]
        assert [c["name"] for c in messages[1]["tool_calls"]] == ["diagnosis"]

        # Alice continues it: her turn is appended to the same conversation, with its history.
        turn = await client.post(
            "/api/chat", json={"message": "Is 1Gi enough?", "thread_id": thread_id}, headers=as_(ALICE)
        )
        assert turn.status_code == 200, turn.text
        assert turn.json()["thread_id"] == thread_id and turn.json()["reply"] == "echo: Is 1Gi enough?"
        sent = fresh_fake_llm.chat_requests[-1]["json"]["messages"]
        assert any("<alert>" in str(m.get("content")) for m in sent if m["role"] == "user")
        again = (await client.get(f"/api/threads/{thread_id}", headers=as_(BOB))).json()["messages"]
        assert again[: len(messages)] == messages
        assert [m["content"] for m in again[len(messages) :]] == ["Is 1Gi enough?", "echo: Is 1Gi enough?"]

        # It is on Alice's list (she wrote in it), not on Bob's; deleting it only takes it off her list.
        alice_list = (await client.get("/api/threads", headers=as_(ALICE))).json()["threads"]
        assert [t["id"] for t in alice_list] == [thread_id]
        assert (await client.get("/api/threads", headers=as_(BOB))).json()["threads"] == []
        deleted = await client.delete(f"/api/threads/{thread_id}", headers=as_(ALICE))
        assert deleted.status_code == 204
        assert (await client.get("/api/threads", headers=as_(ALICE))).json()["threads"] == []
        assert (await client.get(f"/api/threads/{thread_id}", headers=as_(BOB))).status_code == 200

        # The investigation's own status is untouched by the person's turn.
        assert (await finished(client, name))["status"]["summary"] == DIAGNOSIS["summary"]


async def test_investigation_threads_that_are_not_there_or_still_running(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    async with (
        running(app_for(tmp_path, fresh_fake_llm)) as chat,
        httpx.AsyncClient(base_url=chat.url, timeout=30) as client,
    ):
        # No such investigation, or not the thread it has: 404, never someone else's private thread.
        for thread_id in ("investigations:inv-nothing", "investigations:x", "alice:t1"):
            answer = await client.get(f"/api/threads/{thread_id}", headers=as_(BOB))
            assert answer.status_code in (404, 422), (thread_id, answer.text)
        missing = await client.post(
            "/api/chat", json={"message": "hi", "thread_id": "investigations:inv-nothing"}, headers=as_(BOB)
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "thread_not_found"
        # A private thread of Alice's stays hers: Bob cannot reach it through the shared prefix.
        own = await client.post("/api/chat", json={"message": "mine", "thread_id": "t1"}, headers=as_(ALICE))
        assert own.status_code == 200
        assert (await client.get("/api/threads/investigations:t1", headers=as_(BOB))).status_code == 404

        # While the investigator runs, a person's turn would interleave with it: 409, nothing written.
        fresh_fake_llm.enqueue(Reply.hang())
        name = (
            await client.post("/api/investigations", json={"question": "why?"}, headers=as_(ALICE))
        ).json()["name"]
        for _ in range(500):
            item = await chat.services.incidents.store.get(name)
            if item is not None and item.phase == "Running":
                break
            await asyncio.sleep(0.02)
        busy = await client.post(
            "/api/chat",
            json={"message": "done yet?", "thread_id": f"investigations:{name}"},
            headers=as_(BOB),
        )
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "thread_busy", busy.text
        fresh_fake_llm.reset()
