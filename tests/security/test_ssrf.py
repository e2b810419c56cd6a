"""SSRF through netops: every way to reach a cloud metadata address is refused with a message saying why,
before any connection. Each case runs the netops tools (the FastMCP server, in process) inside its own
network namespace where the metadata addresses exist on `lo` behind trap listeners, and names come from a
local DNS responder; the trap must record nothing. Nothing leaves the namespace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ai_ops_api.addresses import url_refusal
from tests.mcp.test_mcp_netops import DnsResponder, DnsZone
from tests.security.netns import run_in_netns

METADATA_REFUSAL = "169.254.169.254, a cloud metadata endpoint"
ALLOWED_HOST = "127.0.0.2"  # loopback, but not where the traps listen
ALLOWED_PORT = 8080

# --------------------------------------------------------------------------------------------- in the namespace


@contextmanager
def http_server(routes: dict[str, tuple[int, dict[str, str]]]) -> Iterator[list[str]]:
    """An HTTP server on ALLOWED_HOST:ALLOWED_PORT answering `routes`; yields the paths it was asked for."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            status, headers = routes.get(self.path, (404, {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((ALLOWED_HOST, ALLOWED_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield requested
    finally:
        server.shutdown()
        server.server_close()


async def call_tools(allow: list[str], calls: list[list[Any]]) -> list[dict[str, Any]]:
    """Each [tool, arguments] through the netops server: {"refused": message} or {"result": text}."""
    from mcp.server.fastmcp.exceptions import ToolError

    from mcp_servers.netops.allowlist import parse_policy
    from mcp_servers.netops.server import NetopsSettings, build_server

    server = build_server(NetopsSettings(policy=parse_policy(allow)))
    answers: list[dict[str, Any]] = []
    for tool, arguments in calls:
        try:
            content = await server.call_tool(tool, {"timeout_seconds": 3, **arguments})
        except ToolError as error:
            answers.append({"refused": str(error)})
            continue
        blocks = content if isinstance(content, list | tuple) else []
        answers.append({"result": "".join(getattr(block, "text", "") for block in blocks)})
    return answers


