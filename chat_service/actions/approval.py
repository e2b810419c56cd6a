"""The ``human_in_the_loop`` middleware: more tools whose calls become ActionRequests.

Not LangChain's HumanInTheLoopMiddleware: that one interrupts the graph and, once the client resumes it
with a decision, runs the tool in this process, with the approval kept only in the conversation's
checkpoint. Here the decision is a Kubernetes record with the approver's identity, and the operator, not
the chat, runs the tool; the conversation goes on with the outcome in a new turn (service.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from chat_service.actions.proposals import Proposer, propose_action, proposed_artifact


class ApprovalRequired(AgentMiddleware[Any, Any, Any]):
    """Calls of the tools matching ``patterns`` (``tool`` or ``server/tool``, shell-style wildcards)
    record a proposal instead of running."""

    def __init__(self, patterns: tuple[str, ...], proposer: Callable[[], Proposer | None]) -> None:
        super().__init__()
        self.patterns = patterns
        self.proposer = proposer

    def matches(self, server: str, tool: str) -> bool:
        qualified = f"{server}/{tool}"
        return any(fnmatch.fnmatchcase(tool, p) or fnmatch.fnmatchcase(qualified, p) for p in self.patterns)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        tool = request.tool
        metadata = (getattr(tool, "metadata", None) or {}) if tool is not None else {}
        server = str(metadata.get("ai_ops_server") or "")
        name = request.tool_call["name"]
        if metadata.get("ai_ops_proposal") or not server or not self.matches(server, name):
            return await handler(request)  # already a proposal, a built-in tool, or not listed
        config = getattr(request.runtime, "config", None)
        text, proposed = await propose_action(
            self.proposer(),
            server=server,
            tool=name,
            arguments=dict(request.tool_call.get("args") or {}),
            risk="low",
            config=config,
        )
        return ToolMessage(
            content=text,
            tool_call_id=request.tool_call["id"] or "",
            name=name,
            artifact=proposed_artifact(proposed),
        )
