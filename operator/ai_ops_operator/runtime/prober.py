"""Probe scheduling: every probe-able MCPServer on a jittered schedule under a global concurrency limit.

probe.py does one probe; this module decides when, folds the results with ``health.next_record`` and
hands the ones worth writing (``health.should_publish``) to the reconciler, whose status writer writes
them together with the conditions. All probes share one connection pool, opened by the startup handler.

Why not one ``@kopf.timer`` or ``@kopf.daemon`` per MCPServer: kopf puts its finalizer on every object
with a timer or daemon (so that it can stop them before the object goes), which would make deleting an
MCPServer wait for the operator, and hang while the operator is down; and which servers are probe-able
is decided by the namespace's evaluation (Secrets, refused URLs, maintenance), not by the object alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ai_ops_api.specs import MCPServerSpec
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_operator.core.health import (
    HealthRecord,
    ProbeResult,
    next_record,
    probed_record_from_status,
    should_publish,
)
from ai_ops_operator.runtime.kube import KubeClient, KubeError
from ai_ops_operator.runtime.metrics import OperatorMetrics
from ai_ops_operator.runtime.peering import PEERING_RECHECK, PeeringGate
from ai_ops_operator.runtime.probe import probe_server, resolve_headers

logger = logging.getLogger("ai_ops.operator")


@dataclass
class ProbeTarget:
    namespace: str
    name: str
    spec: MCPServerSpec
    spec_key: str
    record: HealthRecord
    published: HealthRecord | None
    next_due: float
    running: bool = False


class Prober:
    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        gate: PeeringGate,
        *,
        concurrency: int,
        allow_loopback: bool,
        on_publish: Callable[[str], None],
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.gate = gate
        self.allow_loopback = allow_loopback
        # Called with the namespace when a result is worth writing (the reconciler schedules a pass).
        self.on_publish = on_publish
        self.slots = asyncio.Semaphore(concurrency)
        self.targets: dict[tuple[str, str], ProbeTarget] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.probes_done = 0

    def published(self, namespace: str, name: str) -> HealthRecord | None:
        target = self.targets.get((namespace, name))
        return target.published if target is not None else None

    def sync(self, namespace: str, servers: Mapping[str, tuple[MCPServerSpec, Mapping[str, Any]]]) -> None:
        """The probe-able servers of a namespace, with their current status (for a restart's state)."""
        now = time.monotonic()
        for key in [k for k in self.targets if k[0] == namespace and k[1] not in servers]:
            del self.targets[key]
        for name, (spec, status) in servers.items():
            spec_key = spec.model_dump_json()
            target = self.targets.get((namespace, name))
            if target is None:
                prior = probed_record_from_status(status)
                first = random.uniform(0, min(1.0, spec.health_check.interval_seconds / 10))
                self.targets[(namespace, name)] = ProbeTarget(
                    namespace, name, spec, spec_key, prior or HealthRecord(), prior, now + first
                )
                self._wake.set()
            elif target.spec_key != spec_key:
                target.spec, target.spec_key, target.next_due = spec, spec_key, now
                self._wake.set()

    async def run_forever(self, http: SharedHttpPool) -> None:
        while True:
            if not await self.gate.active():
                await asyncio.sleep(PEERING_RECHECK)
                continue
            now = time.monotonic()
            next_wake = now + 1.0
            for target in list(self.targets.values()):
                if target.running:
                    continue
                if target.next_due <= now:
                    target.running = True
                    # Jitter: spread probes, but never later than the interval (keeps the
                    # "Unhealthy within interval x failureThreshold" promise).
                    target.next_due = now + target.spec.health_check.interval_seconds * random.uniform(
                        0.9, 1.0
                    )
                    task = asyncio.create_task(
                        self._probe(target, http), name=f"probe {target.namespace}/{target.name}"
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    next_wake = min(next_wake, target.next_due)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, next_wake - time.monotonic()))

    async def _probe(self, target: ProbeTarget, http: SharedHttpPool) -> None:
        spec = target.spec
        try:
            async with self.slots:
                try:
                    headers, problem = await resolve_headers(
                        spec, target.namespace, self.kube.read_secret_value
                    )
                except KubeError as exc:
                    headers, problem = {}, f"header Secrets could not be read: HTTP {exc.status}"
                if problem:
                    result = ProbeResult(ok=False, latency_ms=0, at=datetime.now(UTC), error=problem)
                else:
                    result = await probe_server(spec, headers, http, self.allow_loopback)
                del headers  # Secret values live only for the probe
            self.probes_done += 1
            self.metrics.probe_seconds.labels("ok" if result.ok else "failed").observe(
                result.latency_ms / 1000
            )
            if self.targets.get((target.namespace, target.name)) is not target:
                return  # deleted or no longer probe-able meanwhile
            target.record = next_record(target.record, result, spec.health_check)
            if should_publish(target.published, target.record, spec.health_check, result.at):
                target.published = target.record
                self.on_publish(target.namespace)
        except Exception:
            logger.exception("probe of MCPServer %s/%s failed unexpectedly", target.namespace, target.name)
        finally:
            target.running = False
            self._wake.set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
