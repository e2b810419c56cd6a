"""What the kopf indices hold, and the reconciler's view of them corrected for its own recent writes.

kopf keeps one in-memory index per watched kind (registry.py declares them) and hands the indices to
every handler; the startup handler passes them to an ``IndexView``. The indices keep plain copies of
only what a pass needs: the ai-ops kinds (metadata, spec, status), Secrets (names, data KEYS and whether
the Secret carries the label ai-ops.dev/usable=true: values never enter the operator's memory here), the
chat Deployment (its pod template), the agent ConfigMap (its digest) and every other ConfigMap of the
namespace by name and resourceVersion only, with the data of those a Runbook reads its content from and
the digest of the runbook shards.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ai_ops_api.agent_config import RUNBOOK_SHARD_PREFIX
from ai_ops_api.specs import USABLE_SECRET_LABEL, USABLE_SECRET_LABEL_VALUE
from ai_ops_operator.core.wiring import configmap_digest, runbook_shard_digest

# Index ids (also the handler kwargs kopf passes them as).
KIND_INDEX = {
    "LLMProvider": "ai_ops_providers",
    "LLMModel": "ai_ops_models",
    "LLMMiddleware": "ai_ops_middlewares",
    "MCPServer": "ai_ops_mcpservers",
    "Runbook": "ai_ops_runbooks",
}
SECRETS_INDEX = "ai_ops_secret_keys"
DEPLOYMENT_INDEX = "ai_ops_chat_deployment"
CONFIGMAP_INDEX = "ai_ops_agent_configmap"
RUNBOOK_CONFIGMAPS_INDEX = "ai_ops_runbook_configmaps"
ALL_INDICES = (
    *KIND_INDEX.values(),
    SECRETS_INDEX,
    DEPLOYMENT_INDEX,
    CONFIGMAP_INDEX,
    RUNBOOK_CONFIGMAPS_INDEX,
)
_SHARD_NAME = re.compile(rf"^{re.escape(RUNBOOK_SHARD_PREFIX)}-[0-9]+$")

# (what, scope, name): what was written ("status", "configmap", "deployment") to which object.
WriteKey = tuple[str, str, str]


def compact_object(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconciler needs of an ai-ops object (a plain copy, detached from kopf's body)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: copy.deepcopy(meta[k])
            for k in ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp")
            if k in meta
        },
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def secret_keys(name: str, body: Mapping[str, Any]) -> tuple[str, frozenset[str], bool]:
    """A Secret as the index keeps it: its name, data keys and whether it is labelled usable; never a value."""
    keys = frozenset((body.get("data") or {}).keys()) | frozenset((body.get("stringData") or {}).keys())
    labels = (body.get("metadata") or {}).get("labels") or {}
    return name, keys, labels.get(USABLE_SECRET_LABEL) == USABLE_SECRET_LABEL_VALUE


def deployment_template(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "resourceVersion": (body.get("metadata") or {}).get("resourceVersion"),
        "template": copy.deepcopy(dict((body.get("spec") or {}).get("template") or {})),
    }


def configmap_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "resourceVersion": (body.get("metadata") or {}).get("resourceVersion"),
        "digest": configmap_digest(body),
    }


def is_shard_name(name: str) -> bool:
    return bool(_SHARD_NAME.match(name))


def runbook_configmap_entry(body: Mapping[str, Any], referenced: bool) -> dict[str, Any]:
    """A ConfigMap as the runbook index keeps it: name and resourceVersion; its data only when a Runbook
    reads from it (``referenced``); the digest of a runbook shard (never its data: the operator wrote it)."""
    meta = body.get("metadata") or {}
    name = str(meta.get("name"))
    data = body.get("data") or {}
    return {
        "name": name,
        "resourceVersion": meta.get("resourceVersion"),
        "data": {str(k): v for k, v in data.items() if isinstance(v, str)} if referenced else None,
        "shard": runbook_shard_digest(body) if is_shard_name(name) else None,
    }


def referenced_configmaps(runbooks: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The ConfigMaps the runbooks of a namespace read their content from."""
    names = set()
    for obj in runbooks.values():
        ref = ((obj.get("spec") or {}).get("contentFrom") or {}).get("configMapKeyRef") or {}
        if isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return names


def status_key(kind: str, namespace: str, name: str) -> WriteKey:
    return ("status", f"{kind}/{namespace}", name)


class IndexView:
    """The indices kopf fills, as of now: an index learns of our own write a moment after the write
    answered, so until it does the written value is the truth (else a pass would write it again)."""

    def __init__(self) -> None:
        self.indices: Mapping[str, Any] = {}
        # key -> (resourceVersion before our write, value written)
        self._written: dict[WriteKey, tuple[str | None, Any]] = {}

    def attach(self, indices: Mapping[str, Any]) -> None:
        """The live indices, as kopf hands them to the startup handler (kopf fills them from the initial
        listing before it calls any resource handler, so the first pass already sees everything)."""
        self.indices = {name: indices[name] for name in ALL_INDICES if name in indices}

    def entries(self, index: str, namespace: str) -> list[Any]:
        try:
            return list(self.indices[index].get(namespace, ()))
        except KeyError:
            return []

    def objects(self, kind: str, namespace: str) -> dict[str, dict[str, Any]]:
        return {obj["metadata"]["name"]: obj for obj in self.entries(KIND_INDEX[kind], namespace)}

    def object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (o for o in self.entries(KIND_INDEX[kind], namespace) if o["metadata"]["name"] == name), None
        )

    def written(self, key: WriteKey, resource_version_before: str | None, value: Any) -> None:
        self._written[key] = (resource_version_before, value)

    def fresh(self, key: WriteKey, resource_version: str | None, value: Any) -> Any:
        """``value`` as the index has it at ``resource_version``, or what we wrote if the index is behind."""
        entry = self._written.get(key)
        if entry is None:
            return value
        before, written = entry
        if resource_version == before:
            return written  # the index has not seen our write yet
        del self._written[key]
        return value

    def status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        key = status_key(obj["kind"], meta.get("namespace"), meta["name"])
        return dict(self.fresh(key, meta.get("resourceVersion"), obj.get("status") or {}))

    def forget_deleted(self, namespace: str, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Drop the write records of objects of the namespace that are gone."""
        for key in list(self._written):
            what, scope, name = key
            if what == "status":
                kind, _, ns = scope.partition("/")
                if ns == namespace and name not in objects.get(kind, {}):
                    del self._written[key]
