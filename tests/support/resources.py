"""Builders of ai-ops resources (LLMProvider, LLMModel, LLMMiddleware, MCPServer, Runbook) as plain manifest dicts.

One set for every test that needs resource bodies: extra keyword arguments go into ``spec`` (camelCase,
as in a manifest); ``namespace`` and ``created`` (creationTimestamp) only appear when given.
"""

from __future__ import annotations

from typing import Any

from ai_ops_api.specs import API_VERSION

DEFAULT_CREATED = "2026-01-01T00:00:00Z"


def resource(
    kind: str,
    name: str,
    spec: dict[str, Any],
    *,
    namespace: str | None = None,
    created: str | None = DEFAULT_CREATED,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if created is not None:
        metadata["creationTimestamp"] = created
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def provider(
    name: str, *, namespace: str | None = None, created: str | None = DEFAULT_CREATED, **spec: Any
) -> dict[str, Any]:
    return resource("LLMProvider", name, spec, namespace=namespace, created=created)


def model(
    name: str,
    provider_name: str,
    *,
    model_id: str | None = None,
    namespace: str | None = None,
    created: str | None = DEFAULT_CREATED,
    **spec: Any,
) -> dict[str, Any]:
    """An LLMModel; its provider's model id is ``<name>-id`` unless given."""
    body = {"providerRef": {"name": provider_name}, "model": model_id or f"{name}-id", **spec}
    return resource("LLMModel", name, body, namespace=namespace, created=created)


def middleware(
    name: str,
    model_name: str,
    type_: str,
    *,
    namespace: str | None = None,
    created: str | None = DEFAULT_CREATED,
    **spec: Any,
) -> dict[str, Any]:
    body = {"modelRef": {"name": model_name}, "type": type_, **spec}
    return resource("LLMMiddleware", name, body, namespace=namespace, created=created)


def mcpserver(
    name: str, *, namespace: str | None = None, created: str | None = DEFAULT_CREATED, **spec: Any
) -> dict[str, Any]:
    return resource("MCPServer", name, spec, namespace=namespace, created=created)


def runbook(
    name: str,
    content: str | None = None,
    *,
    namespace: str | None = None,
    created: str | None = DEFAULT_CREATED,
    **spec: Any,
) -> dict[str, Any]:
    """A Runbook titled ``Runbook <name>``; without ``content`` it needs ``contentFrom`` in ``spec``."""
    body: dict[str, Any] = {"title": f"Runbook {name}", **spec}
    if content is not None:
        body["content"] = content
    return resource("Runbook", name, body, namespace=namespace, created=created)
