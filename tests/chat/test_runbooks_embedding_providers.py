"""Each provider's embedding client, built from an agent config's embedding model entry, embeds the runbooks
through the real LangChain client on a server of its own on 127.0.0.1, and never downloads anything.

The provider tests run in a network namespace of their own (tests/security/netns.py): names resolve through a
DNS responder that records every question and answers none, and the tokenizer caches point at empty
folders. A client that tried to fetch a tokenizer (tiktoken's, a HuggingFace one) would ask for its host
name: the recorded questions must be none, and the index must be hybrid with the server's vectors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ai_ops_api.agent_config import EmbeddingModelEntry, ProviderEntry, SecretRef
from chat_service.runbooks.documents import RunbookDocument, split_sections
from chat_service.runbooks.embedding_models import choose_embeddings
from chat_service.runbooks.embeddings import MAX_INPUT_BYTES, MAX_REQUEST_BYTES, CachedEmbedder
from chat_service.runbooks.index import RunbookIndex
from chat_service.secrets import SecretResolver
from tests.harness.fake_llm import FakeLLM, fake_embedding
from tests.security.netns import run_in_netns
from tests.support.runbooks import CRASHLOOP, DNS

PROVIDERS = ("openai", "azure_openai", "openai_compatible", "ollama")
KEYS = {provider: f"key-of-{provider}" for provider in PROVIDERS}
MODELS = {
    "openai": "text-embedding-3-small",
    "azure_openai": "text-embedding-3-large",
    "openai_compatible": "bge-m3",
    "ollama": "nomic-embed-text",
}
AZURE_DEPLOYMENT = "runbook-embedder"
AZURE_API_VERSION = "2024-10-21"
QUERY = "lookups answer NXDOMAIN"


def documents() -> list[RunbookDocument]:
    return [
        RunbookDocument(
            name=spec["name"],
            title=spec["title"],
            content=spec["content"],
            description=spec["description"],
            tags=tuple(spec["tags"]),
        )
        for spec in (CRASHLOOP, DNS)
    ]


def entry_for(provider: str, origin: str) -> EmbeddingModelEntry:
    """The embedding model entry the operator writes for an LLMModel of this provider type at ``origin``."""
    base_url = {
        "openai": f"{origin}/v1",
        "azure_openai": origin,
        "openai_compatible": f"{origin}/v1",
        "ollama": origin,
    }[provider]
    config = (
        {"apiVersion": AZURE_API_VERSION, "deployment": AZURE_DEPLOYMENT}
        if provider == "azure_openai"
        else {}
    )
    return EmbeddingModelEntry(
        name="embedder",
        model=MODELS[provider],
        provider=ProviderEntry(name=f"{provider}-provider", type=provider, base_url=base_url, config=config),
        api_key_secret_ref=SecretRef(name="embedder", key="apiKey"),
        timeout_seconds=5,
    )


def resolver_with_key(workdir: Path, provider: str) -> SecretResolver:
    folder = workdir / "secrets" / "embedder"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "apiKey").write_text(KEYS[provider] + "\n")
    return SecretResolver(workdir / "secrets", environ={})


def no_cached_tokenizers(workdir: Path) -> None:
    # Empty caches: a tokenizer some earlier run left on this machine cannot hide a download attempt.
    for variable, name in (("TIKTOKEN_CACHE_DIR", "tiktoken"), ("HF_HOME", "huggingface")):
        (workdir / name).mkdir(exist_ok=True)
        os.environ[variable] = str(workdir / name)
    os.environ.pop("OPENAI_API_KEY", None)


# --------------------------------------------------------------------------------------------- in the namespace


async def index_runbooks_in_namespace(provider: str, workdir: str, server_up: bool) -> dict[str, Any]:
    """Index the runbooks with the provider's client on a fake server (or a closed port) and search once."""
    from tests.harness.ports import free_port
    from tests.mcp.test_mcp_netops import DnsResponder

    folder = Path(workdir)
    no_cached_tokenizers(folder)
    with DnsResponder({}, port=53) as dns:
        server = FakeLLM()
        server.start()
        try:
            origin = server.origin if server_up else f"http://127.0.0.1:{free_port()}"
            choice = choose_embeddings(entry_for(provider, origin), resolver_with_key(folder, provider))
            index = RunbookIndex(CachedEmbedder(choice.embeddings, choice.model_id))
            stats = await index.update(documents())
            found = await index.search(QUERY)
            requests = server.embedding_requests
        finally:
            server.stop()
    return {
        "client": type(choice.embeddings).__name__,
        "mode": found.mode,
        "hits": [hit.runbook for hit in found.hits],
        "similarity": found.similarity,
        "embedded_sections": stats.embedded_sections,
        "vector_error": index.vector_error,
        "requests": [
            {
                "path": r["path"],
                "query": r["query"],
                "authorization": r["headers"].get("authorization"),
                "api-key": r["headers"].get("api-key"),
                "model": (r["json"] or {}).get("model"),
                "input": (r["json"] or {}).get("input"),
            }
            for r in requests
        ],
        "dns_questions": dns.queries,
    }


