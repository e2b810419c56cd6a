"""The adapter to the Kubernetes API: one `kubernetes` ApiClient per process, sync calls run in threads.

Calls ask for raw JSON (`_preload_content=False`): faster than the client's model objects and the same
camelCase shape the pure views in this package read. Failures become KubernetesError with a clear text.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from mcp_servers.kubernetes.errors import ApiCall, api_error_message
from mcp_servers.kubernetes.resources import POD, ResourceKind

JSON = dict[str, Any]
# (connect, read) seconds: a hung API server must not hang a tool call.
REQUEST_TIMEOUT = (5.0, 30.0)
# Server-side page size: one page is plenty for a model; the answer says when more exist.
LIST_PAGE_SIZE = 500


def connection_problem(error: BaseException) -> str:
    """The gist of a urllib3 failure ("Connection refused", "timed out") instead of its long repr."""
    reason = getattr(error, "reason", None) or error
    if "timed out" in str(reason).lower() or "timeout" in type(reason).__name__.lower():
        return "timed out"
    found = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(reason))
    return found.group(1).strip() if found else str(reason)[:300]


class ClusterConfigError(Exception):
    """No usable credentials (no kubeconfig, not in a pod)."""


class KubernetesError(Exception):
    """An API failure, worded for the model (shown as the tool error)."""


@dataclass
class ListResult:
    items: list[JSON]
    more_on_server: bool = False


@dataclass
class Cluster:
    api_client: Any  # kubernetes.client.ApiClient
    host: str
    source: str
    _apis: dict[str, Any] = field(default_factory=dict)

    def _api(self, class_name: str) -> Any:
        if class_name not in self._apis:
            import kubernetes.client

            self._apis[class_name] = getattr(kubernetes.client, class_name)(self.api_client)
        return self._apis[class_name]

    async def _request(self, call: ApiCall, api_class: str, method: str, *args: Any, **kwargs: Any) -> bytes:
        function = getattr(self._api(api_class), method)
        kwargs = {key: value for key, value in kwargs.items() if value is not None}

        def run() -> bytes:
            import urllib3.exceptions
            from kubernetes.client.exceptions import ApiException

            try:
                response = function(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
                return bytes(response.data)
            except ApiException as error:
                raise KubernetesError(api_error_message(call, int(error.status or 0), error.body)) from None
            except urllib3.exceptions.HTTPError as error:
                problem = connection_problem(error)
                raise KubernetesError(f"cannot reach the Kubernetes API at {self.host}: {problem}") from None

        return await anyio.to_thread.run_sync(run)

    async def list(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        call = ApiCall("list", kind.plural, kind.group, namespace if kind.namespaced else None)
        options = {
            "label_selector": label_selector,
            "field_selector": field_selector,
            "limit": LIST_PAGE_SIZE,
        }
        if not kind.namespaced:
            raw = await self._request(call, kind.api_class, f"list_{kind.method_noun}", **options)
        elif namespace:
            raw = await self._request(
                call, kind.api_class, f"list_namespaced_{kind.method_noun}", namespace, **options
            )
        else:
            raw = await self._request(
                call, kind.api_class, f"list_{kind.method_noun}_for_all_namespaces", **options
            )
        body = json.loads(raw)
        return ListResult(
            items=list(body.get("items") or []),
            more_on_server=bool((body.get("metadata") or {}).get("continue")),
        )

    async def read(self, kind: ResourceKind, name: str, namespace: str | None = None) -> JSON:
        if kind.namespaced and not namespace:
            raise KubernetesError(f"{kind.plural} are namespaced: give a namespace")
        call = ApiCall("get", kind.plural, kind.group, namespace if kind.namespaced else None, name)
        if kind.namespaced:
            raw = await self._request(
                call, kind.api_class, f"read_namespaced_{kind.method_noun}", name, namespace
            )
        else:
            raw = await self._request(call, kind.api_class, f"read_{kind.method_noun}", name)
        obj: JSON = json.loads(raw)
        return obj

    async def pod_log(
        self,
        name: str,
        namespace: str,
        *,
        container: str | None,
        tail_lines: int,
        since_seconds: int | None,
        previous: bool,
        limit_bytes: int,
    ) -> str:
        call = ApiCall("get", "pods/log", POD.group, namespace, name)
        raw = await self._request(
            call,
            POD.api_class,
            "read_namespaced_pod_log",
            name,
            namespace,
            container=container,
            tail_lines=tail_lines,
            since_seconds=since_seconds,
            previous=previous or None,
            limit_bytes=limit_bytes,
        )
        return raw.decode("utf-8", errors="replace")


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """Credentials from `kubeconfig`, else in-cluster (in a pod), else $KUBECONFIG or ~/.kube/config."""
    from kubernetes import client, config

    try:
        if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            api_client = config.new_client_from_config(
                config_file=path, context=context, persist_config=False
            )
            source = f"kubeconfig {path or '~/.kube/config'}" + (f", context {context}" if context else "")
        else:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api_client = client.ApiClient(configuration)
            source = "in-cluster service account"
    except (config.ConfigException, OSError) as error:
        raise ClusterConfigError(f"no usable Kubernetes credentials: {error}") from None
    return Cluster(api_client=api_client, host=api_client.configuration.host, source=source)
