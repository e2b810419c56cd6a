"""Runbooks as the search index sees them: a document, split into its Markdown sections.

Pure functions: no I/O. A section is what the index ranks and what a citation names (runbook + heading),
so an answer can point at the step that applies rather than at a whole procedure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Long sections are cut into parts so one section never drowns the others in the BM25 length norm and a
# search answer stays a readable excerpt.
MAX_SECTION_CHARS = 4000
OVERVIEW = "Overview"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class RunbookMatch:
    """Which alerts a runbook is attached to (all given parts must match)."""

    alert_names: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    severities: tuple[str, ...] = ()

    def matches(self, alert_name: str, labels: Mapping[str, str]) -> bool:
        if not (self.alert_names or self.labels or self.severities):
            return False
        if self.alert_names and alert_name not in self.alert_names:
            return False
        if self.severities and labels.get("severity") not in self.severities:
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())


@dataclass(frozen=True)
class RunbookDocument:
    name: str
    title: str
    content: str
    description: str = ""
    tags: tuple[str, ...] = ()
    match: RunbookMatch = field(default_factory=RunbookMatch)

    @property
    def content_hash(self) -> str:
        """What the index depends on: a runbook whose hash is unchanged is not re-embedded."""
        digest = hashlib.sha256()
        for part in (self.title, self.description, "\x1f".join(self.tags), self.content):
            digest.update(part.encode())
            digest.update(b"\x00")
        return "sha256:" + digest.hexdigest()

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> RunbookDocument:
        """From a published runbook entry (camelCase keys, as the operator writes them)."""
        match = entry.get("match") or {}
        return cls(
            name=str(entry["name"]),
            title=str(entry["title"]),
            content=str(entry.get("content") or ""),
            description=str(entry.get("description") or ""),
            tags=tuple(str(t) for t in entry.get("tags") or ()),
            match=RunbookMatch(
                alert_names=tuple(match.get("alertNames") or ()),
                labels=dict(match.get("labels") or {}),
                severities=tuple(match.get("severities") or ()),
            ),
        )


@dataclass(frozen=True)
class Section:
    runbook: str
    title: str  # the runbook's title
    heading: str
    text: str
    position: int

    @property
    def indexed_text(self) -> str:
        """The runbook's title goes with every section: a query naming the problem finds all its steps."""
        return f"{self.title}\n{self.heading}\n{self.text}"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.indexed_text.encode()).hexdigest()


def _cut(text: str) -> list[str]:
    """Paragraph-aligned parts of at most MAX_SECTION_CHARS (a longer paragraph is cut hard)."""
    parts: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        while len(paragraph) > MAX_SECTION_CHARS:
            parts.append(paragraph[:MAX_SECTION_CHARS])
            paragraph = paragraph[MAX_SECTION_CHARS:]
        if current and len(current) + len(paragraph) + 2 > MAX_SECTION_CHARS:
            parts.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        parts.append(current)
    return parts


def split_sections(doc: RunbookDocument) -> list[Section]:
    """The runbook's sections in order: an overview (description, tags, text before the first heading),
    then one per Markdown heading. Headings inside fenced code blocks are code, not structure."""
    blocks: list[tuple[str, list[str]]] = [(OVERVIEW, [doc.description] if doc.description else [])]
    if doc.tags:
        blocks[0][1].append("Tags: " + ", ".join(doc.tags))
    if doc.match.alert_names:
        blocks[0][1].append("Alerts: " + ", ".join(doc.match.alert_names))
    in_fence = False
    for line in doc.content.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        found = None if in_fence else _HEADING.match(line)
        if found:
            blocks.append((found.group(2).strip(), []))
        else:
            blocks[-1][1].append(line)
    sections: list[Section] = []
    for heading, lines in blocks:
        text = "\n".join(lines).strip()
        if not text and heading != OVERVIEW:
            continue
        parts = _cut(text) or [""]
        for index, part in enumerate(parts):
            label = heading if index == 0 else f"{heading} ({index + 1})"
            sections.append(Section(doc.name, doc.title, label, part.strip(), len(sections)))
    return sections


def section_names(sections: Sequence[Section]) -> list[str]:
    return [s.heading for s in sections]
