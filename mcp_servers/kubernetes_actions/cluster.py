"""The write calls of the kubernetes-actions server, on the read-only server's connection code.

Reads and error wording are the read-only server's (`Cluster.read`, errors.py); this adds the only two
writes the tools make: a JSON merge patch and a pod deletion, each optionally a server-side dry run.
"""

from __future__ import annotations

import json

from mcp_servers.kubernetes.cluster import JSON, Cluster, connect
from mcp_servers.kubernetes.errors import ApiCall
from mcp_servers.kubernetes.resources import POD, ResourceKind

# Explicit: the generated client would otherwise label a dict body as a JSON patch (a list of operations).
MERGE_PATCH = "application/merge-patch+json"
# The dryRun value the API server knows: every stage (admission, validation) runs, nothing is stored.
DRY_RUN_ALL = "All"
FIELD_MANAGER = "ai-ops-kubernetes-actions"


class ActionCluster(Cluster):
    async def merge_patch(
        self, kind: ResourceKind, name: str, namespace: str | None, patch: JSON, *, dry_run: bool
    ) -> JSON:
        """The object as stored after the patch (with dry_run: as it would be; nothing is stored)."""
        call = ApiCall("patch", kind.plural, kind.group, namespace if kind.namespaced else None, name)
        target = (name, namespace) if kind.namespaced else (name,)
        method = f"patch_namespaced_{kind.method_noun}" if kind.namespaced else f"patch_{kind.method_noun}"
        raw = await self._request(
            call,
            kind.api_class,
            method,
            *target,
            patch,
            dry_run=DRY_RUN_ALL if dry_run else None,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
        obj: JSON = json.loads(raw)
        return obj

    async def delete_pod(self, name: str, namespace: str, *, dry_run: bool, uid: str | None) -> None:
        """Delete one pod, only the incarnation that was read (`uid` precondition): a pod of the same name
        created in between (a StatefulSet's replacement) is not deleted by this call."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        call = ApiCall("delete", POD.plural, POD.group, namespace, name)
        options = V1DeleteOptions(
            dry_run=[DRY_RUN_ALL] if dry_run else None,
            preconditions=V1Preconditions(uid=uid) if uid else None,
        )
        await self._request(
            call,
            POD.api_class,
            "delete_namespaced_pod",
            name,
            namespace,
            body=options,
            dry_run=DRY_RUN_ALL if dry_run else None,
        )


def connect_actions(kubeconfig: str | None = None, context: str | None = None) -> ActionCluster:
    """`connect` of the read-only server (kubeconfig, else in-cluster), as an ActionCluster."""
    cluster = connect(kubeconfig=kubeconfig, context=context)
    return ActionCluster(api_client=cluster.api_client, host=cluster.host, source=cluster.source)
