"""The action executor: approved ActionRequests executed once, on the MCP server they name.

kopf calls ``handle`` on every event of an ActionRequest and from a timer while it is open (registry.py);
``core.actions.next_step`` says what to do. Every phase change is a replace of the status with the
object's resourceVersion as precondition, so two handlers (an event and a timer, or two replicas) racing
on one request cannot both move it: the loser gets a 409 and does nothing. The ``Executing`` write comes
before any tool call; a request this process finds ``Executing`` without running it (the operator died
mid-call) is Failed "outcome unknown" and never called again. The operator never talks to an LLM: the
arguments are the spec's, as the person approved them.

kopf runs the event handler and the timer of one object in separate tasks (it serialises only the events),
so both may start executing the same request. The in-process mark ("running here") is therefore taken
before the first await of an execution and released only by the execution that took it: the other one
returns at once instead of racing to the Executing write and, losing it, clearing the winner's mark.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
from pydantic import ValidationError

from ai_ops_api.actions import ACTION_REQUEST, ActionPhase, cap_excerpt, format_time
from ai_ops_api.specs import API_VERSION, RESOURCES, MCPServerSpec
from ai_ops_common.errors import describe_exception
from ai_ops_common.http_pool import SharedHttpPool
from ai_ops_common.mcp import list_all_tools, list_tools_page
from ai_ops_operator.core import actions as core
from ai_ops_operator.core.actions import Step
from ai_ops_operator.runtime.kube import KubeClient, KubeError
from ai_ops_operator.runtime.metrics import OperatorMetrics
from ai_ops_operator.runtime.probe import mcp_session, resolve_headers, resolve_refusal

logger = logging.getLogger("ai_ops.operator.actions")

# The whole execution (session, dry run, real call) must end within this; a hung server leaves the
# request Failed with an unknown outcome rather than Executing for ever.
EXECUTION_TIMEOUT_SECONDS = 120.0
MAX_TOOL_PAGES = 20
# Pauses between attempts to store the outcome of a call that was made (about 3.5 minutes in all): only
# this process knows the tool's answer, so an API blip must not turn it into "outcome unknown".
OUTCOME_WRITE_PAUSES: tuple[float, ...] = (0.5, 1, 2, 4, 8, 15, 30, 30, 30, 30, 30, 30)
# 409s met on the way (the object edited meanwhile, still Executing): each is retried at once on the fresh
# object, up to this many.
MAX_OUTCOME_CONFLICTS = 10


class ActionExecutor:
    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        instance: str,
        allow_loopback: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        outcome_write_pauses: tuple[float, ...] = OUTCOME_WRITE_PAUSES,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.instance = instance
        self.allow_loopback = allow_loopback
        self.clock = clock
        self.outcome_write_pauses = outcome_write_pauses
        # uids of the requests this process is executing now: their Executing phase is expected. Added
        # and removed only by ``_execute``, by the one execution that found the uid absent.
        self._running: set[str] = set()
        self._discovery: dict[str, dict[str, Any]] = {}
        self._http: SharedHttpPool | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def _pool(self) -> SharedHttpPool:
        if self._http is None:
            # Guarded like the probes: the address policy is checked on the address connected to.
            self._http = SharedHttpPool(max_connections=10, allow_loopback=self.allow_loopback, guard=True)
        return self._http

    # --- entry ---------------------------------------------------------------------------------------

    async def handle(self, body: Mapping[str, Any]) -> None:
        obj = _plain(body)
        uid = str(obj["metadata"].get("uid"))
        step = core.next_step(obj, self.clock(), uid in self._running)
        if step == Step.NOTHING:
            return
        if step == Step.ABANDON:
            await self._finish(obj, core.abandoned(obj), "Warning", "ActionOutcomeUnknown")
        elif step == Step.EXPIRE:
            await self._write(
                obj, core.with_phase(obj, ActionPhase.EXPIRED, "expired before it was executed")
            )
        elif step == Step.REJECT:
            await self._write(obj, core.with_phase(obj, ActionPhase.REJECTED))
        elif step == Step.APPROVE:
            approved = await self._write(obj, core.with_phase(obj, ActionPhase.APPROVED))
            if approved is not None:
                await self._execute(approved)
        elif step == Step.EXECUTE:
            await self._execute(obj)

    # --- execution -------------------------------------------------------------------------------

    async def _execute(self, obj: dict[str, Any]) -> None:
        uid = str(obj["metadata"].get("uid"))
        # Check and mark with no await in between: of two executions started together (an event and the
        # timer) the second returns here, and never touches the mark the first one holds.
        if uid in self._running:
            return
        self._running.add(uid)
        try:
            await self._execute_marked(obj)
        finally:
            self._running.discard(uid)

    async def _execute_marked(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        namespace = str(obj["metadata"]["namespace"])
        target = await self._read_target(spec.get("target") or {})
        if isinstance(target, str):
            await self._fail_before_call(obj, target)
            return
        prepared = await self._server(namespace, str(spec.get("server")), str(spec.get("tool")))
        if isinstance(prepared, str):
            await self._fail_before_call(obj, prepared, target)
            return
        server, headers = prepared
        executing = await self._write(obj, core.with_phase(obj, ActionPhase.EXECUTING))
        if executing is None:
            return  # somebody moved it first (409): nothing was called
        final = await self._call(executing, server, headers)
        await self._finish(executing, final, target=target, keep_trying=True)

    async def _call(
        self, obj: dict[str, Any], server: MCPServerSpec, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Dry run (when the tool has one) and the one real call; the final status. Never raises but for
        cancellation (a dying operator: the next one finds the request Executing)."""
        spec = obj.get("spec") or {}
        tool = str(spec.get("tool"))
        dry_run: dict[str, Any] | None = None
        called = False
        try:
            with anyio.fail_after(EXECUTION_TIMEOUT_SECONDS):
                async with mcp_session(server, headers, self._pool(), EXECUTION_TIMEOUT_SECONDS) as (
                    session,
                    _,
                ):
                    tools = await list_all_tools(
                        lambda cursor: list_tools_page(session, cursor), MAX_TOOL_PAGES
                    )
                    offered = next((t for t in tools if t.name == tool), None)
                    if offered is None:
                        return core.with_phase(obj, ActionPhase.FAILED, f"the server offers no tool {tool!r}")
                    flag = core.dry_run_argument(offered.inputSchema)
                    if flag is not None:
                        trial = core.tool_outcome(
                            await session.call_tool(
                                tool, core.call_arguments(spec.get("arguments"), flag, True)
                            )
                        )
                        dry_run = {"ok": not trial.is_error, "excerpt": trial.text}
                        if trial.is_error:
                            return core.with_phase(
                                obj, ActionPhase.FAILED, "the dry run failed: not executed", dryRun=dry_run
                            )
                    called = True
                    result = await session.call_tool(
                        tool, core.call_arguments(spec.get("arguments"), flag, False)
                    )
        except BaseException as exc:  # the SDK raises ExceptionGroups out of its task groups
            if isinstance(exc, KeyboardInterrupt | SystemExit) or _cancelled():
                raise
            why = describe_exception(exc) if not isinstance(exc, TimeoutError) else "no answer in time"
            reason = f"{'outcome unknown' if called else 'not executed'}: {why}"
            return core.with_phase(obj, ActionPhase.FAILED, reason, dryRun=dry_run)
        status = core.executed(obj, core.tool_outcome(result), self.clock())
        if dry_run is not None:
            status["dryRun"] = dry_run
        return status

    async def _read_target(self, target: Mapping[str, Any]) -> dict[str, Any] | str:
        """The stored target (read with the operator's own credentials), or why not."""
        api_version, kind, name = (
            str(target.get("apiVersion")),
            str(target.get("kind")),
            str(target.get("name")),
        )
        try:
            found = await self._resource(api_version, kind)
            if found is None:
                return f"target kind {kind} of {api_version} is not served by the cluster"
            plural, namespaced = found
            namespace = target.get("namespace") if namespaced else None
            if namespaced and not namespace:
                return f"target {kind} {name} needs a namespace"
            obj = await self.kube.get(core.resource_path(api_version, plural, namespace, name))
        except KubeError as exc:
            return f"target could not be read: {exc}"
        if obj is None:
            return f"target not found: {kind} {'/'.join(p for p in (namespace, name) if p)}"
        return dict(obj)

    async def _resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        if api_version not in self._discovery:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            self._discovery[api_version] = await self.kube.get(base) or {}
        return core.find_resource(self._discovery[api_version], kind)

    async def _server(
        self, namespace: str, name: str, tool: str
    ) -> tuple[MCPServerSpec, dict[str, str]] | str:
        path = f"/apis/{API_VERSION}/namespaces/{namespace}/{RESOURCES['MCPServer'].plural}/{name}"
        try:
            obj = await self.kube.get(path)
        except KubeError as exc:
            return f"MCPServer {name} could not be read: {exc}"
        if obj is None:
            return f"MCPServer {name} not found"
        try:
            spec = MCPServerSpec.model_validate(obj.get("spec") or {}, by_name=False)
        except ValidationError:
            return f"MCPServer {name} is invalid"
        refusal = core.server_refusal(spec, tool)
        if refusal:
            return refusal
        headers, problem = await resolve_headers(spec, namespace, self.kube.read_secret_value)
        if problem:
            return problem
        assert spec.url is not None
        try:
            address = await resolve_refusal(spec.url, self.allow_loopback)
        except Exception as exc:
            return f"MCPServer {name}: {describe_exception(exc)}"
        if address:
            return f"MCPServer {name}: address refused: {address}"
        return spec, headers

    # --- writes --------------------------------------------------------------------------------------

    async def _write(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
        """Replace the status, on the condition that the object is still the version read; the stored
        object, or None when it changed meanwhile (409) or is gone."""
        meta = obj["metadata"]
        try:
            return await self._replace_status(obj, status)
        except KubeError as exc:
            if exc.status in (404, 409):
                logger.info("ActionRequest %s/%s changed meanwhile: %s", meta["namespace"], meta["name"], exc)
                return None
            raise

    async def _write_outcome(
        self, executing: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Store the outcome of a call that was made, through API blips: again after growing pauses on
        an error or no answer, and on a 409 again on the fresh object while it is still Executing (a label
        or annotation edit changes the resourceVersion too). None when it is gone, no longer Executing, or
        the pauses ran out: then (as when this process dies) the next look at it says "outcome unknown"."""
        meta = executing["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        current = executing
        pauses = iter(self.outcome_write_pauses)
        conflicts_left = MAX_OUTCOME_CONFLICTS
        while True:
            try:
                return await self._replace_status(current, {**(current.get("status") or {}), **status})
            except KubeError as exc:
                if exc.status == 404:
                    logger.warning("ActionRequest %s is gone: its outcome is not recorded", where)
                    return None
                if exc.status not in (409, 429) and exc.status < 500:
                    raise
                problem: Exception = exc
                if exc.status == 409:
                    fresh = await self._reread(executing)
                    if isinstance(fresh, dict):
                        if core.still_executing(fresh, str(meta.get("uid"))) and conflicts_left > 0:
                            conflicts_left -= 1
                            current = fresh
                            continue
                        logger.warning(
                            "ActionRequest %s left Executing or keeps changing: outcome not recorded", where
                        )
                        return None
                    if fresh is None:
                        logger.warning("ActionRequest %s is gone: its outcome is not recorded", where)
                        return None
                    problem = fresh
            except Exception as exc:  # no answer at all (connection refused or reset, timeout)
                problem = exc
            pause = next(pauses, None)
            if pause is None:
                logger.error("the outcome of ActionRequest %s could not be stored: %s", where, problem)
                return None
            logger.warning(
                "the outcome of ActionRequest %s is not stored yet (%s); again in %ss",
                where,
                cap_excerpt(describe_exception(problem), 300),
                pause,
            )
            await asyncio.sleep(pause)

    async def _reread(self, obj: dict[str, Any]) -> dict[str, Any] | Exception | None:
        """The stored object, None when it is gone, or the error reading it."""
        meta = obj["metadata"]
        path = f"/apis/{API_VERSION}/namespaces/{meta['namespace']}/{ACTION_REQUEST.plural}/{meta['name']}"
        try:
            found = await self.kube.get(path)
        except Exception as exc:
            return exc
        return dict(found) if found is not None else None

    async def _replace_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        body = {
            "apiVersion": API_VERSION,
            "kind": ACTION_REQUEST.kind,
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": obj.get("spec"),
            "status": status,
        }
        path = f"/apis/{API_VERSION}/namespaces/{meta['namespace']}/{ACTION_REQUEST.plural}/{meta['name']}/status"
        stored = await self.kube.request("PUT", path, body)
        self.metrics.actions.labels(status["phase"]).inc()
        return dict(stored)

    async def _fail_before_call(
        self, obj: dict[str, Any], reason: str, target: dict[str, Any] | None = None
    ) -> None:
        await self._finish(
            obj, core.with_phase(obj, ActionPhase.FAILED, f"not executed: {reason}"), target=target
        )

    async def _finish(
        self,
        obj: dict[str, Any],
        status: dict[str, Any],
        event_type: str | None = None,
        reason: str | None = None,
        target: dict[str, Any] | None = None,
        keep_trying: bool = False,
    ) -> None:
        """Write the final ``status`` and post the Events; ``keep_trying`` for the outcome of a call that
        was made (nothing else would know it), not for a write the next look at the request redoes."""
        stored = await (self._write_outcome(obj, status) if keep_trying else self._write(obj, status))
        if stored is None:
            return
        succeeded = status["phase"] == ActionPhase.SUCCEEDED
        event_type = event_type or ("Normal" if succeeded else "Warning")
        reason = reason or ("ActionSucceeded" if succeeded else "ActionFailed")
        message = f"{core.describe(stored)}: {status['phase']}"
        if status.get("reason"):
            message += f" ({status['reason']})"
        if status.get("result"):
            message += f": {status['result'].get('excerpt', '')}"
        now = format_time(self.clock())
        bodies = [
            core.target_event_body(
                stored,
                {**stored, "apiVersion": API_VERSION, "kind": ACTION_REQUEST.kind},
                event_type,
                reason,
                message,
                self.instance,
                now,
            )
        ]
        if target is not None:
            bodies.append(
                core.target_event_body(stored, target, event_type, reason, message, self.instance, now)
            )
        for body in bodies:
            try:
                await self.kube.create_event(str(body["metadata"]["namespace"]), body)
            except KubeError as exc:
                logger.warning("event %s not posted: %s", reason, cap_excerpt(str(exc), 300))


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of kopf's body (a read-only view) to build the statuses from."""
    return copy.deepcopy(dict(body))


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
