"""DNS lookups with dnspython: record formatting (pure), the hosts file, and the query itself."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdata import Rdata

from mcp_servers.common import InvalidArgument
from mcp_servers.netops.allowlist import IPAddress, TargetPolicy, parse_ip

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV"]
RECORD_TYPES: tuple[str, ...] = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV")
HOSTS_FILE = Path("/etc/hosts")
# A hosts file is a few lines; anything far larger is not one worth reading on every lookup.
MAX_HOSTS_FILE_BYTES = 1_000_000


def hosts_addresses(text: str, name: str, record_type: str) -> list[str]:
    """The addresses a hosts file gives `name` for an A or AAAA lookup, in file order (empty for other
    types and unknown names). Names compare case-insensitively, without the root dot."""
    if record_type not in ("A", "AAAA"):
        return []
    wanted = name.rstrip(".").lower()
    version = 4 if record_type == "A" else 6
    found: list[str] = []
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2 or wanted not in (n.rstrip(".").lower() for n in fields[1:]):
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if address.version == version and str(address) not in found:
            found.append(str(address))
    return found


def _read_hosts_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_HOSTS_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def parse_nameserver(text: str) -> tuple[IPAddress, int]:
    """`1.2.3.4`, `1.2.3.4:5353`, `::1` or `[::1]:5353` as (address, port); names are refused."""
    text = text.strip()
    port = 53
    host = text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _parse_port(rest[1:], text)
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has several colons)
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, text)
    address = parse_ip(host)
    if address is None:
        raise InvalidArgument(f"nameserver {text!r} must be an IP address, optionally with :port")
    return address, port


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgument(f"nameserver {whole!r} has an invalid port")
    return int(text)


def format_record(rdata: Rdata) -> Any:
    """One answer record in plain values: an address or name string, or a dict for MX and SRV."""
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.CNAME:
        return rdata.target.to_text()  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.MX:
        return {"preference": rdata.preference, "exchange": rdata.exchange.to_text()}  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.TXT:
        # A TXT record is several character-strings that readers concatenate (SPF, DKIM split long values).
        return b"".join(rdata.strings).decode("utf-8", errors="replace")  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.SRV:
        return {
            "priority": rdata.priority,  # type: ignore[attr-defined]
            "weight": rdata.weight,  # type: ignore[attr-defined]
            "port": rdata.port,  # type: ignore[attr-defined]
            "target": rdata.target.to_text(),  # type: ignore[attr-defined]
        }
    return rdata.to_text()


def summarize_answer(answer: dns.resolver.Answer) -> dict[str, Any]:
    rrset = answer.rrset
    records = [format_record(rdata) for rdata in rrset] if rrset is not None else []
    result: dict[str, Any] = {
        "status": "NOERROR",
        "records": records,
        "ttl": rrset.ttl if rrset is not None else None,
    }
    if answer.canonical_name != answer.qname:
        result["canonical_name"] = answer.canonical_name.to_text()
    if not records:
        result["note"] = f"the name exists but has no {dns.rdatatype.to_text(answer.rdtype)} records"
    return result


async def dns_lookup(
    policy: TargetPolicy, name: str, record_type: str, nameserver: str | None, timeout: float
) -> dict[str, Any]:
    """Resolve `name`; NXDOMAIN, timeouts and server failures are results with `error`, not exceptions.

    The allowlist governs the servers this process connects to, so a given `nameserver` must be allowed;
    the system resolver always is. Like the system's own name lookup (``files`` before ``dns``), the
    system resolver answers A and AAAA of names in the hosts file from it (dnspython never reads it).
    """
    if record_type not in RECORD_TYPES:
        raise InvalidArgument(f"record_type must be one of {', '.join(RECORD_TYPES)}")
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as error:
        raise InvalidArgument(f"{name!r} is not a valid DNS name: {error}") from None
    result: dict[str, Any] = {"name": qname.to_text(), "type": record_type}
    if nameserver:
        address, port = parse_nameserver(nameserver)
        policy.check(str(address), [address])
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [str(address)]
        resolver.port = port
        result["nameserver"] = f"{address}:{port}" if port != 53 else str(address)
    else:
        from_file = hosts_addresses(_read_hosts_file(HOSTS_FILE), result["name"], record_type)
        if from_file:
            return {
                **result,
                "ok": True,
                "status": "NOERROR",
                "records": from_file,
                "ttl": None,
                "source": "hosts file",
            }
        try:
            resolver = dns.asyncresolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration as error:
            return {**result, "ok": False, "error": f"no system resolver configured: {error}"}
        result["nameserver"] = "system (" + ", ".join(str(ns) for ns in resolver.nameservers) + ")"
    resolver.timeout = timeout
    resolver.lifetime = timeout
    try:
        answer = await resolver.resolve(qname, record_type, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return {
            **result,
            "ok": True,
            "status": "NXDOMAIN",
            "records": [],
            "note": "the name does not exist",
            "source": "dns",
        }
    except dns.resolver.LifetimeTimeout:
        return {**result, "ok": False, "error": f"no answer within {timeout:g}s"}
    except dns.resolver.NoNameservers as error:
        return {**result, "ok": False, "error": f"every nameserver failed: {error}"}
    except dns.exception.DNSException as error:
        return {**result, "ok": False, "error": f"{type(error).__name__}: {error}"}
    return {**result, "ok": True, **summarize_answer(answer), "source": "dns"}
