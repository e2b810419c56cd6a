"""The ActionRequest custom resource: one write the agent proposed, the person's decision on it, and what the
operator did.

The chat service creates it (the agent called a tool that is not read-only, or an investigation recommends
a fix); a person approves or rejects it (chat API or ``kubectl patch --subresource=status``); the operator,
which never talks to the LLM, executes an approved, unexpired one exactly once and records the outcome. The
spec is what was proposed and never changes (CEL ``self == oldSelf``); the decision, once made, never
changes either (CEL on ``status.decision``, and the chart's ValidatingAdmissionPolicy).

Registered in ``specs.RESOURCES`` from the end of specs.py, like Investigation.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ai_ops_api import specs
from ai_ops_api.specs import (
    AGE_COLUMN,
    CommonStatus,
    ObjectName,
    PrinterColumn,
    ResourceKind,
    SpecModel,
    StatusModel,
    cel,
)

# A request without spec.expiresAt expires this long after its creationTimestamp.
DEFAULT_TTL = timedelta(minutes=15)
MAX_ARGUMENTS = 32  # top-level keys
MAX_ARGUMENTS_JSON = 16384  # characters of the arguments as compact JSON (checked by the model, not the CRD)
MAX_REASON = 4096
MAX_EXCERPT = 4096
MAX_COMMENT = 1024
MAX_IDENTITY = 256
# The prefix of decision.by when the chat service recorded a decision for its authenticated caller. Only
# the chat's ServiceAccount may write it (the chart's admission policy); anyone else writes their own name.
CHAT_IDENTITY_PREFIX = "chat:"

RFC3339 = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
Identity = Annotated[str, Field(min_length=1, max_length=MAX_IDENTITY)]


class ActionRisk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ActionPhase(enum.StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    EXECUTING = "Executing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# Phases nothing leaves: the request is decided and done.
FINAL_PHASES = frozenset(
    {ActionPhase.REJECTED, ActionPhase.EXPIRED, ActionPhase.SUCCEEDED, ActionPhase.FAILED}
)
# Phases only the operator writes (the chart's admission policy enforces it).
OPERATOR_PHASES = frozenset(
    {ActionPhase.EXECUTING, ActionPhase.SUCCEEDED, ActionPhase.FAILED, ActionPhase.EXPIRED}
)

# The state machine. An absent phase is Pending (the API server drops the status given at creation).
# Executing is left only for a result: Succeeded, or Failed (including "outcome unknown" after a restart);
# it never goes back, which is what makes the call happen at most once.
TRANSITIONS: dict[ActionPhase, frozenset[ActionPhase]] = {
    ActionPhase.PENDING: frozenset({ActionPhase.APPROVED, ActionPhase.REJECTED, ActionPhase.EXPIRED}),
    ActionPhase.APPROVED: frozenset({ActionPhase.EXECUTING, ActionPhase.EXPIRED, ActionPhase.FAILED}),
    ActionPhase.EXECUTING: frozenset({ActionPhase.SUCCEEDED, ActionPhase.FAILED}),
    ActionPhase.REJECTED: frozenset(),
    ActionPhase.EXPIRED: frozenset(),
    ActionPhase.SUCCEEDED: frozenset(),
    ActionPhase.FAILED: frozenset(),
}

# status.reason of a request found Executing by an operator that did not start the call (it restarted).
OUTCOME_UNKNOWN = "outcome unknown"


class ActionTarget(SpecModel):
    """The object the action acts on; the operator checks it exists just before executing."""

    api_version: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="apiVersion of the target, e.g. apps/v1 or v1."
    )
    kind: Annotated[str, Field(min_length=1, max_length=63)] = Field(description="Kind, e.g. Deployment.")
    namespace: Annotated[str, Field(max_length=63)] | None = Field(
        default=None, description="Namespace; unset for cluster-scoped targets such as a Node."
    )
    name: ObjectName = Field(description="Name.")


class RequestedBy(SpecModel):
    """Who proposed the action: an investigation, or a chat caller (and the conversation)."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("has(self.investigation) || has(self.caller)", "requestedBy needs an investigation or a caller"),
    ]

    investigation: ObjectName | None = Field(
        default=None, description="The Investigation whose recommended fix this is."
    )
    caller: Identity | None = Field(
        default=None, description="The authenticated chat caller it was proposed to."
    )
    thread_id: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The conversation the proposal was made in."
    )

    @model_validator(mode="after")
    def _investigation_or_caller(self) -> RequestedBy:
        if self.investigation is None and self.caller is None:
            raise ValueError("requestedBy needs an investigation or a caller")
        return self


