"""What the agent gets in place of a tool that changes something: a proposal tool.

A tool whose MCP ``readOnlyHint`` is not true (absent counts as not true: the MCP default is "may write")
is never handed to the agent. The agent gets a tool of the same name and argument schema, plus a required
``reason``, whose call records an ActionRequest and ends the turn; a person approves it and the operator,
which never talks to the model, executes it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from mcp.types import Tool as MCPTool

REASON_ARGUMENT = "reason"
MAX_REASON = 2000
# Arguments the executor decides on, never the proposer: the operator runs the dry run itself first.
EXECUTOR_ARGUMENTS = frozenset({"dry_run", "dryRun"})
PROPOSAL_DESCRIPTION = (
    "PROPOSES an action that a person must approve; calling it changes nothing now. It records the "
    "proposal (an ActionRequest) and ends your turn; once someone approves and it has run, you are told "
    "the result. Give the exact arguments and, in `reason`, why the change is needed."
)

# What an investigator reads instead: the proposal does not end its run, it goes on to its diagnosis.
INVESTIGATION_PROPOSAL_DESCRIPTION = (
    "PROPOSES a fix that a person must approve; calling it changes nothing now. It records the proposal "
    "(an ActionRequest linked from this investigation) and answers with its name; then go on and call "
    "`diagnosis`. Give the exact arguments and, in `reason`, why the change is needed."
)
# The key of a proposal's ToolMessage artifact naming the ActionRequest. An MCP tool's artifact is the
# adapter's (``structured_content`` only), so a server's answer cannot pose as a proposal.
PROPOSED_ARTIFACT = "ai_ops_action_request"
# Run-config metadata naming the investigation a run belongs to (chat_service/incidents/runner.py).
INVESTIGATION_METADATA = "ai_ops_investigation"

_API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Pod": "v1",
    "Node": "v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Namespace": "v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
_KIND_IN_TOOL_NAME = (("pod", "Pod"), ("node", "Node"), ("cordon", "Node"), ("deployment", "Deployment"))


class Proposer(Protocol):
    """Records a proposal; the answer is the ActionRequest's name."""

    async def propose(
        self,
        *,
        server: str,
        tool: str,
        arguments: Mapping[str, Any],
        reason: str,
        risk: str,
        caller: str,
        thread_id: str | None,
        investigation: str | None = None,
    ) -> str: ...


def requires_approval(tool: MCPTool) -> bool:
    return tool.annotations is None or tool.annotations.readOnlyHint is not True


def risk_of(tool: MCPTool | None) -> str:
    """``high`` for a tool that says it may destroy, ``low`` for one that says it only reads (made a
    proposal by the human_in_the_loop middleware), ``medium`` otherwise."""
    annotations = tool.annotations if tool is not None else None
    if annotations is not None and annotations.destructiveHint is True and not annotations.readOnlyHint:
        return "high"
    if annotations is not None and annotations.readOnlyHint is True:
        return "low"
    return "medium"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def derive_target(tool: str, arguments: Mapping[str, Any]) -> dict[str, str]:
    """What the action acts on, from its arguments (``kind``, ``namespace``, ``name`` or ``node``); the
    operator checks again that it exists before it runs anything."""
    kind = _text(arguments.get("kind"))
    name = _text(arguments.get("name"))
    if not name and _text(arguments.get("node")):
        name, kind = _text(arguments.get("node")), kind or "Node"
    if not kind:
        lowered = tool.lower()
        kind = next((k for word, k in _KIND_IN_TOOL_NAME if word in lowered), "")
    target: dict[str, str] = {"apiVersion": _API_VERSIONS.get(kind, ""), "kind": kind, "name": name}
    namespace = _text(arguments.get("namespace"))
    if namespace and kind != "Node":
        target["namespace"] = namespace
    return {k: v for k, v in target.items() if v}


def caller_and_thread(config: RunnableConfig | None) -> tuple[str, str | None]:
    """Who asked and in which conversation, from the turn's run config (chat_service/engine/turns.py puts
    the caller in the metadata and ``<caller>:<thread>`` in ``thread_id``)."""
    config = config or {}
    caller = str((config.get("metadata") or {}).get("ai_ops_caller") or "")
    scoped = str((config.get("configurable") or {}).get("thread_id") or "")
    thread: str | None = None
    if caller and scoped.startswith(f"{caller}:"):
        thread = scoped[len(caller) + 1 :]
        if thread.startswith("stateless:"):  # the OpenAI-compatible API: no conversation to continue
            thread = None
    return caller or "anonymous", thread


