"""What a notification means for an alert's Investigation, as a pure decision.

firing: create it (the create is the de-duplication) with ``alertStatus: firing``; an existing one is
left alone unless its alert had resolved: Alertmanager can send resolved (by endsAt) and then firing
again for the same episode (same startsAt, so the same name). Then it is firing again, and a Resolved one
is Diagnosed again when it has a diagnosis (the summary stands), else Pending so that it is investigated.
resolved: mark ``alertStatus: resolved``; the phase becomes Resolved at once when no diagnosis is
pending or running, and otherwise when the running diagnosis finishes (the worker reads alertStatus),
so a diagnosis in progress is never thrown away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ai_ops_api.investigations import AlertStatus, InvestigationPhase, InvestigationSource
from chat_service.incidents.alertmanager import Alert
from chat_service.incidents.naming import investigation_name

# Phases after which a resolved alert's investigation may become Resolved (the diagnosis, if any, kept).
SETTLED_PHASES = (InvestigationPhase.DIAGNOSED, InvestigationPhase.FAILED)


class Matcher(Protocol):
    def matches(self, alert_name: str, labels: Mapping[str, str]) -> bool: ...


class NamedRunbook(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def match(self) -> Matcher: ...


def attached_runbooks(runbooks: Sequence[NamedRunbook], alert: Alert, limit: int = 16) -> list[str]:
    """The runbooks whose ``match`` selects the alert, by name, at most ``limit``."""
    return sorted(r.name for r in runbooks if r.match.matches(alert.name, alert.labels))[:limit]


def alert_spec(alert: Alert, runbooks: Sequence[str] = ()) -> dict[str, Any]:
    """The Investigation spec (wire form) of a firing alert."""
    alert_part: dict[str, Any] = {
        "name": alert.name[:1024],
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at,
    }
    if alert.fingerprint:
        alert_part["fingerprint"] = alert.fingerprint
    if alert.generator_url:
        alert_part["generatorURL"] = alert.generator_url
    spec: dict[str, Any] = {"source": InvestigationSource.ALERTMANAGER.value, "alert": alert_part}
    if runbooks:
        spec["runbooks"] = list(runbooks)
    return spec


def name_of(alert: Alert) -> str:
    return investigation_name(alert.name, alert.fingerprint or _label_key(alert), alert.starts_at)


def _label_key(alert: Alert) -> str:
    """Stands in for a missing fingerprint: the label set, which is what Alertmanager hashes."""
    return "\x1f".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))


@dataclass(frozen=True)
class ResolvedPatch:
    """The status change a resolved notification makes (None fields: leave as is)."""

    alert_status: AlertStatus
    phase: InvestigationPhase | None


def on_resolved(status: Mapping[str, Any] | None) -> ResolvedPatch | None:
    """The change a resolved notification makes to an Investigation of this status; None: nothing."""
    status = status or {}
    phase = status.get("phase") or InvestigationPhase.PENDING.value
    if phase == InvestigationPhase.RESOLVED.value:
        return None
    if phase in SETTLED_PHASES:
        return ResolvedPatch(AlertStatus.RESOLVED, InvestigationPhase.RESOLVED)
    if status.get("alertStatus") == AlertStatus.RESOLVED.value:
        return None
    if phase == InvestigationPhase.PENDING.value:
        # Nobody started on it: the alert is gone, so is the reason to spend tokens on it.
        return ResolvedPatch(AlertStatus.RESOLVED, InvestigationPhase.RESOLVED)
    return ResolvedPatch(AlertStatus.RESOLVED, None)  # Running: Resolved once the diagnosis ends


@dataclass(frozen=True)
class FiringPatch:
    """The status change a firing notification makes to an existing Investigation (None: leave as is)."""

    alert_status: AlertStatus
    phase: InvestigationPhase | None


def on_firing(status: Mapping[str, Any] | None) -> FiringPatch | None:
    """The change a firing notification makes to an Investigation of this status; None: nothing (the
    repeat notifications of a firing alert, every group_interval, cost one read)."""
    status = status or {}
    if status.get("alertStatus") == AlertStatus.FIRING.value:
        return None
    if status.get("phase") == InvestigationPhase.RESOLVED.value:
        again = InvestigationPhase.DIAGNOSED if status.get("summary") else InvestigationPhase.PENDING
        return FiringPatch(AlertStatus.FIRING, again)
    # Just created (the create drops the status), or resolved while a run was going or after it failed:
    # the phase already says what the investigation is doing.
    return FiringPatch(AlertStatus.FIRING, None)


def phase_after_run(outcome: InvestigationPhase, alert_status: str | None) -> InvestigationPhase:
    """The phase a finished run leaves: a diagnosis of an alert resolved meanwhile ends Resolved (its
    summary and root cause kept); a failure stays Failed so a person sees it."""
    if outcome == InvestigationPhase.DIAGNOSED and alert_status == AlertStatus.RESOLVED.value:
        return InvestigationPhase.RESOLVED
    return outcome
