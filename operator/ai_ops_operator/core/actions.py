"""What the operator does with an ActionRequest, decided from the object alone (no I/O).

The runtime (runtime/actions.py) reads the object, asks ``next_step`` what to do, and does it. Exactly once
rests on two things decided here and enforced there: the ``Executing`` phase is written (with the object's
resourceVersion as precondition) before any call, and a request found ``Executing`` that this process is
not running right now is abandoned as Failed ("outcome unknown"), never called again.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ai_ops_api.actions import (
    OUTCOME_UNKNOWN,
    ActionPhase,
    cap_excerpt,
    current_phase,
    format_time,
    is_expired,
)
from ai_ops_api.specs import MCPServerSpec, MCPTransport
from ai_ops_operator.core.events import event_body

# The argument names of a server-side dry run that the operator recognises in a tool's input schema.
DRY_RUN_ARGUMENTS = ("dryRun", "dry_run")


class Step(enum.StrEnum):
    NOTHING = "nothing"
    EXPIRE = "expire"
    REJECT = "reject"
    APPROVE = "approve"
    EXECUTE = "execute"
    ABANDON = "abandon"  # found Executing, not by us: the outcome of that call is unknown


def next_step(obj: Mapping[str, Any], now: datetime, running_here: bool) -> Step:
    """The one thing to do next with the request ``obj``.

    ``running_here``: this process is executing it right now (so Executing is expected, and nothing else
    may start). Expiry wins over a decision that came too late; an Executing request is never expired.
    """
    if running_here:
        return Step.NOTHING
    phase = current_phase(dict(obj))
    if phase == ActionPhase.EXECUTING:
        return Step.ABANDON
    if phase not in (ActionPhase.PENDING, ActionPhase.APPROVED):
        return Step.NOTHING
    if is_expired(dict(obj), now):
        return Step.EXPIRE
    decision = (obj.get("status") or {}).get("decision") or {}
    if decision.get("approved") is True:
        return Step.EXECUTE if phase == ActionPhase.APPROVED else Step.APPROVE
    if decision.get("approved") is False and phase == ActionPhase.PENDING:
        return Step.REJECT
    return Step.NOTHING


def still_executing(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` is still the request ``uid`` (not a new one of the same name) and Executing."""
    same = str((obj.get("metadata") or {}).get("uid")) == uid
    return same and current_phase(dict(obj)) == ActionPhase.EXECUTING


def server_refusal(spec: MCPServerSpec, tool: str) -> str | None:
    """Why the operator will not call ``tool`` on this server, or None.

    stdio servers run inside the chat service's container: the operator never starts processes.
    """
    if spec.transport == MCPTransport.STDIO:
        return "stdio MCP servers are never executed by the operator"
    if spec.maintenance:
        return "the MCPServer is in maintenance"
    tool_filter = spec.tool_filter
    if tool_filter is not None:
        if tool_filter.include and not any(fnmatch.fnmatchcase(tool, g) for g in tool_filter.include):
            return f"tool {tool!r} is not in the MCPServer's toolFilter.include"
        if tool_filter.exclude and any(fnmatch.fnmatchcase(tool, g) for g in tool_filter.exclude):
            return f"tool {tool!r} is excluded by the MCPServer's toolFilter.exclude"
    return None


def dry_run_argument(input_schema: Mapping[str, Any] | None) -> str | None:
    """The name of the tool's dry-run argument (a boolean property), or None when it has none."""
    properties = (input_schema or {}).get("properties") or {}
    for name in DRY_RUN_ARGUMENTS:
        if name in properties:
            return name
    return None


def call_arguments(
    arguments: Mapping[str, Any] | None, dry_run_name: str | None, dry: bool
) -> dict[str, Any]:
    """The arguments of the dry run (``dry``) or of the real call: the dry-run flag is the operator's, set
    explicitly both ways (the bundled server defaults to a dry run), whatever the proposal said."""
    out = {k: v for k, v in (arguments or {}).items() if k not in DRY_RUN_ARGUMENTS}
    if dry_run_name is not None:
        out[dry_run_name] = dry
    return out


@dataclass(frozen=True)
class ToolOutcome:
    is_error: bool
    text: str


def tool_outcome(result: Any) -> ToolOutcome:
    """An MCP CallToolResult as error flag and text (text blocks joined; other blocks named)."""
    parts = []
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return ToolOutcome(is_error=bool(getattr(result, "isError", False)), text=cap_excerpt("\n".join(parts)))


# --- the statuses written ------------------------------------------------------------------------


def _status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def with_phase(
    obj: Mapping[str, Any], phase: ActionPhase, reason: str | None = None, **fields: Any
) -> dict[str, Any]:
    """The object's status moved to ``phase`` (the decision and all else kept), with ``fields`` set."""
    status = _status(obj)
    status["phase"] = phase.value
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None:
        status["observedGeneration"] = generation
    if reason is not None:
        status["reason"] = cap_excerpt(reason)
    status.update({k: v for k, v in fields.items() if v is not None})
    return status


def abandoned(obj: Mapping[str, Any]) -> dict[str, Any]:
    return with_phase(obj, ActionPhase.FAILED, OUTCOME_UNKNOWN)


def executed(obj: Mapping[str, Any], outcome: ToolOutcome, at: datetime) -> dict[str, Any]:
    phase = ActionPhase.FAILED if outcome.is_error else ActionPhase.SUCCEEDED
    return with_phase(
        obj,
        phase,
        "the tool reported an error" if outcome.is_error else None,
        result={"isError": outcome.is_error, "excerpt": outcome.text},
        executedAt=format_time(at),
    )


def describe(obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec") or {}
    target = spec.get("target") or {}
    where = "/".join(p for p in (target.get("namespace"), target.get("name")) if p)
    return f"{spec.get('tool')} on {target.get('kind')} {where} (ActionRequest {obj['metadata']['name']})"


def target_event_body(
    obj: Mapping[str, Any],
    target: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    instance: str,
    now: str,
) -> dict[str, Any]:
    """An Event on ``target`` (the stored object, for its uid); cluster-scoped targets get theirs in the
    ActionRequest's namespace, where the people who approved it look."""
    return event_body(
        target, event_type, reason, message, instance, now, (obj.get("metadata") or {}).get("namespace")
    )


def resource_path(api_version: str, plural: str, namespace: str | None, name: str) -> str:
    """The REST path of one object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{where}/{plural}/{name}"


def find_resource(discovery: Mapping[str, Any], kind: str) -> tuple[str, bool] | None:
    """(plural, namespaced) of ``kind`` in a discovery document of one group version (APIResourceList)."""
    for resource in discovery.get("resources") or ():
        if resource.get("kind") == kind and "/" not in str(resource.get("name")):
            return str(resource["name"]), bool(resource.get("namespaced"))
    return None
