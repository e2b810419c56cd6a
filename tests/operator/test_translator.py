"""The pure core without any server: verdicts and the agent config from plain resource bodies."""

from __future__ import annotations

from typing import Any

import pytest

from ai_ops_api.addresses import address_refusal, url_refusal
from ai_ops_api.specs import HealthState
from ai_ops_operator.core.evaluate import evaluate
from ai_ops_operator.core.snapshot import ServerHealth, Snapshot
from ai_ops_operator.core.translate import apply_tool_filter, referenced_secret_keys, translate
from tests.support.resources import mcpserver, middleware, model, provider


def conds(verdict: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in verdict.conditions}


def snapshot(**kwargs: Any) -> Snapshot:
    kwargs.setdefault("secrets", {})
    kwargs.setdefault("health", {})
    kwargs.setdefault("custom_middleware", frozenset())
    return Snapshot("team-a", **kwargs)


def test_missing_secret_and_key_are_reported_with_their_reason() -> None:
    snap = snapshot(
        providers={
            "no-secret": provider("no-secret", type="openai", apiKeySecretRef={"name": "gone", "key": "k"}),
            "no-key": provider("no-key", type="openai", apiKeySecretRef={"name": "there", "key": "other"}),
            "ok": provider("ok", type="openai", apiKeySecretRef={"name": "there", "key": "k"}),
        },
        secrets={"there": frozenset({"k"})},
    )
    ev = evaluate(snap)
    assert conds(ev.providers["no-secret"])["Ready"] == ("False", "SecretNotFound")
    assert conds(ev.providers["no-key"])["SecretRefValidated"] == ("False", "SecretKeyNotFound")
    assert conds(ev.providers["ok"])["Ready"] == ("True", "Ready")


def test_model_references_and_required_api_key() -> None:
    snap = snapshot(
        providers={
            "oai": provider("oai", type="openai"),
            "off": provider("off", type="ollama", enabled=False),
            "local": provider("local", type="ollama", baseURL="http://ollama:11434"),
        },
        models={
            "dangling": model("dangling", "missing"),
            "disabled": model("disabled", "off"),
            "keyless": model("keyless", "oai"),
            "keyed": model("keyed", "oai", apiKeySecretRef={"name": "s", "key": "k"}),
            "local": model("local", "local"),
        },
        secrets={"s": frozenset({"k"})},
    )
    ev = evaluate(snap)
    assert conds(ev.models["dangling"])["Ready"] == ("False", "ProviderNotFound")
    assert conds(ev.models["disabled"])["ProviderRefValidated"] == ("False", "ProviderDisabled")
    assert conds(ev.models["keyless"])["SecretRefValidated"] == ("False", "APIKeyRequired")
    assert ev.models["keyed"].ready and ev.models["local"].ready
    config = translate(snap, ev)
    assert [m.name for m in config.models] == ["keyed", "local"]
    assert referenced_secret_keys(config) == {("s", "k")}


def test_oldest_default_wins_and_the_other_is_told() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={
            "young": model("young", "p", created="2026-03-01T00:00:00Z", default=True),
            "old": model("old", "p", created="2026-01-01T00:00:00Z", default=True),
            "plain": model("plain", "p", created="2025-01-01T00:00:00Z"),
        },
    )
    ev = evaluate(snap)
    assert ev.default_model == "old"
    assert conds(ev.models["old"])["Default"] == ("True", "IsDefault")
    assert conds(ev.models["young"])["Default"] == ("False", "DefaultConflict")
    assert ev.models["young"].warnings and ev.models["young"].ready
    assert translate(snap, ev).default_model == "old"


def test_without_a_requested_default_the_oldest_ready_model_is_the_default() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={
            "b": model("b", "p", created="2026-01-02T00:00:00Z"),
            "a": model("a", "p", created="2026-01-03T00:00:00Z"),
        },
    )
    assert evaluate(snap).default_model == "b"


def test_middleware_chain_sorted_by_priority_then_name_without_inactive_ones() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={"m": model("m", "p")},
        middlewares={
            "zeta": middleware("zeta", "m", "logging", priority=10),
            "alpha": middleware("alpha", "m", "model_retry", priority=10),
            "first": middleware("first", "m", "model_call_limit", priority=1, config={"runLimit": 3}),
            "off": middleware("off", "m", "logging", priority=5, active=False),
        },
    )
    config = translate(snap, evaluate(snap))
    assert [mw.name for mw in config.models[0].middleware] == ["first", "alpha", "zeta"]


