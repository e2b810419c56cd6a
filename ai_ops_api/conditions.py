"""The vocabulary of the operator's status conditions: their types, statuses and reasons.

Part of the contract because users, ``kubectl wait --for=condition=Ready``, alerts and the chat's status
page read them; the operator's pure core computes them as ``Cond`` values. ``Reason`` lists every reason
the core can give (a golden test case covers each one, so a new reason comes with a case).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ai_ops_api.specs import ConditionStatus, HealthState

# Condition types.
READY = "Ready"
SECRET_REF_VALIDATED = "SecretRefValidated"
PROVIDER_REF_VALIDATED = "ProviderRefValidated"
MODEL_REF_VALIDATED = "ModelRefValidated"
CONFIG_VALID = "ConfigValid"
ACCEPTED = "Accepted"
DEFAULT = "Default"
HEALTHY = "Healthy"
CONTENT_RESOLVED = "ContentResolved"

# Condition statuses (the values of the CRDs' status enum).
TRUE: str = ConditionStatus.TRUE.value
FALSE: str = ConditionStatus.FALSE.value
UNKNOWN: str = ConditionStatus.UNKNOWN.value

# The Ready reason of an object whose evaluation or status computation raised: a bug, for that object only.
# Not a ``Reason``: no resource can produce it on purpose, so no golden case does.
NOT_COMPUTED = "StatusNotComputed"


class Reason(enum.StrEnum):
    """Every reason the pure core puts on a condition."""

    # Any kind.
    READY = "Ready"
    INVALID_SPEC = "InvalidSpec"
    # Secret references (SecretRefValidated; also Accepted of an MCPServer).
    NOT_CHECKED = "NotChecked"
    SECRET_FOUND = "SecretFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    # The Secret exists but lacks the label ai-ops.dev/usable=true (specs.USABLE_SECRET_LABEL).
    SECRET_NOT_USABLE = "SecretNotUsable"
    API_KEY_REQUIRED = "APIKeyRequired"
    # LLMProvider, and an LLMModel's ProviderRefValidated.
    PROVIDER_DISABLED = "ProviderDisabled"
    PROVIDER_NOT_FOUND = "ProviderNotFound"
    PROVIDER_NOT_READY = "ProviderNotReady"
    PROVIDER_READY = "ProviderReady"
    # LLMProvider config or LLMModel parameters outside the provider type's allowlist (ai_ops_api.providers).
    PARAMETER_NOT_ALLOWED = "ParameterNotAllowed"
    # LLMModel.
    CRITICAL_MIDDLEWARE_NOT_READY = "CriticalMiddlewareNotReady"
    IS_DEFAULT = "IsDefault"
    DEFAULT_CONFLICT = "DefaultConflict"
    NOT_READY = "NotReady"
    # LLMMiddleware: ModelRefValidated and ConfigValid.
    MODEL_NOT_FOUND = "ModelNotFound"
    MODEL_NOT_READY = "ModelNotReady"
    MODEL_READY = "ModelReady"
    CONFIG_VALID = "ConfigValid"
    INVALID_CONFIG = "InvalidConfig"
    REFERENCED_MODEL_NOT_FOUND = "ReferencedModelNotFound"
    REFERENCED_MODEL_NOT_READY = "ReferencedModelNotReady"
    ENTRY_POINT_NOT_FOUND = "EntryPointNotFound"
    # The chain rules of ai_ops_api.middleware.check_chain (ChainRule values).
    SELF_FALLBACK = "SelfFallback"
    DUPLICATE_COUNTER = "DuplicateCounter"
    DUPLICATE_TOOL = "DuplicateTool"
    # An LLMModel of purpose embedding where a chat model is needed (a middleware's model or fallback).
    EMBEDDING_MODEL = "EmbeddingModel"
    # Runbook: ContentResolved, then Ready.
    CONTENT_INLINE = "ContentInline"
    CONFIGMAP_FOUND = "ConfigMapFound"
    CONFIGMAP_NOT_FOUND = "ConfigMapNotFound"
    CONFIGMAP_KEY_NOT_FOUND = "ConfigMapKeyNotFound"
    EMPTY_CONTENT = "EmptyContent"
    TOO_LARGE = "TooLarge"
    DISABLED = "Disabled"
    # MCPServer: Accepted, then Ready (whose reason is otherwise the health state).
    ACCEPTED = "Accepted"
    URL_NOT_ALLOWED = "URLNotAllowed"
    # A stdio server whose command the installation does not allow (mcp.stdio.allowedCommands).
    STDIO_NOT_ALLOWED = "StdioNotAllowed"
    MAINTENANCE = HealthState.MAINTENANCE.value
    NOT_PROBED = HealthState.NOT_PROBED.value
    HEALTHY = HealthState.HEALTHY.value
    DEGRADED = HealthState.DEGRADED.value
    UNHEALTHY = HealthState.UNHEALTHY.value
    UNAUTHENTICATED = HealthState.UNAUTHENTICATED.value
    UNKNOWN = HealthState.UNKNOWN.value


@dataclass(frozen=True)
class Cond:
    """A condition as computed; the operator adds lastTransitionTime and observedGeneration."""

    type: str
    status: str
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        # Plain strings, never enum members: status patches, events and YAML dumps all see the same text.
        object.__setattr__(self, "reason", str(self.reason))
        object.__setattr__(self, "status", str(self.status))
