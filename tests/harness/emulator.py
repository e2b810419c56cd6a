"""A Kubernetes API emulator for tests: kmock's KubernetesEmulator plus the API-server semantics it lacks.

kmock 0.8 stores objects as plain JSON and merges patches, and little more. Operators (kopf in
particular) rely on more than that, so this subclass owns the write path (create / patch / put /
delete) and adds, each marked "kmock lacks" below:

- metadata stamping: resourceVersion (one monotonic counter), uid, creationTimestamp, namespace from
  the path, generation (1 on create, +1 when spec changes), generateName;
- API errors with Kubernetes Status bodies: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale
  resourceVersion, 422 when a JSON-patch `test` fails, 422 Invalid for bodies the CRD schema refuses;
- the status subresource: writes to the main resource ignore status, writes to /status only change
  status; create drops status;
- ai-ops kinds are pruned of unknown fields, validated with `validate_resource` and stored with
  `apply_defaults` applied (what the API server does with the CRD's schema, defaults and CEL rules);
- discovery for the built-in kinds ai-ops and kopf use and for the four ai-ops CRDs;
- `/api/v1/namespaces[/NAME]` paths, and equality-based label selectors on list and watch;
- watch events in resourceVersion order, with no event lost between the initial listing and the stream.

Still not emulated (only a real cluster checks them): server-side apply, strategic merge patch (a dict
patch is a JSON merge patch here), field selectors, owner-reference garbage collection, admission
webhooks, RBAC, CEL transition rules (oldSelf), watch `resourceVersion` resumption (every watch replays
all objects as ADDED first).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import datetime
import re
import secrets
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import enums, parsing, rendering
from kmock._internal.k8s_dicts import Object

from ai_ops_api.specs import GROUP
from ai_ops_operator.core.crdgen import all_crds
from ai_ops_operator.core.validation import apply_defaults, schema_of, validate_resource

SECRETS = kmock.resource("v1/secrets")
ALL_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}


# --- /api/v1/namespaces paths -------------------------------------------------------------------
# kmock lacks: it reads `/api/v1/namespaces/NAME` as the start of a namespaced path, so the Namespace
# objects themselves cannot be listed, fetched or created (500). Wrap its path parser once per process.


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        return parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            namespace=None,
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    return _original_parse_path(path)


_original_parse_path = getattr(parsing.parse_path, "__wrapped__", parsing.parse_path)
_parse_path_with_namespaces.__wrapped__ = _original_parse_path  # type: ignore[attr-defined]
parsing.parse_path = _parse_path_with_namespaces


# --- discovery ----------------------------------------------------------------------------------


def _builtin_resources() -> dict[str, kmock.ResourceInfo]:
    def info(kind: str, namespaced: bool = True, status: bool = False) -> kmock.ResourceInfo:
        return kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs=ALL_VERBS,
            subresources={"status"} if status else set(),
        )

    return {
        "v1/namespaces": info("Namespace", namespaced=False, status=True),
        "v1/secrets": info("Secret"),
        "v1/configmaps": info("ConfigMap"),
        "v1/events": info("Event"),
        "v1/pods": info("Pod", status=True),
        "v1/services": info("Service", status=True),
        "events.k8s.io/v1/events": info("Event"),
        "apps/v1/deployments": info("Deployment", status=True),
        "coordination.k8s.io/v1/leases": info("Lease"),
        # kopf's peering resources (used only when kopf runs without standalone=True).
        "kopf.dev/v1/clusterkopfpeerings": info("ClusterKopfPeering", namespaced=False),
        "kopf.dev/v1/kopfpeerings": info("KopfPeering"),
    }


def _crd_resources() -> dict[str, kmock.ResourceInfo]:
    """Discovery entries of the ai-ops kinds, built from the project's own CRDs (one source of truth)."""
    resources = {}
    for crd in all_crds().values():
        names = crd["spec"]["names"]
        for version in crd["spec"]["versions"]:
            resources[f"{crd['spec']['group']}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names["singular"],
                namespaced=crd["spec"]["scope"] == "Namespaced",
                verbs=ALL_VERBS,
                shortnames=set(names.get("shortNames", ())),
                categories=set(names.get("categories", ())),
                subresources=set(version.get("subresources", {})),
            )
    return resources


