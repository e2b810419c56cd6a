"""The optional notification of a finished investigation: one Slack-compatible incoming-webhook message.

The message always has ``text`` (Mattermost, Rocket.Chat and Teams incoming webhooks read only that) and
Slack ``blocks``. Alert labels, questions and summaries are untrusted: the mrkdwn control characters are
escaped, so that a label cannot forge a link or a mention. The webhook URL is a secret (Slack's carries
its token in the path): it is never logged, only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ai_ops_api.investigations import InvestigationPhase
from ai_ops_common.guarded_transport import guarded_transport
from chat_service.incidents.alertmanager import cap_text
from chat_service.incidents.store import StoredInvestigation

log = logging.getLogger("ai_ops.chat.incidents")

NOTIFIED_PHASES = frozenset({InvestigationPhase.DIAGNOSED.value, InvestigationPhase.FAILED.value})
MAX_QUEUED = 256
TIMEOUT_SECONDS = 10.0
RETRIES = 2
RETRY_PAUSE_SECONDS = 1.0  # doubled before each further try
MAX_SUBJECT = 300
MAX_BODY = 2500  # under Slack's 3000 characters of a section's text


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities (its documented escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def investigation_link(name: str, namespace: str, public_url: str | None) -> str:
    """The investigation in the web UI when its public address is known, else the kubectl command."""
    if public_url:
        return f"{public_url.rstrip('/')}/?investigation={name}"
    return f"kubectl get inv {name} -n {namespace}"


def notification_message(item: StoredInvestigation, link: str) -> dict[str, Any] | None:
    """The webhook body for a Diagnosed or Failed investigation; None for any other phase."""
    if item.phase not in NOTIFIED_PHASES:
        return None
    failed = item.phase == InvestigationPhase.FAILED.value
    alert = item.spec.get("alert") or {}
    labels: Mapping[str, Any] = alert.get("labels") or {}
    if alert:
        severity = str(labels.get("severity") or "alert")
        subject = str(alert.get("name") or labels.get("alertname") or item.name)
    else:
        severity = "question"
        subject = str(item.spec.get("question") or item.name)
    if failed:
        body = f"investigation failed: {item.status.get('reason') or 'no reason given'}"
    else:
        body = str(item.status.get("summary") or "diagnosed, no summary")
    head = escape_mrkdwn(f"{severity} {cap_text(subject, MAX_SUBJECT)}")
    body = escape_mrkdwn(cap_text(body, MAX_BODY))
    shown_link = link if link.startswith(("http://", "https://")) else f"`{link}`"
    return {
        "text": f"{head}: {body}\n{link}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n{body}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{item.name}: {shown_link}"}]},
        ],
    }


@dataclass(frozen=True)
class Delivery:
    name: str
    message: dict[str, Any]


class InvestigationNotifier:
    """Posts messages from a bounded queue in the background: a slow or failing receiver never holds an
    investigation, its Events or the next run; what does not fit in the queue is dropped with a warning."""

    def __init__(
        self,
        url: str,
        *,
        public_url: str | None = None,
        allow_loopback: bool = False,
        timeout_seconds: float = TIMEOUT_SECONDS,
        retry_pause_seconds: float = RETRY_PAUSE_SECONDS,
    ) -> None:
        self._url = url
        self.host = urlsplit(url).hostname or "?"
        self.public_url = public_url
        self._timeout = httpx.Timeout(timeout_seconds)
        self._retry_pause = retry_pause_seconds
        self._transport = guarded_transport(allow_loopback=allow_loopback, trust_env=False)
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._deliver_all(), name="investigation-notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        await self._transport.aclose()

    def notify(self, item: StoredInvestigation) -> None:
        """Queue the message of a stored outcome (never waits)."""
        message = notification_message(item, investigation_link(item.name, item.namespace, self.public_url))
        if message is None:
            return
        try:
            self._queue.put_nowait(Delivery(item.name, message))
        except asyncio.QueueFull:
            log.warning("investigation %s: notification to %s dropped (queue full)", item.name, self.host)

    async def _deliver_all(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            except Exception as exc:  # never ends the loop: the next message still goes out
                log.warning("investigation %s: notification failed (%s)", delivery.name, type(exc).__name__)

    async def _deliver(self, delivery: Delivery) -> None:
        pause = self._retry_pause
        problem = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(pause)
                pause *= 2
            try:
                status = await self._post(delivery.message)
            except httpx.HTTPError as exc:
                problem = self._describe(exc)
                continue
            if 200 <= status < 300:
                return
            problem = f"status {status}"
        log.warning(
            "investigation %s: notification to %s not delivered after %d tries (%s)",
            delivery.name, self.host, RETRIES + 1, problem,
        )  # fmt: skip

    async def _post(self, message: dict[str, Any]) -> int:
        # Straight through the guarded transport rather than an httpx.AsyncClient: the client logs every
        # request's full URL (at INFO), and this URL is a secret. No redirect is followed.
        request = httpx.Request(
            "POST", self._url, json=message, extensions={"timeout": self._timeout.as_dict()}
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.status_code

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return cap_text(text.replace(self._url, self.host), 300)
