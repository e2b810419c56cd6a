"""The MCP server health state machine and the bounded-status-write rule. Pure.

``next_record(previous, result, check)`` folds one probe result into the server's health record:

- a failure counts towards ``failureThreshold``: at the threshold the server is ``Unhealthy``; below it a
  server keeps the state it had (a usable server stays usable until the threshold), and a new server
  stays ``Unknown``;
- HTTP 401/403 makes it ``Unauthenticated`` at once (retrying will not fix credentials);
- a success counts towards ``successThreshold``: at the threshold the server is ``Healthy``, or
  ``Degraded`` when the probe took longer than half the timeout (still usable); a server that is already
  usable stays usable from the first success on;
- ``Unhealthy`` servers keep being probed and recover by themselves.

``should_publish`` is the bounded-write rule: the probe fields of ``status`` are written when the result
changed (state, server info, tools, failures up to the threshold), else at most once every
``REFRESH_INTERVALS`` probe intervals, so probe timestamps of a stable server cost one status write
every ten intervals (five minutes at the default 30 s) instead of one per probe.

``record_from_status`` and ``probe_status_fields`` convert between a record and the probe fields of an
MCPServer's ``status``, both ways, so a restarted operator carries on where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ai_ops_api.specs import USABLE_HEALTH, HealthCheck, HealthState
from ai_ops_operator.core.conditions import rfc3339
from ai_ops_operator.core.snapshot import ServerHealth

# A stable server's status is refreshed (lastProbeTime, latency) once every this many probe intervals.
REFRESH_INTERVALS = 10
# Tool names kept in status (the CRD documents "at most 100").
MAX_TOOL_NAMES = 100
# States a probe can produce (Maintenance and NotProbed come from the spec, not from probing).
PROBED_STATES = frozenset(
    {
        HealthState.HEALTHY,
        HealthState.DEGRADED,
        HealthState.UNHEALTHY,
        HealthState.UNAUTHENTICATED,
        HealthState.UNKNOWN,
    }
)


@dataclass(frozen=True)
class ServerInfoData:
    name: str | None = None
    version: str | None = None
    protocol_version: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """One probe: did initialize + tools/list (and the health path) succeed, how long it took."""

    ok: bool
    latency_ms: int
    at: datetime
    # 401/403 from the server: the credentials are wrong or missing.
    unauthenticated: bool = False
    # The address policy refused the connection (the host resolved to a forbidden address).
    refused: bool = False
    # Why it failed (no secret values: built from status codes and exception types).
    error: str = ""
    server_info: ServerInfoData | None = None
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthRecord:
    """What the operator knows of one server's health; ``status`` is written from it."""

    state: HealthState = HealthState.UNKNOWN
    message: str = "not probed yet"
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    server_info: ServerInfoData | None = None
    tools: tuple[str, ...] = ()
    tool_count: int = 0
    last_probe_time: datetime | None = None
    last_latency_ms: int | None = None
    refused: bool = False

    def as_server_health(self) -> ServerHealth:
        return ServerHealth(self.state, self.tools, self.message, refused=self.refused)

    def signature(self, check: HealthCheck) -> tuple[object, ...]:
        """What makes a result "changed" for the bounded-write rule (not the timestamp or latency)."""
        return (
            self.state,
            self.message,
            self.server_info,
            self.tools,
            self.tool_count,
            self.refused,
            min(self.consecutive_failures, check.failure_threshold),
        )


def _success_message(result: ProbeResult, slow: bool, check: HealthCheck) -> str:
    count = len(result.tools)
    base = f"initialize and tools/list answered ({count} tool{'s' if count != 1 else ''})"
    if slow:
        return f"{base}, but slower than half the timeout ({check.timeout_seconds / 2:g} s)"
    return base