# --- pure helpers -------------------------------------------------------------------------------


def rfc3339_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (kmock's own refuses to replace a dict by a scalar)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def fold_string_data(secret: dict[str, Any]) -> dict[str, Any]:
    """Secret `stringData` is write-only: the API server stores it base64-encoded in `data`."""
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.setdefault("data", {}) or {}
        secret["data"] = data
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return secret


def prune(value: Any, schema: Mapping[str, Any]) -> Any:
    """Drop fields the structural schema does not know, as the API server does (fieldValidation=Warn)."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            return {k: prune(v, properties[k]) for k, v in value.items() if k in properties}
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            return {k: prune(v, additional) for k, v in value.items()}
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(item, schema["items"]) for item in value]
    return value


_SET_SELECTOR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b=c`)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def matches_label_selector(labels: Mapping[str, str], selector: str | None) -> bool:
    """Kubernetes label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`."""
    for term in _split_selector(selector or ""):
        if found := _SET_SELECTOR.match(term):
            key, op, values = found.group(1), found.group(2), {v.strip() for v in found.group(3).split(",")}
            if (op == "in") != (key in labels and labels[key] in values):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


# --- Status errors ------------------------------------------------------------------------------
# kmock lacks: its errors use its own reasons and put a Python traceback in `details`.


def api_error(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> kmock.KubernetesError:
    """An error rendered as a Kubernetes `Status` body (kmock renders KubernetesError this way)."""
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=dict(details or {}))


def _qualified(resource: kmock.resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)


def not_found(resource: kmock.resource, name: str) -> kmock.KubernetesError:
    return api_error(
        404,
        "NotFound",
        f'{_qualified(resource)} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


class KubernetesApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API-server semantics listed in the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # kmock lacks: one monotonic counter for all resourceVersions, as etcd's revision.
        self._revision = 0
        # kmock lacks: ordered watch events also for writes made without HTTP (the helpers below).
        # kmock lacks: watches from a resourceVersion; every event is kept to replay them (tests are short).
        self._history: list[tuple[kmock.resource, dict[str, Any]]] = []
        self._pending_events: collections.deque[tuple[kmock.resource, dict[str, Any]]] = collections.deque()
        self._events_waiting = asyncio.Event()
        self._event_pump: asyncio.Task[None] | None = None
        self._write_results: weakref.WeakKeyDictionary[rendering.Request, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        for key, info in {**_builtin_resources(), **_crd_resources()}.items():
            self.resources[key] = info

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> KubernetesApiEmulator:
        await super().__aenter__()
        self._event_pump = asyncio.create_task(self._pump_events(), name="emulator-watch-events")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._event_pump is not None:
            self._event_pump.cancel()
            await asyncio.gather(self._event_pump, return_exceptions=True)
            self._event_pump = None
        await super().__aexit__(*exc_info)

    async def keep_recent_requests(self, count: int = 10, every: float = 0.2) -> None:
        """Forget all but the last ``count`` requests, every ``every`` seconds, until cancelled.

        kmock records every request and matches each new one by scanning that record (O(n) per request):
        a benchmark's thousands of writes would measure kmock, not what it talks to. Requests are matched
        on arrival only, so keeping the most recent ones is enough."""
        while True:
            del self._requests[:-count]
            await asyncio.sleep(every)

    async def _pump_events(self) -> None:
        while True:
            await self._events_waiting.wait()
            self._events_waiting.clear()
            while self._pending_events:
                resource, event = self._pending_events.popleft()
                await self._buses[resource].put(event)

    def _emit(self, resource: kmock.resource, event_type: str, obj: Mapping[str, Any]) -> None:
        event = {"type": event_type, "object": copy.deepcopy(dict(obj))}
        self._history.append((resource, event))
        self._pending_events.append((resource, event))
        self._events_waiting.set()

    # -- store access (synchronous: a write is atomic with respect to the event loop) ------------

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # Not .get(): kmock's ResourcesArray creates an empty entry for any key it is asked for.
        if resource not in self.resources:
            return None
        return self.resources[resource]

    def _entry(self, resource: kmock.resource, namespace: str | None, name: str) -> Object | None:
        # kmock's `key in objects` is always False for string keys: index and catch KeyError.
        try:
            return self.objects[resource, namespace, name]
        except KeyError:
            return None

    def current(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, or None when absent or deleted."""
        entry = self._entry(resource, namespace, name)
        return None if entry is None or entry.deleted else copy.deepcopy(entry.raw)

    def stored(self, resource: kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        """All live objects of a resource (in one namespace, or all when None)."""
        return [
            copy.deepcopy(obj.raw)
            for (res, ns, _name), obj in self.objects.items()
            if res == resource and (namespace is None or ns == namespace) and not obj.deleted
        ]

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _store(self, resource: kmock.resource, obj: dict[str, Any], event_type: str) -> None:
        meta = obj["metadata"]
        entry = self._entry(resource, meta.get("namespace"), meta["name"])
        if entry is None:
            self.objects[resource, meta.get("namespace"), meta["name"]] = obj
        elif entry.deleted:
            entry.create(obj)
        else:
            entry.history.append(obj)  # a new version in kmock's history
        self._emit(resource, event_type, obj)

    def _remove(self, resource: kmock.resource, obj: dict[str, Any]) -> None:
        entry = self._entry(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert entry is not None
        entry.delete()
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self._next_revision()  # the deletion is a change too
        self._emit(resource, "DELETED", gone)

    # -- admission: what the API server does to a body before storing it --------------------------

    def _admit(
        self,
        resource: kmock.resource,
        obj: dict[str, Any],
        strict_fields: bool,
    ) -> dict[str, Any]:
        """Prune, validate and default ai-ops kinds; raise 422 Invalid like the API server."""
        if resource == SECRETS:
            return fold_string_data(obj)  # kmock lacks: stringData is stored as base64 data
        if resource.group != GROUP:
            return obj
        kind = obj.get("kind")
        if not strict_fields and isinstance(kind, str):
            with contextlib.suppress(KeyError):  # an unknown kind: validate_resource names the problem
                obj = prune(obj, schema_of(kind))
        problems = validate_resource(obj)
        if problems:
            name = obj.get("metadata", {}).get("name", "")
            causes = [
                {"reason": "FieldValueInvalid", "message": p.message, "field": p.path} for p in problems
            ]
            message = f'{kind}.{GROUP} "{name}" is invalid: ' + "; ".join(str(p) for p in problems)
            raise api_error(
                422, "Invalid", message, {"name": name, "group": GROUP, "kind": kind, "causes": causes}
            )
        return apply_defaults(obj)

    def create_object(
        self,
        resource: kmock.resource,
        body: Any,
        namespace: str | None = None,
        strict_fields: bool = False,
    ) -> dict[str, Any]:
        """POST semantics: stamp, validate, store, emit ADDED. Returns the stored object."""
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        info = self._info(resource)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        namespaced = info.namespaced if info is not None and info.namespaced is not None else bool(namespace)
        if namespaced:
            if namespace and meta.get("namespace") not in (None, namespace):
                raise api_error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace  # kmock lacks: namespace from the path
        else:
            namespace = None
            meta.pop("namespace", None)
        if not meta.get("name"):
            # kmock lacks: generateName (kopf posts its events with it).
            if not meta.get("generateName"):
                raise api_error(
                    422, "Invalid", "metadata.name: Required value: name or generateName is required"
                )
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta["name"]
        if self.current(resource, namespace, name) is not None:
            # kmock lacks: the AlreadyExists reason and message of the API server.
            raise api_error(
                409,
                "AlreadyExists",
                f'{_qualified(resource)} "{name}" already exists',
                {"name": name, "group": resource.group, "kind": resource.plural},
            )
        if info is not None and "status" in info.subresources:
            obj.pop("status", None)  # kmock lacks: status is ignored on create with a status subresource
        obj = self._admit(resource, obj, strict_fields)
        meta = obj["metadata"]
        for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_field, None)
        # kmock lacks: server-set metadata.
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339_now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_revision()
        self._store(resource, obj, "ADDED")
        return copy.deepcopy(obj)

    def update_object(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        replace: bool = False,
        subresource: str | None = None,
        strict_fields: bool = False,
    ) -> dict[str, Any]:
        """PATCH (JSON patch for a list, JSON merge patch for a dict) or PUT (replace=True) semantics."""
        old = self.current(resource, namespace, name)
        if old is None:
            raise not_found(resource, name)
        old_version = old["metadata"].get("resourceVersion")
        conflict = api_error(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "group": resource.group, "kind": resource.plural},
        )
        if replace or isinstance(patch, dict):
            if not isinstance(patch, dict):
                raise api_error(400, "BadRequest", "the request body must be a JSON object")
            # kmock lacks: optimistic concurrency on metadata.resourceVersion.
            wanted_version = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_version is not None and wanted_version != old_version:
                raise conflict
            new = copy.deepcopy(patch) if replace else merge_patch(old, patch)
        elif isinstance(patch, list):
            try:
                new = jsonpatch.apply_patch(old, patch)
            except jsonpatch.JsonPatchTestFailed as error:
                # kmock lacks: a failed `test` op (kopf tests resourceVersion) is a 422, not a 500.
                raise api_error(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {error}"
                ) from None
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
                raise api_error(422, "Invalid", f"invalid JSON patch: {error}") from None
        else:
            raise api_error(400, "BadRequest", "the patch must be a JSON object or a JSON-patch list")
        if not isinstance(new, dict):
            raise api_error(422, "Invalid", "the patched object is not a JSON object")

        # kmock lacks: the status subresource. /status writes change only status; writes to the main
        # resource leave status alone (when the kind has the subresource).
        info = self._info(resource)
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif info is not None and "status" in info.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

        # kmock lacks: server-owned metadata cannot be changed by clients.
        meta = new.setdefault("metadata", {})
        for server_field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ):
            if server_field in old["metadata"]:
                meta[server_field] = old["metadata"][server_field]
            else:
                meta.pop(server_field, None)
        meta["resourceVersion"] = old_version
        new.setdefault("apiVersion", old.get("apiVersion"))
        new.setdefault("kind", old.get("kind"))
        new = self._admit(resource, new, strict_fields)

        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event (as the API server)
        if new.get("spec") != old.get("spec"):
            # kmock lacks: generation counts spec changes (not status, not metadata).
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = self._next_revision()
        self._store(resource, new, "MODIFIED")
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource, new)  # the last finalizer is gone: the object goes away
        return copy.deepcopy(new)

    def delete_object(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        """DELETE semantics: with finalizers, only mark it (deletionTimestamp); else remove it."""
        old = self.current(resource, namespace, name)
        if old is None:
            raise not_found(resource, name)
        if not old["metadata"].get("finalizers"):
            self._remove(resource, old)
            return old
        if old["metadata"].get("deletionTimestamp"):
            return old  # already being deleted
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = rfc3339_now()
        new["metadata"]["resourceVersion"] = self._next_revision()
        self._store(resource, new, "MODIFIED")
        return copy.deepcopy(new)

    def seed_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create a Namespace object directly in the store (kmock lacks namespaces: see the path parser)."""
        existing = self.current(kmock.resource("v1/namespaces"), None, name)
        if existing is not None:
            return existing
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
        }
        self.create_object(kmock.resource("v1/namespaces"), body)
        return self.update_object(
            kmock.resource("v1/namespaces"), None, name, {"status": {"phase": "Active"}}, subresource="status"
        )

    # -- HTTP -------------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> Any:
        resource = request.resource
        if resource is None:
            return await super()._handle(request)
        if request.method == enums.method.PUT and request.name is not None:
            request = attrs.evolve(request, action=enums.action.UPDATE)  # kmock lacks PUT
        if request.method == enums.method.DELETE and request.name is None:
            request = attrs.evolve(request, action=enums.action.DELETE)  # kmock lacks deletecollection
        strict_fields = request.params.get("fieldValidation") == "Strict"
        action = request.action
        if action == enums.action.CREATE:
            obj = self.create_object(resource, request.data, request.namespace, strict_fields)
        elif action == enums.action.UPDATE and request.name is not None:
            obj = self.update_object(
                resource,
                request.namespace,
                request.name,
                request.data,
                replace=request.method == enums.method.PUT,
                subresource=request.subresource,
                strict_fields=strict_fields,
            )
        elif action == enums.action.DELETE and request.name is not None:
            obj = self.delete_object(resource, request.namespace, request.name)
        elif action == enums.action.DELETE:  # kmock lacks: deletecollection
            for item in self._selected(request):
                self.delete_object(resource, item["metadata"].get("namespace"), item["metadata"]["name"])
            obj = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}
        else:
            return await super()._handle(request)
        # The store is updated above, so skip KubernetesEmulator's own storage step: go straight to the
        # reactions (tests may still intercept) and the fallbacks below, which answer with `obj`.
        if request.method == enums.method.PUT and request.subresource:
            # kmock finds no reaction for a PUT on a subresource (a status replace): answer it here.
            return aiohttp.web.json_response(obj)
        self._write_results[request] = obj
        return await kmock.KubernetesScaffold._handle(self, request)

    async def _serve_written(self, request: rendering.Request) -> rendering.Payload:
        return self._write_results.pop(request)

    _serve_create = _serve_update = _serve_delete = _serve_written

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None and request.name is not None
        obj = self.current(request.resource, request.namespace, request.name)
        if obj is None:
            raise not_found(request.resource, request.name)  # kmock lacks the NotFound Status
        return obj

    def _known(self, resource: kmock.resource) -> None:
        if resource not in self._get_resources():
            raise api_error(404, "NotFound", f"the server could not find the requested resource ({resource})")

    def _selected(self, request: rendering.Request) -> list[dict[str, Any]]:
        assert request.resource is not None
        selector = request.params.get("labelSelector")
        return [
            obj
            for obj in self.stored(request.resource, request.namespace)
            if matches_label_selector(obj.get("metadata", {}).get("labels") or {}, selector)
        ]

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        self._known(request.resource)
        info = self._info(request.resource)
        kind = info.kind if info is not None and info.kind else str(request.resource.plural).capitalize()
        api_version = (
            f"{request.resource.group}/{request.resource.version}"
            if request.resource.group
            else request.resource.version
        )
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            # kmock lacks: a real resourceVersion on lists (kopf starts its watch from it).
            "metadata": {"resourceVersion": str(self._revision)},
            "items": self._selected(request),
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        # kmock lacks: watch semantics. It replays every object as ADDED and subscribes afterwards (so
        # events in between are lost, others arrive twice and out of order). Here, as the API server:
        # without `resourceVersion` the watch starts with ADDED for the current objects; with one, it
        # replays the changes after that version from the history; then come the live events, each
        # once and in resourceVersion order.
        assert request.resource is not None
        yield b""  # send the headers now: the stream is open even when nothing happens
        bus = self._buses[request.resource]
        marker = await bus.mark()  # subscribe first, then snapshot: nothing falls in between
        try:
            since = request.params.get("resourceVersion") or "0"
            if since == "0":
                backlog = [{"type": "ADDED", "object": obj} for obj in self._selected(request)]
            else:
                backlog = [
                    copy.deepcopy(event)
                    for resource, event in self._history
                    if resource == request.resource and _revision_of(event) > int(since)
                ]
            delivered = self._revision  # the backlog reflects every change up to here
            for event in backlog:
                if self._watched(request, event):
                    yield event
            async for event in bus.stream(since=marker):
                if _revision_of(event) > delivered and self._watched(request, event):
                    yield event
        finally:
            await bus.unmark(marker)

    def _watched(self, request: rendering.Request, event: Mapping[str, Any]) -> bool:
        meta = event.get("object", {}).get("metadata", {})
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        return matches_label_selector(meta.get("labels") or {}, request.params.get("labelSelector"))


def _revision_of(event: Mapping[str, Any]) -> int:
    return int(event.get("object", {}).get("metadata", {}).get("resourceVersion") or 0)


def write_kubeconfig(server_url: str, directory: Path | None = None) -> Path:
    """A kubeconfig whose current context points at the emulator (plain http, a dummy token)."""
    directory = directory or Path(tempfile.mkdtemp(prefix="ai-ops-kubeconfig-"))
    path = directory / "kubeconfig.yaml"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server_url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _resource(api_version: str, plural: str) -> kmock.resource:
    group, _, version = api_version.rpartition("/")
    return kmock.resource(group, version, plural)


class EmulatorHandle:
    """What the `k8s_emulator` fixture yields: the running emulator plus store helpers (no HTTP).

    The helpers apply the same semantics as HTTP requests (stamping, validation, watch events) and
    raise `kmock.KubernetesError` (with `.status` 404/409/422) where the API would answer an error.
    They are synchronous and never block, so they are safe in async tests; watch events reach
    watchers (kopf) as soon as the test awaits something.
    """

    def __init__(self, emulator: KubernetesApiEmulator, url: str, kubeconfig_path: Path) -> None:
        self.emulator = emulator
        self.url = url
        self.kubeconfig_path = kubeconfig_path

    @property
    def objects(self) -> Any:
        """kmock's raw object store: `objects['v1/configmaps', 'ns', 'name']` (with version history)."""
        return self.emulator.objects

    def seed_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.emulator.seed_namespace(name, labels)

    def create(self, obj: Mapping[str, Any], plural: str | None = None) -> dict[str, Any]:
        """Create from a manifest; the plural is looked up from the kind in discovery unless given."""
        api_version = str(obj.get("apiVersion", ""))
        resource = _resource(api_version, plural or self._plural_of(api_version, str(obj.get("kind", ""))))
        namespace = (obj.get("metadata") or {}).get("namespace")
        return self.emulator.create_object(resource, dict(obj), namespace)

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.emulator.current(_resource(api_version, plural), namespace, name)

    def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.emulator.stored(_resource(api_version, plural), namespace)

    def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (dict) or a JSON patch (list); `subresource="status"` writes status only."""
        body: Any = dict(patch) if isinstance(patch, Mapping) else [dict(op) for op in patch]
        return self.emulator.update_object(
            _resource(api_version, plural), namespace, name, body, subresource=subresource
        )

    def delete(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.emulator.delete_object(_resource(api_version, plural), namespace, name)

    def _plural_of(self, api_version: str, kind: str) -> str:
        group, _, version = api_version.rpartition("/")
        for resource in self.emulator.resources:
            info = self.emulator.resources[resource]
            if resource.group == group and resource.version == version and info.kind == kind:
                return str(resource.plural)
        raise ValueError(f"no resource of kind {kind!r} in {api_version!r} is registered in the emulator")
