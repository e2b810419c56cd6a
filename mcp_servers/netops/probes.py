"""TCP, HTTP(S) and TLS checks: each resolves its target once, applies the address policy and the allowlist
to the addresses found, connects to those addresses only, and runs under a deadline. http_check does the
same for every connection (redirect hops included) through the guarded transport.

Network outcomes (refused, timed out, certificate rejected) are results with `ok: false` and an `error`
text, because they answer the question asked ("is it up?"). Allowlist refusals and unusable arguments
raise (TargetRefused, InvalidArgument) and become tool errors.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from ai_ops_api.addresses import AddressRefused, IPAddress, resolve_and_check
from ai_ops_common.guarded_transport import GuardedTransport
from mcp_servers.common import InvalidArgument
from mcp_servers.netops.allowlist import ALLOW_LOOPBACK, TargetPolicy, TargetRefused, refused_by_policy
from mcp_servers.netops.certificates import describe_certificate

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers worth showing for a health check; others on request. Never any that carry credentials.
DEFAULT_HEADERS = (
    "content-type",
    "content-length",
    "server",
    "location",
    "cache-control",
    "strict-transport-security",
    "retry-after",
    "www-authenticate",
)
CREDENTIAL_HEADERS = frozenset(
    {"set-cookie", "set-cookie2", "authorization", "proxy-authorization", "cookie"}
)


class ResolutionFailed(Exception):
    pass


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def select_headers(headers: Iterable[tuple[str, str]], wanted: Iterable[str]) -> dict[str, str]:
    """The `wanted` response headers (case-insensitive), repeated ones joined; credential headers never."""
    names = {name.lower() for name in wanted} - CREDENTIAL_HEADERS
    selected: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in names:
            selected[key] = f"{selected[key]}, {value}" if key in selected else value
    return selected


def error_text(error: BaseException) -> str:
    """An exception as one readable line (some network errors have an empty str())."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message}"
    text = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    return text