def next_record(previous: HealthRecord, result: ProbeResult, check: HealthCheck) -> HealthRecord:
    """Fold one probe result into the health record."""
    common = {"last_probe_time": result.at, "last_latency_ms": result.latency_ms}
    if result.ok:
        successes = previous.consecutive_successes + 1
        slow = result.latency_ms > check.timeout_seconds * 1000 / 2
        usable_before = previous.state in (HealthState.HEALTHY, HealthState.DEGRADED)
        if successes >= check.success_threshold or usable_before:
            state = HealthState.DEGRADED if slow else HealthState.HEALTHY
            message = _success_message(result, slow, check)
        else:
            state = previous.state
            message = (
                f"{successes} of {check.success_threshold} successful probes needed to become Healthy; "
                f"before: {previous.message}"
            )
        tools = tuple(sorted(result.tools))
        return HealthRecord(
            state=state,
            message=message,
            consecutive_failures=0,
            consecutive_successes=successes,
            server_info=result.server_info,
            tools=tools[:MAX_TOOL_NAMES],
            tool_count=len(tools),
            **common,  # type: ignore[arg-type]
        )
    failures = previous.consecutive_failures + 1
    if result.refused:
        # Like credentials, a refused address does not fix itself by retrying: Unhealthy at once.
        state = HealthState.UNHEALTHY
        message = result.error
    elif result.unauthenticated:
        state = HealthState.UNAUTHENTICATED
        message = result.error
    elif failures >= check.failure_threshold:
        state = HealthState.UNHEALTHY
        message = f"{check.failure_threshold} or more consecutive probes failed; last: {result.error}"
    elif previous.state in (HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY):
        # Below the threshold a usable server stays usable (one lost probe is not an outage).
        state = previous.state
        message = previous.message
    else:
        state = HealthState.UNKNOWN
        message = f"probe failed ({failures} of {check.failure_threshold} before Unhealthy): {result.error}"
    # Keep what the last successful probe found: it still describes the server.
    return replace(
        previous,
        state=state,
        message=message,
        consecutive_failures=failures,
        consecutive_successes=0,
        refused=result.refused,
        **common,  # type: ignore[arg-type]
    )


def should_publish(
    published: HealthRecord | None, current: HealthRecord, check: HealthCheck, now: datetime
) -> bool:
    """Whether the probe fields of ``status`` must be written now (the bounded-write rule)."""
    if published is None or published.last_probe_time is None:
        return True
    if published.signature(check) != current.signature(check):
        return True
    refresh_after = timedelta(seconds=check.interval_seconds * REFRESH_INTERVALS)
    return now - published.last_probe_time >= refresh_after


def is_usable(state: HealthState) -> bool:
    return state in USABLE_HEALTH


def _timestamp(value: object) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None  # written by someone else: no time is better than a failed pass
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _integer(value: object) -> int:
    try:
        return int(value or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def record_from_status(status: Mapping[str, Any] | None) -> HealthRecord | None:
    """The record a previous operator run published (so a restart neither flaps nor rewrites).

    Total: a status somebody else wrote with odd values yields what can be read of it, never an error.
    """
    if not status or not status.get("health"):
        return None
    try:
        state = HealthState(str(status["health"]))
    except ValueError:
        return None
    info = status.get("serverInfo")
    tools = status.get("tools")
    names = tuple(str(n) for n in tools.get("names") or ()) if isinstance(tools, Mapping) else ()
    count = _integer(tools.get("count")) if isinstance(tools, Mapping) else 0
    conditions = status.get("conditions")
    ready = next(
        (
            c
            for c in (conditions if isinstance(conditions, list) else ())
            if isinstance(c, Mapping) and c.get("type") == "Ready"
        ),
        None,
    )
    latency = status.get("lastProbeLatencyMs")
    return HealthRecord(
        state=state,
        message=str(ready.get("message", "")) if ready else "",
        consecutive_failures=_integer(status.get("consecutiveFailures")),
        consecutive_successes=0 if state not in (HealthState.HEALTHY, HealthState.DEGRADED) else 1,
        server_info=ServerInfoData(
            name=info.get("name"), version=info.get("version"), protocol_version=info.get("protocolVersion")
        )
        if isinstance(info, Mapping)
        else None,
        tools=names,
        tool_count=count,
        last_probe_time=_timestamp(status.get("lastProbeTime")),
        last_latency_ms=latency if isinstance(latency, int) else None,
        refused=state == HealthState.UNHEALTHY
        and ready is not None
        and ready.get("reason") == "URLNotAllowed",
    )


def probed_record_from_status(status: Mapping[str, Any] | None) -> HealthRecord | None:
    """The last probe result a status holds, or None when it holds none (never probed, Maintenance,
    NotProbed): where the prober starts after a restart."""
    record = record_from_status(status)
    return record if record is not None and record.state in PROBED_STATES else None


def probe_status_fields(record: HealthRecord) -> dict[str, Any]:
    """The probe fields of an MCPServer's ``status`` for a published record (the inverse of
    ``record_from_status``, ``health`` and the conditions aside: the verdict decides those)."""
    if record.last_probe_time is None:
        return {}
    fields: dict[str, Any] = {
        "consecutiveFailures": record.consecutive_failures,
        "lastProbeTime": rfc3339(record.last_probe_time),
        "lastProbeLatencyMs": record.last_latency_ms,
    }
    if record.server_info is not None:
        info = record.server_info
        fields["serverInfo"] = {
            k: v
            for k, v in (
                ("name", info.name),
                ("version", info.version),
                ("protocolVersion", info.protocol_version),
            )
            if v is not None
        }
    if record.tool_count or record.tools:
        fields["tools"] = {"count": record.tool_count, "names": list(record.tools)}
    return fields
