"""The embedding model of the runbook index: the LLMModel the agent config names (``purpose: embedding``),
else the local model that needs no network.

Clients are LangChain ``Embeddings`` built like the chat models (chat_service/providers.py): OpenAI, Azure
OpenAI and OpenAI-compatible servers through langchain-openai, Ollama through langchain-ollama when that
extra is installed. ``max_retries=0``: an embedding server that is down should put the index on BM25 at
once (the service retries later), not hold every update for a minute of client-side backoff.

No client tokenizes: langchain-openai's context-length check (on by default) would fetch tiktoken's
tokenizer from the internet on the first embed, so it is turned off for every OpenAI-family client and the
text is sent as it is; CachedEmbedder keeps each input and each request within the providers' limits.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from typing import Any

from langchain_core.embeddings import Embeddings

from ai_ops_api.agent_config import EmbeddingModelEntry
from ai_ops_api.providers import EMBEDDING_PURPOSE, config_problems, parameter_problems
from chat_service.providers import NO_API_KEY, OLLAMA_DEFAULT_BASE_URL, openai_base_url
from chat_service.runbooks.embeddings import LocalEmbeddings
from chat_service.secrets import SecretResolver, SecretUnavailable


class EmbeddingsUnavailable(Exception):
    """The embedding model cannot be built; the message says why and what to do (never a key)."""


@dataclass(frozen=True)
class EmbeddingChoice:
    embeddings: Embeddings
    # Part of every cache key: vectors of one model are never served for another.
    model_id: str
    # Changes when the client must be rebuilt (another model, or a rotated API key).
    fingerprint: str
    description: str


_local = LocalEmbeddings()  # one per process: the model loads once, on first use


def local_choice() -> EmbeddingChoice:
    return EmbeddingChoice(_local, _local.model_id, _local.model_id, f"local {_local.model_id}")


def _model_id(entry: EmbeddingModelEntry) -> str:
    identity = {
        "type": str(entry.provider.type),
        "baseURL": entry.provider.base_url,
        "config": entry.provider.config,
        "model": entry.model,
        "parameters": entry.parameters,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{entry.provider.type}:{entry.model}:{digest}"


def _settings(entry: EmbeddingModelEntry) -> dict[str, Any]:
    # The model's own parameters (dimensions, chunk_size, ...) win, as for chat models.
    return {"model": entry.model, "max_retries": 0, **entry.parameters}


def _text_only(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with langchain-openai's context-length check off, over the model's parameters too: the
    check tokenizes with tiktoken, whose tokenizer is downloaded on first use, and sends token ids, which
    servers other than OpenAI's do not take."""
    return {**settings, "check_embedding_ctx_length": False}


def _openai(entry: EmbeddingModelEntry, api_key: str | None) -> Embeddings:
    from langchain_openai import OpenAIEmbeddings

    settings = _settings(entry)
    settings["timeout"] = float(entry.timeout_seconds)
    if api_key is not None:
        settings["api_key"] = api_key
    elif not os.environ.get("OPENAI_API_KEY"):
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} (openai) has no apiKeySecretRef and OPENAI_API_KEY is not set"
        )
    if entry.provider.base_url:
        settings["base_url"] = entry.provider.base_url
    if entry.provider.config.get("organization"):
        settings["organization"] = entry.provider.config["organization"]
    return OpenAIEmbeddings(**_text_only(settings))


def _azure_openai(entry: EmbeddingModelEntry, api_key: str | None) -> Embeddings:
    from langchain_openai import AzureOpenAIEmbeddings

    config = entry.provider.config
    if not config.get("apiVersion"):
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} (azure_openai): set config.apiVersion on its LLMProvider"
        )
    if not entry.provider.base_url:
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} (azure_openai): its LLMProvider needs baseURL"
        )
    if api_key is None:
        raise EmbeddingsUnavailable(f"embedding model {entry.name!r} (azure_openai) needs an apiKeySecretRef")
    settings = _settings(entry)
    settings.update(
        azure_endpoint=entry.provider.base_url,
        azure_deployment=config.get("deployment") or entry.model,
        api_version=config["apiVersion"],
        api_key=api_key,
        timeout=float(entry.timeout_seconds),
    )
    return AzureOpenAIEmbeddings(**_text_only(settings))


