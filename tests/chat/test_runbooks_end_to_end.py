"""Runbooks from the Runbook resource to a cited answer, on the Kubernetes API emulator.

The real operator (kopf, in the test's loop) publishes the Ready runbooks in shard ConfigMaps; the chat,
started before the runbook exists and never restarted, reads its agent config and the shards through
``KubeConfigMapSource`` as in a pod. A turn whose user message paraphrases the runbook (the scripted fake
LLM calls search_runbooks, the tool runs for real against the chat's index) cites it; an edit is found by
its new text and a deletion removes it from the search and from the agent's tools. A runbook with empty
content is not Ready (EmptyContent) and never reaches the chat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chat_service.app import create_app
from chat_service.config.kubernetes import KubeConfigMapSource
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.operator.test_operator_kopf import (
    AI,
    CM,
    NS,
    agent_config,
    model,
    provider,
    runbook,
    running_operator,
    status_of,
)
from tests.operator.test_operator_runbooks import published, ready
from tests.support.chat_support import running, settings_for, write_config
from tests.support.runbooks import CRASHLOOP, config_with_runbooks, hit_names, search, wait_for_search

PARAPHRASE = "my app keeps restarting over and over, what do I do?"
ANSWER = "The runbook pod-crashloop applies: read the previous container's log, then fix or roll back."
# A ceiling for each step, not the target (benchmarks/runbook_retrieval.py --end-to-end measures that).
WITHIN = 30.0


def crashloop_runbook(content: str = CRASHLOOP["content"]) -> dict[str, Any]:
    return runbook(
        CRASHLOOP["name"],
        content,
        title=CRASHLOOP["title"],
        description=CRASHLOOP["description"],
        tags=list(CRASHLOOP["tags"]),
        match={"alertNames": list(CRASHLOOP["alert_names"])},
    )


async def config_applied(client: Any, checksum: str) -> dict[str, Any] | None:
    status: dict[str, Any] = (await client.get("/api/status")).json()
    return status if status["config"]["checksum"] == checksum else None


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["json"].get("tools") or []]


async def test_an_applied_runbook_reaches_the_running_chat_is_cited_follows_its_edit_and_goes_when_deleted(
    tmp_path: Path, k8s_emulator: Any, fresh_fake_llm: FakeLLM
) -> None:
    k8s_emulator.create(
        provider("fake", key_secret=None, type="openai_compatible", baseURL=fresh_fake_llm.base_url)
    )
    k8s_emulator.create(model("fake-model", "fake", default=True))
    async with running_operator(k8s_emulator):
        config = await eventually(
            lambda: (c := agent_config(k8s_emulator)) is not None and c.models and c, "the agent config"
        )
        assert config.runbook_shards == ()

        # The mounted file holds no runbooks: whatever the chat finds later came through the API.
        path = tmp_path / "agent-config.json"
        write_config(path, config_with_runbooks([], namespace=NS))
        source = KubeConfigMapSource(k8s_emulator.url, NS, CM, retry_seconds=0.2)
        async with (
            running(create_app(settings_for(path), kube_source=source)) as app,
            app.client() as client,
        ):
            status = await eventually(
                lambda: config_applied(client, config.checksum), "the operator's config"
            )
            assert status["config"]["source"].startswith(f"configmap {NS}/{CM}@")
            assert (await search(client, "CrashLoopBackOff"))["hits"] == []

            # One runbook has nothing in it: it says so in its status and never reaches the chat.
            k8s_emulator.create(runbook("blank", "\n  \n", title="Nothing written yet"))
            k8s_emulator.create(crashloop_runbook())
            await eventually(lambda: ready(k8s_emulator, "pod-crashloop"), "the runbook Ready", WITHIN)
            await eventually(
                lambda: ready(k8s_emulator, "blank", "False", "EmptyContent"), "blank: EmptyContent", WITHIN
            )
            found = await wait_for_search(
                client, "CrashLoopBackOff", lambda r: "pod-crashloop" in hit_names(r), within=WITHIN
            )
            assert found["hits"][0]["title"] == CRASHLOOP["title"]
            listed = (await client.get("/api/runbooks")).json()["runbooks"]
            assert [r["name"] for r in listed] == ["pod-crashloop"]

            fresh_fake_llm.enqueue(
                Reply.tool_call(
                    "search_runbooks", {"query": "application keeps restarting CrashLoopBackOff"}
                ),
                Reply.text(ANSWER),
            )
            body = (await client.post("/api/chat", json={"message": PARAPHRASE})).json()
            assert body["model"] == "fake-model"  # the operator's model, not the mounted file's
            assert offered_tools(fresh_fake_llm.chat_requests[0]) == ["search_runbooks"]
            (call,) = body["tool_calls"]
            assert call["name"] == "search_runbooks" and call["error"] is None
            hits = json.loads(call["output"])["hits"]
            assert hits[0]["name"] == "pod-crashloop" and hits[0]["title"] == CRASHLOOP["title"]
            assert body["reply"] == ANSWER
            assert body["citations"] == [
                {"runbook": "pod-crashloop", "title": CRASHLOOP["title"], "section": hits[0]["section"]}
            ]

            # An edit: its new text is found, the replaced text no longer.
            first_hash = status_of(k8s_emulator, "runbooks", "pod-crashloop")["contentHash"]
            edited = "## Resolution\nRestart the zebrafish sidecar, then check the readiness probes.\n"
            k8s_emulator.patch(AI, "runbooks", NS, "pod-crashloop", {"spec": {"content": edited}})
            changed = await wait_for_search(
                client,
                "zebrafish sidecar",
                lambda r: hit_names(r)[:1] == ["pod-crashloop"] and "zebrafish" in r["hits"][0]["text"],
                within=WITHIN,
            )
            assert changed["hits"][0]["section"] == "Resolution"
            assert "kubectl logs POD --previous" not in str(await search(client, "kubectl logs previous"))
            await eventually(
                lambda: (
                    status_of(k8s_emulator, "runbooks", "pod-crashloop").get("contentHash")
                    not in (None, first_hash)
                ),
                "the new content hash in the status",
            )
            assert ready(k8s_emulator, "pod-crashloop")

            # Deleted: the search no longer returns it and the next turn is offered no search_runbooks.
            k8s_emulator.delete(AI, "runbooks", NS, "pod-crashloop")
            await wait_for_search(client, "zebrafish sidecar", lambda r: r["hits"] == [], within=WITHIN)
            assert (await client.get("/api/runbooks")).json()["runbooks"] == []
            assert published(k8s_emulator) == {}
            fresh_fake_llm.enqueue(Reply.text("No runbook."))
            await client.post("/api/chat", json={"message": PARAPHRASE})
            assert offered_tools(fresh_fake_llm.chat_requests[-1]) == []
