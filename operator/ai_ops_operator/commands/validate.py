"""``ai-ops validate PATH...``: check ai-ops manifests as the API server and the operator would, before
``kubectl apply``.

Errors (the resource would be refused, or marked invalid by the operator):

- each resource against its CRD's schema and CEL rules (``validation.validate_resource``), with a "did you
  mean" for a misspelt field or enum value;
- an LLMMiddleware's ``config`` against its type's settings (the API server keeps ``config`` free-form, but
  the operator would mark such a middleware ``ConfigValid=False``);
- the valid LLMMiddleware of the files together against the rules of a model's whole chain
  (``check_chain``: no self-fallback, no two limits on one counter);
- an MCPServer's ``url`` against the operator's address policy (``url_refusal``: http or https only, no
  metadata or link-local address, no loopback without ``--allow-loopback``).

Warnings (``--strict`` makes them fail): what ``ai-ops render`` would leave out of the agent config for
reasons across resources, found by the operator's own ``evaluate`` over the files given, one namespace at
a time: a dangling ``providerRef`` or ``modelRef``, a middleware naming a model that is missing, a model
taken down by its critical middleware. They are warnings because the missing resource may come from
another file; and two resources of one kind and name in one namespace (the later one is used).

Output is one line per problem, ``FILE:LINE:COLUMN: Kind/name: field.path: message`` (a warning has
``warning:`` after the location), the line and column being where the field is written (for a missing
field, its nearest written ancestor), then a summary. Exit status: 0 when no resource has errors (and,
with ``--strict``, there is no warning), 1 otherwise, 2 when the input cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_ops_api.addresses import url_refusal
from ai_ops_api.conditions import FALSE, READY, Reason
from ai_ops_api.specs import GROUP, RESOURCES, LLMMiddlewareSpec
from ai_ops_operator.core.evaluate import chain_problems, evaluate
from ai_ops_operator.core.manifests import (
    LoadedDocument,
    ManifestError,
    ManifestResources,
    load_manifests,
    path_steps,
)
from ai_ops_operator.core.snapshot import Verdict
from ai_ops_operator.core.validation import Problem, apply_defaults, did_you_mean, validate_resource

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2

ERROR = "error"
WARNING = "warning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="manifest files or folders (searched recursively for *.yaml, *.yml, *.json); - reads stdin",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) on warnings too: references to resources not in the files given, and "
        "anything else ai-ops render would leave out",
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="accept MCP servers on loopback addresses (local development), as ai-ops render does",
    )
    parser.epilog = (
        "Each problem is printed as FILE:LINE:COLUMN: Kind/name: field.path: message (warnings with "
        "'warning:' after the location). Exit status: 0 no errors (with --strict: and no warnings), "
        "1 errors (with --strict: or warnings), 2 unreadable input."
    )


@dataclass(frozen=True)
class Finding:
    """One problem of one document, error or warning."""

    doc: LoadedDocument
    label: str  # Kind/name
    severity: str
    problem: Problem

    def line(self) -> str:
        severity = "warning: " if self.severity == WARNING else ""
        return f"{self.doc.where(self.problem.path)}: {severity}{self.label}: {self.problem}"


@dataclass
class Report:
    """The outcome of validating a set of documents."""

    valid: int = 0
    invalid: int = 0
    skipped: int = 0
    # In input order; a document's errors before its warnings.
    findings: list[Finding] = field(default_factory=list)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == WARNING)

    def lines(self) -> list[str]:
        return [finding.line() for finding in self.findings]

    def summary(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        checked = plural(self.valid + self.invalid, "ai-ops resource")
        warnings = f", {plural(self.warnings, 'warning')}" if self.warnings else ""
        skipped = plural(self.skipped, "document")
        return f"{checked}: {self.valid} valid, {self.invalid} invalid{warnings}; {skipped} of other kinds skipped"

    def exit_code(self, strict: bool = False) -> int:
        return EXIT_INVALID if self.invalid or (strict and self.warnings) else EXIT_VALID


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
    from ai_ops_api.middleware import MIDDLEWARE_CONFIG_MODELS, MiddlewareConfigError, parse_middleware_config

    spec = obj.get("spec") or {}
    try:
        parse_middleware_config(spec["type"], spec.get("config"))
    except MiddlewareConfigError as exc:
        model = MIDDLEWARE_CONFIG_MODELS.get(spec["type"])
        # The config's own field names (camelCase aliases), for a "did you mean" on a misspelt one.
        names = [f.alias or n for n, f in model.model_fields.items()] if model is not None else []
        problems = []
        for path, message in exc.problems:
            if message == "Extra inputs are not permitted" and path.count(".") == 1:
                message = "unknown field" + did_you_mean(path.split(".")[1], names)
            problems.append(Problem(f"spec.{path}", message))
        return problems
    return []


def url_problems(obj: dict[str, Any], allow_loopback: bool) -> list[Problem]:
    """An MCPServer URL the operator would refuse to contact (``Accepted=False``, ``URLNotAllowed``)."""
    url = (obj.get("spec") or {}).get("url")
    refusal = url_refusal(url, allow_loopback) if isinstance(url, str) else None
    return [Problem("spec.url", loopback_hint(refusal))] if refusal else []


def loopback_hint(message: str) -> str:
    # The address policy names the operator's setting; on the command line the flag does the same.
    return message.replace("AI_OPS_ALLOW_LOOPBACK", "--allow-loopback")


def document_problems(obj: Any, allow_loopback: bool = False) -> list[Problem] | None:
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
    if not problems and obj.get("kind") == "MCPServer":
        problems = url_problems(obj, allow_loopback)
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


# --- what render would leave out: evaluate over the files, one namespace at a time ----------------

# Reasons that make a resource invalid in the operator (and in validate) rather than merely left out.
_ERROR_REASONS = frozenset({Reason.INVALID_SPEC, Reason.INVALID_CONFIG, Reason.URL_NOT_ALLOWED})


def _namespace(obj: Any) -> str | None:
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) else None


def _path_of_value(value: Any, wanted: str, path: str) -> str | None:
    """The path of the first string ``wanted`` inside ``value`` (a model named in a middleware config)."""
    if value == wanted:
        return path
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for child_path, child in items:
        found = _path_of_value(child, wanted, child_path)
        if found is not None:
            return found
    return None


_TARGET_KIND: dict[str, str] = {Reason.PROVIDER_NOT_FOUND: "LLMProvider", Reason.MODEL_NOT_FOUND: "LLMModel"}


def _value_at(obj: Any, path: str) -> Any:
    for step in path_steps(path):
        if isinstance(obj, dict):
            obj = obj.get(step)
        elif isinstance(obj, list) and isinstance(step, int) and step < len(obj):
            obj = obj[step]
        else:
            return None
    return obj


def _field_at_fault(verdict: Verdict, obj: dict[str, Any], reason: str, message: str) -> str:
    """The field a left-out resource's reason is about (where the line and column point)."""
    if reason == Reason.URL_NOT_ALLOWED:
        return "spec.url"
    if reason in (Reason.PROVIDER_NOT_FOUND, Reason.PROVIDER_NOT_READY, Reason.PROVIDER_DISABLED):
        return "spec.enabled" if verdict.kind == "LLMProvider" else "spec.providerRef.name"
    if reason in (Reason.MODEL_NOT_FOUND, Reason.MODEL_NOT_READY):
        return "spec.modelRef.name"
    if reason in (Reason.REFERENCED_MODEL_NOT_FOUND, Reason.REFERENCED_MODEL_NOT_READY):
        # "LLMModel(s) not found: a, b": point at the first one named.
        first = message.rpartition(": ")[2].split(", ")[0]
        config = (obj.get("spec") or {}).get("config")
        return _path_of_value(config, first, "spec.config") or "spec.config"
    if reason == Reason.ENTRY_POINT_NOT_FOUND:
        return "spec.config.entryPoint"
    return "spec"


