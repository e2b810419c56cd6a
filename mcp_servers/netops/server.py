"""The netops MCP server: a thin FastMCP layer over the checks in this package.

Every tool is read-only, takes a bounded timeout, and answers JSON text capped in size. Refused targets
and unusable arguments raise ToolError (an MCP tool error the model can read); no tool runs commands.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_servers.common import (
    DEFAULT_MAX_RESPONSE_BYTES,
    InvalidArgument,
    add_health_route,
    cap_text,
    to_json,
)
from mcp_servers.netops.allowlist import TargetPolicy, TargetRefused
from mcp_servers.netops.dns_lookup import dns_lookup as run_dns_lookup
from mcp_servers.netops.probes import TrustSettings
from mcp_servers.netops.probes import http_check as run_http_check
from mcp_servers.netops.probes import tcp_check as run_tcp_check
from mcp_servers.netops.probes import tls_certificate as run_tls_certificate
from mcp_servers.tool_server import ToolServer

MAX_TIMEOUT_SECONDS = 30.0
MAX_REDIRECTS = 10

Timeout = Annotated[
    float,
    Field(
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description=f"seconds before giving up (at most {MAX_TIMEOUT_SECONDS:g})",
    ),
]
Port = Annotated[int, Field(ge=1, le=65535)]
CaBundle = Annotated[
    str | None,
    Field(
        description="extra trusted CA certificates as PEM text (for private CAs); the system store is always used"
    ),
]

INSTRUCTIONS = (
    "Network checks from inside the cluster: DNS lookups, TCP reachability, HTTP(S) status and TLS "
    "certificates. Read-only; targets may be limited by an allowlist."
)


@dataclass(frozen=True)
class NetopsSettings:
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    trust: TrustSettings = field(default_factory=TrustSettings)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


async def _answer(settings: NetopsSettings, check: Awaitable[dict[str, Any]]) -> str:
    """Run a check; map our refusals to tool errors; render and cap the result."""
    try:
        result = await check
    except (TargetRefused, InvalidArgument) as error:
        raise ToolError(str(error)) from None
    return cap_text(to_json(result), settings.max_response_bytes)


def build_server(settings: NetopsSettings, *, host: str = "127.0.0.1", path: str = "/mcp") -> FastMCP:
    # Stateless JSON responses: nothing is kept between calls, so any replica can answer any request and a
    # restart never invalidates a client's session.
    server = ToolServer(
        "ai-ops-netops",
        instructions=INSTRUCTIONS,
        host=host,
        streamable_http_path=path,
        stateless_http=True,
        json_response=True,
    )
    read_only = ToolAnnotations(
        readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=True
    )

    @server.tool(annotations=read_only, structured_output=False)
    async def dns_lookup(
        name: Annotated[str, Field(description="the DNS name to look up, e.g. api.example.com")],
        record_type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV"] = "A",
        nameserver: Annotated[
            str | None,
            Field(description="IP address (optionally :port) of a nameserver; default: the system resolver"),
        ] = None,
        timeout_seconds: Timeout = 5.0,
    ) -> str:
        """Look up DNS records of a name (A, AAAA, CNAME, MX, TXT, SRV). Answers the records with their TTL,
        or status NXDOMAIN, or an error when no nameserver answers in time."""
        return await _answer(
            settings, run_dns_lookup(settings.policy, name, record_type, nameserver, timeout_seconds)
        )

    @server.tool(annotations=read_only, structured_output=False)
    async def tcp_check(
        host: Annotated[str, Field(description="host name or IP address")],
        port: Port,
        timeout_seconds: Timeout = 5.0,
    ) -> str:
        """Check whether a TCP port accepts connections, and how long the connection took (latency_ms)."""
        return await _answer(settings, run_tcp_check(settings.policy, host, port, timeout_seconds))

    @server.tool(annotations=read_only, structured_output=False)
    async def http_check(
        url: Annotated[str, Field(description="http:// or https:// URL")],
        method: Literal["GET", "HEAD"] = "GET",
        timeout_seconds: Timeout = 10.0,
        max_redirects: Annotated[int, Field(ge=0, le=MAX_REDIRECTS, description="redirects to follow")] = 5,
        verify_tls: Annotated[bool, Field(description="reject invalid certificates (default true)")] = True,
        ca_bundle_pem: CaBundle = None,
        include_headers: Annotated[
            list[str] | None, Field(description="response header names to show besides the default set")
        ] = None,
    ) -> str:
        """Request a URL and report status code, latency, the redirect chain and selected response headers.
        The response body is not read. Cookies are never shown."""
        return await _answer(
            settings,
            run_http_check(
                settings.policy,
                settings.trust,
                url,
                method=method,
                timeout=timeout_seconds,
                max_redirects=max_redirects,
                verify_tls=verify_tls,
                ca_bundle_pem=ca_bundle_pem,
                headers=include_headers or (),
            ),
        )

    @server.tool(annotations=read_only, structured_output=False)
    async def tls_certificate(
        host: Annotated[str, Field(description="host name or IP address")],
        port: Port = 443,
        server_name: Annotated[
            str | None, Field(description="name to send as SNI and verify against; default: host")
        ] = None,
        timeout_seconds: Timeout = 10.0,
        ca_bundle_pem: CaBundle = None,
    ) -> str:
        """Show the TLS certificate a server presents: subject, SANs, issuer, not-before/not-after, days
        left, and whether the chain and name verify (chain_valid, verification_error)."""
        return await _answer(
            settings,
            run_tls_certificate(
                settings.policy,
                settings.trust,
                host,
                port,
                server_name=server_name,
                timeout=timeout_seconds,
                ca_bundle_pem=ca_bundle_pem,
            ),
        )

    add_health_route(server)
    return server
