"""The middleware chain with LangChain's built-in middleware: each type changes what a real agent does.

Real `create_agent` + `ChatOpenAI` against the scripted OpenAI-compatible server; assertions are on the
agent's answer and on the requests the server received.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain.agents.middleware import ModelCallLimitMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from chat_service.middleware.chain import MIDDLEWARE_ENTRY_POINT_GROUP, is_transient_model_error
from tests.harness.fake_llm import FakeLLM, Reply
from tests.security.netns import run_in_netns
from tests.support.chat_middleware_support import (
    BACKUP,
    LOGGER_NAME,
    MAIN,
    SUMMARIZER,
    ask,
    build_chain,
    make_agent,
    mw,
    reply_of,
    tool_calls,
    user_texts,
    write_plugin,
)

NO_WAIT: dict[str, Any] = {"initialDelaySeconds": 0, "jitter": False}


async def test_model_retry_turns_a_500_into_an_answer(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("retry", "model_retry", maxRetries=2, **NO_WAIT))
    fresh_fake_llm.enqueue(Reply.error(500), Reply.text("recovered"), model=MAIN)
    result = await ask(make_agent(ctx, chain), "status of r1?")
    assert reply_of(result) == "recovered"
    assert len(fresh_fake_llm.chat_requests) == 2


async def test_model_retry_does_not_retry_a_bad_key(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("retry", "model_retry", maxRetries=3, **NO_WAIT))
    fresh_fake_llm.enqueue(Reply.error(401, "bad key"), Reply.text("never"), model=MAIN)
    with pytest.raises(Exception, match="401") as caught:
        await ask(make_agent(ctx, chain), "hello")
    assert not is_transient_model_error(caught.value)
    assert len(fresh_fake_llm.chat_requests) == 1


async def test_model_retry_gives_up_with_a_short_notice(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("retry", "model_retry", maxRetries=1, **NO_WAIT))
    fresh_fake_llm.enqueue(Reply.error(503, "upstream body with details"), Reply.error(503), model=MAIN)
    result = await ask(make_agent(ctx, chain), "hello")
    assert "could not answer" in reply_of(result) and "HTTP 503" in reply_of(result)
    assert "upstream body" not in reply_of(result)
    assert len(fresh_fake_llm.chat_requests) == 2


async def test_model_fallback_answers_from_the_second_model(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("fallback", "model_fallback", models=["backup"]))
    fresh_fake_llm.enqueue(Reply.error(500), model=MAIN)
    fresh_fake_llm.enqueue(Reply.text("from backup"), model=BACKUP)
    result = await ask(make_agent(ctx, chain), "hello")
    assert reply_of(result) == "from backup"
    assert [r["json"]["model"] for r in fresh_fake_llm.chat_requests] == [MAIN, BACKUP]


async def test_model_call_limit_stops_a_tool_loop(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("limit", "model_call_limit", runLimit=2))
    fresh_fake_llm.enqueue(*[Reply.tool_call("lookup", {"host": f"r{i}"}) for i in range(5)], model=MAIN)
    result = await ask(make_agent(ctx, chain), "loop forever")
    assert len(fresh_fake_llm.chat_requests) == 2
    assert "limit" in reply_of(result).lower()


async def test_model_call_limit_per_thread_spans_turns(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("limit", "model_call_limit", threadLimit=1))
    agent = make_agent(ctx, chain)
    assert reply_of(await ask(agent, "first", thread="a")) == "echo: first"
    second = await ask(agent, "second", thread="a")
    assert "limit" in reply_of(second).lower()
    assert reply_of(await ask(agent, "other thread", thread="b")) == "echo: other thread"
    assert len(fresh_fake_llm.chat_requests) == 2


async def test_tool_call_limit_blocks_further_calls(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("tools", "tool_call_limit", runLimit=1))
    fresh_fake_llm.enqueue(
        Reply.tool_call("lookup", {"host": "r1"}),
        Reply.tool_call("lookup", {"host": "r2"}),
        Reply.text("done"),
        model=MAIN,
    )
    tool_calls.clear()
    result = await ask(make_agent(ctx, chain), "look up two routers")
    assert tool_calls == ["r1"]
    assert reply_of(result) == "done"
    tool_results = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert "rack 7" in str(tool_results[0].content)
    assert "limit" in str(tool_results[1].content).lower()


async def test_tool_retry_retries_a_failing_tool(fresh_fake_llm: FakeLLM) -> None:
    attempts: list[str] = []

    @tool
    def flaky(host: str) -> str:
        """Ping a host (fails the first time)."""
        attempts.append(host)
        if len(attempts) == 1:
            raise ConnectionError("device busy")
        return f"{host} answers"

    chain, ctx = build_chain(fresh_fake_llm.base_url, mw("tool-retry", "tool_retry", maxRetries=2, **NO_WAIT))
    fresh_fake_llm.enqueue(Reply.tool_call("flaky", {"host": "sw1"}), Reply.text("done"), model=MAIN)
    result = await ask(make_agent(ctx, chain, tools=[flaky]), "ping sw1")
    assert attempts == ["sw1", "sw1"]
    assert [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)] == ["sw1 answers"]


async def test_pii_is_redacted_before_the_model_sees_it(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(
        fresh_fake_llm.base_url,
        mw("pii-a", "pii", piiTypes=["email", "ticket"], detectors={"ticket": r"TICKET-\d+"}),
        mw("pii-b", "pii", piiTypes=["ip"], strategy="mask"),
    )
    # Several PII types and two PII middleware: unique names, or create_agent would refuse them.
    assert [m.name for m in chain.middleware] == ["pii-a[email]", "pii-a[ticket]", "pii-b[ip]"]
    await ask(make_agent(ctx, chain), "mail bob@example.com about TICKET-4711 from 10.1.2.3")
    (sent,) = user_texts(fresh_fake_llm.chat_requests[0])
    assert "bob@example.com" not in sent and "[REDACTED_EMAIL]" in sent
    assert "TICKET-4711" not in sent and "[REDACTED_TICKET]" in sent
    assert "10.1.2.3" not in sent and "*.*.*.3" in sent


async def test_summarization_replaces_old_turns_with_a_summary(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(
        fresh_fake_llm.base_url,
        mw(
            "summary",
            "summarization",
            model="summarizer",
            triggerTokens=None,
            triggerMessages=4,
            keepMessages=2,
        ),
    )
    fresh_fake_llm.enqueue(Reply.text("SUMMARY-OF-EARLIER-TURNS"), model=SUMMARIZER)
    agent = make_agent(ctx, chain)
    for text in ("turn one", "turn two", "turn three"):
        await ask(agent, text)
    requests = fresh_fake_llm.chat_requests
    assert [r["json"]["model"] for r in requests] == [MAIN, MAIN, SUMMARIZER, MAIN]
    last = str(requests[-1]["json"]["messages"])
    assert "SUMMARY-OF-EARLIER-TURNS" in last
    assert "turn one" not in last and "turn three" in last


async def test_context_editing_clears_old_tool_results(fresh_fake_llm: FakeLLM) -> None:
    @tool
    def dump_config(device: str) -> str:
        """Dump a device's running config."""
        return f"{device}-config " + "interface x; " * 200

    chain, ctx = build_chain(
        fresh_fake_llm.base_url, mw("edit", "context_editing", triggerTokens=100, keep=1)
    )
    fresh_fake_llm.enqueue(
        Reply.tool_call("dump_config", {"device": "r1"}),
        Reply.tool_call("dump_config", {"device": "r2"}),
        Reply.text("compared"),
        model=MAIN,
    )
    await ask(make_agent(ctx, chain, tools=[dump_config]), "compare r1 and r2")
    third = fresh_fake_llm.chat_requests[2]["json"]["messages"]
    tool_contents = [str(m["content"]) for m in third if m["role"] == "tool"]
    assert tool_contents[0] == "[cleared]"
    assert tool_contents[1].startswith("r2-config")


