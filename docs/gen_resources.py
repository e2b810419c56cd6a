"""Regenerate the field tables of docs/resources.md from the CRD schemas (that is, from the spec models).

The prose and examples of the document are written by hand; only the parts between
``<!-- BEGIN generated: KIND PART -->`` and ``<!-- END generated -->`` are rewritten. ``make crds`` runs
it after changing ``ai_ops_api/specs.py``; tests/test_docs.py fails while the document is out of date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ai_ops_api.specs import RESOURCES
from ai_ops_operator.core.validation import schema_of

DOC = Path(__file__).resolve().parent / "resources.md"
BLOCK_RE = re.compile(
    r"(<!-- BEGIN generated: (?P<kind>\w+) (?P<part>spec|status|rules) -->\n)(?P<body>.*?)(<!-- END generated -->)",
    re.DOTALL,
)


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return f"list of {_type(node['items'])}"
    if kind == "object" and "properties" not in node:
        return "object (free-form)"
    if "format" in node:
        return f"{kind} ({node['format']})"
    return str(kind)


def _constraints(node: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node and "maximum" in node:
        out.append(f"{node['minimum']} to {node['maximum']}")
    if node.get("minLength"):
        out.append("not empty" if node["minLength"] == 1 else f"at least {node['minLength']} characters")
    if "maxLength" in node:
        out.append(f"at most {node['maxLength']} characters")
    if "maxItems" in node:
        out.append(f"at most {node['maxItems']} items")
    if "pattern" in node:
        out.append(f"matches {_code(node['pattern'])}")
    return out


def _code(text: str) -> str:
    """Inline code, fenced with two backticks when the text holds one."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(node: dict[str, Any], prefix: str, required: bool) -> list[str]:
    rows = []
    required_names = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        default = f"`{_default_text(prop['default'])}`" if "default" in prop else ""
        notes = _constraints(prop)
        if name in required_names and required:
            notes.insert(0, "**required**")
        description = prop.get("description", "") + (f" ({'; '.join(notes)})" if notes else "")
        rows.append(f"| `{path}` | {_type(prop)} | {default} | {_cell(description)} |")
        if prop.get("type") == "object":
            rows += _rows(prop, path, required)
        elif prop.get("type") == "array" and prop["items"].get("type") == "object":
            rows += _rows(prop["items"], path + "[]", required)
    return rows


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _rules(node: dict[str, Any], prefix: str) -> list[str]:
    rules = [
        f"- `{prefix + rule.get('fieldPath', '')}`: {rule['message']}. CEL: `{rule['rule']}`"
        for rule in node.get("x-kubernetes-validations", ())
    ]
    for name, prop in node.get("properties", {}).items():
        rules += _rules(prop, f"{prefix}.{name}")
    if isinstance(node.get("items"), dict):
        rules += _rules(node["items"], prefix + "[]")
    return rules


def block(kind: str, part: str) -> str:
    schema = schema_of(kind)
    if part == "rules":
        return "\n".join(_rules(schema["properties"]["spec"], "spec")) + "\n"
    header = "| Field | Type | Default | Description |\n|---|---|---|---|\n"
    return header + "\n".join(_rows(schema["properties"][part], part, required=part == "spec")) + "\n"


def render(text: str) -> str:
    """The document with every generated block rewritten."""

    def replace(match: re.Match[str]) -> str:
        if match["kind"] not in RESOURCES:
            raise ValueError(f"unknown kind {match['kind']} in {DOC.name}")
        return match.group(1) + block(match["kind"], match["part"]) + match.group(5)

    return BLOCK_RE.sub(replace, text)


def main() -> int:
    text = DOC.read_text()
    updated = render(text)
    if "--check" in sys.argv[1:]:
        if updated != text:
            print(f"{DOC}: out of date; run make crds", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
