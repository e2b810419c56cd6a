"""The CRDs in a real kube-apiserver: installed, and judging every manifest as `ai-ops validate` does.

`ai-ops validate` and the operator evaluate the CRDs' schema and CEL rules with jsonschema and cel-python;
the API server with its own (Go) validators and CEL. Here both judge the same corpus: every manifest of
`examples/` is accepted by both, every file of `tests/fixtures/broken/` refused by both at the same field
paths, and what the server stores (defaults filled, unknown fields pruned, integral floats made integers)
is what `apply_defaults` computes. Any drift between the two dialects fails a test here.

The requests carry `dryRun=All` (nothing is stored) and `fieldValidation`: `Strict`, as `kubectl apply`
sends it, proves a refusal; `Warn` collects every problem at once (unknown fields come back as warnings,
not as a refusal that stops at the first), which is what `ai-ops validate` reports.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_ops_api.specs import (
    API_VERSION,
    RESOURCES,
    Condition,
    ConditionStatus,
)
from ai_ops_cli import main
from ai_ops_operator.commands.validate import document_problems
from ai_ops_operator.core.validation import apply_defaults, validate_resource
from tests.cluster.controlplane import REPO_ROOT, ControlPlane
from tests.cluster.rest import (
    Answer,
    collection_path,
    crd_documents,
    load_documents,
    object_path,
    request,
)

EXAMPLES = REPO_ROOT / "examples"
BROKEN = REPO_ROOT / "tests" / "fixtures" / "broken"

# Broken files the server refuses by not serving the resource type at all (404): that is its refusal.
NOT_SERVED = {
    "api-version-group-misspelt": "no API group aiops.dev",
    "api-version-wrong": "ai-ops.dev serves v1alpha1 only",
    "kind-unknown": "no resource llmproviderss",
}
# A create ignores `status` (the status subresource is on): the server judges it on a write to /status.
STATUS_ONLY = {"status-unknown-health"}
# `spec.config` is free-form in the CRD (x-kubernetes-preserve-unknown-fields): the server and
# validate_resource accept these; `ai-ops validate` and the operator check the middleware type's settings.
CONFIG_ONLY = {
    "middleware-call-limit-without-limit",
    "middleware-fallback-without-models",
    "middleware-pii-unknown-type",
    "middleware-retry-misspelt-field",
}
# The address policy (ai_ops_api.addresses) is ours, not the schema's: the server stores these URLs, and
# `ai-ops validate` and the operator refuse them (the operator with URLNotAllowed).
POLICY_ONLY = {
    "mcp-url-ftp",
    "mcp-url-link-local",
    "mcp-url-loopback",
    "mcp-url-metadata-address",
    "mcp-url-metadata-decimal",
    "mcp-url-metadata-hex",
    "mcp-url-scheme-typo",
}
# A reference across resources is no schema matter either: `ai-ops validate` warns (--strict fails).
REFERENCE_ONLY = {"model-provider-ref-dangling"}


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for index, doc in enumerate(load_documents(path)):
            found.append((f"{path.relative_to(EXAMPLES)}:{index}", doc))
    return found


EXAMPLE_DOCUMENTS = example_documents()
AI_OPS_EXAMPLES = [(label, doc) for label, doc in EXAMPLE_DOCUMENTS if doc.get("apiVersion") == API_VERSION]
BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    placed = copy.deepcopy(obj)
    if isinstance(placed.get("metadata"), dict):
        placed["metadata"]["namespace"] = namespace
    return placed


def dry_run_create(plane: ControlPlane, obj: dict[str, Any], namespace: str, validation: str) -> Answer:
    return request(
        plane,
        "POST",
        collection_path(obj, namespace),
        in_namespace(obj, namespace),
        {"dryRun": "All", "fieldValidation": validation},
    )


def outermost(paths: set[str]) -> set[str]:
    """The paths without those inside another of them: a problem within a field already at fault (a key
    of a map given where a list belongs) is that field's problem, whichever side names it."""

    def inside(path: str, other: str) -> bool:
        return path != other and (path.startswith(other + ".") or path.startswith(other + "["))

    return {p for p in paths if not any(inside(p, other) for other in paths)}


