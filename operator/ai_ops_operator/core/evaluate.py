"""``evaluate``: the conditions of every resource of a namespace, and its default model (pure)."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from ai_ops_api.addresses import url_refusal
from ai_ops_api.agent_config import MiddlewareEntry, RunbookEntry
from ai_ops_api.conditions import (
    ACCEPTED,
    CONFIG_VALID,
    CONTENT_RESOLVED,
    DEFAULT,
    FALSE,
    MODEL_REF_VALIDATED,
    NOT_COMPUTED,
    PROVIDER_REF_VALIDATED,
    READY,
    SECRET_REF_VALIDATED,
    TRUE,
    UNKNOWN,
    Cond,
    Reason,
)
from ai_ops_api.middleware import (
    CUSTOM_MIDDLEWARE_GROUP,
    ChainProblem,
    CustomConfig,
    MiddlewareConfigError,
    check_chain,
    parse_middleware_config,
)
from ai_ops_api.providers import config_problems, parameter_problems
from ai_ops_api.runbooks import count_sections
from ai_ops_api.specs import (
    PROVIDERS_NEEDING_API_KEY,
    RUNBOOK_CONTENT_MAX,
    USABLE_HEALTH,
    USABLE_SECRET_LABEL,
    USABLE_SECRET_LABEL_VALUE,
    HealthState,
    HTTPHeader,
    LLMMiddlewareSpec,
    LLMModelSpec,
    LLMProviderSpec,
    MCPServerSpec,
    MCPTransport,
    ModelPurpose,
    RunbookSpec,
    SecretKeyRef,
)
from ai_ops_operator.core.runbooks import pack_shards, runbook_entry
from ai_ops_operator.core.snapshot import Evaluation, ServerHealth, Snapshot, Verdict
from ai_ops_operator.core.validation import apply_defaults, validate_resource

STDIO_OFF_MESSAGE = (
    "stdio MCP servers are off in this installation; an administrator allows commands with "
    "mcp.stdio.allowedCommands"
)


def _stdio_refusal(spec: MCPServerSpec, snap: Snapshot) -> str:
    if not snap.stdio_commands:
        return STDIO_OFF_MESSAGE
    return (
        f"stdio command {spec.command!r} is not allowed in this installation (allowed: "
        f"{', '.join(sorted(snap.stdio_commands))}); an administrator allows commands with "
        "mcp.stdio.allowedCommands"
    )


# --- helpers ------------------------------------------------------------------------------------


def _sort_key_by_age(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    # RFC 3339 timestamps in UTC sort lexically; objects without one (manifests) sort by name only.
    return (meta.get("creationTimestamp") or "", meta.get("name", ""))


def _spec_or_problems(obj: dict[str, Any], model: type[Any]) -> tuple[Any, str | None]:
    # What validation reads of the object; status, resourceVersion and timestamps do not matter, so a
    # pass over unchanged objects hits the cache (CEL evaluation costs milliseconds per object).
    meta = obj.get("metadata") or {}
    key = json.dumps(
        [obj.get("apiVersion"), obj.get("kind"), meta.get("name"), obj.get("spec")],
        sort_keys=True,
        default=str,
    )
    return _validated(key, model)  # type: ignore[arg-type]  # classes are hashable


@functools.lru_cache(maxsize=16384)
def _validated(key: str, model: type[Any]) -> tuple[Any, str | None]:
    """Validation of one object, memoized by its content (a pure function: the parsed spec is never mutated)."""
    api_version, kind, name, spec = json.loads(key)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    if spec is not None:
        obj["spec"] = spec
    problems = validate_resource(obj)
    if problems:
        return None, "; ".join(str(p) for p in problems)
    return model.model_validate(apply_defaults(obj)["spec"]), None


def _secret_cond(ref: SecretKeyRef | None, snap: Snapshot, what: str) -> Cond | None:
    if ref is None:
        return None
    secrets = snap.secrets
    if secrets is None:
        return Cond(
            SECRET_REF_VALIDATED,
            UNKNOWN,
            Reason.NOT_CHECKED,
            f"{what} Secret {ref.name}/{ref.key} not checked",
        )
    if ref.name not in secrets:
        return Cond(
            SECRET_REF_VALIDATED, FALSE, Reason.SECRET_NOT_FOUND, f"Secret {ref.name!r} not found ({what})"
        )
    if snap.usable_secrets is not None and ref.name not in snap.usable_secrets:
        return Cond(
            SECRET_REF_VALIDATED,
            FALSE,
            Reason.SECRET_NOT_USABLE,
            f"Secret {ref.name} is not labelled {USABLE_SECRET_LABEL}={USABLE_SECRET_LABEL_VALUE}; "
            f"label it to let ai-ops resources use it ({what})",
        )
    if ref.key not in secrets[ref.name]:
        return Cond(
            SECRET_REF_VALIDATED,
            FALSE,
            Reason.SECRET_KEY_NOT_FOUND,
            f"Secret {ref.name!r} has no key {ref.key!r} ({what})",
        )
    return Cond(
        SECRET_REF_VALIDATED, TRUE, Reason.SECRET_FOUND, f"Secret {ref.name}/{ref.key} found ({what})"
    )


# The reasons of a reference to another resource: (not found, not ready, ready).
_PROVIDER_REF_REASONS = (Reason.PROVIDER_NOT_FOUND, Reason.PROVIDER_NOT_READY, Reason.PROVIDER_READY)
_MODEL_REF_REASONS = (Reason.MODEL_NOT_FOUND, Reason.MODEL_NOT_READY, Reason.MODEL_READY)


def _ref_cond(
    type_: str, kind: str, reasons: tuple[Reason, Reason, Reason], name: str, target: Verdict | None
) -> Cond:
    """A reference to another resource: missing, not ready (with its reason) or ready."""
    not_found, not_ready, ready = reasons
    if target is None:
        return Cond(type_, FALSE, not_found, f"{kind} {name!r} not found")
    if not target.ready:
        return Cond(type_, FALSE, not_ready, f"{kind} {name!r} is not ready ({target.reason})")
    return Cond(type_, TRUE, ready, f"{kind} {name!r} is ready")


def _ready_from(checks: list[Cond], ready_message: str) -> Cond:
    """Ready is True when no check is False; its reason is the first failing check's."""
    for check in checks:
        if check.status == FALSE:
            return Cond(READY, FALSE, check.reason, check.message)
    return Cond(READY, TRUE, Reason.READY, ready_message)


