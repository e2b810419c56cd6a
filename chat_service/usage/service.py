"""Builds the usage recorder from the settings, and the budget check the chat routes share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_service.usage.budgets import parse_caller_budgets
from chat_service.usage.ledger import Ledger, MemoryLedger, RedisLedger
from chat_service.usage.recorder import UsageRecorder

if TYPE_CHECKING:
    from chat_service.auth import TokenAuth
    from chat_service.config.store import ConfigStore
    from chat_service.conversations import ConversationStore
    from chat_service.engine import ChatEngine
    from chat_service.metrics import ChatMetrics
    from chat_service.settings import Settings


def build_usage(
    settings: Settings,
    metrics: ChatMetrics,
    config_store: ConfigStore,
    conversations: ConversationStore,
    auth: TokenAuth,
) -> UsageRecorder | None:
    if not settings.usage_accounting:
        return None
    client = conversations.redis_client
    ledger: Ledger = (
        RedisLedger(client, settings.usage_retention_days)
        if client is not None
        else MemoryLedger(settings.usage_retention_days)
    )
    return UsageRecorder(
        metrics=metrics,
        ledger=ledger,
        config=lambda: config_store.current.config if config_store.loaded else None,
        known_callers=auth.names,
        caller_budgets=parse_caller_budgets(settings.caller_daily_budget),
    )


async def check_budget(
    usage: UsageRecorder | None, engine: ChatEngine, identity: str, model: str | None
) -> None:
    """Before a turn (streamed or not, /api/chat or /v1): 429 budget_exceeded once a budget is used up."""
    if usage is None:
        return
    entry = engine.select_model(engine.snapshot.config, model)
    await usage.check_budget(identity, entry)