def root_cause(error: BaseException) -> BaseException:
    """The SSL or OS error under a wrapping library exception, when there is one (its text says more)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError | OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


async def admit(policy: TargetPolicy, host: str, port: int, timeout: float) -> list[IPAddress]:
    """Resolve `host` once and apply the address policy and the allowlist to what it resolved to: the
    addresses returned are the ones to connect to (never the name again, so no rebinding window)."""
    if not host:
        raise InvalidArgument("a host is required")
    if not 0 < port < 65536:
        raise InvalidArgument(f"port {port} is out of range 1-65535")
    try:
        with anyio.fail_after(timeout):
            return await resolve_and_check(
                host,
                port,
                allow_loopback=ALLOW_LOOPBACK,
                permit=policy.permits,
                extra_check=policy.check_allowlist,
            )
    except AddressRefused as error:
        raise refused_by_policy(error) from None
    except TimeoutError:
        failure = ResolutionFailed(f"resolving {host} took longer than {timeout:g}s")
    except OSError as error:
        failure = ResolutionFailed(f"cannot resolve {host}: {error_text(error)}")
    if policy.restricted and not policy.name_allowed(host):
        raise TargetRefused(f"target {host} cannot be resolved and is not allowed by name")
    raise failure


async def tcp_check(policy: TargetPolicy, host: str, port: int, timeout: float) -> dict[str, Any]:
    """Connect to each address of `host` in turn until one accepts; report the latency of the handshake."""
    result: dict[str, Any] = {"host": host, "port": port}
    deadline = time.monotonic() + timeout
    try:
        addresses = await admit(policy, host, port, timeout)
    except ResolutionFailed as error:
        return {**result, "ok": False, "reachable": False, "error": str(error)}
    failures: list[dict[str, str]] = []
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append({"address": str(address), "error": "no time left"})
            continue
        start = time.perf_counter()
        try:
            with anyio.fail_after(remaining):
                _, writer = await asyncio.open_connection(str(address), port)
        except TimeoutError:
            failures.append({"address": str(address), "error": f"timed out after {timeout:g}s"})
            continue
        except OSError as error:
            failures.append({"address": str(address), "error": error_text(error)})
            continue
        latency = elapsed_ms(start)
        writer.close()
        result.update(ok=True, reachable=True, address=str(address), latency_ms=latency)
        if failures:
            result["failed_addresses"] = failures
        return result
    summary = "; ".join(f"{failure['address']}: {failure['error']}" for failure in failures)
    return {**result, "ok": False, "reachable": False, "error": summary or "no address", "attempts": failures}


@dataclass(frozen=True)
class TrustSettings:
    """Where certificate verification gets its anchors: the system store plus an optional bundle file."""

    ca_bundle_file: str | None = None

    def context(self, ca_bundle_pem: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()  # system trust store, hostname checking on
        if self.ca_bundle_file:
            context.load_verify_locations(cafile=self.ca_bundle_file)
        if ca_bundle_pem:
            try:
                context.load_verify_locations(cadata=ca_bundle_pem)
            except (ssl.SSLError, ValueError) as error:
                raise InvalidArgument(f"ca_bundle_pem holds no usable PEM certificate: {error}") from None
        return context


def _redirect_target(response: httpx.Response, current: str) -> str | None:
    location = response.headers.get("location")
    if response.status_code not in REDIRECT_STATUSES or not location:
        return None
    return urljoin(current, location)


def _split_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidArgument(f"{url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port


async def http_check(
    policy: TargetPolicy,
    trust: TrustSettings,
    url: str,
    *,
    method: str = "GET",
    timeout: float,
    max_redirects: int,
    verify_tls: bool = True,
    ca_bundle_pem: str | None = None,
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    """Request `url` (no body is read), following up to `max_redirects` redirects, each hop allowlisted."""
    method = method.upper()
    if method not in ("GET", "HEAD"):
        raise InvalidArgument("method must be GET or HEAD (the check never sends data)")
    _split_url(url)
    verify: ssl.SSLContext | bool = trust.context(ca_bundle_pem) if verify_tls else False
    wanted_headers = [*DEFAULT_HEADERS, *headers]
    hops: list[dict[str, Any]] = []
    result: dict[str, Any] = {"url": url, "method": method}
    start = time.perf_counter()
    current = url

    async def resolve_target(host: str, port: int) -> list[IPAddress]:
        return await admit(policy, host, port, timeout)

    # Every connection, redirect hops included, goes to addresses `admit` returned (one lookup, checked).
    # Redirects are followed here, not by httpx, to report each hop.
    transport = GuardedTransport(resolve_target, verify=verify)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
        try:
            with anyio.fail_after(timeout):
                while True:
                    _split_url(current)
                    hop_start = time.perf_counter()
                    request = client.build_request(method, current, headers={"user-agent": "ai-ops-netops/1"})
                    response = await client.send(request, stream=True)
                    await response.aclose()  # headers are enough; the body may be large
                    next_url = _redirect_target(response, current)
                    if next_url is None:
                        break
                    hops.append(
                        {
                            "url": current,
                            "status": response.status_code,
                            "location": next_url,
                            "latency_ms": elapsed_ms(hop_start),
                        }
                    )
                    if len(hops) > max_redirects:
                        return {
                            **result,
                            "ok": False,
                            "status": response.status_code,
                            "redirects": hops,
                            "error": f"more than {max_redirects} redirects (a loop?)",
                        }
                    if response.status_code == 303:
                        method = "GET" if method != "HEAD" else method
                    current = next_url
        except TimeoutError:
            return {**result, "ok": False, "error": f"timed out after {timeout:g}s", "redirects": hops}
        except ResolutionFailed as error:
            return {**result, "ok": False, "error": str(error), "redirects": hops}
        except httpx.HTTPError as error:
            return {
                **result,
                "ok": False,
                "error": f"{current}: {error_text(root_cause(error))}",
                "redirects": hops,
            }
    return {
        **result,
        "ok": True,
        "final_url": current,
        "status": response.status_code,
        "reason": response.reason_phrase,
        "http_version": response.http_version,
        "latency_ms": elapsed_ms(start),
        "final_hop_latency_ms": elapsed_ms(hop_start) if hops else None,
        "redirects": hops,
        "headers": select_headers(response.headers.multi_items(), wanted_headers),
    }


@dataclass(frozen=True)
class Handshake:
    certificate_der: bytes | None
    tls_version: str | None
    cipher: str | None


async def _handshake(address: IPAddress, port: int, server_name: str, context: ssl.SSLContext) -> Handshake:
    _, writer = await asyncio.open_connection(str(address), port, ssl=context, server_hostname=server_name)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        cipher = ssl_object.cipher()
        return Handshake(
            certificate_der=ssl_object.getpeercert(binary_form=True),
            tls_version=ssl_object.version(),
            cipher=cipher[0] if cipher else None,
        )
    finally:
        writer.close()


async def tls_certificate(
    policy: TargetPolicy,
    trust: TrustSettings,
    host: str,
    port: int,
    *,
    server_name: str | None,
    timeout: float,
    ca_bundle_pem: str | None = None,
) -> dict[str, Any]:
    """The served certificate's fields and whether its chain and name verify against the trust anchors."""
    result: dict[str, Any] = {"host": host, "port": port}
    verifying = trust.context(ca_bundle_pem)
    deadline = time.monotonic() + timeout
    try:
        addresses = await admit(policy, host, port, timeout)
    except ResolutionFailed as error:
        return {**result, "ok": False, "error": str(error)}
    address = addresses[0]
    name = server_name or host
    result.update(address=str(address), server_name=name)
    # First handshake without verification, so that a bad certificate can still be described.
    inspecting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    inspecting.check_hostname = False
    inspecting.verify_mode = ssl.CERT_NONE
    try:
        with anyio.fail_after(max(0.0, deadline - time.monotonic())):
            handshake = await _handshake(address, port, name, inspecting)
    except TimeoutError:
        return {**result, "ok": False, "error": f"TLS handshake timed out after {timeout:g}s"}
    except (OSError, ssl.SSLError) as error:
        return {**result, "ok": False, "error": f"TLS handshake failed: {error_text(error)}"}
    if not handshake.certificate_der:
        return {**result, "ok": False, "error": "the server sent no certificate"}
    result.update(ok=True, tls_version=handshake.tls_version, cipher=handshake.cipher)
    result["certificate"] = describe_certificate(handshake.certificate_der, datetime.now(UTC))
    # Second handshake with verification: chain to a trusted root, validity dates and the name.
    try:
        with anyio.fail_after(max(0.0, deadline - time.monotonic())):
            await _handshake(address, port, name, verifying)
        result.update(chain_valid=True, verification_error=None)
    except TimeoutError:
        result.update(
            chain_valid=None, verification_error=f"verifying handshake timed out after {timeout:g}s"
        )
    except ssl.SSLCertVerificationError as error:
        result.update(chain_valid=False, verification_error=error.verify_message)
    except (OSError, ssl.SSLError) as error:
        result.update(chain_valid=False, verification_error=error_text(error))
    return result
