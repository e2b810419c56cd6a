"""The resource kinds the server reads, and how each maps onto the `kubernetes` client's API classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ResourceKind:
    plural: str  # as in RBAC rules and URLs: "pods"
    kind: str  # "Pod"
    api_class: str  # class in kubernetes.client: "CoreV1Api"
    method_noun: str  # the client's method names: list_namespaced_<noun>, read_<noun>
    group: str  # RBAC API group: "" for core
    namespaced: bool


POD = ResourceKind("pods", "Pod", "CoreV1Api", "pod", "", True)
DEPLOYMENT = ResourceKind("deployments", "Deployment", "AppsV1Api", "deployment", "apps", True)
STATEFULSET = ResourceKind("statefulsets", "StatefulSet", "AppsV1Api", "stateful_set", "apps", True)
DAEMONSET = ResourceKind("daemonsets", "DaemonSet", "AppsV1Api", "daemon_set", "apps", True)
SERVICE = ResourceKind("services", "Service", "CoreV1Api", "service", "", True)
NODE = ResourceKind("nodes", "Node", "CoreV1Api", "node", "", False)
EVENT = ResourceKind("events", "Event", "CoreV1Api", "event", "", True)
NAMESPACE = ResourceKind("namespaces", "Namespace", "CoreV1Api", "namespace", "", False)
SECRET = ResourceKind("secrets", "Secret", "CoreV1Api", "secret", "", True)
REPLICASET = ResourceKind("replicasets", "ReplicaSet", "AppsV1Api", "replica_set", "apps", True)

# What list_resources / get_resource accept (events, namespaces and secrets have their own tools).
ReadableKind = Literal["pods", "deployments", "statefulsets", "daemonsets", "services", "nodes"]
READABLE_KINDS: dict[str, ResourceKind] = {
    kind.plural: kind for kind in (POD, DEPLOYMENT, STATEFULSET, DAEMONSET, SERVICE, NODE)
}
WorkloadKind = Literal["pod", "deployment", "statefulset", "daemonset"]
WORKLOAD_KINDS: dict[str, ResourceKind] = {
    "pod": POD,
    "deployment": DEPLOYMENT,
    "statefulset": STATEFULSET,
    "daemonset": DAEMONSET,
}
