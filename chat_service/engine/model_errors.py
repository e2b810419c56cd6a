"""Always on, outermost: a failed model call leaves the graph as our ChatError, its message sanitized.

LangGraph writes the exception a node raised into the checkpoint as the task's ``__error__`` pending write
(its ``repr``), which the Redis checkpointer keeps for the session lifetime. A provider error often echoes
the request, API key included; sanitizing only the HTTP answer would leave the key at rest. So the model
call is mapped here, inside the graph, with ``map_exception`` (the one the HTTP answer uses) and the
values of every Secret the resolver handed out: what LangGraph stores and what the client reads are the
same sanitized text. The mapped error is raised outside the ``except`` block, so it carries no
``__context__`` pointing back at the raw exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langgraph.errors import GraphBubbleUp

from chat_service.engine.errors import is_outage, map_exception
from chat_service.errors import ChatError
from chat_service.secrets import SecretResolver


class ModelErrorBoundary(AgentMiddleware[Any, Any, Any]):
    """See the module docstring. Not configurable: every agent has it, outermost."""

    def __init__(self, secrets: SecretResolver) -> None:
        super().__init__()
        self.secrets = secrets

    def _mapped(self, exc: Exception) -> ChatError:
        error = map_exception(exc, self.secrets.known_values())
        # The raw exception stays behind (it may hold the key): keep only whether it says "provider down".
        error.provider_outage = is_outage(exc)
        return error

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        try:
            return handler(request)
        except (GraphBubbleUp, ChatError):  # LangGraph's control flow, and errors that are ours already
            raise
        except Exception as exc:
            error = self._mapped(exc)
        raise error

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        try:
            return await handler(request)
        except (GraphBubbleUp, ChatError):
            raise
        except Exception as exc:
            error = self._mapped(exc)
        raise error
