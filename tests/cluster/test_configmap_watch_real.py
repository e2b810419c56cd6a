"""The chat service's ConfigMap watch (`KubeConfigMapSource`) against the real API server.

With the chart's own RBAC (a Role naming the one ConfigMap in `resourceNames`, bound to the chat's
ServiceAccount, whose TokenRequest token the source reads from a file as in a pod): the list and watch
with a `metadata.name` field selector are allowed, a change reloads the running chat, a burst of updates
ends on the last one, and a watch whose resourceVersion was compacted away (410 Gone) relists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.agent_config import AGENT_CONFIG_DATA_KEY, AgentConfig
from chat_service.app import create_app
from chat_service.config.kubernetes import KubeConfigMapSource
from tests.chat.test_chat_reload import wait_for_checksum
from tests.cluster.controlplane import ControlPlane, find_binaries
from tests.cluster.helpers import chat_namespace, source_for
from tests.cluster.rest import request
from tests.harness.fake_llm import FakeLLM
from tests.support.chat_support import agent_config, model_entry, running, settings_for, write_config

NAME = "ai-ops-agent-config"


def config_text(label: str) -> str:
    return json.dumps({"label": label})


def put_configmap(plane: ControlPlane, namespace: str, text: str) -> str:
    """Create or replace the agent ConfigMap; its new resourceVersion."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME},
        "data": {AGENT_CONFIG_DATA_KEY: text},
    }
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    answer = request(plane, "PUT", f"{path}/{NAME}", body)
    if answer.status == 404:
        answer = request(plane, "POST", path, body)
    assert answer.ok, answer.message
    return str(answer.body["metadata"]["resourceVersion"])


async def collect_until(
    changes: AsyncIterator[tuple[str, str]], last: str, timeout: float = 30.0
) -> list[str]:
    """The texts `changes` yields until `last` (within `timeout` seconds)."""
    seen: list[str] = []

    async def consume() -> None:
        async for text, _version in changes:
            seen.append(text)
            if text == last:
                return

    try:
        await asyncio.wait_for(consume(), timeout)
    except TimeoutError:
        pytest.fail(f"never saw {last!r}; saw {seen}")
    return seen


def test_the_chat_role_allows_exactly_the_named_configmap(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    namespace, token = chat_namespace(control_plane, tmp_path)
    put_configmap(control_plane, namespace, config_text("v1"))
    with control_plane.api_client(token.read_text()) as api:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(api)
        listed = core.list_namespaced_config_map(namespace, field_selector=f"metadata.name={NAME}")
        assert [item.metadata.name for item in listed.items] == [NAME]
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_config_map(namespace)
    assert denied.value.status == 403


async def test_a_change_reloads_the_running_chat(
    control_plane: ControlPlane, tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    namespace, token = chat_namespace(control_plane, tmp_path)

    def config(model: str) -> AgentConfig:
        return agent_config([model_entry(model, fresh_fake_llm.base_url)])

    path = tmp_path / "agent-config.json"
    write_config(path, config("from-file"))
    put_configmap(control_plane, namespace, config("from-file").to_json())
    source = source_for(control_plane, namespace, token)
    async with running(create_app(settings_for(path), kube_source=source)) as app, app.client() as client:
        changed = config("from-api")
        version = put_configmap(control_plane, namespace, changed.to_json())
        status = await wait_for_checksum(app, changed.checksum)
        assert status["config"]["source"] == f"configmap {namespace}/{NAME}@{version}"
        assert (await client.post("/api/chat", json={"message": "hi"})).json()["model"] == "from-api"


async def test_a_burst_of_updates_ends_on_the_last(control_plane: ControlPlane, tmp_path: Path) -> None:
    namespace, token = chat_namespace(control_plane, tmp_path)
    put_configmap(control_plane, namespace, config_text("start"))
    changes = source_for(control_plane, namespace, token).changes()
    assert (await anext(changes))[0] == config_text("start")
    texts = [config_text(f"update-{n}") for n in range(30)]
    for text in texts:
        await asyncio.to_thread(put_configmap, control_plane, namespace, text)
    seen = await collect_until(changes, texts[-1])
    # Never an older version after a newer one; the source may skip some (a relist sees only the latest).
    assert seen == sorted(seen, key=texts.index)
    await changes.aclose()


# --- an expired watch ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uncached_configmaps() -> Iterator[ControlPlane]:
    """A second control plane serving ConfigMap watches from etcd (no watch cache for them), where a
    compaction expires a watch's resourceVersion at once. Skipped, like the session one, without binaries."""
    from tests.cluster.controlplane import ControlPlaneUnavailable

    try:
        binaries = find_binaries()
    except ControlPlaneUnavailable as reason:
        pytest.skip(str(reason))
    plane = ControlPlane(binaries, extra_args=["--watch-cache-sizes=configmaps#0"])
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


def compact_etcd(plane: ControlPlane, revision: str) -> None:
    """Compact etcd's history up to `revision`, what the API server does every --etcd-compaction-interval."""
    body = json.dumps({"revision": revision, "physical": True}).encode()
    req = urllib.request.Request(f"{plane.etcd_url}/v3/kv/compaction", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200


class SourceWithPauseBeforeWatch(KubeConfigMapSource):
    """The real source, with `between` run once after its first list and before its first watch: the
    moment an update and a compaction must both fall in for that watch to start from an expired version."""

    def __init__(self, *args: Any, between: Callable[[], None], **options: Any) -> None:
        super().__init__(*args, **options)
        self._between: Callable[[], None] | None = between

    def _params(self, **extra: Any) -> dict[str, Any]:
        if "watch" in extra and self._between is not None:
            between, self._between = self._between, None
            between()
        return super()._params(**extra)


async def test_a_watch_from_a_compacted_version_relists_and_gets_the_latest(
    uncached_configmaps: ControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane = uncached_configmaps
    namespace, token = chat_namespace(plane, tmp_path)
    put_configmap(plane, namespace, config_text("listed"))

    def update_and_compact() -> None:
        put_configmap(plane, namespace, config_text("while-listing"))
        # One write more, so the compaction passes the update too: the watch starts after the listed
        # version, and etcd refuses a start below the compacted revision (at it, it would start fine).
        other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}}
        written = request(plane, "POST", f"/api/v1/namespaces/{namespace}/configmaps", other)
        assert written.ok, written.message
        compact_etcd(plane, written.body["metadata"]["resourceVersion"])

    source = SourceWithPauseBeforeWatch(
        plane.url,
        namespace,
        NAME,
        token_path=token,
        ca_path=plane.certs.ca_cert,
        retry_seconds=0.2,
        between=update_and_compact,
    )
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="chat_service.config.kubernetes"):
        changes = source.changes()
        seen = await collect_until(changes, config_text("while-listing"))
        await changes.aclose()
    assert seen == [config_text("listed"), config_text("while-listing")]
    # The watch really expired: the API server ended it with 410 Gone and the source relisted at once.
    assert any("too old" in record.getMessage() for record in caplog.records), caplog.text
    assert time.monotonic() - began < 10
