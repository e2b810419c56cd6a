"""Publishing runbooks: a Runbook's resolved content as the chat indexes it, and the shards that carry
a namespace's Ready runbooks (pure).

A ConfigMap holds at most 1 MiB, so the runbooks travel in shards of at most ``RUNBOOK_SHARD_MAX_BYTES``
of JSON each, at most ``MAX_RUNBOOK_SHARDS`` of them. Runbooks are packed in name order, greedily: each
goes into the last shard while it fits, else into a new one. Adding a runbook therefore rewrites the shard
it lands in and the ones after it, never the ones before; the chat re-reads only shards whose checksum
changed. A runbook that cannot fit (larger than a shard alone, or no shard left) is not published and
says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ai_ops_api.agent_config import (
    MAX_RUNBOOK_SHARDS,
    RUNBOOK_SHARD_MAX_BYTES,
    RunbookEntry,
    RunbookMatchEntry,
    RunbookShard,
)
from ai_ops_api.runbooks import runbook_content_hash
from ai_ops_api.specs import RunbookSpec

MIB = 1024 * 1024


def runbook_entry(name: str, spec: RunbookSpec, content: str) -> RunbookEntry:
    """A runbook as published, with its content resolved (inline or from its ConfigMap)."""
    match = spec.match
    description = spec.description or ""
    tags = tuple(spec.tags or ())
    return RunbookEntry(
        name=name,
        title=spec.title,
        description=description,
        content=content,
        tags=tags,
        match=RunbookMatchEntry(
            alert_names=tuple(match.alert_names or ()) if match else (),
            labels=dict(match.labels or {}) if match else {},
            severities=tuple(match.severities or ()) if match else (),
        ),
        content_hash=runbook_content_hash(spec.title, description, tags, content),
    )


def entry_bytes(entry: RunbookEntry) -> int:
    """The length of the entry in a shard's JSON (``RunbookShard.to_json`` serializes it exactly so)."""
    body = entry.model_dump(by_alias=True, mode="json")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode())


@dataclass(frozen=True)
class Packing:
    shards: list[RunbookShard]
    # Runbook name -> why it is not published.
    left_out: dict[str, str]


def pack_shards(namespace: str, entries: Iterable[RunbookEntry]) -> Packing:
    """The shards of the namespace's publishable runbooks (taken in name order)."""
    empty = len(RunbookShard(namespace=namespace).to_json().encode())
    room = RUNBOOK_SHARD_MAX_BYTES - empty
    total_mib = MAX_RUNBOOK_SHARDS * RUNBOOK_SHARD_MAX_BYTES / MIB
    groups: list[list[RunbookEntry]] = []
    used = 0  # bytes of entries (and the commas between them) in the last group
    left_out: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        size = entry_bytes(entry)
        if size > room:
            left_out[entry.name] = (
                f"the runbook takes {size} bytes published, more than a shard holds ({room} bytes): "
                "shorten it or split it into several runbooks"
            )
        elif groups and used + 1 + size <= room:
            groups[-1].append(entry)
            used += 1 + size
        elif len(groups) < MAX_RUNBOOK_SHARDS:
            groups.append([entry])
            used = size
        else:
            left_out[entry.name] = (
                f"the namespace's runbooks exceed {total_mib:.1f} MiB ({MAX_RUNBOOK_SHARDS} shards of "
                f"{RUNBOOK_SHARD_MAX_BYTES // 1024} KiB): this one ({size} bytes) does not fit"
            )
    shards = [RunbookShard(namespace=namespace, runbooks=tuple(group)) for group in groups]
    return Packing(shards, left_out)
