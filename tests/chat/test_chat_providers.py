"""The provider registry: each built-in type builds the right client, talking to the right endpoint.

Requests go to the scripted OpenAI-compatible server (`fake_llm`), so headers and bodies are checked as the
server saw them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import AzureChatOpenAI, ChatOpenAI

from ai_ops_api.agent_config import ModelEntry, ProviderEntry, SecretRef
from chat_service import providers
from chat_service.providers import (
    PROVIDER_ENTRY_POINT_GROUP,
    ProviderUnavailable,
    build_chat_model,
    register_provider,
    registered_providers,
)
from chat_service.secrets import SecretResolver
from tests.harness.fake_llm import FakeLLM, Reply
from tests.support.chat_middleware_support import write_plugin

KEY = "sk-provider-test-key-123"


@pytest.fixture
def secrets(tmp_path: Path) -> SecretResolver:
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "api-key").write_text(KEY + "\n")
    return SecretResolver(tmp_path, environ={})


def entry(provider_type: str, base_url: str | None, *, key: bool = True, **fields: Any) -> ModelEntry:
    provider_config = fields.pop("provider_config", {})
    return ModelEntry(
        name="m",
        model=fields.pop("model", "fake-model"),
        provider=ProviderEntry(name="p", type=provider_type, base_url=base_url, config=provider_config),
        api_key_secret_ref=SecretRef(name="llm", key="api-key") if key else None,
        **fields,
    )


def foreign_entry(provider_type: str, base_url: str | None = None, model: str = "x") -> ModelEntry:
    """An entry of a type outside the agent config's built-in list (as a third-party provider would be)."""
    provider = ProviderEntry.model_construct(
        name="p", type=cast(Any, provider_type), base_url=base_url, config={}
    )
    return ModelEntry.model_construct(
        name="m",
        model=model,
        provider=provider,
        parameters={},
        timeout_seconds=60,
        api_key_secret_ref=SecretRef(name="llm", key="api-key"),
    )


def without_v1(url: str) -> str:
    return url.removesuffix("/v1")


async def test_openai_sends_key_organization_and_generation_settings(
    fresh_fake_llm: FakeLLM, secrets: SecretResolver
) -> None:
    model = build_chat_model(
        entry(
            "openai",
            fresh_fake_llm.base_url,
            temperature=0.2,
            max_tokens=77,
            timeout_seconds=9,
            parameters={"seed": 42},
            provider_config={"organization": "org-netops"},
        ),
        secrets,
    )
    assert isinstance(model, ChatOpenAI)
    assert model.max_retries == 0
    assert model.request_timeout == 9.0
    fresh_fake_llm.enqueue(Reply.text("hi"))
    reply = await model.ainvoke([HumanMessage("hello")])
    assert reply.content == "hi"
    (request,) = fresh_fake_llm.chat_requests
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["openai-organization"] == "org-netops"
    body = request["json"]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.2
    assert body["seed"] == 42
    assert body["max_completion_tokens"] == 77


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_ollama_accepts_a_base_url_with_or_without_v1(
    fresh_fake_llm: FakeLLM, secrets: SecretResolver, suffix: str
) -> None:
    base = without_v1(fresh_fake_llm.base_url) + suffix
    model = build_chat_model(
        entry(
            "ollama",
            base,
            key=False,
            model="llama3.1:8b",
            max_tokens=50,
            parameters={"keep_alive": "5m"},
        ),
        secrets,
    )
    assert isinstance(model, ChatOpenAI)
    await model.ainvoke([HumanMessage("ping")])
    (request,) = fresh_fake_llm.chat_requests
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["model"] == "llama3.1:8b"
    # Compatible servers get max_tokens (older ones ignore max_completion_tokens).
    assert request["json"]["max_tokens"] == 50
    # Ollama's own settings go into the request body (ChatOpenAI has no field for them).
    assert request["json"]["keep_alive"] == "5m"
    # No key configured: a placeholder, never a key picked up from the environment.
    assert request["headers"]["authorization"] == f"Bearer {providers.NO_API_KEY}"


