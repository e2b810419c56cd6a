"""Workers that claim Pending investigations and run them, coordinated only through the store.

Each replica runs one ``InvestigationWorker``. A claim is a status patch (phase Running, claimedBy,
leaseExpiresAt) made with the resourceVersion the worker read: of replicas racing for one investigation
exactly one patch succeeds, the others get Conflict and move on. The winner renews the lease while the
agent runs; a replica that dies stops renewing, and once the lease has expired another replica claims the
investigation again (phase still Running, lease in the past). No leader election, no extra objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ai_ops_api.investigations import InvestigationPhase
from chat_service.incidents.alertmanager import cap_text
from chat_service.incidents.episode import phase_after_run
from chat_service.incidents.store import (
    Conflict,
    InvestigationStore,
    NotFound,
    StoredInvestigation,
    StoreError,
    now,
    parse_time,
    rfc3339,
)

log = logging.getLogger("ai_ops.chat.incidents")

MAX_REASON = 4096
# Tries to store a finished run's outcome (conflicts and API failures; about 20 s of pauses in all).
FINISH_ATTEMPTS = 8

# What a run returns: the status fields of its outcome (phase Diagnosed or Failed, summary, ...).
Run = Callable[[StoredInvestigation], Awaitable[dict[str, Any]]]
# Called after the outcome is stored (Events); failures are logged.
Finished = Callable[[StoredInvestigation], Awaitable[None]]


def replica_identity() -> str:
    return f"{os.environ.get('HOSTNAME', 'chat')}-{uuid.uuid4().hex[:6]}"


def claimable(item: StoredInvestigation, moment: datetime.datetime) -> bool:
    """Pending, or Running under a lease that has expired (its replica died)."""
    if item.phase == InvestigationPhase.PENDING.value:
        return True
    if item.phase == InvestigationPhase.RUNNING.value:
        expires = parse_time(item.status.get("leaseExpiresAt"))
        return expires is None or expires <= moment
    return False


class InvestigationWorker:
    def __init__(
        self,
        store: InvestigationStore,
        run: Run,
        *,
        identity: str | None = None,
        concurrency: int = 2,
        lease_seconds: float = 60.0,
        finished: Finished | None = None,
    ) -> None:
        self.store = store
        self.run = run
        self.identity = identity or replica_identity()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.finished = finished
        self.running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        # Set when a run ends: its slot is free for the next Pending one now, not at the next poll (the
        # Kubernetes store is woken by this replica's creates only).
        self._slot_freed = asyncio.Event()
        self._candidates: list[StoredInvestigation] = []  # claimable at the last list, oldest first

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name=f"investigations-{self.identity}")

    async def stop(self) -> None:
        """Stop the loop and the runs, and hand the interrupted investigations back (Pending), so that
        another replica starts on them at once rather than after the lease (a rolling update)."""
        interrupted = list(self.running)
        tasks = [t for t in (self._loop_task, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._loop_task = None
        self.running.clear()
        for name in interrupted:
            await self._hand_back(name)

    async def _hand_back(self, name: str) -> None:
        """Pending again if still this worker's claim; best effort (else the lease expires as on a crash)."""
        try:
            current = await self.store.get(name)
            if (
                current is None
                or current.phase != InvestigationPhase.RUNNING.value
                or current.status.get("claimedBy") != self.identity
            ):
                return
            await self.store.patch_status(
                name,
                {"phase": InvestigationPhase.PENDING.value, "claimedBy": None, "leaseExpiresAt": None},
                current.resource_version,
            )
        except (Conflict, NotFound, StoreError) as exc:
            log.warning("investigation %s: not handed back on stop (%s)", name, exc)

    async def _loop(self) -> None:
        while True:
            try:
                await self.claim_some()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: try again at the next wake-up
                log.warning("investigations: cannot list or claim (%s: %s)", type(exc).__name__, exc)
            if not await self._wait(max(self.lease_seconds / 4, 0.05)):
                self._candidates = []  # the store changed or its poll is due: list it again

    async def _wait(self, timeout: float) -> bool:
        """Until the store changes (or its poll is due), or a run of this worker has ended (True)."""
        if self._slot_freed.is_set():
            self._slot_freed.clear()
            return True
        changed = asyncio.ensure_future(self.store.wait_for_change(timeout))
        freed = asyncio.ensure_future(self._slot_freed.wait())
        try:
            await asyncio.wait((changed, freed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (changed, freed):
                waiter.cancel()
            self._slot_freed.clear()
        return freed.done() and not changed.done()

    async def claim_some(self) -> list[str]:
        """Claim what this worker has room for; returns the names claimed.

        A full worker lists nothing (a list of every Investigation per create would cost more than the
        runs in a burst). The claimable ones of the last list are kept: a freed slot tries those first,
        with the resourceVersion they were read with, so a stale one only costs a refused patch (another
        replica took it); the store is listed again once they are used up.
        """
        claimed: list[str] = []
        if len(self.running) >= self.concurrency:
            return claimed
        if not self._candidates:
            moment = now()
            items = sorted(await self.store.list(), key=lambda i: i.created_at)
            self._candidates = [i for i in items if i.name not in self.running and claimable(i, moment)]
        while self._candidates and len(self.running) < self.concurrency:
            item = self._candidates.pop(0)
            if item.name in self.running:
                continue
            won = await self._claim(item)
            if won is not None:
                claimed.append(won.name)
                self.running[won.name] = asyncio.create_task(
                    self._run_one(won), name=f"investigation-{won.name}"
                )
        return claimed

    async def _claim(self, item: StoredInvestigation) -> StoredInvestigation | None:
        moment = now()
        status = {
            "phase": InvestigationPhase.RUNNING.value,
            "claimedBy": self.identity,
            "leaseExpiresAt": rfc3339(moment + datetime.timedelta(seconds=self.lease_seconds)),
            "startedAt": rfc3339(moment),
            "attempts": int(item.status.get("attempts") or 0) + 1,
            "reason": None,
        }
        try:
            return await self.store.patch_status(item.name, status, item.resource_version)
        except (Conflict, NotFound):
            return None  # another replica won, or it was deleted

    async def _run_one(self, item: StoredInvestigation) -> None:
        renewer = asyncio.create_task(self._renew(item.name))
        try:
            try:
                outcome = await self.run(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the runner maps what it knows; anything else fails the investigation
                log.exception("investigation %s failed", item.name)
                reason = cap_text(f"{type(exc).__name__}: {exc}", MAX_REASON)  # within the CRD's bound
                outcome = {"phase": InvestigationPhase.FAILED.value, "reason": reason}
            renewer.cancel()
            with contextlib.suppress(BaseException):
                await renewer
            stored = await self._finish(item.name, outcome)
            if stored is not None and self.finished is not None:
                try:
                    await self.finished(stored)
                except Exception as exc:
                    log.warning("investigation %s: recording events failed: %s", item.name, exc)
        finally:
            renewer.cancel()
            self.running.pop(item.name, None)
            self._slot_freed.set()

    async def _renew(self, name: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                current = await self.store.get(name)
            except StoreError as exc:
                # A blip of the API: try at the next tick (two more before the lease runs out), rather
                # than stop renewing and have a healthy run taken over.
                log.warning("investigation %s: lease not renewed this time (%s)", name, exc)
                continue
            if current is None or current.status.get("claimedBy") != self.identity:
                log.warning("investigation %s: claim lost; stopping its run", name)
                task = self.running.get(name)
                if task is not None:
                    task.cancel()
                return
            expires = now() + datetime.timedelta(seconds=self.lease_seconds)
            try:
                await self.store.patch_status(
                    name, {"leaseExpiresAt": rfc3339(expires)}, current.resource_version
                )
            except Conflict:  # changed meanwhile (e.g. resolved): renew next time
                continue
            except StoreError as exc:
                log.warning("investigation %s: lease not renewed this time (%s)", name, exc)

    async def _finish(self, name: str, outcome: Mapping[str, Any]) -> StoredInvestigation | None:
        """Store the outcome unless another replica took the investigation over meanwhile.

        A store that fails (an API blip) is tried again after a growing pause: the outcome cost a whole
        agent run. Should the blip outlast the lease, another replica claims the investigation and this
        outcome is dropped as for any takeover."""
        for attempt in range(FINISH_ATTEMPTS):
            try:
                current = await self.store.get(name)
                if current is None or current.status.get("claimedBy") != self.identity:
                    log.warning("investigation %s: taken over by another replica; outcome dropped", name)
                    return None
                phase = phase_after_run(
                    InvestigationPhase(outcome.get("phase", InvestigationPhase.FAILED.value)),
                    current.status.get("alertStatus"),
                )
                status = {
                    **outcome,
                    "phase": phase.value,
                    "completedAt": rfc3339(now()),
                    "leaseExpiresAt": None,
                }
                return await self.store.patch_status(name, status, current.resource_version)
            except Conflict:
                continue
            except NotFound:
                return None
            except StoreError as exc:
                log.warning("investigation %s: outcome not stored yet (%s)", name, exc)
                await asyncio.sleep(min(0.25 * 2**attempt, 5.0))
        log.error("investigation %s: outcome not stored after %d attempts", name, FINISH_ATTEMPTS)
        return None