def _is_embedding(model: Verdict | None) -> bool:
    return model is not None and model.spec is not None and model.spec.purpose == ModelPurpose.EMBEDDING


def installed_custom_middleware() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=CUSTOM_MIDDLEWARE_GROUP))


def middleware_entry(name: str, spec: LLMMiddlewareSpec) -> MiddlewareEntry:
    """An LLMMiddleware as the agent config lists it in its model's chain."""
    return MiddlewareEntry(
        name=name,
        type=spec.type,
        priority=spec.priority,
        critical=spec.critical,
        config=spec.config or {},
    )


def chain_problems(middlewares: Mapping[str, LLMMiddlewareSpec]) -> dict[str, list[ChainProblem]]:
    """The chain-rule problems (``check_chain``) of a namespace's valid LLMMiddleware, by name.

    The active middleware of each model make its chain. An inactive one joins no chain, so it shares no
    counter with anything; it is checked alone, for the rules of a single entry (a self-fallback)."""
    chains: dict[str, list[MiddlewareEntry]] = defaultdict(list)
    problems: list[ChainProblem] = []
    for name, spec in sorted(middlewares.items()):
        if spec.active:
            chains[spec.model_ref.name].append(middleware_entry(name, spec))
        else:
            problems += check_chain(spec.model_ref.name, [middleware_entry(name, spec)])
    for model_name, entries in sorted(chains.items()):
        problems += check_chain(model_name, entries)
    by_name: dict[str, list[ChainProblem]] = defaultdict(list)
    for problem in problems:
        by_name[problem.entry].append(problem)
    return dict(by_name)


# --- evaluation ---------------------------------------------------------------------------------


