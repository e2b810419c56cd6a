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
import hashlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
# Events of finished runs being posted at once; beyond this many waiting, a run's Events are dropped
# (best effort, as a refused Event) rather than hold its slot or grow without bound.
EVENT_POSTS = 4
MAX_PENDING_RECORDS = 256
# How long a stopping worker lets finished runs' outcomes be stored, then their Events be posted.
STOP_FINISH_SECONDS = 10.0
STOP_RECORD_SECONDS = 5.0
# Tries to store a finished run's outcome (conflicts and API failures; about 20 s of pauses in all).
FINISH_ATTEMPTS = 8

# What a run returns: the status fields of its outcome (phase Diagnosed or Failed, summary, ...).
Run = Callable[[StoredInvestigation], Awaitable[dict[str, Any]]]
# Called after the outcome is stored (Events); failures are logged.
Finished = Callable[[StoredInvestigation], Awaitable[None]]


def replica_identity() -> str:
    return f"{os.environ.get('HOSTNAME', 'chat')}-{uuid.uuid4().hex[:6]}"


# How much later than its creation another replica's share counts in this worker's order (below).
PEER_SHARE_HANDICAP = datetime.timedelta(seconds=10)


def share(name: str, replicas: Iterable[str]) -> str:
    """The replica whose share the investigation is (rendezvous hashing): every replica computes the same
    owner from the same set, so two of them do not race for the same one first."""
    return max(
        replicas, key=lambda replica: hashlib.blake2b(f"{replica}/{name}".encode(), digest_size=8).digest()
    )


