"""The pure core of the kubernetes-actions server: what each action may do, the patch it sends, and the
before/after of the fields it touches. No I/O: the server reads the object, asks here, then writes.

Every limit is checked here before any API call, so a refused action costs the cluster nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mcp_servers.common import InvalidArgument
from mcp_servers.kubernetes.resources import (
    DAEMONSET,
    DEPLOYMENT,
    STATEFULSET,
    ResourceKind,
)

JSON = dict[str, Any]
# A DNS-1123 label, as every namespace name is; object names are DNS-1123 subdomains.
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
DEFAULT_MAX_REPLICAS = 50
DEFAULT_MAX_SCALE_STEP = 5
# The hard ceiling of --max-replicas: a typo such as 50000 must not become a usable bound.
MAX_REPLICAS_CEILING = 10_000

RESTARTABLE_KINDS: dict[str, ResourceKind] = {
    "Deployment": DEPLOYMENT,
    "StatefulSet": STATEFULSET,
    "DaemonSet": DAEMONSET,
}
SCALABLE_KINDS: dict[str, ResourceKind] = {"Deployment": DEPLOYMENT, "StatefulSet": STATEFULSET}


@dataclass(frozen=True)
class ActionSettings:
    """The administrator's limits (command-line flags); nothing a tool call can change."""

    max_replicas: int = DEFAULT_MAX_REPLICAS
    max_scale_step: int = DEFAULT_MAX_SCALE_STEP
    # Empty: any namespace the service account's RBAC allows.
    namespaces: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0 <= self.max_replicas <= MAX_REPLICAS_CEILING:
            raise ValueError(f"max replicas must be between 0 and {MAX_REPLICAS_CEILING}")
        if self.max_scale_step < 0:
            raise ValueError("max scale step must not be negative")


def parse_namespaces(text: str | None) -> frozenset[str]:
    """`--namespaces a,b`: the allowed namespaces (empty for none given); refuses names no namespace has."""
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    for name in names:
        check_namespace_name(name)
    return frozenset(names)


def check_namespace_name(name: str) -> None:
    if not NAMESPACE_NAME.fullmatch(name):
        raise InvalidArgument(f"{name!r} is not a namespace name (lowercase letters, digits and '-')")


def check_namespace(settings: ActionSettings, namespace: str) -> None:
    """Refuse a namespace outside `--namespaces` (when set) before the API is asked anything."""
    check_namespace_name(namespace)
    if settings.namespaces and namespace not in settings.namespaces:
        allowed = ", ".join(sorted(settings.namespaces))
        raise InvalidArgument(
            f"namespace {namespace} is not one this server may change (allowed: {allowed}); "
            "the administrator sets them with --namespaces"
        )


def scale_step_allowed(current: int, wanted: int, max_step: int) -> bool:
    """The scale rule: one call changes the replica count by at most `max_step` or by the current count,
    whichever is larger. So 2 -> 7 and 10 -> 20 (doubling) pass with the default step 5; 2 -> 40 does not
    (do it in steps, looking at the result in between); scaling down to zero always passes."""
    return abs(wanted - current) <= max(max_step, current)


def check_replica_bounds(settings: ActionSettings, wanted: int) -> None:
    """The bounds that need no current count: checked before any API call."""
    if wanted < 0:
        raise InvalidArgument("replicas must not be negative")
    if wanted > settings.max_replicas:
        raise InvalidArgument(
            f"{wanted} replicas is above this server's limit of {settings.max_replicas} (--max-replicas)"
        )


def check_scale_step(settings: ActionSettings, current: int, wanted: int) -> None:
    if not scale_step_allowed(current, wanted, settings.max_scale_step):
        largest = max(settings.max_scale_step, current)
        raise InvalidArgument(
            f"scaling from {current} to {wanted} replicas is too large a step: one call may change the count "
            f"by at most {largest} (the current count or --max-scale-step {settings.max_scale_step}, "
            "whichever is larger); scale in smaller steps"
        )


def current_replicas(obj: JSON) -> int:
    """spec.replicas, which the API server defaults to 1 when a manifest leaves it out."""
    replicas = (obj.get("spec") or {}).get("replicas")
    return int(replicas) if isinstance(replicas, int) else 1


# --- patches (JSON merge patches: each touches exactly the fields it names) --------------------------


def restart_patch(timestamp: str) -> JSON:
    """What `kubectl rollout restart` sends: a new pod-template annotation, so the controller rolls."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: timestamp}}}}}


def scale_patch(replicas: int, resource_version: str | None) -> JSON:
    """spec.replicas, conditional on the version read: if someone scaled in between, the API answers 409
    instead of this call overriding a count the step rule never saw."""
    patch: JSON = {"spec": {"replicas": replicas}}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def unschedulable_patch(unschedulable: bool) -> JSON:
    return {"spec": {"unschedulable": unschedulable}}


# --- what changed ----------------------------------------------------------------------------------


def field_at(obj: JSON, path: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def restart_path() -> tuple[str, ...]:
    return ("spec", "template", "metadata", "annotations", RESTARTED_AT)


def change(path: tuple[str, ...], before: Any, after: Any) -> JSON:
    """One touched field as the answer shows it: its dotted path (annotation keys kept whole)."""
    shown = ".".join(path[:4]) + (f"[{path[4]}]" if len(path) > 4 else "")
    return {"field": shown, "before": before, "after": after}


def field_changes(before: JSON, after: JSON, paths: list[tuple[str, ...]]) -> list[JSON]:
    """before/after of each touched field whose value differs (an absent field shows as null)."""
    changes = []
    for path in paths:
        old, new = field_at(before, path), field_at(after, path)
        if old != new:
            changes.append(change(path, old, new))
    return changes


def target(kind: ResourceKind, name: str, namespace: str | None) -> JSON:
    return {"kind": kind.kind, "namespace": namespace, "name": name}


def answer(
    *, dry_run: bool, kind: ResourceKind, name: str, namespace: str | None, changes: list[JSON], message: str
) -> JSON:
    return {
        "ok": True,
        "dryRun": dry_run,
        "target": target(kind, name, namespace),
        "changes": changes,
        "message": message,
    }


def pod_summary(pod: JSON) -> JSON:
    """What deleting a pod removes, and whether a controller will replace it."""
    meta = pod.get("metadata") or {}
    owners = [
        f"{o.get('kind')}/{o.get('name')}" for o in meta.get("ownerReferences") or () if o.get("controller")
    ]
    return {
        "phase": (pod.get("status") or {}).get("phase"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "controlledBy": owners[0] if owners else None,
    }


def pod_deletion_message(pod: JSON, dry_run: bool) -> str:
    summary = pod_summary(pod)
    name = (pod.get("metadata") or {}).get("name")
    verb = "would be deleted" if dry_run else "deleted"
    if summary["controlledBy"]:
        return f"pod {name} {verb}; its controller {summary['controlledBy']} creates a replacement"
    return f"pod {name} {verb}; it has no controller, so nothing replaces it"
