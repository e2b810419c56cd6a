"""The chat engine: turns (turns.py) on cached agents (agents.py), streamed as events (events.py), failures
mapped to API errors (errors.py), readiness and status views (status.py)."""

from chat_service.engine.agents import DEFAULT_SYSTEM_PROMPT
from chat_service.engine.errors import map_exception
from chat_service.engine.events import TurnEvent, TurnResult
from chat_service.engine.turns import ChatEngine

__all__ = ["DEFAULT_SYSTEM_PROMPT", "ChatEngine", "TurnEvent", "TurnResult", "map_exception"]
