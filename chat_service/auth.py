"""Bearer-token auth from a tokens file (one ``name:token`` per line); the token's name is the caller.

The file is re-read when its modification time or size changes (checked with one ``stat`` per request),
so adding or revoking a token needs no restart. Without a tokens file every caller is ``anonymous``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from chat_service.errors import Unauthorized

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Caller names become part of thread keys, so they stay within a small, separator-free alphabet.
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class TokensFileError(ValueError):
    pass


@dataclass(frozen=True)
class _Snapshot:
    stamp: tuple[int, int]
    tokens: tuple[tuple[str, bytes], ...]  # (name, token)

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _token in self.tokens)


def parse_tokens(text: str) -> tuple[tuple[str, bytes], ...]:
    """Parse ``name:token`` lines (blank lines and ``#`` comments ignored); errors name the line number."""
    entries: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not token:
            raise TokensFileError(f"line {number}: expected name:token")
        if not _NAME.match(name):
            raise TokensFileError(
                f"line {number}: the name may use letters, digits, '.', '_', '@', '-' (1-64)"
            )
        entries.append((name, token.encode()))
    return tuple(entries)


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` against the tokens file; None path means auth is off."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        if path is not None:
            self._load(force=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def names(self) -> frozenset[str]:
        """The callers of the tokens file as last read (no file check: called per model call)."""
        snapshot = self._snapshot
        return snapshot.names if snapshot is not None else frozenset()

    def _load(self, force: bool = False) -> _Snapshot:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._snapshot is not None and not force:
                log.error(
                    "tokens file %s unreadable (%s); keeping the previous tokens", self.path, exc.strerror
                )
                return self._snapshot
            raise TokensFileError(f"tokens file {self.path} cannot be read: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        current = self._snapshot
        if current is not None and current.stamp == stamp:
            return current
        with self._lock:
            try:
                tokens = parse_tokens(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, TokensFileError) as exc:
                if current is not None and not force:
                    log.error("tokens file %s is invalid (%s); keeping the previous tokens", self.path, exc)
                    return current
                raise TokensFileError(f"tokens file {self.path}: {exc}") from None
            self._snapshot = _Snapshot(stamp, tokens)
            if current is not None:
                log.info("tokens file %s re-read: %d token(s)", self.path, len(tokens))
            return self._snapshot

    def identify(self, authorization: str | None) -> str:
        """The caller's name for an Authorization header value; raises Unauthorized."""
        if self.path is None:
            return ANONYMOUS
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("expected Authorization: Bearer <token>")
        candidate = presented.strip().encode()
        caller: str | None = None
        # Compare against every token (constant time each) so timing does not tell which one is close.
        for name, token in self._load().tokens:
            if hmac.compare_digest(candidate, token) and caller is None:
                caller = name
        if caller is None:
            raise Unauthorized("invalid token")
        return caller
