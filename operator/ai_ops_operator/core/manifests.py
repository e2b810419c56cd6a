"""Read Kubernetes manifests from files and folders, keeping where each document came from.

Shared by ``ai-ops validate`` and ``ai-ops render``. Pure: no cluster, no printing. Files are read as
multi-document YAML (JSON is YAML too); a folder is searched recursively for ``*.yaml``, ``*.yml`` and
``*.json``; ``-`` reads standard input. A ``v1`` ``List`` (what ``kubectl get -o yaml`` prints) is
unpacked into its items. Anything that cannot be read or parsed raises ``ManifestError`` with a message
naming the file (and the line, for YAML syntax errors), so callers can show it without a traceback.

Each document keeps its YAML node tree, so a problem found in the data (a field path such as
``spec.headers[0].name``) can be shown at the line and column where that field is written.
``ManifestResources`` gathers the ai-ops resources of some documents into the ``Snapshot`` that
``evaluate`` takes, for the rules across resources that ``render`` and ``validate`` both apply.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ai_ops_api.specs import RESOURCES
from ai_ops_operator.core.snapshot import Snapshot

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


class ManifestError(Exception):
    """Input that cannot be read or parsed; the message is meant for the user as it is."""


# One step of a field path: ``spec``, ``headers``, ``[0]`` (pydantic's ``models.0`` works too).
_PATH_STEP = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def path_steps(path: str) -> list[str | int]:
    """``spec.headers[0].name`` as ``["spec", "headers", 0, "name"]``."""
    return [int(index) if index else name for index, name in _PATH_STEP.findall(path)]


@dataclass(frozen=True)
class LoadedDocument:
    """One YAML document: the file it came from, its position in that file (from 0), and its content.

    ``item`` is the position inside a ``kind: List`` document, or None for a plain document. ``node`` is
    the document's YAML node tree (None for a document built in code), which knows where each field is.
    """

    source: str
    index: int
    obj: Any
    item: int | None = None
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    def position(self, path: str = "") -> tuple[int, int]:
        """Line and column (from 1) of the field at ``path`` (its key; an item of a list: the item), or of
        its nearest ancestor written in the file when the field is not (a missing required field, a
        default). ``""`` is the document itself; (0, 0) when the document has no node tree."""
        node = self.node
        if node is None:
            return (0, 0)
        mark = node.start_mark
        for step in path_steps(path):
            found = _child(node, step)
            if found is None:
                break
            mark, node = found
        return (mark.line + 1, mark.column + 1)

    def where(self, path: str = "") -> str:
        """``FILE:LINE:COLUMN`` of the field at ``path`` (see ``position``)."""
        line, column = self.position(path)
        return f"{self.source}:{line}:{column}" if line else self.source

    @property
    def location(self) -> str:
        """``FILE:LINE:COLUMN`` where the document starts."""
        return self.where()


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Mark, yaml.Node] | None:
    """The mark of ``step`` under ``node`` (a mapping's key, a sequence's item) and the node it leads to."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
                return key_node.start_mark, value_node
    elif isinstance(node, yaml.SequenceNode):
        index = step if isinstance(step, int) else int(step) if step.isdigit() else None
        if index is not None and 0 <= index < len(node.value):
            item = node.value[index]
            return item.start_mark, item
    return None


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
    # What yaml.load_all does, keeping each document's node tree (composed, then constructed).
    loader = _ManifestLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            obj = loader.construct_document(node) if node is not None else None
            if obj is None or node is None:
                pass  # an empty document: counted, not kept
            elif _is_list(obj):
                items = _child(node, "items")
                item_nodes = items[1].value if items and isinstance(items[1], yaml.SequenceNode) else []
                documents += [
                    LoadedDocument(source, index, item, item_no, item_nodes[item_no])
                    for item_no, item in enumerate(obj["items"])
                ]
            else:
                documents.append(LoadedDocument(source, index, obj, node=node))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise ManifestError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
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


# --- the ai-ops resources of a set of documents ---------------------------------------------------


@dataclass
class ManifestResources:
    """The ai-ops resources of some documents as one namespace would hold them: by kind and name, the
    later of two with one name counting (as ``kubectl apply`` of both files in order would leave it)."""

    documents: dict[tuple[str, str], LoadedDocument] = field(default_factory=dict)
    # (the document left out, the later one used in its place)
    duplicates: list[tuple[LoadedDocument, LoadedDocument]] = field(default_factory=list)
    # ConfigMaps given in the same files, by name: Runbooks read their content from them (offline).
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, documents: Iterable[LoadedDocument]) -> ManifestResources:
        resources = cls()
        for doc in documents:
            if (
                isinstance(doc.obj, dict)
                and doc.obj.get("kind") == "ConfigMap"
                and doc.obj.get("apiVersion") == "v1"
            ):
                raw = doc.obj.get("data")
                data: dict[Any, Any] = raw if isinstance(raw, dict) else {}
                metadata = doc.obj.get("metadata")
                name = metadata.get("name") if isinstance(metadata, dict) else None
                resources.configmaps[str(name)] = {str(k): v for k, v in data.items() if isinstance(v, str)}
                continue
            if not isinstance(doc.obj, dict) or doc.obj.get("kind") not in RESOURCES:
                continue
            metadata = doc.obj.get("metadata")
            key = (doc.obj["kind"], str(metadata.get("name") if isinstance(metadata, dict) else None))
            if key in resources.documents:
                resources.duplicates.append((resources.documents[key], doc))
            resources.documents[key] = doc
        return resources

    def snapshot(self, namespace: str, allow_loopback: bool = False) -> Snapshot:
        """The snapshot ``evaluate`` takes; offline: Secrets unknown (taken on trust), nothing probed."""
        of_kind: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in RESOURCES}
        for (kind, name), doc in self.documents.items():
            of_kind[kind][name] = doc.obj
        return Snapshot(
            namespace=namespace,
            providers=of_kind["LLMProvider"],
            models=of_kind["LLMModel"],
            middlewares=of_kind["LLMMiddleware"],
            mcpservers=of_kind["MCPServer"],
            runbooks=of_kind["Runbook"],
            configmaps=self.configmaps,
            allow_loopback=allow_loopback,
        )