# --------------------------------------------------------------------------------------------- the tests


def unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


EXPECTED_CLIENT = {
    "openai": "OpenAIEmbeddings",
    "azure_openai": "AzureOpenAIEmbeddings",
    "openai_compatible": "OpenAIEmbeddings",
    "ollama": "OllamaEmbeddings",
}
EXPECTED_PATH = {
    "openai": "/v1/embeddings",
    "azure_openai": f"/openai/deployments/{AZURE_DEPLOYMENT}/embeddings",
    "openai_compatible": "/v1/embeddings",
    "ollama": "/api/embed",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_embeds_the_runbooks_on_its_server_and_downloads_nothing(
    provider: str, tmp_path: Path
) -> None:
    run = run_in_netns(index_runbooks_in_namespace, provider, str(tmp_path), True)
    result = run.result
    assert result["dns_questions"] == [], "a host name was looked up: something tried to download"
    assert run.connections == []
    assert result["client"] == EXPECTED_CLIENT[provider]
    assert result["vector_error"] is None
    assert result["mode"] == "hybrid" and result["hits"][0] == "dns-failures"

    sections = [s.indexed_text for doc in documents() for s in split_sections(doc)]
    assert result["embedded_sections"] == len(sections)
    requests = result["requests"]
    assert {r["path"] for r in requests} == {EXPECTED_PATH[provider]}
    assert {r["model"] for r in requests} == {MODELS[provider]}
    if provider == "azure_openai":
        assert {r["query"] for r in requests} == {f"api-version={AZURE_API_VERSION}"}
        assert {r["api-key"] for r in requests} == {KEYS[provider]}
    else:
        assert {r["authorization"] for r in requests} == {f"Bearer {KEYS[provider]}"}
    # Text, never token ids (which need a tokenizer): every section, then the query.
    inputs = [text for r in requests for text in r["input"]]
    assert sorted(inputs) == sorted([*sections, QUERY])

    # The vectors searched are the server's: the best similarity is that of its embeddings.
    query = unit(fake_embedding(QUERY))
    best = max(float(unit(fake_embedding(text)) @ query) for text in sections)
    assert result["similarity"] == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_whose_server_refuses_leaves_bm25_and_downloads_nothing(
    provider: str, tmp_path: Path
) -> None:
    run = run_in_netns(index_runbooks_in_namespace, provider, str(tmp_path), False)
    result = run.result
    assert result["dns_questions"] == [], "a host name was looked up: something tried to download"
    assert run.connections == []
    assert result["mode"] == "bm25" and result["hits"][0] == "dns-failures"
    assert result["embedded_sections"] == 0
    assert "embedding model unavailable" in result["vector_error"]
    assert "connect" in result["vector_error"].lower()


# --------------------------------------------------------------------------------------------- input bounds


async def test_long_inputs_and_big_updates_stay_within_the_openai_limits(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    # 8191 tokens per input and 300,000 per request: a section of emoji (4 UTF-8 bytes, often more than
    # one token each) would pass the first, a full rebuild of many sections the second, if unbounded.
    emoji = "\U0001f525" * 3900
    paragraphs = "\n\n".join(f"## Step {i}\n" + f"restart worker {i} " * 200 for i in range(90))
    docs = [
        RunbookDocument(name="emoji", title="Hot pods", content=f"## Burning\n{emoji}"),
        RunbookDocument(name="steps", title="Many steps", content=paragraphs),
    ]
    choice = choose_embeddings(
        entry_for("openai", fresh_fake_llm.origin), resolver_with_key(tmp_path, "openai")
    )
    index = RunbookIndex(CachedEmbedder(choice.embeddings, choice.model_id))
    stats = await index.update(docs)
    assert index.vector_error is None and stats.embedded_sections == len(
        [s for d in docs for s in split_sections(d)]
    )
    requests = fresh_fake_llm.embedding_requests
    assert len(requests) > 1
    for request in requests:
        sizes = [len(text.encode()) for text in request["json"]["input"]]
        assert max(sizes) <= MAX_INPUT_BYTES and sum(sizes) <= MAX_REQUEST_BYTES
    sent = [text for r in requests for text in r["json"]["input"]]
    burning = next(text for text in sent if "Burning" in text)
    assert burning.startswith("Hot pods\nBurning\n\U0001f525") and len(burning.encode()) > MAX_INPUT_BYTES - 4

    found = await index.search("restart worker 42")
    assert found.mode == "hybrid" and found.hits[0].runbook == "steps"
