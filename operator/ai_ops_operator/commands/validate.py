"""``ai-ops validate PATH...``: check ai-ops manifests as the API server would, before ``kubectl apply``.

Every ai-ops resource is checked against its CRD's schema and CEL rules (``validation.validate_resource``);
an LLMMiddleware's ``config`` is also checked against its type's settings (the API server keeps ``config``
free-form, but the operator would mark such a middleware ``ConfigValid=False``), and the valid LLMMiddleware
of the files are checked together against the rules of a model's whole chain (``check_chain``: no
self-fallback, no two limits on one counter), as the operator checks them. Output is one line per
problem, ``FILE:DOC_INDEX: Kind/name: field.path: message``, then a summary. Exit status: 0 when every
resource is valid, 1 when any is not, 2 when the input cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_ops_api.specs import GROUP, RESOURCES, LLMMiddlewareSpec
from ai_ops_operator.core.evaluate import chain_problems
from ai_ops_operator.core.manifests import LoadedDocument, ManifestError, load_manifests
from ai_ops_operator.core.validation import Problem, apply_defaults, validate_resource

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="manifest files or folders (searched recursively for *.yaml, *.yml, *.json); - reads stdin",
    )
    parser.epilog = (
        "Each problem is printed as FILE:DOC_INDEX: Kind/name: field.path: message, where DOC_INDEX counts "
        "the YAML documents of the file from 0. Exit status: 0 all valid, 1 some invalid, 2 unreadable input."
    )


@dataclass
class Report:
    """The outcome of validating a set of documents."""

    valid: int = 0
    invalid: int = 0
    skipped: int = 0
    # (document, kind/name label, problem), in input order.
    problems: list[tuple[LoadedDocument, str, Problem]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{doc.location}: {label}: {problem}" for doc, label, problem in self.problems]

    def summary(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        checked = plural(self.valid + self.invalid, "ai-ops resource")
        skipped = plural(self.skipped, "document")
        return f"{checked}: {self.valid} valid, {self.invalid} invalid; {skipped} of other kinds skipped"

    @property
    def exit_code(self) -> int:
        return EXIT_INVALID if self.invalid else EXIT_VALID


def _label(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{obj.get('kind') or '?'}/{name or '?'}"


def _looks_like_ai_ops(obj: dict[str, Any]) -> bool:
    # A misspelt apiVersion on an ai-ops kind (or a misspelt kind in our group) must be reported,
    # not skipped as "another kind".
    group = str(obj.get("apiVersion") or "").split("/")[0]
    return group == GROUP or obj.get("kind") in RESOURCES


def middleware_config_problems(obj: dict[str, Any]) -> list[Problem]:
    """Problems of an LLMMiddleware's ``config`` for its type (the schema the chat service builds from)."""
    from ai_ops_api.middleware import MiddlewareConfigError, parse_middleware_config

    spec = obj.get("spec") or {}
    try:
        parse_middleware_config(spec["type"], spec.get("config"))
    except MiddlewareConfigError as exc:
        return [Problem(f"spec.{path}", message) for path, message in exc.problems]
    return []


def document_problems(obj: Any) -> list[Problem] | None:
    """The problems of one document, or None when it is not an ai-ops resource (skipped)."""
    if not isinstance(obj, dict):
        return [Problem("", "document is not a Kubernetes object (a mapping with apiVersion and kind)")]
    if not _looks_like_ai_ops(obj):
        if not obj.get("apiVersion") or not obj.get("kind"):
            return [Problem("", "document is not a Kubernetes object: apiVersion and kind are required")]
        return None
    problems = validate_resource(obj)
    if not problems and obj.get("kind") == "LLMMiddleware":
        problems = middleware_config_problems(obj)
    return problems


def chain_rule_problems(valid: Mapping[int, dict[str, Any]]) -> dict[int, list[Problem]]:
    """The chain-rule problems of the valid LLMMiddleware among ``valid`` (position -> resource), checked
    per namespace as the operator does (no namespace counts as one; of two with one name, the later one
    counts, as in ``ai-ops render``)."""
    by_namespace: dict[str | None, dict[str, tuple[int, LLMMiddlewareSpec]]] = {}
    for position, obj in valid.items():
        if obj.get("kind") != "LLMMiddleware":
            continue
        spec = LLMMiddlewareSpec.model_validate(apply_defaults(obj)["spec"])
        metadata = obj["metadata"]
        by_namespace.setdefault(metadata.get("namespace"), {})[metadata["name"]] = (position, spec)
    found: dict[int, list[Problem]] = {}
    for members in by_namespace.values():
        problems = chain_problems({name: spec for name, (_, spec) in members.items()})
        for name, broken in problems.items():
            found[members[name][0]] = [Problem(p.path, f"{p.rule}: {p.message}") for p in broken]
    return found


def validate_documents(documents: Iterable[LoadedDocument]) -> Report:
    report = Report()
    checked: list[tuple[LoadedDocument, str, list[Problem]]] = []
    for doc in documents:
        problems = document_problems(doc.obj)
        if problems is None:
            report.skipped += 1
            continue
        checked.append((doc, _label(doc.obj) if isinstance(doc.obj, dict) else "?", problems))
    across = chain_rule_problems({n: doc.obj for n, (doc, _, problems) in enumerate(checked) if not problems})
    for position, (doc, label, problems) in enumerate(checked):
        problems = problems or across.get(position, [])
        if problems:
            report.invalid += 1
            report.problems += [(doc, label, problem) for problem in problems]
        else:
            report.valid += 1
    return report


def run(args: argparse.Namespace) -> int:
    try:
        documents = load_manifests(args.paths)
    except ManifestError as exc:
        print(f"ai-ops validate: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = validate_documents(documents)
    for line in report.lines():
        print(line)
    print(report.summary())
    return report.exit_code