class ActionRequestSpec(SpecModel):
    """The proposed call: a tool of an MCP server, its arguments, and what it acts on. Immutable."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("self == oldSelf", "spec is immutable: create a new ActionRequest instead"),
    ]

    server: ObjectName = Field(description="The MCPServer (same namespace) whose tool is called.")
    tool: Annotated[str, Field(min_length=1, max_length=256)] = Field(description="The tool to call.")
    arguments: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_ARGUMENTS,
        description=f"The tool's arguments (at most {MAX_ARGUMENTS} keys, {MAX_ARGUMENTS_JSON} characters "
        "of JSON). The operator sets dryRun itself for the dry run and the real call.",
    )
    target: ActionTarget = Field(description="The object the action acts on.")
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)] = Field(
        description="Why the agent proposes it, shown to the approver (untrusted text)."
    )
    risk: ActionRisk = Field(strict=False, default=ActionRisk.MEDIUM, description="low, medium or high.")
    requested_by: RequestedBy = Field(description="Who proposed it.")
    expires_at: RFC3339 | None = Field(
        default=None,
        description="After this instant it is never executed and becomes Expired. Unset: 15 minutes after "
        "metadata.creationTimestamp (the chat service always sets it).",
    )

    @field_validator("arguments")
    @classmethod
    def _arguments_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_ARGUMENTS_JSON:
            raise ValueError(f"arguments exceed {MAX_ARGUMENTS_JSON} characters of JSON")
        return value


class Decision(StatusModel):
    """A person's approval or rejection. Set once; never changed."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("self == oldSelf", "a decision, once made, cannot be changed"),
    ]

    approved: bool = Field(description="true: execute it; false: rejected.")
    by: Identity = Field(
        description="Who decided: the Kubernetes username of the request that set it, or chat:<caller> "
        "when the chat service recorded it for its authenticated caller (enforced by the chart's "
        "admission policy)."
    )
    at: RFC3339 | None = Field(default=None, description="When.")
    comment: Annotated[str, Field(max_length=MAX_COMMENT)] | None = Field(
        default=None, description="The approver's note."
    )


class DryRunResult(StatusModel):
    """The tool's server-side dry run, run just before the real call when the tool has a dryRun argument."""

    ok: bool = Field(description="Whether the dry run succeeded.")
    excerpt: Annotated[str, Field(max_length=MAX_EXCERPT)] = Field(
        default="", description="Its answer, capped."
    )


class ActionResult(StatusModel):
    """The tool's answer to the one real call."""

    is_error: bool = Field(description="Whether the tool reported an error.")
    excerpt: Annotated[str, Field(max_length=MAX_EXCERPT)] = Field(
        default="", description="Its answer, capped."
    )


