"""The guarded httpx transport: it connects to the address its resolver checked while Host, SNI and
certificate verification stay on the name; it re-checks every redirect hop. Loopback cases run on the
host; anything aimed at a metadata address runs in a network namespace behind trap listeners."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ai_ops_api.addresses import IPAddress
from ai_ops_common.guarded_transport import ConnectRefused, GuardedTransport, guarded_client
from tests.mcp.test_mcp_netops import make_certificate
from tests.security.netns import run_in_netns


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that connection reuse is visible
    hosts: list[str] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        if self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server() -> Iterator[dict[str, Any]]:
    """HTTPS on 127.0.0.1 with a certificate for `svc.test` only, recording SNI names and Host headers."""
    now = datetime.now(UTC)
    certificate = make_certificate(
        "svc.test", ["svc.test"], [], now - timedelta(days=1), now + timedelta(days=1)
    )
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    _Recorder.hosts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        "port": server.server_address[1],
        "pem": certificate.pem,
        "server_names": server_names,
        "hosts": _Recorder.hosts,
    }
    server.shutdown()
    server.server_close()


def _resolver(answers: dict[str, str], calls: list[tuple[str, int]]) -> Any:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append((host, port))
        return [ipaddress.ip_address(answers[host])]

    return resolve


async def test_connects_to_the_checked_address_and_keeps_host_sni_and_verification_on_the_name(
    tls_server: dict[str, Any],
) -> None:
    calls: list[tuple[str, int]] = []
    trusted = ssl.create_default_context(cadata=tls_server["pem"])
    transport = GuardedTransport(_resolver({"svc.test": "127.0.0.1"}, calls), verify=trusted)
    port = tls_server["port"]
    async with httpx.AsyncClient(transport=transport) as client:
        first = await client.get(f"https://svc.test:{port}/")
        second = await client.get(f"https://svc.test:{port}/again")  # the kept-alive connection
    assert (first.status_code, second.status_code) == (200, 200)
    assert calls == [("svc.test", port)]  # one lookup, by the transport, for the one connection
    assert tls_server["server_names"][-1] == "svc.test"
    assert tls_server["hosts"][-2:] == [f"svc.test:{port}"] * 2


async def test_certificate_is_verified_against_the_name_not_the_address(tls_server: dict[str, Any]) -> None:
    trusted = ssl.create_default_context(cadata=tls_server["pem"])
    transport = GuardedTransport(_resolver({"other.test": "127.0.0.1"}, []), verify=trusted)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match=r"other\.test"):
            await client.get(f"https://other.test:{tls_server['port']}/")


async def test_the_default_policy_refuses_loopback_and_a_callers_refusal_passes_through() -> None:
    async with guarded_client() as client:
        with pytest.raises(ConnectRefused, match=r"127\.0\.0\.1 is a loopback address") as refused:
            await client.get("http://127.0.0.1:9/")
    assert refused.value.reason.startswith("127.0.0.1 is a loopback address")

    class NotOnMyList(Exception):
        pass

    async def refuse(host: str, port: int) -> list[IPAddress]:
        raise NotOnMyList(f"{host}:{port} is not on my list")

    async with httpx.AsyncClient(transport=GuardedTransport(refuse)) as client:
        with pytest.raises(NotOnMyList, match=r"svc\.test:80 is not on my list"):
            await client.get("http://svc.test/")


async def test_an_unresolvable_name_is_a_connect_error() -> None:
    async def unknown(host: str, port: int) -> list[IPAddress]:
        raise OSError(f"cannot find {host}")

    async with httpx.AsyncClient(transport=GuardedTransport(unknown)) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve svc\.test: cannot find svc\.test"):
            await client.get("http://svc.test/")


async def follow_redirect_to_metadata() -> dict[str, Any]:
    """In the namespace: a loopback server redirects to 169.254.169.254; httpx follows redirects."""
    _Recorder.hosts = []
    server = ThreadingHTTPServer(("127.0.0.2", 8080), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outcome: dict[str, Any] = {}
    try:
        async with guarded_client(allow_loopback=True, follow_redirects=True) as client:
            for url in ("http://127.0.0.2:8080/to-metadata", "http://169.254.169.254/", "http://2852039166/"):
                try:
                    await client.get(url)
                    outcome[url] = "fetched"
                except ConnectRefused as error:
                    outcome[url] = error.reason
    finally:
        server.shutdown()
        server.server_close()
    outcome["hosts"] = list(_Recorder.hosts)
    return outcome


def test_every_redirect_hop_is_checked_before_connecting() -> None:
    run = run_in_netns(follow_redirect_to_metadata)
    assert run.result["http://127.0.0.2:8080/to-metadata"].startswith(
        "169.254.169.254 is a cloud metadata endpoint"
    )
    assert run.result["http://169.254.169.254/"].startswith("169.254.169.254 is a cloud metadata endpoint")
    assert run.result["http://2852039166/"].startswith("2852039166 is 169.254.169.254, a cloud metadata")
    assert run.result["hosts"] == ["127.0.0.2:8080"]  # the allowed first hop was made
    assert run.connections == []