def _not_evaluated(kind: str, name: str, error: Exception, spec: Any = None) -> Verdict:
    """The verdict of an object whose evaluation raised: not ready, naming the exception's type only (its
    text may quote the spec, an inline header value say, and a status is read by more people than a log)."""
    message = (
        f"the operator could not evaluate this object: {type(error).__name__} (a bug; the operator's "
        "log has the details)"
    )
    return Verdict(kind, name, [Cond(READY, FALSE, NOT_COMPUTED, message)], spec=spec)


def _isolated(
    failures: dict[tuple[str, str], Exception],
    kind: str,
    name: str,
    evaluate_one: Callable[..., Verdict],
    *args: Any,
    spec: Any = None,
) -> Verdict:
    """``evaluate_one(name, *args)``, or, when it raises, the object alone is marked and the rest of the
    namespace is evaluated as usual (its dependents see it not ready)."""
    try:
        return evaluate_one(name, *args)
    except Exception as exc:
        failures[(kind, name)] = exc
        return _not_evaluated(kind, name, exc, spec)


def _valid_spec(obj: dict[str, Any], model: type[Any]) -> Any:
    try:
        return _spec_or_problems(obj, model)[0]
    except Exception:  # the object's own evaluation raises it again, and marks the object
        return None


def _evaluate_provider(name: str, obj: dict[str, Any], snap: Snapshot) -> Verdict:
    spec, problems = _spec_or_problems(obj, LLMProviderSpec)
    if problems:
        return Verdict("LLMProvider", name, [Cond(READY, FALSE, Reason.INVALID_SPEC, problems)])
    checks = [c for c in [_secret_cond(spec.api_key_secret_ref, snap, "API key")] if c]
    refused = config_problems(spec.type, spec.config)
    if refused:
        checks.append(Cond(CONFIG_VALID, FALSE, Reason.PARAMETER_NOT_ALLOWED, "; ".join(refused)))
    if not spec.enabled:
        checks.append(
            Cond(READY, FALSE, Reason.PROVIDER_DISABLED, "the provider is disabled (spec.enabled: false)")
        )
    ready = _ready_from(checks, f"{spec.type.value} provider is ready")
    return Verdict("LLMProvider", name, [*(c for c in checks if c.type != READY), ready], spec=spec)


def _evaluate_model(name: str, obj: dict[str, Any], snap: Snapshot, providers: dict[str, Verdict]) -> Verdict:
    spec, problems = _spec_or_problems(obj, LLMModelSpec)
    if problems:
        return Verdict("LLMModel", name, [Cond(READY, FALSE, Reason.INVALID_SPEC, problems)])
    conds: list[Cond] = []
    provider_name = spec.provider_ref.name
    provider = providers.get(provider_name)
    if provider is not None and provider.spec is not None and not provider.spec.enabled:
        conds.append(
            Cond(
                PROVIDER_REF_VALIDATED,
                FALSE,
                Reason.PROVIDER_DISABLED,
                f"LLMProvider {provider_name!r} is disabled",
            )
        )
    else:
        conds.append(
            _ref_cond(PROVIDER_REF_VALIDATED, "LLMProvider", _PROVIDER_REF_REASONS, provider_name, provider)
        )
    # The effective key: the model's, else the provider's.
    provider_spec = provider.spec if provider is not None else None
    key_ref = spec.api_key_secret_ref or (provider_spec.api_key_secret_ref if provider_spec else None)
    secret = _secret_cond(key_ref, snap, "API key")
    if secret is not None:
        conds.append(secret)
    elif provider_spec is not None and provider_spec.type in PROVIDERS_NEEDING_API_KEY:
        conds.append(
            Cond(
                SECRET_REF_VALIDATED,
                FALSE,
                Reason.API_KEY_REQUIRED,
                f"{provider_spec.type.value} needs an API key: set apiKeySecretRef on the model or its provider",
            )
        )
    if provider_spec is not None:
        refused = parameter_problems(provider_spec.type, spec.parameters, spec.purpose)
        if refused:
            conds.append(Cond(CONFIG_VALID, FALSE, Reason.PARAMETER_NOT_ALLOWED, "; ".join(refused)))
    conds.append(_ready_from(conds, f"model {spec.model!r} on {provider_name} is ready"))
    return Verdict("LLMModel", name, conds, spec=spec)


