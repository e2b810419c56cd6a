"""Which client settings an LLMModel's ``parameters`` and an LLMProvider's ``config`` may carry.

Both end up as keyword arguments of the model client (``ChatOpenAI``, ``AzureChatOpenAI``,
``ChatAnthropic``, ``HuggingFaceEndpoint``), and some of those arguments move the API key somewhere else:
``base_url`` sends it to another host, ``default_headers``/``http_client``/``openai_proxy`` route or copy
it, ``api_key`` swaps it. Whoever may write an LLMModel must not get that power, so only the generation
settings listed here pass; the operator refuses anything else (``ParameterNotAllowed``) and the chat service
refuses it again when it builds the client (the agent config could have been written by someone else).

Defined once, here, for both sides. Keys are the client's snake_case names; an LLMProvider's ``config``
may spell them in camelCase (``topP``), as its own settings (``apiVersion``) are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Generation settings of the OpenAI chat completions API, as langchain-openai's ChatOpenAI fields.
_OPENAI_SAMPLING = frozenset(
    {
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "stop",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "reasoning_effort",
        "service_tier",
        "verbosity",
    }
)
# Settings that Ollama and other OpenAI-compatible servers read from the request body beyond the OpenAI
# API; the chat service sends them in ``extra_body`` (ChatOpenAI has no field for them).
OLLAMA_BODY_PARAMETERS = frozenset({"keep_alive", "num_ctx", "num_predict", "top_k", "repeat_penalty"})
COMPATIBLE_BODY_PARAMETERS = frozenset({"top_k", "min_p", "repetition_penalty"})

# The keyword arguments each provider type's client may get from parameters or config.
CLIENT_PARAMETERS: Mapping[str, frozenset[str]] = {
    "openai": _OPENAI_SAMPLING,
    "azure_openai": _OPENAI_SAMPLING,
    "ollama": frozenset({"top_p", "frequency_penalty", "presence_penalty", "seed", "stop"})
    | OLLAMA_BODY_PARAMETERS,
    "openai_compatible": _OPENAI_SAMPLING | COMPATIBLE_BODY_PARAMETERS,
    "anthropic": frozenset({"top_p", "top_k", "stop_sequences"}),
    "huggingface": frozenset(
        {"top_p", "top_k", "typical_p", "repetition_penalty", "stop_sequences", "seed", "do_sample"}
    ),
}

# The keyword arguments each provider type's embeddings client may get from a ``purpose: embedding``
# model's parameters (OpenAIEmbeddings, AzureOpenAIEmbeddings, OllamaEmbeddings): its own kind of settings,
# under the same rule as the chat models' (nothing that moves or copies the key).
EMBEDDING_PARAMETERS: Mapping[str, frozenset[str]] = {
    "openai": frozenset({"dimensions", "chunk_size"}),
    "azure_openai": frozenset({"dimensions", "chunk_size"}),
    "openai_compatible": frozenset({"dimensions", "chunk_size"}),
    "ollama": frozenset({"keep_alive", "num_ctx", "num_gpu", "num_thread"}),
}
EMBEDDING_PURPOSE = "embedding"

# The LLMProvider config keys a handler maps itself (camelCase, as written in the manifest).
HANDLER_KEY = "handler"
PROVIDER_SETTINGS: Mapping[str, frozenset[str]] = {
    "openai": frozenset({"organization", "streamUsage"}),
    "azure_openai": frozenset({"apiVersion", "deployment", "streamUsage"}),
    "ollama": frozenset({"streamUsage"}),
    "openai_compatible": frozenset({"streamUsage"}),
    "anthropic": frozenset(),
    "huggingface": frozenset(),
}

_REDIRECT = "it would send the API key to another host (the endpoint is the LLMProvider's baseURL)"
_KEY = "it would replace or expose the API key (the key comes from apiKeySecretRef only)"
_ROUTE = "it would route or copy the requests, API key included, through something else"
# Refused keys whose refusal deserves its own explanation (everything not allowed is refused anyway).
REFUSED_PARAMETERS: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "base_url",
            "openai_api_base",
            "api_base",
            "azure_endpoint",
            "azure_deployment",
            "endpoint_url",
            "anthropic_api_url",
            "inference_server_url",
        ),
        _REDIRECT,
    ),
    **dict.fromkeys(
        (
            "api_key",
            "openai_api_key",
            "anthropic_api_key",
            "huggingfacehub_api_token",
            "azure_ad_token",
            "azure_ad_token_provider",
            "azure_ad_async_token_provider",
            "organization",
            "openai_organization",
        ),
        _KEY,
    ),
    **dict.fromkeys(
        (
            "openai_proxy",
            "http_client",
            "http_async_client",
            "root_client",
            "root_async_client",
            "client",
            "async_client",
            "default_headers",
            "default_query",
            "extra_body",
            "model_kwargs",
            "server_kwargs",
        ),
        _ROUTE,
    ),
    "max_retries": "retries are the model_retry middleware's job (clients are built without their own)",
    "model": "set the LLMModel's model",
    "temperature": "set the LLMModel's temperature",
    "max_tokens": "set the LLMModel's maxTokens",
    "timeout": "set the LLMModel's timeoutSeconds",
    "request_timeout": "set the LLMModel's timeoutSeconds",
}


def snake_case(name: str) -> str:
    """``topP`` -> ``top_p`` (an LLMProvider's config is camelCase on the wire)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def allowed_parameters(provider_type: str, purpose: str = "chat") -> frozenset[str]:
    table = EMBEDDING_PARAMETERS if str(purpose) == EMBEDDING_PURPOSE else CLIENT_PARAMETERS
    return table.get(str(provider_type), frozenset())


def _refusal(provider_type: str, where: str, key: str, client_name: str, purpose: str = "chat") -> str:
    allowed = ", ".join(sorted(allowed_parameters(provider_type, purpose))) or "none"
    why = REFUSED_PARAMETERS.get(client_name)
    reason = f": {why}" if why else ""
    kind = f"{provider_type} embeddings" if str(purpose) == EMBEDDING_PURPOSE else str(provider_type)
    return f"{where}.{key} is not allowed{reason}; allowed for {kind}: {allowed}"


def parameter_problems(
    provider_type: str, parameters: Mapping[str, Any] | None, purpose: str = "chat"
) -> list[str]:
    """Why each key of an LLMModel's ``parameters`` is refused (empty: all allowed); ``purpose`` is the
    model's (an embedding model's client takes other settings than a chat model's)."""
    allowed = allowed_parameters(provider_type, purpose)
    return [
        _refusal(provider_type, "parameters", key, key, purpose)
        for key in sorted(parameters or {})
        if key not in allowed
    ]


def config_problems(provider_type: str, config: Mapping[str, Any] | None) -> list[str]:
    """Why each key of an LLMProvider's ``config`` is refused (empty: all allowed)."""
    allowed = allowed_parameters(provider_type)
    own = PROVIDER_SETTINGS.get(str(provider_type), frozenset()) | {HANDLER_KEY}
    problems = []
    for key in sorted(config or {}):
        if key in own or snake_case(key) in allowed:
            continue
        problems.append(_refusal(provider_type, "config", key, snake_case(key)))
    return problems


def client_settings(provider_type: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The client keyword arguments an LLMProvider's config gives (its own settings left out);
    call after ``config_problems`` found nothing."""
    own = PROVIDER_SETTINGS.get(str(provider_type), frozenset()) | {HANDLER_KEY}
    return {snake_case(k): v for k, v in (config or {}).items() if k not in own}
