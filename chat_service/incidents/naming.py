"""The name of an alert's Investigation, derived from what makes the alert one episode: Alertmanager's
fingerprint (its label set) and when it started. Every replica and every repeat notification derives the
same name, so the API server's create is the de-duplication (409: it exists)."""

from __future__ import annotations

import hashlib
import re
import secrets

MAX_NAME = 63  # a label value may hold the name (Events' involvedObject), so the DNS-1123 label limit
_HASH_LENGTH = 10
_PREFIX = "inv-"


def slug(text: str, limit: int) -> str:
    """Lower-case letters, digits and single dashes; empty when nothing is left."""
    lowered = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return lowered[:limit].rstrip("-")


def investigation_name(alert_name: str, fingerprint: str, starts_at: str) -> str:
    """``inv-<alertname-slug>-<sha256(fingerprint|startsAt)[:10]>``, DNS-1123, at most 63 characters."""
    digest = hashlib.sha256(f"{fingerprint}|{starts_at}".encode()).hexdigest()[:_HASH_LENGTH]
    room = MAX_NAME - len(_PREFIX) - 1 - _HASH_LENGTH
    part = slug(alert_name, room)
    return f"{_PREFIX}{part}-{digest}" if part else f"{_PREFIX}{digest}"


def question_name(subject: str) -> str:
    """A fresh name for a person's question: each question is its own investigation."""
    room = MAX_NAME - len(_PREFIX) - 1 - _HASH_LENGTH
    part = slug(subject, room)
    suffix = secrets.token_hex(5)
    return f"{_PREFIX}{part}-{suffix}" if part else f"{_PREFIX}{suffix}"
