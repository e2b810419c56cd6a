"""Settings of the chat service: command-line flags first, then ``AI_OPS_*`` environment variables.

One frozen object built once at start; a wrong value stops the service with a message naming the flag or
variable and what is expected, before anything else starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai_ops_api.agent_config import AGENT_CONFIGMAP_NAME, SECRETS_MOUNT_PATH

DEFAULT_SECRETS_DIR = SECRETS_MOUNT_PATH
DEFAULT_CONFIGMAP_NAME = AGENT_CONFIGMAP_NAME
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class SettingsError(ValueError):
    """A setting has a wrong value; the message names the flag or environment variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    config_path: Path = Field(description="Path of the agent config (--config / AI_OPS_CONFIG).")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    secrets_dir: Path = Path(DEFAULT_SECRETS_DIR)
    redis_url: str | None = None
    session_ttl_seconds: int = Field(default=3600, ge=1, le=365 * 86400)
    auth_tokens_file: Path | None = None
    request_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    recursion_limit: int = Field(default=50, ge=2, le=10_000)
    mcp_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    mcp_tool_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Retry a server that was down at tool-loading time at most this often.
    mcp_retry_interval_seconds: float = Field(default=15.0, ge=0, le=3600)
    # MCP servers on loopback addresses are refused unless allowed (development, tests); metadata,
    # link-local and the other forbidden addresses always are (ai_ops_api.addresses).
    allow_loopback: bool = False
    # The ConfigMap watched through the Kubernetes API when the pod has in-cluster credentials.
    configmap_name: str = DEFAULT_CONFIGMAP_NAME
    namespace: str | None = None
    kubernetes_watch: bool = True
    # Start without an agent config and serve 503 (not ready) until it appears, instead of exiting. Always
    # so in a cluster, where the operator writes the (optional) ConfigMap after the pod starts.
    wait_for_config: bool = False
    # Skip the OpenAI SDK's slow params transform for plain-JSON chat requests (see openai_fastpath.py).
    openai_fast_requests: bool = True
    # Commands a stdio MCP server may run (exact spec.command strings, comma-separated in the environment);
    # empty: stdio is off. The operator refuses other stdio servers too; this holds against an agent config
    # written by someone else.
    stdio_commands: frozenset[str] = frozenset()
    # Set by `make run` (scripts/run_demo.py): the page may then give demo advice (start Ollama, ...).
    demo: bool = False
    # The built-in search_runbooks tool, offered to the agent while the namespace has runbooks.
    runbook_tool: bool = True
    # How often runbook search tries vectors again while the embedding model is down (BM25 meanwhile).
    runbook_vector_retry_seconds: float = Field(default=30.0, gt=0, le=86400)
    log_level: str = "INFO"
    # Largest request body taken, checked before auth'd routes read it (Content-Length, or while streaming).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024**3)
    # A frozen Redis must fail a request (and readiness) sooner than the chart's 3 s readiness timeout.
    redis_socket_timeout_seconds: float = Field(default=2.0, gt=0, le=600)
    redis_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=600)
    # Investigations (docs/incidents.md): workers in this replica, at most this many running at once.
    investigations: bool = True
    investigations_concurrency: int = Field(default=2, ge=1, le=64)
    # A replica that stops renewing its claim for this long is taken to be dead; another takes over.
    investigation_lease_seconds: float = Field(default=60.0, ge=2, le=3600)
    # The budget of one investigation: going over ends it Failed with the reason.
    investigation_max_steps: int = Field(default=25, ge=2, le=1000)
    investigation_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    investigation_max_tokens: int = Field(default=200_000, ge=1000, le=10_000_000)
    # Outside a cluster: keep Investigations in the API server this kubeconfig names (a bearer token and a
    # CA), not in memory. `make run` points it at the local control plane when one has been built.
    investigations_kubeconfig: Path | None = None
    # A Slack-compatible incoming webhook told of each Diagnosed or Failed investigation (a secret: only
    # its host is ever logged or shown); the public address of this chat's page, for the message's link.
    investigation_notify_url: str | None = Field(default=None, repr=False)
    public_url: str | None = None
    # Usage and cost accounting (docs/usage.md): off, no call is counted and no budget is checked.
    usage_accounting: bool = True
    usage_retention_days: int = Field(default=90, ge=1, le=3660)
    # A daily budget per caller: "tokens=100000,cost=5" or "alice:tokens=1000;*:cost=5" (usage/budgets.py).
    caller_daily_budget: str = ""
    # Callers who see everyone's usage in /api/usage (others see their own), comma-separated.
    usage_viewers: frozenset[str] = frozenset()
    # Callers (names from the tokens file) who may approve or reject ActionRequests (docs/actions.md);
    # comma-separated in the environment. Empty: nobody can, through the chat.
    action_approvers: frozenset[str] = frozenset()