def our_paths(obj: dict[str, Any]) -> set[str]:
    return {problem.path for problem in validate_resource(obj)}


@pytest.fixture(scope="module")
def namespace(ai_ops_crds: ControlPlane) -> str:
    return ai_ops_crds.create_namespace("crds")


def test_the_crds_are_established_with_their_names(ai_ops_crds: ControlPlane) -> None:
    for crd in crd_documents():
        stored = request(
            ai_ops_crds,
            "GET",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
        ).body
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert stored["status"]["acceptedNames"]["shortNames"] == crd["spec"]["names"]["shortNames"]
    assert {crd["spec"]["names"]["kind"] for crd in crd_documents()} == set(RESOURCES)


@pytest.mark.parametrize(("label", "doc"), EXAMPLE_DOCUMENTS, ids=[label for label, _ in EXAMPLE_DOCUMENTS])
def test_every_example_is_accepted_by_the_server_and_by_validate(
    ai_ops_crds: ControlPlane, namespace: str, label: str, doc: dict[str, Any]
) -> None:
    answer = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
    assert answer.ok, f"{label}: {answer.status} {answer.message}"
    assert answer.warnings == []
    assert document_problems(doc) in (None, [])


def test_examples_hold_every_kind() -> None:
    assert {doc["kind"] for _, doc in AI_OPS_EXAMPLES} == set(RESOURCES)


@pytest.mark.parametrize("path", BROKEN_FILES, ids=[path.stem for path in BROKEN_FILES])
def test_every_broken_manifest_is_refused_by_both_at_the_same_fields(
    ai_ops_crds: ControlPlane, namespace: str, path: Path
) -> None:
    (doc,) = load_documents(path)
    ours = our_paths(doc)
    if path.stem in NOT_SERVED:
        answer = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
        assert answer.status == 404, f"{answer.status} {answer.message}"
        assert ours & {"apiVersion", "kind"}, ours
        return
    if path.stem in CONFIG_ONLY:
        answer = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
        assert answer.ok and answer.warnings == [], answer.message
        assert ours == set()
        problems = document_problems(doc)
        assert problems and all(p.path.startswith("spec.config") for p in problems), problems
        return
    if path.stem in POLICY_ONLY or path.stem in REFERENCE_ONLY:
        answer = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
        assert answer.ok and answer.warnings == [], answer.message
        assert ours == set()
        assert main(["validate", "--strict", str(path)]) == 1
        if path.stem in POLICY_ONLY:
            problems = document_problems(doc)
            assert problems and all(p.path == "spec.url" for p in problems), problems
        return
    if path.stem in STATUS_ONLY:
        answer = status_write(ai_ops_crds, doc, namespace)
        assert not answer.ok, "the server stored the broken status"
    else:
        strict = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
        assert strict.status in (400, 422), f"the server accepted it: {strict.status} {strict.body}"
        answer = dry_run_create(ai_ops_crds, doc, namespace, "Warn")
    theirs = answer.problem_paths()
    assert theirs, answer.body
    assert outermost(theirs) == outermost(ours), f"server: {answer.message} {answer.warnings}; ours: {ours}"


def status_write(plane: ControlPlane, doc: dict[str, Any], namespace: str) -> Answer:
    """Create `doc` without its status, then write its status through /status (dry run)."""
    spec_only = {key: value for key, value in doc.items() if key != "status"}
    created = request(plane, "POST", collection_path(doc, namespace), in_namespace(spec_only, namespace))
    assert created.ok, created.message
    try:
        return request(
            plane,
            "PUT",
            object_path(doc, namespace) + "/status",
            {**created.body, "status": doc["status"]},
            {"dryRun": "All"},
        )
    finally:
        request(plane, "DELETE", object_path(doc, namespace))


