"""Rendering the Helm chart with the real Helm engine (helm-python-sdk wraps Helm's Go SDK), for the chart tests.

Rendering checks `values.schema.json` first, exactly like `helm install`, so a bad value raises here.
`lookup` answers nothing offline, so generated Secrets get fresh random values on every render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "ai-ops"
RELEASE = "ai-ops"
NAMESPACE = "ai-ops"

# Kinds whose schema kubernetes-validate does not know: ours (checked with ai_ops_operator.core.validation),
# kopf's peering objects and the Prometheus Operator's ServiceMonitor.
NON_BUILTIN_GROUPS = ("ai-ops.dev/", "kopf.dev/", "monitoring.coreos.com/")


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: its manifests as parsed objects, with the template each came from."""

    templates: dict[str, str]
    objects: list[tuple[str, dict[str, Any]]]

    @property
    def register_entries(self) -> list[dict[str, Any]]:
        """What the register hook Job creates through the API: [{"plural", "mode", "object"}]."""
        for configmap in self.of_kind("ConfigMap"):
            if configmap["metadata"]["labels"].get("app.kubernetes.io/component") == "register":
                entries: list[dict[str, Any]] = json.loads(configmap["data"]["objects.json"])
                return entries
        return []

    def registered(self, kind: str) -> list[dict[str, Any]]:
        return [e["object"] for e in self.register_entries if e["object"]["kind"] == kind]

    def get_registered(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [obj for obj in self.registered(kind) if obj["metadata"]["name"] == name]
        return found

    @property
    def notes(self) -> str:
        return next(text for path, text in self.templates.items() if path.endswith("NOTES.txt"))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for _, obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [
            obj
            for obj in self.of_kind(kind)
            if obj["metadata"]["name"] == name
            and (namespace is None or obj["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"{kind} {name}: found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {obj["metadata"]["name"] for obj in self.of_kind(kind)}

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(workload name, pod spec) of every Deployment, StatefulSet, DaemonSet, Job and CronJob."""
        specs = []
        for _, obj in self.objects:
            kind = obj["kind"]
            if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                specs.append((f"{kind}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
            elif kind == "CronJob":
                specs.append(
                    (
                        f"{kind}/{obj['metadata']['name']}",
                        obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                    )
                )
        return specs


def load_chart() -> helm.Chart:
    return helm.Chart.load(str(CHART_DIR))


def render(
    chart: helm.Chart, values: dict[str, Any], *, name: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    templates = chart.render(values=values, name=name, namespace=namespace)
    objects: list[tuple[str, dict[str, Any]]] = []
    for path, text in sorted(templates.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append((path, doc))
    return Rendered(templates=templates, objects=objects)


def container_env(pod_spec: dict[str, Any], container: str) -> list[dict[str, Any]]:
    (found,) = [c for c in pod_spec["containers"] if c["name"] == container]
    return list(found.get("env") or [])


def env_value(pod_spec: dict[str, Any], container: str, variable: str) -> Any:
    for entry in container_env(pod_spec, container):
        if entry["name"] == variable:
            return entry.get("value", entry.get("valueFrom"))
    raise KeyError(variable)
