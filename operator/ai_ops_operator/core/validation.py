"""Validate ai-ops resources exactly as the API server would: defaults, the CRD's schema, its CEL rules.

Used by ``ai-ops validate``, by the operator (the emulator in tests and old API servers may let through
what a real one refuses) and by the test emulator to answer 422 like an API server. The schemas come from
``crdgen`` (that is, from the spec models), so there is one source for all three.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema

from ai_ops_api.specs import API_VERSION, NAME_PATTERN, RESOURCES, ResourceKind, check_absolute_url
from ai_ops_operator.core.crdgen import crd_for

_NAME_RE = re.compile(NAME_PATTERN)
_CEL_ENV = celpy.Environment()


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a resource: where (a field path such as ``spec.headers[0].name``) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def is_ai_ops_resource(obj: Any) -> bool:
    return isinstance(obj, dict) and str(obj.get("apiVersion", "")).split("/")[0] == API_VERSION.split("/")[0]


def schema_of(kind: str) -> dict[str, Any]:
    return _schema_of(kind)


@functools.cache
def _schema_of(kind: str) -> dict[str, Any]:
    resource: ResourceKind = RESOURCES[kind]
    return crd_for(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# --- defaulting ---------------------------------------------------------------------------------


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of the resource with the schema's defaults filled in, as the API server stores it."""
    result = copy.deepcopy(obj)
    kind = result.get("kind")
    if kind in RESOURCES:
        result = _as_stored(result, _schema_of(kind))
        _default(result, _schema_of(kind))
    return result


# --- integral floats ----------------------------------------------------------------------------

# The API server takes a float with no fraction in an integer field (`maxTokens: 1024.0`) and stores it as
# the integer 1024; every other integral float it stores comes back as an integer too (Go's JSON encoder
# writes float64 1024 as `1024`, below 1e21). Its integer check takes a float only within +-(2**53 - 1),
# where every float is an exact integer.
_EXACT_INTEGER = 2**53 - 1
_GO_PLAIN_FLOAT = 1e21