def test_invalid_middleware_config_names_the_field_and_critical_ones_take_the_model_down() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={"m": model("m", "p"), "n": model("n", "p")},
        middlewares={
            "limits": middleware("limits", "m", "tool_call_limit", config={"runLimit": 0}),
            "pii": middleware("pii", "n", "pii", critical=True, config={"piiTypes": ["ssn"]}),
        },
    )
    ev = evaluate(snap)
    status, reason = conds(ev.middlewares["limits"])["ConfigValid"]
    assert (status, reason) == ("False", "InvalidConfig")
    assert "config.runLimit" in ev.middlewares["limits"].condition("ConfigValid").message  # type: ignore[union-attr]
    assert ev.models["m"].ready, "a non-critical broken middleware is only skipped"
    assert conds(ev.models["n"])["Ready"] == ("False", "CriticalMiddlewareNotReady")
    config = translate(snap, ev)
    assert [m.name for m in config.models] == ["m"] and config.models[0].middleware == ()


def test_fallback_must_name_existing_ready_models_and_failures_cascade() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={"a": model("a", "p"), "b": model("b", "p")},
        middlewares={
            "fb-missing": middleware("fb-missing", "a", "model_fallback", config={"models": ["nope"]}),
            "fb": middleware("fb", "a", "model_fallback", critical=True, config={"models": ["b"]}),
            "broken": middleware("broken", "b", "pii", critical=True, config={"piiTypes": ["ssn"]}),
        },
    )
    ev = evaluate(snap)
    assert conds(ev.middlewares["fb-missing"])["ConfigValid"] == ("False", "ReferencedModelNotFound")
    assert conds(ev.middlewares["fb"])["ConfigValid"] == ("False", "ReferencedModelNotReady")
    assert not ev.models["a"].ready and not ev.models["b"].ready
    assert translate(snap, ev).models == ()


def test_custom_middleware_needs_an_installed_entry_point() -> None:
    snap = snapshot(
        providers={"p": provider("p", type="ollama")},
        models={"m": model("m", "p")},
        middlewares={
            "mine": middleware("mine", "m", "custom", config={"entryPoint": "acme-audit"}),
            "theirs": middleware("theirs", "m", "custom", config={"entryPoint": "missing"}),
        },
        custom_middleware=frozenset({"acme-audit"}),
    )
    ev = evaluate(snap)
    assert ev.middlewares["mine"].ready
    assert conds(ev.middlewares["theirs"])["ConfigValid"] == ("False", "EntryPointNotFound")


def test_mcp_servers_included_only_when_usable_with_the_tool_filter_applied() -> None:
    snap = snapshot(
        mcpservers={
            "healthy": mcpserver(
                "healthy",
                url="http://a:8000/mcp",
                toolFilter={"include": ["get_*", "echo"], "exclude": ["get_secret*"]},
            ),
            "degraded": mcpserver("degraded", url="http://b:8000/mcp"),
            "down": mcpserver("down", url="http://c:8000/mcp"),
            "locked": mcpserver("locked", url="http://d:8000/mcp"),
            "new": mcpserver("new", url="http://e:8000/mcp"),
            "resting": mcpserver("resting", url="http://f:8000/mcp", maintenance=True),
            "local": mcpserver("local", transport="stdio", command="mcp-server-time"),
            "unchecked": mcpserver("unchecked", url="http://g:8000/mcp", healthCheck={"enabled": False}),
        },
        health={
            "healthy": ServerHealth(HealthState.HEALTHY, ("echo", "get_pods", "get_secrets", "delete_pod")),
            "degraded": ServerHealth(HealthState.DEGRADED, ("x",)),
            "down": ServerHealth(HealthState.UNHEALTHY),
            "locked": ServerHealth(HealthState.UNAUTHENTICATED),
            "resting": ServerHealth(HealthState.HEALTHY, ("x",)),
        },
    )
    config = translate(snap, evaluate(snap))
    by_name = {s.name: s for s in config.mcp_servers}
    assert sorted(by_name) == ["degraded", "healthy", "local", "unchecked"]
    assert by_name["healthy"].tools == ("echo", "get_pods")
    assert by_name["local"].health == "NotProbed" and by_name["unchecked"].health == "NotProbed"


