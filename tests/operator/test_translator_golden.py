"""Golden files for the pure core: tests/operator/golden/translator/<case>/ holds the input and the expected output.

- ``resources.yaml``: the namespace's resources (multi-document);
- ``cluster.yaml`` (optional): ``secrets`` (Secret name -> its keys), ``health`` (server -> state, tools),
  optionally ``usableSecrets`` (the Secrets labelled ai-ops.dev/usable=true) and ``stdioCommands`` (the
  installation's stdio allowlist), and ``configmaps`` (ConfigMap name -> its data, besides the ConfigMaps
  in ``resources.yaml``; a value ``{repeat: TEXT, times: N}`` stands for TEXT repeated N times, for sizes
  that would bloat a file); without secrets and health the snapshot is offline (as in ``ai-ops render``);
- ``expected-agent-config.json``: ``translate`` output, byte for byte;
- ``expected-conditions.yaml``: every resource's conditions (type, status, reason, message).

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/operator/test_translator_golden.py``
and review the diff. Together the cases produce every condition reason (``ai_ops_api.conditions.Reason``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_ops_api.conditions import Reason
from ai_ops_api.specs import HealthState
from ai_ops_operator.core.evaluate import evaluate
from ai_ops_operator.core.snapshot import ServerHealth, Snapshot
from ai_ops_operator.core.translate import translate

GOLDEN = Path(__file__).parent / "golden" / "translator"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
KIND_FIELD = {
    "LLMProvider": "providers",
    "LLMModel": "models",
    "LLMMiddleware": "middlewares",
    "MCPServer": "mcpservers",
    "Runbook": "runbooks",
}


def _expand(value: Any) -> str:
    return value["repeat"] * value["times"] if isinstance(value, dict) else str(value)


def load_snapshot(case: Path) -> Snapshot:
    groups: dict[str, dict[str, Any]] = {field: {} for field in KIND_FIELD.values()}
    configmaps: dict[str, dict[str, str]] = {}
    for doc in yaml.safe_load_all((case / "resources.yaml").read_text()):
        if doc["kind"] == "ConfigMap":
            configmaps[doc["metadata"]["name"]] = doc.get("data") or {}
        else:
            groups[KIND_FIELD[doc["kind"]]][doc["metadata"]["name"]] = doc
    secrets = health = usable = stdio = None
    cluster_file = case / "cluster.yaml"
    if cluster_file.exists():
        cluster = yaml.safe_load(cluster_file.read_text())
        if "usableSecrets" in cluster:
            usable = frozenset(cluster["usableSecrets"] or ())
        if "stdioCommands" in cluster:
            stdio = frozenset(cluster["stdioCommands"] or ())
        if "secrets" in cluster:
            secrets = {name: frozenset(keys) for name, keys in (cluster["secrets"] or {}).items()}
        if "health" in cluster:
            health = {
                name: ServerHealth(HealthState(h["state"]), tuple(h.get("tools") or ()))
                for name, h in (cluster["health"] or {}).items()
            }
        for name, data in (cluster.get("configmaps") or {}).items():
            configmaps[name] = {key: _expand(value) for key, value in data.items()}
    return Snapshot(
        namespace="golden",
        secrets=secrets,
        usable_secrets=usable,
        stdio_commands=stdio,
        health=health,
        custom_middleware=frozenset(),
        configmaps=configmaps,
        **groups,
    )


def check(path: Path, actual: str) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(), f"{path} differs (UPDATE_GOLDEN=1 regenerates it; review the diff)"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    snapshot = load_snapshot(GOLDEN / case)
    evaluation = evaluate(snapshot)
    check(GOLDEN / case / "expected-agent-config.json", translate(snapshot, evaluation).to_json())
    conditions = {
        f"{verdict.kind}/{verdict.name}": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in verdict.conditions
        ]
        for verdict in evaluation.all()
    }
    check(GOLDEN / case / "expected-conditions.yaml", yaml.safe_dump(conditions, sort_keys=True, width=200))


def test_every_condition_reason_has_a_golden_case() -> None:
    """A new reason comes with a golden case that produces it (and the cases produce no unlisted one)."""
    produced = set()
    for case in CASES:
        conditions = yaml.safe_load((GOLDEN / case / "expected-conditions.yaml").read_text())
        produced |= {c["reason"] for conds in conditions.values() for c in conds}
    assert produced == {reason.value for reason in Reason}
