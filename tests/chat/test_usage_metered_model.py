"""A metered chat model (``UsageRecorder.instrument``) counts each of its calls once, whoever makes it:
plain or streamed inside LangChain, sync or async, through a binding, with the caller and cause taken from
the run's metadata, an estimate when the provider sends no usage, and never a failed call for accounting.
No server: a chat model of the test's own (as a provider plugin would bring) stands in for the provider."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig, RunnableLambda

from ai_ops_api.agent_config import AgentConfig
from chat_service.metrics import ChatMetrics
from chat_service.usage.ledger import MemoryLedger, field
from chat_service.usage.recorder import MAX_TOKENS_PER_CALL, MeteredChatModel, UsageRecorder

NAMESPACE = "metered"
USAGE = UsageMetadata(
    input_tokens=30, output_tokens=4, total_tokens=34, input_token_details={"cache_read": 10}
)


class ScriptedChatModel(BaseChatModel):
    """Answers "four words of answer"; with usage unless ``with_usage`` is off; fails when ``fail`` is on.
    Streamed, the usage comes in a last chunk of its own, as OpenAI sends it (``include_usage``)."""

    with_usage: bool = True
    fail: bool = False
    usage: UsageMetadata = USAGE

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _message(self) -> AIMessage:
        if self.fail:
            raise RuntimeError("provider down")
        return AIMessage("four words of answer", usage_metadata=self.usage if self.with_usage else None)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._message())])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._message()
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word if i == 0 else " " + word))
        if message.usage_metadata is not None:
            yield ChatGenerationChunk(
                message=AIMessageChunk(content="", usage_metadata=message.usage_metadata)
            )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop):
            yield chunk


def _recorder(config: Any = None) -> UsageRecorder:
    return UsageRecorder(
        metrics=ChatMetrics(),
        ledger=MemoryLedger(retention_days=7),
        config=config or (lambda: AgentConfig(namespace=NAMESPACE)),
        known_callers=lambda: {"alice"},
    )


async def _today(recorder: UsageRecorder) -> dict[str, int]:
    today = dt.datetime.now(dt.UTC).date()
    return (await recorder.read_days(NAMESPACE, [today]))[today]


def _counts(values: dict[str, int], caller: str = "alice", kind: str = "chat") -> dict[str, int]:
    names = ("in", "out", "cached", "calls", "est")
    return {n: values.get(field("m", caller, "main", kind, n), 0) for n in names}


ALICE: RunnableConfig = {"metadata": {"ai_ops_caller": "alice"}}
ONE_CALL = {"in": 30, "out": 4, "cached": 10, "calls": 1, "est": 0}


async def test_a_plain_and_a_streamed_call_are_counted_once_each_and_the_same() -> None:
    recorder = _recorder()
    model = recorder.instrument(ScriptedChatModel(), "main")
    plain = await model.ainvoke("hello", ALICE)
    assert _counts(await _today(recorder)) == ONE_CALL
    # stream=True is how LangChain streams inside ainvoke (as an agent run with token streaming does):
    # the chunks are summed into one result, the usage chunk included.
    streamed = await model.ainvoke("hello", ALICE, stream=True)
    assert streamed.content == plain.content
    assert _counts(await _today(recorder)) == {k: 2 * v for k, v in ONE_CALL.items()}
    await recorder.aclose()


def test_sync_calls_are_counted_too() -> None:
    recorder = _recorder()
    model = recorder.instrument(ScriptedChatModel(), "main")
    model.invoke("hello", ALICE)
    model.invoke("hello", ALICE, stream=True)
    assert _counts(asyncio.run(_today(recorder))) == {k: 2 * v for k, v in ONE_CALL.items()}


async def test_a_metered_model_keeps_its_class_name_and_type_and_is_metered_through_its_bindings() -> None:
    recorder = _recorder()
    model = ScriptedChatModel()
    assert recorder.instrument(model, "main") is model
    assert recorder.instrument(model, "main") is model  # twice: still counted once per call
    assert isinstance(model, ScriptedChatModel) and isinstance(model, MeteredChatModel)
    assert type(model).__name__ == "ScriptedChatModel" and model.get_name() == "ScriptedChatModel"
    # The same class for every model of a class: it is built once per recorder.
    other = recorder.instrument(ScriptedChatModel(), "main")
    assert type(other) is type(model)
    await model.bind(stop=["\n"]).ainvoke("hello", ALICE)
    await model.with_config(tags=["x"]).ainvoke("hello", ALICE)
    assert _counts(await _today(recorder))["calls"] == 2
    await recorder.aclose()


async def test_the_caller_and_the_cause_come_from_the_run_not_just_the_call() -> None:
    """A middleware calling a model inside a turn (summarization) passes metadata of its own: the turn's
    caller still comes with the run, and the cause is the middleware's."""
    recorder = _recorder()
    model = recorder.instrument(ScriptedChatModel(), "main")

    async def summarize(text: str) -> Any:
        return await model.ainvoke(text, {"metadata": {"lc_source": "summarization"}})

    await RunnableLambda(summarize).ainvoke("a long history", ALICE)
    values = await _today(recorder)
    assert _counts(values, kind="summarization") == ONE_CALL
    assert _counts(values)["calls"] == 0
    await recorder.aclose()


async def test_no_usage_from_the_provider_is_estimated_and_marked() -> None:
    recorder = _recorder()
    model = recorder.instrument(ScriptedChatModel(with_usage=False), "main")
    await model.ainvoke("x" * 40, ALICE)
    await model.ainvoke("x" * 40, ALICE, stream=True)
    counts = _counts(await _today(recorder))
    assert counts["calls"] == counts["est"] == 2
    assert counts["in"] == 2 * 10  # 40 characters of prompt at four per token, each time
    assert counts["out"] > 0
    await recorder.aclose()


async def test_a_hostile_providers_negative_or_absurd_usage_cannot_lower_or_overflow_the_counters() -> None:
    recorder = _recorder()
    hostile = UsageMetadata(
        input_tokens=-1_000_000, output_tokens=10**30, total_tokens=0, input_token_details={"cache_read": -5}
    )
    model = recorder.instrument(ScriptedChatModel(usage=hostile), "main")
    await model.ainvoke("hello", ALICE)
    assert _counts(await _today(recorder)) == {
        "in": 0,
        "out": MAX_TOKENS_PER_CALL,
        "cached": 0,
        "calls": 1,
        "est": 0,
    }
    await recorder.aclose()


async def test_a_failed_call_counts_nothing_and_fails_as_it_would_unmetered() -> None:
    recorder = _recorder()
    model = recorder.instrument(ScriptedChatModel(fail=True), "main")
    with pytest.raises(RuntimeError, match="provider down"):
        await model.ainvoke("hello", ALICE)
    assert await _today(recorder) == {}
    await recorder.aclose()


async def test_accounting_that_fails_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken_config() -> AgentConfig:
        raise RuntimeError("config store broken")

    recorder = _recorder(config=broken_config)
    model = recorder.instrument(ScriptedChatModel(), "main")
    with caplog.at_level(logging.ERROR, logger="chat_service.usage.recorder"):
        answer = await model.ainvoke("hello", ALICE)
    assert answer.content == "four words of answer"
    assert "usage of a model call not recorded" in caplog.text
    await recorder.aclose()
