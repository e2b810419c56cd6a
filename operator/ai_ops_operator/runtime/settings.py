"""Settings of ``ai-ops operator``: command-line flags win over environment variables over defaults.

Every value is checked at start; a wrong one stops the operator with a message naming the flag and the
variable (``SettingsError``), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ai_ops_api.agent_config import AGENT_CONFIGMAP_NAME

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    clusterwide: bool = False
    configmap_name: str = AGENT_CONFIGMAP_NAME
    chat_deployment: str = "ai-ops-chat"
    probe_concurrency: int = 50
    allow_loopback: bool = False
    # Commands stdio MCP servers may run (exact strings of MCPServer spec.command); empty: stdio is off.
    stdio_commands: frozenset[str] = frozenset()
    log_level: str = "INFO"
    log_format: str = "json"
    # kopf's liveness endpoint (e.g. http://0.0.0.0:8080/healthz); None: off.
    liveness_endpoint: str | None = None
    # Port of the Prometheus /metrics endpoint; 0: off.
    metrics_port: int = 0
    # kopf peering object name; None: standalone (a single replica).
    peering_name: str | None = None
    peering_priority: int | None = None
    kubeconfig: str | None = None
    # Coalescing window of namespace reconciles (seconds): a burst of events costs one pass.
    debounce_seconds: float = 0.05
    # How often open ActionRequests are looked at (expiry, a decision missed): the kopf timer's interval.
    action_sweep_seconds: float = 10.0
    # Whether the operator executes ActionRequests at all (the chart's actions.enabled; env AI_OPS_ACTIONS).
    actions_enabled: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        metavar="NS",
        help="watch this namespace (repeatable); env AI_OPS_WATCH_NAMESPACES (comma-separated, * for all); "
        "default: the namespace the operator runs in",
    )
    parser.add_argument(
        "--all-namespaces", "-A", action="store_true", default=None, help="watch the whole cluster"
    )
    parser.add_argument(
        "--configmap-name", default=None, help="agent ConfigMap name; env AI_OPS_CONFIGMAP_NAME"
    )
    parser.add_argument(
        "--chat-deployment", default=None, help="chat Deployment name; env AI_OPS_CHAT_DEPLOYMENT"
    )
    parser.add_argument(
        "--probe-concurrency", default=None, help="MCP probes running at once; env AI_OPS_PROBE_CONCURRENCY"
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        default=None,
        help="accept MCP servers on loopback addresses (development, tests); env AI_OPS_ALLOW_LOOPBACK",
    )
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR; env AI_OPS_LOG_LEVEL"
    )
    parser.add_argument("--log-format", default=None, choices=("json", "plain"), help="env AI_OPS_LOG_FORMAT")
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz; env AI_OPS_LIVENESS_ENDPOINT",
    )
    parser.add_argument(
        "--metrics-port", default=None, help="Prometheus port (0: off); env AI_OPS_METRICS_PORT"
    )
    parser.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="kopf peering name (several replicas: one works); env AI_OPS_PEERING_NAME; empty: standalone",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else $KUBECONFIG)"
    )


def _bool(value: str, name: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use true or false)")


def _int(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if not low <= number <= high:
        raise SettingsError(f"{name}={number} is out of range ({low} to {high})")
    return number


def _own_namespace(env: Mapping[str, str]) -> str | None:
    if env.get("AI_OPS_NAMESPACE"):
        return env["AI_OPS_NAMESPACE"].strip()
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from flags and environment; raises ``SettingsError`` on any wrong value."""
    env = os.environ if env is None else env

    def pick(flag: object, var: str) -> str | None:
        if flag is not None:
            return str(flag)
        value = env.get(var)
        return value if value is not None and value.strip() != "" else None

    # Namespaces.
    clusterwide = bool(args.all_namespaces)
    namespaces: list[str] = []
    if args.namespace:
        namespaces = [n.strip() for n in args.namespace]
    elif not clusterwide and env.get("AI_OPS_WATCH_NAMESPACES", "").strip():
        namespaces = [n.strip() for n in env["AI_OPS_WATCH_NAMESPACES"].split(",") if n.strip()]
    if "*" in namespaces:
        clusterwide, namespaces = True, []
    if clusterwide and namespaces:
        raise SettingsError("--all-namespaces and --namespace exclude each other")
    if not clusterwide and not namespaces:
        own = _own_namespace(env)
        if not own:
            raise SettingsError(
                "no namespace to watch: pass --namespace NS or --all-namespaces, or set AI_OPS_WATCH_NAMESPACES "
                "(outside a pod the operator cannot tell which namespace it runs in)"
            )
        namespaces = [own]
    for ns in namespaces:
        if not DNS_LABEL.match(ns) or len(ns) > 63:
            raise SettingsError(
                f"namespace {ns!r} is not a valid namespace name (--namespace, AI_OPS_WATCH_NAMESPACES)"
            )

    configmap = pick(args.configmap_name, "AI_OPS_CONFIGMAP_NAME") or AGENT_CONFIGMAP_NAME
    if not DNS_SUBDOMAIN.match(configmap) or len(configmap) > 253:
        raise SettingsError(
            f"ConfigMap name {configmap!r} is not a valid name (--configmap-name, AI_OPS_CONFIGMAP_NAME)"
        )
    deployment = pick(args.chat_deployment, "AI_OPS_CHAT_DEPLOYMENT") or "ai-ops-chat"
    if not DNS_SUBDOMAIN.match(deployment) or len(deployment) > 253:
        raise SettingsError(
            f"Deployment name {deployment!r} is not a valid name (--chat-deployment, AI_OPS_CHAT_DEPLOYMENT)"
        )
    concurrency_text = pick(args.probe_concurrency, "AI_OPS_PROBE_CONCURRENCY") or "50"
    concurrency = _int(concurrency_text, "AI_OPS_PROBE_CONCURRENCY (--probe-concurrency)", 1, 1000)
    allow_loopback = bool(args.allow_loopback) or _bool(
        env.get("AI_OPS_ALLOW_LOOPBACK", ""), "AI_OPS_ALLOW_LOOPBACK"
    )
    stdio_commands = frozenset(
        command.strip() for command in env.get("AI_OPS_STDIO_COMMANDS", "").split(",") if command.strip()
    )
    level = (pick(args.log_level, "AI_OPS_LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"log level {level!r} is not one of {', '.join(LOG_LEVELS)} (--log-level, AI_OPS_LOG_LEVEL)"
        )
    log_format = (pick(args.log_format, "AI_OPS_LOG_FORMAT") or "json").lower()
    if log_format not in ("json", "plain"):
        raise SettingsError(f"log format {log_format!r} is not json or plain (AI_OPS_LOG_FORMAT)")
    liveness = pick(args.liveness, "AI_OPS_LIVENESS_ENDPOINT")
    if liveness is not None:
        parsed = urlparse(liveness)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise SettingsError(
                f"liveness endpoint {liveness!r} must look like http://0.0.0.0:8080/healthz "
                "(--liveness, AI_OPS_LIVENESS_ENDPOINT)"
            )
    metrics_port = _int(
        pick(args.metrics_port, "AI_OPS_METRICS_PORT") or "0", "AI_OPS_METRICS_PORT", 0, 65535
    )
    peering = pick(args.peering, "AI_OPS_PEERING_NAME")
    if peering is not None and not DNS_SUBDOMAIN.match(peering):
        raise SettingsError(f"peering name {peering!r} is not a valid name (--peering, AI_OPS_PEERING_NAME)")
    priority_text = env.get("AI_OPS_PEERING_PRIORITY", "").strip()
    priority = _int(priority_text, "AI_OPS_PEERING_PRIORITY", 0, 2**31 - 1) if priority_text else None
    actions_text = env.get("AI_OPS_ACTIONS", "").strip()
    actions_enabled = _bool(actions_text, "AI_OPS_ACTIONS") if actions_text else True
    return OperatorSettings(
        namespaces=tuple(namespaces),
        actions_enabled=actions_enabled,
        clusterwide=clusterwide,
        configmap_name=configmap,
        chat_deployment=deployment,
        probe_concurrency=concurrency,
        allow_loopback=allow_loopback,
        stdio_commands=stdio_commands,
        log_level=level,
        log_format=log_format,
        liveness_endpoint=liveness,
        metrics_port=metrics_port,
        peering_name=peering,
        peering_priority=priority,
        kubeconfig=args.kubeconfig,
    )
