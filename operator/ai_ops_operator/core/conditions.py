"""Merging computed conditions into a resource's status, following the Kubernetes API conventions.

Pure: the caller passes the clock. ``lastTransitionTime`` changes only when a condition's ``status``
changes (a new reason or message alone is not a transition); every condition carries the
``observedGeneration`` it was computed from. The merge also says which conditions transitioned, so the
operator posts one Normal or Warning event per transition and none on passes that changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ai_ops_api.conditions import Cond

# Kubernetes caps condition messages at 32 KiB; ours are much shorter, this guards pathological input.
MAX_MESSAGE = 32768


@dataclass(frozen=True)
class Transition:
    """A condition whose status changed (or that appeared) in this merge."""

    type: str
    old_status: str | None
    new_status: str
    reason: str
    message: str

    @property
    def event_type(self) -> str:
        """Kubernetes event type: Warning when something stopped working or never worked."""
        return "Warning" if self.new_status == "False" else "Normal"


def rfc3339(moment: datetime) -> str:
    """The timestamp format of Kubernetes (UTC, seconds, trailing Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    computed: Sequence[Cond],
    generation: int | None,
    now: str,
) -> tuple[list[dict[str, Any]], list[Transition]]:
    """The new ``status.conditions`` list (in the computed order) and the transitions it contains.

    Conditions no longer computed are dropped (e.g. ``Default`` once a model no longer asks to be default).
    """
    previous = {c.get("type"): c for c in existing or () if isinstance(c, Mapping)}
    merged: list[dict[str, Any]] = []
    transitions: list[Transition] = []
    for cond in computed:
        old = previous.get(cond.type)
        old_status = old.get("status") if old else None
        unchanged = old_status == cond.status and bool(old and old.get("lastTransitionTime"))
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:MAX_MESSAGE],
            "lastTransitionTime": old["lastTransitionTime"] if unchanged and old else now,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
        if not unchanged:
            transitions.append(Transition(cond.type, old_status, cond.status, cond.reason, cond.message))
    return merged, transitions


def conditions_equal(a: Iterable[Mapping[str, Any]] | None, b: Iterable[Mapping[str, Any]] | None) -> bool:
    """Equal as Kubernetes sees them (order included, since we always write them in one order)."""
    return [dict(c) for c in a or ()] == [dict(c) for c in b or ()]