async def netops_in_namespace(
    allow: list[str],
    calls: list[list[Any]],
    zone: dict[str, Any] | None = None,
    routes: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """The netops calls with a DNS responder for `zone` ({"name type": records or [records, ...] for a
    rebinding answer}) on 127.0.0.1:53 and an HTTP server for `routes` on the allowed address."""
    dns_zone: DnsZone = {}
    for key, records in (zone or {}).items():
        name, rdtype = key.split()
        sequence = all(isinstance(item, list) for item in records)
        dns_zone[(name, rdtype)] = tuple(records) if sequence else list(records)
    http_routes = {path: (status, headers) for path, (status, headers) in (routes or {}).items()}
    with DnsResponder(dns_zone, port=53) as responder, http_server(http_routes) as requested:
        answers = await call_tools(allow, calls)
    return {"answers": answers, "dns_queries": responder.queries, "http_requests": requested}


def connect_to_trap() -> str:
    """The harness itself: a direct connection to the metadata address must be recorded."""
    with socket.create_connection(("169.254.169.254", 80), timeout=3):
        return "connected"


# --------------------------------------------------------------------------------------------- the cases


def refusals(run_result: dict[str, Any]) -> list[str]:
    missing = [answer for answer in run_result["answers"] if "refused" not in answer]
    assert not missing, f"not refused: {missing}"
    return [answer["refused"] for answer in run_result["answers"]]


def test_the_trap_records_a_connection_to_the_metadata_address() -> None:
    run = run_in_netns(connect_to_trap)
    assert run.result == "connected"
    assert [(c["address"], c["port"]) for c in run.connections] == [("169.254.169.254", 80)]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        pytest.param(
            [
                ["http_check", {"url": "http://[::ffff:169.254.169.254]/latest/meta-data/"}],
                ["tcp_check", {"host": "::ffff:169.254.169.254", "port": 80}],
                ["tcp_check", {"host": "::ffff:a9fe:a9fe", "port": 80}],
            ],
            "IPv4-mapped IPv6 for " + METADATA_REFUSAL,
            id="ipv4-mapped-literal",
        ),
        pytest.param(
            [
                ["tls_certificate", {"host": "::ffff:169.254.169.254", "port": 443}],
                ["tls_certificate", {"host": "[::ffff:169.254.169.254]", "port": 443}],
            ],
            "IPv4-mapped IPv6 for " + METADATA_REFUSAL,
            id="tls-certificate-mapped",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://[fd00:ec2::254]/latest/meta-data/"}],
                ["tcp_check", {"host": "fd00:ec2::254", "port": 80}],
                ["tls_certificate", {"host": "fd00:ec2::254", "port": 443}],
            ],
            "fd00:ec2::254 is a cloud metadata endpoint (AWS IPv6)",
            id="aws-ipv6-metadata",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://[fd20:ce::254]/computeMetadata/v1/"}],
                ["tcp_check", {"host": "fd20:ce::254", "port": 80}],
                ["tls_certificate", {"host": "fd20:ce::254", "port": 443}],
            ],
            "fd20:ce::254 is a cloud metadata endpoint (GCP IPv6)",
            id="gcp-ipv6-metadata",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://100.100.100.200/latest/meta-data/"}],
                ["tcp_check", {"host": "100.100.100.200", "port": 80}],
            ],
            "100.100.100.200 is a cloud metadata endpoint (Alibaba Cloud)",
            id="alibaba-metadata",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://[64:ff9b::a9fe:a9fe]/"}],
                ["tcp_check", {"host": "64:ff9b::a9fe:a9fe", "port": 80}],
                ["tls_certificate", {"host": "64:ff9b::a9fe:a9fe", "port": 443}],
            ],
            "NAT64 IPv6 for " + METADATA_REFUSAL,
            id="nat64",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://0.0.0.0/"}],
                ["tcp_check", {"host": "0.0.0.0", "port": 80}],
                ["tcp_check", {"host": "::", "port": 80}],
            ],
            "the unspecified address",
            id="unspecified",
        ),
        pytest.param(
            [
                ["http_check", {"url": "http://2852039166/latest/meta-data/"}],
                ["http_check", {"url": "http://0xa9fea9fe/"}],
                ["tcp_check", {"host": "0251.0376.0251.0376", "port": 80}],
                ["tcp_check", {"host": "169.254.43518", "port": 80}],
            ],
            "is 169.254.169.254, a cloud metadata endpoint",
            id="decimal-hex-octal-short",
        ),
    ],
)
def test_literal_forms_are_refused_before_connecting(calls: list[list[Any]], expected: str) -> None:
    run = run_in_netns(netops_in_namespace, [], calls)
    for message in refusals(run.result):
        assert expected in message
        assert message.count("target refused: ") == 1
    assert run.connections == []


def test_an_aaaa_record_to_a_mapped_metadata_address_is_refused() -> None:
    zone = {"mapped.test. AAAA": ["::ffff:169.254.169.254"], "nat64.test. AAAA": ["64:ff9b::a9fe:a9fe"]}
    calls = [
        ["tcp_check", {"host": "mapped.test", "port": 80}],
        ["http_check", {"url": "http://mapped.test/latest/meta-data/"}],
        ["tls_certificate", {"host": "mapped.test", "port": 443}],
        ["http_check", {"url": "http://nat64.test/"}],
    ]
    run = run_in_netns(netops_in_namespace, [], calls, zone)
    messages = refusals(run.result)
    for message in messages[:3]:
        assert "mapped.test resolves to ::ffff:a9fe:a9fe, IPv4-mapped IPv6 for " + METADATA_REFUSAL in message
    assert "nat64.test resolves to 64:ff9b::a9fe:a9fe, NAT64 IPv6 for " + METADATA_REFUSAL in messages[3]
    assert run.connections == []


