"""The FastMCP server class the bundled MCP servers use: clean tool descriptions and plain-word
argument errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import Icon, ToolAnnotations
from pydantic import ValidationError


def describe_argument_errors(tool: str, error: ValidationError) -> str:
    """A tool's argument validation failure in plain words naming each argument, for the model to fix its
    call: no pydantic repr, no error-type tags, no documentation URLs."""
    problems = []
    for item in error.errors(include_url=False):
        argument = ".".join(str(part) for part in item.get("loc", ())) or "arguments"
        if item.get("type") == "missing":
            problems.append(f"'{argument}' is required")
            continue
        shown = repr(item.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        problems.append(f"'{argument}': {message} (got {shown})")
    return f"invalid arguments for {tool}: " + "; ".join(problems)


class ToolServer(FastMCP):
    """FastMCP as the bundled servers use it.

    - Tool descriptions are the docstrings cleaned like `help()` shows them (FastMCP sends them raw, with
      the source's indentation on every line after the first).
    - Arguments that fail validation answer a tool error in plain words (FastMCP answers the pydantic
      error text, with its internal model name and a URL per problem).
    """

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=inspect.cleandoc(description if description is not None else fn.__doc__ or ""),
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as error:
            cause = error.__cause__
            tool = self._tool_manager.get_tool(name)
            # Only the validation of the call's arguments; a ValidationError inside a tool is its own.
            if (
                isinstance(cause, ValidationError)
                and tool is not None
                and cause.title == tool.fn_metadata.arg_model.__name__
            ):
                raise ToolError(describe_argument_errors(name, cause)) from None
            raise
