"""The namespace reconcile: one pass builds a ``Snapshot`` of a namespace from the kopf indices, runs the
pure ``evaluate`` + ``translate`` and writes only differences: the runbook shard ConfigMaps and the agent
ConfigMap when their checksums changed, the chat Deployment's Secret wiring when the set of referenced keys changed, and (through the
status writer) the status of every object whose verdict changed.

Our own queue, debounce and backoff, because the unit of work is a namespace: kopf reconciles single
objects (its handlers, retries and ``kopf.TemporaryError`` are per object), while one ConfigMap holds the
whole namespace's config and any object's change (a Secret, a model, a probe result) can change the
verdict of others. The kopf event handlers only schedule a pass of the object's namespace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ai_ops_api.agent_config import AgentConfig, RunbookShard, runbook_shard_name
from ai_ops_api.conditions import FALSE, NOT_COMPUTED, READY, Cond
from ai_ops_operator.core.conditions import rfc3339
from ai_ops_operator.core.evaluate import evaluate, probeable_servers
from ai_ops_operator.core.health import record_from_status
from ai_ops_operator.core.snapshot import Evaluation, ServerHealth, Snapshot, Verdict
from ai_ops_operator.core.translate import referenced_secret_keys, translate
from ai_ops_operator.core.wiring import (
    configmap_body,
    configmap_patch,
    deployment_patch,
    desired_configmap_digest,
    desired_shard_digest,
    runbook_shard_body,
    runbook_shard_patch,
)
from ai_ops_operator.runtime.indices import (
    CONFIGMAP_INDEX,
    DEPLOYMENT_INDEX,
    KIND_INDEX,
    RUNBOOK_CONFIGMAPS_INDEX,
    SECRETS_INDEX,
    IndexView,
    referenced_configmaps,
    runbook_configmap_entry,
)
from ai_ops_operator.runtime.kube import KubeClient, KubeError
from ai_ops_operator.runtime.metrics import OperatorMetrics
from ai_ops_operator.runtime.prober import Prober
from ai_ops_operator.runtime.settings import OperatorSettings
from ai_ops_operator.runtime.status_writer import StatusWriter, retry_delay

logger = logging.getLogger("ai_ops.operator")

# Namespace passes that failed (a ConfigMap or Deployment write, an error in a namespace-wide step of
# evaluate or translate; one object's failing evaluation only marks that object) are retried after 0.5 s,
# doubling up to this.
MAX_BACKOFF = 60.0


# Why a ready resource did not reach the chat service (the Ready reason then), and what was not written.
UNDELIVERED = {
    "RunbooksNotWritten": "the runbook shard ConfigMaps (and so the agent ConfigMap)",
    "AgentConfigNotWritten": "the agent ConfigMap",
    "SecretsNotWired": "the chat Deployment's Secret volume",
}
# A shard ConfigMap the operator deleted (what the view remembers until the index sees the deletion).
DELETED = ("deleted",)


def undelivered(verdict: Verdict, reason: str, error: KubeError) -> Verdict:
    """A ready resource whose config could not reach the chat service is not usable by the agent."""
    if not verdict.ready:
        return verdict
    what = UNDELIVERED[reason]
    ready = Cond(READY, FALSE, reason, f"{what} could not be written (retrying): {error}")
    others = [c for c in verdict.conditions if c.type != READY]
    return Verdict(
        verdict.kind, verdict.name, [*others, ready], spec=verdict.spec, status_fields=verdict.status_fields
    )


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeClient,
        metrics: OperatorMetrics,
        view: IndexView,
        prober: Prober,
        writer: StatusWriter,
        custom_middleware: frozenset[str],
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.view = view
        self.prober = prober
        self.writer = writer
        self.custom_middleware = custom_middleware
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._unconsumed_logged: set[str] = set()
        self._digests: dict[str, tuple[str | None, str | None, bool]] = {}
        # (namespace, ConfigMap) -> (resourceVersion, data) of ConfigMaps a Runbook reads that the index
        # listed before any Runbook named them (so it keeps no data of them): read once per version.
        self._fetched: dict[tuple[str, str], tuple[str | None, dict[str, str]]] = {}
        # namespace -> the (kind, name) whose evaluation raised at its last pass (logged once per spell).
        self._unevaluated: dict[str, set[tuple[str, str]]] = {}
        self._busy = False
        self.passes = 0

    def schedule(self, namespace: str, delay: float = 0.0) -> None:
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.schedule, namespace)
            return
        self._pending.add(namespace)
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing scheduled, no pass running, no status write due (tests and benchmarks wait for this)."""
        return not self._pending and not self._busy and self.writer.idle

    async def run_forever(self) -> None:
        last_pass = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Coalesce a burst into one pass; during a storm (hundreds of probe results) wait at least as
            # long as the last pass took, so reconciling takes at most about half of the event loop and
            # probes and watch events keep flowing.
            await asyncio.sleep(max(self.settings.debounce_seconds, last_pass))
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
                    self._retry_later(namespace, exc)
                finally:
                    self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                    self.passes += 1
            self._busy = False
            last_pass = time.perf_counter() - pass_started

    def _retry_later(self, namespace: str, exc: Exception) -> None:
        """Count the failure and schedule another pass of the namespace with exponential backoff."""
        failures = self._failures[namespace] = self._failures.get(namespace, 0) + 1
        delay = retry_delay(failures, 0.5, MAX_BACKOFF)
        self.metrics.reconcile_errors.labels(namespace).inc()
        logger.error(
            "reconcile of namespace %s failed (attempt %d, retry in %.1f s): %s",
            namespace,
            failures,
            delay,
            exc,
            exc_info=not isinstance(exc, KubeError),
        )
        self.schedule(namespace, delay)

    # --- one pass ---------------------------------------------------------------------------------

    def referenced_configmaps(self, namespace: str) -> set[str]:
        return referenced_configmaps(self.view.objects("Runbook", namespace))

    def _runbook_configmaps(self, namespace: str) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.view.entries(RUNBOOK_CONFIGMAPS_INDEX, namespace)}

    async def fetch_runbook_configmaps(self, namespace: str) -> None:
        """Read the referenced ConfigMaps whose data the index does not hold (see ``_fetched``)."""
        referenced = self.referenced_configmaps(namespace)
        for key in [k for k in self._fetched if k[0] == namespace and k[1] not in referenced]:
            del self._fetched[key]
        indexed = self._runbook_configmaps(namespace)
        for name in sorted(referenced):
            entry = indexed.get(name)
            if entry is None or entry["data"] is not None:
                continue
            fetched = self._fetched.get((namespace, name))
            if fetched is not None and fetched[0] == entry["resourceVersion"]:
                continue
            body = await self.kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
            if body is None:
                self._fetched.pop((namespace, name), None)
                continue
            # The same entry the index would keep, with the data.
            fresh = runbook_configmap_entry(body, referenced=True)
            self._fetched[(namespace, name)] = (entry["resourceVersion"], fresh["data"])

    def configmap_data(self, namespace: str) -> dict[str, dict[str, str]]:
        """The data of the ConfigMaps the namespace's Runbooks read (a missing one is not in it)."""
        indexed = self._runbook_configmaps(namespace)
        found: dict[str, dict[str, str]] = {}
        for name in self.referenced_configmaps(namespace):
            entry = indexed.get(name)
            if entry is None:
                continue
            if entry["data"] is not None:
                found[name] = entry["data"]
            elif (namespace, name) in self._fetched:
                found[name] = self._fetched[(namespace, name)][1]
        return found

    def snapshot(self, namespace: str) -> tuple[Snapshot, dict[str, dict[str, dict[str, Any]]]]:
        objects = {kind: self.view.objects(kind, namespace) for kind in KIND_INDEX}
        secret_entries = self.view.entries(SECRETS_INDEX, namespace)
        secrets = {name: keys for name, keys, _usable in secret_entries}
        health: dict[str, ServerHealth] = {}
        for name, obj in objects["MCPServer"].items():
            record = self.prober.published(namespace, name) or record_from_status(self.view.status(obj))
            if record is not None:
                health[name] = record.as_server_health()
        snapshot = Snapshot(
            namespace=namespace,
            providers=objects["LLMProvider"],
            models=objects["LLMModel"],
            middlewares=objects["LLMMiddleware"],
            mcpservers=objects["MCPServer"],
            runbooks=objects["Runbook"],
            configmaps=self.configmap_data(namespace),
            secrets=secrets,
            usable_secrets=frozenset(name for name, _keys, usable in secret_entries if usable),
            health=health,
            allow_loopback=self.settings.allow_loopback,
            stdio_commands=self.settings.stdio_commands,
            custom_middleware=self.custom_middleware,
        )
        return snapshot, objects

    async def reconcile(self, namespace: str) -> None:
        await self.fetch_runbook_configmaps(namespace)
        snapshot, objects = self.snapshot(namespace)
        has_resources = any(objects.values())
        configmaps = self.view.entries(CONFIGMAP_INDEX, namespace)
        # A chat Deployment with no ai-ops resources yet still gets an (empty) config: it then answers
        # "no model configured" and is Ready, instead of waiting for a file that never comes.
        chat_waiting = bool(self.view.entries(DEPLOYMENT_INDEX, namespace))
        if not has_resources and not configmaps and not chat_waiting:
            self.prober.sync(namespace, {})
            self._unevaluated.pop(namespace, None)
            return
        evaluation = evaluate(snapshot)
        self._log_unevaluated(namespace, evaluation.failures)
        config = translate(snapshot, evaluation)
        probeable = self._sync_prober(namespace, evaluation, objects["MCPServer"])
        self.view.forget_deleted(namespace, objects)
        self.writer.forget(namespace, objects)
        self.metrics.forget_missing(namespace, set(objects["MCPServer"]))
        now = rfc3339(datetime.now(UTC))

        # The ConfigMap first: it is what the agent runs on. Status writes go to the status writer, so a
        # probe storm's hundreds of them never hold up the next pass (and its ConfigMap). A failed write
        # shows in every ready resource's Ready condition (the agent cannot use them) and the pass is
        # retried with backoff.
        # The runbook shards go before the ConfigMap that names them (the chat finds each shard it is
        # told of), and shards no longer named are deleted after it.
        failure: tuple[str, KubeError] | None = None
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("RunbooksNotWritten", lambda: self._write_shards(namespace, evaluation.runbook_shards)),
            (
                "AgentConfigNotWritten",
                lambda: self._write_configmap(namespace, config, configmaps[0] if configmaps else None),
            ),
            ("RunbooksNotWritten", lambda: self._delete_shards(namespace, len(evaluation.runbook_shards))),
            (
                "SecretsNotWired",
                lambda: self._wire_deployment(namespace, referenced_secret_keys(config), has_resources),
            ),
        ]
        for reason, step in steps:
            try:
                await step()
            except KubeError as exc:
                failure = (reason, exc)
                break
        for verdict in evaluation.all():
            if failure is not None:
                verdict = undelivered(verdict, *failure)
            obj = objects[verdict.kind][verdict.name]
            if (
                verdict.kind == "MCPServer"
                and verdict.name in probeable
                and not self.view.status(obj)
                and self.prober.published(namespace, verdict.name) is None
            ):
                continue  # a new server's first status comes with its first probe (one write, not two)
            self.writer.offer(namespace, verdict, obj, now)
        if failure is not None:
            raise failure[1]

    def _log_unevaluated(self, namespace: str, failures: Mapping[tuple[str, str], Exception]) -> None:
        """Log, with its traceback, each object whose evaluation raised (its status names only the type);
        once while it keeps failing, since every pass of the namespace evaluates it again."""
        logged = self._unevaluated.get(namespace, set())
        for (kind, name), error in sorted(failures.items()):
            if (kind, name) not in logged:
                logger.error(
                    "%s %s/%s could not be evaluated; it is marked %s and the rest of the namespace "
                    "is reconciled as usual",
                    kind,
                    namespace,
                    name,
                    NOT_COMPUTED,
                    exc_info=error,
                )
        if failures:
            self._unevaluated[namespace] = set(failures)
        else:
            self._unevaluated.pop(namespace, None)

    def _sync_prober(
        self, namespace: str, evaluation: Evaluation, servers: Mapping[str, dict[str, Any]]
    ) -> set[str]:
        probeable = {
            name: (spec, self.view.status(servers[name]))
            for name, spec in probeable_servers(evaluation).items()
        }
        self.prober.sync(namespace, probeable)
        return set(probeable)

    async def _write_configmap(
        self, namespace: str, config: AgentConfig, existing: Mapping[str, Any] | None
    ) -> None:
        name = self.settings.configmap_name
        desired = self._digests.get(config.checksum)
        if desired is None:  # serializing a big config costs milliseconds: once per content
            if len(self._digests) > 64:
                self._digests.clear()
            desired = self._digests[config.checksum] = desired_configmap_digest(config)
        key = ("configmap", namespace, name)
        if existing is not None:
            current = self.view.fresh(key, existing.get("resourceVersion"), existing.get("digest"))
        else:
            current = self.view.fresh(key, None, None)
        if current == desired:
            return
        if existing is None and current is None:
            try:
                await self.kube.create_configmap(namespace, configmap_body(name, namespace, config))
                self.view.written(key, None, desired)
                self.metrics.configmap_writes.labels(namespace).inc()
                logger.info("ConfigMap %s/%s created (%s)", namespace, name, config.checksum)
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
        await self.kube.merge_patch_configmap(namespace, name, configmap_patch(config))
        self.view.written(key, existing.get("resourceVersion") if existing else None, desired)
        self.metrics.configmap_writes.labels(namespace).inc()
        logger.info("ConfigMap %s/%s updated (%s)", namespace, name, config.checksum)

    async def _write_shards(self, namespace: str, shards: list[RunbookShard]) -> None:
        """Create or update each shard ConfigMap whose content differs from the shard."""
        indexed = self._runbook_configmaps(namespace)
        for index, shard in enumerate(shards):
            name = runbook_shard_name(index)
            entry = indexed.get(name)
            version = entry["resourceVersion"] if entry else None
            key = ("configmap", namespace, name)
            current = self.view.fresh(key, version, entry["shard"] if entry else None)
            desired = desired_shard_digest(shard)
            if current == desired:
                continue
            created = False
            if current is None or current == DELETED:
                try:
                    await self.kube.create_configmap(namespace, runbook_shard_body(name, namespace, shard))
                    created = True
                except KubeError as exc:
                    if exc.status != 409:
                        raise
            if not created:
                await self.kube.merge_patch_configmap(namespace, name, runbook_shard_patch(shard))
            self.view.written(key, version, desired)
            self.metrics.configmap_writes.labels(namespace).inc()
            logger.info(
                "runbook shard %s/%s %s (%d runbooks, %s)",
                namespace,
                name,
                "created" if created else "updated",
                len(shard.runbooks),
                shard.checksum(),
            )

    async def _delete_shards(self, namespace: str, needed: int) -> None:
        """Delete our shard ConfigMaps beyond the ``needed`` first (a ConfigMap of that name that is not
        ours is left alone)."""
        wanted = {runbook_shard_name(i) for i in range(needed)}
        for name, entry in sorted(self._runbook_configmaps(namespace).items()):
            if entry["shard"] is None or name in wanted:
                continue
            key = ("configmap", namespace, name)
            current = self.view.fresh(key, entry["resourceVersion"], entry["shard"])
            if current == DELETED or not current[2]:
                continue
            try:
                await self.kube.delete_configmap(namespace, name)
            except KubeError as exc:
                if exc.status != 404:
                    raise
            self.view.written(key, entry["resourceVersion"], DELETED)
            self.metrics.configmap_writes.labels(namespace).inc()
            logger.info("runbook shard %s/%s deleted (no longer needed)", namespace, name)

    async def _wire_deployment(self, namespace: str, keys: set[tuple[str, str]], has_resources: bool) -> None:
        name = self.settings.chat_deployment
        deployments = self.view.entries(DEPLOYMENT_INDEX, namespace)
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
        template = self.view.fresh(key, deployment["resourceVersion"], deployment["template"])
        if template is not deployment["template"]:
            return  # our patch is on its way into the index
        ops = deployment_patch(template, keys, deployment["resourceVersion"])
        if ops is None:
            return
        try:
            await self.kube.json_patch_deployment(namespace, name, ops)
        except KubeError as exc:
            if exc.status in (404, 409, 422):  # gone or changed meanwhile: recompute from the newer object
                self.schedule(namespace, 0.2)
                return
            raise
        self.view.written(key, deployment["resourceVersion"], {"patched": True})
        self.metrics.deployment_patches.labels(namespace).inc()
        logger.info(
            "Deployment %s/%s: Secret wiring updated (%d referenced keys); its pods roll",
            namespace,
            name,
            len(keys),
        )
