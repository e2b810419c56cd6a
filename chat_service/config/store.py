"""The agent config in force, loaded at start and swapped atomically when it changes.

Sources: the config file (watched with watchfiles; in a pod it is a ConfigMap volume, which kubelet
refreshes only after up to a minute) and, when the pod has in-cluster credentials, the ConfigMap itself
through the Kubernetes API (kubernetes.py), which brings a change within about a second. A request
takes the current snapshot once and keeps it, so a reload never changes the config under a turn in
flight. A bad document never replaces a good one: it is logged and reported in ``/readyz`` until a good
one arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_ops_api.agent_config import AgentConfig, AgentConfigError, parse_agent_config

if TYPE_CHECKING:
    from chat_service.config.kubernetes import KubeConfigMapSource

log = logging.getLogger(__name__)

# The symlink kubelet renames over to publish a new version of a ConfigMap volume (its atomic writer).
KUBELET_DATA_LINK = "..data"


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
        # True when the service started before its config existed and waits for it (see services.py).
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

    def concerns_config(self, _change: object, path: str) -> bool:
        """The watch filter: the config file itself, or the ``..data`` symlink a ConfigMap volume swaps
        to update it (the file is a symlink through it and does not change itself). Anything else in the
        folder (a log file, an editor's swap file) would wake the watcher for nothing, forever."""
        return Path(path).name in (self.path.name, KUBELET_DATA_LINK)

    async def _watch_file(self) -> None:
        from watchfiles import awatch

        directory = self.path.parent
        while True:
            try:
                # The folder, filtered: the ..data symlink of a ConfigMap volume lives beside the file.
                async for changes in awatch(
                    directory,
                    watch_filter=self.concerns_config,
                    debounce=50,
                    step=20,
                    recursive=False,
                    ignore_permission_denied=True,
                ):
                    log.debug("agent config %s changed on disk (%s); reloading", self.path, sorted(changes))
                    self.reload_file()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s failed (%s); retrying in 2 s", directory, exc)
                await asyncio.sleep(2)

    async def _watch_kube(self, source: KubeConfigMapSource) -> None:
        async for text, version in source.changes():
            self.apply(text, f"configmap {source.namespace}/{source.name}@{version}", from_api=True)


def describe_error(error: ReloadError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"message": error.message, "source": error.source, "at": error.at.isoformat()}
