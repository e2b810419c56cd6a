"""The committed CRDs: current with the spec models, and as strict as the API server and kubectl want them.

Without a kube-apiserver here, the structural-schema rules that the API server enforces when a CRD is
created (and the conventions ``kubectl explain``/``kubectl get`` rely on) are checked one by one.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from ai_ops_api.specs import CATEGORY, GROUP, RESOURCES, VERSION
from ai_ops_operator.core import crdgen, validation

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
KINDS = sorted(RESOURCES)

# The printer columns every kind shows (the default `kubectl get` view, priority 0), in order.
READY_PATH = '.status.conditions[?(@.type=="Ready")].status'
AGE = ("Age", ".metadata.creationTimestamp")
EXPECTED_COLUMNS = {
    "LLMProvider": [("Type", ".spec.type"), ("Enabled", ".spec.enabled"), ("Ready", READY_PATH), AGE],
    "LLMModel": [
        ("Provider", ".spec.providerRef.name"),
        ("Model", ".spec.model"),
        ("Default", ".spec.default"),
        ("Ready", READY_PATH),
        AGE,
    ],
    "LLMMiddleware": [
        ("Model", ".spec.modelRef.name"),
        ("Type", ".spec.type"),
        ("Priority", ".spec.priority"),
        ("Active", ".spec.active"),
        ("Ready", READY_PATH),
        AGE,
    ],
    "MCPServer": [
        ("Transport", ".spec.transport"),
        ("Health", ".status.health"),
        ("Tools", ".status.tools.count"),
        ("Ready", READY_PATH),
        AGE,
    ],
    "Runbook": [("Title", ".spec.title"), ("Match", ".spec.match.alertNames"), ("Ready", READY_PATH), AGE],
    "Investigation": [
        ("Alert", ".spec.alert.name"),
        ("Severity", ".spec.alert.labels.severity"),
        ("Phase", ".status.phase"),
        AGE,
    ],
    "ActionRequest": [
        ("Tool", ".spec.tool"),
        ("Target", ".spec.target.name"),
        ("Risk", ".spec.risk"),
        ("Phase", ".status.phase"),
        ("Requested-By", ".spec.requestedBy.caller"),
        AGE,
    ],
}
EXPECTED_SHORT_NAMES = {
    "LLMProvider": ["llmp"],
    "LLMModel": ["llmm"],
    "LLMMiddleware": ["llmmw"],
    "MCPServer": ["mcps"],
    "Runbook": ["rb"],
    "Investigation": ["inv"],
    "ActionRequest": ["act"],
}
# Formats the API server knows for CRD schemas (k8s.io/apiextensions-apiserver supported formats).
K8S_FORMATS = {
    "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4",
    "uuid5", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password",
    "date", "duration", "datetime", "date-time",
}  # fmt: skip
# Keys a structural schema may not contain (or that pydantic leaves and the API server refuses).
FORBIDDEN_KEYS = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "const",
    "discriminator",
}


def committed(kind: str) -> dict[str, Any]:
    return yaml.safe_load((CRD_DIR / f"{RESOURCES[kind].plural}.yaml").read_text())


def root_schema(kind: str) -> dict[str, Any]:
    return committed(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path (``spec.headers[].name``)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Like ``nodes`` but only named fields (what ``kubectl explain`` lists)."""
    for name, prop in schema.get("properties", {}).items():
        field_path = f"{path}.{name}" if path else name
        yield field_path, prop
        yield from fields(prop, field_path)
    if isinstance(schema.get("items"), dict):
        yield from fields(schema["items"], f"{path}[]")


def all_nodes() -> list[tuple[str, str, dict[str, Any]]]:
    return [(kind, path, node) for kind in KINDS for path, node in nodes(root_schema(kind))]


# --- one source of truth ------------------------------------------------------------------------


