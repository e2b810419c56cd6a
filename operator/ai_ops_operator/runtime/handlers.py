"""The kopf adapter: watch, index, reconcile each namespace with the pure core, probe MCP servers.

Layering (after kagent's thin controller over a pure translator):

- kopf **indices** hold the watched objects of each namespace in memory: the four ai-ops kinds (metadata,
  spec, status), Secrets (names and data KEYS only; values are never kept), the chat Deployment (its pod
  template) and the agent ConfigMap (its checksum). kopf fills every index from the initial listing before
  it calls any handler, so the first pass after a restart already sees the whole namespace.
- One ``@kopf.on.event`` handler per watched kind only schedules a reconcile of the object's namespace.
  Event handlers need no finalizer and keep no diffbase, so deleting anything never waits for the operator
  and kopf never writes into our objects (Secrets included).
- The ``Reconciler`` coalesces bursts (``debounce_seconds``), builds a ``Snapshot`` from the indices, runs
  ``evaluate`` + ``translate`` and writes only differences: status (conditions per ``conditions.merge``),
  one Event per condition transition, the ConfigMap when its checksum changed, the Deployment's Secret
  wiring when the set of referenced keys changed. A failed pass is retried with exponential backoff.
- The ``Prober`` probes every probe-able MCPServer on a jittered schedule under a global concurrency limit,
  through one shared connection pool, folds results with ``health.next_record`` and hands results worth
  writing (``health.should_publish``) to the reconciler, which writes them with the conditions.

With kopf peering (``--peering``), only the replica of the highest priority works: kopf pauses the
watching of the others, and the prober checks the same peering object before probing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from kopf._core.engines.peering import Identity  # a NewType of str; kopf exports no alias

from ai_ops_api.conditions import ACCEPTED, FALSE, READY, TRUE, Cond
from ai_ops_api.specs import (
    API_VERSION,
    GROUP,
    RESOURCES,
    USABLE_HEALTH,
    VERSION,
    HealthState,
    MCPServerSpec,
)
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_operator.core.conditions import Transition, merge_conditions, rfc3339
from ai_ops_operator.core.evaluate import (
    evaluate,
    installed_custom_middleware,
    probeable_servers,
    server_health_state,
)
from ai_ops_operator.core.health import (
    HealthRecord,
    ProbeResult,
    next_record,
    record_from_status,
    should_publish,
)
from ai_ops_operator.core.snapshot import Evaluation, ServerHealth, Snapshot, Verdict
from ai_ops_operator.core.translate import referenced_secret_keys, translate
from ai_ops_operator.core.wiring import (
    configmap_body,
    configmap_digest,
    configmap_patch,
    deployment_patch,
    desired_configmap_digest,
)
from ai_ops_operator.runtime.kube import KubeClient, KubeError
from ai_ops_operator.runtime.metrics import OperatorMetrics
from ai_ops_operator.runtime.probe import probe_server, resolve_headers
from ai_ops_operator.runtime.settings import OperatorSettings

logger = logging.getLogger("ai_ops.operator")

# Index ids (also the handler kwargs kopf passes them as).
KIND_INDEX = {
    "LLMProvider": "ai_ops_providers",
    "LLMModel": "ai_ops_models",
    "LLMMiddleware": "ai_ops_middlewares",
    "MCPServer": "ai_ops_mcpservers",
}
SECRETS_INDEX = "ai_ops_secret_keys"
DEPLOYMENT_INDEX = "ai_ops_chat_deployment"
CONFIGMAP_INDEX = "ai_ops_agent_configmap"
ALL_INDICES = (*KIND_INDEX.values(), SECRETS_INDEX, DEPLOYMENT_INDEX, CONFIGMAP_INDEX)

EVENT_COMPONENT = "ai-ops-operator"
MAX_BACKOFF = 60.0
PEERING_RECHECK = 5.0
MAX_RANDOM_PRIORITY = 2**20
# Concurrent status writes (each is one PATCH, plus events on transitions).
STATUS_WRITERS = 8


def _now() -> datetime:
    return datetime.now(UTC)


def _compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconciler needs of an ai-ops object (a plain copy, detached from kopf's body)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: copy.deepcopy(meta[k])
            for k in ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp")
            if k in meta
        },
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def _undelivered(verdict: Verdict, reason: str, error: KubeError) -> Verdict:
    """A ready resource whose config could not reach the chat service is not usable by the agent."""
    if not verdict.ready:
        return verdict
    what = (
        "the agent ConfigMap" if reason == "AgentConfigNotWritten" else "the chat Deployment's Secret volume"
    )
    ready = Cond(READY, FALSE, reason, f"{what} could not be written (retrying): {error}")
    others = [c for c in verdict.conditions if c.type != READY]
    return Verdict(verdict.kind, verdict.name, [*others, ready], spec=verdict.spec)


def _status_subset(status: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: status.get(k) for k in keys}


# --- peering --------------------------------------------------------------------------------------


class PeeringGate:
    """Whether this replica is the one that works (kopf peering: the live peer of highest priority)."""

    def __init__(self, runtime: OperatorRuntime) -> None:
        self.runtime = runtime
        self._checked_at = 0.0
        self._active = True

    async def active(self) -> bool:
        settings = self.runtime.settings
        if not settings.peering_name:
            return True
        if time.monotonic() - self._checked_at < PEERING_RECHECK:
            return self._active
        self._checked_at = time.monotonic()
        if settings.clusterwide:
            path = f"/apis/kopf.dev/v1/clusterkopfpeerings/{settings.peering_name}"
        else:
            path = (
                f"/apis/kopf.dev/v1/namespaces/{settings.namespaces[0]}/kopfpeerings/{settings.peering_name}"
            )
        try:
            peering = await self.runtime.kube.get(path)
        except KubeError as exc:
            logger.warning("cannot read the peering object: %s", exc)
            return self._active
        now = _now()
        higher = []
        for peer_id, info in ((peering or {}).get("status") or {}).items():
            if peer_id == self.runtime.identity or not isinstance(info, dict):
                continue
            try:
                lastseen = datetime.fromisoformat(str(info.get("lastseen")).replace("Z", "+00:00"))
                if lastseen.tzinfo is None:
                    lastseen = lastseen.replace(tzinfo=UTC)
                alive = lastseen + timedelta(seconds=float(info.get("lifetime") or 60)) > now
            except ValueError:
                continue
            if alive and int(info.get("priority") or 0) >= self.runtime.priority:
                higher.append(peer_id)
        active = not higher
        if active != self._active:
            logger.info(
                "probing %s (peers of higher priority: %s)", "resumed" if active else "paused", higher
            )
        self._active = active
        return active


# --- probing --------------------------------------------------------------------------------------


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
    def __init__(self, runtime: OperatorRuntime) -> None:
        self.runtime = runtime
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
                prior = record_from_status(dict(status))
                if prior is not None and prior.state not in (
                    HealthState.HEALTHY,
                    HealthState.DEGRADED,
                    HealthState.UNHEALTHY,
                    HealthState.UNAUTHENTICATED,
                    HealthState.UNKNOWN,
                ):
                    prior = None  # Maintenance / NotProbed are not probe results
                first = random.uniform(0, min(1.0, spec.health_check.interval_seconds / 10))
                self.targets[(namespace, name)] = ProbeTarget(
                    namespace, name, spec, spec_key, prior or HealthRecord(), prior, now + first
                )
                self._wake.set()
            elif target.spec_key != spec_key:
                target.spec, target.spec_key, target.next_due = spec, spec_key, now
                self._wake.set()

    async def run_forever(self) -> None:
        while True:
            if not await self.runtime.gate.active():
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
                        self._probe(target), name=f"probe {target.namespace}/{target.name}"
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    next_wake = min(next_wake, target.next_due)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, next_wake - time.monotonic()))

    async def _probe(self, target: ProbeTarget) -> None:
        runtime = self.runtime
        spec = target.spec
        try:
            async with runtime.probe_slots:
                try:
                    headers, problem = await resolve_headers(
                        spec, target.namespace, runtime.kube.read_secret_value
                    )
                except KubeError as exc:
                    headers, problem = {}, f"header Secrets could not be read: HTTP {exc.status}"
                if problem:
                    result = ProbeResult(ok=False, latency_ms=0, at=_now(), error=problem)
                else:
                    result = await probe_server(spec, headers, runtime.http, runtime.settings.allow_loopback)
                del headers  # Secret values live only for the probe
            self.probes_done += 1
            runtime.metrics.probe_seconds.labels("ok" if result.ok else "failed").observe(
                result.latency_ms / 1000
            )
            if self.targets.get((target.namespace, target.name)) is not target:
                return  # deleted or no longer probe-able meanwhile
            target.record = next_record(target.record, result, spec.health_check)
            if should_publish(target.published, target.record, spec.health_check, result.at):
                target.published = target.record
                runtime.reconciler.schedule(target.namespace)
        except Exception:
            logger.exception("probe of MCPServer %s/%s failed unexpectedly", target.namespace, target.name)
        finally:
            target.running = False
            self._wake.set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- reconciling ----------------------------------------------------------------------------------


class Reconciler:
    def __init__(self, runtime: OperatorRuntime) -> None:
        self.runtime = runtime
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._failures: dict[str, int] = {}
        # (what, namespace, name) -> (resourceVersion before our write, value written): the indices learn
        # of our own writes a moment later; until then the written value is the truth.
        self._written: dict[tuple[str, str, str], tuple[str | None, Any]] = {}
        self._unconsumed_logged: set[str] = set()
        self._status_pending: dict[tuple[str, str, str], Verdict] = {}
        self._status_inflight: set[tuple[str, str, str]] = set()
        self._status_wake = asyncio.Event()
        self._digests: dict[str, tuple[str | None, str | None, bool]] = {}
        self._busy = False
        self.passes = 0

    def schedule(self, namespace: str, delay: float = 0.0) -> None:
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.schedule, namespace)
            return
        self._pending.add(namespace)
        self._wake.set()

    async def run_forever(self) -> None:
        last_pass = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Coalesce a burst into one pass; during a storm (hundreds of probe results) wait at least as
            # long as the last pass took, so reconciling takes at most about half of the event loop and
            # probes and watch events keep flowing.
            await asyncio.sleep(max(self.runtime.settings.debounce_seconds, last_pass))
            batch, self._pending = self._pending, set()
            self._busy = True
            pass_started = time.perf_counter()
            for namespace in sorted(batch):
                started = time.perf_counter()
                try:
                    await self.reconcile(namespace)
                    self._failures.pop(namespace, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._retry_later(namespace, exc, f"reconcile of namespace {namespace} failed")
                finally:
                    self.runtime.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                    self.passes += 1
            self._busy = False
            last_pass = time.perf_counter() - pass_started

    def _retry_later(self, namespace: str, exc: Exception, what: str) -> None:
        """Count the failure and schedule another pass of the namespace with exponential backoff."""
        failures = self._failures[namespace] = self._failures.get(namespace, 0) + 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** (failures - 1))
        self.runtime.metrics.reconcile_errors.labels(namespace).inc()
        logger.error(
            "%s (attempt %d, retry in %.1f s): %s",
            what,
            failures,
            delay,
            exc,
            exc_info=not isinstance(exc, KubeError),
        )
        self.schedule(namespace, delay)

    @property
    def idle(self) -> bool:
        """Nothing scheduled and no pass running (tests and benchmarks wait for this)."""
        return not self._pending and not self._busy and not self._status_pending and not self._status_inflight

    # --- the view of the indices, corrected for our own recent writes ----------------------------

    def _fresh(self, key: tuple[str, str, str], resource_version: str | None, value: Any) -> Any:
        entry = self._written.get(key)
        if entry is None:
            return value
        before, written = entry
        if resource_version == before:
            return written  # the index has not seen our write yet
        del self._written[key]
        return value

    def _index(self, name: str, namespace: str) -> list[Any]:
        indices = self.runtime.indices
        if indices is None:
            return []
        try:
            return list(indices[name].get(namespace, ()))
        except KeyError:
            return []

    def _object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (o for o in self._index(KIND_INDEX[kind], namespace) if o["metadata"]["name"] == name), None
        )

    def snapshot(self, namespace: str) -> tuple[Snapshot, dict[str, dict[str, dict[str, Any]]]]:
        objects: dict[str, dict[str, dict[str, Any]]] = {}
        for kind, index in KIND_INDEX.items():
            objects[kind] = {obj["metadata"]["name"]: obj for obj in self._index(index, namespace)}
        secrets = {name: keys for name, keys in self._index(SECRETS_INDEX, namespace)}
        health: dict[str, ServerHealth] = {}
        for name, obj in objects["MCPServer"].items():
            record = self.runtime.prober.published(namespace, name) or record_from_status(self._status(obj))
            if record is not None:
                health[name] = record.as_server_health()
        snapshot = Snapshot(
            namespace=namespace,
            providers=objects["LLMProvider"],
            models=objects["LLMModel"],
            middlewares=objects["LLMMiddleware"],
            mcpservers=objects["MCPServer"],
            secrets=secrets,
            health=health,
            allow_loopback=self.runtime.settings.allow_loopback,
            custom_middleware=self.runtime.custom_middleware,
        )
        return snapshot, objects

    def _status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        key = ("status", f"{obj['kind']}/{meta.get('namespace')}", meta["name"])
        return dict(self._fresh(key, meta.get("resourceVersion"), obj.get("status") or {}))

    # --- one pass -------------------------------------------------------------------------------

    async def reconcile(self, namespace: str) -> None:
        runtime = self.runtime
        snapshot, objects = self.snapshot(namespace)
        has_resources = any(objects.values())
        configmaps = self._index(CONFIGMAP_INDEX, namespace)
        # A chat Deployment with no ai-ops resources yet still gets an (empty) config: it then answers
        # "no model configured" and is Ready, instead of waiting for a file that never comes.
        chat_waiting = bool(self._index(DEPLOYMENT_INDEX, namespace))
        if not has_resources and not configmaps and not chat_waiting:
            runtime.prober.sync(namespace, {})
            return
        evaluation = evaluate(snapshot)
        config = translate(snapshot, evaluation)
        probeable = self._sync_prober(namespace, evaluation, objects["MCPServer"])
        self._forget_deleted(namespace, objects)
        now = rfc3339(_now())

        # The ConfigMap first: it is what the agent runs on. Status writes go to the status writers, so a
        # probe storm's hundreds of them never hold up the next pass (and its ConfigMap). A failed write
        # shows in every ready resource's Ready condition (the agent cannot use them) and the pass is
        # retried with backoff.
        failure: tuple[str, KubeError] | None = None
        try:
            await self._write_configmap(namespace, config, configmaps[0] if configmaps else None)
        except KubeError as exc:
            failure = ("AgentConfigNotWritten", exc)
        else:
            try:
                await self._wire_deployment(namespace, referenced_secret_keys(config), has_resources)
            except KubeError as exc:
                failure = ("SecretsNotWired", exc)
        for verdict in evaluation.all():
            if failure is not None:
                verdict = _undelivered(verdict, *failure)
            obj = objects[verdict.kind][verdict.name]
            current = self._status(obj)
            if (
                verdict.kind == "MCPServer"
                and not current
                and verdict.name in probeable
                and runtime.prober.published(namespace, verdict.name) is None
            ):
                continue  # a new server's first status comes with its first probe (one write, not two)
            desired, _ = self._desired_status(verdict, obj, current, now)
            if _status_subset(current, desired) != desired:
                key = (verdict.kind, namespace, verdict.name)
                self._status_pending.pop(key, None)  # the latest verdict wins
                self._status_pending[key] = verdict
                self._status_wake.set()
        if failure is not None:
            raise failure[1]

    async def status_writer(self) -> None:
        """One of several workers writing queued status changes, one object at a time each. The change
        is recomputed against the freshest known status right before the write, so a verdict queued twice
        (a pass ran while its first write was in flight) is written once, with one set of events."""
        while True:
            key = next((k for k in self._status_pending if k not in self._status_inflight), None)
            if key is None:
                self._status_wake.clear()
                await self._status_wake.wait()
                continue
            verdict = self._status_pending.pop(key)
            self._status_inflight.add(key)
            namespace = key[1]
            try:
                # The object as the index has it now (it may have moved on since the pass): the write is
                # computed against its status, so a stale queued copy never rewrites a transition twice.
                fresh = self._object(verdict.kind, namespace, verdict.name)
                if fresh is not None:
                    await self._write_status(namespace, verdict, fresh)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._retry_later(
                    namespace, exc, f"status of {verdict.kind} {namespace}/{verdict.name} not written"
                )
            finally:
                self._status_inflight.discard(key)
                self._status_wake.set()

    def _forget_deleted(self, namespace: str, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Drop what is kept per object once the object is gone (metrics series, write records)."""
        for key in list(self._written):
            what, scope, name = key
            if what == "status":
                kind, _, ns = scope.partition("/")
                if ns == namespace and name not in objects.get(kind, {}):
                    del self._written[key]
        self.runtime.metrics.forget_missing(namespace, set(objects["MCPServer"]))

    def _sync_prober(
        self, namespace: str, evaluation: Evaluation, servers: Mapping[str, dict[str, Any]]
    ) -> set[str]:
        probeable = {
            name: (spec, self._status(servers[name])) for name, spec in probeable_servers(evaluation).items()
        }
        self.runtime.prober.sync(namespace, probeable)
        return set(probeable)

    def _desired_status(
        self, verdict: Verdict, obj: Mapping[str, Any], current: Mapping[str, Any], now: str
    ) -> tuple[dict[str, Any], list[Transition]]:
        meta = obj["metadata"]
        generation = meta.get("generation")
        conditions, transitions = merge_conditions(
            current.get("conditions"), verdict.conditions, generation, now
        )
        status: dict[str, Any] = {"conditions": conditions}
        if generation is not None:
            status["observedGeneration"] = generation
        if verdict.kind == "MCPServer":
            namespace, name = meta.get("namespace", ""), meta["name"]
            published = self.runtime.prober.published(namespace, name)
            record = published or record_from_status(dict(current))
            spec: MCPServerSpec | None = verdict.spec
            if spec is None:
                health = HealthState.UNKNOWN
            else:
                accepted = verdict.condition(ACCEPTED)
                probed = (
                    record.as_server_health() if record and accepted and accepted.status == TRUE else None
                )
                health = server_health_state(spec, probed).state
            status["health"] = health.value
            self.runtime.metrics.set_health(namespace, name, health)
            if published is not None and published.last_probe_time is not None:
                status["consecutiveFailures"] = published.consecutive_failures
                status["lastProbeTime"] = rfc3339(published.last_probe_time)
                status["lastProbeLatencyMs"] = published.last_latency_ms
                if published.server_info is not None:
                    info = published.server_info
                    status["serverInfo"] = {
                        k: v
                        for k, v in (
                            ("name", info.name),
                            ("version", info.version),
                            ("protocolVersion", info.protocol_version),
                        )
                        if v is not None
                    }
                if published.tool_count or published.tools:
                    status["tools"] = {"count": published.tool_count, "names": list(published.tools)}
        return status, transitions

    async def _write_status(self, namespace: str, verdict: Verdict, obj: Mapping[str, Any]) -> None:
        current = self._status(obj)
        desired, transitions = self._desired_status(verdict, obj, current, rfc3339(_now()))
        if _status_subset(current, desired) == desired:
            return
        meta = obj["metadata"]
        kind = RESOURCES[verdict.kind]
        try:
            updated = await self.runtime.kube.patch_status(kind, namespace, verdict.name, desired)
        except KubeError as exc:
            if exc.status == 404:
                return  # deleted meanwhile; the DELETED event triggers another pass
            raise
        self.runtime.metrics.status_writes.labels(verdict.kind).inc()
        key = ("status", f"{verdict.kind}/{namespace}", verdict.name)
        self._written[key] = (meta.get("resourceVersion"), dict((updated or {}).get("status") or desired))
        events = [
            (
                t.event_type,
                t.reason,
                f"{t.type} is {t.new_status}: {t.message}" if t.message else f"{t.type} is {t.new_status}",
            )
            for t in transitions
        ]
        old_health, new_health = current.get("health"), desired.get("health")
        ready_transitioned = any(t.type == "Ready" for t in transitions)
        if verdict.kind == "MCPServer" and old_health and new_health != old_health and not ready_transitioned:
            # Only when Ready did not tell already (e.g. Healthy -> Degraded, Unhealthy -> Unauthenticated).
            usable = new_health in USABLE_HEALTH
            events.append(
                (
                    "Normal" if usable else "Warning",
                    "HealthChanged",
                    f"health changed from {old_health} to {new_health}",
                )
            )
        for event_type, reason, message in events:
            await self.runtime.post_event(verdict.kind, obj, event_type, reason, message)

    async def _write_configmap(self, namespace: str, config: Any, existing: Mapping[str, Any] | None) -> None:
        runtime = self.runtime
        name = runtime.settings.configmap_name
        desired = self._digests.get(config.checksum)
        if desired is None:  # serializing a big config costs milliseconds: once per content
            if len(self._digests) > 64:
                self._digests.clear()
            desired = self._digests[config.checksum] = desired_configmap_digest(config)
        key = ("configmap", namespace, name)
        if existing is not None:
            current = self._fresh(key, existing.get("resourceVersion"), existing.get("digest"))
        else:
            current = self._fresh(key, None, None)
        if current == desired:
            return
        if existing is None and current is None:
            try:
                created = await runtime.kube.create_configmap(
                    namespace, configmap_body(name, namespace, config)
                )
                self._written[key] = (None, desired)
                runtime.metrics.configmap_writes.labels(namespace).inc()
                logger.info("ConfigMap %s/%s created (%s)", namespace, name, config.checksum)
                del created
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
        await runtime.kube.merge_patch_configmap(namespace, name, configmap_patch(config))
        self._written[key] = (existing.get("resourceVersion") if existing else None, desired)
        runtime.metrics.configmap_writes.labels(namespace).inc()
        logger.info("ConfigMap %s/%s updated (%s)", namespace, name, config.checksum)

    async def _wire_deployment(self, namespace: str, keys: set[tuple[str, str]], has_resources: bool) -> None:
        runtime = self.runtime
        name = runtime.settings.chat_deployment
        deployments = self._index(DEPLOYMENT_INDEX, namespace)
        if not deployments:
            if has_resources and namespace not in self._unconsumed_logged:
                self._unconsumed_logged.add(namespace)
                logger.info(
                    "no Deployment %s in namespace %s: the agent ConfigMap is written but nothing consumes it yet",
                    name,
                    namespace,
                )
            return
        self._unconsumed_logged.discard(namespace)
        deployment = deployments[0]
        key = ("deployment", namespace, name)
        template = self._fresh(key, deployment["resourceVersion"], deployment["template"])
        if template is not deployment["template"]:
            return  # our patch is on its way into the index
        ops = deployment_patch(template, keys, deployment["resourceVersion"])
        if ops is None:
            return
        try:
            await runtime.kube.json_patch_deployment(namespace, name, ops)
        except KubeError as exc:
            if exc.status in (404, 409, 422):  # gone or changed meanwhile: recompute from the newer object
                self.schedule(namespace, 0.2)
                return
            raise
        self._written[key] = (deployment["resourceVersion"], {"patched": True})
        runtime.metrics.deployment_patches.labels(namespace).inc()
        logger.info(
            "Deployment %s/%s: Secret wiring updated (%d referenced keys); its pods roll",
            namespace,
            name,
            len(keys),
        )


