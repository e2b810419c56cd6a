"""Whether this replica is the one that works, read from kopf's peering object.

kopf pauses its own watching on every replica but the live peer of highest priority; it does not pause
the prober (a loop of ours, see prober.py), so the prober asks this gate before probing. The gate reads
the same public ``KopfPeering`` (or ``ClusterKopfPeering``) object kopf maintains, every few seconds.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ai_ops_operator.runtime.kube import KubeError
from ai_ops_operator.runtime.settings import OperatorSettings

logger = logging.getLogger("ai_ops.operator")

PEERING_RECHECK = 5.0


class PeeringMember(Protocol):
    """What the gate needs of an operator instance (``OperatorRuntime``)."""

    settings: OperatorSettings
    kube: Any
    identity: str
    priority: int


class PeeringGate:
    """Whether this replica is the one that works (kopf peering: the live peer of highest priority)."""

    def __init__(self, member: PeeringMember) -> None:
        self.member = member
        self._checked_at = 0.0
        self._active = True

    def _path(self) -> str:
        settings = self.member.settings
        if settings.clusterwide:
            return f"/apis/kopf.dev/v1/clusterkopfpeerings/{settings.peering_name}"
        return f"/apis/kopf.dev/v1/namespaces/{settings.namespaces[0]}/kopfpeerings/{settings.peering_name}"

    async def active(self) -> bool:
        if not self.member.settings.peering_name:
            return True
        if time.monotonic() - self._checked_at < PEERING_RECHECK:
            return self._active
        self._checked_at = time.monotonic()
        try:
            peering = await self.member.kube.get(self._path())
        except KubeError as exc:
            logger.warning("cannot read the peering object: %s", exc)
            return self._active
        higher = peers_above(
            (peering or {}).get("status") or {}, self.member.identity, self.member.priority, datetime.now(UTC)
        )
        active = not higher
        if active != self._active:
            logger.info(
                "probing %s (peers of higher priority: %s)", "resumed" if active else "paused", higher
            )
        self._active = active
        return active


def peers_above(peers: dict[str, Any], identity: str, priority: int, now: datetime) -> list[str]:
    """The live peers (other than ``identity``) of at least ``priority``: kopf pauses equal ones too."""
    higher = []
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, dict):
            continue
        try:
            lastseen = datetime.fromisoformat(str(info.get("lastseen")).replace("Z", "+00:00"))
            if lastseen.tzinfo is None:
                lastseen = lastseen.replace(tzinfo=UTC)
            alive = lastseen + timedelta(seconds=float(info.get("lifetime") or 60)) > now
        except ValueError:
            continue
        if alive and int(info.get("priority") or 0) >= priority:
            higher.append(peer_id)
    return higher
