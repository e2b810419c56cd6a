"""The operator's own Kubernetes API calls (kopf does the watching): a thin async layer over the
``kubernetes`` client, one ``ApiClient`` per process, each call in a worker thread.

Calls go through ``ApiClient.param_serialize`` + ``call_api`` with an explicit content type, because the
generated ``patch_*`` methods pick JSON-patch for every body. Bodies come back as plain dicts.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import json
from typing import Any

import kubernetes

from ai_ops_api.specs import API_VERSION, ResourceKind

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A non-2xx answer; ``status`` is the HTTP status. The message never contains request bodies."""

    def __init__(self, status: int, method: str, path: str, reason: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {reason}")
        self.status = status


class KubeClient:
    def __init__(self, api_client: kubernetes.client.ApiClient, workers: int = 16) -> None:
        self.api_client = api_client
        # Own threads (not the loop's default executor): status writes of a probe storm and the
        # probes' Secret reads must not queue behind each other's or anybody else's blocking calls.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """In-cluster credentials when running in a pod, else the kubeconfig (explicit path, $KUBECONFIG)."""
        configuration = kubernetes.client.Configuration()
        configuration.connection_pool_maxsize = 32
        if kubeconfig is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
                return cls(kubernetes.client.ApiClient(configuration))
            except kubernetes.config.ConfigException:
                pass
        import os

        path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        kubernetes.config.load_kube_config(
            config_file=os.path.expanduser(path.split(os.pathsep)[0]),
            context=context,
            client_configuration=configuration,
        )
        return cls(kubernetes.client.ApiClient(configuration))

    @property
    def configuration(self) -> kubernetes.client.Configuration:
        return self.api_client.configuration

    def connection_info(self) -> Any:
        """The same credentials for kopf's own API client (what ``kopf.login_via_client`` does)."""
        import kopf

        config = self.configuration
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
            "authorization"
        )
        parts = header.split(" ", 1) if header else []
        scheme, token = (
            (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        )
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            username=config.username or None,
            password=config.password or None,
            scheme=scheme,
            token=token,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    # --- generic ----------------------------------------------------------------------------

    def _request_sync(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self.api_client.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(*params, _request_timeout=30)
        data = response.read()
        if not 200 <= response.status < 300:
            reason = response.reason or ""
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(data).get("message") or reason
            raise KubeError(response.status, method, path, str(reason)[:300])
        return json.loads(data) if data else None

    async def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._request_sync, method, path, body, content_type)
        return await loop.run_in_executor(self._executor, call)

    # --- what the operator does ---------------------------------------------------------------

    async def patch_status(
        self, kind: ResourceKind, namespace: str, name: str, status: dict[str, Any]
    ) -> Any:
        path = f"/apis/{API_VERSION}/namespaces/{namespace}/{kind.plural}/{name}/status"
        return await self.request("PATCH", path, {"status": status}, MERGE_PATCH)

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)

    async def merge_patch_configmap(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/{name}", patch, MERGE_PATCH
        )

    async def delete_configmap(self, namespace: str, name: str) -> Any:
        return await self.request("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    async def json_patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> Any:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        return await self.request("PATCH", path, ops, JSON_PATCH)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One Secret value, decoded, for immediate use (the caller must not keep or log it)."""
        try:
            secret = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        encoded = (secret.get("data") or {}).get(key)
        if encoded is not None:
            return base64.b64decode(encoded).decode("utf-8", errors="replace")
        plain = (secret.get("stringData") or {}).get(key)
        return str(plain) if plain is not None else None

    async def get(self, path: str) -> Any:
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
