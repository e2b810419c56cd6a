"""Which targets the netops server may connect to (pure logic, no I/O).

Every target first passes the shared address policy (ai_ops_api.addresses): link-local, cloud metadata
(169.254.169.254, fd00:ec2::254, fd20:ce::254, 100.100.100.200, ...), unspecified, multicast and
broadcast addresses, in any literal form and behind IPv4-mapped, NAT64, 6to4 or Teredo IPv6, are
refused. Loopback is allowed: it is this pod. An address entry that names only refused addresses (`169.254.169.254`,
`169.254.0.0/16`) is the one deliberate exception; a wide entry (`0.0.0.0/0`) or a name entry is not.

Allowlist entries are host names (`db.example.com`), wildcard domains (`*.example.com`, subdomains only),
IP addresses and CIDR blocks. A target is allowed when its name matches a name entry, or when every
address it resolves to lies in an address entry. With no entries every target the policy accepts is
allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ai_ops_api.addresses import (
    AddressRefused,
    IPAddress,
    IPNetwork,
    check_addresses,
    parse_ip_literal,
    refused_network,
)

# The netops pod's own loopback holds nothing but this server; checking it is harmless and useful.
ALLOW_LOOPBACK = True

ALLOW_ENV_VAR = "AI_OPS_NETOPS_ALLOW"
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class TargetRefused(Exception):
    """The target is outside the allowlist; the message says which target and what is allowed."""


def parse_ip(text: str) -> IPAddress | None:
    """`text` as an IP address in standard notation (brackets around IPv6 accepted), or None. For
    allowlist entries and nameservers; targets accept every literal form (parse_ip_literal)."""
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

    def permits(self, address: IPAddress) -> bool:
        """Whether an address entry lists `address` deliberately although the policy refuses it: the
        entry covers it and holds refused addresses only."""
        return any(
            address.version == network.version
            and address in network
            and refused_network(network, ALLOW_LOOPBACK) is not None
            for network in self.networks
        )

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise TargetRefused unless connecting to `host` at `addresses` is allowed (policy, then list)."""
        literal = parse_ip_literal(host)
        candidates = [literal] if literal is not None else list(addresses)
        try:
            check_addresses(host, candidates, allow_loopback=ALLOW_LOOPBACK, permit=self.permits)
        except AddressRefused as error:
            raise refused_by_policy(error) from None
        self.check_allowlist(host, candidates)

    def check_allowlist(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise TargetRefused when the allowlist has entries and none allows `host` at `addresses`."""
        if not self.restricted:
            return
        literal = parse_ip_literal(host)
        candidates = [literal] if literal is not None else list(addresses)
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


def refused_by_policy(error: AddressRefused) -> TargetRefused:
    return TargetRefused(
        f"target refused: {error.reason}; only an allowlist entry naming exactly such addresses "
        f"({ALLOW_ENV_VAR} or --allow) lets netops check it"
    )


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
