"""The netops MCP server: pure logic directly, then every tool through a real MCP client against
`ai-ops mcp netops` in a subprocess and local targets only (a TCP listener, an HTTPS server with a
certificate made here, a silent listener, a tiny UDP DNS responder). No external network."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcp_servers.common import InvalidArgument, cap_text, fit_items
from mcp_servers.netops.allowlist import TargetRefused, parse_policy
from mcp_servers.netops.certificates import describe_certificate
from mcp_servers.netops.dns_lookup import format_record, parse_nameserver
from mcp_servers.netops.probes import select_headers
from tests.harness.ports import free_port
from tests.support.mcp_server_helpers import McpServerProcess, mcp_client

# --------------------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Certificate:
    pem: str
    der: bytes
    cert_file: str
    key_file: str


def make_certificate(
    common_name: str, dns_names: list[str], ips: list[str], not_before: datetime, not_after: datetime
) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as cert_file:
        cert_file.write(pem)
    with tempfile.NamedTemporaryFile("wb", suffix=".key", delete=False) as key_file:
        key_file.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return Certificate(
        pem=pem,
        der=certificate.public_bytes(serialization.Encoding.DER),
        cert_file=cert_file.name,
        key_file=key_file.name,
    )


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    now = datetime.now(UTC)
    return make_certificate(
        "localhost", ["localhost"], ["127.0.0.1"], now - timedelta(days=1), now + timedelta(days=30)
    )


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str]]] = {}

    def do_GET(self) -> None:
        status, headers = self.routes.get(self.path, (404, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class HttpsTarget:
    port: int
    url: str


@pytest.fixture(scope="module")
def https_target(certificate: Certificate) -> Iterator[HttpsTarget]:
    """A local HTTPS server with the self-signed certificate (valid for localhost and 127.0.0.1)."""
    _Handler.routes = {
        "/": (200, {"Content-Type": "text/plain", "Set-Cookie": "session=do-not-leak", "X-Build": "abc123"}),
        "/redirect": (302, {"Location": "/"}),
        "/loop": (302, {"Location": "/loop"}),
        "/elsewhere": (302, {"Location": "http://192.0.2.10/"}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield HttpsTarget(port=port, url=f"https://127.0.0.1:{port}")
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tcp_listener() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections (the kernel does) but never says a word: TLS and HTTP must time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


DNS_ZONE = {
    ("svc.test.", "A"): ["10.0.0.7", "10.0.0.8"],
    ("svc.test.", "MX"): ["10 mail.svc.test."],
    ("svc.test.", "TXT"): ['"v=spf1 " "-all"'],
    ("_http._tcp.svc.test.", "SRV"): ["0 5 8080 web.svc.test."],
    ("alias.test.", "CNAME"): ["svc.test."],
}


# A zone maps (name, type) to records. A tuple of record lists answers them in turn, one per query, the
# last one from then on: a rebinding name (allowed first, something else afterwards).
DnsZone = dict[tuple[str, str], list[str] | tuple[list[str], ...]]


class DnsResponder:
    """A tiny authoritative UDP DNS server for a zone, logging every question it gets."""

    def __init__(self, zone: DnsZone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone = zone
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DnsResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _records(self, name: str, rdtype: str) -> list[str] | None:
        records = self.zone.get((name, rdtype))
        if isinstance(records, tuple):
            asked_before = self.queries.count((name, rdtype)) - 1
            return records[min(asked_before, len(records) - 1)]
        return records

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            records = self._records(name, rdtype)
            if records:
                response.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, *records))
            elif not any(zone_name == name for zone_name, _ in self.zone):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(response.to_wire(), client)


@pytest.fixture(scope="module")
def dns_responder() -> Iterator[int]:
    """The responder for the `test.` zone above, on 127.0.0.1; its port."""
    with DnsResponder(DNS_ZONE) as responder:
        yield responder.port


@pytest.fixture(scope="module")
def netops_server() -> Iterator[McpServerProcess]:
    """`ai-ops mcp netops` limited to loopback (from the env var) and localhost (from the flag)."""
    server = McpServerProcess(
        ["netops", "--allow", "localhost", "--max-response-bytes", "8000"],
        env={"AI_OPS_NETOPS_ALLOW": "127.0.0.0/8"},
    )
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------------------------- pure logic


def test_allowlist_matches_names_wildcards_and_networks() -> None:
    policy = parse_policy(["db.example.com, *.corp.example", "10.0.0.0/8", "2001:db8::/32 192.0.2.1"])
    policy.check("DB.example.com.", [ipaddress.ip_address("203.0.113.5")])
    policy.check("api.eu.corp.example", [ipaddress.ip_address("203.0.113.5")])
    policy.check("unlisted.example", [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("2001:db8::1")])
    policy.check("192.0.2.1", [])
    with pytest.raises(TargetRefused, match=r"corp\.example .*not in the netops allowlist"):
        policy.check("corp.example", [ipaddress.ip_address("203.0.113.5")])  # *.domain means subdomains only
    with pytest.raises(TargetRefused, match=r"resolves to 10\.1\.2\.3, 203\.0\.113\.9"):
        policy.check("mixed.example", [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("203.0.113.9")])
    with pytest.raises(TargetRefused):
        policy.check("192.0.2.2", [])


def test_open_policy_refuses_what_the_address_policy_refuses_and_allows_the_rest() -> None:
    open_policy = parse_policy([])
    open_policy.check("anything.example", [ipaddress.ip_address("203.0.113.5")])
    open_policy.check("10.0.0.7", [])  # private in-cluster addresses are ordinary targets
    open_policy.check("127.0.0.1", [])  # loopback is the netops pod itself
    with pytest.raises(TargetRefused, match=r"169\.254\.169\.254 is a cloud metadata endpoint"):
        open_policy.check("169.254.169.254", [])
    with pytest.raises(TargetRefused, match=r"metadata\.internal resolves to 169\.254\.169\.254"):
        open_policy.check("metadata.internal", [ipaddress.ip_address("169.254.169.254")])
    with pytest.raises(TargetRefused, match="link-local"):
        open_policy.check("169.254.10.10", [])
    with pytest.raises(TargetRefused, match=r"IPv4-mapped IPv6 for 169\.254\.169\.254"):
        open_policy.check("::ffff:169.254.169.254", [])


def test_only_an_entry_naming_refused_addresses_exactly_lets_them_through() -> None:
    parse_policy(["169.254.169.254"]).check("169.254.169.254", [])
    parse_policy(["169.254.0.0/16"]).check("metadata.internal", [ipaddress.ip_address("169.254.169.254")])
    with pytest.raises(TargetRefused, match="cloud metadata endpoint"):
        parse_policy(["0.0.0.0/0"]).check("169.254.169.254", [])
    with pytest.raises(TargetRefused, match="Alibaba"):
        parse_policy(["100.64.0.0/10"]).check("100.100.100.200", [])  # CGNAT entry: not the metadata host
    with pytest.raises(TargetRefused, match="cloud metadata endpoint"):  # a name entry never does
        parse_policy(["metadata.internal"]).check(
            "metadata.internal", [ipaddress.ip_address("169.254.169.254")]
        )


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "bad host!", "*.", "-leading.example"])
def test_allowlist_rejects_malformed_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist entry"):
        parse_policy([entry])


def test_nameserver_parsing() -> None:
    assert parse_nameserver("10.0.0.1") == (ipaddress.ip_address("10.0.0.1"), 53)
    assert parse_nameserver("10.0.0.1:5353") == (ipaddress.ip_address("10.0.0.1"), 5353)
    assert parse_nameserver("[::1]:5300") == (ipaddress.ip_address("::1"), 5300)
    assert parse_nameserver("fd00::53") == (ipaddress.ip_address("fd00::53"), 53)
    with pytest.raises(InvalidArgument):
        parse_nameserver("ns1.example.com")
    with pytest.raises(InvalidArgument):
        parse_nameserver("10.0.0.1:99999")


@pytest.mark.parametrize(
    ("rdtype", "text", "expected"),
    [
        ("A", "192.0.2.1", "192.0.2.1"),
        ("AAAA", "2001:db8::1", "2001:db8::1"),
        ("CNAME", "target.example.", "target.example."),
        ("MX", "10 mx1.example.", {"preference": 10, "exchange": "mx1.example."}),
        ("TXT", '"v=DKIM1; k=rsa; " "p=MIIB"', "v=DKIM1; k=rsa; p=MIIB"),
        (
            "SRV",
            "1 20 5060 sip.example.",
            {"priority": 1, "weight": 20, "port": 5060, "target": "sip.example."},
        ),
    ],
)
def test_dns_records_are_formatted_as_plain_values(rdtype: str, text: str, expected: object) -> None:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
    assert format_record(rdata) == expected


def test_certificate_description(certificate: Certificate) -> None:
    now = datetime.now(UTC)
    described = describe_certificate(certificate.der, now)
    assert described["common_name"] == "localhost"
    assert described["subject_alt_names"] == {"dns": ["localhost"], "ip": ["127.0.0.1"]}
    assert described["self_signed"] is True
    assert described["days_left"] == 29  # 30 days minus the seconds since the fixture made it, rounded down
    assert described["expired"] is False
    assert described["public_key"] == "EC secp256r1"
    assert described["signature_algorithm"] == "sha256"
    later = describe_certificate(certificate.der, now + timedelta(days=45))
    assert later["expired"] is True
    assert later["days_left"] == -16


def test_select_headers_never_includes_cookies() -> None:
    headers = [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("Via", "1.1 a"), ("via", "1.1 b")]
    assert select_headers(headers, ["content-type", "SET-COOKIE", "via"]) == {
        "content-type": "text/html",
        "via": "1.1 a, 1.1 b",
    }


def test_cap_text_cuts_on_utf8_boundary_and_says_so() -> None:
    text = "é" * 2000  # 4000 bytes
    capped = cap_text(text, 1500, "narrow it")
    assert len(capped.encode()) <= 1500
    assert capped.endswith("[truncated: 4000 bytes, limit 1500; narrow it]")
    assert capped.startswith("é" * 100)
    assert cap_text("short", 1500) == "short"


def test_fit_items_keeps_valid_json_and_counts_dropped_items() -> None:
    items = [{"name": f"pod-{i}", "padding": "x" * 50} for i in range(100)]
    text = fit_items({"kind": "pods"}, "items", items, 2000)
    assert len(text.encode()) <= 2000
    body = json.loads(text)
    shown = len(body["items"])
    assert 0 < shown < 100
    assert body["items"] == items[:shown]
    assert f"showing {shown} of 100 items" in body["truncated"]
    assert "truncated" not in json.loads(fit_items({}, "items", items[:2], 2000))


# --------------------------------------------------------------------------------------------- through MCP


async def test_server_lists_its_tools_and_answers_healthz(netops_server: McpServerProcess) -> None:
    async with mcp_client(netops_server.url) as client:
        assert await client.tool_names() == ["dns_lookup", "http_check", "tcp_check", "tls_certificate"]
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{netops_server.base_url}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


async def test_tcp_check_open_and_closed_ports(netops_server: McpServerProcess, tcp_listener: int) -> None:
    closed_port = free_port()
    async with mcp_client(netops_server.url) as client:
        open_result = (await client.call("tcp_check", host="127.0.0.1", port=tcp_listener)).json()
        by_name = (await client.call("tcp_check", host="localhost", port=tcp_listener)).json()
        closed = (
            await client.call("tcp_check", host="127.0.0.1", port=closed_port, timeout_seconds=2)
        ).json()
    assert open_result["reachable"] is True
    assert open_result["address"] == "127.0.0.1"
    assert open_result["latency_ms"] > 0
    assert by_name["reachable"] is True
    assert closed["reachable"] is False
    assert "refused" in closed["error"].lower()


async def test_allowlist_refusals_are_tool_errors(
    netops_server: McpServerProcess, https_target: HttpsTarget
) -> None:
    async with mcp_client(netops_server.url) as client:
        tcp = await client.call("tcp_check", host="192.0.2.10", port=80)
        http = await client.call("http_check", url="http://192.0.2.10/")
        tls = await client.call("tls_certificate", host="192.0.2.10")
        dns_server = await client.call("dns_lookup", name="svc.test", nameserver="192.0.2.53")
        redirect_out = await client.call("http_check", url=f"{https_target.url}/elsewhere", verify_tls=False)
    for answer in (tcp, http, tls, dns_server, redirect_out):
        assert answer.is_error
        assert "not in the netops allowlist" in answer.text
        assert "127.0.0.0/8" in answer.text  # the refusal says what is allowed


async def test_invalid_arguments_are_tool_errors(netops_server: McpServerProcess) -> None:
    async with mcp_client(netops_server.url) as client:
        bad_scheme = await client.call("http_check", url="ftp://127.0.0.1/")
        bad_timeout = await client.call("tcp_check", host="127.0.0.1", port=80, timeout_seconds=600)
        bad_pem = await client.call("tls_certificate", host="127.0.0.1", ca_bundle_pem="not a certificate")
    assert bad_scheme.is_error and "http:// or https://" in bad_scheme.text
    assert bad_timeout.is_error and "timeout_seconds" in bad_timeout.text
    assert bad_pem.is_error and "ca_bundle_pem" in bad_pem.text


async def test_http_check_against_local_https(
    netops_server: McpServerProcess, https_target: HttpsTarget, certificate: Certificate
) -> None:
    async with mcp_client(netops_server.url) as client:
        trusted = (
            await client.call("http_check", url=f"{https_target.url}/", ca_bundle_pem=certificate.pem)
        ).json()
        untrusted = (await client.call("http_check", url=f"{https_target.url}/")).json()
        unverified = (
            await client.call(
                "http_check", url=f"{https_target.url}/", verify_tls=False, include_headers=["X-Build"]
            )
        ).json()
        redirected = (
            await client.call("http_check", url=f"{https_target.url}/redirect", ca_bundle_pem=certificate.pem)
        ).json()
        looping = (
            await client.call("http_check", url=f"{https_target.url}/loop", verify_tls=False, max_redirects=3)
        ).json()
    assert trusted["ok"] is True
    assert trusted["status"] == 200
    assert trusted["headers"]["content-type"] == "text/plain"
    assert "set-cookie" not in trusted["headers"]
    assert "do-not-leak" not in json.dumps(unverified)
    assert unverified["headers"]["x-build"] == "abc123"
    assert untrusted["ok"] is False
    assert "certificate verification failed" in untrusted["error"]
    assert redirected["status"] == 200
    assert redirected["final_url"] == f"{https_target.url}/"
    assert [(hop["status"], hop["location"]) for hop in redirected["redirects"]] == [
        (302, f"{https_target.url}/")
    ]
    assert looping["ok"] is False
    assert "more than 3 redirects" in looping["error"]
    assert len(looping["redirects"]) == 4


async def test_tls_certificate_info_and_chain_validity(
    netops_server: McpServerProcess, https_target: HttpsTarget, certificate: Certificate
) -> None:
    async with mcp_client(netops_server.url) as client:
        trusted = (
            await client.call(
                "tls_certificate",
                host="127.0.0.1",
                port=https_target.port,
                server_name="localhost",
                ca_bundle_pem=certificate.pem,
            )
        ).json()
        untrusted = (await client.call("tls_certificate", host="localhost", port=https_target.port)).json()
        wrong_name = (
            await client.call(
                "tls_certificate",
                host="127.0.0.1",
                port=https_target.port,
                server_name="other.example",
                ca_bundle_pem=certificate.pem,
            )
        ).json()
    assert trusted["chain_valid"] is True
    assert trusted["certificate"]["subject_alt_names"]["dns"] == ["localhost"]
    assert trusted["certificate"]["days_left"] == 29
    assert trusted["tls_version"].startswith("TLSv1.")
    assert untrusted["ok"] is True  # the certificate is still described
    assert untrusted["certificate"]["self_signed"] is True
    assert untrusted["chain_valid"] is False
    assert (
        "self-signed" in untrusted["verification_error"] or "self signed" in untrusted["verification_error"]
    )
    assert wrong_name["chain_valid"] is False
    assert "other.example" in wrong_name["verification_error"]


async def test_silent_listener_times_out(netops_server: McpServerProcess, silent_listener: int) -> None:
    async with mcp_client(netops_server.url) as client:
        http = (
            await client.call("http_check", url=f"http://127.0.0.1:{silent_listener}/", timeout_seconds=0.5)
        ).json()
        tls = (
            await client.call("tls_certificate", host="127.0.0.1", port=silent_listener, timeout_seconds=0.5)
        ).json()
    assert http["ok"] is False
    assert http["error"] == "timed out after 0.5s"
    assert tls["ok"] is False
    assert tls["error"] == "TLS handshake timed out after 0.5s"


async def test_dns_lookup_against_local_responder(
    netops_server: McpServerProcess, dns_responder: int
) -> None:
    nameserver = f"127.0.0.1:{dns_responder}"
    async with mcp_client(netops_server.url) as client:
        a = (await client.call("dns_lookup", name="svc.test", nameserver=nameserver)).json()
        mx = (
            await client.call("dns_lookup", name="svc.test", record_type="MX", nameserver=nameserver)
        ).json()
        txt = (
            await client.call("dns_lookup", name="svc.test", record_type="TXT", nameserver=nameserver)
        ).json()
        srv = (
            await client.call(
                "dns_lookup", name="_http._tcp.svc.test", record_type="SRV", nameserver=nameserver
            )
        ).json()
        cname = (
            await client.call("dns_lookup", name="alias.test", record_type="CNAME", nameserver=nameserver)
        ).json()
        empty = (
            await client.call("dns_lookup", name="svc.test", record_type="AAAA", nameserver=nameserver)
        ).json()
        missing = (await client.call("dns_lookup", name="nope.test", nameserver=nameserver)).json()
    assert sorted(a["records"]) == ["10.0.0.7", "10.0.0.8"]
    assert a["ttl"] == 300
    assert mx["records"] == [{"preference": 10, "exchange": "mail.svc.test."}]
    assert txt["records"] == ["v=spf1 -all"]
    assert srv["records"] == [{"priority": 0, "weight": 5, "port": 8080, "target": "web.svc.test."}]
    assert cname["records"] == ["svc.test."]
    assert empty["ok"] is True and empty["records"] == [] and "no AAAA records" in empty["note"]
    assert missing["status"] == "NXDOMAIN"


async def test_dns_lookup_without_a_nameserver_fails_with_an_error(netops_server: McpServerProcess) -> None:
    closed_udp_port = free_port()
    async with mcp_client(netops_server.url) as client:
        answer = (
            await client.call(
                "dns_lookup", name="svc.test", nameserver=f"127.0.0.1:{closed_udp_port}", timeout_seconds=1
            )
        ).json()
    assert answer["ok"] is False
    assert answer["error"]


# --------------------------------------------------------------------------------------------- in an agent turn


async def test_chat_agent_turn_uses_netops(
    netops_server: McpServerProcess, tcp_listener: int, fresh_fake_llm: Any, tmp_path: Path
) -> None:
    """The chat service loads the netops tools, the scripted model calls tcp_check, the real result
    goes back to the model and into the API answer."""
    from chat_service.app import create_app
    from tests.harness.fake_llm import Reply
    from tests.support.chat_support import (
        agent_config,
        mcp_server,
        model_entry,
        running,
        settings_for,
        write_config,
    )

    config_path = tmp_path / "agent-config.json"
    write_config(
        config_path,
        agent_config(
            models=[model_entry("main", fresh_fake_llm.base_url, default=True)],
            servers=[mcp_server("netops", netops_server.url)],
        ),
    )
    fresh_fake_llm.enqueue(
        Reply.tool_call("tcp_check", {"host": "127.0.0.1", "port": tcp_listener}),
        Reply.text("The port accepts connections."),
    )
    async with running(create_app(settings_for(config_path))) as app, app.client() as client:
        response = await client.post("/api/chat", json={"message": f"Is 127.0.0.1:{tcp_listener} open?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "The port accepts connections."
    [call] = body["tool_calls"]
    assert call["name"] == "tcp_check" and call["error"] is None
    assert json.loads(call["output"])["reachable"] is True
    offered = {tool["function"]["name"] for tool in fresh_fake_llm.chat_requests[0]["json"]["tools"]}
    assert offered == {"dns_lookup", "tcp_check", "http_check", "tls_certificate"}
    tool_message = next(m for m in fresh_fake_llm.chat_requests[1]["json"]["messages"] if m["role"] == "tool")
    content = tool_message["content"]
    text = content if isinstance(content, str) else "".join(block.get("text", "") for block in content)
    assert json.loads(text)["address"] == "127.0.0.1"  # the model saw the real check result


async def test_docs_list_every_tool_with_its_arguments() -> None:
    from mcp_servers.netops.server import NetopsSettings, build_server

    doc = (Path(__file__).resolve().parents[2] / "docs" / "mcp-servers.md").read_text()
    section = doc.split("\n## netops\n", 1)[1].split("\n## ", 1)[0]
    for tool in await build_server(NetopsSettings()).list_tools():
        [row] = [line for line in section.splitlines() if line.startswith(f"| `{tool.name}` |")]
        for argument in tool.inputSchema["properties"]:
            assert f"`{argument}`" in row, f"{tool.name}({argument}) is not documented"


def test_cli_refuses_a_malformed_allowlist_entry(capsys: pytest.CaptureFixture[str]) -> None:
    from ai_ops_cli import main

    assert main(["mcp", "netops", "--allow", "10.0.0.0/8,not a host!"]) == 2
    assert "allowlist entry 'host!' is not a host name" in capsys.readouterr().err
