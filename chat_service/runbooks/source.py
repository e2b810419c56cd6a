"""Where the runbooks of the namespace come from: the shards the agent config names.

The operator publishes a namespace's Ready runbooks in shards (``RunbookShard`` documents) and lists them in
the agent config with a checksum each. In a cluster a shard is a ConfigMap ``ai-ops-runbooks-<n>`` (data
key ``runbooks.json``) read through the Kubernetes API, like the agent config itself; locally it is a file
``ai-ops-runbooks-<n>.json`` next to the agent config file. A shard is read again only when its checksum in
the config changes, or while what was read does not match that checksum yet (the config may arrive before
its shard: the source then retries, see ``pending``).

A shard that cannot be read or parsed is logged and skipped, the other shards are kept, and so is the
last good version of that shard: a bad document never replaces a good one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ai_ops_api.agent_config import (
    RUNBOOK_SHARD_DATA_KEY,
    AgentConfigError,
    RunbookShardRef,
    parse_runbook_shard,
)
from ai_ops_common.errors import describe_exception
from chat_service.runbooks.documents import RunbookDocument

if TYPE_CHECKING:
    from chat_service.config.kubernetes import KubeConfigMapSource

log = logging.getLogger(__name__)

# A shard document larger than this is refused unread (a ConfigMap holds at most 1 MiB anyway).
MAX_SHARD_BYTES = 4 * 1024 * 1024


class ShardReader(Protocol):
    """Reads one shard's document by its name; None when it does not exist (yet)."""

    where: str

    async def read(self, name: str) -> str | None: ...


class FileShardReader:
    """Shards as files ``<name>.json`` in the agent config's directory (what ``ai-ops render`` writes)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.where = f"directory {directory}"

    async def read(self, name: str) -> str | None:
        path = self.directory / f"{name}.json"
        return await asyncio.to_thread(_read_file, path)


def _read_file(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_SHARD_BYTES:
            raise ValueError(f"{path} is larger than {MAX_SHARD_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class ConfigMapShardReader:
    """Shards as ConfigMaps of the chat's namespace, fetched by name through the Kubernetes API."""

    def __init__(self, kube: KubeConfigMapSource):
        self.kube = kube
        self.where = f"ConfigMaps in namespace {kube.namespace}"

    async def read(self, name: str) -> str | None:
        configmap = await self.kube.read(name)
        if configmap is None:
            return None
        text = (configmap.get("data") or {}).get(RUNBOOK_SHARD_DATA_KEY)
        if not isinstance(text, str):
            raise ValueError(f"ConfigMap {name} has no data key {RUNBOOK_SHARD_DATA_KEY!r}")
        if len(text) > MAX_SHARD_BYTES:
            raise ValueError(f"ConfigMap {name} is larger than {MAX_SHARD_BYTES} bytes")
        return text


@dataclass(frozen=True)
class LoadedShard:
    ref: RunbookShardRef
    documents: tuple[RunbookDocument, ...]
    # The document read has the checksum the config names (else it is an older or newer version).
    current: bool


@dataclass(frozen=True)
class ShardProblem:
    shard: str
    message: str


@dataclass(frozen=True)
class LoadResult:
    documents: list[RunbookDocument]
    problems: list[ShardProblem]
    # Some shard is missing, unreadable or not the version the config names: read again soon.
    pending: bool


class RunbookSource:
    """The runbooks of the shards an agent config names, each shard re-read only when it changed."""

    def __init__(self, reader: ShardReader):
        self.reader = reader
        self._shards: dict[str, LoadedShard] = {}
        self._problems: dict[str, ShardProblem] = {}

    @property
    def shards(self) -> dict[str, LoadedShard]:
        return dict(self._shards)

    async def load(self, refs: tuple[RunbookShardRef, ...], namespace: str) -> LoadResult:
        wanted = {ref.name: ref for ref in refs}
        for name in [n for n in self._shards if n not in wanted]:
            del self._shards[name]
        self._problems = {n: p for n, p in self._problems.items() if n in wanted}
        pending = False
        for ref in refs:
            kept = self._shards.get(ref.name)
            if kept is not None and kept.current and kept.ref.checksum == ref.checksum:
                continue
            problem = await self._load_one(ref, namespace)
            if problem is None:
                self._problems.pop(ref.name, None)
            else:
                self._problems[ref.name] = problem
                log.warning("runbook shard %s skipped: %s", ref.name, problem.message)
            shard = self._shards.get(ref.name)
            pending = pending or shard is None or not shard.current or problem is not None
        documents: list[RunbookDocument] = []
        seen: dict[str, str] = {}
        for ref in refs:
            shard = self._shards.get(ref.name)
            for doc in shard.documents if shard else ():
                if doc.name in seen:  # the operator never does this; keep the first, say so
                    self._problems.setdefault(
                        ref.name,
                        ShardProblem(ref.name, f"runbook {doc.name!r} is also in {seen[doc.name]}; skipped"),
                    )
                    continue
                seen[doc.name] = ref.name
                documents.append(doc)
        return LoadResult(documents, list(self._problems.values()), pending)

    async def _load_one(self, ref: RunbookShardRef, namespace: str) -> ShardProblem | None:
        try:
            text = await self.reader.read(ref.name)
        except Exception as exc:
            return ShardProblem(
                ref.name, f"cannot be read from {self.reader.where}: {describe_exception(exc)}"
            )
        if text is None:
            return ShardProblem(ref.name, f"not found in {self.reader.where} (yet)")
        try:
            shard = parse_runbook_shard(text)
        except AgentConfigError as exc:
            return ShardProblem(ref.name, str(exc))
        if shard.namespace != namespace:
            return ShardProblem(ref.name, f"belongs to namespace {shard.namespace!r}, not {namespace!r}")
        documents = tuple(RunbookDocument.from_entry(e.model_dump(by_alias=True)) for e in shard.runbooks)
        current = shard.checksum() == ref.checksum
        self._shards[ref.name] = LoadedShard(ref, documents, current)
        if not current:
            return ShardProblem(
                ref.name, "its content does not have the checksum the agent config names (not written yet?)"
            )
        return None
