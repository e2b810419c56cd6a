"""The pure core of the operator: a namespace's resources in, verdicts and the agent config out.

``evaluate`` decides, for every resource of one namespace, its conditions (is it valid, are its
references and Secrets there, is it usable); ``translate`` turns the usable set into the ``AgentConfig``
the chat service reads. Both are pure functions of a ``Snapshot``: no Kubernetes calls, no clock, no I/O,
so the operator (from kopf's in-memory indices) and ``ai-ops render`` (from manifest files) share them,
and they are tested with plain data and golden files (like kagent's translator).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlparse

from ai_ops_api.agent_config import (
    AgentConfig,
    MCPServerEntry,
    MiddlewareEntry,
    ModelEntry,
    NamedValue,
    ProviderEntry,
    SecretRef,
    ToolFilterEntry,
)
from ai_ops_api.middleware import (
    CUSTOM_MIDDLEWARE_GROUP,
    CustomConfig,
    MiddlewareConfigError,
    parse_middleware_config,
)
from ai_ops_api.specs import (
    PROVIDERS_NEEDING_API_KEY,
    USABLE_HEALTH,
    HealthState,
    LLMMiddlewareSpec,
    LLMModelSpec,
    LLMProviderSpec,
    MCPServerSpec,
    MCPTransport,
    SecretKeyRef,
)
from ai_ops_operator.core.validation import apply_defaults, validate_resource

# Condition types.
READY = "Ready"
SECRET_REF_VALIDATED = "SecretRefValidated"
PROVIDER_REF_VALIDATED = "ProviderRefValidated"
MODEL_REF_VALIDATED = "ModelRefValidated"
CONFIG_VALID = "ConfigValid"
ACCEPTED = "Accepted"
DEFAULT = "Default"
HEALTHY = "Healthy"

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# Addresses an MCP server URL may never point at: link-local (incl. cloud metadata 169.254.169.254 and
# fd00:ec2::254) and the metadata names/addresses of the big clouds.
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "169.254.169.254", "100.100.100.200", "fd00:ec2::254"}
)


@dataclass(frozen=True)
class Cond:
    """A condition as computed; the operator adds lastTransitionTime and observedGeneration."""

    type: str
    status: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class ServerHealth:
    """What the probes know of an MCP server (from its status, or from ``render --probe``)."""

    state: HealthState
    tools: tuple[str, ...] = ()
    message: str = ""


@dataclass
class Snapshot:
    """Everything of one namespace that the verdicts depend on.

    Resources are full objects (``metadata`` + ``spec``) keyed by name. ``secrets`` maps a Secret name to
    the keys of its data (values are never needed); ``None`` means unknown (offline rendering), and then
    Secret references are taken on trust. ``health`` maps MCP server names to probe results; ``None``
    means not probed (offline rendering): every server not in maintenance is then included as Unknown.
    """

    namespace: str
    providers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    models: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    middlewares: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    mcpservers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    secrets: Mapping[str, frozenset[str]] | None = None
    health: Mapping[str, ServerHealth] | None = None
    allow_loopback: bool = False
    # Names in the ai_ops.middleware entry-point group; None: look them up in this process.
    custom_middleware: frozenset[str] | None = None


@dataclass
class Verdict:
    kind: str
    name: str
    conditions: list[Cond]
    # Parsed spec when it is valid.
    spec: Any = None
    warnings: list[str] = field(default_factory=list)

    def condition(self, type_: str) -> Cond | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        cond = self.condition(READY)
        return cond is not None and cond.status == TRUE

    @property
    def reason(self) -> str:
        cond = self.condition(READY)
        return cond.reason if cond else ""


@dataclass
class Evaluation:
    namespace: str
    providers: dict[str, Verdict] = field(default_factory=dict)
    models: dict[str, Verdict] = field(default_factory=dict)
    middlewares: dict[str, Verdict] = field(default_factory=dict)
    mcpservers: dict[str, Verdict] = field(default_factory=dict)
    default_model: str | None = None

    def all(self) -> Iterable[Verdict]:
        for group in (self.providers, self.models, self.middlewares, self.mcpservers):
            yield from group.values()


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


def _secret_cond(
    ref: SecretKeyRef | None, secrets: Mapping[str, frozenset[str]] | None, what: str
) -> Cond | None:
    if ref is None:
        return None
    if secrets is None:
        return Cond(
            SECRET_REF_VALIDATED, UNKNOWN, "NotChecked", f"{what} Secret {ref.name}/{ref.key} not checked"
        )
    if ref.name not in secrets:
        return Cond(SECRET_REF_VALIDATED, FALSE, "SecretNotFound", f"Secret {ref.name!r} not found ({what})")
    if ref.key not in secrets[ref.name]:
        return Cond(
            SECRET_REF_VALIDATED,
            FALSE,
            "SecretKeyNotFound",
            f"Secret {ref.name!r} has no key {ref.key!r} ({what})",
        )
    return Cond(SECRET_REF_VALIDATED, TRUE, "SecretFound", f"Secret {ref.name}/{ref.key} found ({what})")


def _ref_cond(type_: str, kind: str, reason_prefix: str, name: str, target: Verdict | None) -> Cond:
    """A reference to another resource: missing, not ready (with its reason) or ready."""
    if target is None:
        return Cond(type_, FALSE, f"{reason_prefix}NotFound", f"{kind} {name!r} not found")
    if not target.ready:
        return Cond(
            type_, FALSE, f"{reason_prefix}NotReady", f"{kind} {name!r} is not ready ({target.reason})"
        )
    return Cond(type_, TRUE, f"{reason_prefix}Ready", f"{kind} {name!r} is ready")


def _ready_from(checks: list[Cond], ready_message: str) -> Cond:
    """Ready is True when no check is False; its reason is the first failing check's."""
    for check in checks:
        if check.status == FALSE:
            return Cond(READY, FALSE, check.reason, check.message)
    return Cond(READY, TRUE, "Ready", ready_message)