@tool
def show_running_config(device: str) -> str:
    """Show a device's running config."""
    return f"{device}-config " + "interface x; " * 200


async def count_tokens_in_namespace(workdir: str) -> dict[str, Any]:
    """Summarization and context editing, both triggered by token counts, on a fake LLM in this namespace;
    the host names anything looked up (a tokenizer download would)."""
    from tests.mcp.test_mcp_netops import DnsResponder

    # Empty caches: a tokenizer an earlier run left on this machine cannot hide a download attempt.
    for variable, name in (("TIKTOKEN_CACHE_DIR", "tiktoken"), ("HF_HOME", "huggingface")):
        (Path(workdir) / name).mkdir(exist_ok=True)
        os.environ[variable] = str(Path(workdir) / name)
    with DnsResponder({}, port=53) as dns:
        server = FakeLLM()
        server.start()
        try:
            chain, ctx = build_chain(
                server.base_url,
                mw("summary", "summarization", model="summarizer", triggerTokens=1500, keepMessages=2),
                mw("edit", "context_editing", triggerTokens=100, keep=1),
            )
            server.enqueue(
                Reply.tool_call("show_running_config", {"device": "r1"}),
                Reply.tool_call("show_running_config", {"device": "r2"}),
                Reply.text("compared"),
                model=MAIN,
            )
            server.enqueue(Reply.text("SUMMARY-OF-EARLIER-TURNS"), model=SUMMARIZER)
            agent = make_agent(ctx, chain, tools=[show_running_config])
            await ask(agent, "compare r1 and r2")
            await ask(agent, "and now? " + "please be thorough " * 300)
            requests = server.chat_requests
        finally:
            server.stop()
    third = requests[2]["json"]["messages"]
    return {
        "models": [r["json"]["model"] for r in requests],
        "tool_contents": [str(m["content"]) for m in third if m["role"] == "tool"],
        "dns_questions": dns.queries,
    }


