"""The chart's Grafana dashboard (``grafanaDashboard``): off by default; on, a ConfigMap with the sidecar's
label holding dashboard JSON whose every PromQL expression names only metrics the chat service exports
(and parses, checked with promtool when it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client import CollectorRegistry

from chat_service.metrics import ChatMetrics
from chat_service.usage.ledger import MemoryLedger
from chat_service.usage.recorder import UsageRecorder
from tests.support.chart_render import NAMESPACE, RELEASE, load_chart, render

DASHBOARD = f"{RELEASE}-usage-dashboard"
REQUIRED = {
    "ai_ops_llm_tokens_total",
    "ai_ops_llm_cost_total",
    "ai_ops_tool_calls_total",
    "ai_ops_tool_call_duration_seconds_bucket",
}
# PromQL words that are not metric names: aggregations' modifiers, set operators, keywords.
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
# Grafana's variables, replaced by what Grafana would put there before the query reaches Prometheus.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*"}


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return load_chart()


def exported_metric_names() -> set[str]:
    """The sample names the chat service's registry exposes (counters' _total, histograms' series)."""
    registry = CollectorRegistry()
    metrics = ChatMetrics(registry=registry)
    # Usage accounting (on by default) exports the model-call families from a collector of its own.
    UsageRecorder(metrics=metrics, ledger=MemoryLedger(1), config=lambda: None, known_callers=frozenset)
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, label names in a
    matcher or a by/without/on/ignoring list, keywords, durations or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    # Not after a digit or a dot: the unit of a duration (1h) or of a number (1e3) is no name.
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function call, or a keyword
        names.add(word)
    return names


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []) if "expr" in t]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        # label_values(metric, label) names a metric too.
        if variable.get("type") == "query" and isinstance(query, str):
            match = re.fullmatch(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*\w+\s*\)", query)
            assert match, query
            found.append(match.group(1))
    return found


def dashboard_configmaps(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in render(chart, values).of_kind("ConfigMap") if o["metadata"]["name"] == DASHBOARD]


def test_the_dashboard_is_off_by_default(chart: helm.Chart) -> None:
    assert dashboard_configmaps(chart, {}) == []
    assert dashboard_configmaps(chart, {"grafanaDashboard": {"enabled": False}}) == []


def test_the_dashboard_configmap_carries_the_sidecar_label_and_valid_json(chart: helm.Chart) -> None:
    (default,) = dashboard_configmaps(chart, {"grafanaDashboard": {"enabled": True}})
    assert default["metadata"]["namespace"] == NAMESPACE
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"
    (custom,) = dashboard_configmaps(
        chart,
        {
            "grafanaDashboard": {
                "enabled": True,
                "labelKey": "example.com/dashboard",
                "labelValue": "usage",
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "ai-ops"},
            }
        },
    )
    assert custom["metadata"]["namespace"] == "monitoring"
    assert custom["metadata"]["labels"]["example.com/dashboard"] == "usage"
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["annotations"] == {"grafana_folder": "ai-ops"}
    (name, text), *others = default["data"].items()
    assert others == [] and name.endswith(".json")
    dashboard = json.loads(text)
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]


@pytest.mark.parametrize(
    "values",
    [
        {"grafanaDashboard": {"enabled": True, "labelKey": "bad key"}},
        {"grafanaDashboard": {"enabled": True, "labelValue": "not/a value"}},
        {"grafanaDashboard": {"enabled": True, "namespace": "Not_A_Namespace"}},
        {"grafanaDashboard": {"enabled": True, "folder": "typo"}},
    ],
)
def test_bad_dashboard_values_are_refused(chart: helm.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError, match=r"grafanaDashboard"):
        render(chart, values)


def test_every_promql_expression_names_only_exported_metrics(chart: helm.Chart, tmp_path: Path) -> None:
    (configmap,) = dashboard_configmaps(chart, {"grafanaDashboard": {"enabled": True}})
    dashboard = json.loads(next(iter(configmap["data"].values())))
    exported = exported_metric_names()
    queries = expressions(dashboard)
    named = set().union(*(metric_names(q) for q in queries))
    assert named <= exported, sorted(named - exported)
    assert named >= REQUIRED, sorted(REQUIRED - named)

    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the names are checked above; promtool adds the syntax check where it is installed
    rules = []
    for i, query in enumerate(q for q in queries if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", q)):
        for variable, value in _GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_names_sees_through_functions_matchers_and_groupings() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, server) (rate(a_bucket{kind!="x", b="y{z}"}[5m]))) '
        "/ on (server) group_left (tool) sum without (c) (b_total offset 1h) and bool d"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "d"}
