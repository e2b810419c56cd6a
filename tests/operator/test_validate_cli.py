"""``ai-ops validate``: the broken-manifest corpus, the output format, exit codes and unreadable input,
and the rules across resources (what ``ai-ops render`` would leave out).

Each file of ``tests/fixtures/broken`` holds one mistake and declares, in its first lines, the problem
validate must report and where:

    # expect: FIELD.PATH: MESSAGE FRAGMENT
    # at: LINE:COLUMN

(the path exact, the message containing the fragment, the line and column those of the field's key in
the file, from 1). ``# severity: warning`` marks a problem that only ``--strict`` fails. The corpus runs
through the real CLI entry point in-process (fast) and once through the installed console script (the
real process, exit status and all).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_ops_api.specs import RESOURCES
from ai_ops_cli import main
from ai_ops_operator.core.validation import schema_of

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken"
AI_OPS = Path(sys.executable).with_name("ai-ops")
LINE_RE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<severity>warning: )?"
    r"(?P<label>[^:]+/[^:]*): (?P<path>[^ :]*): (?P<message>.+)$"
)


@dataclass(frozen=True)
class BrokenCase:
    file: Path
    path: str
    fragment: str
    line: int
    column: int
    warning: bool
    spec_model_skip: str | None

    @property
    def id(self) -> str:
        return self.file.stem

    def matches(self, problem: re.Match[str]) -> bool:
        return (
            problem["file"] == str(self.file)
            and (int(problem["line"]), int(problem["column"])) == (self.line, self.column)
            and bool(problem["severity"]) == self.warning
            and problem["path"] == self.path
            and self.fragment in problem["message"]
        )


def broken_cases() -> list[BrokenCase]:
    cases = []
    for file in sorted(BROKEN.glob("*.yaml")):
        header = file.read_text().splitlines()
        match = re.match(r"^# expect: (?P<path>[^ ]*?): (?P<fragment>.+)$", header[0])
        assert match, f"{file.name}: first line must be '# expect: PATH: MESSAGE FRAGMENT'"
        at = re.match(r"^# at: (?P<line>\d+):(?P<column>\d+)$", header[1])
        assert at, f"{file.name}: second line must be '# at: LINE:COLUMN'"
        skip = next(
            (line.removeprefix("# spec-model: skip") for line in header if line.startswith("# spec-model:")),
            None,
        )
        warning = any(line.startswith("# severity: warning") for line in header)
        cases.append(
            BrokenCase(
                file, match["path"], match["fragment"], int(at["line"]), int(at["column"]), warning, skip
            )
        )
    return cases


CASES = broken_cases()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def problem_lines(out: str) -> list[re.Match[str]]:
    lines = out.splitlines()
    matches = [LINE_RE.match(line) for line in lines[:-1]]
    assert all(matches), f"every line but the summary is a problem line:\n{out}"
    return [m for m in matches if m]


def errors(out: str) -> list[re.Match[str]]:
    return [p for p in problem_lines(out) if not p["severity"]]


def test_corpus_is_large_and_each_file_holds_one_resource() -> None:
    assert len(CASES) >= 50
    for case in CASES:
        docs = [d for d in yaml.safe_load_all(case.file.read_text()) if d is not None]
        assert len(docs) == 1, case.file.name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_manifest_is_reported_at_its_line_and_column_with_the_expected_message(
    case: BrokenCase, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, str(case.file))
    assert err == ""
    problems = problem_lines(out)
    assert all(p["file"] == str(case.file) for p in problems)
    assert any(case.matches(p) for p in problems), (
        f"expected {case.file}:{case.line}:{case.column}: ... {case.path}: ...{case.fragment}... in\n{out}"
    )
    if case.warning:
        assert code == 0, out
        assert out.splitlines()[-1] == (
            "1 ai-ops resource: 1 valid, 0 invalid, 1 warning; 0 documents of other kinds skipped"
        )
        assert run_cli(capsys, "--strict", str(case.file))[0] == 1
    else:
        assert code == 1, out
        assert out.splitlines()[-1] == (
            "1 ai-ops resource: 0 valid, 1 invalid; 0 documents of other kinds skipped"
        )


def test_the_corpus_holds_the_typical_mistakes_with_their_hints() -> None:
    """A misspelt field or enum value gets a "did you mean"; a refused URL and a dangling reference too."""
    by_id = {c.id: c for c in CASES}
    assert "did you mean healthCheck?" in by_id["mcp-healthcheck-misspelt"].fragment
    assert "did you mean openai_compatible?" in by_id["provider-type-dash-for-underscore"].fragment
    assert "did you mean healthCheck.intervalSeconds?" in by_id["mcp-health-field-at-wrong-level"].fragment
    assert "'htps' is not allowed" in by_id["mcp-url-scheme-typo"].fragment
    assert by_id["model-provider-ref-dangling"].warning
    hinted = [c for c in CASES if "did you mean" in c.fragment]
    assert len(hinted) >= 10


def test_every_cel_rule_is_exercised_by_the_corpus() -> None:
    # Transition rules (oldSelf) hold on updates only, which a file never is.
    messages = {
        rule["message"]
        for kind in RESOURCES
        for rule in _cel_rules(schema_of(kind))
        if "oldSelf" not in rule["rule"]
    }
    assert len(messages) >= 6
    covered = {m for m in messages if any(m.startswith(c.fragment) or c.fragment in m for c in CASES)}
    assert covered == messages


def _cel_rules(schema: dict[str, Any]) -> list[dict[str, str]]:
    rules = list(schema.get("x-kubernetes-validations", ()))
    children = list(schema.get("properties", {}).values())
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    for child in children:
        rules += _cel_rules(child)
    return rules


def test_every_enum_and_every_kind_is_exercised_by_the_corpus() -> None:
    fragments = " ".join(f"{c.path}: {c.fragment}" for c in CASES)
    for path in ("spec.type", "spec.transport", "spec.scope", "status.health"):
        assert f"{path}: must be one of" in fragments
    kinds = {yaml.safe_load(c.file.read_text()).get("kind") for c in CASES}
    assert set(RESOURCES) <= kinds


def test_corpus_through_the_console_script() -> None:
    result = subprocess.run(
        [str(AI_OPS), "validate", "--strict", str(BROKEN)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr == ""
    problems = problem_lines(result.stdout)
    assert {Path(m["file"]).name for m in problems} == {c.file.name for c in CASES}
    for case in CASES:
        assert any(case.matches(p) for p in problems), case.id
    warnings = sum(c.warning for c in CASES)
    assert result.stdout.splitlines()[-1] == (
        f"{len(CASES)} ai-ops resources: {warnings} valid, {len(CASES) - warnings} invalid, "
        f"{warnings} warning{'' if warnings == 1 else 's'}; 0 documents of other kinds skipped"
    )


# --- output, skipped kinds, exit codes ----------------------------------------------------------

VALID_PROVIDER = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMProvider
metadata:
  name: ollama
spec:
  type: ollama
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: key
stringData:
  key: value
"""
BROKEN_MODEL = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMModel
metadata:
  name: gpt
