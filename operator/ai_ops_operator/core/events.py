"""The Events the operator posts: one body for every object it reports on (its own resources' condition
changes and health, and the objects an ActionRequest acts on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ai_ops_api.specs import GROUP

EVENT_COMPONENT = "ai-ops-operator"


def event_body(
    involved: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    instance: str,
    now: str,
    namespace: str | None = None,
) -> dict[str, Any]:
    """An Event on ``involved`` (an object as stored: apiVersion, kind, metadata with its uid), in the
    object's namespace or, for a cluster-scoped one, in ``namespace``."""
    meta = involved.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace") or namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
            "uid": meta.get("uid"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": f"{GROUP}/operator",
        "reportingInstance": instance[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
