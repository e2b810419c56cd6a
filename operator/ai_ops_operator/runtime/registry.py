"""The kopf handlers of the operator: registration only.

- ``@kopf.index`` per watched kind keeps what a namespace pass needs in memory (indices.py says what);
  kopf hands the indices to every handler, the startup handler passes them to the reconciler's view.
- ``@kopf.on.event`` per watched kind only schedules a pass of the object's namespace. Event handlers
  need no finalizer and keep no diffbase, so deleting anything never waits for the operator and kopf
  never writes into our objects (Secrets included).
- ``@kopf.on.startup`` / ``@kopf.on.cleanup`` open and close what the runtime shares (the probes'
  connection pool, the metrics endpoint, the background loops); ``@kopf.on.login`` hands kopf the same
  credentials as the operator's own API client.

Shared state reaches the handlers through kopf's ``memo``: ``memo.runtime`` is the ``OperatorRuntime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import kopf

from ai_ops_api.actions import ACTION_REQUEST, FINAL_PHASES, current_phase
from ai_ops_api.specs import GROUP, RESOURCES, VERSION
from ai_ops_operator.runtime import indices

if TYPE_CHECKING:
    from ai_ops_operator.runtime.operator import OperatorRuntime


def _runtime(memo: kopf.Memo) -> OperatorRuntime:
    runtime: OperatorRuntime = memo.runtime
    return runtime


# --- activities -------------------------------------------------------------------------------------


def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    info: kopf.ConnectionInfo = _runtime(memo).kube.connection_info()
    return info


async def startup(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf passes every index as a kwarg named by its id.
    await _runtime(memo).start({name: kwargs[name] for name in indices.ALL_INDICES})


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).stop()


# --- indices ----------------------------------------------------------------------------------------


def index_object(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, Any]:
    return {namespace: indices.compact_object(body)}


def index_secret_keys(
    body: kopf.Body, name: str | None, namespace: str | None, **_: Any
) -> dict[str | None, Any]:
    return {namespace: indices.secret_keys(str(name), body)}


def index_deployment(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, Any]:
    return {namespace: indices.deployment_template(body)}


def index_configmap(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, Any]:
    return {namespace: indices.configmap_entry(body)}


def index_runbook_configmap(
    body: kopf.Body, name: str | None, namespace: str | None, memo: kopf.Memo, **_: Any
) -> dict[str | None, Any]:
    referenced = bool(namespace) and str(name) in _runtime(memo).reconciler.referenced_configmaps(
        str(namespace)
    )
    return {namespace: indices.runbook_configmap_entry(body, referenced)}


# --- filters and events -------------------------------------------------------------------------


def is_chat_deployment(name: str | None, memo: kopf.Memo, **_: Any) -> bool:
    return name == _runtime(memo).settings.chat_deployment


def is_agent_configmap(name: str | None, memo: kopf.Memo, **_: Any) -> bool:
    return name == _runtime(memo).settings.configmap_name


def is_runbook_configmap(name: str | None, namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """A ConfigMap a Runbook reads, or a runbook shard (somebody changing or deleting one gets a pass)."""
    if not name or not namespace:
        return False
    return indices.is_shard_name(name) or name in _runtime(memo).reconciler.referenced_configmaps(namespace)


async def schedule_namespace(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace:
        _runtime(memo).reconciler.schedule(namespace)


# --- actions ------------------------------------------------------------------------------------------


async def handle_action(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).actions.handle(body)


def is_open_action(body: kopf.Body, **_: Any) -> bool:
    """Not yet in a final phase: only these get the expiry timer (and its finalizer, which kopf drops
    again once the request is final)."""
    return current_phase(dict(body)) not in FINAL_PHASES


def build_registry(actions: bool = True, action_sweep_seconds: float = 10.0) -> kopf.OperatorRegistry:
    """A registry of its own per operator instance (tests run several in one process)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    for kind, index_id in indices.KIND_INDEX.items():
        plural = RESOURCES[kind].plural
        kopf.index(GROUP, VERSION, plural, id=index_id, registry=registry)(index_object)
        kopf.on.event(GROUP, VERSION, plural, id=f"watch_{plural}", registry=registry)(schedule_namespace)
    watched = (
        ("v1", "secrets", indices.SECRETS_INDEX, index_secret_keys, None),
        ("apps/v1", "deployments", indices.DEPLOYMENT_INDEX, index_deployment, is_chat_deployment),
        ("v1", "configmaps", indices.CONFIGMAP_INDEX, index_configmap, is_agent_configmap),
    )
    for api_version, plural, index_id, index_fn, when in watched:
        resource = (*api_version.split("/"), plural)  # ("v1", "secrets"), ("apps", "v1", "deployments")
        kopf.index(*resource, id=index_id, when=when, registry=registry)(index_fn)
        kopf.on.event(*resource, id=f"watch_{plural}", when=when, registry=registry)(schedule_namespace)
    # Every ConfigMap by name (the data of referenced ones only): a Runbook's ConfigMap is then known to
    # exist or not, even when it was listed before the Runbook naming it.
    kopf.index("v1", "configmaps", id=indices.RUNBOOK_CONFIGMAPS_INDEX, registry=registry)(
        index_runbook_configmap
    )
    kopf.on.event(
        "v1", "configmaps", id="watch_runbook_configmaps", when=is_runbook_configmap, registry=registry
    )(schedule_namespace)
    if not actions:
        return registry
    # ActionRequests: every event (a decision, the operator's start seeing one Executing) and a timer
    # while open (expiry needs no event; a missed event is caught up).
    kopf.on.event(GROUP, VERSION, ACTION_REQUEST.plural, id="actionrequests", registry=registry)(
        handle_action
    )
    kopf.timer(
        GROUP,
        VERSION,
        ACTION_REQUEST.plural,
        id="actionrequests_sweep",
        interval=action_sweep_seconds,
        when=is_open_action,
        registry=registry,
    )(handle_action)
    return registry
