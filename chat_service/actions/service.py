"""The chat's side of ActionRequests: proposals in, decisions by the approvers the settings name, and
the outcome back into the conversation. Routes (routers/actions.py) stay thin over this.

The chat never executes an action. It creates the request (the agent's proposal) and writes a person's
decision into its status; the operator sees the decision and runs the tool. Once the request is over
(Succeeded, Failed, Rejected, Expired) the follower appends the outcome to the conversation it came from
and runs a turn there, so the assistant answers with it.

Any replica follows any request, not only the one that proposed it (which may have stopped since): on
start and at every poll it lists the requests that are over and whose ``status.continued`` is unset, and
claims the continuation by writing ``continued: {by, at}`` with the resourceVersion it read. Of two
replicas (or a replica and its restarted self) only one write succeeds; only that one runs the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ai_ops_api.actions import (
    CHAT_IDENTITY_PREFIX,
    DEFAULT_TTL,
    MAX_COMMENT,
    ActionRequestSpec,
    effective_expiry,
)
from chat_service.actions.store import (
    ActionStore,
    Conflict,
    KubernetesActionStore,
    MemoryActionStore,
    NotFound,
    StoredAction,
    StoreError,
)
from chat_service.incidents.store import now, rfc3339
from chat_service.incidents.worker import replica_identity
from chat_service.settings import Settings, in_cluster

log = logging.getLogger("ai_ops.chat.actions")

DEFAULT_EXPIRY = DEFAULT_TTL
# A request over longer ago than this after its expiry is not continued any more: nobody waits on it (and
# requests from before status.continued existed are not all replayed into their conversations at once).
CONTINUE_WITHIN = datetime.timedelta(hours=1)
MAX_EXCERPT_IN_THREAD = 4000
# Prefix of the message that brings an outcome into a conversation: the page shows it as a notice.
OUTCOME_AUTHOR = "ai-ops-actions"
# The chat's identity in decisions: the chart's admission policy accepts only "chat:<caller>" from it.
DECIDED_BY_PREFIX = CHAT_IDENTITY_PREFIX


class NotAnApprover(Exception):
    """The caller is not one of AI_OPS_ACTION_APPROVERS."""


class AlreadyDecided(Exception):
    """Decided before, expired or over: a decision stands once made."""


class ActionNotFound(Exception):
    pass


class BadProposal(Exception):
    """The proposal does not fit the ActionRequest schema; the message says where (for the model)."""


def action_name(tool: str) -> str:
    """``<tool>-<random>``: a DNS label (the object's name), recognisable in ``kubectl get act``."""
    stem = "".join(c if c.isalnum() else "-" for c in tool.lower()).strip("-")[:40].strip("-") or "action"
    return f"{stem}-{secrets.token_hex(3)}"


def outcome_text(item: StoredAction) -> str:
    """The message the model reads when a request is over: what ran, on what, and how it ended."""
    spec, status = item.spec, item.status
    target = spec.get("target") or {}
    where = "/".join(p for p in (target.get("namespace"), target.get("name")) if p)
    on = f" on {target.get('kind', '')} {where}".rstrip() if where else ""
    head = f"[{OUTCOME_AUTHOR}] ActionRequest {item.name} ({spec.get('tool')}{on}) is {item.phase}."
    decision = item.decision or {}
    parts = [head]
    if decision.get("by"):
        verb = "approved" if decision.get("approved") else "rejected"
        comment = f' with the comment: "{decision["comment"]}"' if decision.get("comment") else ""
        parts.append(f"It was {verb} by {decision['by']}{comment}.")
    result = status.get("result") or {}
    if result.get("excerpt"):
        label = "The tool answered with an error" if result.get("isError") else "The tool's result"
        parts.append(f"{label}:\n{str(result['excerpt'])[:MAX_EXCERPT_IN_THREAD]}")
    elif status.get("reason"):
        parts.append(f"Reason: {status['reason']}")
    parts.append("Tell the user what happened and what to check next.")
    return "\n".join(parts)


ContinueTurn = Callable[[str, str, str], Awaitable[None]]


@dataclass
class ActionService:
    store: ActionStore
    approvers: frozenset[str] = frozenset()
    expiry: datetime.timedelta = DEFAULT_EXPIRY
    # (caller, thread id, message): runs a turn in that conversation (set by the services container).
    continue_turn: ContinueTurn | None = None
    poll_seconds: float = 2.0
    # Who this replica is in status.continued.by: the pod name and a random part (a restarted pod is a
    # new replica).
    replica: str = field(default_factory=replica_identity)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _turns: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def executes(self) -> bool:
        return self.store.executes

    # -- proposals (Proposer) --------------------------------------------------------------------------

    async def propose(
        self,
        *,
        server: str,
        tool: str,
        arguments: Mapping[str, Any],
        reason: str,
        risk: str,
        caller: str,
        thread_id: str | None,
        investigation: str | None = None,
    ) -> str:
        from chat_service.actions.proposals import derive_target

        # An investigation's fix is its own (no caller, no conversation to continue); else the caller's.
        requested_by: dict[str, str] = (
            {"investigation": investigation} if investigation else {"caller": caller}
        )
        if thread_id and not investigation:
            requested_by["threadId"] = thread_id
        spec = {
            "server": server,
            "tool": tool,
            "arguments": dict(arguments),
            "target": derive_target(tool, arguments),
            "reason": reason,
            "risk": risk,
            "requestedBy": requested_by,
            "expiresAt": rfc3339(now() + self.expiry),
        }
        try:  # the CRD's own checks, so the model hears what is wrong instead of an API server 422
            ActionRequestSpec.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise BadProposal(problems) from None
        for _attempt in range(3):  # a name clash is a 1 in 16M chance: try another
            try:
                item = await self.store.create(action_name(tool), spec)
                break
            except Conflict:
                continue
        else:
            raise StoreError("no free ActionRequest name")
        if thread_id:
            self._wake.set()
        log.info("action proposed: %s (%s/%s) by %s", item.name, server, tool, caller)
        return item.name

    # -- decisions -----------------------------------------------------------------------------------

    async def decide(self, name: str, caller: str, approved: bool, comment: str | None) -> StoredAction:
        if caller not in self.approvers:
            raise NotAnApprover(caller)
        for _attempt in range(3):
            item = await self.store.get(name)
            if item is None:
                raise ActionNotFound(name)
            if item.decision is None and item.expired:
                raise AlreadyDecided(f"ActionRequest {name} expired at {item.spec.get('expiresAt')}")
            if item.decision is not None or item.phase != "Pending":
                raise AlreadyDecided(f"ActionRequest {name} is already {item.phase}")
            decision: dict[str, Any] = {
                "approved": approved,
                "by": f"{DECIDED_BY_PREFIX}{caller}",
                "at": rfc3339(now()),
            }
            if comment:
                decision["comment"] = comment[:MAX_COMMENT]
            try:
                # With the resourceVersion read above: of two people deciding at once, one wins.
                decided = await self.store.patch_status(name, {"decision": decision}, item.resource_version)
            except Conflict:
                continue
            log.info("action %s %s by %s", name, "approved" if approved else "rejected", caller)
            self._wake.set()
            return decided
        raise AlreadyDecided(f"ActionRequest {name} changed while deciding; read it again")

    # -- the conversation continues --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self.continue_turn is not None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for turn in list(self._turns):
            turn.cancel()
        await asyncio.gather(*self._turns, return_exceptions=True)
        await self.store.aclose()

    async def _follow(self) -> None:
        while True:
            try:
                await self.follow_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following ActionRequests failed; trying again")
            waits: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(self.store.wait_for_change(self.poll_seconds)),
                asyncio.ensure_future(self._wake.wait()),
            ]
            try:
                await asyncio.wait(waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            self._wake.clear()

    async def follow_once(self) -> None:
        """Continue the conversation of every request that is over and not yet continued by anyone, each
        once across all replicas: only the replica whose claim is stored runs the turn."""
        if self.continue_turn is None:
            return
        for item in await self.store.list():
            conversation = self._conversation_to_continue(item)
            if conversation is None:
                continue
            claimed = await self._claim(item)
            if claimed is None:
                continue
            caller, thread = conversation
            # A turn of its own per outcome: one slow model answer does not hold up the others.
            task = asyncio.get_running_loop().create_task(self._continue(item.name, caller, thread, claimed))
            self._turns.add(task)
            task.add_done_callback(self._turns.discard)

    @staticmethod
    def _conversation_to_continue(item: StoredAction) -> tuple[str, str] | None:
        """(caller, thread id) of a request that is over, came from a conversation, and was not continued."""
        requested_by = item.spec.get("requestedBy") or {}
        caller, thread = requested_by.get("caller"), requested_by.get("threadId")
        if not (isinstance(caller, str) and caller and isinstance(thread, str) and thread):
            return None
        if item.status.get("continued") or not item.terminal:
            return None
        metadata = {"creationTimestamp": item.created_at}
        if now() > effective_expiry({"spec": item.spec, "metadata": metadata}) + CONTINUE_WITHIN:
            return None
        return caller, thread

    async def _claim(self, item: StoredAction) -> StoredAction | None:
        """Write ``continued`` with the resourceVersion ``item`` was read at: the stored request when this
        replica won it, None when another replica did, or the request changed meanwhile (then the next
        poll looks at it again), or the API failed."""
        claim = {"continued": {"by": self.replica, "at": rfc3339(now())}}
        try:
            return await self.store.patch_status(item.name, claim, item.resource_version)
        except (Conflict, NotFound):
            return None
        except StoreError as exc:
            log.warning("continuation of ActionRequest %s not claimed: %s", item.name, exc)
            return None

    async def _continue(self, name: str, caller: str, thread: str, item: StoredAction) -> None:
        assert self.continue_turn is not None
        try:
            await self.continue_turn(caller, thread, outcome_text(item))
        except Exception as exc:
            log.warning("conversation of ActionRequest %s not continued: %s", name, exc)


def build_actions(settings: Settings, store: ActionStore | None = None) -> ActionService:
    """The Kubernetes store in a cluster; memory elsewhere (where nothing executes)."""
    if store is None:
        if in_cluster():
            store = KubernetesActionStore.from_service_account(settings.namespace)
        else:
            store = MemoryActionStore(namespace=settings.namespace or "default")
    return ActionService(store, approvers=settings.action_approvers)
