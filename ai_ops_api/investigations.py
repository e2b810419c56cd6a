"""The Investigation custom resource: one alert (or one question a person asked) that the agent diagnoses,
and the diagnosis it recorded.

The chat service creates it (from an Alertmanager notification or ``POST /api/investigations``), its
workers claim and run it and write the status; ``kubectl get inv`` shows the result. The spec is what was
asked and never changes (CEL ``self == oldSelf``); the status is what the agent found.

Registered in ``specs.RESOURCES`` from the end of specs.py, so the CRD generator, ``ai-ops validate`` and
the docs see it like the other kinds; this module imports specs' helpers, hence registration from here.
"""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

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

# Bounds of an alert as the resource holds it. The chat service caps a notification to these before it
# creates the resource (chat_service/incidents/alertmanager.py), so a hostile alert is cut, never refused.
MAX_LABELS = 64
MAX_LABEL_NAME = 256  # enforced by the chat's caps: structural schemas have no propertyNames
MAX_LABEL_VALUE = 1024
MAX_ANNOTATIONS = 32
MAX_ANNOTATION_VALUE = 8192
MAX_QUESTION = 4096
MAX_RUNBOOKS = 16
MAX_ACTIONS = 16
MAX_EVIDENCE = 32
MAX_EXCERPT = 4096
MAX_RECOMMENDATIONS = 16
MAX_SUMMARY = 4096
MAX_ROOT_CAUSE = 8192

LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE)]
AnnotationValue = Annotated[str, Field(max_length=MAX_ANNOTATION_VALUE)]
RFC3339 = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]


class InvestigationSource(enum.StrEnum):
    ALERTMANAGER = "alertmanager"
    API = "api"
    MANUAL = "manual"


class InvestigationPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    DIAGNOSED = "Diagnosed"
    FAILED = "Failed"
    RESOLVED = "Resolved"


# Phases in which no diagnosis runs any more.
FINAL_PHASES = (InvestigationPhase.DIAGNOSED, InvestigationPhase.FAILED, InvestigationPhase.RESOLVED)


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Confidence(enum.StrEnum):
    """Words, not a number: models give no calibrated probabilities, and a person reads words."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AlertRef(SpecModel):
    """The alert under investigation, as Alertmanager sent it (capped)."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_LABEL_VALUE)] = Field(
        description="The alert's alertname label."
    )
    fingerprint: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Alertmanager's fingerprint of the alert's label set."
    )
    labels: dict[str, LabelValue] | None = Field(
        default=None, max_length=MAX_LABELS, description="The alert's labels (untrusted data)."
    )
    annotations: dict[str, AnnotationValue] | None = Field(
        default=None,
        max_length=MAX_ANNOTATIONS,
        description="The alert's annotations, such as summary and description (untrusted data).",
    )
    starts_at: RFC3339 | None = Field(default=None, description="When the alert started firing.")
    generator_url: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, alias="generatorURL", description="Link to the rule that fired, in Prometheus."
    )


class InvestigationTarget(SpecModel):
    """The object a person's question is about."""

    kind: Annotated[str, Field(min_length=1, max_length=63)] = Field(description="Kind, e.g. Deployment.")
    namespace: Annotated[str, Field(max_length=63)] | None = Field(default=None, description="Namespace.")
    name: ObjectName = Field(description="Name.")


class InvestigationSpec(SpecModel):
    """What to investigate: an alert, or a question a person asked. Immutable once created."""

    cel_rules: ClassVar[list[dict[str, str]]] = [
        cel("self == oldSelf", "spec is immutable: create a new Investigation instead"),
        cel("has(self.alert) || has(self.question)", "an Investigation needs an alert or a question"),
    ]

    source: InvestigationSource = Field(
        strict=False,
        default=InvestigationSource.MANUAL,
        description="Who asked: alertmanager (a notification), api (POST /api/investigations) or manual.",
    )
    alert: AlertRef | None = Field(default=None, description="The alert to diagnose.")
    question: Annotated[str, Field(max_length=MAX_QUESTION)] | None = Field(
        default=None, description="A person's question, for an investigation nobody's alert started."
    )
    target: InvestigationTarget | None = Field(default=None, description="The object the question is about.")
    model: ObjectName | None = Field(
        default=None, description="LLMModel to investigate with; the namespace's default when unset."
    )
    runbooks: list[ObjectName] | None = Field(
        default=None, max_length=MAX_RUNBOOKS, description="Runbooks attached to the alert by their match."
    )
    requested_by: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The token name of the person who asked (source api)."
    )

    @model_validator(mode="after")
    def _alert_or_question(self) -> InvestigationSpec:
        if self.alert is None and self.question is None:
            raise ValueError("an Investigation needs an alert or a question")
        return self