def _as_stored(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with its integral floats turned into integers where the API server does so."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: _as_stored(item, properties.get(key, {})) for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [_as_stored(item, items if isinstance(items, dict) else {}) for item in value]
    if not isinstance(value, float) or not value.is_integer():
        return value
    # An integer field's float beyond the exact range stays a float, which the schema check then refuses.
    limit = _EXACT_INTEGER if schema.get("type") == "integer" else _GO_PLAIN_FLOAT
    return int(value) if abs(value) <= limit and abs(value) < _GO_PLAIN_FLOAT else value


def _default(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                _default(value[name], prop)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(item, schema["items"])


# --- JSON schema --------------------------------------------------------------------------------


def _to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (structural) to JSON Schema.

    Unknown fields are errors, like ``kubectl apply``'s strict field validation.
    """
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _to_json_schema(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k != "nullable"
    }
    if (
        node.get("type") == "object"
        and "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    if isinstance(value, str):
        check_absolute_url(value)  # the spec models run the same check
    return True


# JSON Schema counts 1024.0 as an integer; the API server's check takes no float (those it does take are
# integers by now, see _as_stored).
_SchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    return _SchemaValidator(_to_json_schema(_schema_of(kind)), format_checker=_FORMATS)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_REQUIRED_RE = re.compile(r"^'(?P<name>[^']+)' is a required property$")


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def _short(value: Any) -> str:
    """A value for a message: short (a long prompt or a list is not repeated whole)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _normalized(word: str) -> str:
    # Case and the separator are the usual slips: baseUrl, base_url, openai-compatible, Streamable_HTTP.
    return word.lower().replace("-", "_")


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` was most likely meant to be, or None: the closest by ``difflib`` (ignoring case
    and ``-``/``_``), else the only choice that contains it (``http`` for ``streamable_http``)."""
    by_normal = {_normalized(choice): choice for choice in choices}
    normal = _normalized(word)
    if normal in by_normal:
        return by_normal[normal]
    close = difflib.get_close_matches(normal, by_normal, n=1, cutoff=0.75)
    if close:
        return by_normal[close[0]]
    containing = [choice for n, choice in by_normal.items() if len(normal) >= 3 and normal in n]
    return containing[0] if len(containing) == 1 else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` when one of ``choices`` is close to ``word``, else ``""``."""
    choice = closest(word, choices)
    return f"; did you mean {choice}?" if choice is not None else ""


def _unknown_field_hint(name: str, schema: dict[str, Any]) -> str:
    """A sibling close to ``name``, else a field of that name one level down (a field written at the wrong
    indentation: ``intervalSeconds`` directly under ``spec`` belongs in ``spec.healthCheck``)."""
    properties = schema.get("properties", {})
    hint = did_you_mean(name, properties)
    if hint:
        return hint
    deeper = [
        f"{parent}.{child}"
        for parent, prop in properties.items()
        for child in _object_properties(prop)
        if _normalized(child) == _normalized(name)
    ]
    return f"; did you mean {deeper[0]}?" if len(deeper) == 1 else ""


def _object_properties(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("items"), dict):
        schema = schema["items"]
    properties = schema.get("properties", {})
    return properties if isinstance(properties, dict) else {}


def _schema_problems(error: jsonschema.ValidationError) -> list[Problem]:
    """The problems of one schema error, with the path pointing at the field at fault (as kubectl does)."""
    path = list(error.absolute_path)
    where = _path(path)
    validator, limit, instance = error.validator, error.validator_value, error.instance
    if validator == "additionalProperties":
        extra = sorted(set(instance) - set(error.schema.get("properties", {})))
        return [
            Problem(_path([*path, name]), "unknown field" + _unknown_field_hint(str(name), error.schema))
            for name in extra
        ]
    if validator == "required":
        match = _REQUIRED_RE.match(error.message)
        return (
            [Problem(_path([*path, match["name"]]), "is required")]
            if match
            else [Problem(where, error.message)]
        )
    if validator == "enum":
        message = f"must be one of {', '.join(map(str, limit))}, not {_short(instance)}"
        if isinstance(instance, str):
            message += did_you_mean(instance, map(str, limit))
    elif validator == "type":
        message = f"must be of type {limit}, not {_JSON_TYPES.get(type(instance), 'null')} {_short(instance)}"
    elif validator == "format" and error.cause is not None:
        message = str(error.cause)
    elif validator == "minLength":
        message = "must not be empty" if limit == 1 else f"must be at least {limit} characters long"
    elif validator == "maxLength":
        message = f"must be at most {limit} characters long, not {len(instance)}"
    elif validator == "minItems":
        message = f"must have at least {limit} items, not {len(instance)}"
    elif validator == "maxItems":
        message = f"must have at most {limit} items, not {len(instance)}"
    elif validator == "pattern":
        message = f"{_short(instance)} does not match {limit}"
    else:
        message = error.message
    return [Problem(where, message)]


# --- CEL ----------------------------------------------------------------------------------------


@functools.cache
def _program(rule: str) -> Any:
    return _CEL_ENV.program(_CEL_ENV.compile(rule))


def _cel_problems(value: Any, schema: dict[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    for rule in schema.get("x-kubernetes-validations", ()):
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: the API server evaluates it on updates only, never on create
        try:
            ok = bool(_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
        except Exception as exc:  # a rule that cannot be evaluated on this value counts as failed
            ok = False
            message = f"{rule['message']} (rule could not be evaluated: {exc})"
        else:
            message = rule["message"]
        if not ok:
            problems.append(Problem(path + rule.get("fieldPath", ""), message))
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                problems += _cel_problems(value[name], prop, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _cel_problems(item, schema["items"], f"{path}[{index}]")
    return problems


# --- entry point --------------------------------------------------------------------------------


def validate_resource(obj: Any) -> list[Problem]:
    """Every problem of one ai-ops resource manifest; an empty list when the API server would accept it."""
    if not isinstance(obj, dict):
        return [Problem("", "a resource must be a mapping")]
    if obj.get("apiVersion") != API_VERSION:
        return [Problem("apiVersion", f"must be {API_VERSION}, not {obj.get('apiVersion')!r}")]
    kind = obj.get("kind")
    if kind not in RESOURCES:
        hint = did_you_mean(kind, RESOURCES) if isinstance(kind, str) else ""
        return [Problem("kind", f"must be one of {', '.join(RESOURCES)}, not {kind!r}{hint}")]
    problems: list[Problem] = []
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        problems.append(Problem("metadata.name", "is required"))
    elif len(name) > 253:
        problems.append(Problem("metadata.name", f"must be at most 253 characters long, not {len(name)}"))
    elif not _NAME_RE.match(name):
        problems.append(
            Problem(
                "metadata.name", f"{name!r} is not a valid name (lower-case letters, digits, '-' and '.')"
            )
        )
    defaulted = apply_defaults(obj)
    schema_errors = list(_validator(kind).iter_errors(defaulted))
    for error in schema_errors:
        problems += _schema_problems(error)
    if not schema_errors:
        # Like the API server, CEL rules run only on a value that passed the schema.
        problems += _cel_problems(defaulted, _schema_of(kind), "")
    return sorted(set(problems))
