"""The manifest loader shared by ``ai-ops validate`` and ``ai-ops render``: files, folders, provenance (down
to the line and column of a field), errors, and the resources of one namespace."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ai_ops_operator.core.manifests import (
    LoadedDocument,
    ManifestError,
    ManifestResources,
    load_manifests,
    parse_documents,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_multi_document_file_keeps_document_indexes(tmp_path: Path) -> None:
    file = write(
        tmp_path / "all.yaml",
        "# leading comment\nkind: A\n---\n---\n# only a comment\n---\nkind: B\n...\n---\nkind: C\n",
    )
    docs = load_manifests([file])
    # Empty documents are dropped but still counted, so an index points at the right `---` section.
    assert [(d.index, d.obj["kind"]) for d in docs] == [(0, "A"), (3, "B"), (4, "C")]
    assert {d.source for d in docs} == {str(file)}
    # The location is where the document starts, by line and column (not its index).
    assert docs[1].location == f"{file}:7:1"


def test_folder_is_searched_recursively_in_sorted_order_for_manifest_suffixes(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "kind: B\n")
    write(tmp_path / "a" / "z.yml", "kind: Z\n")
    write(tmp_path / "a" / "deeper" / "x.json", '{"kind": "X"}')
    write(tmp_path / "README.md", "kind: NotAManifest\n")
    write(tmp_path / "notes.txt", "kind: NotAManifest\n")
    docs = load_manifests([tmp_path])
    assert [(Path(d.source).relative_to(tmp_path).as_posix(), d.obj["kind"]) for d in docs] == [
        ("a/deeper/x.json", "X"),
        ("a/z.yml", "Z"),
        ("b.yaml", "B"),
    ]


def test_hidden_files_and_folders_inside_a_folder_are_left_out(tmp_path: Path) -> None:
    write(tmp_path / ".venv" / "lib" / "x.yaml", "kind: Hidden\n")
    write(tmp_path / ".backup.yaml", "kind: Hidden\n")
    write(tmp_path / "app" / "a.yaml", "kind: A\n")
    assert [d.obj["kind"] for d in load_manifests([tmp_path])] == ["A"]
    # Named explicitly, a hidden file is read.
    assert [d.obj["kind"] for d in load_manifests([tmp_path / ".backup.yaml"])] == ["Hidden"]


def test_a_named_file_is_read_whatever_its_suffix(tmp_path: Path) -> None:
    file = write(tmp_path / "manifest.txt", "kind: A\n")
    assert [d.obj for d in load_manifests([file])] == [{"kind": "A"}]


def test_several_paths_are_read_in_the_order_given(tmp_path: Path) -> None:
    second = write(tmp_path / "1.yaml", "kind: Second\n")
    first = write(tmp_path / "2.yaml", "kind: First\n")
    assert [d.obj["kind"] for d in load_manifests([first, second])] == ["First", "Second"]


def test_a_v1_list_is_unpacked_into_its_items(tmp_path: Path) -> None:
    file = write(
        tmp_path / "export.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- kind: A\n- kind: B\n---\nkind: C\n",
    )
    docs = load_manifests([file])
    assert [(d.index, d.item, d.obj["kind"]) for d in docs] == [(0, 0, "A"), (0, 1, "B"), (1, None, "C")]
    assert docs[1].location == f"{file}:5:3"


def test_timestamps_stay_strings_as_the_api_server_has_them() -> None:
    (doc,) = parse_documents("metadata:\n  creationTimestamp: 2024-05-01T10:00:00Z\n  day: 2024-05-01\n", "x")
    assert doc.obj["metadata"] == {"creationTimestamp": "2024-05-01T10:00:00Z", "day": "2024-05-01"}


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: no such file or folder$"):
        load_manifests([tmp_path / "nope.yaml"])


def test_folder_without_manifests_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "README.md", "# nothing here\n")
    with pytest.raises(ManifestError, match=r"folder holds no \.yaml, \.yml, \.json files"):
        load_manifests([tmp_path])


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    file = write(tmp_path / "bad.yaml", "kind: A\n---\nspec:\n  list: [1, 2\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([file])
    message = str(caught.value)
    assert message.startswith(f"{file}:5:1: invalid YAML: ")
    assert "flow sequence" in message


def test_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    file = write(tmp_path / "tabs.yaml", "spec:\n\ttype: ollama\n")
    with pytest.raises(
        ManifestError, match=r"tabs\.yaml:2:1: invalid YAML: .*'\\t' that cannot start any token"
    ):
        load_manifests([file])


def test_duplicate_key_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    file = write(tmp_path / "dup.yaml", "spec:\n  model: a\n  default: true\n  model: b\n")
    with pytest.raises(ManifestError, match=r"dup\.yaml:4:3: .*duplicate key 'model' \(first at line 2\)"):
        load_manifests([file])


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "blob.yaml"
    file.write_bytes(b"kind: A\n\xff\xfe\x00")
    with pytest.raises(ManifestError, match=r"blob\.yaml: not a UTF-8 text file"):
        load_manifests([file])


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    file = write(tmp_path / "secret.yaml", "kind: A\n")
    file.chmod(0)
    try:
        if _can_read(file):
            pytest.skip("running as a user that can read any file (root)")
        with pytest.raises(ManifestError, match=r"secret\.yaml: cannot read: Permission denied"):
            load_manifests([file])
    finally:
        file.chmod(0o644)


def _can_read(path: Path) -> bool:
    try:
        path.read_bytes()
    except PermissionError:
        return False
    return True


def test_stdin_is_read_for_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: A\n---\nkind: B\n"))
    assert load_manifests(["-"]) == [
        LoadedDocument("<stdin>", 0, {"kind": "A"}),
        LoadedDocument("<stdin>", 1, {"kind": "B"}),
    ]


POSITIONED = """\
# a comment line
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata: {name: tools}
spec:
  url: http://tools:8000/mcp
  healthCheck:
    intervalSeconds: 10
  headers:
  - name: X-Token
    value: abc
  -   name: X-Other
      valueFrom: {secretKeyRef: {name: s, key: k}}
