"""The agent config's ConfigMap, watched through the Kubernetes API: a change arrives within about a second,
where the ConfigMap volume the pod mounts lags by up to a minute (the store takes both, see store.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY
from chat_service.settings import SERVICE_ACCOUNT_DIR

log = logging.getLogger(__name__)


class KubeConfigMapSource:
    """Watches one ConfigMap through the Kubernetes API (list, then watch from its resourceVersion).

    Uses plain HTTP calls because the official client is synchronous; the field selector on the name
    lets RBAC restrict the service account to that single ConfigMap (``resourceNames``).
    """

    def __init__(
        self,
        api_url: str,
        namespace: str,
        name: str,
        *,
        token_path: Path | None = None,
        ca_path: Path | None = None,
        retry_seconds: float = 2.0,
        watch_timeout_seconds: int = 300,
    ):
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.name = name
        self.token_path = token_path
        self.ca_path = ca_path
        self.retry_seconds = retry_seconds
        self.watch_timeout_seconds = watch_timeout_seconds

    @classmethod
    def from_service_account(cls, name: str, namespace: str | None = None) -> KubeConfigMapSource:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # IPv6
            host = f"[{host}]"
        ns = namespace or (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
        return cls(
            f"https://{host}:{port}",
            ns,
            name,
            token_path=SERVICE_ACCOUNT_DIR / "token",
            ca_path=SERVICE_ACCOUNT_DIR / "ca.crt",
        )

    def _client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json"}
        if self.token_path is not None:
            # Re-read on each connection: projected service-account tokens are rotated by kubelet.
            headers["Authorization"] = f"Bearer {self.token_path.read_text().strip()}"
        verify: ssl.SSLContext | bool = True
        if self.ca_path is not None:
            verify = ssl.create_default_context(cafile=str(self.ca_path))
        timeout = httpx.Timeout(10.0, read=self.watch_timeout_seconds + 30.0)
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, verify=verify, timeout=timeout)

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps"

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {"fieldSelector": f"metadata.name={self.name}", **extra}

    def _data_of(self, obj: dict[str, Any]) -> str | None:
        if obj.get("metadata", {}).get("name") != self.name:
            return None  # field selectors may be ignored by test servers; filter here as well
        data = obj.get("data") or {}
        text = data.get(AGENT_CONFIG_DATA_KEY)
        return text if isinstance(text, str) else None

    async def read(self, name: str) -> dict[str, Any] | None:
        """Another ConfigMap of the namespace, by name (GET), or None when it does not exist: the runbook
        shards beside the agent config (RBAC names each one in resourceNames, so no list)."""
        async with self._client() as client:
            response = await client.get(f"{self._path}/{name}")
            if response.status_code == 404:
                return None
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found

    async def changes(self) -> AsyncIterator[tuple[str, str]]:
        """Yield (document text, resourceVersion) for the current ConfigMap and every change after."""
        last_text: str | None = None
        while True:
            try:
                async with self._client() as client:
                    response = await client.get(self._path, params=self._params())
                    response.raise_for_status()
                    listing = response.json()
                    version = listing.get("metadata", {}).get("resourceVersion", "")
                    for item in listing.get("items", []):
                        text = self._data_of(item)
                        if text is not None and text != last_text:
                            last_text = text
                            yield text, item.get("metadata", {}).get("resourceVersion", version)
                    params = self._params(
                        watch="true",
                        allowWatchBookmarks="true",
                        timeoutSeconds=str(self.watch_timeout_seconds),
                    )
                    if version:
                        params["resourceVersion"] = version
                    started = time.monotonic()
                    async with client.stream("GET", self._path, params=params) as stream:
                        stream.raise_for_status()
                        async for line in stream.aiter_lines():
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            kind, obj = event.get("type"), event.get("object") or {}
                            if kind == "ERROR":
                                log.info("ConfigMap watch ended by the API server: %s", obj.get("message"))
                                break
                            if kind in ("ADDED", "MODIFIED"):
                                text = self._data_of(obj)
                                if text is not None and text != last_text:
                                    last_text = text
                                    yield text, obj.get("metadata", {}).get("resourceVersion", "")
                            elif kind == "DELETED" and obj.get("metadata", {}).get("name") == self.name:
                                log.warning(
                                    "ConfigMap %s/%s was deleted; keeping the last config",
                                    self.namespace,
                                    self.name,
                                )
                # A watch that ends normally (timeoutSeconds) is re-listed at once, unless it ends at once.
                if time.monotonic() - started > 1.0:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "ConfigMap %s/%s watch failed (%s: %s); retrying in %.0f s",
                    self.namespace,
                    self.name,
                    type(exc).__name__,
                    exc,
                    self.retry_seconds,
                )
            await asyncio.sleep(self.retry_seconds)