def test_the_corpus_marks_only_files_the_server_judges_differently() -> None:
    stems = {path.stem for path in BROKEN_FILES}
    marked = set(NOT_SERVED) | STATUS_ONLY | CONFIG_ONLY | POLICY_ONLY | REFERENCE_ONLY
    assert marked <= stems
    assert len(stems - marked) >= 50


# --- defaults and pruning ----------------------------------------------------------------------------


def create_and_read(plane: ControlPlane, obj: dict[str, Any], namespace: str, validation: str) -> Answer:
    created = request(
        plane,
        "POST",
        collection_path(obj, namespace),
        in_namespace(obj, namespace),
        {"fieldValidation": validation},
    )
    assert created.ok, created.message
    stored = request(plane, "GET", object_path(obj, namespace))
    stored.warnings = created.warnings
    return stored


@pytest.mark.parametrize(("label", "doc"), AI_OPS_EXAMPLES, ids=[label for label, _ in AI_OPS_EXAMPLES])
def test_apply_defaults_equals_what_the_server_stores_for_every_example(
    ai_ops_crds: ControlPlane, label: str, doc: dict[str, Any]
) -> None:
    stored = create_and_read(ai_ops_crds, doc, ai_ops_crds.create_namespace("defaults"), "Strict")
    assert stored.body["spec"] == apply_defaults(doc)["spec"]


MINIMAL = [
    {
        "apiVersion": API_VERSION,
        "kind": "MCPServer",
        "metadata": {"name": "bare"},
        "spec": {"url": "http://mcp.tools:8000/mcp"},
    },
    {
        "apiVersion": API_VERSION,
        "kind": "MCPServer",
        "metadata": {"name": "partial-health"},
        "spec": {"url": "http://mcp.tools:8000/mcp", "healthCheck": {"intervalSeconds": 60}},
    },
    {
        "apiVersion": API_VERSION,
        "kind": "LLMModel",
        "metadata": {"name": "bare"},
        "spec": {"providerRef": {"name": "local"}, "model": "llama3.1:8b"},
    },
    {
        "apiVersion": API_VERSION,
        "kind": "LLMProvider",
        "metadata": {"name": "bare"},
        "spec": {"type": "ollama", "baseURL": "http://ollama:11434"},
    },
    {
        "apiVersion": API_VERSION,
        "kind": "LLMMiddleware",
        "metadata": {"name": "bare"},
        "spec": {"modelRef": {"name": "bare"}, "type": "logging"},
    },
]


@pytest.mark.parametrize("doc", MINIMAL, ids=[f"{d['kind']}-{d['metadata']['name']}" for d in MINIMAL])
def test_omitted_fields_read_back_with_the_schema_defaults(
    ai_ops_crds: ControlPlane, namespace: str, doc: dict[str, Any]
) -> None:
    stored = create_and_read(ai_ops_crds, doc, namespace, "Strict")
    expected = apply_defaults(doc)["spec"]
    assert stored.body["spec"] == expected
    assert len(expected) > len(doc["spec"]), "the schema fills no default here: the case proves nothing"


def test_mcp_server_health_check_defaults_are_filled_inside_an_omitted_block(
    ai_ops_crds: ControlPlane, namespace: str
) -> None:
    doc = {**MINIMAL[0], "metadata": {"name": "health-defaults"}}
    stored = create_and_read(ai_ops_crds, doc, namespace, "Strict").body["spec"]
    assert stored["healthCheck"] == {
        "enabled": True,
        "intervalSeconds": 30,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
        "successThreshold": 1,
    }


