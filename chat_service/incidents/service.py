"""The incidents side of the chat service: notifications and questions in, Investigations out, and the
worker that runs them. Routes (routers/incidents.py) stay thin over this."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ai_ops_api.investigations import InvestigationPhase, InvestigationSource
from chat_service.conversations import INVESTIGATION_THREAD_PREFIX
from chat_service.engine import ChatEngine
from chat_service.errors import StoreUnavailable, ThreadBusy, ThreadNotFound
from chat_service.incidents.alertmanager import Notification
from chat_service.incidents.episode import (
    NamedRunbook,
    alert_spec,
    attached_runbooks,
    name_of,
    on_firing,
    on_resolved,
)
from chat_service.incidents.naming import question_name
from chat_service.incidents.notify import InvestigationNotifier
from chat_service.incidents.runner import InvestigationRunner
from chat_service.incidents.store import (
    Conflict,
    InvestigationStore,
    KubernetesInvestigationStore,
    MemoryInvestigationStore,
    NotFound,
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
    # The webhook told of each outcome this replica stored (AI_OPS_INVESTIGATION_NOTIFY_URL), if any.
    notifier: InvestigationNotifier | None = None

    @property
    def store_kind(self) -> Literal["kubernetes", "memory"]:
        """Where the Investigations live (the page says so: memory ones are lost on restart)."""
        return "kubernetes" if isinstance(self.store, KubernetesInvestigationStore) else "memory"

    def start(self) -> None:
        if self.notifier is not None:
            self.notifier.start()
        if self.worker is not None:
            self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.store.aclose()

    async def receive(self, notification: Notification) -> list[dict[str, Any]]:
        answers = []
        for alert in notification.alerts:
            name = name_of(alert)
            if alert.status == "firing":
                item, created = await self.store.create(
                    name, alert_spec(alert, attached_runbooks(self.runbooks(), alert))
                )
                await self.fire(item)
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

    async def fire(self, item: StoredInvestigation) -> None:
        """``alertStatus: firing`` on a new one (its status starts empty), and on one whose alert had
        resolved (episode.on_firing); with the resourceVersion read, so a resolved notification or a
        worker's claim in between is read again, not overwritten."""
        for _attempt in range(5):
            change = on_firing(item.status)
            if change is None:
                return
            patch: dict[str, Any] = {"alertStatus": change.alert_status.value}
            if change.phase is not None:
                patch["phase"] = change.phase.value
            if change.phase == InvestigationPhase.PENDING:
                patch["reason"] = None  # a failure of the last episode is not this one's
            try:
                await self.store.patch_status(item.name, patch, item.resource_version)
                return
            except NotFound:
                return  # deleted meanwhile: the next notification creates it again
            except Conflict:
                pass
            current = await self.store.get(item.name)
            if current is None:
                return
            item = current

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
        """Events of a finished investigation: on itself, and on the object its alert names; and the
        webhook's message (queued first, so that a failing Events API does not lose it)."""
        if self.notifier is not None:
            self.notifier.notify(item)
        phase = item.phase
        message = item.status.get("summary") or item.status.get("reason") or phase
        kind = "Warning" if phase == InvestigationPhase.FAILED.value else "Normal"
        await self.store.record_event(investigation_ref(item), f"Investigation{phase}", message, kind)
        target = alert_target((item.spec.get("alert") or {}).get("labels") or {})
        if target is not None and phase != InvestigationPhase.FAILED.value:
            await self.store.record_event(target, "Investigated", f"ai-ops {item.name}: {message}", "Normal")


class KubeconfigError(ValueError):
    """AI_OPS_INVESTIGATIONS_KUBECONFIG names no usable cluster: the service does not start (a typo must
    not silently keep investigations in memory)."""


def store_from_kubeconfig(path: Path, namespace: str | None) -> KubernetesInvestigationStore:
    """The Kubernetes store for the current context of a kubeconfig with a bearer token (``token`` or
    ``tokenFile``) and a CA (``certificate-authority`` or ``-data``, written beside the kubeconfig)."""
    try:
        loaded = yaml.safe_load(path.read_text())
        contexts = {c["name"]: c["context"] for c in loaded.get("contexts") or ()}
        context = contexts[loaded["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in loaded["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in loaded["users"]}[context["user"]]
        server = str(cluster["server"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise KubeconfigError(
            f"AI_OPS_INVESTIGATIONS_KUBECONFIG {path}: no usable current context ({exc!r})"
        ) from None
    ca_path: Path | None = None
    if cluster.get("certificate-authority"):
        ca_path = Path(cluster["certificate-authority"])
    elif cluster.get("certificate-authority-data"):
        ca_path = path.with_name(path.name + ".ca.crt")
        ca_path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    token_file = user.get("tokenFile")
    if not (user.get("token") or token_file):
        raise KubeconfigError(f"AI_OPS_INVESTIGATIONS_KUBECONFIG {path}: the user has no token or tokenFile")
    return KubernetesInvestigationStore(
        server,
        namespace or context.get("namespace") or "default",
        token=user.get("token"),
        token_path=Path(token_file) if token_file else None,
        ca_path=ca_path,
    )


def build_incidents(
    settings: Settings, engine: ChatEngine, store: InvestigationStore | None = None
) -> Incidents:
    """The Kubernetes store in a cluster (or the one AI_OPS_INVESTIGATIONS_KUBECONFIG names), memory
    elsewhere; a worker unless AI_OPS_INVESTIGATIONS=false."""
    if store is None:
        if settings.investigations_kubeconfig is not None:
            store = store_from_kubeconfig(settings.investigations_kubeconfig, settings.namespace)
        elif in_cluster():
            store = KubernetesInvestigationStore.from_service_account(settings.namespace)
        else:
            store = MemoryInvestigationStore(namespace=settings.namespace or "default")
    incidents = Incidents(store)
    if settings.investigation_notify_url:
        incidents.notifier = InvestigationNotifier(
            settings.investigation_notify_url,
            public_url=settings.public_url,
            allow_loopback=settings.allow_loopback,
        )
    if engine.runbooks is not None:
        # The namespace's runbooks as the index holds them now: a runbook published after an alert fired
        # is attached to the next alert, not to the Investigations already created.
        runbook_service = engine.runbooks
        incidents.runbooks = lambda: runbook_service.documents
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
