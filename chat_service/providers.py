"""Build a LangChain chat model from a model entry of the agent config.

A registry maps each provider type to a handler ``(entry, api_key) -> BaseChatModel``. The built-in handlers
cover OpenAI, Azure OpenAI, Ollama and any OpenAI-compatible endpoint (vLLM, LM Studio, LiteLLM) through
langchain-openai, and Anthropic and Hugging Face through their optional extras. Other packages add handlers
through the entry-point group ``ai_ops.providers`` (each entry point is a handler); an LLMProvider picks one
with ``config.handler: <entry-point name>``.

An LLMModel's ``parameters`` and an LLMProvider's ``config`` reach the client only through the allowlist of
``ai_ops_api.providers`` (the operator applies the same one): a refused key (``base_url``, ``api_key``,
proxies, headers, clients) makes the model unavailable instead of sending its key elsewhere.

Every client is built with ``max_retries=0``: retrying is the ``model_retry`` middleware's job, and client
retries under it would multiply the attempts and hide them from the logging middleware.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel

from ai_ops_api.agent_config import ModelEntry
from ai_ops_api.providers import (
    COMPATIBLE_BODY_PARAMETERS,
    HANDLER_KEY,
    OLLAMA_BODY_PARAMETERS,
    client_settings,
    config_problems,
    parameter_problems,
)
from chat_service.secrets import SecretResolver, SecretUnavailable

PROVIDER_ENTRY_POINT_GROUP = "ai_ops.providers"
OLLAMA_DEFAULT_BASE_URL = "http://localhost:11434"
# Sent to OpenAI-compatible servers that need no key: the OpenAI client insists on one, and without an
# explicit value it would pick up OPENAI_API_KEY from the environment and send it to a third party.
NO_API_KEY = "not-needed"

ProviderHandler = Callable[[ModelEntry, str | None], BaseChatModel]

logger = logging.getLogger(__name__)


class ProviderUnavailable(Exception):
    """A model cannot be built: missing extra, missing key, unknown type. The message says what to do."""


_handlers: dict[str, ProviderHandler] = {}
_entry_points_loaded = False
_entry_points_lock = threading.Lock()


def register_provider(type_name: str, handler: ProviderHandler) -> None:
    """Register (or replace) the handler of a provider type."""
    _handlers[type_name] = handler


def registered_providers() -> list[str]:
    """The provider types that can be built (entry points included)."""
    _load_entry_points()
    return sorted(_handlers)


def _load_entry_points() -> None:
    """Load third-party handlers once, on first use (importing them at start would slow every start-up)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    with _entry_points_lock:
        if _entry_points_loaded:
            return
        for entry_point in importlib.metadata.entry_points(group=PROVIDER_ENTRY_POINT_GROUP):
            try:
                handler = entry_point.load()
            except Exception as exc:  # a broken plugin must not break the other providers
                logger.warning(
                    "provider entry point %r (%s) failed to load: %s: %s",
                    entry_point.name,
                    entry_point.value,
                    type(exc).__name__,
                    exc,
                )
                continue
            if not callable(handler):
                logger.warning("provider entry point %r is not callable; ignored", entry_point.name)
                continue
            if entry_point.name in _handlers:
                # A plugin must not silently take over a built-in (or explicitly registered) type.
                logger.warning(
                    "provider entry point %r (%s) ignored: the type is already registered",
                    entry_point.name,
                    entry_point.value,
                )
                continue
            register_provider(entry_point.name, handler)
        _entry_points_loaded = True


def reload_entry_points() -> None:
    """Forget that entry points were loaded, so the next build looks again (after installing a plugin)."""
    global _entry_points_loaded
    with _entry_points_lock:
        _entry_points_loaded = False


