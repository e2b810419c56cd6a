"""docs/resources.md stays true: field tables current, every field present, examples valid."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from ai_ops_api.specs import RESOURCES
from ai_ops_operator.commands.validate import document_problems, validate_documents
from ai_ops_operator.core.manifests import load_manifests
from ai_ops_operator.core.validation import schema_of

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "resources.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_resources", ROOT / "docs" / "gen_resources.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_current() -> None:
    text = DOC.read_text()
    assert load_generator().render(text) == text, "run: make crds"


def _field_paths(schema: dict, path: str) -> list[str]:
    paths = []
    for name, prop in schema.get("properties", {}).items():
        paths.append(f"{path}.{name}")
        paths += _field_paths(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        paths += _field_paths(schema["items"], path + "[]")
    return paths


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_every_spec_field_is_documented(kind: str) -> None:
    text = DOC.read_text()
    section = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
    for path in _field_paths(schema_of(kind)["properties"]["spec"], "spec"):
        assert f"| `{path}` |" in section, path


def test_status_fields_are_documented() -> None:
    text = DOC.read_text()
    for path in _field_paths(schema_of("MCPServer")["properties"]["status"], "status"):
        assert f"| `{path}` |" in text, path


def test_every_kind_has_a_valid_example() -> None:
    text = DOC.read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    assert sorted(b["kind"] for b in blocks) == sorted(RESOURCES)
    for block in blocks:
        assert document_problems(block) == [], block["metadata"]["name"]


def test_quoted_validate_summary_of_the_examples_is_true() -> None:
    summary = validate_documents(load_manifests([ROOT / "examples"])).summary()
    assert f"$ ai-ops validate examples/\n{summary}\n" in DOC.read_text()


def test_readme_examples_are_valid() -> None:
    text = (ROOT / "README.md").read_text()
    docs = [
        d
        for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
        for d in yaml.safe_load_all(block)
        if d
    ]
    for doc in docs:
        assert document_problems(doc) in ([], None), doc
