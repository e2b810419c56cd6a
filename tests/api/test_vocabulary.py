"""The vocabulary is defined once: the CRDs, the agent config, the middleware schemas and builders, and
the deployment constants agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ai_ops_api.agent_config import (
    AGENT_CONFIG_DATA_KEY,
    AGENT_CONFIGMAP_NAME,
    SECRETS_MOUNT_PATH,
    AgentConfig,
)
from ai_ops_api.middleware import MIDDLEWARE_CONFIG_MODELS
from ai_ops_api.specs import USABLE_HEALTH, HealthState, MiddlewareType
from chat_service.middleware.chain import BUILDERS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ai-ops"

# (CRD file, field path in its openAPIV3Schema) -> (agent-config entry, field): the same vocabulary.
SHARED_ENUMS = {
    ("llmproviders.yaml", "spec.type"): ("ProviderEntry", "type"),
    ("llmmiddlewares.yaml", "spec.type"): ("MiddlewareEntry", "type"),
    ("mcpservers.yaml", "spec.transport"): ("MCPServerEntry", "transport"),
    ("mcpservers.yaml", "spec.scope"): ("MCPServerEntry", "scope"),
    ("mcpservers.yaml", "spec.investigationTools"): ("MCPServerEntry", "investigationTools"),
    ("mcpservers.yaml", "status.health"): ("MCPServerEntry", "health"),
}


def crd_enum(file: str, path: str) -> list[str]:
    crd = yaml.safe_load((ROOT / "crds" / file).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in path.split("."):
        schema = schema["properties"][part]
    return list(schema["enum"])


def enum_of(schema: dict[str, Any], prop: dict[str, Any]) -> list[str] | None:
    """The enum of a property of the agent-config schema, inline or behind a $ref."""
    if "$ref" in prop:
        prop = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
    return list(prop["enum"]) if "enum" in prop else None


def agent_config_enum(schema: dict[str, Any], entry: str, field: str) -> list[str] | None:
    return enum_of(schema, schema["$defs"][entry]["properties"][field])


def test_every_crd_enum_is_the_agent_config_enum() -> None:
    schema = AgentConfig.model_json_schema(by_alias=True)
    for (file, path), (entry, field) in SHARED_ENUMS.items():
        assert crd_enum(file, path) == agent_config_enum(schema, entry, field), f"{file} {path}"


def test_the_agent_config_has_no_enum_the_crds_do_not_share() -> None:
    """A new enum field in the agent config must be listed above (and so checked against its CRD)."""
    schema = AgentConfig.model_json_schema(by_alias=True)
    enum_fields = {
        (entry, field)
        for entry, definition in schema["$defs"].items()
        for field, prop in definition.get("properties", {}).items()
        if enum_of(schema, prop) is not None
    }
    assert enum_fields == set(SHARED_ENUMS.values())


def test_every_middleware_type_has_a_config_schema_and_a_builder() -> None:
    assert set(MIDDLEWARE_CONFIG_MODELS) == set(MiddlewareType)
    assert set(BUILDERS) == set(MiddlewareType)


def test_usable_health_states_are_health_states() -> None:
    assert set(USABLE_HEALTH) < set(HealthState)
    assert {str(s) for s in USABLE_HEALTH} == {"Healthy", "Degraded", "NotProbed"}


def test_the_chart_uses_the_contract_constants() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    configmap_names = [
        v["configMapName"] for v in values.values() if isinstance(v, dict) and "configMapName" in v
    ]
    assert configmap_names == [AGENT_CONFIGMAP_NAME]
    chat = (CHART / "templates" / "chat" / "deployment.yaml").read_text()
    assert f"value: {SECRETS_MOUNT_PATH}\n" in chat
    assert f"- key: {AGENT_CONFIG_DATA_KEY}\n" in chat