def test_offline_rendering_includes_every_server_not_in_maintenance_as_unknown() -> None:
    snap = Snapshot(
        "default",
        mcpservers={
            "a": mcpserver("a", url="http://a:8000/mcp"),
            "b": mcpserver("b", url="http://b/mcp", maintenance=True),
        },
    )
    config = translate(snap, evaluate(snap))
    assert [(s.name, s.health) for s in config.mcp_servers] == [("a", "Unknown")]


@pytest.mark.parametrize(
    ("url", "allowed_with_loopback", "refused_fragment"),
    [
        ("http://169.254.169.254/latest", False, "metadata"),
        ("http://metadata.google.internal/x", False, "metadata"),
        ("http://[fe80::1]:80/mcp", False, "link-local"),
        ("http://169.254.10.10/mcp", False, "link-local"),
        ("http://127.0.0.1:8000/mcp", True, "loopback"),
        ("http://localhost:8000/mcp", True, "loopback"),
        ("http://[::ffff:127.0.0.1]/mcp", True, "loopback"),
        ("ftp://tools/mcp", False, "scheme"),
    ],
)
def test_url_policy(url: str, allowed_with_loopback: bool, refused_fragment: str) -> None:
    reason = url_refusal(url, allow_loopback=False)
    assert reason is not None and refused_fragment in reason
    assert (url_refusal(url, allow_loopback=True) is None) is allowed_with_loopback


def test_url_policy_accepts_ordinary_services() -> None:
    assert url_refusal("http://k8s-mcp.tools.svc:8000/mcp", allow_loopback=False) is None
    assert url_refusal("https://10.0.0.7/mcp", allow_loopback=False) is None
    assert address_refusal("tools.example", allow_loopback=False) is None


def test_header_secrets_are_references_never_values_and_missing_ones_refuse_the_server() -> None:
    header = {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "bearer"}}}
    snap = snapshot(
        mcpservers={
            "a": mcpserver("a", url="http://a/mcp", headers=[header]),
            "b": mcpserver("b", url="http://b/mcp", headers=[header]),
        },
        secrets={},
        health={"a": ServerHealth(HealthState.HEALTHY), "b": ServerHealth(HealthState.HEALTHY)},
    )
    ev = evaluate(snap)
    assert conds(ev.mcpservers["a"])["Accepted"] == ("False", "SecretNotFound")
    snap.secrets = {"tok": frozenset({"bearer"})}
    config = translate(snap, evaluate(snap))
    assert config.mcp_servers[0].headers[0].secret_ref is not None
    assert config.mcp_servers[0].headers[0].value is None
    assert referenced_secret_keys(config) == {("tok", "bearer")}


def test_invalid_spec_is_not_ready_with_the_field_path() -> None:
    snap = snapshot(
        mcpservers={
            "bad": mcpserver(
                "bad", url="http://a/mcp", healthCheck={"intervalSeconds": 5, "timeoutSeconds": 9}
            )
        }
    )
    verdict = evaluate(snap).mcpservers["bad"]
    assert conds(verdict)["Accepted"] == ("False", "InvalidSpec")
    assert "spec.healthCheck.timeoutSeconds" in verdict.condition("Accepted").message  # type: ignore[union-attr]


def test_output_is_deterministic_and_checksummed() -> None:
    def build(order: list[str]) -> str:
        snap = snapshot(
            providers={"p": provider("p", type="ollama")},
            models={n: model(n, "p") for n in order},
        )
        return translate(snap, evaluate(snap)).to_json()

    first, second = build(["a", "b", "c"]), build(["c", "a", "b"])
    assert first == second
    assert '"checksum": "sha256:' in first


def test_apply_tool_filter() -> None:
    assert apply_tool_filter(["b", "a", "c"]) == ["a", "b", "c"]
    assert apply_tool_filter(["get_a", "set_a"], include=["get_*"]) == ["get_a"]
    assert apply_tool_filter(["get_a", "get_b"], exclude=["*_b"]) == ["get_a"]
