"""``examples/`` is ready to apply, and the spec models agree with the CRDs on good and broken manifests.

The spec models (pydantic) and the CRDs (generated from them, checked by the API server) must accept and
refuse the same things: every example is accepted by both, and every broken manifest whose mistake lies
in ``spec`` is refused by both, at the same place.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from ai_ops_api.agent_config import parse_agent_config, parse_runbook_shard
from ai_ops_api.middleware import parse_middleware_config
from ai_ops_api.runbooks import count_sections
from ai_ops_api.specs import (
    PROVIDERS_NEEDING_API_KEY,
    RESOURCES,
    USABLE_SECRET_LABEL,
    USABLE_SECRET_LABEL_VALUE,
    ResourceKind,
)
from ai_ops_operator.core.manifests import LoadedDocument, load_manifests
from ai_ops_operator.core.validation import apply_defaults, validate_resource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BROKEN = ROOT / "tests" / "fixtures" / "broken"
AI_OPS = Path(sys.executable).with_name("ai-ops")
SCENARIOS = ["local", "openai", "azure-openai", "middleware-chain", "mcp-servers", "runbooks", "incidents"]


def documents(folder: Path) -> list[LoadedDocument]:
    return load_manifests([folder])


def of_kind(docs: list[LoadedDocument], kind: str) -> dict[str, dict[str, Any]]:
    return {d.obj["metadata"]["name"]: d.obj for d in docs if d.obj.get("kind") == kind}


def example_resources() -> list[LoadedDocument]:
    return [d for d in documents(EXAMPLES) if d.obj.get("kind") in RESOURCES]


def resource_id(doc: LoadedDocument) -> str:
    return f"{Path(doc.source).relative_to(EXAMPLES)}:{doc.index}"


def test_every_scenario_has_a_folder_and_nothing_else_is_there() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(SCENARIOS)


def test_ai_ops_validate_accepts_the_examples() -> None:
    result = subprocess.run(
        [str(AI_OPS), "validate", str(EXAMPLES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(example_resources())
    secrets = sum(1 for d in documents(EXAMPLES) if d.obj.get("kind") == "Secret")
    assert result.stdout == (
        f"{count} ai-ops resources: {count} valid, 0 invalid; {secrets} documents of other kinds skipped\n"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_layout_is_namespace_free(scenario: str) -> None:
    """`kubectl apply -n NS -f examples/X` must work for any NS."""
    for doc in documents(EXAMPLES / scenario):
        assert "namespace" not in doc.obj["metadata"], doc.location


@pytest.mark.parametrize("doc", example_resources(), ids=resource_id)
def test_spec_models_accept_every_example(doc: LoadedDocument) -> None:
    resource = RESOURCES[doc.obj["kind"]]
    resource.parse_spec(doc.obj["spec"])
    resource.parse_spec(apply_defaults(doc.obj)["spec"])


def _secret_keys(docs: list[LoadedDocument]) -> dict[str, set[str]]:
    return {
        name: set(secret.get("stringData", {})) | set(secret.get("data", {}))
        for name, secret in of_kind(docs, "Secret").items()
    }


def _secret_refs(value: Any) -> Iterator[dict[str, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("apiKeySecretRef", "secretKeyRef"):
                yield child
            else:
                yield from _secret_refs(child)
    elif isinstance(value, list):
        for child in value:
            yield from _secret_refs(child)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_reference_resolves_inside_its_folder(scenario: str) -> None:
    docs = documents(EXAMPLES / scenario)
    providers, models = of_kind(docs, "LLMProvider"), of_kind(docs, "LLMModel")
    secrets = _secret_keys(docs)
    for model in models.values():
        assert model["spec"]["providerRef"]["name"] in providers
    for middleware in of_kind(docs, "LLMMiddleware").values():
        assert middleware["spec"]["modelRef"]["name"] in models
        config = parse_middleware_config(middleware["spec"]["type"], middleware["spec"].get("config"))
        assert set(config.referenced_models()) <= set(models)
    for doc in docs:
        for ref in _secret_refs(doc.obj.get("spec")):
            assert ref["key"] in secrets.get(ref["name"], set()), (doc.location, ref)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_models_that_need_a_key_have_one_and_there_is_one_default(scenario: str) -> None:
    docs = documents(EXAMPLES / scenario)
    providers, models = of_kind(docs, "LLMProvider"), of_kind(docs, "LLMModel")
    for model in models.values():
        provider = providers[model["spec"]["providerRef"]["name"]]["spec"]
        if provider["type"] in PROVIDERS_NEEDING_API_KEY:
            assert "apiKeySecretRef" in model["spec"] or "apiKeySecretRef" in provider
    if models:
        assert sum(bool(m["spec"].get("default")) for m in models.values()) == 1


def test_secrets_in_examples_are_marked_placeholders() -> None:
    for doc in documents(EXAMPLES):
        if doc.obj.get("kind") != "Secret":
            continue
        assert "PLACEHOLDER" in Path(doc.source).read_text(), doc.source
        assert "data" not in doc.obj, "placeholders are readable stringData"
        for value in doc.obj["stringData"].values():
            assert "REPLACE-ME" in value, doc.location


def test_every_example_secret_carries_the_usable_label() -> None:
    """Without ai-ops.dev/usable: "true" (a string: YAML's bare true is no label value) every resource
    referencing the Secret is SecretNotUsable, so an applied example would never be Ready."""
    secrets = [d for d in documents(EXAMPLES) if d.obj.get("kind") == "Secret"]
    referenced = {ref["name"] for d in documents(EXAMPLES) for ref in _secret_refs(d.obj.get("spec"))}
    assert referenced and referenced <= {d.obj["metadata"]["name"] for d in secrets}
    for doc in secrets:
        labels = doc.obj["metadata"].get("labels") or {}
        assert labels.get(USABLE_SECRET_LABEL) == USABLE_SECRET_LABEL_VALUE, doc.location


def test_other_kinds_in_examples_are_valid_kubernetes_objects() -> None:
    others = [d for d in documents(EXAMPLES) if d.obj.get("kind") not in RESOURCES]
    assert others
    for doc in others:
        kubernetes_validate.validate(doc.obj, "1.33", strict=True)


def test_local_example_is_ollama_on_localhost_with_a_default_model() -> None:
    docs = documents(EXAMPLES / "local")
    (provider,) = of_kind(docs, "LLMProvider").values()
    assert provider["spec"]["type"] == "ollama"
    assert provider["spec"]["baseURL"] == "http://localhost:11434/v1"
    assert any(m["spec"].get("default") for m in of_kind(docs, "LLMModel").values())


def test_cloud_examples_use_their_provider_types() -> None:
    assert {p["spec"]["type"] for p in of_kind(documents(EXAMPLES / "openai"), "LLMProvider").values()} == {
        "openai"
    }
    azure = of_kind(documents(EXAMPLES / "azure-openai"), "LLMProvider")
    assert {p["spec"]["type"] for p in azure.values()} == {"azure_openai"}
    assert all(p["spec"]["config"].get("apiVersion") for p in azure.values())


def test_middleware_chain_example_covers_the_asked_types() -> None:
    middlewares = of_kind(documents(EXAMPLES / "middleware-chain"), "LLMMiddleware").values()
    types = {m["spec"]["type"] for m in middlewares}
    assert {"model_retry", "model_fallback", "pii", "model_call_limit", "tool_call_limit", "logging"} <= types


def test_mcp_example_has_streamable_http_and_a_bearer_header_from_a_secret() -> None:
    servers = of_kind(documents(EXAMPLES / "mcp-servers"), "MCPServer").values()
    assert any(s["spec"].get("transport", "streamable_http") == "streamable_http" for s in servers)
    headers = [h for s in servers for h in s["spec"].get("headers", [])]
    assert any(h["name"] == "Authorization" and "secretKeyRef" in h.get("valueFrom", {}) for h in headers)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_render_gives_a_valid_agent_config_without_secret_values(scenario: str, tmp_path: Path) -> None:
    folder = EXAMPLES / scenario
    output = tmp_path / "agent-config.json"
    result = subprocess.run(
        [str(AI_OPS), "render", str(folder), "--namespace", "demo", "-o", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "every example resource is usable"
    text = output.read_text()
    config = parse_agent_config(text)
    docs = documents(folder)
    assert {m.name for m in config.models} == set(of_kind(docs, "LLMModel"))
    in_service = {n for n, s in of_kind(docs, "MCPServer").items() if not s["spec"].get("maintenance")}
    assert {s.name for s in config.mcp_servers} == in_service
    shards = [
        parse_runbook_shard((tmp_path / f"{ref.name}.json").read_text()) for ref in config.runbook_shards
    ]
    assert [s.checksum() for s in shards] == [ref.checksum for ref in config.runbook_shards]
    assert sorted(e.name for s in shards for e in s.runbooks) == sorted(of_kind(docs, "Runbook"))
    for secret in of_kind(docs, "Secret").values():
        for value in secret["stringData"].values():
            assert value not in text
    json.loads(text)


def test_runbook_examples_have_titles_matches_and_sections() -> None:
    runbooks = of_kind(documents(EXAMPLES / "runbooks"), "Runbook")
    assert len(runbooks) >= 50
    for name, obj in runbooks.items():
        spec = obj["spec"]
        assert spec["title"] and spec.get("description"), name
        assert count_sections(spec["content"]) >= 3, name
    assert sum(bool(o["spec"].get("match", {}).get("alertNames")) for o in runbooks.values()) >= 40


# --- broken manifests: the spec models refuse them too ------------------------------------------


def _wire_path(loc: tuple[int | str, ...]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def broken_spec_cases() -> list[Path]:
    return [f for f in sorted(BROKEN.glob("*.yaml")) if "# spec-model: skip" not in f.read_text()]


def test_most_of_the_corpus_is_checked_against_the_spec_models() -> None:
    assert len(broken_spec_cases()) >= 50


@pytest.mark.parametrize("file", broken_spec_cases(), ids=lambda f: f.stem)
def test_spec_models_refuse_the_broken_manifest_at_the_same_place(file: Path) -> None:
    expect = file.read_text().splitlines()[0].removeprefix("# expect: ")
    path, fragment = expect.split(": ", 1)
    obj = yaml.safe_load(file.read_text())
    resource: ResourceKind = RESOURCES[obj["kind"]]
    with pytest.raises(pydantic.ValidationError) as caught:
        resource.parse_spec(apply_defaults(obj)["spec"])
    errors = [(_wire_path(err["loc"]), err["msg"]) for err in caught.value.errors()]
    # Exactly at the field, or on an enclosing object whose own check (the CEL rule's twin) says the same.
    assert any(p == path or (_within(path, p) and fragment in msg) for p, msg in errors), (expect, errors)
    # And validate finds it too (the CLI test checks the exact output).
    assert any(str(problem).startswith(f"{path}: ") for problem in validate_resource(obj))