def url_refusal(url: str, allow_loopback: bool) -> str | None:
    """Why an MCP server URL is not allowed, or None. Literal addresses and well-known metadata names only:
    names are resolved (and checked again) when the server is probed."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return f"URL scheme {parsed.scheme!r} is not allowed (use http or https)"
    host = (parsed.hostname or "").lower().rstrip(".")
    if not host:
        return "URL has no host"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata endpoint"
    if host == "localhost" or host.endswith(".localhost"):
        return (
            None
            if allow_loopback
            else f"{host} is a loopback address (allowed only with AI_OPS_ALLOW_LOOPBACK)"
        )
    return address_refusal(host, allow_loopback)


def address_refusal(host: str, allow_loopback: bool) -> str | None:
    """Why a literal IP address may not be contacted, or None (also None for names)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_link_local:
        return f"{host} is a link-local address (cloud metadata and similar endpoints are refused)"
    if address.is_loopback and not allow_loopback:
        return f"{host} is a loopback address (allowed only with AI_OPS_ALLOW_LOOPBACK)"
    if address.is_unspecified or address.is_multicast:
        return f"{host} is not a unicast address"
    return None


def apply_tool_filter(
    names: Iterable[str], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[str]:
    include, exclude = list(include), list(exclude)
    kept = [n for n in names if not include or any(fnmatch.fnmatchcase(n, g) for g in include)]
    return sorted(n for n in kept if not any(fnmatch.fnmatchcase(n, g) for g in exclude))


def installed_custom_middleware() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=CUSTOM_MIDDLEWARE_GROUP))


# --- evaluation ---------------------------------------------------------------------------------


def _evaluate_provider(name: str, obj: dict[str, Any], snap: Snapshot) -> Verdict:
    spec, problems = _spec_or_problems(obj, LLMProviderSpec)
    if problems:
        return Verdict("LLMProvider", name, [Cond(READY, FALSE, "InvalidSpec", problems)])
    checks = [c for c in [_secret_cond(spec.api_key_secret_ref, snap.secrets, "API key")] if c]
    if not spec.enabled:
        checks.append(
            Cond(READY, FALSE, "ProviderDisabled", "the provider is disabled (spec.enabled: false)")
        )
    ready = _ready_from(checks, f"{spec.type.value} provider is ready")
    return Verdict("LLMProvider", name, [*(c for c in checks if c.type != READY), ready], spec=spec)


