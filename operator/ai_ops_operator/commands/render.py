"""``ai-ops render``: manifests in, the agent config the operator would write out.

It runs the operator's own pure code (``evaluate`` and ``translate``) on the manifests. Without a cluster Secret
references stay references; without ``--probe`` MCP servers are included with health Unknown, with
``--probe`` each is probed once by the operator's probe code and health rules.

Each resource the config leaves out (invalid, a dangling reference, a refused URL, unhealthy when probed)
is listed on stderr with its reason, at ``FILE:LINE:COLUMN``, and makes the exit status 3
(``EXIT_PARTIAL``): the config is still written, but it is not all that the manifests ask for.
``--allow-partial`` makes that 0, for a set that leaves something out on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ai_ops_api.agent_config import RUNBOOK_SHARD_PREFIX, RunbookShard, runbook_shard_name
from ai_ops_api.conditions import FALSE, READY, Reason
from ai_ops_operator.commands.validate import loopback_hint
from ai_ops_operator.core.evaluate import evaluate, probeable_servers
from ai_ops_operator.core.health import HealthRecord, next_record
from ai_ops_operator.core.manifests import ManifestError, ManifestResources, load_manifests
from ai_ops_operator.core.snapshot import Evaluation, ServerHealth
from ai_ops_operator.core.translate import translate
from ai_ops_operator.runtime.probe import probe_once

EXIT_RENDERED = 0
EXIT_UNREADABLE = 2
# The config was written, but left out at least one resource of the manifests.
EXIT_PARTIAL = 3


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
        "--allow-stdio",
        action="append",
        default=[],
        metavar="CMD",
        help="accept stdio MCP servers running CMD (repeatable; exact spec.command). Without it stdio "
        "servers are refused, as in an installation whose mcp.stdio.allowedCommands is empty",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="probe every included MCP server once (initialize + tools/list) and apply the operator's health "
        "rules; header values from Secrets are not sent (no cluster)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help=f"exit 0 even when the config leaves resources out (otherwise {EXIT_PARTIAL})",
    )
    parser.epilog = (
        f"Exit status: {EXIT_RENDERED} rendered everything, {EXIT_PARTIAL} rendered but left resources out "
        f"(listed on stderr; {EXIT_RENDERED} with --allow-partial), {EXIT_UNREADABLE} unreadable input."
    )


def read_resources(paths: list[Path], namespace: str | None) -> tuple[ManifestResources, list[str]]:
    """The ai-ops resources of one namespace from manifest files (those without a namespace count; without
    ``namespace``, all count), and problems found while reading them."""
    resources = ManifestResources.of(
        doc
        for doc in load_manifests(paths)
        if namespace is None
        or not isinstance(doc.obj, dict)
        or (doc.obj.get("metadata") or {}).get("namespace") in (None, namespace)
    )
    problems = [
        f"{earlier.location}: {earlier.obj['kind']}/{key_name}: defined again at {later.location}; "
        "the later one is used"
        for earlier, later in resources.duplicates
        for key_name in [str((earlier.obj.get("metadata") or {}).get("name"))]
    ]
    return resources, problems


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
        resources, problems = read_resources(args.paths, args.namespace)
    except ManifestError as exc:
        print(f"ai-ops render: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    snapshot = resources.snapshot(args.namespace or "default", args.allow_loopback)
    snapshot.stdio_commands = frozenset(args.allow_stdio)
    evaluation = evaluate(snapshot)
    if args.probe:
        snapshot.health = _probe_health(evaluation, args.allow_loopback, problems)
        evaluation = evaluate(snapshot)
    left_out = 0
    for verdict in evaluation.all():
        where = resources.documents[(verdict.kind, verdict.name)].location
        ready = verdict.condition(READY)
        if ready is not None and ready.status == FALSE and ready.reason != Reason.MAINTENANCE:
            left_out += 1
            message = loopback_hint(ready.message)
            problems.append(f"{where}: {verdict.kind}/{verdict.name}: left out: {ready.reason}: {message}")
        problems.extend(f"{where}: {verdict.kind}/{verdict.name}: {w}" for w in verdict.warnings)
    if left_out:
        problems.append(
            f"ai-ops render: left out {left_out} resource{'' if left_out == 1 else 's'}"
            + ("" if args.allow_partial else f" (exit status {EXIT_PARTIAL}; --allow-partial accepts this)")
        )
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
    return EXIT_PARTIAL if left_out and not args.allow_partial else EXIT_RENDERED