def left_out_problems(
    documents: Iterable[LoadedDocument], allow_loopback: bool
) -> dict[int, list[tuple[str, Problem]]]:
    """What ``evaluate`` finds across the ai-ops resources of the documents, by ``id`` of the document (a
    document is not hashable; its content is a dict): (severity, problem) for each resource ``render``
    would leave out, and for each one replaced by a later one of the same kind and name. Per namespace (no
    namespace counts as one), as the operator sees them."""
    by_namespace: dict[str | None, list[LoadedDocument]] = {}
    for doc in documents:
        by_namespace.setdefault(_namespace(doc.obj), []).append(doc)
    found: dict[int, list[tuple[str, Problem]]] = {}
    for namespace, docs in by_namespace.items():
        resources = ManifestResources.of(docs)
        for earlier, later in resources.duplicates:
            message = f"defined again at {later.location}, which is used instead"
            found.setdefault(id(earlier), []).append((WARNING, Problem("metadata.name", message)))
        evaluation = evaluate(resources.snapshot(namespace or "default", allow_loopback))
        for verdict in evaluation.all():
            ready = verdict.condition(READY)
            if ready is None or ready.status != FALSE or ready.reason == Reason.MAINTENANCE:
                continue
            doc = resources.documents[(verdict.kind, verdict.name)]
            path = _field_at_fault(verdict, doc.obj, ready.reason, ready.message)
            severity = ERROR if ready.reason in _ERROR_REASONS else WARNING
            message = loopback_hint(ready.message)
            message = message if severity == ERROR else f"{ready.reason}: {message}"
            if ready.reason in _TARGET_KIND:
                # A misspelt reference: the names of that kind in the namespace.
                names = [name for kind, name in resources.documents if kind == _TARGET_KIND[ready.reason]]
                message += did_you_mean(str(_value_at(doc.obj, path)), names)
            found.setdefault(id(doc), []).append((severity, Problem(path, message)))
    return found


def validate_documents(documents: Iterable[LoadedDocument], allow_loopback: bool = False) -> Report:
    report = Report()
    checked: list[tuple[LoadedDocument, str, list[Problem]]] = []
    for doc in documents:
        problems = document_problems(doc.obj, allow_loopback)
        if problems is None:
            report.skipped += 1
            continue
        checked.append((doc, _label(doc.obj) if isinstance(doc.obj, dict) else "?", problems))
    across = chain_rule_problems({n: doc.obj for n, (doc, _, problems) in enumerate(checked) if not problems})
    # Invalid resources take part too, as in render: a model on an invalid provider is left out.
    left_out = left_out_problems([doc for doc, _, _ in checked], allow_loopback)
    for position, (doc, label, problems) in enumerate(checked):
        findings = [(ERROR, p) for p in problems or across.get(position, [])] or left_out.get(id(doc), [])
        if any(severity == ERROR for severity, _ in findings):
            report.invalid += 1
        else:
            report.valid += 1
        findings.sort(key=lambda finding: finding[0] != ERROR)
        report.findings += [Finding(doc, label, severity, problem) for severity, problem in findings]
    return report


def run(args: argparse.Namespace) -> int:
    try:
        documents = load_manifests(args.paths)
    except ManifestError as exc:
        print(f"ai-ops validate: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = validate_documents(documents, allow_loopback=args.allow_loopback)
    for line in report.lines():
        print(line)
    print(report.summary())
    return report.exit_code(args.strict)
