"""The incidents side of the chat service: notifications and questions in, Investigations out, and the
worker that runs them. Routes (routers/incidents.py) stay thin over this."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ai_ops_api.investigations import InvestigationPhase, InvestigationSource
from chat_service.conversations import INVESTIGATION_THREAD_PREFIX
from chat_service.engine import ChatEngine
from chat_service.errors import StoreUnavailable, ThreadBusy, ThreadNotFound
from chat_service.incidents.alertmanager import Notification
from chat_service.incidents.episode import NamedRunbook, alert_spec, attached_runbooks, name_of, on_resolved
from chat_service.incidents.naming import question_name
from chat_service.incidents.runner import InvestigationRunner
from chat_service.incidents.store import (
    Conflict,
    InvestigationStore,
    KubernetesInvestigationStore,
    MemoryInvestigationStore,
    ObjectRef,
    StoredInvestigation,
    StoreError,
    investigation_ref,
)
from chat_service.incidents.worker import InvestigationWorker
from chat_service.settings import Settings, in_cluster

log = logging.getLogger("ai_ops.chat.incidents")

# Label that, with `namespace`, names the object an alert is about (kube-state-metrics' conventions).
TARGET_LABELS = (("pod", "v1", "Pod"), ("deployment", "apps/v1", "Deployment"),
                 ("statefulset", "apps/v1", "StatefulSet"), ("daemonset", "apps/v1", "DaemonSet"))  # fmt: skip


def alert_target(labels: dict[str, str]) -> ObjectRef | None:
    namespace = labels.get("namespace")
    for label, api_version, kind in TARGET_LABELS:
        if namespace and labels.get(label):
            return ObjectRef(api_version, kind, labels[label], namespace)
    if labels.get("node"):
        return ObjectRef("v1", "Node", labels["node"], "default")
    return None


@dataclass
class Incidents:
    store: InvestigationStore
    worker: InvestigationWorker | None = None
    # The runbooks whose `match` may attach them to an alert (set by the runbook index when there is one).
    runbooks: Callable[[], Sequence[NamedRunbook]] = field(default=lambda: ())

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.store.aclose()

    async def receive(self, notification: Notification) -> list[dict[str, Any]]:
        answers = []
        for alert in notification.alerts:
            name = name_of(alert)
            if alert.status == "firing":
                _, created = await self.store.create(
                    name, alert_spec(alert, attached_runbooks(self.runbooks(), alert))
                )
                if alert.dropped_labels or alert.dropped_annotations:
                    log.warning(
                        "alert %s: %d labels and %d annotations over the caps dropped",
                        name, alert.dropped_labels, alert.dropped_annotations,
                    )  # fmt: skip
                answers.append({"name": name, "created": created})
            else:
                await self.resolve(name)
                answers.append({"name": name, "created": False})
        return answers

    async def resolve(self, name: str) -> None:
        for _attempt in range(5):
            item = await self.store.get(name)
            if item is None:
                return  # resolved before it was ever seen firing: nothing to investigate
            change = on_resolved(item.status)
            if change is None:
                return
            patch: dict[str, Any] = {"alertStatus": change.alert_status.value}
            if change.phase is not None:
                patch["phase"] = change.phase.value
            try:
                await self.store.patch_status(name, patch, item.resource_version)
                return
            except Conflict:
                continue

    async def ask(
        self, question: str, requested_by: str, target: dict[str, Any] | None, model: str | None
    ) -> str:
        spec: dict[str, Any] = {
            "source": InvestigationSource.API.value,
            "question": question,
            "requestedBy": requested_by,
        }
        if target:
            spec["target"] = target
        if model:
            spec["model"] = model
        subject = (target or {}).get("name") or "question"
        item, _ = await self.store.create(question_name(subject), spec)
        return item.name

    async def retry(self, name: str) -> StoredInvestigation | None:
        """Pending again (a failed or finished one); None when there is no such investigation."""
        for _attempt in range(5):
            item = await self.store.get(name)
            if item is None:
                return None
            if item.phase in (InvestigationPhase.PENDING.value, InvestigationPhase.RUNNING.value):
                return item
            try:
                return await self.store.patch_status(
                    name, {"phase": InvestigationPhase.PENDING.value, "reason": None}, item.resource_version
                )
            except Conflict:
                continue
        return await self.store.get(name)

    async def check_thread(self, thread_id: str, *, write: bool) -> None:
        """An Investigation's thread is there for anyone who may call this chat (it serves one namespace,
        whose investigations every caller can list); a person's turn is refused while an investigator may
        be writing it (Pending or Running), so that the two never interleave."""
        name = thread_id.removeprefix(INVESTIGATION_THREAD_PREFIX)
        try:
            item = await self.store.get(name)
        except StoreError as exc:
            raise StoreUnavailable(f"the investigation {name!r} cannot be read: {exc}") from None
        if item is None:
            raise ThreadNotFound(f"no conversation {thread_id!r}: there is no investigation {name!r}")
        if write and item.phase in (InvestigationPhase.PENDING.value, InvestigationPhase.RUNNING.value):
            raise ThreadBusy(
                f"the investigation {name!r} is {item.phase}: continue its conversation once it has finished"
            )

    async def record(self, item: StoredInvestigation) -> None:
        """Events of a finished investigation: on itself, and on the object its alert names."""
        phase = item.phase
        message = item.status.get("summary") or item.status.get("reason") or phase
        kind = "Warning" if phase == InvestigationPhase.FAILED.value else "Normal"
        await self.store.record_event(investigation_ref(item), f"Investigation{phase}", message, kind)
        target = alert_target((item.spec.get("alert") or {}).get("labels") or {})
        if target is not None and phase != InvestigationPhase.FAILED.value:
            await self.store.record_event(target, "Investigated", f"ai-ops {item.name}: {message}", "Normal")


def build_incidents(
    settings: Settings, engine: ChatEngine, store: InvestigationStore | None = None
) -> Incidents:
    """The Kubernetes store in a cluster, memory elsewhere; a worker unless AI_OPS_INVESTIGATIONS=false."""
    if store is None:
        if in_cluster():
            store = KubernetesInvestigationStore.from_service_account(settings.namespace)
        else:
            store = MemoryInvestigationStore(namespace=settings.namespace or "default")
    incidents = Incidents(store)
    engine.shared_threads = incidents.check_thread
    if settings.investigations:
        runner = InvestigationRunner(
            engine,
            max_steps=settings.investigation_max_steps,
            max_seconds=settings.investigation_max_seconds,
            max_tokens=settings.investigation_max_tokens,
        )
        incidents.worker = InvestigationWorker(
            store,
            runner,
            concurrency=settings.investigations_concurrency,
            lease_seconds=settings.investigation_lease_seconds,
            finished=incidents.record,
        )
    return incidents
