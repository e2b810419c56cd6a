"""The secret resolver: Secrets directory first, environment fallback, no caching, no value in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_ops_api.agent_config import SecretRef
from chat_service.secrets import SecretResolver, SecretUnavailable, secret_env_var

VALUE = "sk-test-0123456789abcdef"


def write_secret(root: Path, name: str, key: str, value: str) -> Path:
    path = root / name / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    return path


def test_reads_the_mounted_file_without_its_trailing_newline(tmp_path: Path) -> None:
    write_secret(tmp_path, "openai", "api-key", VALUE + "\n")
    assert SecretResolver(tmp_path, environ={}).read(SecretRef(name="openai", key="api-key")) == VALUE


def test_env_var_name_is_upper_cased_with_other_characters_as_underscores() -> None:
    assert (
        secret_env_var(SecretRef(name="llm-keys.prod", key="api_key"))
        == "AI_OPS_SECRET_LLM_KEYS_PROD_API_KEY"
    )


def test_falls_back_to_the_environment(tmp_path: Path) -> None:
    resolver = SecretResolver(tmp_path, environ={"AI_OPS_SECRET_OPENAI_API_KEY": VALUE})
    assert resolver.read(SecretRef(name="openai", key="api-key")) == VALUE


def test_file_wins_over_the_environment(tmp_path: Path) -> None:
    write_secret(tmp_path, "openai", "api-key", "from-file")
    resolver = SecretResolver(tmp_path, environ={"AI_OPS_SECRET_OPENAI_API_KEY": "from-env"})
    assert resolver.read(SecretRef(name="openai", key="api-key")) == "from-file"


def test_a_rotated_file_is_read_on_the_next_call(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "openai", "api-key", "first-key")
    resolver = SecretResolver(tmp_path, environ={})
    ref = SecretRef(name="openai", key="api-key")
    assert resolver.read(ref) == "first-key"
    # Kubernetes swaps the mounted files through a symlink; a rewrite is the same from the reader's side.
    path.write_text("second-key")
    assert resolver.read(ref) == "second-key"


def test_the_live_environment_is_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = SecretResolver(tmp_path)
    monkeypatch.setenv("AI_OPS_SECRET_LATE_KEY", "set-after-start")
    assert resolver.read(SecretRef(name="late", key="key")) == "set-after-start"


def test_missing_secret_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SecretUnavailable) as caught:
        SecretResolver(tmp_path, environ={}).read(SecretRef(name="openai", key="api-key"))
    message = str(caught.value)
    assert "'api-key'" in message and "'openai'" in message
    assert str(tmp_path / "openai" / "api-key") in message
    assert "AI_OPS_SECRET_OPENAI_API_KEY" in message


def test_errors_never_contain_the_value(tmp_path: Path) -> None:
    # An empty file is an error; a whitespace-only value too. Neither message may carry what was read.
    write_secret(tmp_path, "blank", "key", "   \n")
    with pytest.raises(SecretUnavailable) as caught:
        SecretResolver(tmp_path, environ={"AI_OPS_SECRET_OTHER_KEY": VALUE}).read(
            SecretRef(name="blank", key="key")
        )
    assert "empty" in str(caught.value)
    # A directory where the file should be cannot be read: the message names the error type only.
    (tmp_path / "dir" / "key").mkdir(parents=True)
    with pytest.raises(SecretUnavailable) as caught:
        SecretResolver(tmp_path, environ={}).read(SecretRef(name="dir", key="key"))
    assert VALUE not in str(caught.value)


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    write_secret(tmp_path, "outside", "key", VALUE)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    with pytest.raises(SecretUnavailable) as caught:
        SecretResolver(secrets_dir, environ={}).read(SecretRef(name="..", key="outside"))
    assert VALUE not in str(caught.value)
    with pytest.raises(SecretUnavailable):
        SecretResolver(secrets_dir, environ={}).read(SecretRef(name="x", key="../../outside/key"))
