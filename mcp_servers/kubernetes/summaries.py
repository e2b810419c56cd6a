"""Readable views of Kubernetes objects (pure: API JSON and a clock in, plain dicts out).

`*_row` functions give one compact line-like dict per object for lists (kubectl get, with a little more);
`describe_*` functions explain a workload's state and end with `findings`, sentences that say what is
wrong and why, as far as the objects and events show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
MAX_EVENTS_IN_DESCRIBE = 10


# ----------------------------------------------------------------------------------------------- helpers


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: str | None, now: datetime) -> str | None:
    """Like kubectl's AGE column: 45s, 12m, 5h, 3d."""
    moment = parse_time(value)
    if moment is None:
        return None
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _meta(obj: JSON) -> JSON:
    return obj.get("metadata") or {}


def _images(pod_spec: JSON | None) -> list[str]:
    return [container.get("image", "") for container in (pod_spec or {}).get("containers") or []]


def _condition_rows(conditions: Iterable[JSON] | None) -> list[JSON]:
    rows = []
    for condition in conditions or []:
        row = {"type": condition.get("type"), "status": condition.get("status")}
        for key in ("reason", "message"):
            if condition.get(key):
                row[key] = condition[key]
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- list rows


def pod_status(pod: JSON) -> str:
    """The STATUS column of `kubectl get pods`: the most telling reason, else the phase."""
    metadata, status = _meta(pod), pod.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "Terminating"
    if status.get("reason"):  # Evicted, NodeLost, ...
        return str(status["reason"])
    for index, container in enumerate(status.get("initContainerStatuses") or []):
        state = container.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode") == 0:
            continue
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = (state.get("terminated") or {}).get("reason")
        total = len(status.get("initContainerStatuses") or [])
        return f"Init:{waiting or terminated or f'{index}/{total}'}"
    reason = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and reason is None:
            reason = state["terminated"].get("reason") or "Terminated"
    return reason or str(status.get("phase") or "Unknown")


def _restarts(pod: JSON) -> int:
    return sum(
        int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def pod_row(pod: JSON, now: datetime) -> JSON:
    metadata, status, spec = _meta(pod), pod.get("status") or {}, pod.get("spec") or {}
    containers = status.get("containerStatuses") or []
    ready = sum(1 for container in containers if container.get("ready"))
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "status": pod_status(pod),
        "ready": f"{ready}/{len(spec.get('containers') or containers)}",
        "restarts": _restarts(pod),
        "node": spec.get("nodeName"),
        "ip": status.get("podIP"),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def deployment_row(deployment: JSON, now: datetime) -> JSON:
    metadata, spec, status = _meta(deployment), deployment.get("spec") or {}, deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    row = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "ready": f"{status.get('readyReplicas') or 0}/{desired}",
        "up_to_date": status.get("updatedReplicas") or 0,
        "available": status.get("availableReplicas") or 0,
        "images": _images((spec.get("template") or {}).get("spec")),
        "age": age(metadata.get("creationTimestamp"), now),
    }
    problems = [c for c in _condition_rows(status.get("conditions")) if c["status"] != "True"]
    if problems:
        row["failing_conditions"] = problems
    return row