class Continuation(StatusModel):
    """The chat replica that brought the outcome back into the conversation it was proposed in. Claimed
    once, with the resourceVersion as precondition, so exactly one replica continues it; never changed."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("self == oldSelf", "a continuation, once claimed, cannot be changed"),
    ]

    by: Identity = Field(description="The chat replica that continued the conversation.")
    at: RFC3339 | None = Field(default=None, description="When it claimed it.")


class ActionRequestStatus(CommonStatus):
    """The decision and the execution, written through the status subresource."""

    phase: ActionPhase | None = Field(
        default=None,
        description="Pending (also when unset), Approved, Rejected, Expired, Executing, Succeeded or Failed.",
    )
    decision: Decision | None = Field(default=None, description="The person's decision.")
    dry_run: DryRunResult | None = Field(default=None, description="The server-side dry run.")
    result: ActionResult | None = Field(default=None, description="The real call's answer.")
    executed_at: RFC3339 | None = Field(default=None, description="When the real call was made.")
    reason: Annotated[str, Field(max_length=MAX_REASON)] | None = Field(
        default=None, description="Why it Failed or Expired, e.g. 'outcome unknown' or 'target not found'."
    )
    continued: Continuation | None = Field(
        default=None,
        description="Set by the chat service once the conversation the request came from has heard the "
        "outcome (only its ServiceAccount may, once: the chart's admission policy).",
    )


ACTION_REQUEST = ResourceKind(
    kind="ActionRequest",
    plural="actionrequests",
    singular="actionrequest",
    short_names=["act"],
    description="A write the ai-ops agent proposed, the person's decision on it, and its execution.",
    spec_model=ActionRequestSpec,
    status_model=ActionRequestStatus,
    columns=[
        PrinterColumn(name="Tool", type="string", json_path=".spec.tool", description="The tool to call."),
        PrinterColumn(
            name="Target", type="string", json_path=".spec.target.name", description="The object it acts on."
        ),
        PrinterColumn(name="Risk", type="string", json_path=".spec.risk", description="low, medium or high."),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Progress."),
        PrinterColumn(
            name="Requested-By",
            type="string",
            json_path=".spec.requestedBy.caller",
            description="The chat caller who was proposed it.",
        ),
        AGE_COLUMN,
        PrinterColumn(
            name="Kind", type="string", json_path=".spec.target.kind", description="Target kind.", priority=1
        ),
        PrinterColumn(
            name="Investigation",
            type="string",
            json_path=".spec.requestedBy.investigation",
            description="The investigation that recommended it.",
            priority=1,
        ),
        PrinterColumn(
            name="Decided-By",
            type="string",
            json_path=".status.decision.by",
            description="Who decided.",
            priority=1,
        ),
    ],
)


# --- pure helpers both sides use ---------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (naive ones are taken as UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def effective_expiry(obj: dict[str, Any]) -> datetime:
    """When the request ``obj`` (a Kubernetes object) expires: spec.expiresAt, else creation + 15 minutes.

    A request with neither (not yet stored) or an unreadable time expires now: it must never run.
    """
    spec = obj.get("spec") or {}
    try:
        if spec.get("expiresAt"):
            return parse_time(str(spec["expiresAt"]))
        created = (obj.get("metadata") or {}).get("creationTimestamp")
        if created:
            return parse_time(str(created)) + DEFAULT_TTL
    except ValueError:
        pass
    return datetime.min.replace(tzinfo=UTC)


def is_expired(obj: dict[str, Any], now: datetime) -> bool:
    return now >= effective_expiry(obj)


def current_phase(obj: dict[str, Any]) -> ActionPhase:
    """The phase of ``obj``; unset (or unknown) is Pending."""
    raw = (obj.get("status") or {}).get("phase")
    try:
        return ActionPhase(raw) if raw else ActionPhase.PENDING
    except ValueError:
        return ActionPhase.PENDING


def can_transition(current: ActionPhase | str | None, new: ActionPhase | str) -> bool:
    """Whether the state machine allows ``current`` → ``new`` (None is Pending)."""
    try:
        source = ActionPhase(current) if current else ActionPhase.PENDING
        return ActionPhase(new) in TRANSITIONS[source]
    except ValueError:
        return False


def cap_excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """``text`` cut to ``limit`` characters, with a marker when cut (so the status schema always takes it)."""
    if len(text) <= limit:
        return text
    marker = "… [truncated]"
    return text[: max(0, limit - len(marker))] + marker


specs.RESOURCES[ACTION_REQUEST.kind] = ACTION_REQUEST
specs.RESOURCES_BY_PLURAL[ACTION_REQUEST.plural] = ACTION_REQUEST