"""


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("", (2, 1)),
        ("spec", (5, 1)),
        ("spec.healthCheck.intervalSeconds", (8, 5)),
        ("metadata.name", (4, 12)),  # inside a flow mapping
        ("spec.headers[0]", (10, 5)),  # a list item: the item itself
        ("spec.headers[1].name", (12, 7)),
        ("spec.headers[1].valueFrom.secretKeyRef.key", (13, 43)),
        ("spec.headers.1.name", (12, 7)),  # pydantic's form of an index
        # Not written: the nearest ancestor that is.
        ("spec.healthCheck.timeoutSeconds", (7, 3)),
        ("spec.toolFilter.include[0]", (5, 1)),
        ("spec.headers[5].name", (9, 3)),
        ("status.health", (2, 1)),
    ],
)
def test_position_of_a_field_is_the_line_and_column_of_its_key(path: str, position: tuple[int, int]) -> None:
    (doc,) = parse_documents(POSITIONED, "tools.yaml")
    assert doc.position(path) == position
    assert doc.where(path) == f"tools.yaml:{position[0]}:{position[1]}"


def test_positions_count_lines_across_documents_of_a_file() -> None:
    docs = parse_documents("kind: A\n---\n\n# gap\nkind: B\nspec:\n  x: 1\n", "two.yaml")
    assert [d.where("spec.x") for d in docs] == ["two.yaml:1:1", "two.yaml:7:3"]


def test_resources_of_a_namespace_keep_the_later_of_two_with_one_name() -> None:
    provider = (
        "apiVersion: ai-ops.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: p}}\nspec: {{type: {t}}}\n"
    )
    docs = parse_documents(
        "---\n".join([provider.format(t="ollama"), "kind: Secret\n", provider.format(t="openai")]), "p.yaml"
    )
    resources = ManifestResources.of(docs)
    assert [(a.location, b.location) for a, b in resources.duplicates] == [("p.yaml:1:1", "p.yaml:8:1")]
    snapshot = resources.snapshot("team", allow_loopback=True)
    assert (snapshot.namespace, snapshot.allow_loopback) == ("team", True)
    assert snapshot.providers["p"]["spec"] == {"type": "openai"}
    assert (snapshot.models, snapshot.secrets, snapshot.health) == ({}, None, None)
