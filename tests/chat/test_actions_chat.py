"""ActionRequests on the chat side, over the real app, a real MCP server with write tools, the fake LLM
and the memory store: a tool that writes is never callable (its call records a proposal and ends the
turn), only approvers decide, a decision stands, and the conversation continues with the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ai_ops_api.actions import MAX_COMMENT
from ai_ops_api.agent_config import MiddlewareEntry
from ai_ops_api.specs import MiddlewareType
from chat_service.actions.proposals import PROPOSED_PATTERN
from chat_service.actions.service import ActionService
from chat_service.actions.store import KubernetesActionStore, MemoryActionStore
from chat_service.app import create_app
from chat_service.secrets import SecretResolver
from chat_service.tools.toolbox import MCPToolbox
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.actions_support import WriterServer
from tests.support.chat_support import (
    RunningApp,
    agent_config,
    mcp_server,
    model_entry,
    running,
    settings_for,
    write_config,
)
from tests.support.mcp_server_helpers import ThreadedMcpServer

ALICE = "alice-approver-token-0001"
BOB = "bob-not-approver-token-02"
RESTART = {"kind": "Deployment", "namespace": "shop", "name": "web", "reason": "pods stuck on old config"}


def offered(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"] for t in request["json"].get("tools") or []}


@contextlib.asynccontextmanager
async def chat_with_writer(
    tmp_path: Path, llm: FakeLLM, middleware: Iterable[MiddlewareEntry] = ()
) -> AsyncIterator[tuple[RunningApp, WriterServer]]:
    writer = WriterServer()
    with ThreadedMcpServer(writer.mcp) as served:
        path = tmp_path / "agent.json"
        model = model_entry("m", llm.base_url, default=True, middleware=middleware)
        write_config(path, agent_config([model], [mcp_server("writer", served.url)]))
        tokens = tmp_path / "tokens"
        tokens.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
        settings = settings_for(
            path,
            auth_tokens_file=tokens,
            action_approvers=frozenset({"alice"}),
            mcp_connect_timeout_seconds=30.0,  # a loaded machine: the server must not be skipped
        )
        async with running(create_app(settings)) as chat:
            yield chat, writer


async def propose_restart(client: httpx.AsyncClient, llm: FakeLLM, thread: str = "t1") -> str:
    llm.enqueue(Reply.tool_call("restart_workload", RESTART))
    answer = await client.post("/api/chat", json={"message": "restart web in shop", "thread_id": thread})
    assert answer.status_code == 200, answer.text
    (call,) = answer.json()["tool_calls"]
    found = PROPOSED_PATTERN.search(call["output"] or "")
    assert found, answer.json()
    return found.group(1)


async def test_a_write_tool_is_never_called_its_call_records_an_action_request_and_ends_the_turn(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    async with chat_with_writer(tmp_path, fresh_fake_llm) as (chat, writer), chat.client(ALICE) as alice:
        name = await propose_restart(alice, fresh_fake_llm)
        assert writer.calls == [], "the MCP server never saw the write"
        assert len(fresh_fake_llm.chat_requests) == 1, "the turn ended with the proposal"
        tools = offered(fresh_fake_llm.chat_requests[0])
        restart = tools["restart_workload"]
        assert restart["description"].startswith("PROPOSES an action that a person must approve")
        assert "reason" in restart["parameters"]["required"]
        assert "dry_run" not in restart["parameters"]["properties"], "the executor decides on dry runs"
        assert "description" in tools["get_status"] and not tools["get_status"]["description"].startswith(
            "PROPOSES"
        )
        for write in ("delete_pod", "annotate", "flush_caches"):  # destructive, and no annotations at all
            assert tools[write]["description"].startswith("PROPOSES"), write

        thread = (await alice.get("/api/threads/t1")).json()["messages"]
        assert thread[-1]["role"] == "tool"
        assert thread[-1]["content"] == f"proposed as ActionRequest {name}; awaiting approval"

        listed = (await alice.get("/api/actions")).json()
        assert listed["executes"] is False and "never runs" in listed["note"]
        assert listed["can_decide"] is True
        (item,) = listed["actions"]
        assert item["name"] == name and name.startswith("restart-workload-")
        assert (
            item["phase"] == "Pending" and item["server"] == "writer" and item["tool"] == "restart_workload"
        )
        assert item["arguments"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}
        assert item["target"] == {
            "api_version": "apps/v1",
            "kind": "Deployment",
            "namespace": "shop",
            "name": "web",
        }
        assert item["reason"] == "pods stuck on old config" and item["risk"] == "medium"
        assert item["requested_by"] == {"caller": "alice", "threadId": "t1"}
        created = datetime.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
        expires = datetime.datetime.fromisoformat(item["expires_at"].replace("Z", "+00:00"))
        assert datetime.timedelta(minutes=14) < expires - created <= datetime.timedelta(minutes=15, seconds=1)
        async with chat.client(BOB) as bob:
            assert (await bob.get("/api/actions")).json()["can_decide"] is False


async def test_proposal_tools_of_the_toolbox_risk_target_and_a_missing_reason(tmp_path: Path) -> None:
    writer = WriterServer()
    with ThreadedMcpServer(writer.mcp) as served:
        config = agent_config(servers=[mcp_server("writer", served.url)])
        toolbox = MCPToolbox(
            SecretResolver(tmp_path), connect_timeout=30, tool_timeout=30, allow_loopback=True
        )
        store = MemoryActionStore(namespace="ops")
        toolbox.proposer = ActionService(store)
        try:
            tools = {t.name: t for t in (await toolbox.toolset(config, config.checksum)).tools}
            proposals = {n for n, t in tools.items() if (t.metadata or {}).get("ai_ops_proposal")}
            assert proposals == {
                "restart_workload",
                "rollout_restart",
                "delete_pod",
                "annotate",
                "flush_caches",
            }
            run = {"metadata": {"ai_ops_caller": "carol"}, "configurable": {"thread_id": "carol:th-9"}}
            text = await tools["delete_pod"].ainvoke(
                {"namespace": "shop", "name": "web-1", "reason": "wedged"},
                config=run,  # type: ignore[arg-type]
            )
            (item,) = await store.list()
            assert text == f"proposed as ActionRequest {item.name}; awaiting approval"
            assert item.spec["risk"] == "high"
            assert item.spec["target"] == {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": "shop",
                "name": "web-1",
            }
            assert item.spec["requestedBy"] == {"caller": "carol", "threadId": "th-9"}
            refused = await tools["annotate"].ainvoke(
                {"namespace": "a", "name": "b", "note": "c", "reason": " "}
            )
            assert "needs a `reason`" in refused and len(await store.list()) == 1
            assert (await tools["get_status"].ainvoke({"kind": "Pod", "namespace": "a", "name": "b"}))[0][
                "text"
            ] == "a/b: 3/3 ready"
            assert [name for name, _ in writer.calls] == ["get_status"], "only the read-only tool ran"
        finally:
            await toolbox.aclose()


async def test_only_approvers_decide_once_and_never_on_an_expired_request(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    async with chat_with_writer(tmp_path, fresh_fake_llm) as (chat, writer), chat.client(ALICE) as alice:
        name = await propose_restart(alice, fresh_fake_llm)
        async with chat.client(BOB) as bob:
            refused = await bob.post(f"/api/actions/{name}/approve", json={"comment": "ok by me"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert "AI_OPS_ACTION_APPROVERS" in refused.json()["error"]["message"]
        assert (await alice.get(f"/api/actions/{name}")).json()["decision"] is None

        approved = await alice.post(f"/api/actions/{name}/approve", json={"comment": "go"})
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["phase"] == "Approved"
        assert body["decision"]["approved"] is True and body["decision"]["by"] == "chat:alice"
        assert body["decision"]["comment"] == "go"
        for verb in ("approve", "reject"):
            again = await alice.post(f"/api/actions/{name}/{verb}", json={})
            assert again.status_code == 409, again.text
            assert "already Approved" in again.json()["error"]["message"]
        assert (await alice.get(f"/api/actions/{name}")).json()["decision"]["by"] == "chat:alice"

        store = chat.services.actions.store
        stale = await store.create(
            "stale-one", {"tool": "restart_workload", "expiresAt": "2020-01-01T00:00:00Z", "server": "writer"}
        )
        late = await alice.post(f"/api/actions/{stale.name}/approve")
        assert late.status_code == 409 and "expired" in late.json()["error"]["message"]
        assert (await store.get(stale.name)).decision is None  # type: ignore[union-attr]
        assert (await alice.get("/api/actions/nope-123")).status_code == 404
        assert (await alice.post("/api/actions/nope-123/approve")).status_code == 404
        assert writer.calls == [], "the chat executes nothing, approved or not"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/actions/{name}/approve", b"not json"),
        ("/api/actions/{name}/approve", b"[]"),
        ("/api/actions/{name}/reject", b'{"comment": 5}'),
        ("/api/actions/{name}/reject", b'{"comment": "x", "by": "someone-else"}'),
        ("/api/actions/{name}/approve", b'{"comment": "' + b"x" * (MAX_COMMENT + 1) + b'"}'),
        ("/api/actions/{name}/approve", b"\xff\xfe"),
        ("/api/actions/BAD_NAME/approve", b"{}"),
        ("/api/actions/{name}-/reject", b"{}"),
    ],
)
async def test_a_bad_decision_request_is_a_422_and_decides_nothing(
    tmp_path: Path, fresh_fake_llm: FakeLLM, path: str, body: bytes
) -> None:
    async with chat_with_writer(tmp_path, fresh_fake_llm) as (chat, _writer), chat.client(ALICE) as alice:
        name = await propose_restart(alice, fresh_fake_llm)
        answer = await alice.post(
            path.format(name=name), content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
        assert (await alice.get(f"/api/actions/{name}")).json()["phase"] == "Pending"


async def test_a_rejection_continues_the_conversation_with_the_comment(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    async with chat_with_writer(tmp_path, fresh_fake_llm) as (chat, writer), chat.client(ALICE) as alice:
        name = await propose_restart(alice, fresh_fake_llm, thread="conv-7")
        fresh_fake_llm.enqueue(Reply.text("Understood: web stays as it is."))
        rejected = await alice.post(f"/api/actions/{name}/reject", json={"comment": "not during the sale"})
        assert rejected.status_code == 200 and rejected.json()["phase"] == "Rejected"

        async def answered() -> list[dict[str, Any]] | None:
            messages = (await alice.get("/api/threads/conv-7")).json()["messages"]
            return messages if messages[-1]["content"] == "Understood: web stays as it is." else None

        messages = await eventually(answered, "the assistant answered the outcome", timeout=30)
        outcome = messages[-2]
        assert outcome["role"] == "user" and outcome["content"].startswith(
            f"[ai-ops-actions] ActionRequest {name}"
        )
        assert "Rejected" in outcome["content"] and "not during the sale" in outcome["content"]
        assert "chat:alice" in outcome["content"]
        seen = fresh_fake_llm.chat_requests[-1]["json"]["messages"]
        assert "not during the sale" in str(seen[-1]["content"]), "the model read the outcome"
        assert writer.calls == []


async def test_human_in_the_loop_makes_a_read_only_tool_a_proposal(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    hitl = MiddlewareEntry(
        name="approve-reads",
        type=MiddlewareType.HUMAN_IN_THE_LOOP,
        priority=10,
        config={"tools": ["writer/get_status"]},
    )
    async with (
        chat_with_writer(tmp_path, fresh_fake_llm, [hitl]) as (chat, writer),
        chat.client(ALICE) as alice,
    ):
        fresh_fake_llm.enqueue(
            Reply.tool_call(
                "get_status", {"kind": "Deployment", "namespace": "shop", "name": "web", "reason": "audit"}
            ),
            Reply.text("Proposed; waiting for approval."),
        )
        answer = await alice.post("/api/chat", json={"message": "status of web", "thread_id": "h1"})
        assert answer.status_code == 200, answer.text
        (call,) = answer.json()["tool_calls"]
        found = PROPOSED_PATTERN.search(call["output"] or "")
        assert found, call
        item = (await alice.get(f"/api/actions/{found.group(1)}")).json()
        assert item["tool"] == "get_status" and item["risk"] == "low" and item["reason"] == "audit"
        assert item["arguments"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}
        assert writer.called("get_status") == [], "the listed read-only tool did not run"


async def test_the_kubernetes_store_creates_and_decides_with_a_resource_version(k8s_emulator: Any) -> None:
    """The Kubernetes store itself: a proposal is created there with the spec the CRD takes, a decision
    is a status patch with the resourceVersion it was read at, and a stale one is a Conflict."""
    from chat_service.actions.service import ActionService
    from chat_service.actions.store import Conflict

    store = KubernetesActionStore(k8s_emulator.url, "default", poll_seconds=0.3)
    service = ActionService(store, approvers=frozenset({"alice"}))
    try:
        name = await service.propose(
            server="kubernetes-actions",
            tool="scale",
            arguments={"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 3},
            reason="load",
            risk="high",
            caller="alice",
            thread_id="t-1",
        )
        (listed,) = await store.list()
        assert listed.name == name and listed.phase == "Pending" and listed.spec["risk"] == "high"
        decided = await service.decide(name, "alice", False, "not now")
        assert decided.decision == {
            "approved": False,
            "by": "chat:alice",
            "at": decided.decision["at"],  # type: ignore[index]
            "comment": "not now",
        }
        with pytest.raises(Conflict):
            await store.patch_status(
                name, {"decision": {"approved": True, "by": "x"}}, listed.resource_version
            )
    finally:
        await store.aclose()


def replica_on(settings: Any, emulator_url: str) -> Any:
    """``create_app(settings)`` whose ActionRequests live in the emulator (as in a cluster), polled quickly."""
    app = create_app(settings)
    actions = app.state.services.actions
    actions.store = KubernetesActionStore(emulator_url, "default", poll_seconds=0.3)
    actions.poll_seconds = 0.3
    return app


async def test_another_replica_continues_the_conversation_once_when_the_proposer_is_gone(
    tmp_path: Path, fresh_fake_llm: FakeLLM, k8s_emulator: Any, redis_server: Any
) -> None:
    """Replica A proposes and stops before anyone decides; the operator's outcome arrives while replicas B
    and C run (both on the same ActionRequests and the same Redis conversations): one of them continues
    the conversation, once, and a replica started later does not continue it again."""
    writer = WriterServer()
    api = "ai-ops.dev/v1alpha1"
    thread = f"conv-{uuid.uuid4().hex[:8]}"
    answer_text = "The restart went through: web is rolling out new pods."
    with ThreadedMcpServer(writer.mcp) as served:
        path = tmp_path / "agent.json"
        write_config(
            path,
            agent_config(
                [model_entry("m", fresh_fake_llm.base_url, default=True)], [mcp_server("writer", served.url)]
            ),
        )
        tokens = tmp_path / "tokens"
        tokens.write_text(f"alice:{ALICE}\n")
        settings = settings_for(
            path,
            auth_tokens_file=tokens,
            action_approvers=frozenset({"alice"}),
            redis_url=redis_server.url,
            mcp_connect_timeout_seconds=30.0,
        )
        async with running(replica_on(settings, k8s_emulator.url)) as first, first.client(ALICE) as alice:
            name = await propose_restart(alice, fresh_fake_llm, thread=thread)
        asked_before = len(fresh_fake_llm.chat_requests)

        def continued_by() -> str | None:
            obj = k8s_emulator.get(api, "actionrequests", "default", name) or {}
            return ((obj.get("status") or {}).get("continued") or {}).get("by")

        async def outcome_messages(client: httpx.AsyncClient) -> list[dict[str, Any]]:
            messages = (await client.get(f"/api/threads/{thread}")).json()["messages"]
            return [m for m in messages if str(m["content"]).startswith("[ai-ops-actions]")]

        fresh_fake_llm.enqueue(Reply.text(answer_text))
        async with (
            running(replica_on(settings, k8s_emulator.url)) as second,
            running(replica_on(settings, k8s_emulator.url)) as third,
            second.client(ALICE) as alice,
        ):
            replicas = {second.services.actions.replica, third.services.actions.replica}
            decided = await alice.post(f"/api/actions/{name}/approve", json={"comment": "go"})
            assert decided.status_code == 200, decided.text
            # What the operator writes once it has run the tool.
            done = {
                "phase": "Succeeded",
                "result": {"isError": False, "excerpt": "restarted Deployment shop/web"},
            }
            k8s_emulator.patch(api, "actionrequests", "default", name, {"status": done}, subresource="status")

            async def answered() -> list[dict[str, Any]] | None:
                messages = (await alice.get(f"/api/threads/{thread}")).json()["messages"]
                return messages if messages[-1]["content"] == answer_text else None

            messages = await eventually(
                answered, "a remaining replica continued the conversation", timeout=60
            )
            assert messages[-2]["content"].startswith(f"[ai-ops-actions] ActionRequest {name}")
            assert (
                "Succeeded" in messages[-2]["content"]
                and "restarted Deployment shop/web" in messages[-2]["content"]
            )
            assert continued_by() in replicas
            await asyncio.sleep(2.0)  # several polls of both replicas
            assert len(await outcome_messages(alice)) == 1
            claimed_by = continued_by()
        async with (
            running(replica_on(settings, k8s_emulator.url)) as restarted,
            restarted.client(ALICE) as alice,
        ):
            await asyncio.sleep(2.0)  # a restarted replica's first polls
            assert len(await outcome_messages(alice)) == 1
        assert continued_by() == claimed_by
        assert len(fresh_fake_llm.chat_requests) == asked_before + 1, "one continuation turn in all"
        assert writer.calls == []
