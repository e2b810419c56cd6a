"""Task plans and tool selection, the two middleware types for long tasks with many tools.

``todo_list`` (LangChain's TodoListMiddleware) gives the agent a write_todos tool; each new version of the
plan streams as an SSE ``plan`` event, and ``/api/chat`` returns the final one. ``tool_selector``
(LangChain's LLMToolSelectorMiddleware) lets a small model pick the tools the main model is offered.
The scripted fake LLM plays both models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ai_ops_api.agent_config import MiddlewareEntry
from chat_service.app import create_app
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_support import model_entry, read_sse, running, settings_for, write_config
from tests.support.runbooks import CRASHLOOP, config_with_runbooks, shard, wait_for_search, write_shard_file

STEPS = [
    [
        {"content": "Check the pod's status", "status": "in_progress"},
        {"content": "Read the previous log", "status": "pending"},
    ],
    [
        {"content": "Check the pod's status", "status": "completed"},
        {"content": "Read the previous log", "status": "in_progress"},
    ],
    [
        {"content": "Check the pod's status", "status": "completed"},
        {"content": "Read the previous log", "status": "completed"},
    ],
]


def offered_tools(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["json"].get("tools") or []]


def planner(fake_llm: FakeLLM) -> Any:
    mw = MiddlewareEntry(name="plan", type="todo_list", priority=50, critical=True)
    return config_with_runbooks([model_entry("m", fake_llm.base_url, middleware=[mw])])


def script_plan(fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(
        *(Reply.tool_call("write_todos", {"todos": todos}) for todos in STEPS), Reply.text("All done.")
    )


async def test_each_plan_version_streams_as_a_plan_event(tmp_path: Path, fresh_fake_llm: FakeLLM) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, planner(fresh_fake_llm))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        script_plan(fresh_fake_llm)
        async with client.stream(
            "POST", "/api/chat/stream", json={"message": "why does web-1 crash?"}
        ) as response:
            events = await read_sse(response)
        assert offered_tools(fresh_fake_llm.chat_requests[0]) == ["write_todos"]
        flow = [kind for kind, _ in events if kind in ("tool_call", "tool_result", "plan", "token", "done")]
        assert flow[: 3 * 3] == ["tool_call", "tool_result", "plan"] * 3
        assert flow[-1] == "done" and "token" in flow[9:]
        assert [data["todos"] for kind, data in events if kind == "plan"] == STEPS

        # The same plan written twice is one event; /api/chat has the plan as it ended.
        fresh_fake_llm.enqueue(
            Reply.tool_call("write_todos", {"todos": STEPS[0]}),
            Reply.tool_call("write_todos", {"todos": STEPS[0]}),
            Reply.tool_call("write_todos", {"todos": STEPS[1]}),
            Reply.text("Half done."),
        )
        async with client.stream("POST", "/api/chat/stream", json={"message": "again"}) as response:
            events = await read_sse(response)
        assert [data["todos"] for kind, data in events if kind == "plan"] == [STEPS[0], STEPS[1]]

        script_plan(fresh_fake_llm)
        body = (await client.post("/api/chat", json={"message": "and once more"})).json()
        assert body["plan"] == {"todos": STEPS[-1]} and body["reply"] == "All done."
        fresh_fake_llm.enqueue(Reply.text("no plan this time"))
        assert (await client.post("/api/chat", json={"message": "hi"})).json()["plan"] is None


async def test_an_invalid_plan_is_an_error_to_the_model_not_a_plan(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    path = tmp_path / "agent-config.json"
    write_config(path, planner(fresh_fake_llm))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        fresh_fake_llm.enqueue(
            Reply.tool_call("write_todos", {"todos": [{"content": "x", "status": "someday"}]}),
            Reply.text("ok"),
        )
        async with client.stream("POST", "/api/chat/stream", json={"message": "plan"}) as response:
            events = await read_sse(response)
        assert "plan" not in [kind for kind, _ in events]
        assert [kind for kind, _ in events][-1] == "done"


async def test_a_small_model_selects_the_tools_the_main_model_is_offered(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    runbooks = shard(CRASHLOOP)
    write_shard_file(tmp_path, 0, runbooks)
    selector = MiddlewareEntry(
        name="pick",
        type="tool_selector",
        priority=10,
        critical=True,
        config={"model": "selector", "maxTools": 1, "alwaysInclude": ["not-a-tool-now"]},
    )
    plan = MiddlewareEntry(name="plan", type="todo_list", priority=50)
    main = model_entry("m", fresh_fake_llm.base_url, default=True, middleware=[selector, plan])
    small = model_entry("selector", fresh_fake_llm.base_url, model="fake-selector")
    path = tmp_path / "agent-config.json"
    write_config(path, config_with_runbooks([main, small], [(0, runbooks)]))
    async with running(create_app(settings_for(path))) as app, app.client() as client:
        await wait_for_search(client, "CrashLoopBackOff", lambda r: bool(r["hits"]))
        fresh_fake_llm.enqueue(
            Reply.text('{"tools": ["search_runbooks", "write_todos"]}'), model="fake-selector"
        )
        fresh_fake_llm.enqueue(Reply.text("picked"), model="m")
        body = (await client.post("/api/chat", json={"message": "my pod restarts"})).json()
        assert body["reply"] == "picked"
        select, answer = fresh_fake_llm.chat_requests
        assert select["json"]["model"] == "fake-selector"
        # The selector chose among both tools; the main model got the first one only (maxTools 1). The
        # alwaysInclude name no tool has now is left out instead of failing the turn.
        assert "search_runbooks" in str(select["json"]) and "write_todos" in str(select["json"])
        assert offered_tools(answer) == ["search_runbooks"]

        status = (await client.get("/api/status")).json()
        assert [m["type"] for m in status["middleware"]["m"]] == ["tool_selector", "todo_list"]
        assert status["warnings"] == []