def _evaluate_model(name: str, obj: dict[str, Any], snap: Snapshot, providers: dict[str, Verdict]) -> Verdict:
    spec, problems = _spec_or_problems(obj, LLMModelSpec)
    if problems:
        return Verdict("LLMModel", name, [Cond(READY, FALSE, "InvalidSpec", problems)])
    conds: list[Cond] = []
    provider_name = spec.provider_ref.name
    provider = providers.get(provider_name)
    if provider is not None and provider.spec is not None and not provider.spec.enabled:
        conds.append(
            Cond(
                PROVIDER_REF_VALIDATED,
                FALSE,
                "ProviderDisabled",
                f"LLMProvider {provider_name!r} is disabled",
            )
        )
    else:
        conds.append(_ref_cond(PROVIDER_REF_VALIDATED, "LLMProvider", "Provider", provider_name, provider))
    # The effective key: the model's, else the provider's.
    provider_spec = provider.spec if provider is not None else None
    key_ref = spec.api_key_secret_ref or (provider_spec.api_key_secret_ref if provider_spec else None)
    secret = _secret_cond(key_ref, snap.secrets, "API key")
    if secret is not None:
        conds.append(secret)
    elif provider_spec is not None and provider_spec.type in PROVIDERS_NEEDING_API_KEY:
        conds.append(
            Cond(
                SECRET_REF_VALIDATED,
                FALSE,
                "APIKeyRequired",
                f"{provider_spec.type.value} needs an API key: set apiKeySecretRef on the model or its provider",
            )
        )
    conds.append(_ready_from(conds, f"model {spec.model!r} on {provider_name} is ready"))
    return Verdict("LLMModel", name, conds, spec=spec)