spec:
  providerRef: {name: openai}
  model: gpt-4o
  temperature: 3
  timeoutSeconds: 0
"""


def test_valid_documents_and_other_kinds_give_exit_0_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "all.yaml").write_text(f"{VALID_PROVIDER}---\n{SECRET}---\napiVersion: v1\nkind: Namespace\n")
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 0
    assert out == "1 ai-ops resource: 1 valid, 0 invalid; 2 documents of other kinds skipped\n"


def test_every_problem_of_a_resource_gets_a_line_with_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "models.yaml"
    file.write_text(f"{VALID_PROVIDER}---\n{SECRET}---\n{BROKEN_MODEL}")
    code, out, _ = run_cli(capsys, str(file))
    assert code == 1
    # The third document starts on line 15; temperature is its 8th line, indented by two.
    assert out.splitlines() == [
        f"{file}:22:3: LLMModel/gpt: spec.temperature: 3 is greater than the maximum of 2",
        f"{file}:23:3: LLMModel/gpt: spec.timeoutSeconds: 0 is less than the minimum of 1",
        "2 ai-ops resources: 1 valid, 1 invalid; 1 document of other kinds skipped",
    ]


def test_a_missing_field_is_reported_at_its_nearest_written_ancestor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "model.yaml"
    file.write_text(
        "apiVersion: ai-ops.dev/v1alpha1\nkind: LLMModel\nmetadata: {name: m}\nspec:\n"
        "  model: gpt-4o\n  providerRef:\n    nme: openai\n"
    )
    code, out, _ = run_cli(capsys, str(file))
    assert code == 1
    assert out.splitlines()[:2] == [
        f"{file}:6:3: LLMModel/m: spec.providerRef.name: is required",
        f"{file}:7:5: LLMModel/m: spec.providerRef.nme: unknown field; did you mean name?",
    ]


def test_an_unknown_field_like_no_allowed_one_gets_no_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(VALID_PROVIDER + "  colour: blue\n")
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    assert out.splitlines()[0].endswith(":7:3: LLMProvider/ollama: spec.colour: unknown field")


def test_misspelt_api_version_of_an_ai_ops_kind_is_reported_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(VALID_PROVIDER.replace("ai-ops.dev/v1alpha1", "ai-ops.dev/v1beta1"))
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    assert "LLMProvider/ollama: apiVersion: must be ai-ops.dev/v1alpha1, not 'ai-ops.dev/v1beta1'" in out


def test_a_document_that_is_not_an_object_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "odd.yaml").write_text("- just\n- a list\n---\nname: no kind\n")
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert "odd.yaml:1:1: ?: document is not a Kubernetes object" in lines[0]
    assert (
        "odd.yaml:4:1: ?/?: document is not a Kubernetes object: apiVersion and kind are required" in lines[1]
    )
    assert lines[2] == "2 ai-ops resources: 0 valid, 2 invalid; 0 documents of other kinds skipped"


def test_resources_exported_from_a_cluster_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubectl get -o yaml` output: a List, server-set metadata, a status written by the operator."""
    exported = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "ai-ops.dev/v1alpha1",
                "kind": "MCPServer",
                "metadata": {
                    "name": "tools",
                    "namespace": "ops",
                    "uid": "3f1c",
                    "resourceVersion": "42",
                    "generation": 2,
                    "creationTimestamp": "2024-05-01T10:00:00Z",
                },
                "spec": {"url": "http://tools:8000/mcp"},
                "status": {
                    "observedGeneration": 2,
                    "health": "Healthy",
                    "tools": {"count": 2, "names": ["a", "b"]},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Healthy",
                            "lastTransitionTime": "2024-05-01T10:00:05Z",
                        }
                    ],
                },
            }
        ],
    }
    (tmp_path / "export.yaml").write_text(
        yaml.safe_dump(exported).replace("'2024-05-01T10:00:00Z'", "2024-05-01T10:00:00Z")
    )
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert (code, out) == (0, "1 ai-ops resource: 1 valid, 0 invalid; 0 documents of other kinds skipped\n")


