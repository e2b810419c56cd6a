"""Label selectors: parsed and matched here too, not only by the API server.

The server passes selectors to the API (so a real cluster filters), then checks the objects again: a
workload's pods are found through its structured selector, and an API server that ignores a selector
(the test emulator does) cannot widen an answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_servers.common import InvalidArgument

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[A-Za-z0-9]?(?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_SET_TERM = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_EQUALITY_TERM = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS_TERM = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: also true when the label is absent


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b` is two terms)."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


def parse_label_selector(text: str) -> list[Requirement]:
    """The requirements of a selector string as kubectl accepts it: `app=web,tier!=db,env in (a,b),!x`."""
    requirements = []
    for term in _split_terms(text):
        if match := _SET_TERM.match(term):
            values = frozenset(value.strip() for value in match.group(3).split(",") if value.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQUALITY_TERM.match(term):
            operator = "notin" if match.group(2) == "!=" else "in"
            requirements.append(Requirement(match.group(1), operator, frozenset({match.group(3)})))
        elif match := _EXISTS_TERM.match(term):
            requirements.append(Requirement(match.group(2), "!exists" if match.group(1) else "exists"))
        else:
            raise InvalidArgument(
                f"label selector term {term!r} is not valid (e.g. app=web, env in (a,b), !debug)"
            )
    return requirements


_EXPRESSION_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def requirements_of(selector: Mapping[str, Any] | None) -> list[Requirement] | None:
    """Requirements of a structured LabelSelector (matchLabels, matchExpressions); None when it has none,
    which for a workload means it selects nothing."""
    if not selector:
        return None
    requirements = [
        Requirement(key, "in", frozenset({str(value)}))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        operator = _EXPRESSION_OPERATORS.get(expression.get("operator", ""))
        if operator is None:
            continue
        requirements.append(
            Requirement(expression["key"], operator, frozenset(expression.get("values") or ()))
        )
    return requirements or None


def selector_string(requirements: list[Requirement]) -> str:
    """The selector in the API's query syntax (for server-side filtering)."""
    terms = []
    for requirement in requirements:
        values = ",".join(sorted(requirement.values))
        if requirement.operator == "exists":
            terms.append(requirement.key)
        elif requirement.operator == "!exists":
            terms.append(f"!{requirement.key}")
        else:
            terms.append(f"{requirement.key} {requirement.operator} ({values})")
    return ",".join(terms)


def labels_match(labels: Mapping[str, str] | None, requirements: list[Requirement]) -> bool:
    return all(requirement.matches(labels or {}) for requirement in requirements)
