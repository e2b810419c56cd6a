"""Generate the CustomResourceDefinitions from the pydantic spec models in ``specs``.

pydantic's JSON Schema is close to an OpenAPI v3 structural schema but not equal to it: ``$ref``s must be
inlined, ``Optional`` (``anyOf: [X, null]``) becomes plain ``X``, free-form objects need
``x-kubernetes-preserve-unknown-fields``, and ``title``/``additionalProperties: false`` are not allowed.
No library does this conversion for pydantic v2, so it is written here, small and tested.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ai_ops_api.specs import CATEGORY, GROUP, RESOURCES, VERSION, ResourceKind

_DROP_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        # Keys beside the $ref (description, default) describe the field and win over the model's own.
        target.update(node)
        node = target
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [alt for alt in any_of if alt.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            node.pop("anyOf")
            if node.get("default", "absent") is None:
                node.pop("default")
            merged = dict(non_null[0])
            merged.update(node)
            node = _resolve(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _resolve(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _resolve(value, defs)
            # False: structural schemas do not allow it; the API server prunes unknown fields instead.
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, as a CRD wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _resolve(raw, defs)


def crd_for(resource: ResourceKind) -> dict[str, Any]:
    spec_schema = openapi_schema(resource.spec_model)
    status_schema = openapi_schema(resource.status_model)
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            {
                "name": col.name,
                "type": col.type,
                "jsonPath": col.json_path,
                "description": col.description,
                **({"priority": col.priority} if col.priority else {}),
            }
            for col in resource.columns
        ],
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": resource.description,
                "required": ["spec"],
                "properties": {
                    "apiVersion": {
                        "type": "string",
                        "description": "APIVersion defines the versioned schema of this representation of an object.",
                    },
                    "kind": {
                        "type": "string",
                        "description": "Kind is a string value representing the REST resource this object represents.",
                    },
                    "metadata": {"type": "object"},
                    "spec": spec_schema,
                    "status": status_schema,
                },
            }
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.crd_name,
            "labels": {"app.kubernetes.io/part-of": "ai-ops"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name (``<plural>.yaml``) to CRD, for every kind."""
    return {f"{r.plural}.yaml": crd_for(r) for r in RESOURCES.values()}


HEADER = "# Generated by `make crds` from ai_ops_api/specs.py. Do not edit by hand.\n"


def dump(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=120)


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(dump(crd))
        written.append(path)
    return written


def stale_crds(directory: Path) -> list[str]:
    """Names of CRD files in ``directory`` that differ from what the spec models generate."""
    stale = []
    for name, crd in all_crds().items():
        path = directory / name
        if not path.exists() or path.read_text() != dump(crd):
            stale.append(name)
    return stale