def proposal_schema(input_schema: Mapping[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(dict(input_schema)) if input_schema else {}
    schema.setdefault("type", "object")
    properties = dict(schema.get("properties") or {})
    for name in EXECUTOR_ARGUMENTS:
        properties.pop(name, None)
    properties[REASON_ARGUMENT] = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_REASON,
        "description": "Why this change is needed: shown to the person who approves it.",
    }
    schema["properties"] = properties
    required = [r for r in schema.get("required") or [] if r not in EXECUTOR_ARGUMENTS]
    schema["required"] = [*required, REASON_ARGUMENT] if REASON_ARGUMENT not in required else required
    return schema


def proposed_message(name: str) -> str:
    """What the model (and the page, which finds the name in it) sees after a proposal."""
    return f"proposed as ActionRequest {name}; awaiting approval"


PROPOSED_PATTERN = re.compile(r"proposed as ActionRequest ([a-z0-9][-a-z0-9]{0,61}[a-z0-9]?)")


def proposed_artifact(name: str | None) -> dict[str, str] | None:
    return {PROPOSED_ARTIFACT: name} if name else None


def proposed_name(artifact: Any) -> str | None:
    """The ActionRequest a proposal's ToolMessage artifact names (None for any other tool's)."""
    name = artifact.get(PROPOSED_ARTIFACT) if isinstance(artifact, dict) else None
    return (
        name
        if isinstance(name, str) and PROPOSED_PATTERN.fullmatch(f"proposed as ActionRequest {name}")
        else None
    )


async def propose_action(
    proposer: Proposer | None,
    *,
    server: str,
    tool: str,
    arguments: Mapping[str, Any],
    risk: str,
    config: RunnableConfig | None,
) -> tuple[str, str | None]:
    """Create the ActionRequest: the text the model gets (an error text when nothing was recorded) and
    the request's name (None then). A run of an investigation (its metadata names it) proposes on the
    investigation's behalf; any other run on its caller's, in its conversation."""
    if proposer is None:
        return f"Tool {tool!r} changes something and actions are not enabled here: nothing was done.", None
    values = dict(arguments)
    reason = _text(values.pop(REASON_ARGUMENT, "")).strip()[:MAX_REASON]
    for name in EXECUTOR_ARGUMENTS:
        values.pop(name, None)
    if not reason:
        return f"Tool {tool!r} needs a `reason` (why the change is needed); nothing was proposed.", None
    investigation = _text(((config or {}).get("metadata") or {}).get(INVESTIGATION_METADATA)) or None
    caller, thread = caller_and_thread(config)
    try:
        name = await proposer.propose(
            server=server,
            tool=tool,
            arguments=values,
            reason=reason,
            risk=risk,
            caller=caller,
            thread_id=None if investigation else thread,
            investigation=investigation,
        )
    except Exception as exc:
        text = f"The proposal for {tool!r} could not be recorded ({type(exc).__name__}: {exc}); nothing was done."
        return text, None
    return proposed_message(name), name


def proposal_tool(server: str, tool: MCPTool, proposer: Callable[[], Proposer | None]) -> BaseTool:
    """The tool the agent calls instead of ``tool``: same name and arguments (plus ``reason``); its call
    records an ActionRequest and ends the turn (``return_direct``), so the page shows the proposal and
    the model does not go on as if the change were made."""

    async def propose(config: RunnableConfig, **arguments: Any) -> tuple[str, dict[str, str] | None]:
        text, name = await propose_action(
            proposer(), server=server, tool=tool.name, arguments=arguments, risk=risk_of(tool), config=config
        )
        return text, proposed_artifact(name)

    description = f"{PROPOSAL_DESCRIPTION}\n\n{tool.description or ''}".strip()
    return StructuredTool(
        name=tool.name,
        description=description,
        args_schema=proposal_schema(tool.inputSchema),
        coroutine=propose,
        return_direct=True,
        response_format="content_and_artifact",  # the artifact names the ActionRequest
        metadata={"ai_ops_server": server, "ai_ops_proposal": True},
    )


def is_proposal(tool: BaseTool) -> bool:
    return bool((tool.metadata or {}).get("ai_ops_proposal"))


def investigation_proposal(tool: BaseTool) -> BaseTool:
    """A proposal tool as an investigator gets it: its call does not end the run (the investigator still
    owes its diagnosis), and its description says so."""
    description = (tool.description or "").removeprefix(PROPOSAL_DESCRIPTION)
    return tool.model_copy(
        update={"return_direct": False, "description": f"{INVESTIGATION_PROPOSAL_DESCRIPTION}{description}"}
    )
