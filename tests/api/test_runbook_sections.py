"""The operator's section count (``ai_ops_api.runbooks``) agrees with the chat's split into sections.

The operator may not import the chat service, so the Markdown rules exist twice: here both judge every
example runbook and a few edge cases, with the chat's cutting of long sections switched off (a section
cut in parts is still one section).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai_ops_api.runbooks import OVERVIEW, count_sections, runbook_content_hash, section_headings
from chat_service.runbooks import documents
from chat_service.runbooks.documents import RunbookDocument, split_sections

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "runbooks"

EDGE_CASES = {
    "text before the first heading": "Read this first.\n\n## Steps\nDo it.\n",
    "a heading without text": "## Empty\n## Full\ntext\n",
    "headings in code fences": "## Steps\n```bash\n# a comment\n## not a heading\n```\n~~~\n# neither\n~~~\n",
    "closing hashes and spaces": "###   Diagnosis ##  \nlook\n",
    "no headings at all": "just text\n",
    "only whitespace under a heading": "## Steps\n   \n\t\n## Next\nx\n",
    "seven hashes is no heading": "####### seven\ntext\n",
    "no space after the hashes": "##nospace\ntext\n",
}


def chat_headings(content: str) -> list[str]:
    doc = RunbookDocument(name="r", title="T", content=content)
    sections = split_sections(doc)
    # The chat always keeps an Overview (description and tags go there); an empty one is no section of
    # the content.
    return [s.heading for s in sections if not (s.heading == OVERVIEW and not s.text)]


def example_contents() -> dict[str, str]:
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["metadata"]["name"]] = doc["spec"]["content"]
    return found


@pytest.fixture(autouse=True)
def _no_cutting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_SECTION_CHARS", 10**9)


@pytest.mark.parametrize("name", sorted(example_contents()))
def test_the_example_runbooks_have_the_same_sections_on_both_sides(name: str) -> None:
    content = example_contents()[name]
    assert section_headings(content) == chat_headings(content)
    assert count_sections(content) == len(chat_headings(content)) >= 3


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_have_the_same_sections_on_both_sides(case: str) -> None:
    assert section_headings(EDGE_CASES[case]) == chat_headings(EDGE_CASES[case])


def test_section_headings_of_a_small_runbook() -> None:
    assert section_headings(EDGE_CASES["headings in code fences"]) == ["Steps"]
    assert section_headings(EDGE_CASES["a heading without text"]) == ["Full"]
    assert section_headings(EDGE_CASES["text before the first heading"]) == [OVERVIEW, "Steps"]


def test_the_content_hash_is_the_one_the_chat_computes() -> None:
    doc = RunbookDocument(name="r", title="T", content="## A\nb\n", description="d", tags=("x", "y"))
    assert runbook_content_hash("T", "d", ["x", "y"], "## A\nb\n") == doc.content_hash