async def test_ollama_without_base_url_defaults_to_localhost(secrets: SecretResolver) -> None:
    model = build_chat_model(entry("ollama", None, key=False), secrets)
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://localhost:11434/v1"


async def test_openai_compatible_streams_with_usage(fresh_fake_llm: FakeLLM, secrets: SecretResolver) -> None:
    model = build_chat_model(entry("openai_compatible", fresh_fake_llm.base_url), secrets)
    fresh_fake_llm.enqueue(Reply.text("one two three four five six", usage=(7, 6)))
    chunks = [chunk async for chunk in model.astream([HumanMessage("count")])]
    assert len([c for c in chunks if c.content]) > 1
    text = "".join(str(c.content) for c in chunks)
    assert text == "one two three four five six"
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["input_tokens"] == 7 and usage[-1]["output_tokens"] == 6
    (request,) = fresh_fake_llm.chat_requests
    assert request["json"]["stream"] is True
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


async def test_no_client_retries_so_a_500_surfaces_at_once(
    fresh_fake_llm: FakeLLM, secrets: SecretResolver
) -> None:
    model = build_chat_model(entry("openai_compatible", fresh_fake_llm.base_url), secrets)
    fresh_fake_llm.enqueue(Reply.error(500), Reply.text("too late"))
    with pytest.raises(Exception, match="500"):
        await model.ainvoke([HumanMessage("x")])
    assert len(fresh_fake_llm.chat_requests) == 1


async def test_a_rotated_key_is_used_by_the_next_build(
    fresh_fake_llm: FakeLLM, secrets: SecretResolver
) -> None:
    model_entry = entry("openai_compatible", fresh_fake_llm.base_url)
    await build_chat_model(model_entry, secrets).ainvoke([HumanMessage("a")])
    (secrets.secrets_dir / "llm" / "api-key").write_text("sk-rotated")
    await build_chat_model(model_entry, secrets).ainvoke([HumanMessage("b")])
    first, second = fresh_fake_llm.chat_requests
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    assert second["headers"]["authorization"] == "Bearer sk-rotated"


def test_azure_openai_builds_the_azure_client(secrets: SecretResolver) -> None:
    model = build_chat_model(
        entry(
            "azure_openai",
            "https://netops.openai.azure.com",
            model="gpt4o-prod",
            provider_config={"apiVersion": "2024-10-21"},
        ),
        secrets,
    )
    assert isinstance(model, AzureChatOpenAI)
    assert model.azure_endpoint == "https://netops.openai.azure.com"
    assert model.deployment_name == "gpt4o-prod"
    assert model.openai_api_version == "2024-10-21"
    assert model.openai_api_key is not None and model.openai_api_key.get_secret_value() == KEY
    assert model.max_retries == 0


def test_azure_openai_without_api_version_says_what_to_set(secrets: SecretResolver) -> None:
    with pytest.raises(ProviderUnavailable, match="apiVersion"):
        build_chat_model(entry("azure_openai", "https://netops.openai.azure.com"), secrets)


def test_openai_compatible_needs_a_base_url(secrets: SecretResolver) -> None:
    with pytest.raises(ProviderUnavailable, match="baseURL"):
        build_chat_model(entry("openai_compatible", None), secrets)


def test_openai_without_any_key_is_refused_clearly(
    secrets: SecretResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderUnavailable, match="OPENAI_API_KEY"):
        build_chat_model(entry("openai", None, key=False), secrets)


def test_missing_key_file_names_the_secret_but_no_value(tmp_path: Path) -> None:
    resolver = SecretResolver(tmp_path, environ={"AI_OPS_SECRET_OTHER_KEY": KEY})
    with pytest.raises(ProviderUnavailable) as caught:
        build_chat_model(entry("openai", "http://127.0.0.1:1/v1"), resolver)
    message = str(caught.value)
    assert "'llm'" in message and "'api-key'" in message and "AI_OPS_SECRET_LLM_API_KEY" in message
    assert KEY not in message