def _evaluate_middleware(
    name: str,
    obj: dict[str, Any],
    models: dict[str, Verdict],
    referenced: dict[str, Verdict],
    custom: frozenset[str],
    chain: list[ChainProblem],
) -> Verdict:
    """``models``: owner readiness before middleware is considered (a critical middleware must not make its
    own model's reference fail); ``referenced``: final readiness of models named in the config;
    ``chain``: the chain rules this middleware breaks."""
    spec, problems = _spec_or_problems(obj, LLMMiddlewareSpec)
    if problems:
        return Verdict(
            "LLMMiddleware",
            name,
            [
                Cond(CONFIG_VALID, FALSE, Reason.INVALID_SPEC, problems),
                Cond(READY, FALSE, Reason.INVALID_SPEC, problems),
            ],
        )
    conds: list[Cond] = []
    model_name = spec.model_ref.name
    if _is_embedding(models.get(model_name)):
        conds.append(
            Cond(
                MODEL_REF_VALIDATED,
                FALSE,
                Reason.EMBEDDING_MODEL,
                f"LLMModel {model_name!r} is an embedding model: middleware applies to chat models only",
            )
        )
    else:
        conds.append(
            _ref_cond(MODEL_REF_VALIDATED, "LLMModel", _MODEL_REF_REASONS, model_name, models.get(model_name))
        )
    try:
        parsed = parse_middleware_config(spec.type, spec.config)
    except MiddlewareConfigError as exc:
        conds.append(Cond(CONFIG_VALID, FALSE, Reason.INVALID_CONFIG, str(exc)))
    else:
        missing = [m for m in parsed.referenced_models() if m not in referenced]
        not_ready = [m for m in parsed.referenced_models() if m in referenced and not referenced[m].ready]
        embedding = [m for m in parsed.referenced_models() if _is_embedding(referenced.get(m))]
        if missing:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    Reason.REFERENCED_MODEL_NOT_FOUND,
                    f"LLMModel(s) not found: {', '.join(missing)}",
                )
            )
        elif embedding:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    Reason.EMBEDDING_MODEL,
                    f"embedding LLMModel(s) cannot answer chat requests: {', '.join(embedding)}",
                )
            )
        elif isinstance(parsed, CustomConfig) and parsed.entry_point not in custom:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    Reason.ENTRY_POINT_NOT_FOUND,
                    f"no middleware {parsed.entry_point!r} is installed in the entry-point group "
                    f"{CUSTOM_MIDDLEWARE_GROUP}",
                )
            )
        elif chain:
            # Before the referenced models' readiness: a self-fallback takes its own model down, which
            # must not turn its reason into ReferencedModelNotReady on the next pass.
            problem = chain[0]
            conds.append(
                Cond(CONFIG_VALID, FALSE, Reason(problem.rule), f"{problem.path}: {problem.message}")
            )
        elif not_ready:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    Reason.REFERENCED_MODEL_NOT_READY,
                    f"LLMModel(s) not ready: {', '.join(not_ready)}",
                )
            )
        else:
            conds.append(Cond(CONFIG_VALID, TRUE, Reason.CONFIG_VALID, f"{spec.type.value} config is valid"))
    if not spec.active:
        conds.append(_ready_from(conds, "inactive: left out of the chain"))
    else:
        conds.append(_ready_from(conds, f"{spec.type.value} middleware is ready (priority {spec.priority})"))
    return Verdict("LLMMiddleware", name, conds, spec=spec)


