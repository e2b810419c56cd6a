"""What never leaves the server: Secret data, values taken from Secrets, and noise that can carry either.

Pure functions over the API's JSON (camelCase dicts). Every object a tool returns passes `clean_object`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Literal env values under names like these are credentials put in the spec by mistake: hide them too.
SENSITIVE_ENV_NAME = re.compile(
    r"PASSW|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY", re.IGNORECASE
)
REDACTED = "<redacted: the variable name suggests a credential>"


def redact_env_var(var: dict[str, Any]) -> dict[str, Any]:
    """An env entry with a Secret source shown as `secretKeyRef: name/key`, never a value."""
    source = var.get("valueFrom") or {}
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"] or {}
        return {"name": var.get("name"), "valueFrom": f"secretKeyRef: {ref.get('name')}/{ref.get('key')}"}
    if "value" in var and SENSITIVE_ENV_NAME.search(str(var.get("name", ""))):
        return {"name": var.get("name"), "value": REDACTED}
    return var


def _redact_pod_spec(spec: dict[str, Any]) -> None:
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if container.get("env"):
                container["env"] = [redact_env_var(var) for var in container["env"]]


def clean_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without managedFields and last-applied annotations, with env values from Secrets redacted
    in pod specs and pod templates. Refuses Secret objects outright (use `secret_summary`)."""
    if obj.get("kind") == "Secret":
        raise ValueError("Secret objects are never returned; use secret_summary")
    cleaned = copy.deepcopy(obj)
    metadata = cleaned.get("metadata") or {}
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if annotations:
        annotations.pop(LAST_APPLIED, None)
    spec = cleaned.get("spec") or {}
    if "containers" in spec:
        _redact_pod_spec(spec)
    template_spec = (spec.get("template") or {}).get("spec")
    if template_spec:
        _redact_pod_spec(template_spec)
    status = cleaned.get("status") or {}
    status.pop("images", None)  # nodes: every image on the node, large and rarely useful
    return cleaned


def secret_summary(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret by name and type only: no data, no key names, no annotations (they can hold a copy)."""
    metadata = secret.get("metadata") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "type": secret.get("type"),
        "created": metadata.get("creationTimestamp"),
    }