def test_committed_crds_are_generated_from_the_spec_models() -> None:
    assert crdgen.stale_crds(CRD_DIR) == [], "run `make crds` and commit crds/"


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_a_valid_custom_resource_definition_object(kind: str) -> None:
    """The CRD manifest itself against the Kubernetes API's schema (what `kubectl apply --validate=strict` does)."""
    kubernetes_validate.validate(committed(kind), "1.33", strict=True)


def test_crd_folder_holds_exactly_the_four_kinds() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(
        f"{r.plural}.yaml" for r in RESOURCES.values()
    )


def _model_fields(model: type[BaseModel], path: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        wire = info.alias or name
        field_path = f"{path}.{wire}" if path else wire
        yield field_path
        for nested, suffix in _nested_models(info.annotation):
            yield from _model_fields(nested, field_path + suffix)


def _nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        suffix += "[]"
    elif origin is dict:
        return  # free-form
    for arg in typing.get_args(annotation):
        yield from _nested_models(arg, suffix)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_spec_model_fields_equal_crd_fields(kind: str, part: str) -> None:
    resource = RESOURCES[kind]
    model = resource.spec_model if part == "spec" else resource.status_model
    in_model = set(_model_fields(model))
    in_crd = {path for path, _ in fields(root_schema(kind)["properties"][part])}
    assert in_model == in_crd


def _enum_fields(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, type[enum.Enum]]]:
    for name, info in model.model_fields.items():
        field_path = f"{path}.{info.alias or name}" if path else info.alias or name
        for arg in [info.annotation, *typing.get_args(info.annotation)]:
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                yield field_path, arg
        for nested, suffix in _nested_models(info.annotation):
            yield from _enum_fields(nested, field_path + suffix)


@pytest.mark.parametrize("kind", KINDS)
def test_every_enum_of_the_models_is_an_enum_in_the_crd(kind: str) -> None:
    resource = RESOURCES[kind]
    crd_fields = dict(fields(root_schema(kind)))
    enums = [("spec." + p, e) for p, e in _enum_fields(resource.spec_model)]
    enums += [("status." + p, e) for p, e in _enum_fields(resource.status_model)]
    assert enums, "every kind has at least one enum field"
    for path, enum_type in enums:
        assert crd_fields[path].get("type") == "string", path
        assert crd_fields[path].get("enum") == [member.value for member in enum_type], path


