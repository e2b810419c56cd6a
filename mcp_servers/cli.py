"""`ai-ops mcp kubernetes|netops`: run a bundled MCP server on streamable HTTP.

Heavy imports (the MCP SDK, the kubernetes client, uvicorn) stay inside `run` so `ai-ops --help` is fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from mcp_servers.common import DEFAULT_MAX_RESPONSE_BYTES, MIN_MAX_RESPONSE_BYTES

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

log = logging.getLogger("ai_ops.mcp")


def _max_response_bytes(text: str) -> int:
    value = int(text)
    if value < MIN_MAX_RESPONSE_BYTES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MAX_RESPONSE_BYTES}")
    return value


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

    server = _build_netops(args) if args.mcp_server == "netops" else _build_kubernetes(args)
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