def statefulset_row(statefulset: JSON, now: datetime) -> JSON:
    metadata, spec, status = (
        _meta(statefulset),
        statefulset.get("spec") or {},
        statefulset.get("status") or {},
    )
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "ready": f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
        "images": _images((spec.get("template") or {}).get("spec")),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def daemonset_row(daemonset: JSON, now: datetime) -> JSON:
    metadata, spec, status = _meta(daemonset), daemonset.get("spec") or {}, daemonset.get("status") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "desired": status.get("desiredNumberScheduled") or 0,
        "current": status.get("currentNumberScheduled") or 0,
        "ready": status.get("numberReady") or 0,
        "up_to_date": status.get("updatedNumberScheduled") or 0,
        "available": status.get("numberAvailable") or 0,
        "images": _images((spec.get("template") or {}).get("spec")),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def service_row(service: JSON, now: datetime) -> JSON:
    metadata, spec, status = _meta(service), service.get("spec") or {}, service.get("status") or {}
    ports = []
    for port in spec.get("ports") or []:
        text = f"{port.get('port')}/{port.get('protocol', 'TCP')}"
        if port.get("targetPort") not in (None, port.get("port")):
            text += f"->{port['targetPort']}"
        if port.get("nodePort"):
            text += f" (node {port['nodePort']})"
        ports.append(text)
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    external = [entry.get("ip") or entry.get("hostname") for entry in ingress] + list(
        spec.get("externalIPs") or []
    )
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "type": spec.get("type", "ClusterIP"),
        "cluster_ip": spec.get("clusterIP"),
        "external": external or None,
        "ports": ports,
        "selector": spec.get("selector"),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def node_row(node: JSON, now: datetime) -> JSON:
    metadata, spec, status = _meta(node), node.get("spec") or {}, node.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    state = "Ready" if ready else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = [label[len(prefix) :] for label in (metadata.get("labels") or {}) if label.startswith(prefix)]
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    pressure = [
        kind
        for kind, condition in conditions.items()
        if kind != "Ready" and condition.get("status") == "True"
    ]
    allocatable = status.get("allocatable") or {}
    return {
        "name": metadata.get("name"),
        "status": state,
        "roles": roles or None,
        "version": (status.get("nodeInfo") or {}).get("kubeletVersion"),
        "internal_ip": addresses.get("InternalIP"),
        "allocatable": {key: allocatable[key] for key in ("cpu", "memory", "pods") if key in allocatable},
        "pressure": pressure or None,
        "taints": [f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in spec.get("taints") or []]
        or None,
        "age": age(metadata.get("creationTimestamp"), now),
    }