class Evidence(StatusModel):
    """One tool call the diagnosis rests on."""

    tool: Annotated[str, Field(max_length=256)] = Field(description="The tool called.")
    arguments: Annotated[str, Field(max_length=2048)] = Field(default="", description="Its arguments, JSON.")
    excerpt: Annotated[str, Field(max_length=MAX_EXCERPT)] = Field(
        default="", description="The part of its answer that matters."
    )


class TokenUsage(StatusModel):
    input: int = Field(default=0, ge=0, le=specs.GENERATION_MAX, description="Input tokens.")
    output: int = Field(default=0, ge=0, le=specs.GENERATION_MAX, description="Output tokens.")
    total: int = Field(default=0, ge=0, le=specs.GENERATION_MAX, description="All tokens.")
    cost: Annotated[str, Field(max_length=40, pattern=r"^[0-9]+(\.[0-9]+)?$")] | None = Field(
        default=None,
        description="What the tokens cost at the model's pricing, exact decimal; absent without.",
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="The currency of cost (the model's pricing currency)."
    )


class InvestigationStatus(CommonStatus):
    """What the agent found, and who is working on it."""

    phase: InvestigationPhase | None = Field(
        default=None, description="Pending, Running, Diagnosed, Failed or Resolved."
    )
    alert_status: AlertStatus | None = Field(
        default=None, description="firing or resolved, as Alertmanager last said."
    )
    summary: Annotated[str, Field(max_length=MAX_SUMMARY)] | None = Field(
        default=None, description="The diagnosis in a few sentences."
    )
    root_cause: Annotated[str, Field(max_length=MAX_ROOT_CAUSE)] | None = Field(
        default=None, description="The most likely root cause."
    )
    confidence: Confidence | None = Field(default=None, description="low, medium or high.")
    reason: Annotated[str, Field(max_length=4096)] | None = Field(
        default=None, description="Why the investigation failed (phase Failed)."
    )
    evidence: list[Evidence] | None = Field(
        default=None, max_length=MAX_EVIDENCE, description="Tool calls the diagnosis rests on."
    )
    recommendations: list[Annotated[str, Field(max_length=2048)]] | None = Field(
        default=None, max_length=MAX_RECOMMENDATIONS, description="What to do next."
    )
    runbooks_used: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=MAX_RUNBOOKS, description="Runbooks the agent read."
    )
    actions: list[ObjectName] | None = Field(
        default=None,
        max_length=MAX_ACTIONS,
        description="The ActionRequests the investigation proposed as its recommended fixes (the latest).",
    )
    thread_id: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The conversation of the investigation, to continue in the chat."
    )
    started_at: RFC3339 | None = Field(default=None, description="When the agent started.")
    completed_at: RFC3339 | None = Field(default=None, description="When the agent finished.")
    usage: TokenUsage | None = Field(default=None, description="Tokens (and cost) the investigation used.")
    claimed_by: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The chat replica running it."
    )
    lease_expires_at: RFC3339 | None = Field(
        default=None, description="When another replica may take it over, unless renewed."
    )
    attempts: int | None = Field(default=None, ge=0, le=specs.INT32_MAX, description="Runs started.")


INVESTIGATION = ResourceKind(
    kind="Investigation",
    plural="investigations",
    singular="investigation",
    short_names=["inv"],
    description="An alert or a question the ai-ops agent diagnoses, and the diagnosis it recorded.",
    spec_model=InvestigationSpec,
    status_model=InvestigationStatus,
    columns=[
        PrinterColumn(name="Alert", type="string", json_path=".spec.alert.name", description="Alert name."),
        PrinterColumn(
            name="Severity",
            type="string",
            json_path=".spec.alert.labels.severity",
            description="The alert's severity label.",
        ),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="Progress."),
        AGE_COLUMN,
        PrinterColumn(
            name="Summary",
            type="string",
            json_path=".status.summary",
            description="The diagnosis.",
            priority=1,
        ),
    ],
)

specs.RESOURCES[INVESTIGATION.kind] = INVESTIGATION
specs.RESOURCES_BY_PLURAL[INVESTIGATION.plural] = INVESTIGATION
