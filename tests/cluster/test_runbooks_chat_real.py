"""Runbooks from the Runbook resource to a cited answer, against the real kube-apiserver.

The operator (kopf, in the test's loop, as the admin) publishes the Ready runbooks in shard ConfigMaps;
the chat reads its agent config and the shards through ``KubeConfigMapSource`` with the chart's own RBAC
(the chat ServiceAccount's token, a Role naming the agent ConfigMap and the shard names, get only on the
shards), started before the runbook exists and never restarted. What the emulator cannot show: the
server's RBAC letting the chat read exactly those shards, and its watch delivering the operator's writes.
A runbook with empty content is stored by the server, not Ready (EmptyContent) and never reaches the chat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ai_ops_api.agent_config import parse_agent_config
from ai_ops_api.specs import GROUP, RESOURCES_BY_PLURAL, VERSION
from chat_service.app import create_app
from tests.cluster.controlplane import ControlPlane
from tests.cluster.helpers import AGENT_CONFIGMAP, chat_namespace, install_crds, running_operator, source_for
from tests.harness.fake_llm import FakeLLM, Reply
from tests.harness.waiting import eventually
from tests.support.chat_support import running, settings_for, write_config
from tests.support.runbooks import CRASHLOOP, config_with_runbooks, hit_names, search, wait_for_search

# A ceiling for each step, not the target (benchmarks/runbook_retrieval.py --end-to-end measures that).
WITHIN = 30.0
# Polling a real server: a few requests a second are plenty.
POLL = 0.2


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    return control_plane


class Namespace:
    """Admin access to the ai-ops objects and ConfigMaps of one namespace."""

    def __init__(self, plane: ControlPlane, name: str) -> None:
        self.name = name
        self.api = plane.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def create(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        kind = RESOURCES_BY_PLURAL[plural].kind
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.name, plural, body)

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.name, plural, name, {"spec": spec})

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.name, plural, name)

    def condition(self, plural: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.name, plural, name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def agent_config(self) -> Any:
        try:
            cm = self.core.read_namespaced_config_map(AGENT_CONFIGMAP, self.name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return parse_agent_config(cm.data["agent-config.json"])


@pytest.fixture
def chat_access(plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[Namespace, Path]]:
    """A namespace set up with the chart's chat RBAC, and the file holding the chat account's token."""
    name, token = chat_namespace(plane, tmp_path)
    namespace = Namespace(plane, name)
    try:
        yield namespace, token
    finally:
        namespace.api.close()


async def test_a_runbook_the_operator_publishes_is_cited_by_the_running_chat_then_edited_and_deleted(
    plane: ControlPlane, chat_access: tuple[Namespace, Path], tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    ns, token = chat_access
    ns.create("llmproviders", "fake", {"type": "openai_compatible", "baseURL": fresh_fake_llm.base_url})
    ns.create("llmmodels", "fake-model", {"providerRef": {"name": "fake"}, "model": "fake-model"})
    async with running_operator(plane.kubeconfig, ns.name):
        config = await eventually(
            lambda: (c := ns.agent_config()) is not None and c.models and c, "the agent config", WITHIN, POLL
        )
        # The mounted file holds no runbooks: whatever the chat finds later came through the API.
        path = tmp_path / "agent-config.json"
        write_config(path, config_with_runbooks([], namespace=ns.name))
        source = source_for(plane, ns.name, token)
        async with running(create_app(settings_for(path), kube_source=source)) as app, app.client() as client:

            async def config_applied() -> bool:
                status = (await client.get("/api/status")).json()
                return bool(status["config"]["checksum"] == config.checksum)

            await eventually(config_applied, "the operator's config in the chat", WITHIN, POLL)

            ns.create("runbooks", "blank", {"title": "Nothing written yet", "content": "\n"})
            ns.create(
                "runbooks",
                "pod-crashloop",
                {
                    "title": CRASHLOOP["title"],
                    "description": CRASHLOOP["description"],
                    "content": CRASHLOOP["content"],
                },
            )
            await eventually(
                lambda: ns.condition("runbooks", "pod-crashloop").get("status") == "True",
                "the runbook Ready",
                WITHIN,
                POLL,
            )
            await wait_for_search(
                client, "CrashLoopBackOff", lambda r: "pod-crashloop" in hit_names(r), within=WITHIN
            )
            # The shard was read with the chat's own token: no shard is reported unreadable.
            assert (await client.get("/readyz")).json()["runbooks"]["problems"] == []
            await eventually(
                lambda: ns.condition("runbooks", "blank").get("reason") == "EmptyContent",
                "blank: EmptyContent",
                WITHIN,
                POLL,
            )
            listed = (await client.get("/api/runbooks")).json()["runbooks"]
            assert [r["name"] for r in listed] == ["pod-crashloop"]

            fresh_fake_llm.enqueue(
                Reply.tool_call(
                    "search_runbooks", {"query": "application keeps restarting CrashLoopBackOff"}
                ),
                Reply.text("Follow the runbook pod-crashloop."),
            )
            body = (await client.post("/api/chat", json={"message": "my app keeps restarting, help"})).json()
            assert body["model"] == "fake-model"
            (call,) = body["tool_calls"]
            hits = json.loads(call["output"])["hits"]
            assert call["name"] == "search_runbooks" and hits[0]["name"] == "pod-crashloop"
            assert body["citations"] == [
                {"runbook": "pod-crashloop", "title": CRASHLOOP["title"], "section": hits[0]["section"]}
            ]

            ns.patch_spec(
                "runbooks", "pod-crashloop", {"content": "## Resolution\nRestart the zebrafish sidecar.\n"}
            )
            await wait_for_search(
                client,
                "zebrafish sidecar",
                lambda r: hit_names(r)[:1] == ["pod-crashloop"] and "zebrafish" in r["hits"][0]["text"],
                within=WITHIN,
            )

            assert "kubectl logs POD --previous" not in str(await search(client, "kubectl logs previous"))

            ns.delete("runbooks", "pod-crashloop")
            await wait_for_search(client, "zebrafish sidecar", lambda r: r["hits"] == [], within=WITHIN)
            assert (await client.get("/api/runbooks")).json()["runbooks"] == []