def _evaluate_middleware(
    name: str,
    obj: dict[str, Any],
    models: dict[str, Verdict],
    referenced: dict[str, Verdict],
    custom: frozenset[str],
) -> Verdict:
    """``models``: owner readiness before middleware is considered (a critical middleware must not make its
    own model's reference fail); ``referenced``: final readiness of models named in the config."""
    spec, problems = _spec_or_problems(obj, LLMMiddlewareSpec)
    if problems:
        return Verdict(
            "LLMMiddleware",
            name,
            [Cond(CONFIG_VALID, FALSE, "InvalidSpec", problems), Cond(READY, FALSE, "InvalidSpec", problems)],
        )
    conds: list[Cond] = []
    model_name = spec.model_ref.name
    conds.append(_ref_cond(MODEL_REF_VALIDATED, "LLMModel", "Model", model_name, models.get(model_name)))
    try:
        parsed = parse_middleware_config(spec.type.value, spec.config)
    except MiddlewareConfigError as exc:
        conds.append(Cond(CONFIG_VALID, FALSE, "InvalidConfig", str(exc)))
    else:
        missing = [m for m in parsed.referenced_models() if m not in referenced]
        not_ready = [m for m in parsed.referenced_models() if m in referenced and not referenced[m].ready]
        if missing:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    "ReferencedModelNotFound",
                    f"LLMModel(s) not found: {', '.join(missing)}",
                )
            )
        elif isinstance(parsed, CustomConfig) and parsed.entry_point not in custom:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    "EntryPointNotFound",
                    f"no middleware {parsed.entry_point!r} is installed in the entry-point group "
                    f"{CUSTOM_MIDDLEWARE_GROUP}",
                )
            )
        elif not_ready:
            conds.append(
                Cond(
                    CONFIG_VALID,
                    FALSE,
                    "ReferencedModelNotReady",
                    f"LLMModel(s) not ready: {', '.join(not_ready)}",
                )
            )
        else:
            conds.append(Cond(CONFIG_VALID, TRUE, "ConfigValid", f"{spec.type.value} config is valid"))
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
            [Cond(ACCEPTED, FALSE, "InvalidSpec", problems), Cond(READY, FALSE, "InvalidSpec", problems)],
        )
    conds: list[Cond] = []
    refusal = url_refusal(spec.url, snap.allow_loopback) if spec.url else None
    secret_problem = None
    for header in [*(spec.headers or []), *(spec.env or [])]:
        if header.value_from is not None:
            cond = _secret_cond(header.value_from.secret_key_ref, snap.secrets, f"header {header.name}")
            if cond is not None and cond.status == FALSE:
                secret_problem = cond
                break
    if refusal:
        conds.append(Cond(ACCEPTED, FALSE, "URLNotAllowed", refusal))
    elif secret_problem:
        conds.append(Cond(ACCEPTED, FALSE, secret_problem.reason, secret_problem.message))
    else:
        conds.append(Cond(ACCEPTED, TRUE, "Accepted", "spec is valid and its Secrets exist"))
    state = server_health_state(spec, snap.health.get(name) if snap.health is not None else None)
    if conds[0].status == FALSE:
        ready = Cond(READY, FALSE, conds[0].reason, conds[0].message)
    elif spec.maintenance:
        ready = Cond(READY, FALSE, "Maintenance", "in maintenance: left out of the agent and not probed")
    elif snap.health is None and state.state == HealthState.UNKNOWN:
        ready = Cond(READY, UNKNOWN, "NotProbed", "not probed (offline rendering)")
    elif state.state in USABLE_HEALTH:
        ready = Cond(READY, TRUE, state.state.value, state.message or f"health is {state.state.value}")
    else:
        ready = Cond(READY, FALSE, state.state.value, state.message or f"health is {state.state.value}")
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
    """Verdicts for every resource of the namespace, and the default model."""
    result = Evaluation(snap.namespace)
    for name, obj in sorted(snap.providers.items()):
        result.providers[name] = _evaluate_provider(name, obj, snap)
    base_models = {
        name: _evaluate_model(name, obj, snap, result.providers) for name, obj in sorted(snap.models.items())
    }
    custom = snap.custom_middleware if snap.custom_middleware is not None else installed_custom_middleware()
    # A critical middleware that is not ready makes its model unavailable, which can make a middleware
    # naming that model (fallback, summarization) not ready in turn: iterate to a fixpoint.
    final_models = dict(base_models)
    for _ in range(len(snap.models) + 1):
        result.middlewares = {
            name: _evaluate_middleware(name, obj, base_models, final_models, custom)
            for name, obj in sorted(snap.middlewares.items())
        }
        updated = {name: _with_critical_middleware(v, result.middlewares) for name, v in base_models.items()}
        if {n: v.ready for n, v in updated.items()} == {n: v.ready for n, v in final_models.items()}:
            final_models = updated
            break
        final_models = updated
    result.models = final_models
    _choose_default(result, snap)
    for name, obj in sorted(snap.mcpservers.items()):
        result.mcpservers[name] = _evaluate_mcpserver(name, obj, snap)
    return result


def _with_critical_middleware(model: Verdict, middlewares: dict[str, Verdict]) -> Verdict:
    broken = sorted(
        mw.name
        for mw in middlewares.values()
        if mw.spec is not None
        and mw.spec.model_ref.name == model.name
        and mw.spec.critical
        and mw.spec.active
        and not mw.ready
        and (ref := mw.condition(MODEL_REF_VALIDATED)) is not None
        and ref.status == TRUE
    )
    if not broken or not model.ready:
        return model
    ready = Cond(
        READY, FALSE, "CriticalMiddlewareNotReady", f"critical middleware not ready: {', '.join(broken)}"
    )
    return Verdict(model.kind, model.name, [*model.conditions[:-1], ready], spec=model.spec)


def _choose_default(result: Evaluation, snap: Snapshot) -> None:
    """The oldest ready model asking to be default; else the oldest ready model."""
    ready = [snap.models[n] for n, v in result.models.items() if v.ready]
    asking = sorted((m for m in ready if m.get("spec", {}).get("default")), key=_sort_key_by_age)
    candidates = asking or sorted(ready, key=_sort_key_by_age)
    result.default_model = candidates[0]["metadata"]["name"] if candidates else None
    for name, verdict in result.models.items():
        if verdict.spec is None or not verdict.spec.default:
            continue
        if name == result.default_model:
            verdict.conditions.insert(
                -1, Cond(DEFAULT, TRUE, "IsDefault", "this is the namespace's default model")
            )
        elif verdict.ready and result.default_model is not None:
            message = (
                f"another model also has default: true; {result.default_model!r} is older and is the default"
            )
            verdict.conditions.insert(-1, Cond(DEFAULT, FALSE, "DefaultConflict", message))
            verdict.warnings.append(message)
        else:
            verdict.conditions.insert(-1, Cond(DEFAULT, FALSE, "NotReady", "not ready, so not the default"))