# --- CRD metadata, names, printer columns -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_crd_names_scope_and_status_subresource(kind: str) -> None:
    crd = committed(kind)
    resource = RESOURCES[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{resource.plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == kind
    assert names["listKind"] == f"{kind}List"
    assert names["plural"] == resource.plural == kind.lower() + "s"
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == EXPECTED_SHORT_NAMES[kind]
    assert names["categories"] == [CATEGORY] == ["ai-ops"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_short_names_do_not_collide() -> None:
    short = [name for kind in KINDS for name in committed(kind)["spec"]["names"]["shortNames"]]
    assert len(short) == len(set(short))


def _resolve_json_path(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    # .status.conditions[?(@.type=="Ready")].status -> status, conditions, [], status
    for part in re.sub(r"\[\?\(.*?\)\]", ".[]", json_path).strip(".").split("."):
        if part == "[]":
            node = node["items"]
        elif part and "properties" not in node:  # a map: any key, its values' schema
            node = node["additionalProperties"]
        elif part:
            node = node["properties"][part]
    return node


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind: str) -> None:
    columns = committed(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    default_view = [(c["name"], c["jsonPath"]) for c in columns if c.get("priority", 0) == 0]
    assert default_view == EXPECTED_COLUMNS[kind]
    schema = root_schema(kind)
    for column in columns:
        assert column["description"], column["name"]
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        target = _resolve_json_path(schema, column["jsonPath"])
        # Printer columns have no array type: kubectl prints a list as its JSON text.
        assert column["type"] == ("string" if target["type"] == "array" else target["type"]), column["name"]


# --- structural schema --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_node_has_a_type(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), path
        if node.get("type") == "object":
            # Free-form objects say so; typed ones list their properties, maps the type of their values.
            assert (
                path == "metadata"
                or "properties" in node
                or "additionalProperties" in node  # a map of typed values (match.labels, alert.labels)
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), path


@pytest.mark.parametrize("kind", KINDS)
def test_no_keys_a_structural_schema_forbids(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        assert not FORBIDDEN_KEYS & set(node), (path, FORBIDDEN_KEYS & set(node))
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "nullable" not in node or node["nullable"] is True, path
        if path == "metadata":
            assert node == {"type": "object"}, "the API server only allows name/generateName rules here"
        if "format" in node:
            assert node["format"] in K8S_FORMATS, path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_field_has_a_description(kind: str, part: str) -> None:
    schema = root_schema(kind)
    assert schema["description"]
    missing = [path for path, node in fields(schema["properties"][part], part) if not node.get("description")]
    assert schema["properties"][part].get("description")
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_number_has_bounds(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        if node.get("type") in ("integer", "number"):
            assert "minimum" in node and "maximum" in node, path
            assert node["minimum"] <= node["maximum"], path


@pytest.mark.parametrize("kind", KINDS)
def test_enums_are_non_empty_string_lists(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        if "enum" in node:
            assert node["type"] == "string", path
            assert node["enum"] and all(isinstance(v, str) for v in node["enum"]), path
            assert len(set(node["enum"])) == len(node["enum"]), path


@pytest.mark.parametrize("kind", KINDS)
def test_required_fields_exist(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        for name in node.get("required", ()):
            assert name in node.get("properties", {}), (path, name)


@pytest.mark.parametrize("kind", KINDS)
def test_map_lists_have_required_keys(kind: str) -> None:
    for path, node in nodes(root_schema(kind)):
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            item = node["items"]
            for key in keys:
                assert key in item.get("required", []) or "default" in item["properties"][key], (path, key)


def _cel_ok(value: Any, schema: dict[str, Any]) -> bool:
    for rule in schema.get("x-kubernetes-validations", ()):
        env = celpy.Environment()
        if not env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)}):
            return False
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_valid_against_their_own_schema(kind: str) -> None:
    found = 0
    for path, node in nodes(root_schema(kind)):
        if "default" not in node:
            continue
        found += 1
        # The API server applies the nested defaults inside a default before validating it.
        defaulted = _apply_nested_defaults(node["default"], node)
        jsonschema.Draft7Validator(validation._to_json_schema(node)).validate(defaulted)
        assert _cel_ok(defaulted, node), path
    assert found, "every kind has defaults"


def _apply_nested_defaults(value: Any, schema: dict[str, Any]) -> Any:
    holder = {"v": value}
    validation._default(holder, {"properties": {"v": schema}})
    return holder["v"]


# --- CEL ----------------------------------------------------------------------------------------


def cel_rules() -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    return [
        (kind, path, node, rule)
        for kind, path, node in all_nodes()
        for rule in node.get("x-kubernetes-validations", ())
    ]


def test_there_are_cel_rules() -> None:
    assert len(cel_rules()) >= 6


@pytest.mark.parametrize(
    ("kind", "path", "node", "rule"), cel_rules(), ids=[f"{k}:{p}:{r['rule']}" for k, p, _, r in cel_rules()]
)
def test_cel_rule_compiles_and_names_only_existing_fields(
    kind: str, path: str, node: dict[str, Any], rule: dict[str, str]
) -> None:
    env = celpy.Environment()
    env.compile(rule["rule"])  # raises on a syntax error
    assert rule["message"] and not rule["message"].endswith(".")
    referenced = re.findall(r"\bself((?:\.[A-Za-z_]\w*)+)", rule["rule"])
    # A transition rule may compare the whole object (self == oldSelf: immutable).
    assert referenced or "oldSelf" in rule["rule"], "a rule that does not look at self checks nothing"
    for dotted in referenced:
        target = node
        for name in dotted.strip(".").split("."):
            assert name in target.get("properties", {}), f"{kind} {path}: {rule['rule']} names unknown {name}"
            target = target["properties"][name]
    if "fieldPath" in rule:
        target = node
        for name in rule["fieldPath"].strip(".").split("."):
            assert name in target["properties"], rule["fieldPath"]
            target = target["properties"][name]


@pytest.mark.parametrize("kind", KINDS)
def test_cel_rules_on_optional_fields_guard_with_has(kind: str) -> None:
    """On a real API server, ``self.x`` on an absent optional field is an evaluation error, not false."""
    for _, path, node, rule in [r for r in cel_rules() if r[0] == kind]:
        required_or_defaulted = set(node.get("required", ())) | {
            name for name, prop in node.get("properties", {}).items() if "default" in prop
        }
        for name in re.findall(r"(?<!has\()\bself\.([A-Za-z_]\w*)", rule["rule"]):
            assert name in required_or_defaulted, f"{path}: {rule['rule']}: {name} may be absent; use has()"


# --- status: what the operator writes, the CRD accepts and the status models read back -------------

FULL_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Healthy",
            "message": "",
            "lastTransitionTime": "2024-05-01T10:00:05Z",
            "observedGeneration": 3,
        },
        {
            "type": "ConfigValid",
            "status": "False",
            "reason": "BadConfig",
            "message": "config.maxRetries: must be at most 10",
            "lastTransitionTime": "2024-05-01T10:00:05Z",
        },
    ],
}
MCP_STATUS: dict[str, Any] = {
    "health": "Degraded",
    "serverInfo": {"name": "tools", "version": "1.2", "protocolVersion": "2025-06-18"},
    "tools": {"count": 2, "names": ["get_pods", "list_nodes"]},
    "lastProbeTime": "2024-05-01T10:00:05Z",
    "lastProbeLatencyMs": 42,
    "consecutiveFailures": 0,
}
MINIMAL_SPECS: dict[str, dict[str, Any]] = {
    "LLMProvider": {"type": "ollama"},
    "LLMModel": {"providerRef": {"name": "p"}, "model": "m"},
    "LLMMiddleware": {"modelRef": {"name": "m"}, "type": "logging"},
    "MCPServer": {"url": "http://mcp:8000/mcp"},
    "Runbook": {"title": "t", "content": "## Steps"},
    "Investigation": {"question": "why is checkout slow?"},
    "ActionRequest": {
        "server": "kubernetes-actions",
        "tool": "rollout_restart",
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
        "reason": "stale pods",
        "requestedBy": {"caller": "alice"},
    },
}
RUNBOOK_STATUS: dict[str, Any] = {"contentHash": "sha256:" + "0" * 64, "sections": 3}


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_status_is_valid_and_reads_back(kind: str) -> None:
    extra = {"MCPServer": MCP_STATUS, "Runbook": RUNBOOK_STATUS}.get(kind, {})
    status = {**FULL_STATUS, **extra}
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": MINIMAL_SPECS[kind],
    }
    assert validation.validate_resource({**obj, "status": status}) == []
    parsed = RESOURCES[kind].status_model.model_validate(status)
    assert parsed.wire() == status
    # Reading tolerates fields a newer operator version may have written.
    RESOURCES[kind].status_model.model_validate({**status, "fieldOfTheFuture": 1})


def test_spec_models_are_strict_where_the_schema_is() -> None:
    provider = RESOURCES["LLMProvider"]
    with pytest.raises(ValueError, match="valid boolean"):
        provider.parse_spec({"type": "ollama", "enabled": "yes"})
    with pytest.raises(ValueError, match="Extra inputs"):
        provider.parse_spec({"type": "ollama", "base_url": "http://ollama:11434"})
    assert provider.parse_spec({"type": "ollama", "enabled": False}).wire() == {
        "type": "ollama",
        "enabled": False,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_patterns_compile_and_use_no_constructs_go_re2_lacks(kind: str) -> None:
    """The API server matches `pattern` with Go's RE2: no lookaround, no backreferences."""
    for path, node in nodes(root_schema(kind)):
        if "pattern" in node:
            re.compile(node["pattern"])
            assert not re.search(r"\(\?[=!<]|\\[1-9]", node["pattern"]), path
