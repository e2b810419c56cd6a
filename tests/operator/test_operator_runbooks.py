"""Runbooks end to end: real kopf against the Kubernetes API emulator.

The operator publishes a namespace's Ready runbooks in shard ConfigMaps ``ai-ops-runbooks-<n>`` and names
them in the agent config; each Runbook's status says whether it is published and why not. These tests
apply Runbooks and ConfigMaps like ``kubectl apply`` and read what the chat service would read.
"""

from __future__ import annotations

import json
from typing import Any

from ai_ops_api.agent_config import (
    MAX_RUNBOOK_SHARDS,
    RUNBOOK_SHARD_DATA_KEY,
    parse_runbook_shard,
    runbook_shard_name,
)
from ai_ops_api.runbooks import count_sections, runbook_content_hash
from ai_ops_operator.runtime.indices import RUNBOOK_CONFIGMAPS_INDEX
from tests.harness.waiting import eventually
from tests.operator.test_operator_kopf import (
    AI,
    NS,
    agent_config,
    condition,
    events_for,
    meta,
    runbook,
    running_operator,
    status_of,
)

MIB = 1024 * 1024


def from_configmap(name: str, configmap: str, key: str) -> dict[str, Any]:
    return runbook(name, contentFrom={"configMapKeyRef": {"name": configmap, "key": key}})


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": data}


def shard_configmaps(emulator: Any) -> dict[str, dict[str, Any]]:
    return {
        cm["metadata"]["name"]: cm
        for cm in emulator.list("v1", "configmaps", NS)
        if cm["metadata"]["name"].startswith("ai-ops-runbooks-")
    }


def published(emulator: Any) -> dict[str, dict[str, Any]]:
    """Runbook name -> its entry, from the shards the agent config names (as the chat reads them),
    or {} while a named shard is missing or not the version the config names."""
    config = agent_config(emulator)
    if config is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for ref in config.runbook_shards:
        cm = emulator.get("v1", "configmaps", NS, ref.name)
        if cm is None:
            return {}
        shard = parse_runbook_shard(cm["data"][RUNBOOK_SHARD_DATA_KEY])
        if shard.checksum() != ref.checksum or len(shard.runbooks) != ref.runbooks:
            return {}
        for entry in shard.runbooks:
            found[entry.name] = entry.model_dump(by_alias=True)
    return found


def ready(emulator: Any, name: str, status: str = "True", reason: str | None = None) -> bool:
    cond = condition(emulator, "runbooks", name)
    return cond.get("status") == status and (reason is None or cond.get("reason") == reason)


CONTENT = "Check the node first.\n\n## Diagnosis\n```bash\n# a comment, not a heading\nkubectl get nodes\n```\n\n## Resolution\nRestart the kubelet.\n"


async def test_a_runbook_becomes_ready_and_is_published_in_a_shard_named_by_the_agent_config(
    k8s_emulator: Any,
) -> None:
    k8s_emulator.create(
        runbook(
            "node-not-ready",
            CONTENT,
            description="A node stopped reporting.",
            tags=["nodes"],
            match={
                "alertNames": ["KubeNodeNotReady"],
                "labels": {"team": "platform"},
                "severities": ["critical"],
            },
        )
    )
    async with running_operator(k8s_emulator):
        await eventually(lambda: "node-not-ready" in published(k8s_emulator), "the runbook published")
        await eventually(lambda: ready(k8s_emulator, "node-not-ready"), "the runbook Ready")

        status = status_of(k8s_emulator, "runbooks", "node-not-ready")
        assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
            ("ContentResolved", "True", "ContentInline"),
            ("Ready", "True", "Ready"),
        ]
        expected_hash = runbook_content_hash(
            "Runbook node-not-ready", "A node stopped reporting.", ["nodes"], CONTENT
        )
        assert status["observedGeneration"] == 1
        assert status["contentHash"] == expected_hash
        assert status["sections"] == count_sections(CONTENT) == 3

        entry = published(k8s_emulator)["node-not-ready"]
        assert entry == {
            "name": "node-not-ready",
            "title": "Runbook node-not-ready",
            "description": "A node stopped reporting.",
            "content": CONTENT,
            "tags": ("nodes",),
            "match": {
                "alertNames": ("KubeNodeNotReady",),
                "labels": {"team": "platform"},
                "severities": ("critical",),
            },
            "contentHash": expected_hash,
        }
        (shard,) = shard_configmaps(k8s_emulator).values()
        assert shard["metadata"]["name"] == "ai-ops-runbooks-0"
        assert shard["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "ai-ops-operator",
            "ai-ops.dev/runbooks": "true",
        }
        config = agent_config(k8s_emulator)
        assert [(r.name, r.runbooks) for r in config.runbook_shards] == [("ai-ops-runbooks-0", 1)]
        assert shard["metadata"]["annotations"]["ai-ops.dev/checksum"] == config.runbook_shards[0].checksum
        # The shard was written before the agent config naming it (resourceVersions only grow).
        agent_cm = k8s_emulator.get("v1", "configmaps", NS, "ai-ops-agent-config")
        assert int(shard["metadata"]["resourceVersion"]) < int(agent_cm["metadata"]["resourceVersion"])


