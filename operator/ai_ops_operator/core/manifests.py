"""Read Kubernetes manifests from files and folders, keeping where each document came from.

Shared by ``ai-ops validate`` and ``ai-ops render``. Pure: no cluster, no printing. Files are read as
multi-document YAML (JSON is YAML too); a folder is searched recursively for ``*.yaml``, ``*.yml`` and
``*.json``; ``-`` reads standard input. A ``v1`` ``List`` (what ``kubectl get -o yaml`` prints) is
unpacked into its items. Anything that cannot be read or parsed raises ``ManifestError`` with a message
naming the file (and the line, for YAML syntax errors), so callers can show it without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


class ManifestError(Exception):
    """Input that cannot be read or parsed; the message is meant for the user as it is."""


@dataclass(frozen=True)
class LoadedDocument:
    """One YAML document: the file it came from, its position in that file (from 0), and its content.

    ``item`` is the position inside a ``kind: List`` document, or None for a plain document.
    """

    source: str
    index: int
    obj: Any
    item: int | None = None

    @property
    def location(self) -> str:
        """``FILE:INDEX`` (``FILE:INDEX.ITEM`` inside a List): where to look for this document."""
        where = f"{self.source}:{self.index}"
        return where if self.item is None else f"{where}.{self.item}"


class _ManifestLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings, and a repeated key is an error.

    PyYAML would turn ``2024-01-01T00:00:00Z`` into a datetime (not JSON, not what the API server sees)
    and would silently keep the last of two equal keys (a typo that hides a field).
    """


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.MappingNode)
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)
_ManifestLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_documents(text: str, source: str) -> list[LoadedDocument]:
    """The documents of one YAML stream; empty documents (a stray ``---``, only comments) are left out."""
    documents: list[LoadedDocument] = []
    try:
        for index, obj in enumerate(yaml.load_all(text, Loader=_ManifestLoader)):
            if obj is None:
                continue
            if _is_list(obj):
                documents += [
                    LoadedDocument(source, index, item, item_no) for item_no, item in enumerate(obj["items"])
                ]
            else:
                documents.append(LoadedDocument(source, index, obj))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise ManifestError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: invalid YAML: {exc}") from None
    return documents


def _is_list(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("apiVersion") == "v1"
        and obj.get("kind") == "List"
        and isinstance(obj.get("items"), list)
    )


def manifest_files(path: Path) -> list[Path]:
    """The manifest files a path names: the file itself, or every manifest file under a folder, sorted.

    Inside a folder, hidden files and folders (names starting with a dot) are left out.
    """
    if not path.exists():
        raise ManifestError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in MANIFEST_SUFFIXES
            and p.is_file()
            # Hidden files and folders (.git, .venv, editor backups) are not manifests.
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ManifestError(f"{path}: folder holds no {', '.join(MANIFEST_SUFFIXES)} files")
        return files
    return [path]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_manifests(paths: Iterable[str | Path]) -> list[LoadedDocument]:
    """Every document of every file the paths name, in order (files of a folder sorted by path)."""
    documents: list[LoadedDocument] = []
    for raw in paths:
        if str(raw) == STDIN:
            documents += parse_documents(sys.stdin.read(), "<stdin>")
            continue
        for file in manifest_files(Path(raw)):
            documents += parse_documents(_read_text(file), str(file))
    return documents