def _evaluate_mcpserver(name: str, obj: dict[str, Any], snap: Snapshot) -> Verdict:
    spec, problems = _spec_or_problems(obj, MCPServerSpec)
    if problems:
        return Verdict(
            "MCPServer",
            name,
            [
                Cond(ACCEPTED, FALSE, Reason.INVALID_SPEC, problems),
                Cond(READY, FALSE, Reason.INVALID_SPEC, problems),
            ],
        )
    conds: list[Cond] = []
    refusal = url_refusal(spec.url, snap.allow_loopback) if spec.url else None
    secret_problem = None
    for header in [*(spec.headers or []), *(spec.env or [])]:
        if header.value_from is not None:
            what = f"header {header.name}" if isinstance(header, HTTPHeader) else f"env {header.name}"
            cond = _secret_cond(header.value_from.secret_key_ref, snap, what)
            if cond is not None and cond.status == FALSE:
                secret_problem = cond
                break
    stdio_refused = (
        spec.transport == MCPTransport.STDIO
        and snap.stdio_commands is not None
        and spec.command not in snap.stdio_commands
    )
    if refusal:
        conds.append(Cond(ACCEPTED, FALSE, Reason.URL_NOT_ALLOWED, refusal))
    elif stdio_refused:
        conds.append(Cond(ACCEPTED, FALSE, Reason.STDIO_NOT_ALLOWED, _stdio_refusal(spec, snap)))
    elif secret_problem:
        conds.append(Cond(ACCEPTED, FALSE, secret_problem.reason, secret_problem.message))
    else:
        conds.append(Cond(ACCEPTED, TRUE, Reason.ACCEPTED, "spec is valid and its Secrets exist"))
    state = server_health_state(spec, snap.health.get(name) if snap.health is not None else None)
    if conds[0].status == FALSE:
        ready = Cond(READY, FALSE, conds[0].reason, conds[0].message)
    elif spec.maintenance:
        ready = Cond(READY, FALSE, Reason.MAINTENANCE, "in maintenance: left out of the agent and not probed")
    elif snap.health is None and state.state == HealthState.UNKNOWN:
        ready = Cond(READY, UNKNOWN, Reason.NOT_PROBED, "not probed (offline rendering)")
    elif state.state == HealthState.UNHEALTHY and state.refused:
        ready = Cond(READY, FALSE, Reason.URL_NOT_ALLOWED, state.message)
    elif state.state in USABLE_HEALTH:
        ready = Cond(READY, TRUE, Reason(state.state), state.message or f"health is {state.state.value}")
    else:
        ready = Cond(READY, FALSE, Reason(state.state), state.message or f"health is {state.state.value}")
    conds.append(ready)
    return Verdict("MCPServer", name, conds, spec=spec)


def server_health_state(spec: MCPServerSpec, probed: ServerHealth | None) -> ServerHealth:
    """The health a server has before or without probing, else what the probes found."""
    if spec.maintenance:
        return ServerHealth(HealthState.MAINTENANCE, message="in maintenance")
    if spec.transport == MCPTransport.STDIO:
        return ServerHealth(HealthState.NOT_PROBED, message="stdio servers run inside the chat service")
    if not spec.health_check.enabled:
        return ServerHealth(HealthState.NOT_PROBED, message="health checks are disabled")
    return probed or ServerHealth(HealthState.UNKNOWN, message="not probed yet")


def probeable_servers(ev: Evaluation) -> dict[str, MCPServerSpec]:
    """The MCP servers the probes must reach: valid, accepted, HTTP, not in maintenance, checks enabled."""
    servers: dict[str, MCPServerSpec] = {}
    for name, verdict in ev.mcpservers.items():
        spec: MCPServerSpec | None = verdict.spec
        accepted = verdict.condition(ACCEPTED)
        if (
            spec is not None
            and accepted is not None
            and accepted.status == TRUE
            and not spec.maintenance
            and spec.transport != MCPTransport.STDIO
            and spec.health_check.enabled
        ):
            servers[name] = spec
    return servers


