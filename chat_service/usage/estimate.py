"""Token counts for a provider that answered without usage: about four characters a token.

A tokenizer would be exact for one model family only and is a large dependency; the estimate is marked
``estimated`` wherever it is reported, so nobody takes it for the provider's own count.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0


def text_of(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return ""


def message_text(message: Any) -> str:
    """Content plus tool-call arguments: both are tokens the provider counts."""
    text = text_of(getattr(message, "content", ""))
    for call in getattr(message, "tool_calls", None) or ():
        text += str(call.get("name", "")) + str(call.get("args", ""))
    return text
