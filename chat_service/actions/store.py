"""Where ActionRequests live: the Kubernetes API (in a cluster) or this process's memory (locally, tests).

The same semantics as the Investigation store (chat_service/incidents/store.py): a create drops the
status, a status patch made with a resourceVersion fails with ``Conflict`` when the object changed since
it was read, so two people deciding at once cannot both win. The chat only ever writes ``decision``; the
operator executes. The memory store has no operator behind it: nothing it holds ever executes
(``executes`` is False, and the API and the page say so).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai_ops_api.actions import ACTION_REQUEST, FINAL_PHASES, current_phase, is_expired
from ai_ops_api.specs import API_VERSION
from chat_service.incidents.store import (
    Conflict,
    NotFound,
    ServiceAccountClient,
    StoredObject,
    StoreError,
    merge_patch,
    now,
    rfc3339,
)

__all__ = [
    "KIND",
    "PLURAL",
    "TERMINAL_PHASES",
    "ActionStore",
    "Conflict",
    "KubernetesActionStore",
    "MemoryActionStore",
    "NotFound",
    "StoreError",
    "StoredAction",
]

log = logging.getLogger("ai_ops.chat.actions")

KIND = ACTION_REQUEST.kind
PLURAL = ACTION_REQUEST.plural
# Phases after which nothing more happens to a request: the conversation hears the outcome.
TERMINAL_PHASES = frozenset(str(p) for p in FINAL_PHASES)


@dataclass(frozen=True)
class StoredAction(StoredObject):
    @property
    def decision(self) -> dict[str, Any] | None:
        found = self.status.get("decision")
        return dict(found) if isinstance(found, Mapping) and found else None

    @property
    def expired(self) -> bool:
        return is_expired({"spec": self.spec, "metadata": {"creationTimestamp": self.created_at}}, now())

    @property
    def phase(self) -> str:
        """The phase the operator wrote; before it has seen the decision, what the request amounts to
        (the chat writes only the decision)."""
        written = current_phase({"status": self.status})
        if str(written) != "Pending":
            return str(written)
        decision = self.decision
        if decision is not None:
            return "Approved" if decision.get("approved") else "Rejected"
        return "Expired" if self.expired else "Pending"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


class ActionStore(Protocol):
    namespace: str
    # False when no operator ever sees these requests (the memory store): approval then runs nothing.
    executes: bool

    async def create(self, name: str, spec: Mapping[str, Any]) -> StoredAction: ...

    async def get(self, name: str) -> StoredAction | None: ...

    async def list(self) -> list[StoredAction]: ...

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredAction:
        """Merge ``status`` into the status; ``Conflict`` when ``resource_version`` is given and stale,
        ``NotFound`` when it is gone."""

    async def wait_for_change(self, timeout: float) -> None:
        """Return when a request may have changed, or after ``timeout`` seconds."""

    async def aclose(self) -> None: ...


# --- memory -------------------------------------------------------------------------------------


@dataclass
class MemoryActionStore:
    """The API server's semantics in one process, for ``ai-ops chat`` outside a cluster and tests. No
    operator watches it: an approved request stays Approved and never runs."""

    namespace: str = "default"
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    executes: bool = False
    _revision: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _stamp(self) -> str:
        self._revision += 1
        self._changed.set()
        return str(self._revision)

    async def create(self, name: str, spec: Mapping[str, Any]) -> StoredAction:
        if name in self.objects:
            raise Conflict(name)
        obj = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": rfc3339(now()),
                "resourceVersion": self._stamp(),
            },
            "spec": copy.deepcopy(dict(spec)),
        }
        self.objects[name] = obj
        return StoredAction.of(obj)

    async def get(self, name: str) -> StoredAction | None:
        obj = self.objects.get(name)
        return StoredAction.of(obj) if obj else None

    async def list(self) -> list[StoredAction]:
        return [StoredAction.of(obj) for obj in self.objects.values()]

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredAction:
        obj = self.objects.get(name)
        if obj is None:
            raise NotFound(name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(name)
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = self._stamp()
        return StoredAction.of(obj)

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    async def aclose(self) -> None:
        return None


# --- Kubernetes ---------------------------------------------------------------------------------


class KubernetesActionStore(ServiceAccountClient):
    """ActionRequests through the Kubernetes API with the pod's service account (the chart's Role grants
    create/get/list/watch on actionrequests and patch on actionrequests/status; its admission policy lets
    this identity write only ``decision``, with ``by: chat:<caller>``).

    Changes are noticed by a short poll, as for Investigations: a person waits on a request for seconds
    to minutes, and a list every ``poll_seconds`` costs less than keeping a watch open per replica.
    """

    executes = True
    plural = PLURAL
    noun = "ActionRequest"
    default_poll_seconds = 2.0

    async def create(self, name: str, spec: Mapping[str, Any]) -> StoredAction:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": dict(spec)}
        response = await self._request("POST", self._collection, json=body)
        if response.status_code == 409:
            raise Conflict(name)
        if response.status_code not in (200, 201):
            raise self._fail(response, f"create ActionRequest {name}")
        self._changed.set()
        return StoredAction.of(response.json())

    async def get(self, name: str) -> StoredAction | None:
        found = await self._get_object(name)
        return StoredAction.of(found) if found is not None else None

    async def list(self) -> list[StoredAction]:
        return [StoredAction.of(item) for item in await self._list_objects()]

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredAction:
        patched = await self._patch_status_object(name, status, resource_version)
        self._changed.set()
        return StoredAction.of(patched)

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(timeout, self.poll_seconds))
        self._changed.clear()

    async def aclose(self) -> None:
        await self._client.aclose()
