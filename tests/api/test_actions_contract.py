"""The ActionRequest contract's pure helpers: expiry, the state machine, excerpt caps, the spec's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ai_ops_api.actions import (
    ACTION_REQUEST,
    MAX_ARGUMENTS_JSON,
    MAX_EXCERPT,
    ActionPhase,
    can_transition,
    cap_excerpt,
    current_phase,
    effective_expiry,
    is_expired,
)

SPEC = {
    "server": "kubernetes-actions",
    "tool": "rollout_restart",
    "arguments": {"kind": "Deployment", "namespace": "shop", "name": "web"},
    "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
    "reason": "stale pods",
    "requestedBy": {"caller": "alice"},
}


def test_expiry_is_spec_expires_at_else_creation_plus_15_minutes() -> None:
    created = "2026-05-01T10:00:00Z"
    assert effective_expiry({"metadata": {"creationTimestamp": created}, "spec": {}}) == datetime(
        2026, 5, 1, 10, 15, tzinfo=UTC
    )
    explicit = {"metadata": {"creationTimestamp": created}, "spec": {"expiresAt": "2026-05-01T10:02:00Z"}}
    assert effective_expiry(explicit) == datetime(2026, 5, 1, 10, 2, tzinfo=UTC)
    now = datetime(2026, 5, 1, 10, 1, tzinfo=UTC)
    assert not is_expired(explicit, now)
    assert is_expired(explicit, now + timedelta(minutes=1))


def test_a_request_without_any_time_or_with_an_unreadable_one_is_expired() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert is_expired({"spec": {}}, now)
    assert is_expired({"spec": {"expiresAt": "tomorrow"}, "metadata": {}}, now)


def test_state_machine() -> None:
    assert can_transition(None, ActionPhase.APPROVED)
    assert can_transition("Pending", "Rejected")
    assert can_transition("Approved", "Executing")
    assert can_transition("Executing", "Failed")
    # Executing never goes back: a second call would need it.
    assert not can_transition("Executing", "Approved")
    assert not can_transition("Executing", "Executing")
    assert not can_transition("Pending", "Executing")
    for final in ("Rejected", "Expired", "Succeeded", "Failed"):
        assert not any(can_transition(final, phase) for phase in ActionPhase)
    assert not can_transition("Pending", "Bogus")
    assert current_phase({}) == ActionPhase.PENDING
    assert current_phase({"status": {"phase": "Executing"}}) == ActionPhase.EXECUTING


def test_excerpt_cap_keeps_short_text_and_cuts_long_text_to_the_limit() -> None:
    assert cap_excerpt("ok") == "ok"
    long = cap_excerpt("x" * (MAX_EXCERPT * 2))
    assert len(long) == MAX_EXCERPT and long.endswith("[truncated]")


def test_spec_rules() -> None:
    ACTION_REQUEST.parse_spec(SPEC)
    with pytest.raises(ValidationError, match="investigation or a caller"):
        ACTION_REQUEST.parse_spec({**SPEC, "requestedBy": {"threadId": "t"}})
    with pytest.raises(ValidationError, match="characters of JSON"):
        ACTION_REQUEST.parse_spec({**SPEC, "arguments": {"a": "x" * MAX_ARGUMENTS_JSON}})
    with pytest.raises(ValidationError):
        ACTION_REQUEST.parse_spec({**SPEC, "risk": "critical"})
