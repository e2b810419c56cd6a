"""The service container: everything a request needs, built once per app and reached by the routers
through ``routers/deps.py`` (kept out of app.py, which imports the routers)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from chat_service.actions.service import ActionService, build_actions
from chat_service.auth import TokenAuth
from chat_service.config.kubernetes import KubeConfigMapSource
from chat_service.config.store import AgentConfigMissing, ConfigStore
from chat_service.conversations import ConversationStore
from chat_service.engine import ChatEngine, tracing
from chat_service.incidents.service import Incidents, build_incidents
from chat_service.metrics import ChatMetrics
from chat_service.runbooks.service import RunbookService
from chat_service.runbooks.source import ConfigMapShardReader, FileShardReader, ShardReader
from chat_service.secrets import SecretResolver
from chat_service.settings import Settings, in_cluster
from chat_service.thread_index import ThreadIndex, thread_index_for
from chat_service.tools.toolbox import MCPToolbox
from chat_service.usage.recorder import UsageRecorder
from chat_service.usage.service import build_usage

log = logging.getLogger("ai_ops.chat")


@dataclass
class ChatServices:
    """Everything a request needs, built once per app."""

    settings: Settings
    config_store: ConfigStore
    conversations: ConversationStore
    secrets: SecretResolver
    toolbox: MCPToolbox
    engine: ChatEngine
    auth: TokenAuth
    metrics: ChatMetrics
    thread_index: ThreadIndex
    runbooks: RunbookService
    kube_source: KubeConfigMapSource | None = None
    incidents: Incidents | None = None
    usage: UsageRecorder | None = None  # None: AI_OPS_USAGE_ACCOUNTING is off
    actions: ActionService | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        kube_source: KubeConfigMapSource | None = None,
    ) -> ChatServices:
        """Raises AgentConfigError (bad config) or TokensFileError (bad tokens file) with a clear message."""
        if settings.openai_fast_requests:
            from chat_service import openai_fastpath

            openai_fastpath.install()
        tracing.install()
        metrics = ChatMetrics()
        config_store = ConfigStore(settings.config_path)
        if kube_source is None and settings.kubernetes_watch and in_cluster():
            kube_source = KubeConfigMapSource.from_service_account(
                settings.configmap_name, settings.namespace
            )
        try:
            metrics.set_config(config_store.load_initial().checksum)
        except AgentConfigMissing as exc:
            # A missing file is fatal locally (a typo in --config), but not in a cluster, where the
            # operator writes the optional ConfigMap after the pod starts: serve 503 until it is there.
            if kube_source is None and not settings.wait_for_config:
                raise
            config_store.started_empty = True
            log.warning("%s; waiting for it (not ready until then)", exc)
        config_store.on_reload.append(lambda result: metrics.config_reloads.labels(result=result).inc())
        auth = TokenAuth(settings.auth_tokens_file)
        secrets = SecretResolver(settings.secrets_dir, environ)
        conversations = ConversationStore(
            settings.redis_url,
            settings.session_ttl_seconds,
            socket_timeout=settings.redis_socket_timeout_seconds,
            connect_timeout=settings.redis_connect_timeout_seconds,
        )
        toolbox = MCPToolbox(
            secrets,
            connect_timeout=settings.mcp_connect_timeout_seconds,
            tool_timeout=settings.mcp_tool_timeout_seconds,
            retry_interval=settings.mcp_retry_interval_seconds,
            metrics=metrics,
            stdio_commands=settings.stdio_commands,
            allow_loopback=settings.allow_loopback,
        )
        # Runbook shards come from where the agent config comes from: the API in a cluster, else files.
        reader: ShardReader = (
            ConfigMapShardReader(kube_source)
            if kube_source is not None
            else FileShardReader(settings.config_path.parent)
        )
        runbooks = RunbookService(
            reader,
            secrets,
            redis=conversations.redis_client,
            tool_enabled=settings.runbook_tool,
            vector_retry_seconds=settings.runbook_vector_retry_seconds,
        )
        runbooks.attach(config_store)
        engine = ChatEngine(settings, config_store, conversations, secrets, toolbox, metrics, runbooks)
        usage = build_usage(settings, metrics, config_store, conversations, auth)
        engine.agents.usage = toolbox.usage = usage
        thread_index = thread_index_for(conversations.redis_client, settings.session_ttl_seconds)
        actions = build_actions(settings)
        toolbox.proposer = actions

        async def continue_turn(caller: str, thread_id: str, message: str) -> None:
            await engine.run_turn(caller, message, thread_id)

        actions.continue_turn = continue_turn
        return cls(
            settings,
            config_store,
            conversations,
            secrets,
            toolbox,
            engine,
            auth,
            metrics,
            thread_index,
            runbooks,
            kube_source,
            build_incidents(settings, engine),
            usage,
            actions,
        )

    async def start(self) -> None:
        self.runbooks.start(self.config_store)
        self.config_store.start_watching(self.kube_source)
        if self.incidents is not None:
            self.incidents.start()
        if self.actions is not None:
            self.actions.start()
        if self.config_store.loaded:
            self.engine.prepare_in_background()
        if not self.auth.enabled:
            log.warning("AI_OPS_AUTH_TOKENS_FILE is not set: the API is open to anyone who can reach it")
        log.info(
            "chat service started: config %s, conversations in %s",
            self.config_store.current.checksum if self.config_store.loaded else "(waiting for one)",
            self.conversations.backend,
        )

    async def stop(self) -> None:
        if self.actions is not None:
            await self.actions.stop()
        if self.incidents is not None:
            await self.incidents.stop()
        await self.config_store.stop_watching()
        await self.runbooks.stop()
        await self.engine.close()
        await self.toolbox.aclose()
        if self.usage is not None:  # its last ledger write, before the Redis client closes
            await self.usage.aclose()
        await self.conversations.aclose()