def _openai_compatible(entry: EmbeddingModelEntry, api_key: str | None) -> Embeddings:
    from langchain_openai import OpenAIEmbeddings

    if not entry.provider.base_url:
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} (openai_compatible): its LLMProvider needs baseURL"
        )
    settings = _settings(entry)
    settings.update(
        base_url=openai_base_url(entry.provider.base_url),
        api_key=api_key or NO_API_KEY,
        timeout=float(entry.timeout_seconds),
    )
    return OpenAIEmbeddings(**_text_only(settings))


def _ollama(entry: EmbeddingModelEntry, api_key: str | None) -> Embeddings:
    try:
        langchain_ollama = importlib.import_module("langchain_ollama")
    except ImportError:
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} (ollama) needs the langchain-ollama package: "
            "install the 'ollama' extra: pip install 'ai-ops[ollama]'"
        ) from None
    # The key, when there is one, goes as the bearer token an authenticating proxy in front of Ollama
    # expects (as the chat models send it); the timeout bounds an Ollama that hangs (its client has none).
    client: dict[str, Any] = {"timeout": float(entry.timeout_seconds)}
    if api_key is not None:
        client["headers"] = {"Authorization": f"Bearer {api_key}"}
    settings: dict[str, Any] = {
        "model": entry.model,
        "base_url": entry.provider.base_url or OLLAMA_DEFAULT_BASE_URL,
        **entry.parameters,
        "client_kwargs": client,
    }
    embeddings: Embeddings = langchain_ollama.OllamaEmbeddings(**settings)
    return embeddings


_BUILDERS = {
    "openai": _openai,
    "azure_openai": _azure_openai,
    "openai_compatible": _openai_compatible,
    "ollama": _ollama,
}


def choose_embeddings(entry: EmbeddingModelEntry | None, secrets: SecretResolver) -> EmbeddingChoice:
    """The embedding model of the config (its API key read now), or the local one when none is named.

    Raises EmbeddingsUnavailable when the named model cannot be built; the index then runs on BM25.
    """
    if entry is None:
        return local_choice()
    builder = _BUILDERS.get(str(entry.provider.type))
    if builder is None:
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r}: provider type {entry.provider.type!r} has no embeddings "
            f"client here (supported: {', '.join(sorted(_BUILDERS))})"
        )
    # Checked again here, before the key is read: the agent config may have been written by someone else.
    refused = [
        *config_problems(entry.provider.type, entry.provider.config),
        *parameter_problems(entry.provider.type, entry.parameters, EMBEDDING_PURPOSE),
    ]
    if refused:
        raise EmbeddingsUnavailable(f"embedding model {entry.name!r}: " + "; ".join(refused))
    api_key: str | None = None
    if entry.api_key_secret_ref is not None:
        try:
            api_key = secrets.read(entry.api_key_secret_ref)
        except SecretUnavailable as exc:
            raise EmbeddingsUnavailable(
                f"embedding model {entry.name!r}: API key unavailable: {exc}"
            ) from None
    try:
        embeddings = builder(entry, api_key)
    except EmbeddingsUnavailable:
        raise
    except Exception as exc:
        message = str(exc).replace(api_key, "***") if api_key else str(exc)
        raise EmbeddingsUnavailable(
            f"embedding model {entry.name!r} ({entry.provider.type}): cannot build the client: "
            f"{type(exc).__name__}: {message}"
        ) from None
    model_id = _model_id(entry)
    key_digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:12]
    return EmbeddingChoice(
        embeddings,
        model_id,
        f"{model_id}:{key_digest}",
        f"{entry.name} ({entry.provider.type} {entry.model})",
    )
