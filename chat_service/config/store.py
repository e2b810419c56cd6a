"""The agent config in force, loaded at start and swapped atomically when it changes.

Sources: the config file (watched with watchfiles; in a pod it is a ConfigMap volume, which kubelet
refreshes only after up to a minute) and, when the pod has in-cluster credentials, the ConfigMap itself
through the Kubernetes API (a watch with a field selector on its one name), which brings a change within
about a second. A request takes the current snapshot once and keeps it, so a reload never changes the
config under a turn in flight. A bad document never replaces a good one: it is logged and reported in
``/readyz`` until a good one arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY, AgentConfig, AgentConfigError, parse_agent_config
from chat_service.settings import SERVICE_ACCOUNT_DIR

log = logging.getLogger(__name__)


class AgentConfigMissing(AgentConfigError):
    """The agent config file does not exist (yet): in a cluster the operator has not written it so far."""


@dataclass(frozen=True)
class ConfigSnapshot:
    config: AgentConfig
    checksum: str
    loaded_at: datetime
    source: str


@dataclass(frozen=True)
class ReloadError:
    message: str
    source: str
    at: datetime


def parse_snapshot(text: str | bytes, source: str) -> ConfigSnapshot:
    config = parse_agent_config(text)
    checksum = config.checksum or config.content_checksum()
    return ConfigSnapshot(config=config, checksum=checksum, loaded_at=datetime.now(UTC), source=source)


@dataclass
class ConfigStore:
    """Holds the current snapshot; ``apply`` validates and swaps, or keeps the old one and records why."""

    path: Path
    # (old, new); old is None for the first config of a service that started without one.
    on_change: list[Callable[[ConfigSnapshot | None, ConfigSnapshot], None]] = field(default_factory=list)
    on_reload: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._current: ConfigSnapshot | None = None
        self.last_error: ReloadError | None = None
        # Versions the Kubernetes API has moved past (or delivered): the lagging volume file may still show
        # them later, and must not bring them back.
        self._superseded: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # True when the service started before its config existed and waits for it (see app.py).
        self.started_empty = False

    # -- loading -------------------------------------------------------------------------------------

    def load_initial(self) -> ConfigSnapshot:
        """Read and validate the file; raises AgentConfigError with a message meant for the operator."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            raise AgentConfigMissing(
                f"agent config {self.path} does not exist (render one with `ai-ops render`)"
            ) from None
        except OSError as exc:
            raise AgentConfigError(f"agent config {self.path} cannot be read: {exc.strerror}") from None
        snapshot = parse_snapshot(text, f"file {self.path}")
        self._current = snapshot
        return snapshot

    @property
    def current(self) -> ConfigSnapshot:
        if self._current is None:
            raise RuntimeError("no agent config loaded")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def apply(self, text: str | bytes, source: str, *, from_api: bool = False) -> bool:
        """Validate ``text`` and make it current; False (old config kept) when invalid or unchanged."""
        try:
            snapshot = parse_snapshot(text, source)
        except AgentConfigError as exc:
            self.last_error = ReloadError(str(exc), source, datetime.now(UTC))
            log.error(
                "agent config from %s rejected, keeping checksum %s: %s",
                source,
                self._current.checksum if self._current else None,
                exc,
            )
            for listener in self.on_reload:
                listener("rejected")
            return False
        old = self._current
        if from_api:
            self._superseded.add(snapshot.checksum)
            if old is not None:
                self._superseded.add(old.checksum)
        elif snapshot.checksum in self._superseded and old is not None and old.checksum != snapshot.checksum:
            # An older ConfigMap version reaching the volume after a newer one came through the API.
            return False
        if old is not None and old.checksum == snapshot.checksum:
            self.last_error = None
            return False
        self._current = snapshot  # one reference assignment: the swap is atomic for readers
        self.last_error = None
        log.info(
            "agent config %s applied from %s (%d models, %d MCP servers)",
            snapshot.checksum,
            source,
            len(snapshot.config.models),
            len(snapshot.config.mcp_servers),
        )
        for listener in self.on_reload:
            listener("applied")
        # The first config of a service that started without one is a change too (from nothing).
        if old is not None or self.started_empty:
            for callback in self.on_change:
                try:
                    callback(old, snapshot)
                except Exception:
                    log.exception("config change listener failed")
        return True

    # -- watching ------------------------------------------------------------------------------------

    def start_watching(self, kube_source: KubeConfigMapSource | None = None) -> None:
        self._tasks.append(asyncio.create_task(self._watch_file(), name="ai-ops-config-file-watch"))
        if kube_source is not None:
            self._tasks.append(
                asyncio.create_task(self._watch_kube(kube_source), name="ai-ops-configmap-watch")
            )

    async def stop_watching(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def reload_file(self) -> bool:
        try:
            text = self.path.read_bytes()
        except OSError as exc:
            # A ConfigMap volume swaps a symlink; the file may be missing for an instant.
            log.debug("agent config %s not readable right now: %s", self.path, exc)
            return False
        return self.apply(text, f"file {self.path}")

    async def _watch_file(self) -> None:
        from watchfiles import awatch

        directory = self.path.parent
        while True:
            try:
                # The whole directory: a ConfigMap volume changes through its ..data symlink, not the file.
                async for _changes in awatch(
                    directory, debounce=50, step=20, recursive=False, ignore_permission_denied=True
                ):
                    self.reload_file()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s failed (%s); retrying in 2 s", directory, exc)
                await asyncio.sleep(2)

    async def _watch_kube(self, source: KubeConfigMapSource) -> None:
        async for text, version in source.changes():
            self.apply(text, f"configmap {source.namespace}/{source.name}@{version}", from_api=True)


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


def describe_error(error: ReloadError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"message": error.message, "source": error.source, "at": error.at.isoformat()}
