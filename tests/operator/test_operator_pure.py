"""Pure parts of the operator: condition merging and the MCP health state machine (no servers)."""

from __future__ import annotations

import argparse
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_ops_api.conditions import Cond
from ai_ops_api.specs import HealthCheck, HealthState
from ai_ops_operator.core.conditions import merge_conditions
from ai_ops_operator.core.health import (
    REFRESH_INTERVALS,
    HealthRecord,
    ProbeResult,
    ServerInfoData,
    next_record,
    probe_status_fields,
    probed_record_from_status,
    record_from_status,
    should_publish,
)
from ai_ops_operator.core.wiring import (
    SECRET_REFS_ANNOTATION,
    SECRETS_VOLUME,
    deployment_patch,
    secret_refs_checksum,
)
from ai_ops_operator.runtime.settings import OperatorSettings, SettingsError, add_arguments, resolve

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


def test_probe_status_fields_are_what_record_from_status_reads_back() -> None:
    record = fold([ok(latency_ms=42)])
    fields = probe_status_fields(record)
    assert fields == {
        "consecutiveFailures": 0,
        "lastProbeTime": "2026-01-01T00:00:00Z",
        "lastProbeLatencyMs": 42,
        "serverInfo": {"name": "srv", "version": "1", "protocolVersion": "2025-06-18"},
        "tools": {"count": 2, "names": ["a", "b"]},
    }
    back = record_from_status({"health": record.state.value, **fields})
    assert back is not None
    assert (back.state, back.tools, back.tool_count, back.server_info, back.last_probe_time) == (
        record.state,
        record.tools,
        record.tool_count,
        record.server_info,
        record.last_probe_time,
    )
    assert probe_status_fields(HealthRecord()) == {}  # never probed: no probe fields


def test_a_status_somebody_else_wrote_oddly_is_read_not_raised() -> None:
    odd = {"health": "Unhealthy", "lastProbeTime": "yesterday", "consecutiveFailures": "x", "conditions": 3}
    record = record_from_status(odd)
    assert record is not None
    assert (record.state, record.last_probe_time, record.consecutive_failures) == (
        HealthState.UNHEALTHY,
        None,
        0,
    )
    # Maintenance and NotProbed come from the spec: not a probe result to start from after a restart.
    assert probed_record_from_status({"health": "Maintenance"}) is None
    assert probed_record_from_status({"health": "Degraded"}) is not None


# --- Deployment wiring ----------------------------------------------------------------------------

