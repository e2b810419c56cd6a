"""What ``/readyz`` and ``/api/status`` show: the config in force, models, MCP servers and warnings.

Kept apart from the turn loop: these views read the state the other parts record (a rejected reload,
tool-loading failures, models that could not be built, provider calls that failed) and never change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ai_ops_api.agent_config import ModelEntry
from chat_service.config.store import ConfigSnapshot, ConfigStore, describe_error
from chat_service.conversations import ConversationStore
from chat_service.engine.agents import AgentCache
from chat_service.engine.errors import is_outage
from chat_service.errors import NO_MODEL_MESSAGE
from chat_service.runbooks.service import RunbookService
from chat_service.tools.toolbox import MCPToolbox


@dataclass
class ProviderHealth:
    """What the last calls to one provider showed (a failure is kept until a call succeeds)."""

    reachable: bool
    reason: str | None = None
    since: datetime | None = None  # first failure of the current outage
    at: datetime | None = None  # the last call

    def public(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "reason": self.reason,
            "since": self.since.isoformat() if self.since else None,
            "at": self.at.isoformat() if self.at else None,
        }


def _provider_key(entry: ModelEntry) -> tuple[str, str | None]:
    return entry.provider.name, entry.provider.base_url


class ServiceStatus:
    def __init__(
        self,
        config_store: ConfigStore,
        conversations: ConversationStore,
        toolbox: MCPToolbox,
        agents: AgentCache,
        runbooks: RunbookService | None = None,
    ):
        self.config_store = config_store
        self.conversations = conversations
        self.toolbox = toolbox
        self.agents = agents
        self.runbooks = runbooks
        self._providers: dict[tuple[str, str | None], ProviderHealth] = {}

    # -- provider health, recorded by the turn loop -------------------------------------------------

    def provider_call_failed(self, entry: ModelEntry, exc: BaseException, reason: str) -> None:
        """``reason``: the sanitized message the client got."""
        if not is_outage(exc):
            return
        now = datetime.now(UTC)
        previous = self._providers.get(_provider_key(entry))
        since = previous.since if previous is not None and not previous.reachable else now
        self._providers[_provider_key(entry)] = ProviderHealth(False, reason, since, now)

    def provider_call_succeeded(self, entry: ModelEntry) -> None:
        self._providers[_provider_key(entry)] = ProviderHealth(True, at=datetime.now(UTC))

    def provider_health(self, entry: ModelEntry) -> ProviderHealth | None:
        """None until a call to the model's provider finished."""
        return self._providers.get(_provider_key(entry))

    def _outage_note(self, entry: ModelEntry) -> str | None:
        health = self.provider_health(entry)
        if health is None or health.reachable:
            return None
        since = health.since.strftime("%H:%M:%S UTC") if health.since else "the last call"
        return f"its provider {entry.provider.name!r} does not answer (since {since}): {health.reason}"

    def warnings(self, snapshot: ConfigSnapshot) -> list[str]:
        found: list[str] = []
        error = self.config_store.last_error
        if error is not None:
            found.append(
                f"the last config reload was rejected, the previous config stays in force: {error.message}"
            )
        toolset = self.toolbox.cached_toolset(snapshot.checksum)
        if toolset is not None:
            found.extend(toolset.warnings)
        for report in self.agents.reports(snapshot.checksum).values():
            found.extend(report.warnings)
            if not report.available and report.reason:
                found.append(f"model {report.name!r} is unavailable: {report.reason}")
        for entry in snapshot.config.models:
            note = self._outage_note(entry)
            if note:
                found.append(f"model {entry.name!r} cannot answer now: {note}")
        if not snapshot.config.models:
            found.append(NO_MODEL_MESSAGE)
        if self.runbooks is not None:
            found.extend(self.runbooks.warnings())
        return found

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: list[str] = []
        if not self.config_store.loaded:
            reasons.append("no agent config loaded")
        store_problem = await self.conversations.ping()
        if store_problem:
            reasons.append(f"conversation store: {store_problem}")
        body: dict[str, Any] = {
            "status": "ready" if not reasons else "not ready",
            "reasons": reasons,
            "conversation_store": self.conversations.backend,
        }
        if self.config_store.loaded:
            snapshot = self.config_store.current
            body["config"] = {
                "checksum": snapshot.checksum,
                "loaded_at": snapshot.loaded_at.isoformat(),
                "source": snapshot.source,
            }
            body["reload_error"] = describe_error(self.config_store.last_error)
            body["warnings"] = self.warnings(snapshot)
            if self.runbooks is not None:
                # Informational: a search on BM25 alone still serves every turn.
                body["runbooks"] = self.runbooks.state().public()
        return not reasons, body

    def status(self, snapshot: ConfigSnapshot, models: list[dict[str, Any]]) -> dict[str, Any]:
        """``models``: the configured models as ``/api/models`` lists them."""
        config = snapshot.config
        toolset = self.toolbox.cached_toolset(snapshot.checksum)
        reports = self.agents.reports(snapshot.checksum)
        shown_models = []
        for item in models:
            report = reports.get(item["name"])
            available = report.available if report else None
            reason = report.reason if report else None
            entry = config.model_by_name(item["name"])
            health = self.provider_health(entry) if entry else None
            outage = self._outage_note(entry) if entry else None
            if outage and available is not False:
                available, reason = False, outage
            shown_models.append(
                {
                    **item,
                    "available": available,
                    "unavailable_reason": reason,
                    "provider_status": health.public() if health else None,
                }
            )
        servers = []
        for server in config.mcp_servers:
            state = toolset.servers.get(server.name) if toolset else None
            servers.append(
                {
                    "name": server.name,
                    "transport": server.transport,
                    "url": server.url,
                    "health": server.health,
                    "connected": bool(state and state.error is None),
                    "tools": list(state.tools) if state else [],
                    "error": state.error if state else None,
                }
            )
        middleware = {
            m.name: [
                {"name": mw.name, "type": mw.type, "priority": mw.priority, "critical": mw.critical}
                for mw in m.middleware
            ]
            for m in config.models
        }
        return {
            "config": {
                "checksum": snapshot.checksum,
                "loaded_at": snapshot.loaded_at.isoformat(),
                "source": snapshot.source,
                "namespace": config.namespace,
                "reload_error": describe_error(self.config_store.last_error),
            },
            "models": shown_models,
            "mcp_servers": servers,
            "middleware": middleware,
            "conversation_store": self.conversations.backend,
            "runbooks": self.runbooks.state().public() if self.runbooks is not None else None,
            "warnings": self.warnings(snapshot),
        }
