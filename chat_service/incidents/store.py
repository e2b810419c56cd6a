"""Where Investigations live: the Kubernetes API (in a cluster) or this process's memory (locally, tests).

Both keep the API server's semantics the workers rely on: a create of an existing name answers "exists"
(the de-duplication of repeat notifications), a create drops the status (the status subresource), and a
status patch made with a resourceVersion fails with ``Conflict`` when the object changed since it was read
(optimistic concurrency: of two replicas claiming one investigation, one wins).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import datetime
import json
import logging
import os
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import httpx

from ai_ops_api.investigations import INVESTIGATION
from ai_ops_api.specs import API_VERSION, GROUP, VERSION
from chat_service.settings import SERVICE_ACCOUNT_DIR

log = logging.getLogger("ai_ops.chat.incidents")

EVENT_COMPONENT = "ai-ops-chat"
MAX_EVENT_MESSAGE = 1024


class Conflict(Exception):
    """The object changed since it was read (409): read it again and decide again."""


class NotFound(Exception):
    """No Investigation of that name."""


class StoreError(Exception):
    """The store could not be reached or refused the request; the message says why."""


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class StoredObject:
    """What both stores keep of an object (an Investigation, an ActionRequest) as the API server has it."""

    name: str
    namespace: str
    spec: dict[str, Any]
    status: dict[str, Any]
    resource_version: str
    created_at: str
    uid: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Self:
        metadata = obj.get("metadata") or {}
        return cls(
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "")),
            spec=dict(obj.get("spec") or {}),
            status=dict(obj.get("status") or {}),
            resource_version=str(metadata.get("resourceVersion", "")),
            created_at=str(metadata.get("creationTimestamp", "")),
            uid=str(metadata.get("uid", "")),
        )


@dataclass(frozen=True)
class StoredInvestigation(StoredObject):
    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Pending")


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str = ""


class InvestigationStore(Protocol):
    namespace: str

    async def create(self, name: str, spec: Mapping[str, Any]) -> tuple[StoredInvestigation, bool]:
        """The investigation and True when this call created it; the existing one and False otherwise."""

    async def get(self, name: str) -> StoredInvestigation | None: ...

    async def list(self) -> list[StoredInvestigation]: ...

    async def snapshot(self) -> builtins.list[StoredInvestigation]:
        """The investigations as this replica last saw them, for the workers' candidates: no API call
        while a watch keeps them current. A stale one only costs a refused claim (its resourceVersion)."""

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredInvestigation:
        """Merge ``status`` into the status (None values delete); ``Conflict`` when ``resource_version``
        is given and stale, ``NotFound`` when it is gone."""

    async def record_event(
        self, regarding: ObjectRef, reason: str, message: str, type_: str = "Normal"
    ) -> None:
        """An Event on ``regarding``; best effort (a refused Event is logged, never raised)."""

    async def wait_for_change(self, timeout: float) -> None:
        """Return when an investigation may have changed, or after ``timeout`` seconds."""

    async def aclose(self) -> None: ...


def investigation_ref(item: StoredInvestigation) -> ObjectRef:
    return ObjectRef(API_VERSION, INVESTIGATION.kind, item.name, item.namespace, item.uid)


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the API server applies one."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --- memory -------------------------------------------------------------------------------------


@dataclass
class MemoryInvestigationStore:
    """The API server's semantics in one process: for ``ai-ops chat`` outside a cluster and fast tests."""

    namespace: str = "default"
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    _revision: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _stamp(self) -> str:
        self._revision += 1
        self._changed.set()
        return str(self._revision)

    async def create(self, name: str, spec: Mapping[str, Any]) -> tuple[StoredInvestigation, bool]:
        if name in self.objects:
            return StoredInvestigation.of(self.objects[name]), False
        obj = {
            "apiVersion": API_VERSION,
            "kind": INVESTIGATION.kind,
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
        return StoredInvestigation.of(obj), True

    async def get(self, name: str) -> StoredInvestigation | None:
        obj = self.objects.get(name)
        return StoredInvestigation.of(obj) if obj else None

    async def list(self) -> list[StoredInvestigation]:
        return [StoredInvestigation.of(obj) for obj in self.objects.values()]

    async def snapshot(self) -> builtins.list[StoredInvestigation]:
        return await self.list()

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredInvestigation:
        obj = self.objects.get(name)
        if obj is None:
            raise NotFound(name)
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(name)
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = self._stamp()
        return StoredInvestigation.of(obj)

    async def record_event(
        self, regarding: ObjectRef, reason: str, message: str, type_: str = "Normal"
    ) -> None:
        self.events.append(event_body(regarding, reason, message, type_))

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    async def aclose(self) -> None:
        return None


def event_body(regarding: ObjectRef, reason: str, message: str, type_: str) -> dict[str, Any]:
    """A core/v1 Event (what ``kubectl describe`` and ``kubectl get events`` show)."""
    stamp = rfc3339(now())
    involved = {
        "apiVersion": regarding.api_version,
        "kind": regarding.kind,
        "name": regarding.name,
        "namespace": regarding.namespace,
    }
    if regarding.uid:
        involved["uid"] = regarding.uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{regarding.name[:200]}.", "namespace": regarding.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "type": type_,
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME", EVENT_COMPONENT)[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


# --- Kubernetes ---------------------------------------------------------------------------------


class ServiceAccountClient:
    """What both Kubernetes stores (Investigations, ActionRequests) need of the API server: a client from
    the pod's service account, the token re-read per request, and errors as StoreError."""

    plural: str  # the resource's plural in API paths
    noun: str  # what errors call one object
    default_poll_seconds = 5.0  # how long a store waits for a change without an event, by default

    def __init__(
        self,
        api_url: str,
        namespace: str,
        *,
        token_path: Path | None = None,
        token: str | None = None,
        ca_path: Path | None = None,
        poll_seconds: float | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.token_path = token_path
        self.token = token
        self.poll_seconds = poll_seconds if poll_seconds is not None else self.default_poll_seconds
        verify: ssl.SSLContext | bool = True
        if ca_path is not None:
            verify = ssl.create_default_context(cafile=str(ca_path))
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            verify=verify,
            timeout=timeout_seconds,
            headers={"Accept": "application/json"},
            auth=self._auth,
        )
        self._changed = asyncio.Event()

    @classmethod
    def from_service_account(cls, namespace: str | None = None, **kwargs: Any) -> Self:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # IPv6
            host = f"[{host}]"
        ns = namespace or (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
        return cls(
            f"https://{host}:{port}",
            ns,
            token_path=SERVICE_ACCOUNT_DIR / "token",
            ca_path=SERVICE_ACCOUNT_DIR / "ca.crt",
            **kwargs,
        )

    def _auth(self, request: httpx.Request) -> httpx.Request:
        # Re-read per request: kubelet rotates projected service-account tokens.
        token = self.token_path.read_text().strip() if self.token_path is not None else self.token
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        return request

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"Kubernetes API unreachable ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _fail(response: httpx.Response, what: str) -> StoreError:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:300]
        return StoreError(f"{what}: Kubernetes API answered {response.status_code}: {message}")

    @property
    def _collection(self) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{self.plural}"

    async def _get_object(self, name: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"{self._collection}/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"get {self.noun} {name}")
        return dict(response.json())

    async def _list_objects(self) -> list[dict[str, Any]]:
        response = await self._request("GET", self._collection)
        if response.status_code != 200:
            raise self._fail(response, f"list {self.noun}s")
        return list(response.json().get("items", []))

    async def _patch_status_object(
        self, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        # A merge patch that names metadata.resourceVersion is refused with 409 when it is stale.
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        response = await self._request(
            "PATCH",
            f"{self._collection}/{name}/status",
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if response.status_code == 409:
            raise Conflict(name)
        if response.status_code == 404:
            raise NotFound(name)
        if response.status_code != 200:
            raise self._fail(response, f"patch status of {self.noun} {name}")
        return dict(response.json())


class KubernetesInvestigationStore(ServiceAccountClient):
    """Investigations through the Kubernetes API, with the access chat_service/config/kubernetes.py uses
    (the pod's service-account token and CA; an explicit URL and token elsewhere).

    The workers see the Investigations through a watch (a list, then a watch from its resourceVersion),
    kept as a cache: a burst of alerts would otherwise cost a list of every Investigation per wake-up, and
    another replica's create would wait for a poll. ``poll_seconds`` bounds how long ``wait_for_change``
    sleeps without an event (leases expire without one); while the watch is down ``snapshot`` lists.
    """

    plural = INVESTIGATION.plural
    noun = "investigation"

    def __init__(
        self,
        api_url: str,
        namespace: str,
        *,
        token_path: Path | None = None,
        token: str | None = None,
        ca_path: Path | None = None,
        poll_seconds: float | None = None,
        timeout_seconds: float = 10.0,
        watch_timeout_seconds: int = 300,
        retry_seconds: float = 2.0,
    ) -> None:
        super().__init__(
            api_url,
            namespace,
            token_path=token_path,
            token=token,
            ca_path=ca_path,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )
        self.watch_timeout_seconds = watch_timeout_seconds
        self.retry_seconds = retry_seconds
        self._known: dict[str, StoredInvestigation] = {}
        self._synced = False  # _known is the API's view (listed, then watched), not a leftover
        self._watch_task: asyncio.Task[None] | None = None

    async def create(self, name: str, spec: Mapping[str, Any]) -> tuple[StoredInvestigation, bool]:
        known = self._known.get(name) if self._synced else None
        if known is not None:
            # A repeat notification of one the watch has seen: the API would answer 409 (a third of a
            # burst's requests, each queued behind the others); a deletion reaches the cache as fast.
            return known, False
        body = {
            "apiVersion": API_VERSION,
            "kind": INVESTIGATION.kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        response = await self._request("POST", self._collection, json=body)
        if response.status_code == 409:
            existing = await self.get(name)
            if existing is None:  # deleted in between: the next notification creates it again
                raise StoreError(f"investigation {name} exists and vanished")
            return existing, False
        if response.status_code not in (200, 201):
            raise self._fail(response, f"create investigation {name}")
        if not self._synced:  # the watch wakes the workers once it has the new one in its cache
            self._changed.set()
        return StoredInvestigation.of(response.json()), True

    async def get(self, name: str) -> StoredInvestigation | None:
        found = await self._get_object(name)
        return StoredInvestigation.of(found) if found is not None else None

    async def list(self) -> list[StoredInvestigation]:
        return [StoredInvestigation.of(item) for item in await self._list_objects()]

    async def snapshot(self) -> builtins.list[StoredInvestigation]:
        self._start_watch()
        if not self._synced:
            return await self.list()
        return builtins.list(self._known.values())

    def _start_watch(self) -> None:
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.create_task(
                self._watch(), name=f"investigations-watch-{self.namespace}"
            )

    async def _watch(self) -> None:
        """List, then watch from the list's resourceVersion; again after a failure or the watch's end."""
        timeout = httpx.Timeout(10.0, read=self.watch_timeout_seconds + 30.0)
        while True:
            started = time.monotonic()
            try:
                response = await self._request("GET", self._collection)
                if response.status_code != 200:
                    raise self._fail(response, "list investigations")
                listing = response.json()
                self._known = {
                    item.name: item for item in map(StoredInvestigation.of, listing.get("items", []))
                }
                self._synced = True
                self._changed.set()
                params = {
                    "watch": "true",
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(self.watch_timeout_seconds),
                    "resourceVersion": str((listing.get("metadata") or {}).get("resourceVersion") or ""),
                }
                async with self._client.stream(
                    "GET", self._collection, params=params, timeout=timeout
                ) as stream:
                    if stream.status_code != 200:
                        await stream.aread()
                        raise self._fail(stream, "watch investigations")
                    async for line in stream.aiter_lines():
                        if line.strip() and not self._apply(json.loads(line)):
                            break  # an ERROR (e.g. 410 Gone): list again
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("investigations watch failed (%s: %s); listing instead", type(exc).__name__, exc)
            self._synced = False
            self._changed.set()
            # A watch that ends normally (timeoutSeconds) is listed again at once, unless it ended at once.
            if time.monotonic() - started < 1.0:
                await asyncio.sleep(self.retry_seconds)

    def _apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one watch event to the cache; False on an ERROR event (the watch must start again)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            log.info("investigations watch ended by the API server: %s", obj.get("message"))
            return False
        if kind in ("ADDED", "MODIFIED"):
            item = StoredInvestigation.of(obj)
            self._known[item.name] = item
            self._changed.set()
        elif kind == "DELETED":
            self._known.pop(str((obj.get("metadata") or {}).get("name", "")), None)
            self._changed.set()
        return True

    async def patch_status(
        self, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> StoredInvestigation:
        return StoredInvestigation.of(await self._patch_status_object(name, status, resource_version))

    async def record_event(
        self, regarding: ObjectRef, reason: str, message: str, type_: str = "Normal"
    ) -> None:
        body = event_body(regarding, reason, message, type_)
        try:
            response = await self._request(
                "POST", f"/api/v1/namespaces/{regarding.namespace}/events", json=body
            )
        except StoreError as exc:
            log.warning("event on %s/%s not recorded: %s", regarding.kind, regarding.name, exc)
            return
        if response.status_code not in (200, 201):
            # Typically 403 for an object in another namespace than the chat's own (see docs/incidents.md).
            log.warning(
                "event on %s %s/%s not recorded: %s",
                regarding.kind,
                regarding.namespace,
                regarding.name,
                self._fail(response, "create event"),
            )

    async def wait_for_change(self, timeout: float) -> None:
        self._start_watch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(timeout, self.poll_seconds))
        self._changed.clear()

    async def aclose(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self._watch_task
            self._watch_task = None
        await self._client.aclose()