async def test_content_from_a_configmap_follows_the_configmap(k8s_emulator: Any) -> None:
    async with running_operator(k8s_emulator) as runtime:
        # The ConfigMap is indexed before any Runbook names it (so the index keeps no data of it) ...
        k8s_emulator.create(configmap("runbook-texts", {"disk.md": "## Steps\nFree space.\n", "other": "x"}))
        await eventually(
            lambda: any(
                e["name"] == "runbook-texts" for e in runtime.view.entries(RUNBOOK_CONFIGMAPS_INDEX, NS)
            ),
            "the ConfigMap indexed",
        )
        # ... then a Runbook names it.
        k8s_emulator.create(from_configmap("disk-full", "runbook-texts", "disk.md"))
        await eventually(
            lambda: published(k8s_emulator).get("disk-full", {}).get("content") == "## Steps\nFree space.\n",
            "the ConfigMap's content published",
        )
        await eventually(lambda: ready(k8s_emulator, "disk-full"), "Ready")
        assert (
            condition(k8s_emulator, "runbooks", "disk-full", "ContentResolved")["reason"] == "ConfigMapFound"
        )
        first_hash = status_of(k8s_emulator, "runbooks", "disk-full")["contentHash"]

        new_text = "## Steps\nFree space.\n\n## Verification\n`df -h` shows room.\n"
        k8s_emulator.patch("v1", "configmaps", NS, "runbook-texts", {"data": {"disk.md": new_text}})
        await eventually(
            lambda: published(k8s_emulator).get("disk-full", {}).get("content") == new_text,
            "the shard follows the ConfigMap",
        )
        await eventually(
            lambda: status_of(k8s_emulator, "runbooks", "disk-full").get("sections") == 2, "sections updated"
        )
        assert status_of(k8s_emulator, "runbooks", "disk-full")["contentHash"] != first_hash

        # The key goes away: the runbook is no longer published and says why.
        k8s_emulator.patch("v1", "configmaps", NS, "runbook-texts", {"data": {"disk.md": None}})
        await eventually(
            lambda: ready(k8s_emulator, "disk-full", "False", "ConfigMapKeyNotFound"), "not Ready"
        )
        await eventually(lambda: agent_config(k8s_emulator).runbook_shards == (), "no shard named")
        await eventually(lambda: shard_configmaps(k8s_emulator) == {}, "the unneeded shard deleted")
        assert status_of(k8s_emulator, "runbooks", "disk-full").get("contentHash") is None


async def test_a_missing_configmap_key_is_reported_until_it_appears(k8s_emulator: Any) -> None:
    k8s_emulator.create(from_configmap("later", "texts", "later.md"))
    async with running_operator(k8s_emulator):
        await eventually(lambda: ready(k8s_emulator, "later", "False", "ConfigMapNotFound"), "no ConfigMap")
        k8s_emulator.create(configmap("texts", {"something-else.md": "## A\nb\n"}))
        await eventually(lambda: ready(k8s_emulator, "later", "False", "ConfigMapKeyNotFound"), "no key")
        resolved = condition(k8s_emulator, "runbooks", "later", "ContentResolved")
        assert resolved["status"] == "False"
        assert resolved["message"] == "ConfigMap 'texts' has no key 'later.md' in its data"
        assert "later" not in published(k8s_emulator)
        k8s_emulator.patch("v1", "configmaps", NS, "texts", {"data": {"later.md": "## Steps\nDo it.\n"}})
        await eventually(lambda: ready(k8s_emulator, "later"), "Ready once the key exists")
        await eventually(lambda: "later" in published(k8s_emulator), "published")