def test_token_triggers_count_without_a_tokenizer_download(tmp_path: Path) -> None:
    # ChatOpenAI's own counter is tiktoken's: counting with it would look up the tokenizer's host here.
    run = run_in_netns(count_tokens_in_namespace, str(tmp_path))
    result = run.result
    assert result["dns_questions"] == [], "a host name was looked up: something tried to download"
    assert run.connections == []
    assert result["tool_contents"] == ["[cleared]", result["tool_contents"][1]]
    assert result["tool_contents"][1].startswith("r2-config")
    assert SUMMARIZER in result["models"] and result["models"][-1] == MAIN


async def test_ordering_by_priority_then_name_decides_what_wraps_what(
    fresh_fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    chain, _ = build_chain(
        fresh_fake_llm.base_url,
        mw("b-log", "logging", priority=20),
        mw("a-retry", "model_retry", priority=20, **NO_WAIT),
        mw("c-pii", "pii", priority=5, piiTypes=["email"]),
    )
    assert [m.name for m in chain.middleware] == ["c-pii[email]", "a-retry", "b-log"]

    async def model_call_outcomes(log_priority: int) -> list[str]:
        chain, ctx = build_chain(
            fresh_fake_llm.base_url,
            mw("log", "logging", priority=log_priority),
            mw("retry", "model_retry", priority=10, **NO_WAIT),
        )
        fresh_fake_llm.enqueue(Reply.error(500), Reply.text("ok"), model=MAIN)
        caplog.clear()
        with caplog.at_level("INFO", logger=LOGGER_NAME):
            await ask(make_agent(ctx, chain), "hi")
        return [r.outcome for r in caplog.records if getattr(r, "event", None) == "model_call"]  # type: ignore[attr-defined]

    # Logging outside the retry sees one call; inside it, every attempt.
    assert await model_call_outcomes(log_priority=1) == ["ok"]
    assert await model_call_outcomes(log_priority=20) == ["error", "ok"]


async def test_non_critical_broken_middleware_is_skipped_with_a_warning(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(
        fresh_fake_llm.base_url,
        mw("fallback", "model_fallback", models=["ghost"]),
        mw("plugin", "custom", entryPoint="not-installed"),
        mw("bad-pii", "pii", piiTypes=["shoe_size"]),
        mw("log", "logging"),
    )
    assert chain.unavailable is None
    assert [m.name for m in chain.middleware] == ["log"]
    warnings = "\n".join(chain.warnings)
    assert len(chain.warnings) == 3
    assert "'fallback'" in warnings and "'ghost' is not an LLMModel" in warnings
    assert "'plugin'" in warnings and "no entry point 'not-installed'" in warnings
    assert "'bad-pii'" in warnings and "unknown PII type(s) shoe_size" in warnings
    # The model still works without them.
    assert reply_of(await ask(make_agent(ctx, chain), "still there?")) == "echo: still there?"


async def test_critical_broken_middleware_makes_the_model_unavailable(fresh_fake_llm: FakeLLM) -> None:
    chain, _ = build_chain(
        fresh_fake_llm.base_url,
        mw("fallback", "model_fallback", critical=True, models=["ghost"]),
        mw("log", "logging"),
    )
    assert chain.unavailable is not None
    assert "critical middleware 'fallback'" in chain.unavailable and "'ghost'" in chain.unavailable
    assert chain.warnings == []


def test_two_limits_on_one_counter_are_refused(fresh_fake_llm: FakeLLM) -> None:
    chain, _ = build_chain(
        fresh_fake_llm.base_url,
        mw("limit-a", "model_call_limit", runLimit=5),
        mw("limit-b", "model_call_limit", runLimit=3),
        mw("tools-all", "tool_call_limit", runLimit=3),
        mw("tools-lookup", "tool_call_limit", runLimit=1, toolName="lookup"),
    )
    assert [m.name for m in chain.middleware] == ["limit-a", "tools-all", "tools-lookup"]
    assert isinstance(chain.middleware[0], ModelCallLimitMiddleware)
    assert len(chain.warnings) == 1 and "'limit-b'" in chain.warnings[0]


CUSTOM_PLUGIN = """
from langchain.agents.middleware import AgentMiddleware, ModelResponse


class Stamp(AgentMiddleware):
    def __init__(self, suffix):
        super().__init__()
        self.suffix = suffix

    async def awrap_model_call(self, request, handler):
        response = await handler(request)
        message = response.result[0]
        return ModelResponse(result=[message.model_copy(update={"content": message.content + self.suffix})])


def stamp(options, ctx):
    return Stamp(options["suffix"] + "@" + ctx.config.namespace)


stamp.stateful = True


def broken(options, ctx):
    raise RuntimeError("licence server unreachable")
"""


async def test_custom_middleware_from_an_entry_point(
    fresh_fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plugin(
        tmp_path,
        "acme_mw",
        MIDDLEWARE_ENTRY_POINT_GROUP,
        {"stamp": "acme_mw_plugin:stamp", "broken": "acme_mw_plugin:broken"},
        "acme_mw_plugin",
        CUSTOM_PLUGIN,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        chain, ctx = build_chain(
            fresh_fake_llm.base_url,
            mw("stamp", "custom", entryPoint="stamp", options={"suffix": " [checked]"}),
        )
        assert chain.warnings == [] and chain.unavailable is None
        assert chain.stateful is True
        assert reply_of(await ask(make_agent(ctx, chain), "hi")) == "echo: hi [checked]@netops"

        broken, _ = build_chain(
            fresh_fake_llm.base_url, mw("gate", "custom", critical=True, entryPoint="broken")
        )
        assert broken.unavailable is not None and "licence server unreachable" in broken.unavailable
    finally:
        sys.modules.pop("acme_mw_plugin", None)


def test_built_in_chains_share_no_per_instance_state(fresh_fake_llm: FakeLLM) -> None:
    chain, _ = build_chain(
        fresh_fake_llm.base_url,
        mw("log", "logging"),
        mw("limit", "model_call_limit", threadLimit=3),
        mw("pii", "pii", piiTypes=["email"]),
        mw("cache", "cache"),
    )
    assert chain.stateful is False


async def test_retry_inside_a_fallback_hands_over_to_the_fallback(fresh_fake_llm: FakeLLM) -> None:
    chain, ctx = build_chain(
        fresh_fake_llm.base_url,
        mw("fallback", "model_fallback", priority=10, models=["backup"]),
        mw("retry", "model_retry", priority=20, maxRetries=1, **NO_WAIT),
    )
    fresh_fake_llm.enqueue(Reply.error(500), Reply.error(500), model=MAIN)
    fresh_fake_llm.enqueue(Reply.text("from backup"), model=BACKUP)
    assert reply_of(await ask(make_agent(ctx, chain), "hello")) == "from backup"
    assert [r["json"]["model"] for r in fresh_fake_llm.chat_requests] == [MAIN, MAIN, BACKUP]
