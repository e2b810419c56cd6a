"""The pure core of incidents: the Alertmanager payload and its caps, the names, what a notification means."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ai_ops_api.investigations import INVESTIGATION, MAX_ANNOTATION_VALUE, MAX_LABELS
from chat_service.incidents.alertmanager import TRUNCATED_MARKER, BadNotification, parse_notification
from chat_service.incidents.episode import (
    ResolvedPatch,
    alert_spec,
    attached_runbooks,
    name_of,
    on_resolved,
    phase_after_run,
)
from chat_service.incidents.naming import investigation_name
from chat_service.runbooks.documents import RunbookDocument, RunbookMatch

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def alert(**overrides: Any) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": "KubePodCrashLooping",
            "namespace": "shop",
            "pod": "checkout-1",
            "severity": "critical",
        },
        "annotations": {"summary": "checkout-1 restarts"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": "a1b2c3d4e5f60718",
        **overrides,
    }


def notification(*alerts: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "status": "firing",
        "receiver": "ai-ops",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,  # a field of newer versions: ignored
        "alerts": list(alerts) or [alert()],
        **overrides,
    }


def test_a_v4_notification_parses_with_its_alerts() -> None:
    parsed = parse_notification(notification())
    (only,) = parsed.alerts
    assert only.name == "KubePodCrashLooping"
    assert only.labels["pod"] == "checkout-1"
    assert (only.dropped_labels, only.dropped_annotations) == (0, 0)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"version": "4", "status": "firing"}, "alerts"),
        (notification(version="3"), "version"),
        (notification(alert(status="burning")), "alerts.0.status"),
        (notification(alert(labels="alertname=x")), "alerts.0.labels"),
        (notification({"status": "firing", "labels": {}}), "alerts.0.startsAt"),
        ([1, 2, 3], "body"),
    ],
)
def test_a_broken_payload_is_refused_saying_where(payload: Any, where: str) -> None:
    with pytest.raises(BadNotification, match=re.escape(where)):
        parse_notification(payload)


def test_ten_thousand_labels_are_capped_not_refused() -> None:
    labels = {f"label_{i:05}": "v" * 5000 for i in range(10_000)}
    labels["alertname"] = "Flood"
    (capped,) = parse_notification(notification(alert(labels=labels))).alerts
    assert len(capped.labels) == MAX_LABELS
    assert capped.dropped_labels == 10_001 - MAX_LABELS
    assert all(len(v) <= 1024 for v in capped.labels.values())
    # What is kept fits the CRD: the spec model takes it.
    INVESTIGATION.parse_spec(alert_spec(capped))


def test_a_megabyte_annotation_is_truncated_with_a_marker() -> None:
    (capped,) = parse_notification(notification(alert(annotations={"description": "x" * 1_000_000}))).alerts
    text = capped.annotations["description"]
    assert len(text) == MAX_ANNOTATION_VALUE and text.endswith(TRUNCATED_MARKER)
    INVESTIGATION.parse_spec(alert_spec(capped))


def test_more_than_a_thousand_alerts_are_refused() -> None:
    with pytest.raises(BadNotification, match="alerts"):
        parse_notification(notification(*[alert(fingerprint=str(i)) for i in range(1001)]))


def test_the_name_is_dns_1123_stable_and_distinct_per_episode() -> None:
    first = investigation_name("KubePodCrashLooping", "a1b2", "2024-05-01T10:00:00Z")
    assert first == investigation_name("KubePodCrashLooping", "a1b2", "2024-05-01T10:00:00Z")
    assert first.startswith("inv-kubepodcrashlooping-")
    assert first != investigation_name("KubePodCrashLooping", "a1b2", "2024-05-01T11:00:00Z")
    assert first != investigation_name("KubePodCrashLooping", "ffff", "2024-05-01T10:00:00Z")
    for alert_name in ("A" * 300, "日本語 ✓", "--", "", "Mixed_Case.Name/With:Colons"):
        name = investigation_name(alert_name, "fp", "t")
        assert len(name) <= 63 and DNS_1123_LABEL.match(name), name


def test_a_repeat_notification_names_the_same_investigation() -> None:
    once = parse_notification(notification()).alerts[0]
    again = parse_notification(notification(alert(annotations={"summary": "changed text"}))).alerts[0]
    assert name_of(once) == name_of(again)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, ResolvedPatch("resolved", "Resolved")),  # type: ignore[arg-type]
        ({"phase": "Pending"}, ResolvedPatch("resolved", "Resolved")),  # type: ignore[arg-type]
        ({"phase": "Running"}, ResolvedPatch("resolved", None)),  # type: ignore[arg-type]
        ({"phase": "Running", "alertStatus": "resolved"}, None),
        ({"phase": "Diagnosed"}, ResolvedPatch("resolved", "Resolved")),  # type: ignore[arg-type]
        ({"phase": "Failed"}, ResolvedPatch("resolved", "Resolved")),  # type: ignore[arg-type]
        ({"phase": "Resolved"}, None),
    ],
)
def test_resolved_resolves_at_once_unless_a_diagnosis_runs(status: dict[str, Any], expected: Any) -> None:
    assert on_resolved(status) == expected


def test_a_diagnosis_of_an_alert_resolved_meanwhile_ends_resolved() -> None:
    assert phase_after_run("Diagnosed", "resolved") == "Resolved"  # type: ignore[arg-type]
    assert phase_after_run("Diagnosed", "firing") == "Diagnosed"  # type: ignore[arg-type]
    assert phase_after_run("Failed", "resolved") == "Failed"  # type: ignore[arg-type]


def test_runbooks_attach_by_their_match() -> None:
    runbooks = [
        RunbookDocument(
            "crashloop", "Crash loops", "...", match=RunbookMatch(alert_names=("KubePodCrashLooping",))
        ),
        RunbookDocument("critical", "Any critical", "...", match=RunbookMatch(severities=("critical",))),
        RunbookDocument("dns", "DNS", "...", match=RunbookMatch(alert_names=("CoreDNSDown",))),
        RunbookDocument("unattached", "Search only", "..."),
    ]
    (parsed,) = parse_notification(notification()).alerts
    assert attached_runbooks(runbooks, parsed) == ["crashloop", "critical"]
    spec = INVESTIGATION.parse_spec(alert_spec(parsed, attached_runbooks(runbooks, parsed)))
    assert spec.wire()["runbooks"] == ["crashloop", "critical"]