def namespace_row(namespace: JSON, now: datetime) -> JSON:
    metadata = _meta(namespace)
    return {
        "name": metadata.get("name"),
        "status": (namespace.get("status") or {}).get("phase"),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def event_time(event: JSON) -> str | None:
    series = event.get("series") or {}
    return (
        event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or _meta(event).get("creationTimestamp")
    )


def event_row(event: JSON, now: datetime) -> JSON:
    involved = event.get("involvedObject") or {}
    return {
        "last_seen": age(event_time(event), now),
        "type": event.get("type"),
        "reason": event.get("reason"),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
        "namespace": _meta(event).get("namespace"),
        "message": event.get("message"),
        "count": event.get("count") or (event.get("series") or {}).get("count") or 1,
    }


def newest_first(events: Iterable[JSON]) -> list[JSON]:
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(events, key=lambda event: parse_time(event_time(event)) or epoch, reverse=True)


def involves(event: JSON, kind: str | None, name: str | None) -> bool:
    involved = event.get("involvedObject") or {}
    if kind and str(involved.get("kind", "")).lower() != kind.lower():
        return False
    return not name or involved.get("name") == name


ROW_BUILDERS: dict[str, Callable[[JSON, datetime], JSON]] = {
    "pods": pod_row,
    "deployments": deployment_row,
    "statefulsets": statefulset_row,
    "daemonsets": daemonset_row,
    "services": service_row,
    "nodes": node_row,
    "namespaces": namespace_row,
    "events": event_row,
}


# ----------------------------------------------------------------------------------------------- describe


def _state_text(state: JSON | None) -> str:
    state = state or {}
    if "running" in state:
        return f"running since {(state['running'] or {}).get('startedAt')}"
    if "waiting" in state:
        waiting = state["waiting"] or {}
        text = f"waiting: {waiting.get('reason', 'unknown reason')}"
        return text + (f" ({waiting['message']})" if waiting.get("message") else "")
    if "terminated" in state:
        terminated = state["terminated"] or {}
        return f"terminated: {terminated.get('reason', 'unknown reason')} (exit code {terminated.get('exitCode')})"
    return "unknown"


def _termination(state: JSON | None) -> JSON | None:
    terminated = (state or {}).get("terminated")
    if not terminated:
        return None
    details = {
        "reason": terminated.get("reason"),
        "exit_code": terminated.get("exitCode"),
        "finished_at": terminated.get("finishedAt"),
    }
    if terminated.get("message"):
        details["message"] = terminated["message"]
    return details


def _container_findings(container: JSON, spec_container: JSON, pod_phase: str | None) -> list[str]:
    name, restarts = container.get("name"), int(container.get("restartCount") or 0)
    state, last = container.get("state") or {}, _termination(container.get("lastState"))
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    findings = []
    last_text = ""
    if last:
        last_text = (
            f"; it last terminated with reason {last['reason']} (exit code {last['exit_code']})"
            f" at {last['finished_at']}"
        )
        if last.get("reason") == "OOMKilled":
            limit = ((spec_container.get("resources") or {}).get("limits") or {}).get("memory")
            last_text += f": it ran out of memory (memory limit {limit or 'not set'})"
    if reason == "CrashLoopBackOff":
        findings.append(f"container {name} is crash-looping ({restarts} restarts){last_text}")
    elif reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
        findings.append(
            f"container {name} cannot pull its image {container.get('image')}: {waiting.get('message', reason)}"
        )
    elif reason in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
        findings.append(f"container {name} cannot start ({reason}): {waiting.get('message', 'no message')}")
    elif reason and reason != "ContainerCreating":
        findings.append(f"container {name} is waiting: {reason} {waiting.get('message', '')}".rstrip())
    elif "terminated" in state and (state["terminated"] or {}).get("exitCode") not in (0, None):
        current = _termination(state) or {}
        findings.append(
            f"container {name} exited with reason {current.get('reason')} (exit code {current.get('exit_code')})"
        )
    elif restarts and last:
        findings.append(f"container {name} has restarted {restarts} times{last_text}")
    if "running" in state and not container.get("ready") and pod_phase == "Running":
        findings.append(f"container {name} is running but not ready (its readiness probe is failing?)")
    return findings


def _event_lines(events: list[JSON], now: datetime) -> list[JSON]:
    return [event_row(event, now) for event in newest_first(events)[:MAX_EVENTS_IN_DESCRIBE]]


def describe_pod(pod: JSON, warning_events: list[JSON], now: datetime) -> JSON:
    """Phase, conditions, each container's state, restarts and last termination, recent warnings, findings."""
    metadata, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    spec_containers = {c.get("name"): c for c in spec.get("containers") or []}
    phase = status.get("phase")
    containers, findings = [], []
    for group, statuses in (
        ("init", status.get("initContainerStatuses")),
        ("app", status.get("containerStatuses")),
    ):
        for container in statuses or []:
            row: JSON = {
                "name": container.get("name"),
                "image": container.get("image"),
                "ready": bool(container.get("ready")),
                "restarts": int(container.get("restartCount") or 0),
                "state": _state_text(container.get("state")),
            }
            if group == "init":
                row["init"] = True
            last = _termination(container.get("lastState"))
            if last:
                row["last_termination"] = last
            containers.append(row)
            if group == "app" or "terminated" not in (container.get("state") or {}):
                findings.extend(
                    _container_findings(container, spec_containers.get(container.get("name")) or {}, phase)
                )
    conditions = _condition_rows(status.get("conditions"))
    scheduled = next((c for c in conditions if c["type"] == "PodScheduled"), None)
    if scheduled and scheduled["status"] == "False":
        findings.append(f"the pod is not scheduled: {scheduled.get('message') or scheduled.get('reason')}")
    if status.get("reason"):
        findings.append(f"the pod is {status['reason']}: {status.get('message', '')}".rstrip(": "))
    if phase == "Pending" and not status.get("containerStatuses") and not findings:
        findings.append("the pod is pending and no container has started yet")
    findings.extend(_event_findings(warning_events))
    if not findings:
        findings.append("all containers are running and ready; no recent warning events")
    return {
        "kind": "Pod",
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "status": pod_status(pod),
        "phase": phase,
        "node": spec.get("nodeName"),
        "ip": status.get("podIP"),
        "age": age(metadata.get("creationTimestamp"), now),
        "owner": [f"{o.get('kind')}/{o.get('name')}" for o in metadata.get("ownerReferences") or []] or None,
        "conditions": conditions,
        "containers": containers,
        "warning_events": _event_lines(warning_events, now),
        "findings": findings,
    }


def _event_findings(warning_events: list[JSON]) -> list[str]:
    """One sentence per distinct warning reason (newest message), so repeated events do not drown the rest."""
    seen: dict[str, str] = {}
    for event in newest_first(warning_events):
        reason = str(event.get("reason"))
        if reason not in seen:
            involved = event.get("involvedObject") or {}
            seen[reason] = (
                f"warning {reason} on {involved.get('kind')}/{involved.get('name')}: {event.get('message')}"
            )
    return list(seen.values())[:5]


def describe_workload(
    kind: str, workload: JSON, pods: list[JSON], warning_events: list[JSON], now: datetime
) -> JSON:
    """A Deployment, StatefulSet or DaemonSet: replica counts, conditions, its pods and their findings."""
    metadata, spec, status = _meta(workload), workload.get("spec") or {}, workload.get("status") or {}
    findings: list[str] = []
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        replicas = {
            "desired": desired,
            "current": status.get("currentNumberScheduled") or 0,
            "ready": status.get("numberReady") or 0,
            "updated": status.get("updatedNumberScheduled") or 0,
            "available": available,
            "misscheduled": status.get("numberMisscheduled") or 0,
        }
    else:
        desired = int(spec.get("replicas", 1))
        available = int(status.get("availableReplicas") or status.get("readyReplicas") or 0)
        replicas = {
            "desired": desired,
            "ready": status.get("readyReplicas") or 0,
            "updated": status.get("updatedReplicas") or 0,
            "available": available,
        }
    if available < desired:
        findings.append(f"{available} of {desired} replicas are available")
    conditions = _condition_rows(status.get("conditions"))
    for condition in conditions:
        healthy = condition["status"] == "True"
        if condition["type"] == "ReplicaFailure" and healthy:
            findings.append(f"replica failure: {condition.get('message') or condition.get('reason')}")
        elif condition["type"] in ("Available", "Progressing") and not healthy:
            findings.append(
                f"condition {condition['type']} is {condition['status']}: "
                f"{condition.get('reason', '')} {condition.get('message', '')}".rstrip()
            )
    pod_rows = []
    for pod in pods:
        pod_events = [e for e in warning_events if involves(e, "Pod", _meta(pod).get("name"))]
        pod_description = describe_pod(pod, pod_events, now)
        row = pod_row(pod, now)
        problems = [f for f in pod_description["findings"] if not f.startswith("all containers are running")]
        if problems:
            row["findings"] = problems
            findings.extend(
                f"pod {row['name']}: {problem}" for problem in problems if not problem.startswith("warning ")
            )
        pod_rows.append(row)
    own_events = [e for e in warning_events if not involves(e, "Pod", None)]
    findings.extend(_event_findings(own_events))
    if not pods and desired:
        findings.append("no pods match the selector")
    if not findings:
        findings.append("all replicas are available; no recent warning events")
    return {
        "kind": kind,
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "age": age(metadata.get("creationTimestamp"), now),
        "replicas": replicas,
        "selector": spec.get("selector"),
        "images": _images((spec.get("template") or {}).get("spec")),
        "strategy": (spec.get("strategy") or spec.get("updateStrategy") or {}).get("type"),
        "conditions": conditions,
        "pods": pod_rows,
        "warning_events": _event_lines(warning_events, now),
        "findings": findings,
    }
