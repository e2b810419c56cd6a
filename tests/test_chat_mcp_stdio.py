"""An MCP server over stdio: started once by the toolbox (env from a Secret), reused by every call."""

from __future__ import annotations

import sys
from pathlib import Path

from chat_service.agent_config import AgentConfig, MCPServerEntry, NamedValue, SecretRef
from chat_service.mcp_tools import MCPToolbox
from chat_service.secrets import SecretResolver

SERVER = '''
import os
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("stdio-fixture", log_level="WARNING")


@mcp.tool()
def whoami() -> str:
    """The server's process id and the greeting from its environment."""
    return f"{os.getpid()} {os.environ.get('GREETING', '')}"


mcp.run("stdio")
'''


async def test_stdio_server_runs_once_with_env_from_a_secret(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    (tmp_path / "secrets" / "greet").mkdir(parents=True)
    (tmp_path / "secrets" / "greet" / "value").write_text("hello-from-secret\n")
    config = AgentConfig(
        namespace="t",
        mcp_servers=(
            MCPServerEntry(
                name="local",
                transport="stdio",
                command=sys.executable,
                args=(str(script),),
                env=(NamedValue(name="GREETING", secret_ref=SecretRef(name="greet", key="value")),),
            ),
        ),
    ).finalize()
    toolbox = MCPToolbox(SecretResolver(tmp_path / "secrets"), connect_timeout=20, tool_timeout=10)
    try:
        toolset = await toolbox.toolset(config, config.checksum)
        assert [t.name for t in toolset.tools] == ["whoami"] and toolset.warnings == []
        tool = toolset.tools[0]
        first = await tool.ainvoke({})
        second = await tool.ainvoke({})
        texts = [block["text"] for block in (*first, *second)]
        assert texts[0] == texts[1], "the same server process answered both calls"
        assert texts[0].endswith(" hello-from-secret")
        assert toolbox.sessions_opened == {"local": 1}
    finally:
        await toolbox.aclose()
