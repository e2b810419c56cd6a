"""Which targets the netops server may connect to (pure logic, no I/O).

Entries are host names (`db.example.com`), wildcard domains (`*.example.com`, subdomains only), IP
addresses and CIDR blocks. A target is allowed when its name matches a name entry, or when every address
it resolves to lies in an address entry. With no entries every target is allowed except link-local
addresses: those hold cloud metadata endpoints (169.254.169.254) that hand out credentials, so they need
an explicit entry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_ENV_VAR = "AI_OPS_NETOPS_ALLOW"
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class TargetRefused(Exception):
    """The target is outside the allowlist; the message says which target and what is allowed."""


def parse_ip(text: str) -> IPAddress | None:
    """`text` as an IP address (brackets around IPv6 accepted), or None when it is a name."""
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def normalize_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _valid_host_name(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split("."))


@dataclass(frozen=True)
class TargetPolicy:
    names: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()  # from "*.example.com": matches subdomains of example.com
    networks: tuple[IPNetwork, ...] = ()
    entries: tuple[str, ...] = field(default=(), compare=False)  # as given, for messages

    @property
    def restricted(self) -> bool:
        return bool(self.entries)

    def name_allowed(self, host: str) -> bool:
        name = normalize_host(host)
        if name in self.names:
            return True
        return any(name.endswith("." + domain) for domain in self.domains)

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise TargetRefused unless connecting to `host` at `addresses` is allowed."""
        literal = parse_ip(host)
        candidates = [literal] if literal is not None else list(addresses)
        if not self.restricted:
            link_local = [str(a) for a in candidates if a.is_link_local]
            if link_local:
                raise TargetRefused(
                    f"target {host} ({', '.join(link_local)}) is link-local (cloud metadata endpoints live "
                    f"there); add it to the netops allowlist ({ALLOW_ENV_VAR} or --allow) to check it"
                )
            return
        if literal is None and self.name_allowed(host):
            return
        if candidates and all(self.address_allowed(a) for a in candidates):
            return
        resolved = f" (resolves to {', '.join(str(a) for a in candidates)})" if literal is None else ""
        raise TargetRefused(
            f"target {host}{resolved} is not in the netops allowlist; allowed: {self.describe()}"
        )

    def describe(self) -> str:
        shown = ", ".join(self.entries[:20])
        return shown + (f" and {len(self.entries) - 20} more" if len(self.entries) > 20 else "")


def split_entries(values: Iterable[str]) -> list[str]:
    """Entries from flags and the env var: each value may hold several, separated by commas or spaces."""
    return [part for value in values for part in re.split(r"[,\s]+", value) if part]


def parse_policy(values: Iterable[str]) -> TargetPolicy:
    """A policy from allowlist entries; ValueError names the first entry that is none of the forms."""
    names: set[str] = set()
    domains: set[str] = set()
    networks: list[IPNetwork] = []
    entries = split_entries(values)
    for entry in entries:
        if "/" in entry or parse_ip(entry) is not None:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError as error:
                raise ValueError(
                    f"allowlist entry {entry!r} is not a valid IP address or CIDR: {error}"
                ) from None
            continue
        name = normalize_host(entry)
        if name.startswith("*."):
            if not _valid_host_name(name[2:]):
                raise ValueError(f"allowlist entry {entry!r} is not a valid wildcard domain")
            domains.add(name[2:])
        elif _valid_host_name(name):
            names.add(name)
        else:
            raise ValueError(
                f"allowlist entry {entry!r} is not a host name, *.domain, IP address or CIDR block"
            )
    return TargetPolicy(
        names=frozenset(names), domains=frozenset(domains), networks=tuple(networks), entries=tuple(entries)
    )
