"""The investigation notification webhook, against a real HTTP receiver on 127.0.0.1: one message per
stored outcome, escaped untrusted text, the link, retries, a receiver that hangs or fails, and a URL that
never shows in the logs or /api/status."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat_service.incidents.notify import InvestigationNotifier
from chat_service.incidents.service import Incidents
from chat_service.incidents.store import MemoryInvestigationStore, StoredInvestigation
from chat_service.incidents.worker import InvestigationWorker
from chat_service.settings import SettingsError, load_settings
from tests.chat.test_incidents_core import notification
from tests.chat.test_incidents_flow import HOOK, app_for, finished
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import running

SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxb-not-to-be-seen"
PUBLIC_URL = "https://ai-ops.example.test/"


class Receiver:
    """An incoming-webhook endpoint: records each request's JSON body, answers the scripted statuses
    (then 200), and holds the request open while ``hang`` is set."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.hang = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                if receiver.hang.is_set():
                    receiver.released.wait(60)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.close()


def hostile_alert() -> dict[str, Any]:
    return {
        "source": "alertmanager",
        "alert": {
            "name": "KubePodCrashLooping <!channel>",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "<@U0ADMIN> & critical"},
            "annotations": {},
            "startsAt": "2026-01-01T00:00:00Z",
        },
    }


async def run_all(
    outcomes: dict[str, dict[str, Any]],
    receiver: Receiver,
    *,
    resolved: frozenset[str] = frozenset(),
    **notifier_args: Any,
) -> tuple[Incidents, list[StoredInvestigation]]:
    """Creates the investigations in order, runs them on one worker to the outcome given, and waits until
    every one has one."""
    store = MemoryInvestigationStore()
    incidents = Incidents(
        store, notifier=InvestigationNotifier(receiver.url, allow_loopback=True, **notifier_args)
    )

    async def run(item: StoredInvestigation) -> dict[str, Any]:
        return outcomes[item.name]

    for name in outcomes:
        spec = hostile_alert() if name.startswith("alert") else {"source": "api", "question": f"why {name}?"}
        item, _ = await store.create(name, spec)
        if name in resolved:
            await store.patch_status(name, {"alertStatus": "resolved"}, item.resource_version)
    incidents.worker = InvestigationWorker(
        store, run, identity="w", concurrency=1, lease_seconds=60, finished=incidents.record
    )
    incidents.start()

    async def all_finished() -> list[StoredInvestigation] | None:
        items = await store.list()
        return items if all(i.phase not in ("", "Pending", "Running") for i in items) else None

    items = await eventually(all_finished, "every investigation finished", timeout=30)
    return incidents, items


async def test_each_outcome_is_one_message_with_the_summary_escaped_labels_and_the_link(
    receiver: Receiver,
) -> None:
    outcomes = {
        "alert-resolved": {"phase": "Diagnosed", "summary": "gone by itself"},  # ends Resolved: no message
        "alert-one": {"phase": "Diagnosed", "summary": "OOM <https://evil.test|click> & restart"},
        "question-two": {"phase": "Failed", "reason": "model down"},
    }
    incidents, items = await run_all(outcomes, receiver, resolved={"alert-resolved"}, public_url=PUBLIC_URL)
    try:
        assert {i.name: i.phase for i in items}["alert-resolved"] == "Resolved"
        await eventually(lambda: len(receiver.bodies) >= 2, "two messages received", timeout=30)
    finally:
        await incidents.stop()
    diagnosed, failed = receiver.bodies
    assert diagnosed["text"] == (
        "&lt;@U0ADMIN&gt; &amp; critical KubePodCrashLooping &lt;!channel&gt;: "
        "OOM &lt;https://evil.test|click&gt; &amp; restart\n"
        "https://ai-ops.example.test/?investigation=alert-one"
    )
    blocks = json.dumps(diagnosed["blocks"])
    assert "<!channel>" not in blocks and "<@U0ADMIN>" not in blocks and "<https://evil" not in blocks
    assert "OOM &lt;https://evil.test|click&gt;" in blocks
    assert failed["text"] == (
        "question why question-two?: investigation failed: model down\n"
        "https://ai-ops.example.test/?investigation=question-two"
    )
    assert len(receiver.bodies) == 2


