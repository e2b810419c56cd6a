"""Alertmanager's webhook payload (version 4), parsed strictly enough for a clear 400 and capped so that a
hostile or broken sender (10,000 labels, megabyte annotations) is cut down, never crashes the service.

Field names are Alertmanager's own (camelCase); unknown fields are ignored, as new Alertmanager versions
add some. https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ai_ops_api.investigations import (
    MAX_ANNOTATION_VALUE,
    MAX_ANNOTATIONS,
    MAX_LABEL_NAME,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    AlertStatus,
)

MAX_ALERTS = 1000
TRUNCATED_MARKER = "…[truncated]"


def cap_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, the cut marked so nobody mistakes it for the whole."""
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATED_MARKER)] + TRUNCATED_MARKER


def cap_mapping(raw: dict[str, str], max_entries: int, max_value: int) -> tuple[dict[str, str], int]:
    """At most ``max_entries`` entries (sorted by name, so the cut is stable across notifications), names
    and values capped; returns the mapping and how many entries were dropped."""
    kept: dict[str, str] = {}
    for name in sorted(raw)[:max_entries]:
        kept[cap_text(name, MAX_LABEL_NAME)] = cap_text(raw[name], max_value)
    return kept, max(0, len(raw) - max_entries)


StrMap = dict[str, str]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Alert(_Tolerant):
    status: AlertStatus
    labels: StrMap
    annotations: StrMap = Field(default_factory=dict)
    starts_at: str = Field(alias="startsAt", max_length=64)
    ends_at: str = Field(default="", alias="endsAt", max_length=64)
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(default="", max_length=64)
    # How many labels and annotations the caps dropped, for the Event and the log.
    dropped_labels: int = Field(default=0, exclude=True)
    dropped_annotations: int = Field(default=0, exclude=True)

    @field_validator("generator_url")
    @classmethod
    def _cap_url(cls, value: str) -> str:
        return cap_text(value, 2048)

    def model_post_init(self, _context: Any) -> None:
        self.labels, self.dropped_labels = cap_mapping(self.labels, MAX_LABELS, MAX_LABEL_VALUE)
        self.annotations, self.dropped_annotations = cap_mapping(
            self.annotations, MAX_ANNOTATIONS, MAX_ANNOTATION_VALUE
        )

    @property
    def name(self) -> str:
        return self.labels.get("alertname") or "unnamed"


class Notification(_Tolerant):
    version: Literal["4"]
    group_key: str = Field(default="", alias="groupKey")
    status: AlertStatus
    receiver: str = ""
    group_labels: StrMap = Field(default_factory=dict, alias="groupLabels")
    common_labels: StrMap = Field(default_factory=dict, alias="commonLabels")
    common_annotations: StrMap = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: Annotated[list[Alert], Field(max_length=MAX_ALERTS)]


class BadNotification(ValueError):
    """The payload is no Alertmanager v4 notification; the message says where (for the 400)."""


def parse_notification(payload: Any) -> Notification:
    try:
        return Notification.model_validate(payload)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        more = f" (and {exc.error_count() - 10} more)" if exc.error_count() > 10 else ""
        raise BadNotification(
            "not an Alertmanager webhook notification (version 4): " + "; ".join(problems) + more
        ) from None
