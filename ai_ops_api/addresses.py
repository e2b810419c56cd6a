"""Which network addresses ai-ops may connect to on a user's behalf (SSRF policy; stdlib only).

One policy for the operator's URL checks, the chat's MCP client and the netops probes. Refused: the
unspecified address (`0.0.0.0/8`, `::`: connecting to it reaches this host), loopback (unless allowed),
link-local (`169.254.0.0/16`, `fe80::/10`), multicast and broadcast, and the cloud metadata endpoints,
which hand out credentials. Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: in-cluster
services live there.

Every literal form a resolver or URL parser accepts is understood: `2852039166`, `0xa9fea9fe`,
`0251.0376.0251.0376`, `169.254.43518`, `127.1`, `[fe80::1%eth0]`, and IPv6 addresses that carry an IPv4
address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and
`64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo) are judged by the IPv4 address they reach as well.

A name is decided only after it is resolved: `resolve_and_check` resolves it once and returns the checked
addresses, and the caller connects to those, so an answer that changes between a check and a second
lookup (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The addresses of cloud metadata services, with who serves there (for messages).
METADATA_ADDRESSES: dict[IPAddress, str] = {
    ipaddress.ip_address("169.254.169.254"): "AWS, GCP, Azure, DigitalOcean, OpenStack, Oracle, Hetzner",
    ipaddress.ip_address("fd00:ec2::254"): "AWS IPv6",
    # GCP's metadata server for IPv6-only and dual-stack VMs (metadata.google.internal there).
    ipaddress.ip_address("fd20:ce::254"): "GCP IPv6",
    ipaddress.ip_address("168.63.129.16"): "Azure WireServer",
    ipaddress.ip_address("100.100.100.200"): "Alibaba Cloud",
    ipaddress.ip_address("192.0.0.192"): "Oracle Cloud",
}
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "metadata.packet.net",
    }
)
# Names and literal addresses together, as the operator's URL check has always used them.
METADATA_HOSTS = METADATA_NAMES | frozenset(str(address) for address in METADATA_ADDRESSES)

LOOPBACK = "a loopback address (allowed only with AI_OPS_ALLOW_LOOPBACK)"
_RULES: tuple[tuple[IPNetwork, str, bool], ...] = (
    # (network, what it is, whether allow_loopback lifts the refusal)
    (
        ipaddress.ip_network("0.0.0.0/8"),
        "the unspecified address (connecting to it reaches this host)",
        False,
    ),
    (ipaddress.ip_network("::/128"), "the unspecified address (connecting to it reaches this host)", False),
    (ipaddress.ip_network("127.0.0.0/8"), LOOPBACK, True),
    (ipaddress.ip_network("::1/128"), LOOPBACK, True),
    (
        ipaddress.ip_network("169.254.0.0/16"),
        "a link-local address (cloud metadata and similar endpoints live there)",
        False,
    ),
    (
        ipaddress.ip_network("fe80::/10"),
        "a link-local address (cloud metadata and similar endpoints live there)",
        False,
    ),
    (ipaddress.ip_network("224.0.0.0/4"), "a multicast address", False),
    (ipaddress.ip_network("ff00::/8"), "a multicast address", False),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address", False),
)

_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_PART = re.compile(r"^(0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$")


class AddressRefused(Exception):
    """Connecting to a host is refused by the address policy; the message names host, address and why."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


# Raises (AddressRefused or the caller's own exception) to refuse `host` at the resolved addresses.
ExtraCheck = Callable[[str, Sequence[IPAddress]], None]
# True for an address the caller explicitly allows although the policy refuses it (an allowlist entry).
Permit = Callable[[IPAddress], bool]


