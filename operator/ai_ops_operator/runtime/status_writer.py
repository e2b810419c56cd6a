"""Writing the status of ai-ops objects: a queue of verdicts, a few workers, a backoff per object.

A namespace pass offers every verdict; only one whose status differs from the object's is queued, and
the latest verdict of an object replaces a queued older one. Each worker writes one object at a time,
recomputing the status against the freshest known one right before the write, so a verdict queued twice
(a pass ran while its first write was in flight) is written once, with one set of events.

Two failures stay with their object and never hold up the rest of the namespace:

- a write the API server refuses (a policy's 403, a 422, any error but 404) is retried after a delay
  that doubles per refusal, from ``FIRST_RETRY`` to ``MAX_RETRY``, across namespace passes: a pass that
  offers the object again does not write it before its delay is over. A successful write or a new
  generation of the object (somebody changed its spec) ends the backoff;
- an unexpected exception computing one object's status marks that object (Ready False,
  ``StatusNotComputed``, with the exception's type and text: the operator holds no Secret values here,
  the indices keep Secret keys only) and is retried with the same backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ai_ops_api.conditions import ACCEPTED, FALSE, NOT_COMPUTED, READY, TRUE, Cond
from ai_ops_api.specs import API_VERSION, RESOURCES, USABLE_HEALTH, HealthState, MCPServerSpec
from ai_ops_operator.core.conditions import Transition, merge_conditions, rfc3339
from ai_ops_operator.core.evaluate import server_health_state
from ai_ops_operator.core.events import event_body
from ai_ops_operator.core.health import HealthRecord, probe_status_fields, record_from_status
from ai_ops_operator.core.snapshot import Verdict
from ai_ops_operator.runtime.indices import IndexView, status_key
from ai_ops_operator.runtime.kube import KubeClient, KubeError
from ai_ops_operator.runtime.metrics import OperatorMetrics

logger = logging.getLogger("ai_ops.operator")

# Concurrent status writes (each is one PATCH, plus events on transitions).
STATUS_WRITERS = 8
FIRST_RETRY = 1.0
MAX_RETRY = 300.0

# (kind, namespace, name)
ObjectKey = tuple[str, str, str]
# (namespace, name) -> the health record the prober published for the server, if any
PublishedHealth = Callable[[str, str], HealthRecord | None]


# --- the status, computed purely ------------------------------------------------------------------


def desired_status(
    verdict: Verdict,
    obj: Mapping[str, Any],
    current: Mapping[str, Any],
    published: HealthRecord | None,
    now: str,
) -> tuple[dict[str, Any], list[Transition], HealthState | None]:
    """The status to write for a verdict, the condition transitions it makes, and (MCPServers) the health."""
    generation = obj["metadata"].get("generation")
    conditions, transitions = merge_conditions(current.get("conditions"), verdict.conditions, generation, now)
    status: dict[str, Any] = {"conditions": conditions}
    if generation is not None:
        status["observedGeneration"] = generation
    status.update(verdict.status_fields)
    if verdict.kind != "MCPServer":
        return status, transitions, None
    record = published or record_from_status(current)
    spec: MCPServerSpec | None = verdict.spec
    if spec is None:
        health = HealthState.UNKNOWN
    else:
        accepted = verdict.condition(ACCEPTED)
        probed = record.as_server_health() if record and accepted and accepted.status == TRUE else None
        health = server_health_state(spec, probed).state
    status["health"] = health.value
    if published is not None:
        status.update(probe_status_fields(published))
    return status, transitions, health


def not_computed_status(
    obj: Mapping[str, Any], current: Mapping[str, Any], error: Exception, now: str
) -> tuple[dict[str, Any], list[Transition]]:
    """What an object says when computing its status failed: Ready False with the error."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    message = f"the operator could not compute this status (retrying): {text}"
    ready = Cond(READY, FALSE, NOT_COMPUTED, message[:500])
    generation = obj["metadata"].get("generation")
    conditions, transitions = merge_conditions(current.get("conditions"), [ready], generation, now)
    status: dict[str, Any] = {"conditions": conditions}
    if generation is not None:
        status["observedGeneration"] = generation
    return status, transitions


