"""The address policy (ai_ops_api.addresses): every literal host form, refused and allowed, without I/O;
resolve_and_check with a stubbed getaddrinfo (one lookup, checked answers returned)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ai_ops_api.addresses import (
    METADATA_HOSTS,
    AddressRefused,
    address_refusal,
    embedded_ipv4,
    host_refusal,
    parse_ip_literal,
    refused_network,
    resolve_and_check,
    url_refusal,
)

METADATA = "cloud metadata endpoint"
LINK_LOCAL = "link-local"
LOOPBACK = "loopback"
UNSPECIFIED = "unspecified"

# (host as written, the address it is or None for a name, what the refusal must say or None when allowed)
FORMS: list[tuple[str, str | None, str | None]] = [
    # cloud metadata, every IPv4 spelling of 169.254.169.254
    ("169.254.169.254", "169.254.169.254", "169.254.169.254 is a cloud metadata endpoint"),
    ("2852039166", "169.254.169.254", "2852039166 is 169.254.169.254, a cloud metadata endpoint"),
    ("0xa9fea9fe", "169.254.169.254", "0xa9fea9fe is 169.254.169.254, a " + METADATA),
    ("0XA9FEA9FE", "169.254.169.254", "is 169.254.169.254, a " + METADATA),
    ("0251.0376.0251.0376", "169.254.169.254", "0251.0376.0251.0376 is 169.254.169.254, a " + METADATA),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254", METADATA),
    ("169.254.43518", "169.254.169.254", "169.254.43518 is 169.254.169.254, a " + METADATA),
    ("169.16689662", "169.254.169.254", METADATA),
    ("0xa9.254.0251.254", "169.254.169.254", METADATA),
    ("169.254.169.254.", "169.254.169.254", METADATA),
    ("[169.254.169.254]", "169.254.169.254", METADATA),
    # other clouds
    ("100.100.100.200", "100.100.100.200", "100.100.100.200 is a cloud metadata endpoint (Alibaba Cloud)"),
    ("168.63.129.16", "168.63.129.16", "Azure WireServer"),
    ("192.0.0.192", "192.0.0.192", "Oracle Cloud"),
    ("fd00:ec2::254", "fd00:ec2::254", "fd00:ec2::254 is a cloud metadata endpoint (AWS IPv6)"),
    ("[FD00:EC2:0::254]", "fd00:ec2::254", "AWS IPv6"),
    ("fd20:ce::254", "fd20:ce::254", "fd20:ce::254 is a cloud metadata endpoint (GCP IPv6)"),
    ("[FD20:00CE::0254]", "fd20:ce::254", "GCP IPv6"),
    # IPv6 carrying a refused IPv4 address
    (
        "::ffff:169.254.169.254",
        "::ffff:169.254.169.254",
        "IPv4-mapped IPv6 for 169.254.169.254, a " + METADATA,
    ),
    ("[::ffff:a9fe:a9fe]", "::ffff:169.254.169.254", "IPv4-mapped IPv6 for 169.254.169.254"),
    ("::169.254.169.254", "::169.254.169.254", "IPv4-compatible IPv6 for 169.254.169.254"),
    ("::ffff:0:169.254.169.254", "::ffff:0:a9fe:a9fe", "IPv4-translated IPv6 for 169.254.169.254"),
    ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "NAT64 IPv6 for 169.254.169.254, a " + METADATA),
    ("64:ff9b::169.254.169.254", "64:ff9b::a9fe:a9fe", "NAT64 IPv6 for 169.254.169.254"),
    ("64:ff9b:1::a9fe:a9fe", "64:ff9b:1::a9fe:a9fe", "NAT64 IPv6 for 169.254.169.254"),  # /96 layout
    ("64:ff9b:1:a9fe:a9:fe00::", "64:ff9b:1:a9fe:a9:fe00::", "NAT64 IPv6 for 169.254.169.254"),  # /48
    ("2002:a9fe:a9fe::1", "2002:a9fe:a9fe::1", "6to4 IPv6 for 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:5601:5601", None, "Teredo IPv6 for 169.254.169.254"),
    ("::ffff:100.100.100.200", "::ffff:100.100.100.200", "IPv4-mapped IPv6 for 100.100.100.200"),
    ("64:ff9b::a9fe:0101", "64:ff9b::a9fe:101", "NAT64 IPv6 for 169.254.1.1, a " + LINK_LOCAL),
    # unspecified, link-local, multicast, broadcast
    ("0.0.0.0", "0.0.0.0", "0.0.0.0 is the " + UNSPECIFIED),
    ("0", "0.0.0.0", "0 is 0.0.0.0, the " + UNSPECIFIED),
    ("0.1.2.3", "0.1.2.3", UNSPECIFIED),
    ("::", "::", ":: is the " + UNSPECIFIED),
    ("::ffff:0.0.0.0", "::ffff:0.0.0.0", "IPv4-mapped IPv6 for 0.0.0.0, the " + UNSPECIFIED),
    ("169.254.10.10", "169.254.10.10", "169.254.10.10 is a " + LINK_LOCAL),
    ("fe80::1", "fe80::1", "fe80::1 is a " + LINK_LOCAL),
    ("[fe80::1%eth0]", "fe80::1", LINK_LOCAL),
    ("fe80::1%25eth0", "fe80::1", LINK_LOCAL),
    ("224.0.0.1", "224.0.0.1", "multicast"),
    ("ff02::1", "ff02::1", "multicast"),
    ("255.255.255.255", "255.255.255.255", "broadcast"),
    ("4294967295", "255.255.255.255", "4294967295 is 255.255.255.255, the broadcast address"),
    # loopback: refused unless allowed (see test_loopback_is_refused_unless_allowed)
    ("127.0.0.1", "127.0.0.1", LOOPBACK),
    ("127.1", "127.0.0.1", "127.1 is 127.0.0.1, a " + LOOPBACK),
    ("2130706433", "127.0.0.1", LOOPBACK),
    ("0x7f000001", "127.0.0.1", LOOPBACK),
    ("::1", "::1", LOOPBACK),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1", "IPv4-mapped IPv6 for 127.0.0.1, a " + LOOPBACK),
    # names: metadata names refused at once; others are decided after resolution
    ("metadata.google.internal", None, "metadata.google.internal is a " + METADATA),
    ("METADATA.google.internal.", None, METADATA),
    ("metadata", None, METADATA),
    ("instance-data", None, METADATA),
    ("metadata.azure.com", None, METADATA),
    ("localhost", None, LOOPBACK),
    ("api.localhost", None, LOOPBACK),
    # allowed: public, private (in-cluster services), CGNAT other than Alibaba's, ordinary names
    ("93.184.216.34", "93.184.216.34", None),
    ("1572395042", "93.184.216.34", None),
    ("10.0.0.7", "10.0.0.7", None),
    ("012.0.0.07", "10.0.0.7", None),
    ("172.16.3.4", "172.16.3.4", None),
    ("192.168.1.1", "192.168.1.1", None),
    ("100.64.0.1", "100.64.0.1", None),
    ("169.255.0.1", "169.255.0.1", None),
    ("fd00::1", "fd00::1", None),
    ("fd00:ec2::253", "fd00:ec2::253", None),
    ("fd20:ce::253", "fd20:ce::253", None),
    ("2001:db8::1", "2001:db8::1", None),
    ("::ffff:93.184.216.34", "::ffff:93.184.216.34", None),
    ("64:ff9b::808:808", "64:ff9b::808:808", None),
    ("64:ff9b:1::808:808", "64:ff9b:1::808:808", None),
    ("2002:5db8:d822::1", "2002:5db8:d822::1", None),
    ("k8s-mcp.tools.svc", None, None),
    ("tools.example", None, None),
    ("169.254.169.254.nip.io", None, None),  # a name: decided once it is resolved
    ("1.2.3.4.5", None, None),
    ("0x1g", None, None),
    ("08.1.1.1", None, None),  # 08 is no octal number: a (strange) name, not an address
    ("256.1.1.1", None, None),
]


def test_the_table_is_large_enough() -> None:
    assert len(FORMS) >= 40
    assert sum(1 for _, _, refusal in FORMS if refusal is None) >= 15


@pytest.mark.parametrize(("host", "address", "refusal"), FORMS, ids=[form[0] for form in FORMS])
def test_host_forms(host: str, address: str | None, refusal: str | None) -> None:
    parsed = parse_ip_literal(host)
    if address is not None:
        assert parsed == ipaddress.ip_address(address)
    elif "teredo" not in (refusal or "").lower():
        assert parsed is None
    reason = host_refusal(host, allow_loopback=False)
    if refusal is None:
        assert reason is None
    else:
        assert reason is not None and refusal in reason
    in_url = url_refusal(f"http://{_in_url(host)}/x", allow_loopback=False)
    # urllib refuses a bracketed IPv4 address outright; that is a refusal too.
    assert in_url == reason or (
        reason is not None and in_url == "URL is not valid: An IPv4 address cannot be in brackets"
    )


def _in_url(host: str) -> str:
    if host.startswith("[") or ":" not in host:
        return host
    return f"[{host.replace('%', '%25', 1) if '%25' not in host else host}]"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "2130706433", "::1", "::ffff:127.0.0.1", "localhost", "64:ff9b::7f00:1"]
)
def test_loopback_is_refused_unless_allowed(host: str) -> None:
    reason = host_refusal(host, allow_loopback=False)
    assert reason is not None and "AI_OPS_ALLOW_LOOPBACK" in reason
    assert host_refusal(host, allow_loopback=True) is None


def test_allowing_loopback_lifts_nothing_else() -> None:
    for host in (
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "0.0.0.0",
        "fe80::1",
        "fd00:ec2::254",
        "fd20:ce::254",
    ):
        assert host_refusal(host, allow_loopback=True) is not None


def test_operator_compatible_exports() -> None:
    assert url_refusal("http://2852039166/", allow_loopback=False) == (
        "2852039166 is 169.254.169.254, a cloud metadata endpoint "
        "(AWS, GCP, Azure, DigitalOcean, OpenStack, Oracle, Hetzner)"
    )
    assert url_refusal("http://0xa9fea9fe:80/latest/meta-data/", allow_loopback=True) is not None
    assert url_refusal("ftp://tools/mcp", allow_loopback=False) == (
        "URL scheme 'ftp' is not allowed (use http or https)"
    )
    assert url_refusal("http:///mcp", allow_loopback=False) == "URL has no host"
    assert url_refusal("http://[::1/mcp", allow_loopback=True) is not None  # unbalanced bracket
    assert url_refusal("https://10.0.0.7/mcp", allow_loopback=False) is None
    assert address_refusal("tools.example", allow_loopback=False) is None  # names: not decided here
    assert address_refusal("metadata.google.internal", allow_loopback=False) is None
    assert address_refusal("0251.0376.0251.0376", allow_loopback=False) is not None
    assert {"metadata.google.internal", "metadata", "169.254.169.254", "fd00:ec2::254"} <= METADATA_HOSTS
    assert "fd20:ce::254" in METADATA_HOSTS
    assert "100.100.100.200" in METADATA_HOSTS


def test_embedded_ipv4_names_the_mechanism() -> None:
    assert embedded_ipv4(ipaddress.IPv6Address("2001:db8::1")) == []
    assert embedded_ipv4(ipaddress.IPv6Address("::1")) == []  # loopback, not IPv4-compatible 0.0.0.1
    [(kind, ipv4)] = embedded_ipv4(ipaddress.IPv6Address("64:ff9b::c000:201"))
    assert (kind, str(ipv4)) == ("NAT64", "192.0.2.1")


@pytest.mark.parametrize(
    ("network", "refused"),
    [
        ("169.254.169.254/32", True),
        ("169.254.0.0/16", True),
        ("fd00:ec2::254/128", True),
        ("fd20:ce::254/128", True),
        ("100.100.100.200/32", True),
        ("0.0.0.0/0", False),  # holds refused addresses but is not made of them
        ("100.64.0.0/10", False),
        ("10.0.0.0/8", False),
        ("fd00:ec2::/32", False),
    ],
)
def test_refused_network_means_made_only_of_refused_addresses(network: str, refused: bool) -> None:
    assert (refused_network(ipaddress.ip_network(network), allow_loopback=True) is not None) is refused


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """getaddrinfo of the running loop answering from `answers`, counting its calls (no DNS at all)."""
    state: dict[str, Any] = {"answers": {}, "calls": []}

    async def getaddrinfo(self: Any, host: str, port: int, **kwargs: Any) -> list[Any]:
        state["calls"].append(host)
        answers = state["answers"].get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        sequence = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in sequence
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    yield state


async def test_resolve_and_check_resolves_once_and_returns_the_checked_addresses(
    lookups: dict[str, Any],
) -> None:
    # A rebinding answer: allowed first, metadata afterwards. Only the first answer is ever used.
    lookups["answers"]["svc.test"] = [["10.0.0.7", "10.0.0.8", "10.0.0.7"], ["169.254.169.254"]]
    addresses = await resolve_and_check("svc.test", 80)
    assert addresses == [ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("10.0.0.8")]
    assert lookups["calls"] == ["svc.test"]


async def test_resolve_and_check_refuses_any_refused_answer(lookups: dict[str, Any]) -> None:
    lookups["answers"]["mixed.test"] = [["10.0.0.7", "::ffff:169.254.169.254"]]
    with pytest.raises(AddressRefused) as refused:
        await resolve_and_check("mixed.test", 80)
    assert refused.value.reason == (
        "mixed.test resolves to ::ffff:a9fe:a9fe, IPv4-mapped IPv6 for 169.254.169.254, "
        "a cloud metadata endpoint (AWS, GCP, Azure, DigitalOcean, OpenStack, Oracle, Hetzner)"
    )
    lookups["answers"]["self.test"] = [["127.0.0.1"]]
    with pytest.raises(AddressRefused, match=r"self\.test resolves to 127\.0\.0\.1, a loopback"):
        await resolve_and_check("self.test", 80)
    assert await resolve_and_check("self.test", 80, allow_loopback=True) == [
        ipaddress.ip_address("127.0.0.1")
    ]


async def test_resolve_and_check_never_looks_up_literals_or_metadata_names(lookups: dict[str, Any]) -> None:
    with pytest.raises(AddressRefused, match=r"2852039166 is 169\.254\.169\.254"):
        await resolve_and_check("2852039166", 80)
    with pytest.raises(AddressRefused, match=r"metadata\.google\.internal is a cloud metadata endpoint"):
        await resolve_and_check("metadata.google.internal", 80)
    assert await resolve_and_check("0x0a000007", 80) == [ipaddress.ip_address("10.0.0.7")]
    assert lookups["calls"] == []


async def test_extra_check_and_permit(lookups: dict[str, Any]) -> None:
    lookups["answers"]["svc.test"] = [["10.0.0.7"]]
    seen: list[tuple[str, list[str]]] = []

    def extra_check(host: str, addresses: Any) -> None:
        seen.append((host, [str(a) for a in addresses]))
        raise PermissionError("not on the list")

    with pytest.raises(PermissionError, match="not on the list"):
        await resolve_and_check("svc.test", 80, extra_check=extra_check)
    assert seen == [("svc.test", ["10.0.0.7"])]
    metadata = ipaddress.ip_address("169.254.169.254")
    assert await resolve_and_check("169.254.169.254", 80, permit=lambda a: a == metadata) == [metadata]


async def test_an_unresolvable_name_raises_oserror(lookups: dict[str, Any]) -> None:
    with pytest.raises(OSError, match="not known"):
        await resolve_and_check("nope.test", 80)
