"""What both sides must agree on about a runbook's text: its Markdown sections and its content hash.

The operator reports a Runbook's section count and content hash in its status; the chat splits the same
text into the sections it indexes and cites (``chat_service/runbooks/documents.py``, which the operator must
not import). The rules live here so the two cannot drift: a heading is a line ``#`` to ``######``, a space
and text, outside fenced code blocks (```` ``` ```` or ``~~~``); a section is a heading with some text under
it, and the text before the first heading is one more section when it is not empty. A test compares these
rules with the chat's split on the example runbooks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

OVERVIEW = "Overview"

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def section_headings(markdown: str) -> list[str]:
    """The headings of the non-empty sections, in order (``Overview`` for text before the first heading)."""
    blocks: list[tuple[str, list[str]]] = [(OVERVIEW, [])]
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        found = None if in_fence else HEADING.match(line)
        if found:
            blocks.append((found.group(2).strip(), []))
        else:
            blocks[-1][1].append(line)
    return [heading for heading, lines in blocks if "\n".join(lines).strip()]


def count_sections(markdown: str) -> int:
    return len(section_headings(markdown))


def runbook_content_hash(title: str, description: str, tags: Iterable[str], content: str) -> str:
    """sha256 of everything the chat indexes of a runbook: unchanged hash, nothing to re-embed."""
    digest = hashlib.sha256()
    for part in (title, description, "\x1f".join(tags), content):
        digest.update(part.encode())
        digest.update(b"\x00")
    return "sha256:" + digest.hexdigest()
