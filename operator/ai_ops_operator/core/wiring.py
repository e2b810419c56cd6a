"""What the operator writes besides status, computed purely: the agent ConfigMap, the runbook shard
ConfigMaps and the Secret wiring of the chat Deployment.

The chat Deployment gets one projected volume, ``ai-ops-secrets``, holding every referenced Secret key at
``<secret-name>/<key>``, mounted read-only at ``/var/run/secrets/ai-ops`` in every container. Every other
volume and mount is kept as it is. The pod template carries the checksum of the SET of referenced keys
(``ai-ops.dev/secret-refs-checksum``), so only a change of that set patches the template and rolls the
pods; a rotated value in an existing Secret reaches the pods through the kubelet's projected-volume refresh.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ai_ops_api.agent_config import (
    AGENT_CONFIG_DATA_KEY,
    RUNBOOK_SHARD_DATA_KEY,
    SECRETS_MOUNT_PATH,
    AgentConfig,
    RunbookShard,
)

CHECKSUM_ANNOTATION = "ai-ops.dev/checksum"
SECRET_REFS_ANNOTATION = "ai-ops.dev/secret-refs-checksum"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "ai-ops-operator"
SECRETS_VOLUME = "ai-ops-secrets"


# --- the agent ConfigMap ------------------------------------------------------------------------


def configmap_body(name: str, namespace: str, config: AgentConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {CHECKSUM_ANNOTATION: config.checksum},
        },
        "data": {AGENT_CONFIG_DATA_KEY: config.to_json()},
    }


def configmap_patch(config: AgentConfig) -> dict[str, Any]:
    """Merge patch that makes an existing ConfigMap ours and current (other data keys are kept)."""
    return {
        "metadata": {
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {CHECKSUM_ANNOTATION: config.checksum},
        },
        "data": {AGENT_CONFIG_DATA_KEY: config.to_json()},
    }


def configmap_digest(obj: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """(checksum annotation, sha256 of the data text, managed-by label present) of a stored ConfigMap."""
    meta = obj.get("metadata") or {}
    text = (obj.get("data") or {}).get(AGENT_CONFIG_DATA_KEY)
    digest = hashlib.sha256(text.encode()).hexdigest() if isinstance(text, str) else None
    labelled = (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
    return (meta.get("annotations") or {}).get(CHECKSUM_ANNOTATION), digest, labelled


def desired_configmap_digest(config: AgentConfig) -> tuple[str | None, str | None, bool]:
    return config.checksum, hashlib.sha256(config.to_json().encode()).hexdigest(), True


# --- runbook shards -----------------------------------------------------------------------------

RUNBOOKS_LABEL = "ai-ops.dev/runbooks"


def runbook_shard_body(name: str, namespace: str, shard: RunbookShard) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **runbook_shard_patch(shard)["metadata"]},
        "data": {RUNBOOK_SHARD_DATA_KEY: shard.to_json()},
    }


def runbook_shard_patch(shard: RunbookShard) -> dict[str, Any]:
    """Merge patch that makes an existing ConfigMap the shard (other data keys are kept)."""
    return {
        "metadata": {
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, RUNBOOKS_LABEL: "true"},
            "annotations": {CHECKSUM_ANNOTATION: shard.checksum()},
        },
        "data": {RUNBOOK_SHARD_DATA_KEY: shard.to_json()},
    }


def runbook_shard_digest(obj: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """(checksum annotation, sha256 of the shard text, our labels present) of a stored ConfigMap; the shard
    text's sha256 is the shard's checksum, so an edit by hand shows even with the annotation kept."""
    meta = obj.get("metadata") or {}
    text = (obj.get("data") or {}).get(RUNBOOK_SHARD_DATA_KEY)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest() if isinstance(text, str) else None
    labels = meta.get("labels") or {}
    ours = labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(RUNBOOKS_LABEL) == "true"
    return (meta.get("annotations") or {}).get(CHECKSUM_ANNOTATION), digest, ours


def desired_shard_digest(shard: RunbookShard) -> tuple[str | None, str | None, bool]:
    checksum = shard.checksum()
    return checksum, checksum, True


# --- Secret wiring of the chat Deployment -------------------------------------------------------


def secret_refs_checksum(keys: Iterable[tuple[str, str]]) -> str:
    lines = "\n".join(f"{name}/{key}" for name, key in sorted(set(keys)))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def secrets_volume(keys: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The projected volume: one source per Secret, its keys at ``<secret>/<key>``. ``optional`` so a pod
    still starts while a Secret is being created (the operator only references Secrets it has seen)."""
    by_secret: dict[str, list[str]] = {}
    for name, key in sorted(set(keys)):
        by_secret.setdefault(name, []).append(key)
    sources = [
        {
            "secret": {
                "name": name,
                "items": [{"key": key, "path": f"{name}/{key}"} for key in secret_keys],
                "optional": True,
            }
        }
        for name, secret_keys in sorted(by_secret.items())
    ]
    return {"name": SECRETS_VOLUME, "projected": {"sources": sources, "defaultMode": 0o440}}


SECRETS_MOUNT = {"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT_PATH, "readOnly": True}


def deployment_patch(
    template: Mapping[str, Any], keys: Iterable[tuple[str, str]], resource_version: str | None
) -> list[dict[str, Any]] | None:
    """JSON-patch ops that wire the keys into the pod template, or None when it is already wired.

    With no key referenced the volume and its mounts are removed (an empty projected volume is useless).
    The ops start with a ``test`` of the resourceVersion: a Deployment changed meanwhile answers 422/409
    and the next pass recomputes from the newer object, so nobody's edit is lost.
    """
    keys = set(keys)
    pod_spec = template.get("spec") or {}
    volumes = list(pod_spec.get("volumes") or [])
    containers = list(pod_spec.get("containers") or [])
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    checksum = secret_refs_checksum(keys)

    others = [v for v in volumes if v.get("name") != SECRETS_VOLUME]
    new_volumes = [*others, secrets_volume(keys)] if keys else others
    new_mounts: list[list[dict[str, Any]]] = []
    for container in containers:
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != SECRETS_VOLUME]
        new_mounts.append([*mounts, dict(SECRETS_MOUNT)] if keys else mounts)
    new_annotations = dict(annotations)
    if keys:
        new_annotations[SECRET_REFS_ANNOTATION] = checksum
    else:
        new_annotations.pop(SECRET_REFS_ANNOTATION, None)

    unchanged = (
        new_volumes == volumes
        and all(
            new == list(c.get("volumeMounts") or []) for new, c in zip(new_mounts, containers, strict=True)
        )
        and new_annotations == annotations
    )
    if unchanged:
        return None
    ops: list[dict[str, Any]] = []
    if resource_version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})
    metadata = copy.deepcopy(dict(template.get("metadata") or {}))
    metadata["annotations"] = new_annotations
    ops.append({"op": "add", "path": "/spec/template/metadata", "value": metadata})
    ops.append({"op": "add", "path": "/spec/template/spec/volumes", "value": new_volumes})
    for index, mounts in enumerate(new_mounts):
        ops.append(
            {"op": "add", "path": f"/spec/template/spec/containers/{index}/volumeMounts", "value": mounts}
        )
    return ops
