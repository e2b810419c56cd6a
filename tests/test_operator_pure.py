"""Pure parts of the operator: condition merging and the MCP health state machine (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ai_ops_operator.conditions import merge_conditions
from ai_ops_operator.health import (
    REFRESH_INTERVALS,
    HealthRecord,
    ProbeResult,
    ServerInfoData,
    next_record,
    record_from_status,
    should_publish,
)
from ai_ops_operator.specs import HealthCheck, HealthState
from ai_ops_operator.translator import Cond

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHECK = HealthCheck(interval_seconds=30, timeout_seconds=10, failure_threshold=3, success_threshold=1)
INFO = ServerInfoData(name="srv", version="1", protocol_version="2025-06-18")


def ok(at: datetime = T0, latency_ms: int = 20, tools: tuple[str, ...] = ("b", "a")) -> ProbeResult:
    return ProbeResult(ok=True, latency_ms=latency_ms, at=at, server_info=INFO, tools=tools)


def failed(at: datetime = T0, error: str = "connection failed") -> ProbeResult:
    return ProbeResult(ok=False, latency_ms=3, at=at, error=error)


def fold(
    results: list[ProbeResult], check: HealthCheck = CHECK, start: HealthRecord | None = None
) -> HealthRecord:
    record = start or HealthRecord()
    for result in results:
        record = next_record(record, result, check)
    return record


# --- conditions ---------------------------------------------------------------------------------


def test_first_merge_stamps_every_condition_and_reports_each_as_a_transition() -> None:
    merged, transitions = merge_conditions(
        None,
        [
            Cond("SecretRefValidated", "False", "SecretNotFound", "m"),
            Cond("Ready", "False", "SecretNotFound", "m"),
        ],
        generation=2,
        now="2026-01-01T00:00:00Z",
    )
    assert merged == [
        {
            "type": "SecretRefValidated",
            "status": "False",
            "reason": "SecretNotFound",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 2,
        },
        {
            "type": "Ready",
            "status": "False",
            "reason": "SecretNotFound",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 2,
        },
    ]
    assert [(t.type, t.event_type) for t in transitions] == [
        ("SecretRefValidated", "Warning"),
        ("Ready", "Warning"),
    ]


def test_transition_time_changes_only_when_the_status_changes() -> None:
    first, _ = merge_conditions(None, [Cond("Ready", "False", "ProviderNotFound", "a")], 1, "T1")
    # Same status, other reason and generation: no transition, time kept, generation updated.
    second, transitions = merge_conditions(first, [Cond("Ready", "False", "SecretNotFound", "b")], 2, "T2")
    assert transitions == []
    assert second[0]["lastTransitionTime"] == "T1"
    assert (second[0]["reason"], second[0]["observedGeneration"]) == ("SecretNotFound", 2)
    third, transitions = merge_conditions(second, [Cond("Ready", "True", "Ready", "ok")], 2, "T3")
    assert third[0]["lastTransitionTime"] == "T3"
    assert [(t.old_status, t.new_status, t.event_type) for t in transitions] == [("False", "True", "Normal")]
    # An identical pass changes nothing at all.
    fourth, transitions = merge_conditions(third, [Cond("Ready", "True", "Ready", "ok")], 2, "T4")
    assert (fourth, transitions) == (third, [])


def test_conditions_no_longer_computed_are_dropped() -> None:
    first, _ = merge_conditions(
        None, [Cond("Default", "True", "IsDefault"), Cond("Ready", "True", "Ready")], 1, "T1"
    )
    second, transitions = merge_conditions(first, [Cond("Ready", "True", "Ready")], 1, "T2")
    assert [c["type"] for c in second] == ["Ready"]
    assert transitions == []


# --- health state machine -----------------------------------------------------------------------


def test_new_server_failing_below_the_threshold_stays_unknown_then_turns_unhealthy() -> None:
    after_two = fold([failed(), failed()])
    assert (after_two.state, after_two.consecutive_failures) == (HealthState.UNKNOWN, 2)
    after_three = next_record(after_two, failed(), CHECK)
    assert (after_three.state, after_three.consecutive_failures) == (HealthState.UNHEALTHY, 3)
    assert "connection failed" in after_three.message


def test_healthy_server_stays_usable_below_the_threshold_and_recovers_after_unhealthy() -> None:
    healthy = fold([ok()])
    assert healthy.state == HealthState.HEALTHY
    assert healthy.tools == ("a", "b") and healthy.server_info == INFO
    one_lost = next_record(healthy, failed(), CHECK)
    assert (one_lost.state, one_lost.consecutive_failures) == (HealthState.HEALTHY, 1)
    unhealthy = fold([failed(), failed()], start=one_lost)
    assert unhealthy.state == HealthState.UNHEALTHY
    assert unhealthy.tools == ("a", "b")  # what the last success found is kept
    recovered = next_record(unhealthy, ok(), CHECK)
    assert (recovered.state, recovered.consecutive_failures) == (HealthState.HEALTHY, 0)


def test_success_threshold_is_needed_before_healthy() -> None:
    check = HealthCheck(interval_seconds=30, timeout_seconds=10, failure_threshold=1, success_threshold=3)
    unhealthy = fold([failed()], check)
    assert unhealthy.state == HealthState.UNHEALTHY
    two = fold([ok(), ok()], check, start=unhealthy)
    assert two.state == HealthState.UNHEALTHY
    assert fold([ok()], check, start=two).state == HealthState.HEALTHY


def test_slow_success_is_degraded_and_usable() -> None:
    slow = fold([ok(latency_ms=5001)])
    assert slow.state == HealthState.DEGRADED
    assert "half the timeout" in slow.message
    assert fold([ok(latency_ms=5000)]).state == HealthState.HEALTHY
    assert next_record(slow, ok(latency_ms=30), CHECK).state == HealthState.HEALTHY


def test_401_is_unauthenticated_at_once_and_a_success_heals_it() -> None:
    result = ProbeResult(
        ok=False, latency_ms=2, at=T0, unauthenticated=True, error="HTTP 401, no headers configured"
    )
    record = fold([result])
    assert (record.state, record.message) == (HealthState.UNAUTHENTICATED, "HTTP 401, no headers configured")
    assert next_record(record, ok(), CHECK).state == HealthState.HEALTHY


# --- bounded status writes ----------------------------------------------------------------------


def test_unchanged_result_is_published_at_most_once_every_refresh_intervals() -> None:
    published = fold([ok(at=T0)])
    assert should_publish(None, published, CHECK, T0)
    current = published
    writes = 0
    for i in range(1, 3 * REFRESH_INTERVALS + 1):
        now = T0 + timedelta(seconds=30 * i)
        current = next_record(current, ok(at=now, latency_ms=20 + i), CHECK)
        if should_publish(published, current, CHECK, now):
            published = current
            writes += 1
    assert writes == 3  # one per REFRESH_INTERVALS probes, not one per probe


def test_a_changed_result_is_published_at_once() -> None:
    published = fold([ok()])
    assert should_publish(published, next_record(published, ok(tools=("a",)), CHECK), CHECK, T0)
    lost = next_record(published, failed(), CHECK)
    assert should_publish(published, lost, CHECK, T0)  # consecutiveFailures 0 -> 1 below the threshold
    unhealthy = fold([failed(), failed()], start=lost)
    more = next_record(unhealthy, failed(), CHECK)
    assert not should_publish(unhealthy, more, CHECK, T0)  # 3 -> 4 failures: same result past the threshold


def test_record_from_status_round_trips_what_was_published() -> None:
    status = {
        "health": "Healthy",
        "consecutiveFailures": 0,
        "serverInfo": {"name": "srv", "version": "1", "protocolVersion": "2025-06-18"},
        "tools": {"count": 2, "names": ["a", "b"]},
        "lastProbeTime": "2026-01-01T00:00:00Z",
        "lastProbeLatencyMs": 20,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Healthy", "message": "m"}],
    }
    record = record_from_status(status)
    assert record is not None
    assert (record.state, record.tools, record.server_info, record.last_probe_time) == (
        HealthState.HEALTHY,
        ("a", "b"),
        INFO,
        T0,
    )
    assert record_from_status({}) is None