def test_middleware_config_is_checked_against_its_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mw.yaml").write_text(
        "apiVersion: ai-ops.dev/v1alpha1\nkind: LLMMiddleware\nmetadata: {name: retry}\n"
        "spec: {modelRef: {name: m}, type: model_retry, config: {maxRetries: 11}}\n"
    )
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    assert "LLMMiddleware/retry: spec.config.maxRetries: Input should be less than or equal to 10" in out


def run_script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AI_OPS), *args], capture_output=True, text=True, input=stdin, check=False)


def test_missing_path_exits_2_with_a_clear_message_and_no_traceback(tmp_path: Path) -> None:
    result = run_script("validate", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"ai-ops validate: {tmp_path / 'nowhere.yaml'}: no such file or folder\n"


def test_yaml_syntax_error_exits_2_with_file_and_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID_PROVIDER + "---\nspec:\n  type: [ollama\n")
    (tmp_path / "good.yaml").write_text(VALID_PROVIDER)
    result = run_script("validate", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"ai-ops validate: {bad}:10:1: invalid YAML: ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_stdin(tmp_path: Path) -> None:
    result = run_script("validate", "-", stdin=BROKEN_MODEL)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "<stdin>:8:3: LLMModel/gpt: spec.temperature: 3 is greater than the maximum of 2"
    )


def test_no_path_is_a_usage_error() -> None:
    result = run_script("validate")
    assert result.returncode == 2
    assert "usage: ai-ops validate" in result.stderr
    assert "Traceback" not in result.stderr


# --- rules across documents: one model's whole middleware chain ----------------------------------

