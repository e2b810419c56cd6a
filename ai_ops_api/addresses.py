"""Which addresses an MCP server URL may point at: the policy the operator applies before it probes a
server or lists it in the agent config."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

# Addresses an MCP server URL may never point at: link-local (incl. cloud metadata 169.254.169.254 and
# fd00:ec2::254) and the metadata names/addresses of the big clouds.
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "169.254.169.254", "100.100.100.200", "fd00:ec2::254"}
)


def url_refusal(url: str, allow_loopback: bool) -> str | None:
    """Why an MCP server URL is not allowed, or None. Literal addresses and well-known metadata names only:
    names are resolved (and checked again) when the server is probed."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return f"URL scheme {parsed.scheme!r} is not allowed (use http or https)"
    host = (parsed.hostname or "").lower().rstrip(".")
    if not host:
        return "URL has no host"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata endpoint"
    if host == "localhost" or host.endswith(".localhost"):
        return (
            None
            if allow_loopback
            else f"{host} is a loopback address (allowed only with AI_OPS_ALLOW_LOOPBACK)"
        )
    return address_refusal(host, allow_loopback)


def address_refusal(host: str, allow_loopback: bool) -> str | None:
    """Why a literal IP address may not be contacted, or None (also None for names)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_link_local:
        return f"{host} is a link-local address (cloud metadata and similar endpoints are refused)"
    if address.is_loopback and not allow_loopback:
        return f"{host} is a loopback address (allowed only with AI_OPS_ALLOW_LOOPBACK)"
    if address.is_unspecified or address.is_multicast:
        return f"{host} is not a unicast address"
    return None
