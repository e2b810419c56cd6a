"""``ai-ops render``: manifests in, the agent config the operator would write out.

It runs the operator's own pure code (``evaluate`` and ``translate``) on the manifests. Without a cluster Secret
references stay references; without ``--probe`` MCP servers are included with health Unknown, with
``--probe`` each is probed once by the operator's probe code and health rules.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ai_ops_api.agent_config import RUNBOOK_SHARD_PREFIX, RunbookShard, runbook_shard_name
from ai_ops_api.conditions import FALSE, READY, Reason
from ai_ops_api.specs import RESOURCES
from ai_ops_operator.core.evaluate import evaluate, probeable_servers
from ai_ops_operator.core.health import HealthRecord, next_record
from ai_ops_operator.core.manifests import ManifestError, load_manifests
from ai_ops_operator.core.snapshot import Evaluation, ServerHealth, Snapshot
from ai_ops_operator.core.translate import translate
from ai_ops_operator.runtime.probe import probe_once

_KIND_FIELD = {
    "LLMProvider": "providers",
    "LLMModel": "models",
    "LLMMiddleware": "middlewares",
    "MCPServer": "mcpservers",
    "Runbook": "runbooks",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or folders")
    parser.add_argument(
        "--namespace",
        "-n",
        default=None,
        help="only resources of this namespace (manifests without one count)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="write the JSON here instead of stdout"
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="accept MCP servers on loopback addresses (local development)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="probe every included MCP server once (initialize + tools/list) and apply the operator's health "
        "rules; header values from Secrets are not sent (no cluster)",
    )


def build_snapshot(
    paths: list[Path], namespace: str | None, allow_loopback: bool = False
) -> tuple[Snapshot, list[str]]:
    """The snapshot of one namespace from manifest files, and problems found while reading them."""
    problems: list[str] = []
    groups: dict[str, dict[str, dict]] = {field: {} for field in _KIND_FIELD.values()}
    configmaps: dict[str, dict[str, str]] = {}
    for doc in load_manifests(paths):
        obj = doc.obj
        if not isinstance(obj, dict) or obj.get("kind") not in (*RESOURCES, "ConfigMap"):
            continue
        meta = obj.get("metadata") or {}
        doc_ns = meta.get("namespace")
        if namespace is not None and doc_ns not in (None, namespace):
            continue
        name = meta.get("name")
        if obj["kind"] == "ConfigMap":
            # Runbooks read their content from ConfigMaps given in the same files (offline: no cluster).
            if obj.get("apiVersion") == "v1" and isinstance(obj.get("data") or {}, dict):
                data = obj.get("data") or {}
                configmaps[str(name)] = {str(k): v for k, v in data.items() if isinstance(v, str)}
            continue
        group = groups[_KIND_FIELD[obj["kind"]]]
        if name in group:
            problems.append(
                f"{doc.source}:{doc.index}: {obj['kind']}/{name}: defined twice; the later one is used"
            )
        group[str(name)] = obj
    snapshot = Snapshot(
        namespace=namespace or "default",
        providers=groups["providers"],
        models=groups["models"],
        middlewares=groups["middlewares"],
        mcpservers=groups["mcpservers"],
        runbooks=groups["runbooks"],
        configmaps=configmaps,
        allow_loopback=allow_loopback,
    )
    return snapshot, problems


def write_runbook_shards(directory: Path, shards: list[RunbookShard]) -> None:
    """The shards as files ``ai-ops-runbooks-<n>.json`` beside the agent config (where the chat service
    looks for them); shard files of an earlier render beyond the current count are removed."""
    for index, shard in enumerate(shards):
        (directory / f"{runbook_shard_name(index)}.json").write_text(shard.to_json())
    for stale in directory.glob(f"{RUNBOOK_SHARD_PREFIX}-*.json"):
        suffix = stale.stem.removeprefix(f"{RUNBOOK_SHARD_PREFIX}-")
        if suffix.isdigit() and stale.stem == runbook_shard_name(int(suffix)) and int(suffix) >= len(shards):
            stale.unlink()


def _probe_health(
    evaluation: Evaluation, allow_loopback: bool, problems: list[str]
) -> dict[str, ServerHealth]:
    """One probe per server, folded by the operator's health rules (so below failureThreshold a failing
    server is Unknown, exactly as a new server is in the cluster)."""
    servers = probeable_servers(evaluation)
    for name, spec in servers.items():
        if any(h.value_from is not None for h in spec.headers or ()):
            problems.append(f"MCPServer/{name}: probed without its header values from Secrets (no cluster)")
    results = asyncio.run(probe_once(servers, allow_loopback))
    return {
        name: next_record(HealthRecord(), result, servers[name].health_check).as_server_health()
        for name, result in results.items()
    }


def run(args: argparse.Namespace) -> int:
    try:
        snapshot, problems = build_snapshot(args.paths, args.namespace, args.allow_loopback)
    except ManifestError as exc:
        print(f"ai-ops render: {exc}", file=sys.stderr)
        return 2
    evaluation = evaluate(snapshot)
    if args.probe:
        snapshot.health = _probe_health(evaluation, args.allow_loopback, problems)
        evaluation = evaluate(snapshot)
    for verdict in evaluation.all():
        ready = verdict.condition(READY)
        if ready is not None and ready.status == FALSE and ready.reason != Reason.MAINTENANCE:
            problems.append(f"{verdict.kind}/{verdict.name}: left out: {ready.reason}: {ready.message}")
        problems.extend(f"{verdict.kind}/{verdict.name}: {w}" for w in verdict.warnings)
    for problem in problems:
        print(problem, file=sys.stderr)
    text = translate(snapshot, evaluation).to_json()
    shards = evaluation.runbook_shards
    if args.output is not None:
        # The shards first: the chat service reloads the config file and then reads the shards it names.
        write_runbook_shards(args.output.parent, shards)
        args.output.write_text(text)
    else:
        if shards:
            print(
                f"{len(shards)} runbook shard(s) not written: give -o FILE to write them beside the agent config",
                file=sys.stderr,
            )
        sys.stdout.write(text)
    return 0
