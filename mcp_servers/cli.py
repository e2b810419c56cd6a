"""`ai-ops mcp kubernetes|kubernetes-actions|netops|prometheus`: run a bundled MCP server on streamable HTTP.

Heavy imports (the MCP SDK, the kubernetes client, uvicorn) stay inside `run` so `ai-ops --help` is fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp_servers.common import DEFAULT_MAX_RESPONSE_BYTES, MIN_MAX_RESPONSE_BYTES
from mcp_servers.kubernetes_actions.actions import (
    DEFAULT_MAX_REPLICAS,
    DEFAULT_MAX_SCALE_STEP,
    MAX_REPLICAS_CEILING,
)

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

log = logging.getLogger("ai_ops.mcp")
PROMETHEUS_URL_ENV_VAR = "AI_OPS_PROMETHEUS_URL"


def _max_response_bytes(text: str) -> int:
    value = int(text)
    if value < MIN_MAX_RESPONSE_BYTES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MAX_RESPONSE_BYTES}")
    return value


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def _add_http_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (the chart sets 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, default=default_port, help=f"port to listen on (default {default_port})"
    )
    parser.add_argument("--path", default="/mcp", help="path of the MCP endpoint (default /mcp)")
    parser.add_argument(
        "--max-response-bytes",
        type=_max_response_bytes,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help=f"cap on every tool answer, larger ones are truncated with a note (default {DEFAULT_MAX_RESPONSE_BYTES})",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    servers = parser.add_subparsers(dest="mcp_server", metavar="SERVER", required=True)

    kubernetes = servers.add_parser(
        "kubernetes", help="read-only Kubernetes tools", description="Read-only Kubernetes MCP server."
    )
    _add_http_arguments(kubernetes, default_port=8091)
    kubernetes.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file; default: in-cluster credentials when running in a pod, else $KUBECONFIG or ~/.kube/config",
    )
    kubernetes.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")

    actions = servers.add_parser(
        "kubernetes-actions",
        help="Kubernetes write actions: rollout restart, scale, delete a pod, cordon, uncordon",
        description="Kubernetes actions MCP server: the bundled server that changes a cluster (dry run by default).",
    )
    _add_http_arguments(actions, default_port=8094)
    actions.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file; default: in-cluster credentials when running in a pod, else $KUBECONFIG or ~/.kube/config",
    )
    actions.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    actions.add_argument(
        "--max-replicas",
        type=_bounded_int(0, MAX_REPLICAS_CEILING),
        default=DEFAULT_MAX_REPLICAS,
        help=f"the largest replica count scale may set (default {DEFAULT_MAX_REPLICAS})",
    )
    actions.add_argument(
        "--max-scale-step",
        type=_bounded_int(0, MAX_REPLICAS_CEILING),
        default=DEFAULT_MAX_SCALE_STEP,
        help="one scale call changes the count by at most this or the current count, whichever is larger "
        f"(default {DEFAULT_MAX_SCALE_STEP})",
    )
    actions.add_argument(
        "--namespaces",
        default="",
        metavar="NS[,NS...]",
        help="the only namespaces the tools may change (comma-separated); default: those its RBAC allows",
    )

    netops = servers.add_parser(
        "netops", help="DNS, TCP, HTTP(S) and TLS checks", description="Network operations MCP server."
    )
    _add_http_arguments(netops, default_port=8092)
    netops.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST_OR_CIDR",
        help="allow only these targets: host names, *.domain, IPs or CIDR blocks (repeatable, comma-separated "
        "too; also from $AI_OPS_NETOPS_ALLOW). Default: any target except link-local addresses",
    )
    netops.add_argument(
        "--ca-bundle", default=None, help="PEM file of extra CA certificates trusted besides the system store"
    )

    prometheus = servers.add_parser(
        "prometheus",
        help="read-only PromQL queries, alerts, rules and targets",
        description="Prometheus MCP server (read-only).",
    )
    _add_http_arguments(prometheus, default_port=8093)
    prometheus.add_argument(
        "--prometheus-url",
        default=os.environ.get(PROMETHEUS_URL_ENV_VAR),
        help=f"base URL of Prometheus, e.g. http://prometheus-operated.monitoring:9090 (or ${PROMETHEUS_URL_ENV_VAR})",
    )
    prometheus.add_argument(
        "--timeout-seconds", type=float, default=30.0, help="Prometheus' own limit on each query (default 30)"
    )
    prometheus.add_argument(
        "--bearer-token-file",
        default=None,
        help="file holding a bearer token for Prometheus (e.g. behind a proxy)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "debug":
        # The SDK logs every stateless request's transport teardown at INFO: noise, not news.
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    from mcp_servers.common import serve

    builders = {
        "netops": _build_netops,
        "kubernetes": _build_kubernetes,
        "kubernetes-actions": _build_kubernetes_actions,
        "prometheus": _build_prometheus,
    }
    server = builders[args.mcp_server](args)
    if server is None:
        return 2
    log.info("serving %s on http://%s:%d%s", server.name, args.host, args.port, args.path)
    serve(server, args.host, args.port, log_level=args.log_level)
    return 0


def _build_netops(args: argparse.Namespace) -> FastMCP | None:
    from mcp_servers.netops.allowlist import ALLOW_ENV_VAR, parse_policy
    from mcp_servers.netops.probes import TrustSettings
    from mcp_servers.netops.server import NetopsSettings, build_server

    entries = [*args.allow, os.environ.get(ALLOW_ENV_VAR, "")]
    try:
        policy = parse_policy(entries)
    except ValueError as error:
        print(f"ai-ops mcp netops: {error}", file=sys.stderr)
        return None
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        print(f"ai-ops mcp netops: CA bundle {args.ca_bundle} does not exist", file=sys.stderr)
        return None
    if policy.restricted:
        log.info("netops allowlist: %s", policy.describe())
    else:
        log.warning("netops has no allowlist: any target except link-local addresses can be checked")
    settings = NetopsSettings(
        policy=policy,
        trust=TrustSettings(ca_bundle_file=args.ca_bundle),
        max_response_bytes=args.max_response_bytes,
    )
    return build_server(settings, host=args.host, path=args.path)


def _build_kubernetes(args: argparse.Namespace) -> FastMCP | None:
    from mcp_servers.kubernetes.cluster import ClusterConfigError, connect
    from mcp_servers.kubernetes.server import KubernetesSettings, build_server

    try:
        cluster = connect(kubeconfig=args.kubeconfig, context=args.context)
    except ClusterConfigError as error:
        print(
            f"ai-ops mcp kubernetes: {error}\n"
            "  Point it at a cluster with --kubeconfig PATH (and --context NAME), or set KUBECONFIG; "
            "in a pod it uses its ServiceAccount.",
            file=sys.stderr,
        )
        return None
    log.info("kubernetes API at %s (%s)", cluster.host, cluster.source)
    settings = KubernetesSettings(max_response_bytes=args.max_response_bytes)
    return build_server(cluster, settings, host=args.host, path=args.path)


def _build_kubernetes_actions(args: argparse.Namespace) -> FastMCP | None:
    from mcp_servers.common import InvalidArgument
    from mcp_servers.kubernetes.cluster import ClusterConfigError
    from mcp_servers.kubernetes_actions.actions import ActionSettings, parse_namespaces
    from mcp_servers.kubernetes_actions.cluster import connect_actions
    from mcp_servers.kubernetes_actions.server import KubernetesActionsSettings, build_server

    try:
        namespaces = parse_namespaces(args.namespaces)
    except InvalidArgument as error:
        print(f"ai-ops mcp kubernetes-actions: --namespaces: {error}", file=sys.stderr)
        return None
    try:
        cluster = connect_actions(kubeconfig=args.kubeconfig, context=args.context)
    except ClusterConfigError as error:
        print(
            f"ai-ops mcp kubernetes-actions: {error}\n"
            "  Point it at a cluster with --kubeconfig PATH (and --context NAME), or set KUBECONFIG; "
            "in a pod it uses its ServiceAccount.",
            file=sys.stderr,
        )
        return None
    log.info("kubernetes API at %s (%s)", cluster.host, cluster.source)
    log.info(
        "actions limited to %s; at most %d replicas, scale step %d",
        "namespaces " + ", ".join(sorted(namespaces)) if namespaces else "what RBAC allows",
        args.max_replicas,
        args.max_scale_step,
    )
    settings = KubernetesActionsSettings(
        actions=ActionSettings(
            max_replicas=args.max_replicas, max_scale_step=args.max_scale_step, namespaces=namespaces
        ),
        max_response_bytes=args.max_response_bytes,
    )
    return build_server(cluster, settings, host=args.host, path=args.path)


def _build_prometheus(args: argparse.Namespace) -> FastMCP | None:
    from urllib.parse import urlparse

    from mcp_servers.prometheus.server import PrometheusSettings, build_server

    url = (args.prometheus_url or "").strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        print(
            "ai-ops mcp prometheus: give Prometheus' base URL with --prometheus-url "
            f"(or ${PROMETHEUS_URL_ENV_VAR}), e.g. http://prometheus-operated.monitoring:9090",
            file=sys.stderr,
        )
        return None
    token = None
    if args.bearer_token_file:
        try:
            with open(args.bearer_token_file) as handle:
                token = handle.read().strip()
        except OSError as error:
            print(f"ai-ops mcp prometheus: cannot read the bearer token file: {error}", file=sys.stderr)
            return None
    log.info("Prometheus at %s", url)
    settings = PrometheusSettings(
        url=url,
        timeout_seconds=args.timeout_seconds,
        bearer_token=token,
        max_response_bytes=args.max_response_bytes,
    )
    return build_server(settings, host=args.host, path=args.path)
