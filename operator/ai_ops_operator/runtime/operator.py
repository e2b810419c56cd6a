"""One operator instance: settings, API client, metrics, the reconciler, the status writer and the
prober, and kopf running the handlers of registry.py with this instance as its ``memo.runtime``.

With kopf peering (``--peering``), only the replica of the highest priority works: kopf pauses the
watching of the others, and the prober asks the same peering object before probing (peering.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from ai_ops_api.specs import GROUP
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_operator.core.evaluate import installed_custom_middleware
from ai_ops_operator.runtime.actions import ActionExecutor
from ai_ops_operator.runtime.indices import IndexView
from ai_ops_operator.runtime.kube import KubeClient
from ai_ops_operator.runtime.metrics import OperatorMetrics
from ai_ops_operator.runtime.peering import PeeringGate
from ai_ops_operator.runtime.prober import Prober
from ai_ops_operator.runtime.reconciler import Reconciler
from ai_ops_operator.runtime.registry import build_registry
from ai_ops_operator.runtime.settings import OperatorSettings
from ai_ops_operator.runtime.status_writer import STATUS_WRITERS, StatusWriter

logger = logging.getLogger("ai_ops.operator")

MAX_RANDOM_PRIORITY = 2**20


class StartupFailure(Exception):
    """The startup handler gave up (e.g. the metrics port is taken); the message says why."""


class OperatorRuntime:
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
        self.view = IndexView()
        self.gate = PeeringGate(self)
        self.prober = Prober(
            kube,
            self.metrics,
            self.gate,
            concurrency=settings.probe_concurrency,
            allow_loopback=settings.allow_loopback,
            on_publish=lambda namespace: self.reconciler.schedule(namespace),
        )
        self.status_writer = StatusWriter(kube, self.metrics, self.view, self.prober.published, self.identity)
        # Looked up once: entry points change only with the installed packages, i.e. a new image.
        self.reconciler = Reconciler(
            settings,
            kube,
            self.metrics,
            self.view,
            self.prober,
            self.status_writer,
            installed_custom_middleware(),
        )
        self.actions = ActionExecutor(
            kube, self.metrics, self.identity, allow_loopback=settings.allow_loopback
        )
        self.registry = build_registry(settings.actions_enabled, settings.action_sweep_seconds)
        self._loops: list[asyncio.Task[None]] = []
        self._http: SharedHttpPool | None = None
        self._metrics_server: Any = None
        self._start_failure: StartupFailure | None = None

    # --- called by the startup and cleanup handlers ------------------------------------------------

    async def start(self, indices: Mapping[str, Any]) -> None:
        self.view.attach(indices)
        if self.settings.metrics_port and self._metrics_server is None:
            from prometheus_client import start_http_server

            try:
                self._metrics_server, _ = start_http_server(
                    self.settings.metrics_port, registry=self.metrics.registry
                )
            except OSError as exc:
                self._start_failure = StartupFailure(
                    f"cannot serve metrics on port {self.settings.metrics_port}: {exc}"
                )
                raise kopf.PermanentError(str(self._start_failure)) from exc
        if self._loops:
            return
        # Guarded: every probe connection is checked by the address policy on the address it goes to.
        self._http = SharedHttpPool(
            max_connections=max(10, self.settings.probe_concurrency),
            allow_loopback=self.settings.allow_loopback,
            guard=True,
        )
        self._loops = [
            asyncio.create_task(self.reconciler.run_forever(), name="ai-ops reconciler"),
            asyncio.create_task(self.prober.run_forever(self._http), name="ai-ops prober"),
            *(
                asyncio.create_task(self.status_writer.run_forever(), name=f"ai-ops status writer {i}")
                for i in range(STATUS_WRITERS)
            ),
        ]

    async def stop(self) -> None:
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await self.prober.aclose()
        await self.actions.aclose()
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
        if self._metrics_server is not None:
            server, self._metrics_server = self._metrics_server, None
            server.shutdown()
            server.server_close()

    # --- kopf -----------------------------------------------------------------------------------------

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

    async def run(
        self,
        *,
        ready_flag: asyncio.Event | None = None,
        stop_flag: asyncio.Event | None = None,
        tune: Callable[[kopf.OperatorSettings], None] | None = None,
    ) -> None:
        """Run kopf until cancelled or stopped (``tune`` adjusts kopf's settings, e.g. shorter batching
        windows in tests)."""
        kopf_settings = self.kopf_settings()
        if tune is not None:
            tune(kopf_settings)
        try:
            await kopf.operator(
                registry=self.registry,
                settings=kopf_settings,
                memo=kopf.Memo(runtime=self),
                standalone=not self.settings.peering_name,
                peering_name=self.settings.peering_name,
                priority=self.priority,
                # kopf's Identity is a NewType of str it does not export: a plain str is what it holds.
                identity=self.identity,  # type: ignore[arg-type]
                clusterwide=self.settings.clusterwide,
                namespaces=list(self.settings.namespaces),
                liveness_endpoint=self.settings.liveness_endpoint,
                ready_flag=ready_flag,
                stop_flag=stop_flag,
            )
        except Exception as exc:
            # kopf wraps a failed startup handler in an error class it does not export: raise ours.
            if self._start_failure is not None:
                raise self._start_failure from exc
            raise
        finally:
            # kopf calls the cleanup handler on a graceful stop only; a cancelled run stops here.
            await self.stop()