def big_content(index: int, size: int) -> str:
    line = f"Step {index}: check the thing and write down what you saw.\n"
    body = line * (size // len(line))
    return f"## Diagnosis {index}\n{body}\n## Resolution\nFix it.\n"


async def test_five_mib_of_runbooks_are_split_across_shards_under_the_configmap_limit(
    k8s_emulator: Any,
) -> None:
    names = [f"rb-{i:02d}" for i in range(60)]
    for i, name in enumerate(names):
        k8s_emulator.create(runbook(name, big_content(i, 90_000)))
    async with running_operator(k8s_emulator):
        await eventually(lambda: set(published(k8s_emulator)) == set(names), "all 60 published", timeout=60)
        await eventually(lambda: all(ready(k8s_emulator, n) for n in names), "all 60 Ready", timeout=60)
        shards = shard_configmaps(k8s_emulator)
        config = agent_config(k8s_emulator)
        assert 6 <= len(shards) <= MAX_RUNBOOK_SHARDS
        assert [r.name for r in config.runbook_shards] == [runbook_shard_name(i) for i in range(len(shards))]
        assert sum(r.runbooks for r in config.runbook_shards) == 60
        for cm in shards.values():
            # The whole object as stored must stay under the API server's 1 MiB per ConfigMap.
            assert len(json.dumps(cm).encode()) < MIB
        # Packed in name order: each shard holds a run of names following the previous shard's.
        order = [
            entry.name
            for ref in config.runbook_shards
            for entry in parse_runbook_shard(shards[ref.name]["data"][RUNBOOK_SHARD_DATA_KEY]).runbooks
        ]
        assert order == names

        # Deleting a runbook removes it from its shard (and only from there).
        k8s_emulator.delete(AI, "runbooks", NS, "rb-30")
        await eventually(
            lambda: set(published(k8s_emulator)) == set(names) - {"rb-30"},
            "rb-30 gone from the shards",
            timeout=30,
        )


async def test_shards_no_longer_needed_are_deleted_and_a_configmap_not_ours_is_kept(
    k8s_emulator: Any,
) -> None:
    # A ConfigMap of a shard's name that the operator did not write: never deleted.
    k8s_emulator.create(configmap("ai-ops-runbooks-9", {"notes": "mine"}))
    names = [f"part-{i}" for i in range(9)]
    for i, name in enumerate(names):
        k8s_emulator.create(runbook(name, big_content(i, 250_000)))  # three to a shard
    async with running_operator(k8s_emulator):
        await eventually(lambda: set(published(k8s_emulator)) == set(names), "published", timeout=30)
        assert [r.name for r in agent_config(k8s_emulator).runbook_shards] == [
            "ai-ops-runbooks-0",
            "ai-ops-runbooks-1",
            "ai-ops-runbooks-2",
        ]
        for name in names[3:]:
            k8s_emulator.delete(AI, "runbooks", NS, name)
        await eventually(lambda: set(published(k8s_emulator)) == set(names[:3]), "three left")
        await eventually(
            lambda: set(shard_configmaps(k8s_emulator)) == {"ai-ops-runbooks-0", "ai-ops-runbooks-9"},
            "the two unneeded shards deleted",
        )
        assert k8s_emulator.get("v1", "configmaps", NS, "ai-ops-runbooks-9")["data"] == {"notes": "mine"}


async def test_a_disabled_runbook_is_not_published_and_an_event_tells_why(k8s_emulator: Any) -> None:
    k8s_emulator.create(runbook("switched-off", "## Steps\nDo it.\n", enabled=False))
    k8s_emulator.create(runbook("on", "## Steps\nDo it.\n"))
    async with running_operator(k8s_emulator):
        await eventually(lambda: ready(k8s_emulator, "switched-off", "False", "Disabled"), "Disabled")
        await eventually(
            lambda: ("Warning", "Disabled") in events_for(k8s_emulator, "switched-off"), "a Warning event"
        )
        await eventually(lambda: set(published(k8s_emulator)) == {"on"}, "only the enabled one published")
        k8s_emulator.patch(AI, "runbooks", NS, "switched-off", {"spec": {"enabled": True}})
        await eventually(lambda: set(published(k8s_emulator)) == {"on", "switched-off"}, "enabled: published")
        await eventually(lambda: ready(k8s_emulator, "switched-off"), "Ready")


async def test_empty_content_is_not_ready_with_reason_empty_content_and_not_published(
    k8s_emulator: Any,
) -> None:
    k8s_emulator.create(runbook("blank", "  \n\t\n"))
    k8s_emulator.create(runbook("fine", "## Steps\nDo it.\n"))
    async with running_operator(k8s_emulator):
        await eventually(lambda: ready(k8s_emulator, "blank", "False", "EmptyContent"), "EmptyContent")
        await eventually(lambda: set(published(k8s_emulator)) == {"fine"}, "only the other one published")
        status = status_of(k8s_emulator, "runbooks", "blank")
        assert [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]] == [
            ("ContentResolved", "False", "EmptyContent", "the content is empty"),
            ("Ready", "False", "EmptyContent", "the content is empty"),
        ]
        assert status.get("contentHash") is None
        await eventually(
            lambda: ("Warning", "EmptyContent") in events_for(k8s_emulator, "blank"), "a Warning event"
        )

        # A published runbook edited down to nothing is withdrawn, and its shard with it.
        k8s_emulator.patch(AI, "runbooks", NS, "fine", {"spec": {"content": ""}})
        await eventually(lambda: ready(k8s_emulator, "fine", "False", "EmptyContent"), "EmptyContent")
        await eventually(
            lambda: ("Warning", "EmptyContent") in events_for(k8s_emulator, "fine"), "a Warning event"
        )
        await eventually(lambda: agent_config(k8s_emulator).runbook_shards == (), "no shard named")
        await eventually(lambda: shard_configmaps(k8s_emulator) == {}, "the unneeded shard deleted")
        assert status_of(k8s_emulator, "runbooks", "fine").get("contentHash") is None