def claim_order(
    items: Iterable[StoredInvestigation], identity: str, peers: Iterable[str], moment: datetime.datetime
) -> list[StoredInvestigation]:
    """Oldest first of this replica's share, and of another live replica's share once it has waited
    ``PEER_SHARE_HANDICAP``; then the rest of the peers' shares newest first. In a burst the replicas
    rarely collide (a collision costs a refused patch): each starts on its own share, and one with room
    helps a busy peer from the end the peer is not working on."""
    replicas = sorted({identity, *peers})
    if len(replicas) == 1:
        return sorted(items, key=lambda i: i.created_at)
    oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    mine: list[tuple[datetime.datetime, StoredInvestigation]] = []
    theirs: list[tuple[datetime.datetime, StoredInvestigation]] = []
    for item in items:
        created = parse_time(item.created_at) or oldest
        if share(item.name, replicas) == identity:
            mine.append((created, item))
        elif created + PEER_SHARE_HANDICAP <= moment:
            mine.append((created + PEER_SHARE_HANDICAP, item))
        else:
            theirs.append((created, item))
    mine.sort(key=lambda pair: pair[0])
    theirs.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in mine + theirs]


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
        # This worker's last write of each running one: the next renewal or the outcome is patched with
        # its resourceVersion without a GET first (a Conflict reads it again).
        self._latest: dict[str, StoredInvestigation] = {}
        self._loop_task: asyncio.Task[None] | None = None
        # Set when a run ends: its slot is free for the next Pending one now, not at the next event.
        self._slot_freed = asyncio.Event()
        self._recording: set[asyncio.Task[None]] = set()
        self._finishing: dict[str, asyncio.Task[None]] = {}  # runs over, outcome being stored
        self._claiming: set[str] = set()  # claims in flight (each holds a slot until answered)
        self._claims: set[asyncio.Task[None]] = set()
        # Other replicas seen holding a lease, and until when: the replicas the work is shared among.
        self._peers: dict[str, datetime.datetime] = {}
        self._event_posts = asyncio.Semaphore(EVENT_POSTS)

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name=f"investigations-{self.identity}")

    async def stop(self) -> None:
        """Stop the loop and the runs, and hand the interrupted investigations back (Pending), so that
        another replica starts on them at once rather than after the lease (a rolling update)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(BaseException):
                await self._loop_task
        if self._claims:  # a claim in flight may win: let it land, so that its run is handed back too
            _, late = await asyncio.wait(set(self._claims), timeout=STOP_FINISH_SECONDS)
            for task in late:
                task.cancel()
        interrupted = list(self.running)
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._loop_task = None
        self.running.clear()
        for name in interrupted:
            await self._hand_back(name)
        if self._finishing:  # outcomes that cost a whole run: let them be stored (within a bound)
            _, late = await asyncio.wait(set(self._finishing.values()), timeout=STOP_FINISH_SECONDS)
            for task in late:
                task.cancel()
        self._latest.clear()
        if self._recording:
            _, late = await asyncio.wait(set(self._recording), timeout=STOP_RECORD_SECONDS)
            for task in late:
                task.cancel()

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
        # Claims run beside the loop, not in it: a slot freed while other claims are in flight is
        # claimed for at once, not after their round trips (which can take as long as a short run).
        while True:
            if self._free_slots() > 0:
                task = asyncio.create_task(self._claim_logged(), name=f"investigations-claim-{self.identity}")
                self._claims.add(task)
                task.add_done_callback(self._claims.discard)
            await self._wait(max(self.lease_seconds / 4, 0.05))

    async def _claim_logged(self) -> None:
        try:
            await self.claim_some()
        except Exception as exc:  # the store is down: try again at the next wake-up
            log.warning("investigations: cannot list or claim (%s: %s)", type(exc).__name__, exc)

    def _free_slots(self) -> int:
        """Slots neither running nor being claimed for."""
        return self.concurrency - len(self.running) - len(self._claiming)

    async def _wait(self, timeout: float) -> None:
        """Until the store changes (or its poll is due), or a run of this worker has ended."""
        if self._slot_freed.is_set():
            self._slot_freed.clear()
            return
        changed = asyncio.ensure_future(self.store.wait_for_change(timeout))
        freed = asyncio.ensure_future(self._slot_freed.wait())
        try:
            await asyncio.wait((changed, freed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (changed, freed):
                waiter.cancel()
            self._slot_freed.clear()

    async def claim_some(self) -> list[str]:
        """Claim what this worker has room for (``claim_order``); returns the names claimed.

        The candidates come from the store's snapshot (the watched cache: no API call), with the
        resourceVersion they were seen with, so a stale one only costs a refused patch (another replica
        took it). The free slots are claimed at once (one patch each, in parallel), the next candidates
        for the ones lost. A full worker looks at nothing.
        """
        claimed: list[str] = []
        if self._free_slots() <= 0:
            return claimed
        moment = now()
        items = await self.store.snapshot()
        self._note_peers(items, moment)
        candidates = claim_order(
            (
                i
                for i in items
                if i.name not in self.running
                and i.name not in self._finishing
                and i.name not in self._claiming
                and claimable(i, moment)
            ),
            self.identity,
            self._peers,
            moment,
        )
        while candidates and self._free_slots() > 0:
            batch = [i for i in candidates[: self._free_slots()] if i.name not in self._claiming]
            del candidates[: self._free_slots()]
            names = {i.name for i in batch}
            self._claiming |= names  # reserved: a claim beside this one counts them as taken
            try:
                results = await asyncio.gather(*(self._claim(item) for item in batch))
            finally:
                self._claiming -= names
            for won in results:
                if won is not None:
                    claimed.append(won.name)
                    self._latest[won.name] = won
                    self.running[won.name] = asyncio.create_task(
                        self._run_one(won), name=f"investigation-{won.name}"
                    )
        return claimed

    def _note_peers(self, items: Iterable[StoredInvestigation], moment: datetime.datetime) -> None:
        """Replicas holding a lease now, remembered until their latest lease ends (a dead one drops out)."""
        for item in items:
            holder = item.status.get("claimedBy")
            expires = parse_time(item.status.get("leaseExpiresAt"))
            if (
                item.phase == InvestigationPhase.RUNNING.value
                and holder
                and holder != self.identity
                and expires
            ) and expires > self._peers.get(holder, moment):
                self._peers[holder] = expires
        for peer, until in list(self._peers.items()):
            if until <= moment:
                del self._peers[peer]

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
            # The slot is the agent run, over now: the next one is claimed while this outcome is stored
            # (two API round trips in series per run would otherwise leave the slot idle about as long as
            # a short run). Until the outcome lands, the store shows this one Running a moment more.
            task = self.running.pop(item.name, None)
            if task is not None:
                self._finishing[item.name] = task
            self._slot_freed.set()
            stored = await self._finish(item.name, outcome)
            if stored is not None and self.finished is not None:
                self._record_later(stored)
        finally:
            renewer.cancel()
            self.running.pop(item.name, None)
            self._finishing.pop(item.name, None)
            self._latest.pop(item.name, None)
            self._slot_freed.set()

    def _record_later(self, stored: StoredInvestigation) -> None:
        """The Events of a stored outcome, off the run's slot: the next investigation need not wait for
        two Event posts, and a slow Events API does not slow the investigations."""
        if len(self._recording) >= MAX_PENDING_RECORDS:
            log.warning(
                "investigation %s: events dropped (%d waiting to be posted)",
                stored.name,
                len(self._recording),
            )
            return
        task = asyncio.create_task(self._record(stored), name=f"investigation-events-{stored.name}")
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, stored: StoredInvestigation) -> None:
        assert self.finished is not None
        async with self._event_posts:
            try:
                await self.finished(stored)
            except Exception as exc:
                log.warning("investigation %s: recording events failed: %s", stored.name, exc)

    async def _current(self, name: str, *, read: bool) -> StoredInvestigation | None:
        """This worker's last write of the investigation, or (``read``, after a Conflict) the API's copy."""
        latest = None if read else self._latest.get(name)
        return latest if latest is not None else await self.store.get(name)

    async def _renew(self, name: str) -> None:
        read = False  # the claim's resourceVersion first; a Conflict reads the object again
        while True:
            if not read:
                await asyncio.sleep(self.lease_seconds / 3)
            try:
                current = await self._current(name, read=read)
            except StoreError as exc:
                # A blip of the API: try at the next tick (two more before the lease runs out), rather
                # than stop renewing and have a healthy run taken over.
                log.warning("investigation %s: lease not renewed this time (%s)", name, exc)
                read = False
                continue
            if current is None or current.status.get("claimedBy") != self.identity:
                log.warning("investigation %s: claim lost; stopping its run", name)
                task = self.running.get(name)
                if task is not None:
                    task.cancel()
                return
            expires = now() + datetime.timedelta(seconds=self.lease_seconds)
            try:
                renewed = await self.store.patch_status(
                    name, {"leaseExpiresAt": rfc3339(expires)}, current.resource_version
                )
                self._latest[name] = renewed
                read = False
            except Conflict:
                # Changed meanwhile (resolved, or taken over): read it, and renew now if still ours.
                # A second Conflict in a row waits for the next tick.
                read = not read
            except StoreError as exc:
                log.warning("investigation %s: lease not renewed this time (%s)", name, exc)
                read = False

    async def _finish(self, name: str, outcome: Mapping[str, Any]) -> StoredInvestigation | None:
        """Store the outcome unless another replica took the investigation over meanwhile.

        A store that fails (an API blip) is tried again after a growing pause: the outcome cost a whole
        agent run. Should the blip outlast the lease, another replica claims the investigation and this
        outcome is dropped as for any takeover."""
        read = False  # this worker's last write first: no GET unless it is stale (Conflict)
        for attempt in range(FINISH_ATTEMPTS):
            try:
                current = await self._current(name, read=read)
                read = True
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
