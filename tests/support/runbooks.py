"""Helpers for the runbook tests: runbook shards and agent configs naming them, built with the contract
models (as the operator will write them), as files or ConfigMaps, and waits on the chat's runbook index."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from ai_ops_api.agent_config import (
    RUNBOOK_SHARD_DATA_KEY,
    AgentConfig,
    EmbeddingModelEntry,
    MiddlewareEntry,
    ModelEntry,
    ProviderEntry,
    RunbookEntry,
    RunbookMatchEntry,
    RunbookShard,
    RunbookShardRef,
    runbook_shard_name,
)
from chat_service.runbooks.documents import RunbookDocument

CRASHLOOP = {
    "name": "pod-crashloop",
    "title": "Pod stuck in CrashLoopBackOff",
    "description": "A container exits again and again and Kubernetes backs off restarting it.",
    "tags": ("kubernetes", "pods"),
    "alert_names": ("KubePodCrashLooping",),
    "content": (
        "## Symptoms\nThe pod shows CrashLoopBackOff and its restart count keeps growing; the application "
        "keeps restarting.\n## Diagnosis\nRead the log of the previous container: `kubectl logs POD "
        "--previous`.\n## Resolution\nFix the configuration or roll back the Deployment."
    ),
}
DNS = {
    "name": "dns-failures",
    "title": "DNS resolution failing inside the cluster",
    "description": "Pods cannot resolve service or external names.",
    "tags": ("dns",),
    "content": "## Symptoms\nLookups answer NXDOMAIN or time out.\n## Diagnosis\nCheck the CoreDNS pods.",
}


def runbook(
    name: str,
    title: str,
    content: str,
    *,
    description: str = "",
    tags: Iterable[str] = (),
    alert_names: Iterable[str] = (),
) -> RunbookEntry:
    doc = RunbookDocument(name=name, title=title, content=content, description=description, tags=tuple(tags))
    return RunbookEntry(
        name=name,
        title=title,
        description=description,
        content=content,
        tags=tuple(tags),
        match=RunbookMatchEntry(alert_names=tuple(alert_names)),
        content_hash=doc.content_hash,
    )


def shard(*entries: RunbookEntry | dict[str, Any], namespace: str = "test") -> RunbookShard:
    built = tuple(e if isinstance(e, RunbookEntry) else runbook(**e) for e in entries)
    return RunbookShard(namespace=namespace, runbooks=built)


def shard_ref(index: int, document: RunbookShard) -> RunbookShardRef:
    return RunbookShardRef(
        name=runbook_shard_name(index), checksum=document.checksum(), runbooks=len(document.runbooks)
    )


def config_with_runbooks(
    models: Iterable[ModelEntry],
    shards: Iterable[tuple[int, RunbookShard]] = (),
    *,
    embedding_model: EmbeddingModelEntry | None = None,
    namespace: str = "test",
    refs: Iterable[RunbookShardRef] = (),
) -> AgentConfig:
    return AgentConfig(
        namespace=namespace,
        models=tuple(models),
        embedding_model=embedding_model,
        runbook_shards=(*(shard_ref(i, s) for i, s in shards), *refs),
    ).finalize()


def embedding_model(base_url: str, model: str = "fake-embedding") -> EmbeddingModelEntry:
    return EmbeddingModelEntry(
        name="embedder",
        model=model,
        provider=ProviderEntry(name="embedder-provider", type="openai_compatible", base_url=base_url),
        timeout_seconds=5,
    )


def with_middleware(model: ModelEntry, *entries: MiddlewareEntry) -> ModelEntry:
    return model.model_copy(update={"middleware": tuple(entries)})


def write_shard_file(directory: Path, index: int, document: RunbookShard | str) -> None:
    """Written atomically next to the agent config, as ``ai-ops render`` does."""
    text = document if isinstance(document, str) else document.to_json()
    path = directory / f"{runbook_shard_name(index)}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def shard_configmap(index: int, document: RunbookShard | str, namespace: str = "default") -> dict[str, Any]:
    text = document if isinstance(document, str) else document.to_json()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": runbook_shard_name(index), "namespace": namespace},
        "data": {RUNBOOK_SHARD_DATA_KEY: text},
    }


async def search(client: httpx.AsyncClient, query: str, limit: int = 5) -> dict[str, Any]:
    response = await client.get("/api/runbooks/search", params={"q": query, "limit": limit})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def wait_for_search(
    client: httpx.AsyncClient, query: str, check: Any, *, within: float = 10.0, what: str = ""
) -> dict[str, Any]:
    """Poll the search until ``check(result)`` holds; fails after ``within`` seconds (a ceiling)."""
    deadline = time.monotonic() + within
    result: dict[str, Any] = {}
    while time.monotonic() < deadline:
        result = await search(client, query)
        if check(result):
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what or query!r}: not seen within {within} s; last search answered {result}")


def hit_names(result: dict[str, Any]) -> list[str]:
    return [h["runbook"] for h in result["hits"]]


async def wait_for_runbooks_idle(services: Any, within: float = 20.0) -> None:
    """Until the service finished a sync and loaded the local embedding model (its warm-up)."""
    deadline = time.monotonic() + within
    runbooks = services.runbooks
    while time.monotonic() < deadline:
        warm = runbooks.warm_up_task is None or runbooks.warm_up_task.done()
        if runbooks.updates >= 1 and warm:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the runbook service did not finish its first sync")