REPRODUCTION = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMModel
metadata: {name: m}
spec: {providerRef: {name: ollama}, model: llama3.1}
---
apiVersion: ai-ops.dev/v1alpha1
kind: LLMMiddleware
metadata: {name: fallback}
spec: {modelRef: {name: m}, type: model_fallback, critical: true, config: {models: [m]}}
---
apiVersion: ai-ops.dev/v1alpha1
kind: LLMMiddleware
metadata: {name: limit-a}
spec: {modelRef: {name: m}, type: model_call_limit, critical: true, config: {runLimit: 5}}
---
apiVersion: ai-ops.dev/v1alpha1
kind: LLMMiddleware
metadata: {name: limit-b}
spec: {modelRef: {name: m}, type: model_call_limit, critical: true, config: {runLimit: 3}}
"""


def test_chain_rules_are_checked_across_the_files_with_the_offending_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "provider.yaml").write_text(VALID_PROVIDER)
    (tmp_path / "model.yaml").write_text(REPRODUCTION)
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    lines = REPRODUCTION.splitlines()
    fallback_at = (9, lines[8].index("[m]") + 2)
    limit_b_type_at = (19, lines[18].index("type:") + 1)
    problems = problem_lines(out)
    assert [(p["label"], p["path"], (int(p["line"]), int(p["column"]))) for p in errors(out)] == [
        ("LLMMiddleware/fallback", "spec.config.models[0]", fallback_at),
        ("LLMMiddleware/limit-b", "spec.type", limit_b_type_at),
    ]
    assert problems[1]["message"].startswith("SelfFallback: the fallback models include the model itself")
    assert problems[2]["message"].startswith("DuplicateCounter: 'limit-a' already limits model calls")
    # And, as render would, the model those critical middleware belong to is left out.
    assert (problems[0]["severity"], problems[0]["label"], problems[0]["message"]) == (
        "warning: ",
        "LLMModel/m",
        "CriticalMiddlewareNotReady: critical middleware not ready: fallback (SelfFallback), limit-b (DuplicateCounter)",
    )
    assert out.splitlines()[-1] == (
        "5 ai-ops resources: 3 valid, 2 invalid, 1 warning; 0 documents of other kinds skipped"
    )


def test_chain_rules_apply_per_namespace_and_only_to_active_chains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limit = (
        "apiVersion: ai-ops.dev/v1alpha1\nkind: LLMMiddleware\nmetadata: {{name: {name}, namespace: {ns}}}\n"
    )
    limit += (
        "spec: {{modelRef: {{name: m}}, type: tool_call_limit, active: {active}, config: {{runLimit: 1}}}}\n"
    )
    docs = [
        limit.format(name="a", ns="team-a", active="true"),
        limit.format(name="b", ns="team-b", active="true"),
        limit.format(name="c", ns="team-a", active="false"),
    ]
    (tmp_path / "limits.yaml").write_text("---\n".join(docs))
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 0
    assert errors(out) == []
    (tmp_path / "more.yaml").write_text(limit.format(name="d", ns="team-b", active="true"))
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 1
    assert [(p["label"], p["path"]) for p in errors(out)] == [("LLMMiddleware/d", "spec.config.toolName")]


# --- rules across resources: what render would leave out, as warnings ------------------------------

MODEL = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMModel
metadata:
  name: gpt
spec:
  providerRef:
    name: ollama
  model: llama3.1
"""
FALLBACK = """\
apiVersion: ai-ops.dev/v1alpha1
kind: LLMMiddleware
metadata:
  name: fallback
spec:
  modelRef: {name: gpt}
  type: model_fallback
  config:
    models:
    - gpt-small
"""


def test_a_dangling_reference_is_a_warning_at_the_reference_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "model.yaml"
    file.write_text(MODEL)
    code, out, _ = run_cli(capsys, str(file))
    assert (code, out.splitlines()) == (
        0,
        [
            f"{file}:7:5: warning: LLMModel/gpt: spec.providerRef.name: ProviderNotFound: "
            "LLMProvider 'ollama' not found",
            "1 ai-ops resource: 1 valid, 0 invalid, 1 warning; 0 documents of other kinds skipped",
        ],
    )
    code, strict_out, _ = run_cli(capsys, "--strict", str(file))
    assert (code, strict_out) == (1, out)


def test_a_misspelt_reference_gets_a_did_you_mean_from_the_names_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.yaml").write_text(MODEL.replace("name: ollama", "name: olama"))
    (tmp_path / "provider.yaml").write_text(VALID_PROVIDER)
    code, out, _ = run_cli(capsys, str(tmp_path))
    assert code == 0
    assert out.splitlines()[0].endswith(
        "model.yaml:7:5: warning: LLMModel/gpt: spec.providerRef.name: ProviderNotFound: "
        "LLMProvider 'olama' not found; did you mean ollama?"
    )


