"""netops `dns_lookup` answers names of the hosts file from it, as the system's own lookup does (dnspython
never reads /etc/hosts, so `localhost` came back NXDOMAIN)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_servers.netops.dns_lookup import HOSTS_FILE, hosts_addresses
from mcp_servers.netops.server import NetopsSettings, build_server
from tests.support.mcp_server_helpers import ThreadedMcpServer, mcp_client

HOSTS = """\
# comment line
127.0.0.1   localhost  loopback
::1         localhost ip6-localhost   # trailing comment
10.1.2.3    Build.Example.   build
not-an-ip   broken
10.1.2.4    build
"""


def test_hosts_addresses_by_type_case_and_order() -> None:
    assert hosts_addresses(HOSTS, "localhost.", "A") == ["127.0.0.1"]
    assert hosts_addresses(HOSTS, "LOCALHOST", "AAAA") == ["::1"]
    assert hosts_addresses(HOSTS, "build.example", "A") == ["10.1.2.3"]
    assert hosts_addresses(HOSTS, "build", "A") == ["10.1.2.3", "10.1.2.4"]
    assert hosts_addresses(HOSTS, "broken", "A") == []
    assert hosts_addresses(HOSTS, "localhost", "MX") == []
    assert hosts_addresses(HOSTS, "elsewhere", "A") == []


def hosts_file_ipv4(name: str) -> list[str]:
    try:
        return hosts_addresses(Path(HOSTS_FILE).read_text(), name, "A")
    except OSError:
        return []


@pytest.fixture(scope="module")
def netops() -> Iterator[ThreadedMcpServer]:
    with ThreadedMcpServer(build_server(NetopsSettings())) as server:
        yield server


async def test_localhost_is_answered_from_the_hosts_file(netops: ThreadedMcpServer) -> None:
    expected = hosts_file_ipv4("localhost")
    if not expected:
        pytest.skip(f"{HOSTS_FILE} has no IPv4 address for localhost here")
    async with mcp_client(netops.url) as client:
        answer = (await client.call("dns_lookup", name="localhost")).json()
    assert answer["ok"] is True and answer["status"] == "NOERROR"
    assert answer["records"] == expected and answer["source"] == "hosts file"
    assert all(ipaddress.ip_address(a).is_loopback for a in answer["records"])


async def test_a_nameserver_given_explicitly_is_asked_not_the_hosts_file(netops: ThreadedMcpServer) -> None:
    """Asking a particular server is a question about that server; a closed loopback port answers nothing."""
    from tests.harness.ports import free_port

    async with mcp_client(netops.url) as client:
        answer = (
            await client.call(
                "dns_lookup", name="localhost", nameserver=f"127.0.0.1:{free_port()}", timeout_seconds=1
            )
        ).json()
    assert answer["ok"] is False and "source" not in answer