def build_chat_model(entry: ModelEntry, secrets: SecretResolver) -> BaseChatModel:
    """The chat model of ``entry``, its API key read now (so a rotated key is used from this build on)."""
    _load_entry_points()
    # The CRD's provider types are a closed enum; a third-party handler is chosen with the provider's
    # ``config.handler`` (its entry-point name), on top of the closest built-in type.
    handler_name = str(entry.provider.config.get(HANDLER_KEY) or entry.provider.type)
    handler = _handlers.get(handler_name)
    if handler is None:
        raise ProviderUnavailable(
            f"model {entry.name!r}: no handler {handler_name!r} for provider type {entry.provider.type!r} "
            f"(known: {', '.join(sorted(_handlers))}; others come from packages registering "
            f"the entry-point group {PROVIDER_ENTRY_POINT_GROUP!r})"
        )
    refused = [
        *config_problems(entry.provider.type, entry.provider.config),
        *parameter_problems(entry.provider.type, entry.parameters),
    ]
    if refused:
        raise ProviderUnavailable(f"model {entry.name!r}: " + "; ".join(refused))
    api_key: str | None = None
    if entry.api_key_secret_ref is not None:
        try:
            api_key = secrets.read(entry.api_key_secret_ref)
        except SecretUnavailable as exc:
            raise ProviderUnavailable(f"model {entry.name!r}: API key unavailable: {exc}") from None
    try:
        return handler(entry, api_key)
    except ProviderUnavailable:
        raise
    except Exception as exc:
        # The client constructors validate their settings; their messages name fields, not values. The key
        # is scrubbed anyway in case a third-party handler echoes it.
        message = str(exc)
        if api_key:
            message = message.replace(api_key, "***")
        raise ProviderUnavailable(
            f"model {entry.name!r} ({entry.provider.type}): cannot build the client: {type(exc).__name__}: {message}"
        ) from None


# --- shared settings ---------------------------------------------------------------------------------


def _provider_settings(entry: ModelEntry) -> dict[str, Any]:
    """The allowed client arguments of the provider's config (camelCase -> snake_case), without the keys
    a handler maps itself."""
    return client_settings(entry.provider.type, entry.provider.config)


def _common(entry: ModelEntry) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "model": entry.model,
        "timeout": float(entry.timeout_seconds),
        "max_retries": 0,
    }
    if entry.temperature is not None:
        settings["temperature"] = entry.temperature
    return settings