TEMPLATE = {
    "metadata": {"labels": {"app": "chat"}},
    "spec": {
        "containers": [
            {"name": "chat", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
            {"name": "side"},
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    },
}


def apply_ops(template: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the patch the way the API server would (JSON patch on a Deployment)."""
    import jsonpatch

    version = next((op["value"] for op in ops if op["op"] == "test"), None)
    deployment = {"metadata": {"resourceVersion": version}, "spec": {"template": copy.deepcopy(template)}}
    return jsonpatch.apply_patch(deployment, ops)["spec"]["template"]


def test_wiring_adds_one_projected_volume_and_mounts_and_keeps_the_rest() -> None:
    keys = {("openai", "api-key"), ("mcp", "token"), ("openai", "org")}
    ops = deployment_patch(TEMPLATE, keys, "7")
    assert ops is not None and ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    wired = apply_ops(TEMPLATE, ops)
    assert wired["metadata"]["labels"] == {"app": "chat"}
    assert wired["metadata"]["annotations"] == {SECRET_REFS_ANNOTATION: secret_refs_checksum(keys)}
    volumes = wired["spec"]["volumes"]
    assert volumes[0] == {"name": "tmp", "emptyDir": {}}
    assert [s["secret"]["name"] for s in volumes[1]["projected"]["sources"]] == ["mcp", "openai"]
    assert volumes[1]["projected"]["sources"][1]["secret"]["items"] == [
        {"key": "api-key", "path": "openai/api-key"},
        {"key": "org", "path": "openai/org"},
    ]
    mount = {"name": SECRETS_VOLUME, "mountPath": "/var/run/secrets/ai-ops", "readOnly": True}
    assert [c.get("volumeMounts") for c in wired["spec"]["containers"]] == [
        [{"name": "tmp", "mountPath": "/tmp"}, mount],
        [mount],
    ]
    # Wired already: nothing to do, whatever the order of the keys.
    assert deployment_patch(wired, sorted(keys, reverse=True), "8") is None


def test_only_a_change_of_the_key_set_rewires_and_no_keys_unwires() -> None:
    wired = apply_ops(TEMPLATE, deployment_patch(TEMPLATE, {("a", "k")}, "7") or [])
    rewired_ops = deployment_patch(wired, {("a", "k"), ("b", "k")}, "8")
    assert rewired_ops is not None
    rewired = apply_ops(wired, rewired_ops)
    assert (
        rewired["metadata"]["annotations"][SECRET_REFS_ANNOTATION]
        != wired["metadata"]["annotations"][SECRET_REFS_ANNOTATION]
    )
    unwired = apply_ops(rewired, deployment_patch(rewired, set(), "9") or [])
    assert unwired["spec"]["volumes"] == TEMPLATE["spec"]["volumes"]  # type: ignore[index]
    assert [c.get("volumeMounts", []) for c in unwired["spec"]["containers"]] == [
        [{"name": "tmp", "mountPath": "/tmp"}],
        [],
    ]
    assert SECRET_REFS_ANNOTATION not in unwired["metadata"]["annotations"]


# --- settings -------------------------------------------------------------------------------------


def parse_settings(argv: list[str], env: dict[str, str]) -> OperatorSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve(parser.parse_args(argv), env)


def test_settings_from_env_and_flags() -> None:
    env = {
        "AI_OPS_WATCH_NAMESPACES": "team-a, team-b",
        "AI_OPS_CONFIGMAP_NAME": "agent",
        "AI_OPS_CHAT_DEPLOYMENT": "chat",
        "AI_OPS_PROBE_CONCURRENCY": "7",
        "AI_OPS_ALLOW_LOOPBACK": "true",
        "AI_OPS_LIVENESS_ENDPOINT": "http://0.0.0.0:8080/healthz",
        "AI_OPS_METRICS_PORT": "9090",
        "AI_OPS_PEERING_NAME": "ai-ops",
    }
    settings = parse_settings([], env)
    assert settings.namespaces == ("team-a", "team-b") and not settings.clusterwide
    assert (settings.configmap_name, settings.chat_deployment, settings.probe_concurrency) == (
        "agent",
        "chat",
        7,
    )
    assert settings.allow_loopback and settings.metrics_port == 9090 and settings.peering_name == "ai-ops"
    flags = parse_settings(["-n", "x", "--probe-concurrency", "3", "--configmap-name", "cm"], env)
    assert (flags.namespaces, flags.probe_concurrency, flags.configmap_name) == (("x",), 3, "cm")
    assert parse_settings([], {"AI_OPS_WATCH_NAMESPACES": "*"}).clusterwide
    assert parse_settings(["--all-namespaces"], {}).clusterwide
    assert parse_settings([], {"AI_OPS_NAMESPACE": "ai-ops"}).namespaces == ("ai-ops",)
    defaults = parse_settings(["-n", "x"], {})
    assert (defaults.configmap_name, defaults.chat_deployment, defaults.allow_loopback) == (
        "ai-ops-agent-config",
        "ai-ops-chat",
        False,
    )


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ([], {"AI_OPS_WATCH_NAMESPACES": "Bad_NS"}, "not a valid namespace"),
        (["-n", "x"], {"AI_OPS_PROBE_CONCURRENCY": "zero"}, "AI_OPS_PROBE_CONCURRENCY"),
        (["-n", "x"], {"AI_OPS_PROBE_CONCURRENCY": "0"}, "out of range"),
        (["-n", "x"], {"AI_OPS_ALLOW_LOOPBACK": "maybe"}, "AI_OPS_ALLOW_LOOPBACK"),
        (["-n", "x"], {"AI_OPS_CONFIGMAP_NAME": "Not OK"}, "AI_OPS_CONFIGMAP_NAME"),
        (["-n", "x"], {"AI_OPS_LIVENESS_ENDPOINT": "8080"}, "AI_OPS_LIVENESS_ENDPOINT"),
        (["-n", "x", "--all-namespaces"], {}, "exclude each other"),
    ],
)
def test_wrong_settings_stop_with_a_clear_message(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        parse_settings(argv, env)


def test_operator_command_refuses_a_wrong_setting_at_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ai_ops_cli import main

    monkeypatch.setenv("AI_OPS_PROBE_CONCURRENCY", "lots")
    assert main(["operator", "--namespace", "x"]) == 2
    assert "AI_OPS_PROBE_CONCURRENCY" in capsys.readouterr().err