# field -> (environment variable, flag shown in errors)
_SOURCES: dict[str, tuple[str, str | None]] = {
    "config_path": ("AI_OPS_CONFIG", "--config"),
    "host": ("AI_OPS_HOST", "--host"),
    "port": ("AI_OPS_PORT", "--port"),
    "secrets_dir": ("AI_OPS_SECRETS_DIR", None),
    "redis_url": ("AI_OPS_REDIS_URL", None),
    "session_ttl_seconds": ("AI_OPS_SESSION_TTL_SECONDS", None),
    "auth_tokens_file": ("AI_OPS_AUTH_TOKENS_FILE", None),
    "request_timeout_seconds": ("AI_OPS_REQUEST_TIMEOUT_SECONDS", None),
    "recursion_limit": ("AI_OPS_RECURSION_LIMIT", None),
    "mcp_connect_timeout_seconds": ("AI_OPS_MCP_CONNECT_TIMEOUT_SECONDS", None),
    "mcp_tool_timeout_seconds": ("AI_OPS_MCP_TOOL_TIMEOUT_SECONDS", None),
    "mcp_retry_interval_seconds": ("AI_OPS_MCP_RETRY_INTERVAL_SECONDS", None),
    "allow_loopback": ("AI_OPS_ALLOW_LOOPBACK", None),
    "configmap_name": ("AI_OPS_CONFIGMAP_NAME", None),
    "namespace": ("AI_OPS_NAMESPACE", None),
    "kubernetes_watch": ("AI_OPS_KUBERNETES_WATCH", None),
    "wait_for_config": ("AI_OPS_WAIT_FOR_CONFIG", None),
    "openai_fast_requests": ("AI_OPS_OPENAI_FAST_REQUESTS", None),
    "stdio_commands": ("AI_OPS_STDIO_COMMANDS", None),
    "demo": ("AI_OPS_DEMO", None),
    "runbook_tool": ("AI_OPS_RUNBOOK_TOOL", None),
    "runbook_vector_retry_seconds": ("AI_OPS_RUNBOOK_VECTOR_RETRY_SECONDS", None),
    "log_level": ("AI_OPS_LOG_LEVEL", "--log-level"),
    "max_body_bytes": ("AI_OPS_MAX_BODY_BYTES", None),
    "redis_socket_timeout_seconds": ("AI_OPS_REDIS_SOCKET_TIMEOUT_SECONDS", None),
    "redis_connect_timeout_seconds": ("AI_OPS_REDIS_CONNECT_TIMEOUT_SECONDS", None),
    "investigations": ("AI_OPS_INVESTIGATIONS", None),
    "investigations_concurrency": ("AI_OPS_INVESTIGATIONS_CONCURRENCY", None),
    "investigation_lease_seconds": ("AI_OPS_INVESTIGATION_LEASE_SECONDS", None),
    "investigation_max_steps": ("AI_OPS_INVESTIGATION_MAX_STEPS", None),
    "investigation_max_seconds": ("AI_OPS_INVESTIGATION_MAX_SECONDS", None),
    "investigation_max_tokens": ("AI_OPS_INVESTIGATION_MAX_TOKENS", None),
    "investigations_kubeconfig": ("AI_OPS_INVESTIGATIONS_KUBECONFIG", None),
    "investigation_notify_url": ("AI_OPS_INVESTIGATION_NOTIFY_URL", None),
    "public_url": ("AI_OPS_PUBLIC_URL", None),
    "usage_accounting": ("AI_OPS_USAGE_ACCOUNTING", None),
    "usage_retention_days": ("AI_OPS_USAGE_RETENTION_DAYS", None),
    "caller_daily_budget": ("AI_OPS_CALLER_DAILY_BUDGET", None),
    "usage_viewers": ("AI_OPS_USAGE_VIEWERS", None),
    "action_approvers": ("AI_OPS_ACTION_APPROVERS", None),
}


def environment_variable(field: str) -> str:
    return _SOURCES[field][0]


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from explicit values (flags; None means unset) over environment variables over defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, (variable, _flag) in _SOURCES.items():
        raw = env.get(variable)
        if raw is not None and raw.strip() != "":
            values[field] = raw.strip()
    for listed in ("stdio_commands", "usage_viewers", "action_approvers"):  # comma-separated names
        if listed in values:
            values[listed] = frozenset(c.strip() for c in values[listed].split(",") if c.strip())
    for field, value in (overrides or {}).items():
        if value is not None:
            values[field] = value
    if "config_path" not in values:
        raise SettingsError(
            "no agent config given: pass --config PATH or set AI_OPS_CONFIG "
            "(render one from manifests with `ai-ops render`)"
        )
    for url_field in ("investigation_notify_url", "public_url"):  # checked here: errors never echo them
        url = values.get(url_field)
        if url is not None and not _is_http_url(url):
            raise SettingsError(f"{_name(url_field)}: expected an http:// or https:// URL with a host")
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(err) for err in exc.errors())) from None
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(
            f"{_name('log_level')}: expected DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}"
        )
    if settings.redis_url is not None and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError(f"{_name('redis_url')}: expected a redis://, rediss:// or unix:// URL")
    if "anonymous" in settings.action_approvers:
        # Without a tokens file every caller is "anonymous": naming it would let anyone approve a write.
        raise SettingsError(
            f"{_name('action_approvers')}: 'anonymous' is every caller when auth is off; approvers must be "
            "callers named in the tokens file"
        )
    from chat_service.usage.budgets import BudgetSettingError, parse_caller_budgets

    try:
        parse_caller_budgets(settings.caller_daily_budget)
    except BudgetSettingError as exc:
        raise SettingsError(f"{_name('caller_daily_budget')}: {exc}") from None
    return settings.model_copy(update={"log_level": settings.log_level.upper()})


def _is_http_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _name(field: str) -> str:
    variable, flag = _SOURCES[field]
    return f"{flag} / {variable}" if flag else variable


def _describe(err: Any) -> str:
    field = str(err["loc"][0]) if err["loc"] else ""
    where = _name(field) if field in _SOURCES else field
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


def in_cluster() -> bool:
    """True when the pod has Kubernetes service-account credentials."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").is_file()