def preserved_paths(schema: dict[str, Any], path: str = "") -> set[str]:
    found = {path} if schema.get("x-kubernetes-preserve-unknown-fields") else set()
    for name, child in schema.get("properties", {}).items():
        found |= preserved_paths(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        found |= preserved_paths(schema["items"], f"{path}[]")
    return found


def test_only_config_and_parameters_keep_unknown_fields() -> None:
    kept = {
        crd["spec"]["names"]["kind"]: preserved_paths(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for crd in crd_documents()
    }
    assert kept == {
        "LLMProvider": {"spec.config"},
        "LLMModel": {"spec.parameters"},
        "LLMMiddleware": {"spec.config"},
        "MCPServer": set(),
        "Investigation": set(),
        "ActionRequest": {"spec.arguments"},
        "Runbook": set(),
    }


PRUNED = [
    (
        {
            "apiVersion": API_VERSION,
            "kind": "LLMProvider",
            "metadata": {"name": "pruned"},
            "spec": {
                "type": "ollama",
                "baseURL": "http://ollama:11434",
                "region": "eu",
                "config": {"anything": {"nested": [1, "two"]}},
            },
        },
        {"spec.region"},
    ),
    (
        {
            "apiVersion": API_VERSION,
            "kind": "LLMModel",
            "metadata": {"name": "pruned", "labels": {"team": "a"}},
            "spec": {
                "providerRef": {"name": "p", "namespace": "other"},
                "model": "m",
                "parameters": {"top_k": 40, "stop": ["###"]},
            },
            "extra": True,
        },
        {"spec.providerRef.namespace", "extra"},
    ),
    (
        {
            "apiVersion": API_VERSION,
            "kind": "MCPServer",
            "metadata": {"name": "pruned"},
            "spec": {"url": "http://mcp:8000/mcp", "healthCheck": {"intervalSeconds": 60, "jitter": 3}},
        },
        {"spec.healthCheck.jitter"},
    ),
]


@pytest.mark.parametrize(("doc", "unknown"), PRUNED, ids=[d["kind"] for d, _ in PRUNED])
def test_unknown_fields_are_pruned_where_validate_calls_them_unknown_and_kept_in_free_form_blocks(
    ai_ops_crds: ControlPlane, namespace: str, doc: dict[str, Any], unknown: set[str]
) -> None:
    problems = validate_resource(doc)
    assert {p.path for p in problems} == unknown
    assert all(p.message == "unknown field" for p in problems)
    strict = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
    assert strict.status == 400 and strict.problem_paths() == unknown, strict.message

    stored = create_and_read(ai_ops_crds, doc, namespace, "Ignore").body
    # What the server keeps is the document without the unknown fields, defaults filled: apply_defaults
    # of the same document with those fields removed.
    cleaned = copy.deepcopy(doc)
    for path in unknown:
        *parents, last = path.split(".")
        holder = cleaned
        for part in parents:
            holder = holder[part]
        del holder[last]
    assert stored["spec"] == apply_defaults(cleaned)["spec"]
    assert "extra" not in stored


# --- integral floats -----------------------------------------------------------------------------------


def model_with_max_tokens(name: str, value: float) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMModel",
        "metadata": {"name": name},
        "spec": {
            "providerRef": {"name": "local"},
            "model": "llama3.1:8b",
            "maxTokens": value,
            "default": True,
        },
    }


PROVIDER = {
    "apiVersion": API_VERSION,
    "kind": "LLMProvider",
    "metadata": {"name": "local"},
    "spec": {"type": "ollama", "baseURL": "http://ollama:11434"},
}


def test_an_integral_float_in_an_integer_field_is_accepted_and_stored_as_an_integer(
    ai_ops_crds: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = model_with_max_tokens("float-tokens", 1024.0)
    stored = create_and_read(ai_ops_crds, doc, namespace, "Strict").body["spec"]
    assert stored["maxTokens"] == 1024 and type(stored["maxTokens"]) is int

    assert validate_resource(doc) == []
    ours = apply_defaults(doc)["spec"]
    assert ours == stored
    assert type(ours["maxTokens"]) is int

    manifest = tmp_path / "float.yaml"
    manifest.write_text(yaml.safe_dump_all([PROVIDER, doc]))
    assert main(["validate", str(manifest)]) == 0
    capsys.readouterr()
    assert main(["render", str(manifest)]) == 0
    rendered = json.loads(capsys.readouterr().out)
    (model,) = rendered["models"]
    assert model["maxTokens"] == 1024


@pytest.mark.parametrize("value", [1024.5, 1e300], ids=["fraction", "huge"])
def test_a_float_that_is_no_integer_is_refused_by_both(
    ai_ops_crds: ControlPlane, namespace: str, value: float
) -> None:
    doc = model_with_max_tokens("fraction", value)
    answer = dry_run_create(ai_ops_crds, doc, namespace, "Strict")
    assert answer.status == 422
    assert answer.problem_paths() == our_paths(doc) == {"spec.maxTokens"}


def mcp_server_with_status(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"url": "http://mcp:8000/mcp"},
        "status": status,
    }


def test_an_integral_float_in_a_status_integer_is_taken_as_that_integer(
    ai_ops_crds: ControlPlane, namespace: str
) -> None:
    doc = mcp_server_with_status("float-failures", {"consecutiveFailures": 2147483647.0})
    answer = status_write(ai_ops_crds, doc, namespace)
    assert answer.ok, answer.message
    assert answer.body["status"]["consecutiveFailures"] == 2147483647
    assert validate_resource(doc) == []
    assert apply_defaults(doc)["status"] == answer.body["status"]


# The server's integer check takes a float up to 2**53 - 1 (beyond it a float is no exact integer).
@pytest.mark.parametrize(
    ("value", "accepted"), [(float(2**53 - 1), True), (float(2**53), False)], ids=["largest-exact", "2^53"]
)
def test_integral_floats_at_the_edge_of_exactness_are_judged_alike(
    ai_ops_crds: ControlPlane, namespace: str, value: float, accepted: bool
) -> None:
    doc = mcp_server_with_status(f"edge-{'ok' if accepted else 'no'}", {"observedGeneration": value})
    answer = status_write(ai_ops_crds, doc, namespace)
    assert answer.ok is accepted, answer.message
    assert our_paths(doc) == (set() if accepted else {"status.observedGeneration"})
    if accepted:
        assert (
            answer.body["status"]["observedGeneration"]
            == 2**53 - 1
            == apply_defaults(doc)["status"]["observedGeneration"]
        )


# --- status ------------------------------------------------------------------------------------------


def integer_bounds(schema: dict[str, Any], path: str = "") -> dict[str, float]:
    found = {}
    if schema.get("type") == "integer":
        found.update({f"{path} {key}": schema[key] for key in ("minimum", "maximum") if key in schema})
    for name, child in schema.get("properties", {}).items():
        found |= integer_bounds(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        found |= integer_bounds(schema["items"], f"{path}[]")
    return found


def test_no_integer_bound_is_beyond_exact_floats() -> None:
    # The server holds a bound as a float64 and refuses every value, 1 included, against one that is no
    # exact integer (such as 2**63 - 1): "Maximum boundary value must be of type integer".
    for crd in crd_documents():
        bounds = integer_bounds(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        assert bounds
        too_large = {where: bound for where, bound in bounds.items() if abs(bound) > 2**53 - 1}
        assert too_large == {}, crd["metadata"]["name"]


@pytest.mark.parametrize("kind", list(RESOURCES))
def test_the_status_the_operator_writes_is_stored_through_the_status_subresource(
    ai_ops_crds: ControlPlane, namespace: str, kind: str
) -> None:
    (label, doc) = next((label, doc) for label, doc in AI_OPS_EXAMPLES if doc["kind"] == kind)
    condition = Condition(
        type="Ready",
        status=ConditionStatus.FALSE,
        reason="SecretNotFound",
        message="Secret 'key' not found",
        last_transition_time="2026-01-10T09:12:03Z",
        observed_generation=1,
    )
    status = RESOURCES[kind].status_model.model_validate({"observedGeneration": 1, "conditions": [condition]})
    written = {**doc, "status": status.model_dump(by_alias=True, exclude_none=True, mode="json")}
    assert validate_resource(written) == []
    answer = status_write(ai_ops_crds, written, namespace)
    assert answer.ok, f"{label}: {answer.message}"
    assert answer.body["status"] == written["status"]
    assert answer.body["metadata"]["generation"] == 1
