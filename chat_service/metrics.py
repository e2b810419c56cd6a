"""Prometheus metrics of the chat service, on a registry per app (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ChatMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ai_ops_chat_requests",
            "HTTP requests by route template and status code.",
            ["route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "ai_ops_chat_request_duration_seconds",
            "HTTP request latency by route template (streams: until the last event).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "ai_ops_chat_model_calls",
            "LLM calls by model and outcome (ok or error).",
            ["model", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "ai_ops_chat_tokens",
            "LLM tokens by model and direction (input or output).",
            ["model", "direction"],
            registry=r,
        )
        self.tool_calls = Counter(
            "ai_ops_chat_tool_calls",
            "MCP tool calls by server and outcome (ok or error).",
            ["server", "outcome"],
            registry=r,
        )
        self.tool_call_duration = Histogram(
            "ai_ops_chat_tool_call_duration_seconds",
            "MCP tool call latency by server.",
            ["server"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.mcp_sessions = Counter(
            "ai_ops_chat_mcp_sessions_opened",
            "MCP sessions opened (initialize handshakes) by server.",
            ["server"],
            registry=r,
        )
        self.mcp_server_up = Gauge(
            "ai_ops_chat_mcp_server_up",
            "1 when the MCP server's tools are loaded, else 0.",
            ["server"],
            registry=r,
        )
        self.turns = Counter(
            "ai_ops_chat_turns",
            "Agent turns by model and outcome (an error code or ok).",
            ["model", "outcome"],
            registry=r,
        )
        self.turns_in_progress = Gauge(
            "ai_ops_chat_turns_in_progress", "Agent turns running right now.", registry=r
        )
        # Set through set_function by the engine: threads of this replica with a turn within the session TTL.
        self.active_conversations = Gauge(
            "ai_ops_chat_active_conversations",
            "Conversations with a turn on this replica within the session TTL.",
            registry=r,
        )
        self.config_reloads = Counter(
            "ai_ops_chat_config_reloads",
            "Agent config reloads by result (applied or rejected).",
            ["result"],
            registry=r,
        )
        self.config_info = Gauge(
            "ai_ops_chat_config_info",
            "The loaded agent config (value 1; its checksum as a label).",
            ["checksum"],
            registry=r,
        )

        # Usage accounting (chat_service/usage): namespaced. The model-call families (ai_ops_llm_tokens,
        # _cost, _estimated_calls, _caller_tokens, _caller_cost) are exported by the usage recorder's own
        # collector (chat_service/usage/series.py); per caller only for the callers of the tokens file
        # (others count as "other"), so the label sets stay bounded.
        self.tool_calls_total = Counter(
            "ai_ops_tool_calls",
            "Tool calls the agent made, by namespace, MCP server, tool and outcome (ok or error).",
            ["namespace", "server", "tool", "outcome"],
            registry=r,
        )
        self.tool_duration = Histogram(
            "ai_ops_tool_call_duration_seconds",
            "Tool call latency as the agent saw it, by namespace, MCP server and tool.",
            ["namespace", "server", "tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def set_config(self, checksum: str) -> None:
        self.config_info.clear()
        self.config_info.labels(checksum=checksum).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
