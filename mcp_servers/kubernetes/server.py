"""The read-only Kubernetes MCP server: a thin FastMCP layer over `cluster` (I/O) and the pure views.

Every answer is JSON text (logs: plain text) capped at `max_response_bytes`; API failures and bad
arguments are ToolErrors with a clear sentence. Secret data never reaches a response: Secrets are
listed through `secret_summary` only, every returned object passes `clean_object`, and summaries,
events and logs pass `scrub` / `redact_text` (credentials by their shape or the name before them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, Literal, ParamSpec

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_servers.common import (
    DEFAULT_MAX_RESPONSE_BYTES,
    InvalidArgument,
    add_health_route,
    cap_text,
    cap_text_keep_end,
    fit_items,
    to_json,
)
from mcp_servers.kubernetes.cluster import Cluster, KubernetesError
from mcp_servers.kubernetes.redaction import clean_object, redact_text, scrub, secret_summary
from mcp_servers.kubernetes.resources import (
    EVENT,
    NAMESPACE,
    POD,
    READABLE_KINDS,
    SECRET,
    WORKLOAD_KINDS,
    ReadableKind,
    WorkloadKind,
)
from mcp_servers.kubernetes.selectors import (
    labels_match,
    parse_label_selector,
    requirements_of,
    selector_string,
)
from mcp_servers.kubernetes.summaries import ROW_BUILDERS, describe_pod, event_row, involves, newest_first
from mcp_servers.kubernetes.summaries import describe_workload as describe_workload_state
from mcp_servers.tool_server import ToolServer

JSON = dict[str, Any]
P = ParamSpec("P")
MAX_TAIL_LINES = 2000
MAX_EVENTS = 500
# Read at most this much log from the API; the answer keeps the newest part that fits the response cap.
LOG_READ_LIMIT_BYTES = 4 * 1024 * 1024

INSTRUCTIONS = (
    "Read-only access to a Kubernetes cluster: list and get pods, deployments, statefulsets, daemonsets, "
    "services and nodes; events; pod logs; describe_workload explains why a workload is unhealthy. "
    "Start with describe_workload for 'why is X failing' questions. Secret values are never shown."
)

Namespace = Annotated[str | None, Field(description="namespace; omit for all namespaces")]
Name = Annotated[str, Field(description="object name")]
LabelSelector = Annotated[
    str | None, Field(description="label selector, e.g. app=web,tier!=cache or env in (prod,staging)")
]


@dataclass(frozen=True)
class KubernetesSettings:
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def _tool_errors(function: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
    """Our failures as ToolErrors carrying only their sentence (FastMCP prefixes the tool name)."""

    @wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            return await function(*args, **kwargs)
        except (KubernetesError, InvalidArgument) as error:
            raise ToolError(str(error)) from None

    return wrapper


def _list_envelope(kind: str, namespace: str | None, count: int, more_on_server: bool) -> JSON:
    envelope: JSON = {"kind": kind, "namespace": namespace or "(all)", "count": count}
    if more_on_server:
        envelope["note"] = "the API holds more objects than one page: narrow by namespace or label selector"
    return envelope


def _redacted_log(text: str, limit: int) -> str:
    """The newest part of a log that fits, redacted. Capped first: redacting megabytes the answer drops
    anyway would take seconds. A cut line is dropped whole, since half a credential matches no pattern."""
    hint = "lower tail_lines"
    kept = cap_text_keep_end(text, limit, hint)
    if kept != text:
        note, _, tail = kept.partition("\n")
        kept = note + "\n" + tail.partition("\n")[2]
    return cap_text_keep_end(redact_text(kept), limit, hint)


def build_server(
    cluster: Cluster, settings: KubernetesSettings, *, host: str = "127.0.0.1", path: str = "/mcp"
) -> FastMCP:
    # Stateless JSON responses: any replica answers any request; restarts do not break client sessions.
    server = ToolServer(
        "ai-ops-kubernetes",
        instructions=INSTRUCTIONS,
        host=host,
        streamable_http_path=path,
        stateless_http=True,
        json_response=True,
    )
    limit = settings.max_response_bytes
    read_only = ToolAnnotations(
        readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False
    )

    def now() -> datetime:
        return datetime.now(UTC)

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def list_namespaces() -> str:
        """List the cluster's namespaces with their phase and age."""
        result = await cluster.list(NAMESPACE)
        rows = [scrub(ROW_BUILDERS["namespaces"](item, now())) for item in result.items]
        return fit_items(
            _list_envelope("namespaces", None, len(rows), result.more_on_server), "items", rows, limit
        )

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def list_resources(
        kind: ReadableKind,
        namespace: Namespace = None,
        label_selector: LabelSelector = None,
        name_contains: Annotated[
            str | None, Field(description="only objects whose name contains this")
        ] = None,
    ) -> str:
        """List pods, deployments, statefulsets, daemonsets, services or nodes as one summary row each
        (status, readiness, restarts, images, age...). Nodes ignore namespace."""
        resource = READABLE_KINDS[kind]
        requirements = parse_label_selector(label_selector) if label_selector else []
        result = await cluster.list(resource, namespace, label_selector=selector_string(requirements) or None)
        items = [
            item
            for item in result.items
            if labels_match((item.get("metadata") or {}).get("labels"), requirements)
            and (not name_contains or name_contains in str((item.get("metadata") or {}).get("name", "")))
        ]
        rows = [scrub(ROW_BUILDERS[kind](item, now())) for item in items]
        envelope = _list_envelope(
            kind, namespace if resource.namespaced else None, len(rows), result.more_on_server
        )
        return fit_items(
            envelope, "items", rows, limit, "narrow by namespace, label_selector or name_contains"
        )

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def get_resource(kind: ReadableKind, name: Name, namespace: Namespace = None) -> str:
        """Get one object in full (spec and status). Env values that come from Secrets show as
        secretKeyRef references. Nodes ignore namespace."""
        resource = READABLE_KINDS[kind]
        obj = await cluster.read(resource, name, namespace)
        obj.setdefault("kind", resource.kind)
        return cap_text(
            to_json(clean_object(obj)), limit, "use list_resources or describe_workload for a summary"
        )

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def list_events(
        namespace: Namespace = None,
        involved_kind: Annotated[
            str | None, Field(description="kind of the involved object, e.g. Pod")
        ] = None,
        involved_name: Annotated[str | None, Field(description="name of the involved object")] = None,
        type: Annotated[
            Literal["Normal", "Warning"] | None, Field(description="only this event type")
        ] = None,
        limit_events: Annotated[int, Field(ge=1, le=MAX_EVENTS, description="newest events to return")] = 50,
    ) -> str:
        """List events, newest first, optionally only those about one object or only warnings."""
        fields = [
            f"{key}={value}"
            for key, value in (
                ("involvedObject.kind", involved_kind),
                ("involvedObject.name", involved_name),
                ("type", type),
            )
            if value
        ]
        result = await cluster.list(EVENT, namespace, field_selector=",".join(fields) or None)
        events = [
            event
            for event in result.items
            if involves(event, involved_kind, involved_name) and (not type or event.get("type") == type)
        ]
        rows = [scrub(event_row(event, now())) for event in newest_first(events)[:limit_events]]
        envelope = _list_envelope("events", namespace, len(rows), result.more_on_server)
        return fit_items(envelope, "items", rows, limit, "filter by involved object or type=Warning")

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def get_pod_logs(
        name: Name,
        namespace: Annotated[str, Field(description="the pod's namespace")],
        container: Annotated[
            str | None, Field(description="container name; required if the pod has several")
        ] = None,
        tail_lines: Annotated[int, Field(ge=1, le=MAX_TAIL_LINES, description="last lines to return")] = 200,
        since_seconds: Annotated[int | None, Field(ge=1, description="only lines newer than this")] = None,
        previous: Annotated[
            bool, Field(description="logs of the previous (crashed) container instance")
        ] = False,
    ) -> str:
        """Read a pod's logs: the last tail_lines lines (at most 2000), optionally of the previous,
        crashed instance (previous=true), which is where a crash-looping container's error is."""
        text = await cluster.pod_log(
            name,
            namespace,
            container=container,
            tail_lines=tail_lines,
            since_seconds=since_seconds,
            previous=previous,
            limit_bytes=LOG_READ_LIMIT_BYTES,
        )
        return _redacted_log(text or "(no log lines)", limit)

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def describe_workload(
        kind: WorkloadKind,
        name: Name,
        namespace: Annotated[str, Field(description="the workload's namespace")],
    ) -> str:
        """Explain a pod's or workload's state: replica counts, conditions, each container's state,
        restarts and last termination reason, recent warning events, and findings (what is wrong)."""
        resource = WORKLOAD_KINDS[kind]
        obj = await cluster.read(resource, name, namespace)
        notes: list[str] = []
        if resource is POD:
            events = await _warning_events(namespace, notes, {("Pod", name)})
            description = describe_pod(obj, events, now())
        else:
            requirements = requirements_of((obj.get("spec") or {}).get("selector"))
            pods: list[JSON] = []
            if requirements:
                listed = await cluster.list(POD, namespace, label_selector=selector_string(requirements))
                pods = [
                    p
                    for p in listed.items
                    if labels_match((p.get("metadata") or {}).get("labels"), requirements)
                ]
            wanted = {(resource.kind, name)} | {("Pod", (p.get("metadata") or {}).get("name")) for p in pods}
            events = await _warning_events(namespace, notes, wanted, replicaset_prefix=f"{name}-")
            description = describe_workload_state(resource.kind, obj, pods, events, now())
        if notes:
            description["notes"] = notes
        return cap_text(to_json(scrub(description)), limit, "use list_events or get_resource for details")

    async def _warning_events(
        namespace: str, notes: list[str], wanted: set[tuple[str, Any]], replicaset_prefix: str | None = None
    ) -> list[JSON]:
        """Warning events about the `wanted` (kind, name) objects; a failure is a note, not an error."""
        try:
            result = await cluster.list(EVENT, namespace, field_selector="type=Warning")
        except KubernetesError as error:
            notes.append(f"events unavailable: {error}")
            return []
        selected = []
        for event in result.items:
            involved = event.get("involvedObject") or {}
            key = (involved.get("kind"), involved.get("name"))
            is_replicaset = (
                replicaset_prefix is not None
                and involved.get("kind") == "ReplicaSet"
                and str(involved.get("name", "")).startswith(replicaset_prefix)
            )
            if event.get("type") == "Warning" and (key in wanted or is_replicaset):
                selected.append(event)
        return selected

    @server.tool(annotations=read_only, structured_output=False)
    @_tool_errors
    async def list_secrets(namespace: Namespace = None) -> str:
        """List Secrets by name and type only. Secret data is never returned by any tool."""
        result = await cluster.list(SECRET, namespace)
        rows = [secret_summary(secret) for secret in result.items]
        envelope = _list_envelope("secrets", namespace, len(rows), result.more_on_server)
        return fit_items(envelope, "items", rows, limit, "give a namespace")

    add_health_route(server)
    return server
