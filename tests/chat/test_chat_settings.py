"""Pure parts of the chat service: settings, the tokens file, error sanitizing, and `ai-ops chat` refusing a
bad start with a clear message (no server is started)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from chat_service import cli
from chat_service.auth import ANONYMOUS, TokenAuth, TokensFileError, parse_tokens
from chat_service.errors import Unauthorized, sanitize
from chat_service.settings import SettingsError, load_settings
from chat_service.tools.toolbox import filter_tools
from tests.support.chat_support import agent_config, mcp_server, write_config


def test_settings_defaults_env_and_flags() -> None:
    settings = load_settings({"config_path": "/c.json"}, environ={})
    assert (settings.port, settings.session_ttl_seconds, settings.request_timeout_seconds) == (
        8080,
        3600,
        120,
    )
    assert str(settings.secrets_dir) == "/var/run/secrets/ai-ops" and settings.redis_url is None
    assert settings.auth_tokens_file is None
    env = {
        "AI_OPS_CONFIG": "/env.json",
        "AI_OPS_PORT": "9000",
        "AI_OPS_REDIS_URL": "redis://r:6379/0",
        "AI_OPS_SESSION_TTL_SECONDS": "60",
        "AI_OPS_AUTH_TOKENS_FILE": "/t",
        "AI_OPS_SECRETS_DIR": "/s",
        "AI_OPS_REQUEST_TIMEOUT_SECONDS": "5",
    }
    from_env = load_settings({}, environ=env)
    assert (
        str(from_env.config_path),
        from_env.port,
        from_env.redis_url,
        from_env.session_ttl_seconds,
        str(from_env.auth_tokens_file),
        str(from_env.secrets_dir),
        from_env.request_timeout_seconds,
    ) == ("/env.json", 9000, "redis://r:6379/0", 60, "/t", "/s", 5.0)
    assert load_settings({"port": 7000, "config_path": "/flag.json"}, environ=env).port == 7000
    assert settings.openai_fast_requests and settings.kubernetes_watch
    switched_off = load_settings(
        {}, environ={**env, "AI_OPS_OPENAI_FAST_REQUESTS": "false", "AI_OPS_KUBERNETES_WATCH": "false"}
    )
    assert not switched_off.openai_fast_requests and not switched_off.kubernetes_watch


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "--config"),
        ({"AI_OPS_CONFIG": "/c", "AI_OPS_PORT": "eighty"}, "AI_OPS_PORT"),
        ({"AI_OPS_CONFIG": "/c", "AI_OPS_PORT": "70000"}, "AI_OPS_PORT"),
        ({"AI_OPS_CONFIG": "/c", "AI_OPS_SESSION_TTL_SECONDS": "0"}, "AI_OPS_SESSION_TTL_SECONDS"),
        ({"AI_OPS_CONFIG": "/c", "AI_OPS_REQUEST_TIMEOUT_SECONDS": "-1"}, "AI_OPS_REQUEST_TIMEOUT_SECONDS"),
        ({"AI_OPS_CONFIG": "/c", "AI_OPS_REDIS_URL": "http://:pw@host"}, "AI_OPS_REDIS_URL"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({}, environ=environ)
    assert expected in str(raised.value)
    assert "pw@" not in str(raised.value)


def test_tokens_file_parsing(tmp_path: Path) -> None:
    assert parse_tokens("# c\n\nalice: t1 \nbob:t:with:colons\n") == (
        ("alice", b"t1"),
        ("bob", b"t:with:colons"),
    )
    for bad in ("no-colon", "alice:", "bad name:t"):
        with pytest.raises(TokensFileError, match="line 1"):
            parse_tokens(bad)
    path = tmp_path / "tokens"
    path.write_text("alice:t1\n")
    auth = TokenAuth(path)
    assert auth.identify("Bearer t1") == "alice"
    for header in (None, "", "Bearer", "Basic t1", "Bearer t2"):
        with pytest.raises(Unauthorized):
            auth.identify(header)
    assert TokenAuth(None).identify(None) == ANONYMOUS
    with pytest.raises(TokensFileError, match="cannot be read"):
        TokenAuth(tmp_path / "missing")


def test_sanitize_removes_keys_and_credentials() -> None:
    text = sanitize(
        "bad key sk-abc123def456ghi, Authorization: Bearer xyz987654 and my-secret-value", ["my-secret-value"]
    )
    assert "sk-abc123" not in text and "xyz987654" not in text and "my-secret-value" not in text
    assert text.startswith("bad key ***") and len(sanitize("x" * 5000)) < 600


def test_tool_filter_include_exclude_and_globs() -> None:
    names = ["get_pod", "get_node", "delete_pod", "echo"]
    assert filter_tools(names, mcp_server("s", "http://x/mcp")) == names
    assert filter_tools(names, mcp_server("s", "http://x/mcp", include=["get_*"])) == ["get_pod", "get_node"]
    assert filter_tools(
        names, mcp_server("s", "http://x/mcp", include=["get_*", "echo"], exclude=["*node"])
    ) == ["get_pod", "echo"]


def _args(**values: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv: list[str] = []
    for key, value in values.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_chat_command_refuses_a_bad_config_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AI_OPS_CONFIG", raising=False)
    assert cli.run(_args()) == 2
    assert "--config" in capsys.readouterr().err
    assert cli.run(_args(config=tmp_path / "missing.json")) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.run(_args(config=bad)) == 1
    assert "not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    write_config(good, agent_config())
    tampered = good.read_text().replace('"namespace": "test"', '"namespace": "other"')
    good.write_text(tampered)
    assert cli.run(_args(config=good)) == 1
    assert "checksum" in capsys.readouterr().err


def test_anonymous_cannot_be_an_action_approver() -> None:
    environ = {"AI_OPS_CONFIG": "/c.json", "AI_OPS_ACTION_APPROVERS": "alice, anonymous"}
    with pytest.raises(SettingsError, match="AI_OPS_ACTION_APPROVERS: 'anonymous' is every caller"):
        load_settings({}, environ=environ)
    assert load_settings({}, environ={**environ, "AI_OPS_ACTION_APPROVERS": "alice"}).action_approvers == {
        "alice"
    }