def test_a_redirect_hop_to_the_metadata_address_is_refused() -> None:
    origin = f"http://{ALLOWED_HOST}:{ALLOWED_PORT}"
    routes = {
        "/to-metadata": [302, {"Location": "http://169.254.169.254/latest/meta-data/iam/"}],
        "/to-mapped": [302, {"Location": "http://[::ffff:169.254.169.254]/"}],
        "/to-metadata-name": [307, {"Location": "http://metadata.google.internal/computeMetadata/v1/"}],
        "/ok": [200, {}],
    }
    calls = [
        ["http_check", {"url": f"{origin}/to-metadata"}],
        ["http_check", {"url": f"{origin}/to-mapped"}],
        ["http_check", {"url": f"{origin}/to-metadata-name"}],
    ]
    for allow in ([], ["127.0.0.0/8"]):  # the chart's default, and an allowlist holding the origin
        run = run_in_netns(netops_in_namespace, allow, calls, None, routes)
        messages = refusals(run.result)
        assert "169.254.169.254 is a cloud metadata endpoint" in messages[0]
        assert "IPv4-mapped IPv6 for " + METADATA_REFUSAL in messages[1]
        assert "metadata.google.internal is a cloud metadata endpoint" in messages[2]
        assert run.result["http_requests"] == ["/to-metadata", "/to-mapped", "/to-metadata-name"]
        assert run.connections == []


def test_the_allowlist_lets_an_explicit_metadata_entry_through_to_the_trap() -> None:
    calls = [["tcp_check", {"host": "169.254.169.254", "port": 80}]]
    run = run_in_netns(netops_in_namespace, ["169.254.169.254"], calls)
    [answer] = run.result["answers"]
    assert '"reachable": true' in answer["result"]
    assert [(c["address"], c["port"]) for c in run.connections] == [("169.254.169.254", 80)]


def test_dns_rebinding_is_closed_the_checked_answer_is_the_one_connected_to() -> None:
    """An allowlisted name answers an allowed address first and 169.254.169.254 afterwards. Each check
    resolves once: the first one connects to the allowed address it checked; the next one gets the
    metadata answer and is refused. Nothing reaches the trap (two lookups per check would)."""
    zone = {
        "rebind.test. A": [[ALLOWED_HOST], ["169.254.169.254"]],
        "rebind-tcp.test. A": [[ALLOWED_HOST], ["169.254.169.254"]],
        "rebind-name.test. A": [[ALLOWED_HOST], ["169.254.169.254"]],
    }
    url = f"http://rebind.test:{ALLOWED_PORT}/"
    calls = [
        ["http_check", {"url": url}],
        ["http_check", {"url": url}],
        ["tcp_check", {"host": "rebind-tcp.test", "port": ALLOWED_PORT}],
        ["tcp_check", {"host": "rebind-tcp.test", "port": ALLOWED_PORT}],
        ["http_check", {"url": f"http://rebind-name.test:{ALLOWED_PORT}/"}],
        ["http_check", {"url": f"http://rebind-name.test:{ALLOWED_PORT}/"}],
    ]
    allow = ["127.0.0.0/8", "rebind-name.test"]  # an address entry, and a name entry
    run = run_in_netns(netops_in_namespace, allow, calls, zone, {"/": [200, {}]})
    first, second, tcp_first, tcp_second, name_first, name_second = run.result["answers"]
    assert '"status": 200' in first["result"]
    assert f'"address": "{ALLOWED_HOST}"' in tcp_first["result"]
    assert '"status": 200' in name_first["result"]
    # The metadata answer is refused by the address policy, before the allowlist (so the name entry
    # does not let it through either).
    assert "rebind.test resolves to 169.254.169.254, a cloud metadata endpoint" in second["refused"]
    assert "rebind-tcp.test resolves to 169.254.169.254, a cloud metadata endpoint" in tcp_second["refused"]
    assert "rebind-name.test resolves to 169.254.169.254, a cloud metadata endpoint" in name_second["refused"]
    a_queries = [name for name, rdtype in run.result["dns_queries"] if rdtype == "A"]
    assert a_queries == ["rebind.test."] * 2 + ["rebind-tcp.test."] * 2 + ["rebind-name.test."] * 2
    assert run.result["http_requests"] == ["/", "/"]
    assert run.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2852039166/",
        "http://0xa9fea9fe/latest/meta-data/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "https://[::ffff:169.254.169.254]:443/",
        "http://[64:ff9b::a9fe:a9fe]/",
    ],
)
def test_the_operator_url_check_refuses_metadata_in_any_literal_form(url: str) -> None:
    reason = url_refusal(url, allow_loopback=True)
    assert reason is not None and METADATA_REFUSAL in reason
