"""Every pod the chart renders is admitted by the real Pod Security admission at `restricted`.

tests/chart/test_chart.py checks the restricted profile's rules by reading the pod specs; here the
admission controller itself judges them. Each workload's pod template (Deployments, StatefulSets, Jobs)
is created as a Pod with `dryRun=All` in a namespace enforcing `restricted`, keeping its
serviceAccountName (the chart's ServiceAccounts are created first: the ServiceAccount admission plugin
refuses a pod whose account does not exist). Nothing runs: there is no kubelet.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chart.test_chart import VALUE_SETS
from tests.cluster.controlplane import ControlPlane
from tests.cluster.rest import Answer, request
from tests.support.chart_render import Rendered, load_chart, render

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
# A few value sets of the chart tests: every workload appears in at least one of them.
CHECKED_VALUE_SETS = ["defaults", "namespace-scope", "external-redis", "hpa-ingress-pdb", "network-policy"]


@pytest.fixture(scope="module")
def chart_renders() -> dict[str, Rendered]:
    chart = load_chart()
    return {name: render(chart, VALUE_SETS[name]) for name in CHECKED_VALUE_SETS}


def pod_templates(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """(workload, pod) for each pod template the chart renders, as the Pod its controller would create."""
    pods = []
    for _, obj in rendered.objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        metadata = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{obj['kind'].lower()}-{obj['metadata']['name']}",
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
            },
            "spec": copy.deepcopy(template["spec"]),
        }
        # The StatefulSet controller adds a volume per claim template, bound to that pod's claim.
        for claim in obj["spec"].get("volumeClaimTemplates") or ():
            claim_name = f"{claim['metadata']['name']}-{obj['metadata']['name']}-0"
            pod["spec"].setdefault("volumes", []).append(
                {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
            )
        pods.append((f"{obj['kind']}/{obj['metadata']['name']}", pod))
    return pods


def restricted_namespace(plane: ControlPlane, rendered: Rendered) -> str:
    namespace = plane.create_namespace("pss", labels=RESTRICTED)
    for account in rendered.names("ServiceAccount"):
        answer = request(
            plane,
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        )
        assert answer.ok or answer.status == 409, answer.message
    return namespace


def admit(plane: ControlPlane, namespace: str, pod: dict[str, Any]) -> Answer:
    return request(plane, "POST", f"/api/v1/namespaces/{namespace}/pods", pod, {"dryRun": "All"})


@pytest.mark.parametrize("value_set", CHECKED_VALUE_SETS)
def test_every_pod_of_the_chart_is_admitted_at_restricted(
    control_plane: ControlPlane, chart_renders: dict[str, Rendered], value_set: str
) -> None:
    rendered = chart_renders[value_set]
    pods = pod_templates(rendered)
    assert pods, "the chart rendered no workload"
    namespace = restricted_namespace(control_plane, rendered)
    for workload, pod in pods:
        # An account the chart renders, or `default` (which create_namespace made).
        assert pod["spec"].get("serviceAccountName", "default") in rendered.names("ServiceAccount") | {
            "default"
        }, workload
        answer = admit(control_plane, namespace, pod)
        assert answer.ok, f"{workload}: {answer.status} {answer.message}"
        # The restricted profile warns (audit/warn levels default to the enforced one) on what it admits.
        assert answer.warnings == [], f"{workload}: {answer.warnings}"


def test_the_checked_value_sets_cover_every_workload(chart_renders: dict[str, Rendered]) -> None:
    workloads = {workload for rendered in chart_renders.values() for workload, _ in pod_templates(rendered)}
    kinds = {workload.split("/")[0] for workload in workloads}
    assert {"Deployment", "StatefulSet", "Job"} <= kinds, workloads
    assert len(workloads) >= 5, workloads


@pytest.mark.parametrize(
    ("breakage", "violation"),
    [
        ("allowPrivilegeEscalation", "allowPrivilegeEscalation != false"),
        ("runAsNonRoot", "runAsNonRoot != true"),
        ("capabilities", "unrestricted capabilities"),
    ],
)
def test_a_chart_pod_made_less_restricted_is_refused(
    control_plane: ControlPlane, chart_renders: dict[str, Rendered], breakage: str, violation: str
) -> None:
    rendered = chart_renders["defaults"]
    namespace = restricted_namespace(control_plane, rendered)
    workload, pod = next((w, p) for w, p in pod_templates(rendered) if w.startswith("Deployment/"))
    container = pod["spec"]["containers"][0]
    context = container.setdefault("securityContext", {})
    if breakage == "allowPrivilegeEscalation":
        context["allowPrivilegeEscalation"] = True
    elif breakage == "runAsNonRoot":
        context["runAsNonRoot"] = False
        pod["spec"].setdefault("securityContext", {})["runAsNonRoot"] = False
    else:
        context["capabilities"] = {"add": ["NET_ADMIN"]}
    answer = admit(control_plane, namespace, pod)
    assert answer.status == 403, f"{workload}: {answer.status} {answer.message}"
    assert 'violates PodSecurity "restricted:latest"' in answer.message
    assert violation in answer.message
