"""Helpers shared by the middleware tests: a config of models on the fake LLM, and a real LangChain agent
built from `build_middleware_chain` (the same calls the chat engine makes)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from ai_ops_api.agent_config import AgentConfig, MiddlewareEntry, ModelEntry, ProviderEntry
from chat_service.middleware.chain import ChainBuild, MiddlewareContext, build_middleware_chain
from chat_service.providers import build_chat_model
from chat_service.secrets import SecretResolver

MAIN, BACKUP, SUMMARIZER = "main-llm", "backup-llm", "sum-llm"
LOGGER_NAME = "chat_middleware_test"
tool_calls: list[str] = []


@tool
def lookup(host: str) -> str:
    """Look up a host in the inventory."""
    tool_calls.append(host)
    return f"{host} is a core router in rack 7"


def mw(name: str, mw_type: str, priority: int = 50, critical: bool = False, **config: Any) -> MiddlewareEntry:
    return MiddlewareEntry(name=name, type=mw_type, priority=priority, critical=critical, config=config)


def make_config(base_url: str, *middleware: MiddlewareEntry, system_prompt: str | None = None) -> AgentConfig:
    provider = ProviderEntry(name="fake", type="openai_compatible", base_url=base_url)

    def model(name: str, model_id: str, chain: tuple[MiddlewareEntry, ...] = ()) -> ModelEntry:
        return ModelEntry(
            name=name, model=model_id, provider=provider, middleware=chain, system_prompt=system_prompt
        )

    return AgentConfig(
        namespace="netops",
        default_model="main",
        models=(
            model("main", MAIN, tuple(sorted(middleware, key=lambda e: (e.priority, e.name)))),
            model("backup", BACKUP),
            model("summarizer", SUMMARIZER),
        ),
    )


def make_context(
    config: AgentConfig, redis: Any = None, secrets_dir: Path | None = None
) -> MiddlewareContext:
    secrets = SecretResolver(secrets_dir or Path("/nonexistent"), environ={})

    def build_model(name: str) -> Any:
        entry = config.model_by_name(name)
        if entry is None:
            raise KeyError(name)
        return build_chat_model(entry, secrets)

    logger = logging.getLogger(LOGGER_NAME)
    # Another test may have run logging.config.dictConfig (which disables existing loggers): caplog must see ours.
    logger.disabled, logger.propagate = False, True
    return MiddlewareContext(
        config=config, secrets=secrets, redis=redis, build_model=build_model, logger=logger
    )


def build_chain(
    base_url: str, *middleware: MiddlewareEntry, redis: Any = None
) -> tuple[ChainBuild, MiddlewareContext]:
    config = make_config(base_url, *middleware)
    ctx = make_context(config, redis=redis)
    main = config.model_by_name("main")
    assert main is not None
    return build_middleware_chain(main, ctx), ctx


def make_agent(
    ctx: MiddlewareContext, chain: ChainBuild, tools: list[Any] | None = None, checkpointer: Any = None
) -> Any:
    main = ctx.config.model_by_name("main")
    assert main is not None
    return create_agent(
        ctx.build_model("main"),
        tools=tools if tools is not None else [lookup],
        system_prompt=main.system_prompt or "You are an operations assistant.",
        middleware=chain.middleware,
        checkpointer=checkpointer if checkpointer is not None else InMemorySaver(),
    )


async def ask(agent: Any, text: str, thread: str = "t1") -> dict[str, Any]:
    result: dict[str, Any] = await agent.ainvoke(
        {"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}, "recursion_limit": 25}
    )
    return result


def reply_of(result: dict[str, Any]) -> str:
    return str(result["messages"][-1].content)


def user_texts(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request["json"]["messages"] if m.get("role") == "user"]


def write_plugin(
    root: Path, dist: str, group: str, entry_points: dict[str, str], module: str, source: str
) -> None:
    """A minimal installed distribution on `root`: a module and a dist-info declaring entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