def _with_parameters(
    entry: ModelEntry, settings: dict[str, Any], body_keys: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The model's own parameters win over everything derived above (they are the most specific). Those
    in ``body_keys`` are request-body settings the client has no field for: they go into ``extra_body``."""
    merged = dict(settings)
    extra_body = dict(merged.get("extra_body") or {})
    for key, value in entry.parameters.items():
        if key in body_keys:
            extra_body[key] = value
        else:
            merged[key] = value
    if extra_body:
        merged["extra_body"] = extra_body
    return merged


def openai_base_url(base_url: str) -> str:
    """``<baseURL>/v1`` for an OpenAI-compatible server, accepting a base URL given with or without /v1."""
    trimmed = base_url.rstrip("/")
    return trimmed if trimmed.endswith("/v1") else trimmed + "/v1"


# --- built-in handlers -------------------------------------------------------------------------------


def _openai(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    config = entry.provider.config
    settings = _common(entry)
    settings.update(_provider_settings(entry))
    if api_key is not None:
        settings["api_key"] = api_key
    else:
        import os

        if not os.environ.get("OPENAI_API_KEY"):
            raise ProviderUnavailable(
                f"model {entry.name!r} (openai) has no apiKeySecretRef and OPENAI_API_KEY is not set"
            )
    if entry.provider.base_url:
        settings["base_url"] = entry.provider.base_url
    if config.get("organization"):
        settings["organization"] = config["organization"]
    if entry.max_tokens is not None:
        settings["max_tokens"] = entry.max_tokens
    # Token usage of streamed answers (the logging middleware and the API report it).
    settings["stream_usage"] = bool(config.get("streamUsage", True))
    return ChatOpenAI(**_with_parameters(entry, settings))


def _azure_openai(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    from langchain_openai import AzureChatOpenAI

    config = entry.provider.config
    api_version = config.get("apiVersion")
    if not api_version:
        raise ProviderUnavailable(
            f"model {entry.name!r} (azure_openai): set config.apiVersion on its LLMProvider (e.g. 2024-10-21)"
        )
    if not entry.provider.base_url:
        raise ProviderUnavailable(
            f"model {entry.name!r} (azure_openai): its LLMProvider needs baseURL (https://NAME.openai.azure.com)"
        )
    if api_key is None:
        raise ProviderUnavailable(f"model {entry.name!r} (azure_openai) needs an apiKeySecretRef")
    settings = _common(entry)
    settings.update(_provider_settings(entry))
    settings.update(
        azure_endpoint=entry.provider.base_url,
        # For Azure the LLMModel's model is the deployment name unless config.deployment says otherwise.
        azure_deployment=config.get("deployment") or entry.model,
        api_version=api_version,
        api_key=api_key,
        stream_usage=bool(config.get("streamUsage", True)),
    )
    if entry.max_tokens is not None:
        settings["max_tokens"] = entry.max_tokens
    return AzureChatOpenAI(**_with_parameters(entry, settings))


def _openai_compatible_client(
    entry: ModelEntry, api_key: str | None, base_url: str, body_keys: frozenset[str]
) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    config = entry.provider.config
    settings = _common(entry)
    provider_settings = _provider_settings(entry)
    settings["extra_body"] = {k: v for k, v in provider_settings.items() if k in body_keys}
    settings.update({k: v for k, v in provider_settings.items() if k not in body_keys})
    settings.update(
        base_url=openai_base_url(base_url),
        api_key=api_key or NO_API_KEY,
        stream_usage=bool(config.get("streamUsage", True)),
    )
    if entry.max_tokens is not None:
        # ChatOpenAI sends max_completion_tokens, which older compatible servers ignore; max_tokens is
        # understood by all of them (Ollama, vLLM, LM Studio, LiteLLM).
        settings["extra_body"]["max_tokens"] = entry.max_tokens
    if not settings["extra_body"]:
        del settings["extra_body"]
    return ChatOpenAI(**_with_parameters(entry, settings, body_keys))


def _ollama(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    # Ollama speaks the OpenAI API at <baseURL>/v1: no extra package needed.
    return _openai_compatible_client(
        entry, api_key, entry.provider.base_url or OLLAMA_DEFAULT_BASE_URL, OLLAMA_BODY_PARAMETERS
    )


def _openai_compatible(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    if not entry.provider.base_url:
        raise ProviderUnavailable(f"model {entry.name!r} (openai_compatible): its LLMProvider needs baseURL")
    return _openai_compatible_client(entry, api_key, entry.provider.base_url, COMPATIBLE_BODY_PARAMETERS)


def _require_extra(module: str, extra: str, provider: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ProviderUnavailable(
            f"the {provider} provider needs the {module.replace('_', '-')} package: "
            f"install the '{extra}' extra: pip install 'ai-ops[{extra}]'"
        ) from None


def _anthropic(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    langchain_anthropic = _require_extra("langchain_anthropic", "anthropic", "anthropic")
    if api_key is None:
        raise ProviderUnavailable(f"model {entry.name!r} (anthropic) needs an apiKeySecretRef")
    settings = _common(entry)
    settings.update(_provider_settings(entry))
    settings["api_key"] = api_key
    if entry.provider.base_url:
        settings["base_url"] = entry.provider.base_url
    if entry.max_tokens is not None:
        settings["max_tokens"] = entry.max_tokens
    settings["default_request_timeout"] = settings.pop("timeout")
    return langchain_anthropic.ChatAnthropic(**_with_parameters(entry, settings))


def _huggingface(entry: ModelEntry, api_key: str | None) -> BaseChatModel:
    langchain_huggingface = _require_extra("langchain_huggingface", "huggingface", "huggingface")
    endpoint_settings: dict[str, Any] = {
        "task": "text-generation",
        "timeout": float(entry.timeout_seconds),
        **_provider_settings(entry),
    }
    # A baseURL is a dedicated Inference Endpoint or a TGI server; otherwise the model is a Hub repo id.
    if entry.provider.base_url:
        endpoint_settings["endpoint_url"] = entry.provider.base_url
    else:
        endpoint_settings["repo_id"] = entry.model
    if api_key is not None:
        endpoint_settings["huggingfacehub_api_token"] = api_key
    if entry.temperature is not None:
        endpoint_settings["temperature"] = entry.temperature
    if entry.max_tokens is not None:
        endpoint_settings["max_new_tokens"] = entry.max_tokens
    endpoint_settings.update(entry.parameters)
    llm = langchain_huggingface.HuggingFaceEndpoint(**endpoint_settings)
    return langchain_huggingface.ChatHuggingFace(llm=llm, model_id=entry.model)


for _type_name, _handler in {
    "openai": _openai,
    "azure_openai": _azure_openai,
    "ollama": _ollama,
    "openai_compatible": _openai_compatible,
    "anthropic": _anthropic,
    "huggingface": _huggingface,
}.items():
    register_provider(_type_name, _handler)
