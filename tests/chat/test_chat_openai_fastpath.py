"""The OpenAI fast request path sends exactly what the SDK's own transform sends (same JSON at the server)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from chat_service import openai_fastpath
from tests.harness.fake_llm import FakeLLM, Reply


@tool
def get_pod_status(namespace: str, name: str, verbose: bool = False) -> str:
    """Status of a pod."""
    return "ok"


HISTORY = [
    SystemMessage("You are an operations assistant."),
    HumanMessage(
        content=[
            {"type": "text", "text": "look at this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    ),
    AIMessage(
        content="",
        tool_calls=[
            {"name": "get_pod_status", "args": {"namespace": "prod", "name": "web-1"}, "id": "call_1"}
        ],
    ),
    ToolMessage(content=[{"type": "text", "text": "Running"}], tool_call_id="call_1"),
    HumanMessage("and now? ünïcödé ✓"),
]


async def _requests(fake_llm: FakeLLM) -> list[dict[str, Any]]:
    fake_llm.reset()
    model = ChatOpenAI(
        model="fake",
        base_url=fake_llm.base_url,
        api_key="x",
        max_retries=0,
        temperature=0.2,
        max_tokens=50,
        stop=["END"],
        stream_usage=True,
    )
    bound = model.bind_tools([get_pod_status], parallel_tool_calls=False)
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"))
    await bound.ainvoke(HISTORY)
    async for _chunk in bound.astream(HISTORY):
        pass
    return [r["json"] for r in fake_llm.chat_requests]


async def test_fast_path_sends_the_same_request_as_the_sdk(fake_llm: FakeLLM) -> None:
    openai_fastpath.uninstall()
    try:
        stock = await _requests(fake_llm)
        assert openai_fastpath.install()
        before = dict(openai_fastpath.counts)
        fast = await _requests(fake_llm)
        assert openai_fastpath.counts["fast"] - before["fast"] == 2, "both requests took the fast path"
    finally:
        openai_fastpath.install()  # the app installs it; leave the process as the app would
        fake_llm.reset()
    assert len(stock) == 2 and fast == stock
    assert stock[1]["stream"] is True and stock[1]["stream_options"] == {"include_usage": True}
    assert stock[0]["tools"][0]["function"]["name"] == "get_pod_status"


def test_only_plain_json_takes_the_fast_path() -> None:
    assert openai_fastpath.is_plain_json({"a": [1, 2.5, "x", None, True, {"b": []}]})
    assert not openai_fastpath.is_plain_json({"a": object()})
    assert not openai_fastpath.is_plain_json({1: "non-string key"})
    assert not openai_fastpath.is_plain_json({"a": ("tuple",)})
