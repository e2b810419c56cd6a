"""Per-tool-call latency: our MCP tools (persistent session, shared HTTP pool) against langchain-mcp-adapters'
default (``MultiServerMCPClient.get_tools()``: a new session and HTTP client for every call), side by side in
one run, on a real MCP server in another process. Both are LangChain tools invoked the way the agent's tool
node invokes them (``await tool.ainvoke(args)``). Target: ours at least 5x faster.

    .venv/bin/python benchmarks/tool_calls.py [--calls 300] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Stats, measure, start_mcp_server


async def run(calls: int, levels: list[int]) -> None:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    from ai_ops_api.agent_config import AgentConfig, MCPServerEntry
    from chat_service.secrets import SecretResolver
    from chat_service.tools.toolbox import MCPToolbox

    server, url = start_mcp_server()
    toolbox = MCPToolbox(
        SecretResolver(Path(tempfile.mkdtemp())), connect_timeout=10, tool_timeout=30, allow_loopback=True
    )
    try:
        default_tools = await MultiServerMCPClient(
            {"bench": {"transport": "streamable_http", "url": url}}
        ).get_tools()
        config = AgentConfig(
            namespace="bench",
            mcp_servers=(MCPServerEntry(name="bench", transport="streamable_http", url=url),),
        ).finalize()
        ours_tools = (await toolbox.toolset(config, config.checksum)).tools
        default_add = next(t for t in default_tools if t.name == "add")
        ours_add = next(t for t in ours_tools if t.name == "add")

        def caller(tool: Any) -> Any:
            async def call(i: int) -> None:
                result = await tool.ainvoke({"a": i, "b": 1})
                if not result:
                    raise RuntimeError("empty tool result")

            return call

        print(f"tool calls: {calls} calls of `add` per row against {url} (another process)")
        for level in levels:
            runs: dict[str, list[Stats]] = {"default": [], "ours": []}
            for _ in range(2):  # interleaved, best of 2
                runs["default"].append(
                    await measure(
                        "langchain-mcp-adapters default (session per call)",
                        caller(default_add),
                        calls,
                        level,
                        server=server,
                    )
                )
                runs["ours"].append(
                    await measure(
                        "ai-ops MCPToolbox (persistent session)",
                        caller(ours_add),
                        calls,
                        level,
                        server=server,
                    )
                )
            default = max(runs["default"], key=lambda s: s.throughput)
            ours = max(runs["ours"], key=lambda s: s.throughput)
            print("  " + default.row().replace("server CPU", "MCP server CPU"))
            print("  " + ours.row().replace("server CPU", "MCP server CPU"))
            print(
                f"  c={level}: ours is {default.p50 / ours.p50:.1f}x faster at p50, {default.p99 / ours.p99:.1f}x at "
                f"p99, {ours.throughput / default.throughput:.1f}x the throughput; sessions opened by ours: "
                f"{toolbox.sessions_opened.get('bench', 0)}"
            )
    finally:
        await toolbox.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.concurrency))


if __name__ == "__main__":
    main()