async def test_without_a_public_url_the_link_is_the_kubectl_command(receiver: Receiver) -> None:
    incidents, _ = await run_all({"question-one": {"phase": "Diagnosed", "summary": "fine"}}, receiver)
    try:
        await eventually(lambda: receiver.bodies, "a message received", timeout=30)
    finally:
        await incidents.stop()
    assert receiver.bodies[0]["text"].endswith("\nkubectl get inv question-one -n default")


async def test_a_receiver_answering_500_then_200_gets_it_on_the_retry(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]
    caplog.set_level(logging.WARNING)
    incidents, _ = await run_all(
        {"question-one": {"phase": "Diagnosed", "summary": "fine"}}, receiver, retry_pause_seconds=0.05
    )
    try:
        await eventually(lambda: len(receiver.bodies) >= 2, "two messages received", timeout=30)
    finally:
        await incidents.stop()
    first, retried = receiver.bodies
    assert first == retried and "fine" in first["text"]
    assert "not delivered" not in caplog.text


async def test_a_receiver_that_always_fails_is_a_warning_with_the_status(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [503, 503, 503]
    caplog.set_level(logging.WARNING)
    incidents, items = await run_all(
        {"question-one": {"phase": "Diagnosed", "summary": "fine"}}, receiver, retry_pause_seconds=0.05
    )
    try:
        await eventually(lambda: "not delivered" in caplog.text, "the warning", timeout=30)
    finally:
        await incidents.stop()
    assert items[0].phase == "Diagnosed"
    assert len(receiver.bodies) == 3
    assert "status 503" in caplog.text and "127.0.0.1" in caplog.text and SECRET_PATH not in caplog.text


async def test_a_receiver_that_hangs_does_not_delay_the_next_investigation(receiver: Receiver) -> None:
    receiver.hang.set()
    outcomes = {f"question-{n}": {"phase": "Diagnosed", "summary": f"done {n}"} for n in range(3)}
    incidents, items = await run_all(outcomes, receiver)
    try:
        # Every investigation finished while the receiver still holds the first message open.
        assert [i.phase for i in items] == ["Diagnosed"] * 3
        await eventually(lambda: receiver.bodies, "a message received", timeout=30)
        assert not receiver.released.is_set() and len(receiver.bodies) == 1
    finally:
        await incidents.stop()


async def test_the_url_never_shows_in_the_logs_or_the_status(
    tmp_path: Path, fresh_fake_llm: FakeLLM, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]  # a retry and its logging too
    caplog.set_level(logging.DEBUG)
    fresh_fake_llm.enqueue(Reply.text("checkout-1 restarts because its liveness probe times out."))
    app = app_for(
        tmp_path, fresh_fake_llm, investigation_lease_seconds=5, investigation_notify_url=receiver.url
    )
    async with running(app) as chat, httpx.AsyncClient(base_url=chat.url) as client:
        (created,) = (await client.post(HOOK, json=notification())).json()["investigations"]
        detail = await finished(client, created["name"])
        await eventually(lambda: len(receiver.bodies) >= 2, "two messages received", timeout=30)
        status = (await client.get("/api/status")).text
    assert detail["phase"] == "Diagnosed"
    assert "liveness probe times out" in receiver.bodies[-1]["text"]
    for seen in (caplog.text, status):
        assert SECRET_PATH not in seen and "T0SECRET" not in seen


async def test_a_metadata_address_is_refused_by_the_address_policy(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    store = MemoryInvestigationStore()
    url = f"http://169.254.169.254{SECRET_PATH}"
    notifier = InvestigationNotifier(url, allow_loopback=True, retry_pause_seconds=0.01)
    notifier.start()
    try:
        item, _ = await store.create("question-one", {"source": "api", "question": "why?"})
        notifier.notify(await store.patch_status(item.name, {"phase": "Failed", "reason": "x"}))
        await eventually(lambda: "not delivered" in caplog.text, "the warning", timeout=30)
    finally:
        await notifier.stop()
    assert "address refused" in caplog.text and SECRET_PATH not in caplog.text


@pytest.mark.parametrize("variable", ["AI_OPS_INVESTIGATION_NOTIFY_URL", "AI_OPS_PUBLIC_URL"])
def test_a_bad_url_setting_is_refused_without_echoing_it(tmp_path: Path, variable: str) -> None:
    environ = {"AI_OPS_CONFIG": str(tmp_path / "agent.json"), variable: "hooks.example.test/T0SECRET"}
    with pytest.raises(SettingsError, match=variable) as refused:
        load_settings(environ=environ)
    assert "T0SECRET" not in str(refused.value)
