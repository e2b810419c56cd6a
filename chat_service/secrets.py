"""Resolve the ``{name, key}`` secret references of the agent config to their values.

In a pod the Secrets are mounted as files, ``<secrets dir>/<secret name>/<key>``; for local use the value may
come from the environment instead (``AI_OPS_SECRET_<SECRET>_<KEY>``). A value is read at every call, never
cached, so a rotated key is picked up the next time a model is built. Values never appear in messages:
the resolver remembers every value it handed out (``known_values``), rotated ones included, for the error
sanitizer to redact in any encoding.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from ai_ops_api.agent_config import SecretRef

ENV_PREFIX = "AI_OPS_SECRET_"
# Values remembered for redaction; the oldest are forgotten beyond this (far more than a config holds).
MAX_KNOWN_VALUES = 512
_NOT_ENV_CHAR = re.compile(r"[^A-Z0-9]")


class SecretUnavailable(Exception):
    """A referenced secret key could not be read; the message says where we looked, never a value."""


def secret_env_var(ref: SecretRef) -> str:
    """The environment variable that may hold ``ref`` (``AI_OPS_SECRET_<SECRET>_<KEY>``)."""
    return (
        ENV_PREFIX + _NOT_ENV_CHAR.sub("_", ref.name.upper()) + "_" + _NOT_ENV_CHAR.sub("_", ref.key.upper())
    )


def _safe_component(value: str) -> bool:
    # Kubernetes names and keys never contain a path separator; refusing them keeps reads inside the dir.
    return value not in ("", ".", "..") and "/" not in value and "\\" not in value and "\0" not in value


class SecretResolver:
    """Reads secret values from the mounted Secrets directory, else from the environment."""

    def __init__(self, secrets_dir: Path, environ: Mapping[str, str] | None = None):
        self.secrets_dir = Path(secrets_dir)
        # Default to the live process environment (not a copy), so a variable set later is seen too.
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._known: dict[str, None] = {}  # insertion-ordered set
        self._known_lock = threading.Lock()

    def known_values(self) -> list[str]:
        """Every value this resolver returned (newest last): what error messages must never show."""
        with self._known_lock:
            return list(self._known)

    def _remember(self, value: str) -> str:
        with self._known_lock:
            self._known.pop(value, None)
            self._known[value] = None
            while len(self._known) > MAX_KNOWN_VALUES:
                self._known.pop(next(iter(self._known)))
        return value

    def read(self, ref: SecretRef) -> str:
        """The value of ``ref``, without surrounding whitespace (files written by ``echo`` end in a newline)."""
        what = f"key {ref.key!r} of secret {ref.name!r}"
        env_var = secret_env_var(ref)
        if _safe_component(ref.name) and _safe_component(ref.key):
            path = self.secrets_dir / ref.name / ref.key
            try:
                value = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                pass
            except (OSError, UnicodeDecodeError) as exc:
                raise SecretUnavailable(f"{what}: cannot read {path}: {type(exc).__name__}") from None
            else:
                if not value:
                    raise SecretUnavailable(f"{what}: the file {path} is empty")
                return self._remember(value)
            looked = f"{path} does not exist"
        else:
            looked = "the secret name or key is not a valid file name"
        env_value = self._environ.get(env_var)
        if env_value is not None and env_value.strip():
            return self._remember(env_value.strip())
        raise SecretUnavailable(f"{what} not found: {looked} and ${env_var} is not set")
