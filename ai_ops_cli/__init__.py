"""The ``ai-ops`` command: one entry point, a subcommand per part.

It is a package of its own because it is the one place that knows every part: the operator, the chat
service and the MCP servers never import each other, not even by name through this table.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules keep heavy imports (kopf, LangChain, uvicorn) inside ``run`` so ``ai-ops --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "validate": (
        "ai_ops_operator.commands.validate",
        "validate ai-ops manifests against the CRD schemas and CEL rules",
    ),
    "render": (
        "ai_ops_operator.commands.render",
        "render manifests into the agent config the chat service reads",
    ),
    "operator": ("ai_ops_operator.commands.run", "run the ai-ops operator"),
    "chat": ("chat_service.cli", "run the chat service"),
    "mcp": ("mcp_servers.cli", "run a bundled MCP server"),
    "crds": ("ai_ops_operator.commands.crds", "write or check the CRD YAML generated from the spec models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-ops", description="ai-ops: an AI operations assistant for Kubernetes."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a part not built yet
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
