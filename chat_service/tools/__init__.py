"""The agent's MCP tools: persistent sessions per server (sessions.py) and the toolbox that turns their
tools into LangChain tools per config version (toolbox.py)."""