# --- translation --------------------------------------------------------------------------------


def _secret_ref(ref: SecretKeyRef | None) -> SecretRef | None:
    return SecretRef(name=ref.name, key=ref.key) if ref else None


def _named_values(items: Iterable[Any] | None) -> tuple[NamedValue, ...]:
    out = []
    for item in items or ():
        if item.value_from is not None:
            out.append(NamedValue(name=item.name, secret_ref=_secret_ref(item.value_from.secret_key_ref)))
        else:
            out.append(NamedValue(name=item.name, value=item.value))
    return tuple(out)


def translate(snap: Snapshot, ev: Evaluation) -> AgentConfig:
    """The agent config of the namespace: ready models with their chains, usable MCP servers."""
    models = []
    for name, verdict in ev.models.items():
        if not verdict.ready:
            continue
        spec: LLMModelSpec = verdict.spec
        provider_spec: LLMProviderSpec = ev.providers[spec.provider_ref.name].spec
        chain = sorted(
            (
                mw
                for mw in ev.middlewares.values()
                if mw.ready and mw.spec.active and mw.spec.model_ref.name == name
            ),
            key=lambda mw: (mw.spec.priority, mw.name),
        )
        models.append(
            ModelEntry(
                name=name,
                model=spec.model,
                provider=ProviderEntry(
                    name=spec.provider_ref.name,
                    type=provider_spec.type.value,
                    base_url=provider_spec.base_url,
                    config=provider_spec.config or {},
                ),
                api_key_secret_ref=_secret_ref(spec.api_key_secret_ref or provider_spec.api_key_secret_ref),
                default=name == ev.default_model,
                temperature=spec.temperature,
                max_tokens=spec.max_tokens,
                timeout_seconds=spec.timeout_seconds,
                system_prompt=spec.system_prompt,
                parameters=spec.parameters or {},
                description=spec.description,
                middleware=tuple(
                    MiddlewareEntry(
                        name=mw.name,
                        type=mw.spec.type.value,
                        priority=mw.spec.priority,
                        critical=mw.spec.critical,
                        config=mw.spec.config or {},
                    )
                    for mw in chain
                ),
            )
        )
    servers = []
    for name, verdict in ev.mcpservers.items():
        ready = verdict.condition(READY)
        included = ready is not None and (
            ready.status == TRUE or (snap.health is None and ready.status == UNKNOWN)
        )
        if not included:
            continue
        server: MCPServerSpec = verdict.spec
        state = server_health_state(server, snap.health.get(name) if snap.health is not None else None)
        tool_filter = server.tool_filter
        include = tuple(tool_filter.include or ()) if tool_filter else ()
        exclude = tuple(tool_filter.exclude or ()) if tool_filter else ()
        servers.append(
            MCPServerEntry(
                name=name,
                transport=server.transport.value,
                url=server.url,
                command=server.command,
                args=tuple(server.args or ()),
                env=_named_values(server.env),
                headers=_named_values(server.headers),
                scope=server.scope.value,
                tool_filter=ToolFilterEntry(include=include, exclude=exclude),
                health=state.state.value,
                tools=tuple(apply_tool_filter(state.tools, include, exclude)),
                description=server.description,
            )
        )
    return AgentConfig(
        namespace=snap.namespace,
        default_model=ev.default_model,
        models=tuple(models),
        mcp_servers=tuple(servers),
    ).finalize()


def referenced_secret_keys(config: AgentConfig) -> set[tuple[str, str]]:
    """Every (Secret, key) the chat service needs for this config: API keys, header and env values."""
    refs = {
        (m.api_key_secret_ref.name, m.api_key_secret_ref.key) for m in config.models if m.api_key_secret_ref
    }
    for server in config.mcp_servers:
        for item in (*server.headers, *server.env):
            if item.secret_ref is not None:
                refs.add((item.secret_ref.name, item.secret_ref.key))
    return refs
