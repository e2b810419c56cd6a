"""Prometheus metrics of the operator, in a registry of their own (one per operator instance)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ai_ops_api.specs import HealthState


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._health: dict[tuple[str, str], HealthState | None] = {}
        self.probe_seconds = Histogram(
            "ai_ops_mcp_probe_duration_seconds",
            "Duration of one MCP probe (initialize + tools/list), by result.",
            ["result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.server_health = Gauge(
            "ai_ops_mcp_server_health",
            "1 for the current health state of each MCP server (one series per state).",
            ["namespace", "name", "state"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "ai_ops_reconcile_errors_total",
            "Failed namespace passes (retried with backoff).",
            ["namespace"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "ai_ops_reconcile_duration_seconds",
            "Duration of one namespace reconcile.",
            registry=self.registry,
        )
        self.configmap_writes = Counter(
            "ai_ops_configmap_writes_total",
            "Agent ConfigMap creations and updates.",
            ["namespace"],
            registry=self.registry,
        )
        self.status_writes = Counter(
            "ai_ops_status_writes_total", "Status patches, by kind.", ["kind"], registry=self.registry
        )
        self.status_write_errors = Counter(
            "ai_ops_status_write_errors_total",
            "Status writes refused or failed, and statuses that could not be computed (retried per object"
            " with backoff), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.deployment_patches = Counter(
            "ai_ops_deployment_patches_total",
            "Secret-wiring patches of the chat Deployment.",
            ["namespace"],
            registry=self.registry,
        )

        self.actions = Counter(
            "ai_ops_actions_total",
            "ActionRequest phases written by the operator (Approved, Rejected, Expired, Executing, "
            "Succeeded, Failed).",
            ["phase"],
            registry=self.registry,
        )

    def set_health(self, namespace: str, name: str, state: HealthState | None) -> None:
        if self._health.get((namespace, name), "unset") == state:
            return  # called on every pass: only a change touches the series
        self._health[(namespace, name)] = state
        for candidate in HealthState:
            self.server_health.labels(namespace, name, candidate.value).set(1 if candidate == state else 0)

    def forget_missing(self, namespace: str, names: set[str]) -> None:
        """Remove the series of servers of the namespace that no longer exist."""
        for ns, name in [key for key in self._health if key[0] == namespace and key[1] not in names]:
            self.forget_server(ns, name)

    def forget_server(self, namespace: str, name: str) -> None:
        self._health.pop((namespace, name), None)
        for candidate in HealthState:
            with contextlib.suppress(KeyError):
                self.server_health.remove(namespace, name, candidate.value)