def evaluate(snap: Snapshot) -> Evaluation:
    """Verdicts for every resource of the namespace, and the default model.

    An exception evaluating one object marks that object (``_not_evaluated``) and is kept in
    ``failures``; it never fails the namespace."""
    result = Evaluation(snap.namespace)
    failures = result.failures
    for name, obj in sorted(snap.providers.items()):
        result.providers[name] = _isolated(failures, "LLMProvider", name, _evaluate_provider, obj, snap)
    base_models = {
        name: _isolated(failures, "LLMModel", name, _evaluate_model, obj, snap, result.providers)
        for name, obj in sorted(snap.models.items())
    }
    custom = snap.custom_middleware if snap.custom_middleware is not None else installed_custom_middleware()
    valid_middleware = {
        name: spec
        for name, obj in snap.middlewares.items()
        if (spec := _valid_spec(obj, LLMMiddlewareSpec)) is not None
    }
    chains = chain_problems(valid_middleware)
    # A critical middleware that is not ready makes its model unavailable, which can make a middleware
    # naming that model (fallback, summarization) not ready in turn: iterate to a fixpoint.
    final_models = dict(base_models)
    for _ in range(len(snap.models) + 1):
        result.middlewares = {
            # The spec of one that fails: a critical one must still hold its model back.
            name: _isolated(
                failures,
                "LLMMiddleware",
                name,
                _evaluate_middleware,
                obj,
                base_models,
                final_models,
                custom,
                chains.get(name, []),
                spec=valid_middleware.get(name),
            )
            for name, obj in sorted(snap.middlewares.items())
        }
        updated = {
            name: _isolated(failures, "LLMModel", name, _with_critical_middleware, v, result.middlewares)
            for name, v in base_models.items()
        }
        if {n: v.ready for n, v in updated.items()} == {n: v.ready for n, v in final_models.items()}:
            final_models = updated
            break
        final_models = updated
    result.models = final_models
    _choose_default(result, snap)
    _choose_embedding_model(result, snap)
    for name, obj in sorted(snap.mcpservers.items()):
        result.mcpservers[name] = _isolated(failures, "MCPServer", name, _evaluate_mcpserver, obj, snap)
    _evaluate_runbooks(result, snap)
    return result


def _with_critical_middleware(name: str, model: Verdict, middlewares: dict[str, Verdict]) -> Verdict:
    # Each entry carries its own Ready reason, so the model's condition names the rule (SelfFallback,
    # DuplicateCounter, ...) and not only which middleware broke it.
    broken = sorted(
        f"{mw.name} ({own.reason})" if (own := mw.condition(READY)) is not None else mw.name
        for mw in middlewares.values()
        if mw.spec is not None
        and mw.spec.model_ref.name == name
        and mw.spec.critical
        and mw.spec.active
        and not mw.ready
        # No ModelRefValidated: its evaluation raised, and its model must not run without it.
        and ((ref := mw.condition(MODEL_REF_VALIDATED)) is None or ref.status == TRUE)
    )
    if not broken or not model.ready:
        return model
    ready = Cond(
        READY,
        FALSE,
        Reason.CRITICAL_MIDDLEWARE_NOT_READY,
        f"critical middleware not ready: {', '.join(broken)}",
    )
    return Verdict(model.kind, model.name, [*model.conditions[:-1], ready], spec=model.spec)


def _choose_default(result: Evaluation, snap: Snapshot) -> None:
    """The oldest ready chat model asking to be default; else the oldest ready chat model."""
    ready = [snap.models[n] for n, v in result.models.items() if v.ready and not _is_embedding(v)]
    asking = sorted((m for m in ready if m.get("spec", {}).get("default")), key=_sort_key_by_age)
    candidates = asking or sorted(ready, key=_sort_key_by_age)
    result.default_model = candidates[0]["metadata"]["name"] if candidates else None
    for name, verdict in result.models.items():
        if verdict.spec is None or not verdict.spec.default:
            continue
        if name == result.default_model:
            verdict.conditions.insert(
                -1, Cond(DEFAULT, TRUE, Reason.IS_DEFAULT, "this is the namespace's default model")
            )
        elif verdict.ready and result.default_model is not None:
            message = (
                f"another model also has default: true; {result.default_model!r} is older and is the default"
            )
            verdict.conditions.insert(-1, Cond(DEFAULT, FALSE, Reason.DEFAULT_CONFLICT, message))
            verdict.warnings.append(message)
        else:
            verdict.conditions.insert(
                -1, Cond(DEFAULT, FALSE, Reason.NOT_READY, "not ready, so not the default")
            )


def _choose_embedding_model(result: Evaluation, snap: Snapshot) -> None:
    """The oldest ready embedding model embeds the namespace's runbooks; the others are told so."""
    ready = sorted(
        (snap.models[n] for n, v in result.models.items() if v.ready and _is_embedding(v)),
        key=_sort_key_by_age,
    )
    result.embedding_model = ready[0]["metadata"]["name"] if ready else None
    for obj in ready[1:]:
        result.models[obj["metadata"]["name"]].warnings.append(
            f"another embedding model, {result.embedding_model!r}, is older and embeds the runbooks"
        )


# --- runbooks -----------------------------------------------------------------------------------


