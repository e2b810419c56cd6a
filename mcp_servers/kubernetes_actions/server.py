"""The kubernetes-actions MCP server: the only bundled server that changes a cluster.

Five narrow actions (rollout restart, scale, delete a pod, cordon, uncordon), each a read of the one
object, a check in `actions` (namespaces, replica bounds) and a single write of the fields it names.
`dry_run` defaults to true and then uses the API server's own dry run (`dryRun=All`: admission and
validation run, nothing is stored), so the before/after shown is what the cluster would do. No tool takes
a manifest, a patch or a URL: what can change is fixed here, and RBAC bounds where.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    to_json,
)
from mcp_servers.kubernetes.cluster import KubernetesError
from mcp_servers.kubernetes.resources import NODE, POD
from mcp_servers.kubernetes_actions import actions
from mcp_servers.kubernetes_actions.actions import (
    OBJECT_NAME_PATTERN,
    RESTARTABLE_KINDS,
    SCALABLE_KINDS,
    ActionSettings,
)
from mcp_servers.kubernetes_actions.cluster import ActionCluster
from mcp_servers.tool_server import ToolServer

JSON = dict[str, Any]
P = ParamSpec("P")

INSTRUCTIONS = (
    "Changes to a Kubernetes cluster: rollout_restart, scale, delete_pod, cordon and uncordon. Every tool "
    "is a dry run unless dry_run=false: the API server checks the change and the answer shows the fields "
    "before and after, without changing anything. Run it for real only once the dry run shows the intended "
    "change. Scaling is bounded: at most --max-replicas, and one call changes the count by at most the "
    "current count or --max-scale-step, whichever is larger."
)

Namespace = Annotated[str, Field(min_length=1, max_length=63, description="the object's namespace")]
Name = Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253, description="object name")]
NodeName = Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253, description="node name")]
DryRun = Annotated[
    bool, Field(description="true (the default): only show what would change; false: make the change")
]


@dataclass(frozen=True)
class KubernetesActionsSettings:
    actions: ActionSettings = field(default_factory=ActionSettings)
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


def _hints(*, destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        readOnlyHint=False, destructiveHint=destructive, idempotentHint=idempotent, openWorldHint=False
    )


def _would(dry_run: bool, done: str, planned: str) -> str:
    return (
        f"dry run: {planned} (nothing was changed; call again with dry_run=false to do it)"
        if dry_run
        else done
    )


def build_server(
    cluster: ActionCluster,
    settings: KubernetesActionsSettings,
    *,
    host: str = "127.0.0.1",
    path: str = "/mcp",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastMCP:
    # Stateless JSON responses, as the other bundled servers: any replica answers any request.
    server = ToolServer(
        "ai-ops-kubernetes-actions",
        instructions=INSTRUCTIONS,
        host=host,
        streamable_http_path=path,
        stateless_http=True,
        json_response=True,
    )
    limits = settings.actions

    def reply(body: JSON) -> str:
        return cap_text(to_json(body), settings.max_response_bytes)

    @server.tool(annotations=_hints(destructive=False, idempotent=False), structured_output=False)
    @_tool_errors
    async def rollout_restart(
        kind: Literal["Deployment", "StatefulSet", "DaemonSet"],
        namespace: Namespace,
        name: Name,
        dry_run: DryRun = True,
    ) -> str:
        """Restart a workload's pods the way `kubectl rollout restart` does: set the pod template's
        kubectl.kubernetes.io/restartedAt annotation, and the controller replaces the pods following
        its update strategy. Each call starts a new rollout."""
        actions.check_namespace(limits, namespace)
        resource = RESTARTABLE_KINDS[kind]
        before = await cluster.read(resource, name, namespace)
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        after = await cluster.merge_patch(
            resource, name, namespace, actions.restart_patch(stamp), dry_run=dry_run
        )
        changes = actions.field_changes(before, after, [actions.restart_path()])
        where = f"{kind} {namespace}/{name}"
        message = _would(dry_run, f"{where} is restarting its pods", f"{where} would restart its pods")
        return reply(
            actions.answer(
                dry_run=dry_run,
                kind=resource,
                name=name,
                namespace=namespace,
                changes=changes,
                message=message,
            )
        )

    @server.tool(annotations=_hints(destructive=True, idempotent=True), structured_output=False)
    @_tool_errors
    async def scale(
        kind: Literal["Deployment", "StatefulSet"],
        namespace: Namespace,
        name: Name,
        replicas: Annotated[int, Field(description="the replica count wanted")],
        dry_run: DryRun = True,
    ) -> str:
        """Set a Deployment's or StatefulSet's replica count (spec.replicas). Bounded by the server:
        at most --max-replicas, and one call may change the count by at most the current count or
        --max-scale-step, whichever is larger (scale in steps beyond that). Zero stops every pod."""
        actions.check_namespace(limits, namespace)
        actions.check_replica_bounds(limits, replicas)
        resource = SCALABLE_KINDS[kind]
        before = await cluster.read(resource, name, namespace)
        current = actions.current_replicas(before)
        actions.check_scale_step(limits, current, replicas)
        where = f"{kind} {namespace}/{name}"
        if current == replicas:
            return reply(
                actions.answer(
                    dry_run=dry_run,
                    kind=resource,
                    name=name,
                    namespace=namespace,
                    changes=[],
                    message=f"{where} already has {replicas} replicas: nothing to change",
                )
            )
        version = (before.get("metadata") or {}).get("resourceVersion")
        after = await cluster.merge_patch(
            resource, name, namespace, actions.scale_patch(replicas, version), dry_run=dry_run
        )
        changes = [actions.change(("spec", "replicas"), current, actions.current_replicas(after))]
        message = _would(
            dry_run,
            f"{where} scaled from {current} to {replicas} replicas",
            f"{where} would scale from {current} to {replicas} replicas",
        )
        return reply(
            actions.answer(
                dry_run=dry_run,
                kind=resource,
                name=name,
                namespace=namespace,
                changes=changes,
                message=message,
            )
        )

    @server.tool(annotations=_hints(destructive=True, idempotent=True), structured_output=False)
    @_tool_errors
    async def delete_pod(namespace: Namespace, name: Name, dry_run: DryRun = True) -> str:
        """Delete one pod (with its normal grace period). A pod owned by a controller (ReplicaSet,
        StatefulSet, DaemonSet, Job) is replaced by it; a bare pod is gone for good."""
        actions.check_namespace(limits, namespace)
        pod = await cluster.read(POD, name, namespace)
        uid = (pod.get("metadata") or {}).get("uid")
        await cluster.delete_pod(name, namespace, dry_run=dry_run, uid=uid)
        changes = [{"field": "pod", "before": actions.pod_summary(pod), "after": None}]
        return reply(
            actions.answer(
                dry_run=dry_run,
                kind=POD,
                name=name,
                namespace=namespace,
                changes=changes,
                message=_would(
                    dry_run, actions.pod_deletion_message(pod, False), actions.pod_deletion_message(pod, True)
                ),
            )
        )

    async def set_unschedulable(node: str, unschedulable: bool, dry_run: bool) -> str:
        before = await cluster.read(NODE, node)
        was = bool((before.get("spec") or {}).get("unschedulable"))
        verb = "cordoned" if unschedulable else "uncordoned"
        if was == unschedulable:
            changes: list[JSON] = []
            message = f"node {node} is already {verb}: nothing to change"
        else:
            after = await cluster.merge_patch(
                NODE, node, None, actions.unschedulable_patch(unschedulable), dry_run=dry_run
            )
            # The API server drops a false unschedulable (it is the default): absent means schedulable.
            now_unschedulable = bool((after.get("spec") or {}).get("unschedulable"))
            changes = [actions.change(("spec", "unschedulable"), was, now_unschedulable)]
            effect = (
                "no new pods are scheduled there" if unschedulable else "pods may be scheduled there again"
            )
            message = _would(dry_run, f"node {node} {verb}: {effect}", f"node {node} would be {verb}")
        return reply(
            actions.answer(
                dry_run=dry_run, kind=NODE, name=node, namespace=None, changes=changes, message=message
            )
        )

    @server.tool(annotations=_hints(destructive=False, idempotent=True), structured_output=False)
    @_tool_errors
    async def cordon(node: NodeName, dry_run: DryRun = True) -> str:
        """Mark a node unschedulable (spec.unschedulable=true) like `kubectl cordon`: running pods stay,
        no new pods are placed there. Nothing is evicted."""
        return await set_unschedulable(node, True, dry_run)

    @server.tool(annotations=_hints(destructive=False, idempotent=True), structured_output=False)
    @_tool_errors
    async def uncordon(node: NodeName, dry_run: DryRun = True) -> str:
        """Make a cordoned node schedulable again (spec.unschedulable=false) like `kubectl uncordon`."""
        return await set_unschedulable(node, False, dry_run)

    add_health_route(server)
    return server
