"""Publishing runbooks, pure and through ``ai-ops render``: shards, their limits, the embedding model."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ai_ops_api.agent_config import (
    MAX_RUNBOOK_SHARDS,
    RUNBOOK_SHARD_MAX_BYTES,
    parse_agent_config,
    parse_runbook_shard,
)
from ai_ops_api.specs import RunbookSpec
from ai_ops_operator.core.evaluate import evaluate
from ai_ops_operator.core.runbooks import entry_bytes, pack_shards, runbook_entry
from ai_ops_operator.core.snapshot import Snapshot
from ai_ops_operator.core.translate import referenced_secret_keys, translate
from tests.support import resources

AI = "ai-ops.dev/v1alpha1"
AI_OPS = Path(sys.executable).with_name("ai-ops")


def runbook(name: str, content: str | None = None, **spec: Any) -> dict[str, Any]:
    return resources.runbook(name, content, created=None, **spec)


def entry(name: str, size: int) -> Any:
    return runbook_entry(name, RunbookSpec(title=name, content="x"), "x" * size)


def test_shards_hold_what_their_json_takes_and_stay_under_the_limit() -> None:
    entries = [entry(f"rb-{i:02d}", 100_000 + i * 1000) for i in range(40)]
    packing = pack_shards("ns", reversed(entries))
    assert packing.left_out == {}
    assert [e.name for s in packing.shards for e in s.runbooks] == sorted(e.name for e in entries)
    for shard in packing.shards:
        assert len(shard.to_json().encode()) <= RUNBOOK_SHARD_MAX_BYTES
    # Greedy: nothing of the next shard would have fitted into the one before.
    for before, after in zip(packing.shards, packing.shards[1:], strict=False):
        room = RUNBOOK_SHARD_MAX_BYTES - len(before.to_json().encode())
        assert entry_bytes(after.runbooks[0]) + 1 > room


def test_a_shard_can_be_filled_to_the_byte() -> None:
    empty = pack_shards("ns", []).shards
    assert empty == []
    probe = entry("a", 0)
    overhead = len(pack_shards("ns", [probe]).shards[0].to_json().encode()) - entry_bytes(probe)
    exact = entry("a", RUNBOOK_SHARD_MAX_BYTES - overhead - entry_bytes(probe))
    (shard,) = pack_shards("ns", [exact]).shards
    assert len(shard.to_json().encode()) == RUNBOOK_SHARD_MAX_BYTES
    one_more = entry("a", RUNBOOK_SHARD_MAX_BYTES - overhead - entry_bytes(probe) + 1)
    packing = pack_shards("ns", [one_more])
    assert packing.shards == [] and "more than a shard holds" in packing.left_out["a"]


def test_runbooks_beyond_the_last_shard_are_left_out_but_smaller_ones_still_fill_it() -> None:
    half = RUNBOOK_SHARD_MAX_BYTES // 2 + 1000  # two never share a shard
    entries = [entry(f"big-{i:02d}", half) for i in range(MAX_RUNBOOK_SHARDS + 2)] + [entry("small", 10)]
    packing = pack_shards("ns", entries)
    assert len(packing.shards) == MAX_RUNBOOK_SHARDS
    assert sorted(packing.left_out) == [f"big-{MAX_RUNBOOK_SHARDS:02d}", f"big-{MAX_RUNBOOK_SHARDS + 1:02d}"]
    assert "the namespace's runbooks exceed 14.1 MiB" in packing.left_out[f"big-{MAX_RUNBOOK_SHARDS:02d}"]
    assert "small" in {e.name for e in packing.shards[-1].runbooks}


def test_the_agent_config_names_each_shard_with_its_checksum_and_count() -> None:
    snap = Snapshot(namespace="ns", runbooks={n: runbook(n, f"## Steps\n{n}\n") for n in ("b", "a", "c")})
    evaluation = evaluate(snap)
    config = translate(snap, evaluation)
    (shard,) = evaluation.runbook_shards
    assert [e.name for e in shard.runbooks] == ["a", "b", "c"]
    assert [(r.name, r.checksum, r.runbooks) for r in config.runbook_shards] == [
        ("ai-ops-runbooks-0", shard.checksum(), 3)
    ]
    assert evaluation.runbooks["a"].status_fields == {
        "contentHash": shard.runbooks[0].content_hash,
        "sections": 1,
    }


def test_the_embedding_model_key_is_wired_into_the_chat() -> None:
    provider = {
        "apiVersion": AI,
        "kind": "LLMProvider",
        "metadata": {"name": "openai"},
        "spec": {"type": "openai", "apiKeySecretRef": {"name": "openai", "key": "key"}},
    }
    embedder = {
        "apiVersion": AI,
        "kind": "LLMModel",
        "metadata": {"name": "embed"},
        "spec": {
            "providerRef": {"name": "openai"},
            "model": "text-embedding-3-small",
            "purpose": "embedding",
            "apiKeySecretRef": {"name": "embedding-key", "key": "key"},
        },
    }
    snap = Snapshot(
        namespace="ns",
        providers={"openai": provider},
        models={"embed": embedder},
        secrets={"openai": frozenset({"key"}), "embedding-key": frozenset({"key"})},
    )
    config = translate(snap, evaluate(snap))
    assert config.models == () and config.default_model is None
    assert config.embedding_model is not None and config.embedding_model.model == "text-embedding-3-small"
    assert referenced_secret_keys(config) == {("embedding-key", "key")}


# --- ai-ops render ------------------------------------------------------------------------------


def render(tmp_path: Path, docs: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(docs))
    return subprocess.run(
        [str(AI_OPS), "render", str(manifests), *extra], capture_output=True, text=True, check=False
    )


def test_render_resolves_configmaps_of_the_same_files_and_writes_the_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ai-ops-runbooks-3.json").write_text("{}")  # from an earlier render with more shards
    (out / "ai-ops-runbooks-notes.json").write_text("mine")  # no shard name: kept
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "texts"},
            "data": {"disk.md": "## A\nb\n"},
        },
        {
            **runbook("disk"),
            "spec": {
                "title": "Disk",
                "contentFrom": {"configMapKeyRef": {"name": "texts", "key": "disk.md"}},
            },
        },
        {
            **runbook("gone"),
            "spec": {"title": "Gone", "contentFrom": {"configMapKeyRef": {"name": "texts", "key": "x.md"}}},
        },
        runbook("inline", "## Steps\nDo it.\n"),
    ]
    result = render(tmp_path, docs, "-o", str(out / "agent-config.json"))
    # The runbook whose ConfigMap key is missing is left out, which render reports (exit 3, EXIT_PARTIAL).
    assert result.returncode == 3, result.stderr
    (left_out,) = [line for line in result.stderr.splitlines() if "left out:" in line and "Runbook/" in line]
    assert left_out.endswith(
        "Runbook/gone: left out: ConfigMapKeyNotFound: ConfigMap 'texts' has no key 'x.md' in its data"
    )
    config = parse_agent_config((out / "agent-config.json").read_text())
    (ref,) = config.runbook_shards
    shard = parse_runbook_shard((out / f"{ref.name}.json").read_text())
    assert shard.checksum() == ref.checksum and shard.namespace == config.namespace == "default"
    assert {e.name: e.content for e in shard.runbooks} == {
        "disk": "## A\nb\n",
        "inline": "## Steps\nDo it.\n",
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "agent-config.json",
        "ai-ops-runbooks-0.json",
        "ai-ops-runbooks-notes.json",
    ]


def test_render_to_stdout_says_the_shards_were_not_written(tmp_path: Path) -> None:
    result = render(tmp_path, [runbook("inline", "## Steps\nDo it.\n")])
    assert result.returncode == 0
    assert "1 runbook shard(s) not written: give -o FILE" in result.stderr
    assert len(parse_agent_config(result.stdout).runbook_shards) == 1


def test_make_run_renders_the_example_runbooks_beside_its_config(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "run_demo.py"
    spec = importlib.util.spec_from_file_location("run_demo", script)
    assert spec is not None and spec.loader is not None
    run_demo = importlib.util.module_from_spec(spec)
    sys.modules["run_demo"] = run_demo  # dataclasses look their module up there
    spec.loader.exec_module(run_demo)
    config = parse_agent_config(run_demo.render(run_demo.plan_demo({}), tmp_path).read_text())
    published = {
        entry.name
        for ref in config.runbook_shards
        for entry in parse_runbook_shard((tmp_path / f"{ref.name}.json").read_text()).runbooks
    }
    examples = Path(__file__).resolve().parents[2] / "examples" / "runbooks"
    assert published == {
        doc["metadata"]["name"]
        for path in examples.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