def is_current(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return all(current.get(k) == v for k, v in desired.items())


def status_events(
    kind: str, transitions: list[Transition], old_health: Any, new_health: Any
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events a write tells: one per condition transition, and a health
    change of an MCPServer that Ready did not tell already (e.g. Healthy -> Degraded)."""
    events = [
        (
            t.event_type,
            t.reason,
            f"{t.type} is {t.new_status}: {t.message}" if t.message else f"{t.type} is {t.new_status}",
        )
        for t in transitions
    ]
    ready_transitioned = any(t.type == READY for t in transitions)
    if kind == "MCPServer" and old_health and new_health != old_health and not ready_transitioned:
        usable = new_health in USABLE_HEALTH
        events.append(
            (
                "Normal" if usable else "Warning",
                "HealthChanged",
                f"health changed from {old_health} to {new_health}",
            )
        )
    return events


def retry_delay(failures: int, first: float, cap: float) -> float:
    """``first``, doubled per failure after the first, up to ``cap``."""
    # The exponent is bounded too: a refusal lasting days counts thousands of failures, and a float cannot
    # hold 2 ** 1024 (the OverflowError would end the worker, or the reconciler, for good).
    return min(cap, first * 2 ** min(failures - 1, 64))


# --- the writer -----------------------------------------------------------------------------------


@dataclass
class Backoff:
    """An object whose last write (or status computation) failed: not retried before ``not_before``."""

    failures: int
    not_before: float
    generation: Any


class StatusWriter:
    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        view: IndexView,
        published: PublishedHealth,
        instance: str,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.view = view
        self.published = published
        # reportingInstance of our events
        self.instance = instance
        self._pending: dict[ObjectKey, Verdict] = {}
        self._inflight: set[ObjectKey] = set()
        self._backoff: dict[ObjectKey, Backoff] = {}
        self._wake = asyncio.Event()
        self.events_posted = 0

    # --- what a pass does --------------------------------------------------------------------------

    def offer(self, namespace: str, verdict: Verdict, obj: Mapping[str, Any], now: str) -> None:
        """Queue the verdict if the object's status differs from it."""
        key = (verdict.kind, namespace, verdict.name)
        backoff = self._backoff.get(key)
        if backoff is not None and backoff.generation != obj["metadata"].get("generation"):
            del self._backoff[key]  # a new spec is worth a try now
        current = self.view.status(obj)
        try:
            desired, _, health = desired_status(
                verdict, obj, current, self.published(namespace, verdict.name), now
            )
        except Exception:  # the worker computes it again, and marks the object if it fails again
            up_to_date = False
        else:
            if health is not None:
                self.metrics.set_health(namespace, verdict.name, health)
            up_to_date = is_current(current, desired)
        if up_to_date:
            self._pending.pop(key, None)  # an older queued verdict must not be written after all
            self._backoff.pop(key, None)
            return
        self._pending.pop(key, None)  # the latest verdict wins
        self._pending[key] = verdict
        self._wake.set()

    def forget(self, namespace: str, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Drop the backoff of objects of the namespace that are gone."""
        for key in [k for k in self._backoff if k[1] == namespace and k[2] not in objects.get(k[0], {})]:
            del self._backoff[key]

    @property
    def idle(self) -> bool:
        """No write in flight and none due (an object backing off is not work to wait for)."""
        return not self._inflight and self._next_due(time.monotonic()) is None

    # --- the workers -------------------------------------------------------------------------------

    def _next_due(self, now: float) -> ObjectKey | None:
        for key in self._pending:
            if key in self._inflight:
                continue
            backoff = self._backoff.get(key)
            if backoff is None or backoff.not_before <= now:
                return key
        return None

    def _next_retry_in(self, now: float) -> float | None:
        waits = [b.not_before - now for k, b in self._backoff.items() if k in self._pending]
        return max(0.01, min(waits)) if waits else None

    async def run_forever(self) -> None:
        """One worker; several run at once, each writing one object at a time."""
        while True:
            now = time.monotonic()
            key = self._next_due(now)
            if key is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_retry_in(now))
                continue
            verdict = self._pending.pop(key)
            self._inflight.add(key)
            try:
                # The object as the index has it now (it may have moved on since the pass): the write is
                # computed against its status, so a stale queued copy never rewrites a transition twice.
                obj = self.view.object(*key)
                if obj is not None:
                    await self._write(key, verdict, obj)
            finally:
                self._inflight.discard(key)
                self._wake.set()

    def _fail(self, key: ObjectKey, obj: Mapping[str, Any], verdict: Verdict, what: str, error: Any) -> None:
        """Count the failure and keep the verdict queued for a retry after the object's next delay."""
        previous = self._backoff.get(key)
        failures = (previous.failures if previous else 0) + 1
        delay = retry_delay(failures, FIRST_RETRY, MAX_RETRY)
        self._backoff[key] = Backoff(failures, time.monotonic() + delay, obj["metadata"].get("generation"))
        self._pending.setdefault(key, verdict)
        self.metrics.status_write_errors.labels(key[0]).inc()
        kind, namespace, name = key
        logger.warning(
            "%s of %s %s/%s (attempt %d, retry in %.0f s): %s",
            what,
            kind,
            namespace,
            name,
            failures,
            delay,
            error,
        )

    async def _write(self, key: ObjectKey, verdict: Verdict, obj: Mapping[str, Any]) -> None:
        kind, namespace, name = key
        current = self.view.status(obj)
        now = rfc3339(datetime.now(UTC))
        failure: tuple[str, Any] | None = None
        try:
            desired, transitions, _ = desired_status(
                verdict, obj, current, self.published(namespace, name), now
            )
        except Exception as exc:  # a bug, for this object only: mark it, the others go on
            logger.exception("status of %s %s/%s could not be computed", kind, namespace, name)
            desired, transitions = not_computed_status(obj, current, exc, now)
            failure = ("status computation", f"{type(exc).__name__}: {exc}")
        try:
            if not is_current(current, desired):
                updated = await self.kube.patch_status(RESOURCES[kind], namespace, name, desired)
                self.metrics.status_writes.labels(kind).inc()
                self.view.written(
                    status_key(kind, namespace, name),
                    obj["metadata"].get("resourceVersion"),
                    dict((updated or {}).get("status") or desired),
                )
                for event_type, reason, message in status_events(
                    kind, transitions, current.get("health"), desired.get("health")
                ):
                    await self.post_event(kind, obj, event_type, reason, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, KubeError) and exc.status == 404:
                return  # deleted meanwhile; the DELETED event triggers another pass
            failure = failure or ("status write", exc)
        if failure is None:
            self._backoff.pop(key, None)
        else:
            self._fail(key, obj, verdict, *failure)

    async def post_event(
        self, kind: str, obj: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        involved = {"apiVersion": API_VERSION, "kind": kind, "metadata": obj["metadata"]}
        body = event_body(involved, event_type, reason, message, self.instance, rfc3339(datetime.now(UTC)))
        try:
            await self.kube.create_event(str(obj["metadata"].get("namespace")), body)
            self.events_posted += 1
        except KubeError as exc:
            logger.warning("event %s on %s/%s not posted: %s", reason, kind, obj["metadata"]["name"], exc)
