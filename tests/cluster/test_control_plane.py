"""The control plane fixture itself: a real apiserver with RBAC and admission on, and its credentials work."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.controlplane import ADMIN_USER, ControlPlane


def whoami(api: client.ApiClient) -> tuple[str, list[str]]:
    """The user name and groups the apiserver sees for `api`'s credential (a SelfSubjectReview)."""
    review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status is not None and review.status.user_info is not None
    return str(review.status.user_info.username), list(review.status.user_info.groups or [])


def message(error: ApiException) -> str:
    """The message of the Status object the apiserver answered a refusal with."""
    return str(json.loads(error.body or "{}").get("message", ""))


def test_readyz_answers_ok(control_plane: ControlPlane) -> None:
    with urllib.request.urlopen(
        f"{control_plane.url}/readyz?verbose", timeout=5, context=control_plane.ssl_context()
    ) as response:
        body = response.read().decode()
    assert response.status == 200
    assert "readyz check passed" in body
    assert "[+]etcd ok" in body


def test_namespace_and_configmap_are_stored(control_plane: ControlPlane) -> None:
    namespace = control_plane.create_namespace()
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"model": "small"}),
        )
        stored = core.read_namespaced_config_map("settings", namespace)
    assert stored.data == {"model": "small"}
    # The real apiserver keeps a resourceVersion and uid: stored in etcd, not echoed back.
    assert stored.metadata is not None
    assert stored.metadata.resource_version
    assert stored.metadata.uid


def test_admin_is_in_system_masters(control_plane: ControlPlane) -> None:
    with control_plane.api_client() as api:
        user, groups = whoami(api)
    assert user == ADMIN_USER
    assert "system:masters" in groups


def test_service_account_token_is_accepted_and_rbac_denies_what_is_not_granted(
    control_plane: ControlPlane,
) -> None:
    namespace = control_plane.create_namespace()
    token = control_plane.service_account_token(namespace, "reader")
    with control_plane.api_client(token) as api:
        assert whoami(api)[0] == f"system:serviceaccount:{namespace}:reader"
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert "forbidden" in message(denied.value)


def test_a_role_binding_grants_exactly_its_rule(control_plane: ControlPlane) -> None:
    namespace = control_plane.create_namespace()
    token = control_plane.service_account_token(namespace, "configmap-reader")
    with control_plane.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-configmaps"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="configmap-reader", namespace=namespace)
                ],
            ),
        )
    with control_plane.api_client(token) as api:
        core = client.CoreV1Api(api)
        assert core.list_namespaced_config_map(namespace).items == []
        with pytest.raises(ApiException) as denied:
            core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
            )
    assert denied.value.status == 403


def test_pod_security_admission_enforces_its_level(control_plane: ControlPlane) -> None:
    namespace = control_plane.create_namespace(labels={"pod-security.kubernetes.io/enforce": "baseline"})
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image="example.invalid/none:1",
                    security_context=client.V1SecurityContext(privileged=True),
                )
            ]
        ),
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as denied:
            core.create_namespaced_pod(namespace, pod)
        # The same pod where no level is enforced: stored (and never run, there is no kubelet).
        core.create_namespaced_pod(control_plane.create_namespace(), pod)
    assert denied.value.status == 403
    assert 'violates PodSecurity "baseline:latest"' in message(denied.value)


def test_validating_admission_policy_is_enforced(control_plane: ControlPlane) -> None:
    namespace = control_plane.create_namespace(prefix="vap")
    name = f"deny-forbidden-{namespace}"
    with control_plane.api_client() as api:
        admission = client.AdmissionregistrationV1Api(api)
        admission.create_validating_admission_policy(
            client.V1ValidatingAdmissionPolicy(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ValidatingAdmissionPolicySpec(
                    failure_policy="Fail",
                    match_constraints=client.V1MatchResources(
                        resource_rules=[
                            client.V1NamedRuleWithOperations(
                                api_groups=[""],
                                api_versions=["v1"],
                                operations=["CREATE"],
                                resources=["configmaps"],
                            )
                        ]
                    ),
                    validations=[
                        client.V1Validation(
                            expression="!has(object.data) || !('forbidden' in object.data)",
                            message="no key named forbidden",
                        )
                    ],
                ),
            )
        )
        admission.create_validating_admission_policy_binding(
            client.V1ValidatingAdmissionPolicyBinding(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ValidatingAdmissionPolicyBindingSpec(
                    policy_name=name,
                    validation_actions=["Deny"],
                    match_resources=client.V1MatchResources(
                        namespace_selector=client.V1LabelSelector(
                            match_labels={"kubernetes.io/metadata.name": namespace}
                        )
                    ),
                ),
            )
        )
        core = client.CoreV1Api(api)
        # The policy takes effect once the apiserver's informer has it: poll, within a generous limit.
        deadline = time.monotonic() + 30
        attempt = 0
        while True:
            attempt += 1
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"probe-{attempt}"), data={"forbidden": "1"}
            )
            try:
                core.create_namespaced_config_map(namespace, body)
            except ApiException as error:
                assert error.status == 422, error.body
                assert "no key named forbidden" in message(error)
                break
            assert time.monotonic() < deadline, "the ValidatingAdmissionPolicy never took effect"
            time.sleep(0.2)
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="allowed"), data={"fine": "1"})
        )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kubectl_works_with_the_written_kubeconfigs(control_plane: ControlPlane) -> None:
    namespace = control_plane.create_namespace()
    admin = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "get",
            "namespace",
            namespace,
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert admin.returncode == 0, admin.stderr
    assert admin.stdout.strip() == f"namespace/{namespace}"

    token_config = control_plane.write_kubeconfig(control_plane.service_account_token(namespace, "nobody"))
    can_i = subprocess.run(
        ["kubectl", "--kubeconfig", str(token_config), "auth", "can-i", "list", "secrets", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert can_i.stdout.strip() == "no", can_i.stdout + can_i.stderr
    assert can_i.returncode == 1