def _runbook_content(
    spec: RunbookSpec, configmaps: Mapping[str, Mapping[str, str]]
) -> tuple[str | None, Cond]:
    """The runbook's Markdown (None when it cannot be used) and its ContentResolved condition."""
    if spec.content_from is None:
        content = spec.content or ""
        where = ""
        resolved = Cond(CONTENT_RESOLVED, TRUE, Reason.CONTENT_INLINE, "the content is inline")
    else:
        ref = spec.content_from.config_map_key_ref
        data = configmaps.get(ref.name)
        if data is None:
            return None, Cond(
                CONTENT_RESOLVED, FALSE, Reason.CONFIGMAP_NOT_FOUND, f"ConfigMap {ref.name!r} not found"
            )
        if not isinstance(data.get(ref.key), str):
            return None, Cond(
                CONTENT_RESOLVED,
                FALSE,
                Reason.CONFIGMAP_KEY_NOT_FOUND,
                f"ConfigMap {ref.name!r} has no key {ref.key!r} in its data",
            )
        content = data[ref.key]
        where = f" in ConfigMap {ref.name}/{ref.key}"
        if len(content) > RUNBOOK_CONTENT_MAX:
            return None, Cond(
                CONTENT_RESOLVED,
                FALSE,
                Reason.TOO_LARGE,
                f"the content{where} has {len(content)} characters; a runbook has at most {RUNBOOK_CONTENT_MAX}",
            )
        resolved = Cond(CONTENT_RESOLVED, TRUE, Reason.CONFIGMAP_FOUND, f"the content is{where}")
    if not content.strip():
        return None, Cond(CONTENT_RESOLVED, FALSE, Reason.EMPTY_CONTENT, f"the content{where} is empty")
    return content, resolved


# A runbook with no published content: the status fields describing it are removed.
_NO_CONTENT_FIELDS: dict[str, Any] = {"contentHash": None, "sections": None}


def _evaluate_runbook(name: str, obj: dict[str, Any], snap: Snapshot) -> tuple[Verdict, RunbookEntry | None]:
    """A runbook's verdict, and its entry in the shards when it is Ready."""
    spec, problems = _spec_or_problems(obj, RunbookSpec)
    if problems:
        verdict = Verdict("Runbook", name, [Cond(READY, FALSE, Reason.INVALID_SPEC, problems)])
        verdict.status_fields = dict(_NO_CONTENT_FIELDS)
        return verdict, None
    content, resolved = _runbook_content(spec, snap.configmaps)
    entry = runbook_entry(name, spec, content) if content is not None else None
    fields: dict[str, Any] = {
        "contentHash": entry.content_hash if entry else None,
        "sections": count_sections(content) if content is not None else None,
    }
    published = None
    if not spec.enabled:
        ready = Cond(READY, FALSE, Reason.DISABLED, "the runbook is disabled (spec.enabled: false)")
    elif entry is None:
        ready = Cond(READY, FALSE, resolved.reason, resolved.message)
    else:
        sections = fields["sections"]
        ready = Cond(
            READY,
            TRUE,
            Reason.READY,
            f"published to the agent ({sections} section{'' if sections == 1 else 's'})",
        )
        published = entry
    return Verdict("Runbook", name, [resolved, ready], spec=spec, status_fields=fields), published


def _evaluate_runbooks(result: Evaluation, snap: Snapshot) -> None:
    """Every runbook's verdict, and the shards that publish the Ready ones."""
    entries = []
    for name, obj in sorted(snap.runbooks.items()):
        try:
            verdict, entry = _evaluate_runbook(name, obj, snap)
        except Exception as exc:  # as _isolated does, for a verdict that comes with an entry
            result.failures[("Runbook", name)] = exc
            verdict, entry = _not_evaluated("Runbook", name, exc), None
            verdict.status_fields = dict(_NO_CONTENT_FIELDS)
        result.runbooks[name] = verdict
        if entry is not None:
            entries.append(entry)
    packing = pack_shards(snap.namespace, entries)
    for name, why in packing.left_out.items():
        verdict = result.runbooks[name]
        verdict.conditions[-1] = Cond(READY, FALSE, Reason.TOO_LARGE, why)
    result.runbook_shards = packing.shards
