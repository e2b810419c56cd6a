"""The data of the pure core: a namespace's resources in (``Snapshot``), verdicts out (``Evaluation``).

``evaluate`` (core/evaluate.py) decides, for every resource of one namespace, its conditions (is it valid,
are its references and Secrets there, is it usable); ``translate`` (core/translate.py) turns the usable
set into the ``AgentConfig`` the chat service reads. Both are pure functions of a ``Snapshot``: no
Kubernetes calls, no clock, no I/O, so the operator (from kopf's in-memory indices) and ``ai-ops render``
(from manifest files) share them, and they are tested with plain data and golden files (like kagent's
translator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_ops_api.agent_config import RunbookShard
from ai_ops_api.conditions import READY, TRUE, Cond
from ai_ops_api.specs import HealthState


@dataclass(frozen=True)
class ServerHealth:
    """What the probes know of an MCP server (from its status, or from ``render --probe``)."""

    state: HealthState
    tools: tuple[str, ...] = ()
    message: str = ""
    # The last probe was refused by the address policy (the URL's host resolved to a forbidden address).
    refused: bool = False


@dataclass
class Snapshot:
    """Everything of one namespace that the verdicts depend on.

    Resources are full objects (``metadata`` + ``spec``) keyed by name. ``secrets`` maps a Secret name to
    the keys of its data (values are never needed: runbook content comes from ConfigMaps, never Secrets); ``None`` means unknown (offline rendering), and then
    Secret references are taken on trust. ``health`` maps MCP server names to probe results; ``None``
    means not probed (offline rendering): every server not in maintenance is then included as Unknown.

    ``usable_secrets`` names the Secrets labelled ``ai-ops.dev/usable=true`` (only those may be referenced);
    ``None`` means unknown, and then references are taken on trust as with ``secrets``. ``stdio_commands``
    is the installation's allowlist of stdio MCP commands (empty: stdio is off); ``None`` means no
    installation setting applies (a caller building snapshots by hand), and stdio servers are accepted.
    The operator always passes both; ``ai-ops render`` passes its ``--allow-stdio`` flags.
    """

    namespace: str
    providers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    models: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    middlewares: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    mcpservers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    runbooks: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # ConfigMap name -> its data, for the ConfigMaps runbooks read their content from (only those: a
    # namespace's other ConfigMaps are none of the operator's business). A ConfigMap not here is missing.
    configmaps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets: Mapping[str, frozenset[str]] | None = None
    usable_secrets: frozenset[str] | None = None
    health: Mapping[str, ServerHealth] | None = None
    allow_loopback: bool = False
    stdio_commands: frozenset[str] | None = None
    # Names in the ai_ops.middleware entry-point group; None: look them up in this process.
    custom_middleware: frozenset[str] | None = None


@dataclass
class Verdict:
    kind: str
    name: str
    conditions: list[Cond]
    # Parsed spec when it is valid.
    spec: Any = None
    warnings: list[str] = field(default_factory=list)
    # Status fields besides the conditions (a Runbook's contentHash and sections); None removes one.
    status_fields: dict[str, Any] = field(default_factory=dict)

    def condition(self, type_: str) -> Cond | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        cond = self.condition(READY)
        return cond is not None and cond.status == TRUE

    @property
    def reason(self) -> str:
        cond = self.condition(READY)
        return cond.reason if cond else ""


@dataclass
class Evaluation:
    namespace: str
    providers: dict[str, Verdict] = field(default_factory=dict)
    models: dict[str, Verdict] = field(default_factory=dict)
    middlewares: dict[str, Verdict] = field(default_factory=dict)
    mcpservers: dict[str, Verdict] = field(default_factory=dict)
    runbooks: dict[str, Verdict] = field(default_factory=dict)
    default_model: str | None = None
    # The oldest Ready LLMModel of purpose embedding.
    embedding_model: str | None = None
    # The Ready runbooks, packed into the shards the operator publishes (in order: shard i is
    # runbook_shard_name(i)).
    runbook_shards: list[RunbookShard] = field(default_factory=list)
    # (kind, name) -> what evaluating that object raised; the object's verdict says only the type (see
    # evaluate._not_evaluated) and the operator logs the exception.
    failures: dict[tuple[str, str], Exception] = field(default_factory=dict)

    def all(self) -> Iterable[Verdict]:
        for group in (self.providers, self.models, self.middlewares, self.mcpservers, self.runbooks):
            yield from group.values()
