"""The bundled prometheus MCP server: pure summaries, then every tool against a real Prometheus.

Prometheus (Debian's package) scrapes an exporter in this process every second; the test sets a gauge, a
rule fires an alert on it, and the tools are called through a real MCP client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mcp_servers.prometheus.summaries import (
    alert_rows,
    query_answer,
    summarize_matrix,
    summarize_series,
    target_rows,
    trend,
)
from tests.harness.prometheus_server import MetricsExporter, PrometheusServer
from tests.support.mcp_server_helpers import McpServerProcess, mcp_client

# --------------------------------------------------------------------------------------------- pure


def test_trend_names_the_direction_and_ignores_noise() -> None:
    assert trend([(0, 1.0), (60, 2.0), (120, 3.0)]) == ("rising", 1.0)
    assert trend([(0, 3.0), (60, 2.0), (120, 1.0)])[0] == "falling"
    assert trend([(0, 5.0), (60, 5.0), (120, 5.0)]) == ("flat", 0.0)
    assert trend([(0, 5.0), (60, 6.0), (120, 5.0), (180, 6.0), (240, 5.0)])[0] == "flat"
    assert trend([(0, 1.0)]) == ("flat", 0.0)


def test_a_range_series_becomes_its_shape_not_its_samples() -> None:
    series = {"metric": {"pod": "a"}, "values": [[1700000000 + 15 * i, str(i)] for i in range(200)]}
    summary = summarize_series(series)
    assert summary["points"] == 200
    assert (summary["first"], summary["last"], summary["min"], summary["max"]) == (0.0, 199.0, 0.0, 199.0)
    assert summary["trend"] == "rising"
    assert summary["slope_per_minute"] == 4.0
    assert "values" not in summary
    assert summarize_series({"metric": {}, "values": [[1, "NaN"], [2, "+Inf"]]})["points"] == 0


def test_many_series_keep_the_highest_and_say_how_many_were_left_out() -> None:
    result = [{"metric": {"i": str(i)}, "values": [[1, str(i)], [2, str(i)]]} for i in range(80)]
    answer = summarize_matrix(result, max_series=5)
    assert [s["metric"]["i"] for s in answer["series"]] == ["79", "78", "77", "76", "75"]
    assert answer["series_total"] == 80
    assert "showing 5 of 80" in answer["truncated"]


def test_instant_answers_of_each_type() -> None:
    vector = query_answer(
        {
            "resultType": "vector",
            "result": [{"metric": {"a": "1"}, "value": [1, "2"]}, {"metric": {}, "value": [1, "9"]}],
        },
        10,
    )
    assert [s["value"] for s in vector["samples"]] == [9.0, 2.0]
    scalar = query_answer({"resultType": "scalar", "result": [1700000000, "42"]}, 10)
    assert scalar["value"] == "42" and scalar["time"].startswith("2023-11-14")


def test_alerts_and_targets_sort_what_needs_attention_first() -> None:
    rows = alert_rows(
        [
            {"labels": {"alertname": "B", "severity": "warning"}, "state": "pending", "annotations": {}},
            {
                "labels": {"alertname": "A", "severity": "critical", "pod": "x"},
                "state": "firing",
                "annotations": {"summary": "s"},
            },
        ]
    )
    assert [(r["name"], r["state"], r["labels"]) for r in rows] == [
        ("A", "firing", {"pod": "x"}),
        ("B", "pending", {}),
    ]
    targets = target_rows(
        [
            {"labels": {"job": "j", "instance": "a"}, "health": "up"},
            {"labels": {"job": "j"}, "health": "down", "lastError": "refused"},
        ]
    )
    assert [t["health"] for t in targets] == ["down", "up"]


# --------------------------------------------------------------------------------------------- real Prometheus


@pytest.fixture(scope="module")
def exporter() -> Iterator[MetricsExporter]:
    metrics = MetricsExporter()
    metrics.gauge("ai_ops_test_queue_depth", labels=("queue",)).labels(queue="orders").set(3)
    metrics.start()
    yield metrics
    metrics.stop()


@pytest.fixture(scope="module")
def prometheus(exporter: MetricsExporter) -> Iterator[PrometheusServer]:
    rules = [
        {
            "alert": "QueueTooDeep",
            "expr": "ai_ops_test_queue_depth > 10",
            "for": "0s",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "queue {{ $labels.queue }} is {{ $value }} deep"},
        },
        {"record": "queue:depth:max", "expr": "max(ai_ops_test_queue_depth)"},
    ]
    server = PrometheusServer([f"127.0.0.1:{exporter.port}", "127.0.0.1:1"], rules=rules)
    try:
        server.start()
    except RuntimeError as error:
        server.stop()
        pytest.skip(str(error))
    server.wait_for('ai_ops_test_queue_depth{queue="orders"}', lambda r: bool(r))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus_mcp(prometheus: PrometheusServer) -> Iterator[McpServerProcess]:
    server = McpServerProcess(["prometheus", "--prometheus-url", prometheus.url])
    server.start()
    yield server
    server.stop()


async def test_the_tools_are_listed_read_only(prometheus_mcp: McpServerProcess) -> None:
    async with mcp_client(prometheus_mcp.url) as client:
        tools = (await client.session.list_tools()).tools
    assert sorted(t.name for t in tools) == [
        "alerts",
        "label_values",
        "query",
        "query_range",
        "rules",
        "targets",
    ]
    assert all(t.annotations and t.annotations.readOnlyHint is True for t in tools)


async def test_query_sees_the_value_the_exporter_serves(prometheus_mcp: McpServerProcess) -> None:
    async with mcp_client(prometheus_mcp.url) as client:
        answer = (await client.call("query", expr='ai_ops_test_queue_depth{queue="orders"}')).json()
    assert answer["result_type"] == "vector"
    assert answer["samples"][0]["value"] == 3.0
    assert answer["samples"][0]["metric"]["queue"] == "orders"


async def test_a_bad_expression_is_a_tool_error_with_prometheus_words(
    prometheus_mcp: McpServerProcess,
) -> None:
    async with mcp_client(prometheus_mcp.url) as client:
        answer = await client.call("query", expr="sum(rate(foo[5m])")
    assert answer.is_error
    assert "bad_data" in answer.text and "parse error" in answer.text


async def test_query_range_summarizes_a_rising_series(
    prometheus: PrometheusServer, prometheus_mcp: McpServerProcess, exporter: MetricsExporter
) -> None:
    gauge = exporter.gauges["ai_ops_test_queue_depth"].labels(queue="payments")
    for value in range(1, 7):
        gauge.set(value)
        time.sleep(1.1)
    prometheus.wait_for(
        'ai_ops_test_queue_depth{queue="payments"}', lambda r: bool(r) and r[0]["value"][1] == "6"
    )
    async with mcp_client(prometheus_mcp.url) as client:
        answer = (
            await client.call(
                "query_range", expr='ai_ops_test_queue_depth{queue="payments"}', window="1m", step="1s"
            )
        ).json()
    (series,) = answer["series"]
    assert series["last"] == 6.0 and series["min"] >= 1.0
    assert series["trend"] == "rising"
    assert answer["step_seconds"] == 1.0


async def test_alerts_rules_targets_and_label_values(
    prometheus: PrometheusServer, prometheus_mcp: McpServerProcess, exporter: MetricsExporter
) -> None:
    exporter.gauges["ai_ops_test_queue_depth"].labels(queue="orders").set(25)
    prometheus.wait_for('ALERTS{alertname="QueueTooDeep",alertstate="firing"}', lambda r: bool(r))
    async with mcp_client(prometheus_mcp.url) as client:
        alerts = (await client.call("alerts", state="firing")).json()
        rules = (await client.call("rules")).json()
        recording = (await client.call("rules", kind="record")).json()
        down = (await client.call("targets", health="down")).json()
        queues = (await client.call("label_values", label="queue")).json()
        bad_label = await client.call("label_values", label="not-a-label!")
    (alert,) = [a for a in alerts["alerts"] if a["name"] == "QueueTooDeep"]
    assert alert["severity"] == "critical" and alert["labels"]["queue"] == "orders"
    assert alert["summary"].startswith("queue orders is 25")
    assert {r["name"] for r in rules["rules"]} == {"QueueTooDeep", "queue:depth:max"}
    assert [r["name"] for r in recording["rules"]] == ["queue:depth:max"]
    assert [t["instance"] for t in down["targets"]] == ["127.0.0.1:1"]
    assert down["targets"][0]["last_error"] or down["targets"][0]["health"] == "down"
    assert {"orders", "payments"} <= set(queues["values"])
    assert bad_label.is_error


async def test_an_unreachable_prometheus_is_a_clear_tool_error() -> None:
    from tests.harness.ports import free_port

    server = McpServerProcess(["prometheus", "--prometheus-url", f"http://127.0.0.1:{free_port()}"])
    server.start()
    try:
        async with mcp_client(server.url) as client:
            answer = await client.call("query", expr="up")
    finally:
        server.stop()
    assert answer.is_error
    assert "unreachable" in answer.text


def test_without_a_url_it_says_how_to_give_one() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ai_ops_cli", "mcp", "prometheus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "--prometheus-url" in done.stderr
