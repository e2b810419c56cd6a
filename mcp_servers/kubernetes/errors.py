"""Kubernetes API failures as clear sentences for the model (pure: status and body in, text out)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiCall:
    """What the server asked the API for: enough to name the RBAC permission a 403 is missing."""

    verb: str  # RBAC verb: get, list
    resource: str  # plural, e.g. "pods"; with subresource "pods/log"
    group: str = ""
    namespace: str | None = None
    name: str | None = None

    @property
    def scope(self) -> str:
        return f"in namespace {self.namespace}" if self.namespace else "cluster-wide (all namespaces)"

    @property
    def target(self) -> str:
        return f"{self.resource} {self.name}" if self.name else self.resource


def status_message(body: str | bytes | None) -> str:
    """The `message` of a Kubernetes Status body, else the body itself (shortened)."""
    if not body:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return parsed["message"]
    return text.strip()[:500]


def api_error_message(call: ApiCall, status: int, body: str | bytes | None) -> str:
    """A sentence saying what failed and, where it is the fix, what to do."""
    detail = status_message(body)
    said = f" (API server: {detail})" if detail else ""
    if status == 403:
        group = call.group or '"" (core)'
        return (
            f"forbidden: the MCP server's service account lacks the RBAC permission to {call.verb} "
            f"{call.resource} {call.scope} (verb: {call.verb}, resource: {call.resource}, apiGroup: {group}"
            f"{', namespace: ' + call.namespace if call.namespace else ''}); a cluster admin must grant it{said}"
        )
    if status == 404:
        where = f" in namespace {call.namespace}" if call.namespace else ""
        return f"not found: {call.target}{where}{said}"
    if status == 401:
        return "unauthorized: the API server rejected the MCP server's credentials (expired token or wrong kubeconfig)"
    if status == 400:
        return f"bad request for {call.target}: {detail or 'no details'}"
    if status == 429:
        return f"the API server is throttling requests (429); retry shortly{said}"
    return f"Kubernetes API error {status} on {call.verb} {call.target} {call.scope}{said}"