def test_references_resolve_across_the_files_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.yaml").write_text(MODEL)
    (tmp_path / "provider.yaml").write_text(VALID_PROVIDER)
    code, out, _ = run_cli(capsys, "--strict", str(tmp_path))
    assert (code, out) == (0, "2 ai-ops resources: 2 valid, 0 invalid; 0 documents of other kinds skipped\n")


def test_a_middleware_naming_a_missing_model_is_a_warning_at_that_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "all.yaml"
    file.write_text(f"{VALID_PROVIDER}---\n{MODEL}---\n{FALLBACK}")
    code, out, _ = run_cli(capsys, str(file))
    assert code == 0
    # FALLBACK starts on line 17; "- gpt-small" is its 10th line.
    assert out.splitlines()[0] == (
        f"{file}:26:7: warning: LLMMiddleware/fallback: spec.config.models[0]: ReferencedModelNotFound: "
        "LLMModel(s) not found: gpt-small"
    )


def test_references_do_not_cross_namespaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    in_namespace = "metadata:\n  namespace: {}\n "
    (tmp_path / "provider.yaml").write_text(VALID_PROVIDER.replace("metadata:\n ", in_namespace.format("a")))
    (tmp_path / "model.yaml").write_text(MODEL.replace("metadata:\n ", in_namespace.format("b")))
    code, out, _ = run_cli(capsys, "--strict", str(tmp_path))
    assert code == 1
    assert [(p["label"], p["message"]) for p in problem_lines(out)] == [
        ("LLMModel/gpt", "ProviderNotFound: LLMProvider 'ollama' not found")
    ]


def test_a_resource_defined_twice_warns_where_the_first_one_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(f"{VALID_PROVIDER}---\n{VALID_PROVIDER}")
    code, out, _ = run_cli(capsys, str(file))
    assert code == 0
    assert out.splitlines()[0] == (
        f"{file}:4:3: warning: LLMProvider/ollama: metadata.name: defined again at {file}:8:1, "
        "which is used instead"
    )


LOOPBACK_SERVER = """\
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {name: local}
spec:
  url: http://127.0.0.1:8000/mcp
"""


def test_a_loopback_url_is_an_error_unless_allowed_as_in_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(LOOPBACK_SERVER)
    code, out, _ = run_cli(capsys, str(file))
    assert code == 1
    assert out.splitlines()[0] == (
        f"{file}:5:3: MCPServer/local: spec.url: 127.0.0.1 is a loopback address (allowed only with "
        "--allow-loopback)"
    )
    assert run_cli(capsys, "--allow-loopback", "--strict", str(file))[0] == 0


@pytest.mark.parametrize(
    "manifests",
    [
        [MODEL],
        [MODEL, VALID_PROVIDER],
        [VALID_PROVIDER, MODEL, FALLBACK],
        [VALID_PROVIDER, MODEL, FALLBACK.replace("gpt-small", "gpt")],
        [VALID_PROVIDER, MODEL, FALLBACK.replace("{name: gpt}", "{name: gtp}")],
        [VALID_PROVIDER.replace("type: ollama", "type: ollama\n  enabled: false"), MODEL],
        [LOOPBACK_SERVER],
        [LOOPBACK_SERVER.replace("127.0.0.1", "tools.svc")],
    ],
    ids=lambda m: "+".join(yaml.safe_load(d)["metadata"]["name"] for d in m),
)
def test_validate_strict_passes_exactly_when_render_leaves_nothing_out(
    manifests: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for number, text in enumerate(manifests):
        (tmp_path / f"{number}.yaml").write_text(text)
    validated = run_cli(capsys, "--strict", str(tmp_path))[0]
    rendered = main(["render", str(tmp_path), "-o", str(tmp_path / "out.json")])
    capsys.readouterr()
    assert (validated, rendered) in ((0, 0), (1, 3))


def test_the_session_quoted_in_the_docs_is_true(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "docs" / "resources.md").read_text()
    session = text.split("$ cat broken.yaml\n", 1)[1].split("```", 1)[0]
    manifest, rest = session.split("$ ai-ops validate broken.yaml\n", 1)
    (tmp_path / "broken.yaml").write_text(manifest)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "broken.yaml")
    assert (code, out) == (1, rest)