@pytest.mark.parametrize(
    ("provider_type", "module", "client"),
    [
        ("anthropic", "langchain_anthropic", "ChatAnthropic"),
        ("huggingface", "langchain_huggingface", "ChatHuggingFace"),
    ],
)
def test_optional_extras(secrets: SecretResolver, provider_type: str, module: str, client: str) -> None:
    model_entry = entry(provider_type, None, model="some-model", max_tokens=64)
    if importlib.util.find_spec(module) is None:
        with pytest.raises(ProviderUnavailable) as caught:
            build_chat_model(model_entry, secrets)
        assert f"pip install 'ai-ops[{provider_type}]'" in str(caught.value)
    else:
        assert type(build_chat_model(model_entry, secrets)).__name__ == client


def test_client_construction_errors_are_reported_without_the_key(secrets: SecretResolver) -> None:
    def leaky(model_entry: ModelEntry, api_key: str | None) -> Any:
        raise ValueError(f"bad settings for key {api_key}")

    register_provider("leaky-test", leaky)
    with pytest.raises(ProviderUnavailable) as caught:
        build_chat_model(foreign_entry("leaky-test"), secrets)
    assert KEY not in str(caught.value) and "***" in str(caught.value)


async def test_third_party_handler_through_an_entry_point(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_fake_llm: FakeLLM,
    secrets: SecretResolver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_plugin(
        tmp_path,
        "acme_llm",
        PROVIDER_ENTRY_POINT_GROUP,
        {"acme": "acme_llm_plugin:build", "openai": "acme_llm_plugin:build"},
        "acme_llm_plugin",
        """
        from langchain_openai import ChatOpenAI

        def build(entry, api_key):
            return ChatOpenAI(model="acme-" + entry.model, base_url=entry.provider.base_url,
                              api_key=api_key, max_retries=0, default_headers={"x-acme": "1"})
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    providers.reload_entry_points()
    try:
        with caplog.at_level(logging.WARNING, logger="chat_service.providers"):
            assert "acme" in registered_providers()
        # A plugin cannot take over a built-in type.
        assert any(
            "'openai'" in r.getMessage() and "already registered" in r.getMessage() for r in caplog.records
        )
        model = build_chat_model(foreign_entry("acme", fresh_fake_llm.base_url, model="rocket"), secrets)
        await model.ainvoke([HumanMessage("hello")])
        (request,) = fresh_fake_llm.chat_requests
        assert request["json"]["model"] == "acme-rocket"
        assert request["headers"]["x-acme"] == "1"
        assert request["headers"]["authorization"] == f"Bearer {KEY}"
        assert isinstance(build_chat_model(entry("openai", fresh_fake_llm.base_url), secrets), ChatOpenAI)
        # A valid agent config reaches the plugin through the provider's config.handler.
        fresh_fake_llm.reset()
        chosen = entry(
            "openai_compatible", fresh_fake_llm.base_url, model="jet", provider_config={"handler": "acme"}
        )
        await build_chat_model(chosen, secrets).ainvoke([HumanMessage("hello")])
        (request,) = fresh_fake_llm.chat_requests
        assert request["json"]["model"] == "acme-jet"
    finally:
        sys.modules.pop("acme_llm_plugin", None)
        providers.reload_entry_points()


def test_unknown_handler_is_a_clear_error(secrets: SecretResolver) -> None:
    chosen = entry("openai_compatible", "http://127.0.0.1:9/v1", provider_config={"handler": "missing"})
    with pytest.raises(ProviderUnavailable, match=r"no handler 'missing'"):
        build_chat_model(chosen, secrets)


def test_unknown_type_lists_the_known_ones(secrets: SecretResolver) -> None:
    with pytest.raises(ProviderUnavailable, match=r"nope.*openai_compatible.*ai_ops\.providers"):
        build_chat_model(foreign_entry("nope"), secrets)