def parse_ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address in any literal form resolvers accept, or None when it is a name."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])  # without the zone (`%eth0`, `%25eth0`)
        except ValueError:
            return None
    return _parse_ipv4(text.removesuffix("."))


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """inet_aton's forms: 1 to 4 parts, each decimal, 0x-hex or 0-octal; the last part fills the rest."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(part) for part in parts):
        return None
    values = [
        int(part[2:] or "0", 16) if part.startswith("0x") else int(part, 8 if part[0] == "0" else 10)
        for part in parts
    ]
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address reaches through a translation mechanism, with its name."""
    number = int(address)
    found: list[tuple[str, int]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", int(address.ipv4_mapped)))
    elif address in _IPV4_TRANSLATED:
        found.append(("IPv4-translated", number & 0xFFFFFFFF))
    elif address in _IPV4_COMPATIBLE and number > 1:
        found.append(("IPv4-compatible", number))
    elif address in _NAT64_WELL_KNOWN:
        found.append(("NAT64", number & 0xFFFFFFFF))
    elif address in _NAT64_LOCAL:
        # RFC 6052: where the IPv4 address sits depends on the prefix length the operator chose (48 to 96
        # bits; bits 64-71 stay zero), so every position is judged. A position holding 0.x.x.x is one not in
        # use (the zero bits of another layout), unless every position does.
        positions = [
            ((number >> 64) & 0xFFFF) << 16 | (number >> 40) & 0xFFFF,
            ((number >> 64) & 0xFF) << 24 | (number >> 32) & 0xFFFFFF,
            (number >> 24) & 0xFFFFFFFF,
            number & 0xFFFFFFFF,
        ]
        used = [value for value in dict.fromkeys(positions) if value >= 1 << 24] or [positions[-1]]
        found.extend(("NAT64", value) for value in used)
    elif address.sixtofour is not None:
        found.append(("6to4", int(address.sixtofour)))
    elif address.teredo is not None:
        server, client = address.teredo
        found.extend([("Teredo", int(server)), ("Teredo", int(client))])
    return [(kind, ipaddress.IPv4Address(value)) for kind, value in found]


def _what_it_is(address: IPAddress, allow_loopback: bool) -> str | None:
    """What makes `address` itself refused (a noun phrase), or None."""
    served_by = METADATA_ADDRESSES.get(address)
    if served_by is not None:
        return f"a cloud metadata endpoint ({served_by})"
    for network, what, lifted_by_loopback in _RULES:
        if address.version == network.version and address in network:
            return None if lifted_by_loopback and allow_loopback else what
    return None


def why_refused(address: IPAddress, allow_loopback: bool) -> str | None:
    """What makes connecting to `address` refused (a noun phrase such as "a link-local address"), or
    None. An IPv6 address that reaches a refused IPv4 address is named with the mechanism."""
    what = _what_it_is(address, allow_loopback)
    if what is not None:
        return what
    if isinstance(address, ipaddress.IPv6Address):
        for kind, ipv4 in embedded_ipv4(address):
            what = _what_it_is(ipv4, allow_loopback)
            if what is not None:
                return f"{kind} IPv6 for {ipv4}, {what}"
    return None


def ip_refusal(address: IPAddress, allow_loopback: bool, written: str | None = None) -> str | None:
    """Why connecting to the literal `address` is refused, or None. `written` is how the caller wrote it
    (`2852039166`), so that the message shows both the form asked for and the address it is."""
    what = why_refused(address, allow_loopback)
    if what is None:
        return None
    if written is None or written == str(address) or address.version == 6:
        # An IPv6 address reads the same however it is written; an IPv4 one in an unusual form is shown
        # with its dotted form, the address it really is.
        return f"{written or address} is {what}"
    return f"{written} is {address}, {what}"


def refused_network(network: IPNetwork, allow_loopback: bool) -> str | None:
    """What a whole network is when every address in it is refused (an allowlist entry naming exactly
    refused addresses is a deliberate exception; `0.0.0.0/0` is not), else None."""
    for address, served_by in METADATA_ADDRESSES.items():
        if network.version == address.version and network.num_addresses == 1 and address in network:
            return f"a cloud metadata endpoint ({served_by})"
    for rule, what, lifted_by_loopback in _RULES:
        if network.version == rule.version and network.subnet_of(rule):  # type: ignore[arg-type]
            return None if lifted_by_loopback and allow_loopback else what
    return None


def _normalize_name(host: str) -> str:
    return host.strip().lower().rstrip(".")


def host_refusal(host: str, allow_loopback: bool) -> str | None:
    """Why `host` (a name or any literal address form) is refused before resolution, or None. A name
    that is not a metadata or localhost name is decided only once it is resolved (resolve_and_check)."""
    name = _normalize_name(host)
    if not name:
        return "no host given"
    literal = parse_ip_literal(name)
    if literal is not None:
        return ip_refusal(literal, allow_loopback, written=name.strip("[]"))
    if name in METADATA_NAMES:
        return f"{name} is a cloud metadata endpoint"
    if (name == "localhost" or name.endswith(".localhost")) and not allow_loopback:
        return f"{name} is {LOOPBACK}"
    return None


def url_refusal(url: str, allow_loopback: bool) -> str | None:
    """Why a URL may not be contacted, or None. Literal addresses (every form) and metadata names are
    decided here; other names are resolved and checked when they are contacted."""
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
    except ValueError as error:
        return f"URL is not valid: {error}"
    if parsed.scheme not in ("http", "https"):
        return f"URL scheme {parsed.scheme!r} is not allowed (use http or https)"
    if not host:
        return "URL has no host"
    return host_refusal(host, allow_loopback)


def address_refusal(host: str, allow_loopback: bool) -> str | None:
    """Why a literal IP address (any form) may not be contacted, or None (also None for names)."""
    literal = parse_ip_literal(host)
    if literal is None:
        return None
    return ip_refusal(literal, allow_loopback, written=host.strip().lower().strip("[]"))


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host` in resolver order without duplicates: itself when it is a literal, else one
    lookup through the event loop's getaddrinfo. OSError (socket.gaierror) when it cannot be resolved."""
    literal = parse_ip_literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = parse_ip_literal(str(info[4][0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IP address")
    return addresses


def check_addresses(
    host: str, addresses: Sequence[IPAddress], *, allow_loopback: bool, permit: Permit | None = None
) -> None:
    """Raise AddressRefused when any address of `host` is refused (and not explicitly permitted)."""
    literal = parse_ip_literal(host)
    for address in addresses:
        if permit is not None and permit(address):
            continue
        if address == literal:
            reason = ip_refusal(address, allow_loopback, written=host.strip().lower().strip("[]"))
        else:
            what = why_refused(address, allow_loopback)
            reason = None if what is None else f"{host} resolves to {address}, {what}"
        if reason is not None:
            raise AddressRefused(host, reason)


async def resolve_and_check(
    host: str,
    port: int,
    *,
    allow_loopback: bool = False,
    extra_check: ExtraCheck | None = None,
    permit: Permit | None = None,
) -> list[IPAddress]:
    """Resolve `host` once, refuse it when any address is refused, and return the addresses to connect
    to. Connect to these, never to the name again. `extra_check(host, addresses)` runs last (an
    allowlist) and raises to refuse; `permit` exempts explicitly allowed addresses from the policy."""
    literal = parse_ip_literal(host)
    if literal is None:
        name = _normalize_name(host)
        if name in METADATA_NAMES:
            raise AddressRefused(host, f"{name} is a cloud metadata endpoint")
    addresses = await resolve(host, port)
    check_addresses(host, addresses, allow_loopback=allow_loopback, permit=permit)
    if extra_check is not None:
        extra_check(host, addresses)
    return addresses
