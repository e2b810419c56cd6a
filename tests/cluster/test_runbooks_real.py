"""The Runbook CRD in a real kube-apiserver: it installs, takes the example runbooks, and its CEL rule
(exactly one of content and contentFrom) is enforced by the server's own CEL, not only by ai-ops validate.

Requests carry ``dryRun=All``: nothing is stored, the server judges the object as on a real create.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ai_ops_api.specs import GROUP, RESOURCES, VERSION
from ai_ops_operator.core.crdgen import crd_for
from ai_ops_operator.core.validation import validate_resource
from tests.cluster.controlplane import ControlPlane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "runbooks"
RUNBOOK = RESOURCES["Runbook"]


def install_runbook_crd(api: client.ApiClient) -> None:
    """Create (or bring up to date) the Runbook CRD and wait until it is served."""
    extensions = client.ApiextensionsV1Api(api)
    body = crd_for(RUNBOOK)
    try:
        extensions.create_custom_resource_definition(body)
    except ApiException as error:
        if error.status != 409:
            raise
        current = extensions.read_custom_resource_definition(RUNBOOK.crd_name)
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(RUNBOOK.crd_name, body)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(RUNBOOK.crd_name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
        if conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True":
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {RUNBOOK.crd_name} not Established after 30 s: {conditions}")


def dry_run_create(api: client.ApiClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    stored: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, RUNBOOK.plural, obj, dry_run="All", field_validation="Strict"
    )
    return stored


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def runbook_namespace(control_plane: ControlPlane) -> str:
    with control_plane.api_client() as api:
        install_runbook_crd(api)
    return control_plane.create_namespace("runbooks")


def test_an_example_runbook_is_accepted_and_defaulted(
    control_plane: ControlPlane, runbook_namespace: str
) -> None:
    obj = example("coredns-down")
    with control_plane.api_client() as api:
        stored = dry_run_create(api, runbook_namespace, obj)
    assert stored["spec"]["content"] == obj["spec"]["content"]
    assert stored["spec"]["enabled"] is True  # the schema's default, filled in by the server
    assert stored["spec"]["match"] == obj["spec"]["match"]


def test_a_runbook_reading_a_configmap_is_accepted(
    control_plane: ControlPlane, runbook_namespace: str
) -> None:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Runbook",
        "metadata": {"name": "disk-full"},
        "spec": {
            "title": "Disk full",
            "contentFrom": {"configMapKeyRef": {"name": "texts", "key": "disk.md"}},
        },
    }
    assert validate_resource(obj) == []
    with control_plane.api_client() as api:
        stored = dry_run_create(api, runbook_namespace, obj)
    assert stored["spec"]["contentFrom"] == obj["spec"]["contentFrom"]


@pytest.mark.parametrize(
    "spec",
    [
        {
            "title": "Both",
            "content": "## A\nb\n",
            "contentFrom": {"configMapKeyRef": {"name": "t", "key": "k"}},
        },
        {"title": "Neither"},
    ],
    ids=["content-and-contentFrom", "neither"],
)
def test_the_server_refuses_a_runbook_without_exactly_one_source(
    control_plane: ControlPlane, runbook_namespace: str, spec: dict[str, Any]
) -> None:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Runbook",
        "metadata": {"name": "broken"},
        "spec": spec,
    }
    # ai-ops validate refuses it with the same message.
    assert [str(p) for p in validate_resource(obj)] == [
        "spec: exactly one of content and contentFrom must be set"
    ]
    with control_plane.api_client() as api, pytest.raises(ApiException) as refused:
        dry_run_create(api, runbook_namespace, obj)
    assert refused.value.status == 422
    message = json.loads(refused.value.body or "{}").get("message", "")
    assert "exactly one of content and contentFrom must be set" in message, message