# --- the runtime ----------------------------------------------------------------------------------


class OperatorRuntime:
    """One operator instance: settings, API client, indices, reconciler, prober and the kopf registry."""

    def __init__(
        self, settings: OperatorSettings, kube: KubeClient, metrics: OperatorMetrics | None = None
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics or OperatorMetrics()
        self.identity = (
            f"{os.environ.get('POD_ID') or socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}"
        )
        # kopf pauses all peers of equal priority, so replicas of one Deployment draw distinct ones (up to
        # MAX_RANDOM_PRIORITY: a developer's AI_OPS_PEERING_PRIORITY above it always wins).
        self.priority = (
            settings.peering_priority
            if settings.peering_priority is not None
            else random.randint(1, MAX_RANDOM_PRIORITY)
        )
        self.indices: Mapping[str, Any] | None = None
        # Looked up once: entry points change only with the installed packages, i.e. a new image.
        self.custom_middleware = installed_custom_middleware()
        self.http = SharedHttpPool(max_connections=max(10, settings.probe_concurrency))
        self.probe_slots = asyncio.Semaphore(settings.probe_concurrency)
        self.gate = PeeringGate(self)
        self.prober = Prober(self)
        self.reconciler = Reconciler(self)
        self.registry = build_registry(self)
        self.events_posted = 0

    def kopf_settings(self) -> kopf.OperatorSettings:
        settings = kopf.OperatorSettings()
        # Nothing of kopf's own state goes into our objects: no status.kopf (our status schema is strict),
        # and no finalizers (there are no handlers that would need them).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/operator"
        # Our events are explicit (one per condition transition); kopf's log lines stay logs.
        settings.posting.enabled = False
        settings.peering.priority = self.priority
        settings.peering.standalone = not self.settings.peering_name
        if self.settings.peering_name:
            settings.peering.name = self.settings.peering_name
            settings.peering.mandatory = True
        settings.watching.server_timeout = 300
        return settings

    async def post_event(
        self, kind: str, obj: Mapping[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        meta = obj["metadata"]
        now = rfc3339(_now())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": kind,
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.kube.create_event(str(meta.get("namespace")), body)
            self.events_posted += 1
        except KubeError as exc:
            logger.warning("event %s on %s/%s not posted: %s", reason, kind, meta["name"], exc)

    async def run(
        self,
        *,
        ready_flag: asyncio.Event | None = None,
        stop_flag: asyncio.Event | None = None,
        tune: Callable[[kopf.OperatorSettings], None] | None = None,
    ) -> None:
        """Run kopf and the background loops until cancelled or stopped (``tune`` adjusts kopf's settings,
        e.g. shorter batching windows in tests)."""
        kopf_settings = self.kopf_settings()
        if tune is not None:
            tune(kopf_settings)
        loops = [
            asyncio.create_task(self.reconciler.run_forever(), name="ai-ops reconciler"),
            asyncio.create_task(self.prober.run_forever(), name="ai-ops prober"),
            *(
                asyncio.create_task(self.reconciler.status_writer(), name=f"ai-ops status writer {i}")
                for i in range(STATUS_WRITERS)
            ),
        ]
        try:
            await kopf.operator(
                registry=self.registry,
                settings=kopf_settings,
                standalone=not self.settings.peering_name,
                peering_name=self.settings.peering_name,
                priority=self.priority,
                identity=Identity(self.identity),
                clusterwide=self.settings.clusterwide,
                namespaces=list(self.settings.namespaces),
                liveness_endpoint=self.settings.liveness_endpoint,
                ready_flag=ready_flag,
                stop_flag=stop_flag,
            )
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.prober.aclose()
            await self.http.aclose()


def build_registry(runtime: OperatorRuntime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings = runtime.settings

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo = runtime.kube.connection_info()
        return info

    def _schedule(kwargs: Mapping[str, Any]) -> None:
        if runtime.indices is None:
            runtime.indices = {name: kwargs[name] for name in ALL_INDICES if name in kwargs}
        if kwargs.get("namespace"):
            runtime.reconciler.schedule(kwargs["namespace"])

    for kind, index_id in KIND_INDEX.items():
        plural = RESOURCES[kind].plural

        def index_object(**kwargs: Any) -> dict[str, Any]:
            return {kwargs["namespace"]: _compact(kwargs["body"])}

        kopf.index(GROUP, VERSION, plural, id=index_id, registry=registry)(index_object)

        async def on_object_event(**kwargs: Any) -> None:
            _schedule(kwargs)

        kopf.on.event(GROUP, VERSION, plural, id=f"watch_{plural}", registry=registry)(on_object_event)

    @kopf.index("v1", "secrets", id=SECRETS_INDEX, registry=registry)
    def index_secret_keys(**kwargs: Any) -> dict[str, Any]:
        # Keys only: the values never leave this function.
        body = kwargs["body"]
        keys = frozenset((body.get("data") or {}).keys()) | frozenset((body.get("stringData") or {}).keys())
        return {kwargs["namespace"]: (kwargs["name"], keys)}

    @kopf.on.event("v1", "secrets", id="watch_secrets", registry=registry)
    async def on_secret_event(**kwargs: Any) -> None:
        _schedule(kwargs)

    def is_chat_deployment(**kwargs: Any) -> bool:
        return bool(kwargs["name"] == settings.chat_deployment)

    @kopf.index("apps", "v1", "deployments", id=DEPLOYMENT_INDEX, when=is_chat_deployment, registry=registry)
    def index_deployment(**kwargs: Any) -> dict[str, Any]:
        body = kwargs["body"]
        return {
            kwargs["namespace"]: {
                "resourceVersion": body.get("metadata", {}).get("resourceVersion"),
                "template": copy.deepcopy(dict((body.get("spec") or {}).get("template") or {})),
            }
        }

    @kopf.on.event(
        "apps", "v1", "deployments", id="watch_deployments", when=is_chat_deployment, registry=registry
    )
    async def on_deployment_event(**kwargs: Any) -> None:
        _schedule(kwargs)

    def is_agent_configmap(**kwargs: Any) -> bool:
        return bool(kwargs["name"] == settings.configmap_name)

    @kopf.index("v1", "configmaps", id=CONFIGMAP_INDEX, when=is_agent_configmap, registry=registry)
    def index_configmap(**kwargs: Any) -> dict[str, Any]:
        body = kwargs["body"]
        return {
            kwargs["namespace"]: {
                "resourceVersion": body.get("metadata", {}).get("resourceVersion"),
                "digest": configmap_digest(body),
            }
        }

    @kopf.on.event("v1", "configmaps", id="watch_configmaps", when=is_agent_configmap, registry=registry)
    async def on_configmap_event(**kwargs: Any) -> None:
        _schedule(kwargs)

    return registry
