"""The Helm chart, rendered by the real Helm engine across value sets and checked like an API server would.

Each value set is rendered once (module scope). Every built-in object is validated with kubernetes-validate
for the oldest and newest Kubernetes minor we support; our custom resources with the project's own
validation (schema, defaults and CEL). What only a real cluster can check is listed in docs/testing.md.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from ai_ops_api.agent_config import MAX_RUNBOOK_SHARDS, runbook_shard_name
from ai_ops_operator.core.validation import validate_resource
from tests.support.chart_render import (
    CHART_DIR,
    NAMESPACE,
    NON_BUILTIN_GROUPS,
    RELEASE,
    ROOT,
    Rendered,
    container_env,
    env_value,
    load_chart,
    render,
)

# The oldest Kubernetes minor we support (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
OLDEST_KUBERNETES = "1.30"  # ValidatingAdmissionPolicy v1 (the ActionRequest policy) is GA from 1.30
NEWEST_KUBERNETES = kubernetes_validate.latest_version()
# The shard ConfigMaps of the contract, which the chart names in resourceNames.
RUNBOOK_SHARD_NAMES = [runbook_shard_name(i) for i in range(MAX_RUNBOOK_SHARDS)]

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace-scope": {"rbac": {"scope": "namespace"}, "watchNamespaces": [NAMESPACE, "team-a"]},
    "external-redis": {
        "redis": {
            "enabled": False,
            "external": {"url": "rediss://redis.example.com:6380/2", "existingSecret": "redis-creds"},
        }
    },
    "auth-off-in-memory": {"chat": {"auth": {"enabled": False}}, "redis": {"enabled": False}},
    "hpa-ingress-pdb": {
        "chat": {
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "chat.example.com",
                "tls": [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}],
            },
            "podDisruptionBudget": {"enabled": True},
            "auth": {"existingSecret": "my-tokens"},
        },
        "operator": {"replicas": 2},
        "redis": {"persistence": {"enabled": True, "storageClass": "standard"}},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "chatIngressNamespaces": ["ingress-nginx"],
            "metricsNamespaces": ["monitoring"],
            "apiServer": {"cidrs": ["172.18.0.0/16"]},
            "mcpEgress": [{"cidr": "10.20.0.0/16", "ports": [8080, 8443]}],
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "mcpServers": {"netops": {"allowedTargets": ["*.example.com", "10.0.0.0/8"]}},
    },
    "mcp-off": {
        "mcpServers": {"kubernetes": {"enabled": False}, "netops": {"enabled": False}},
        "crds": {"install": False},
        "operator": {"peering": {"enabled": False}},
    },
}


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def renders(chart: helm.Chart) -> dict[str, Rendered]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> Rendered:
    return renders[request.param]


def _is_builtin(obj: dict[str, Any]) -> bool:
    return not str(obj["apiVersion"]).startswith(NON_BUILTIN_GROUPS)


def _roles(rendered: Rendered) -> list[dict[str, Any]]:
    return rendered.of_kind("Role") + rendered.of_kind("ClusterRole")


# --- lint and validation ------------------------------------------------------------------------


def test_lint_strict_passes():
    report = helm.lint(str(CHART_DIR), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_lint_strict_passes_for_every_value_set():
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(CHART_DIR), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], (name, report)


def test_every_builtin_object_is_valid_for_oldest_and_newest_kubernetes(renders: dict[str, Rendered]):
    unique: dict[str, tuple[str, dict[str, Any]]] = {}
    for set_name, rendered in renders.items():
        for path, obj in rendered.objects:
            if _is_builtin(obj):
                unique.setdefault(json.dumps(obj, sort_keys=True), (f"{set_name}:{path}", obj))
    assert len(unique) > 20
    failures = []
    for where, obj in unique.values():
        for version in (OLDEST_KUBERNETES, NEWEST_KUBERNETES):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
                failures.append(f"{where} {obj['kind']}/{obj['metadata']['name']} @ {version}: {error}")
    assert failures == []


def test_only_known_custom_kinds_are_rendered(rendered: Rendered):
    # Custom resources of the release's own CRDs cannot be manifests (Helm would fail a first install):
    # the register Job creates them.
    custom = {(obj["apiVersion"], obj["kind"]) for _, obj in rendered.objects if not _is_builtin(obj)}
    assert custom <= {("monitoring.coreos.com/v1", "ServiceMonitor")}


def test_register_job_creates_valid_objects_as_a_hook(rendered: Rendered):
    entries = rendered.register_entries
    plurals = {
        "MCPServer": "mcpservers",
        "KopfPeering": "kopfpeerings",
        "ClusterKopfPeering": "clusterkopfpeerings",
    }
    for entry in entries:
        obj = entry["object"]
        assert entry["plural"] == plurals[obj["kind"]]
        if obj["kind"] == "MCPServer":
            assert entry["mode"] == "replace" and validate_resource(obj) == [], obj["metadata"]["name"]
        else:
            assert entry["mode"] == "create"  # never replace a peering object: kopf keeps its peers in it
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    register = [o for _, o in rendered.objects if o["metadata"]["name"] == f"{RELEASE}-register"]
    if not entries:
        assert register == []
        return
    assert {o["kind"] for o in register} >= {"ConfigMap", "ServiceAccount", "Job"}
    for obj in register:
        annotations = obj["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    configmap = rendered.get("ConfigMap", f"{RELEASE}-register")
    assert configmap["data"]["register.py"] == (CHART_DIR / "files" / "register.py").read_text().rstrip("\n")
    # Its roles: only the kinds it registers, in the namespaces it registers them in.
    for role in [o for o in register if o["kind"] in ("Role", "ClusterRole")]:
        namespace = role["metadata"].get("namespace")
        wanted = {e["plural"] for e in entries if e["object"]["metadata"].get("namespace") == namespace}
        assert {r for rule in role["rules"] for r in rule["resources"]} == wanted
        assert all("delete" not in rule["verbs"] and "list" not in rule["verbs"] for rule in role["rules"])


def test_names_fit_kubernetes_limits(rendered: Rendered):
    for _, obj in rendered.objects:
        name = obj["metadata"]["name"]
        limit = 253 if obj["kind"] in ("CustomResourceDefinition", "ClusterRole", "Role") else 63
        assert len(name) <= limit and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name


def test_standard_labels_on_every_object(rendered: Rendered):
    for path, obj in rendered.objects:
        if path.startswith(f"{CHART_DIR.name}/templates/crds/"):
            continue  # the CRDs are copies of crds/ (see test_chart_crds.py)
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, (path, obj["metadata"]["name"])
        assert labels.get("app.kubernetes.io/managed-by") == "Helm"
        assert labels.get("helm.sh/chart", "").startswith("ai-ops-")
        assert labels.get("app.kubernetes.io/name") == "ai-ops"
        assert "app.kubernetes.io/version" in labels


# --- Pod Security: restricted -------------------------------------------------------------------

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_every_pod_meets_the_restricted_pod_security_standard(rendered: Rendered):
    pods = rendered.pod_specs()
    assert pods
    for workload, pod in pods:
        pod_ctx = pod.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, workload
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload
        assert pod_ctx.get("runAsUser", 1) != 0, workload
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(flag), workload
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, (workload, volume)
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{workload}/{container['name']}"
            ctx = container.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("runAsNonRoot") is True, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not ctx.get("capabilities", {}).get("add"), where
            assert not ctx.get("privileged"), where
            assert ctx.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault", where
            assert "hostPort" not in json.dumps(container.get("ports", [])), where
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), (where, section)
            # A read-only root needs a writable /tmp.
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, where
            (tmp,) = [v for v in pod["volumes"] if v["name"] == mounts["/tmp"]]
            assert "emptyDir" in tmp, where


# --- RBAC ---------------------------------------------------------------------------------------


def test_no_wildcards_in_any_role(rendered: Rendered):
    for role in _roles(rendered):
        for rule in role.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
                assert not any("*" in item for item in rule.get(field, [])), (role["metadata"]["name"], rule)


def test_secrets_are_only_read(rendered: Rendered):
    for role in _roles(rendered):
        for rule in role.get("rules", []):
            if "secrets" in rule.get("resources", []):
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, (role["metadata"]["name"], rule)


def _grants(role: dict[str, Any], resource: str, verb: str, group: str = "") -> bool:
    return any(
        group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule["verbs"]
        for rule in role.get("rules", [])
    )


def test_chat_may_read_only_its_configmap_and_keep_investigations(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    role = rendered.get("Role", f"{RELEASE}-chat")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["ai-ops-agent-config"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": RUNBOOK_SHARD_NAMES,
            "verbs": ["get"],
        },
        {
            "apiGroups": ["ai-ops.dev"],
            "resources": ["investigations"],
            "verbs": ["create", "get", "list", "watch", "patch"],
        },
        {"apiGroups": ["ai-ops.dev"], "resources": ["investigations/status"], "verbs": ["get", "patch"]},
        {
            "apiGroups": ["ai-ops.dev"],
            "resources": ["actionrequests"],
            "verbs": ["create", "get", "list", "watch"],
        },
        {"apiGroups": ["ai-ops.dev"], "resources": ["actionrequests/status"], "verbs": ["patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = rendered.get("RoleBinding", f"{RELEASE}-chat")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-chat", "namespace": NAMESPACE}
    ]
    # ... and no other binding gives the chat's account anything.
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for other in rendered.of_kind(kind):
            if other is not binding:
                assert all(s["name"] != f"{RELEASE}-chat" for s in other["subjects"])


def test_operator_cluster_scope_rbac_is_least_privilege(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    role = rendered.get("ClusterRole", f"{RELEASE}-operator")
    for kind in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers", "runbooks"):
        assert _grants(role, kind, "watch", "ai-ops.dev") and _grants(role, kind, "patch", "ai-ops.dev")
        assert not _grants(role, kind, "delete", "ai-ops.dev") and not _grants(
            role, kind, "create", "ai-ops.dev"
        )
        assert _grants(role, f"{kind}/status", "patch", "ai-ops.dev")
    assert _grants(role, "configmaps", "create")
    # Deletes only the runbook shards, by name.
    (delete_rule,) = [r for r in role["rules"] if "configmaps" in r["resources"] and "delete" in r["verbs"]]
    assert delete_rule["resourceNames"] == RUNBOOK_SHARD_NAMES and delete_rule["verbs"] == ["delete"]
    assert _grants(role, "events", "create")
    assert _grants(role, "clusterkopfpeerings", "patch", "kopf.dev")
    assert _grants(role, "namespaces", "watch") and not _grants(role, "namespaces", "get")
    # Writes to Deployments only to the chat's, by name.
    (patch_rule,) = [r for r in role["rules"] if "deployments" in r["resources"] and "patch" in r["verbs"]]
    assert patch_rule["resourceNames"] == [f"{RELEASE}-chat"]
    # Pods only read (an ActionRequest's target is checked to exist), never written.
    assert not any("pods" in r["resources"] and set(r["verbs"]) != {"get"} for r in role["rules"])
    assert (
        rendered.get("ClusterRoleBinding", f"{RELEASE}-operator")["subjects"][0]["name"]
        == f"{RELEASE}-operator"
    )


def test_namespace_scope_uses_roles_in_watched_namespaces_only(renders: dict[str, Rendered]):
    rendered = renders["namespace-scope"]
    operator_roles = [r for r in rendered.of_kind("Role") if r["metadata"]["name"] == f"{RELEASE}-operator"]
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == sorted([NAMESPACE, "team-a"])
    assert f"{RELEASE}-operator" not in rendered.names("ClusterRole")
    assert f"{RELEASE}-mcp-kubernetes" not in rendered.names("ClusterRole")
    # Only the aggregated roles and the approver role stay cluster-wide (they grant nothing by themselves).
    assert rendered.names("ClusterRole") == {"ai-ops-view", "ai-ops-edit", "ai-ops-approver"}
    assert rendered.of_kind("ClusterRoleBinding") == []
    operator = rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    assert env_value(operator, "operator", "AI_OPS_WATCH_NAMESPACES") == f"{NAMESPACE},team-a"
    # One KopfPeering per watched namespace (kopf peers per namespace when not cluster-wide).
    peerings = rendered.registered("KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == sorted([NAMESPACE, "team-a"])
    assert rendered.registered("ClusterKopfPeering") == []
    # ... and the register Job may create them there with a Role each, no ClusterRole.
    register_roles = [r for r in rendered.of_kind("Role") if r["metadata"]["name"] == f"{RELEASE}-register"]
    assert sorted(r["metadata"]["namespace"] for r in register_roles) == sorted([NAMESPACE, "team-a"])


def test_kubernetes_mcp_server_is_read_only_and_never_sees_secrets(renders: dict[str, Rendered]):
    role = renders["defaults"].get("ClusterRole", f"{RELEASE}-mcp-kubernetes")
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "secrets" not in rule["resources"], rule
    assert _grants(role, "pods/log", "get") and _grants(role, "events", "list")
    assert _grants(role, "deployments", "list", "apps")


def _mcp_kubernetes_grants(rendered: Rendered) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) granted to the kubernetes MCP server by its ClusterRole or Roles."""
    grants = set()
    for role in _roles(rendered):
        if role["metadata"]["name"] == f"{RELEASE}-mcp-kubernetes":
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        grants |= {(group, resource, verb) for verb in rule["verbs"]}
    return grants


def test_kubernetes_mcp_server_may_only_get_and_list(renders: dict[str, Rendered]):
    # Its tools make single get and list calls; a watch grant would be unused privilege.
    for value_set in ("defaults", "namespace-scope"):
        grants = _mcp_kubernetes_grants(renders[value_set])
        assert grants, value_set
        assert {verb for _, _, verb in grants} == {"get", "list"}, value_set


def test_docs_state_the_kubernetes_mcp_server_rbac_the_chart_grants(renders: dict[str, Rendered]):
    mcp_doc = (ROOT / "docs" / "mcp-servers.md").read_text()
    security = mcp_doc.split("\n## kubernetes\n", 1)[1].split("\n## ", 1)[0].split("### Security", 1)[1]
    documented = set()
    for line in security.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            group = cells[0].strip("`").strip('"')
            resources = re.findall(r"`([^`]+)`", cells[1])
            verbs = re.findall(r"`([^`]+)`", cells[2])
            documented |= {(group, r, v) for r in resources for v in verbs}
    assert documented == _mcp_kubernetes_grants(renders["defaults"])
    helm_doc = " ".join((ROOT / "docs" / "helm.md").read_text().split())
    sentence = re.search(r"The kubernetes server may (.+?) pods,", helm_doc)
    assert sentence, "docs/helm.md no longer says what the kubernetes server may do"
    assert set(re.findall(r"`(\w+)`", sentence.group(1))) == {"get", "list"}


def test_aggregated_cluster_roles(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    view = rendered.get("ClusterRole", "ai-ops-view")
    edit = rendered.get("ClusterRole", "ai-ops-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert {v for r in view["rules"] for v in r["verbs"]} == {"get", "list", "watch"}
    assert _grants(edit, "mcpservers", "create", "ai-ops.dev") and _grants(
        edit, "llmmodels", "delete", "ai-ops.dev"
    )
    assert _grants(edit, "runbooks", "create", "ai-ops.dev") and _grants(
        view, "runbooks", "watch", "ai-ops.dev"
    )
    # Status is the operator's to write.
    assert not any(res.endswith("/status") for r in edit["rules"] for res in r["resources"])


# --- the operator ---------------------------------------------------------------------------------


def test_operator_settings_match_the_chat_deployment(rendered: Rendered):
    operator = rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    chat = rendered.get("Deployment", f"{RELEASE}-chat")
    assert env_value(operator, "operator", "AI_OPS_CHAT_DEPLOYMENT") == chat["metadata"]["name"]
    configmap = env_value(operator, "operator", "AI_OPS_CONFIGMAP_NAME")
    chat_pod = chat["spec"]["template"]["spec"]
    assert env_value(chat_pod, "chat", "AI_OPS_CONFIGMAP_NAME") == configmap
    (volume,) = [v for v in chat_pod["volumes"] if v["name"] == "agent-config"]
    assert volume["configMap"] == {
        "name": configmap,
        "optional": True,
        "items": [{"key": "agent-config.json", "path": "agent-config.json"}],
    }
    assert int(env_value(operator, "operator", "AI_OPS_PROBE_CONCURRENCY")) >= 1
    assert env_value(operator, "operator", "AI_OPS_LIVENESS_ENDPOINT") == "http://0.0.0.0:8080/healthz"
    assert env_value(operator, "operator", "AI_OPS_METRICS_PORT") == "9090"
    (container,) = operator["containers"]
    assert container["args"] == ["operator"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 9090}


def test_cluster_scope_watches_every_namespace_with_cluster_peering(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    operator = rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    assert env_value(operator, "operator", "AI_OPS_WATCH_NAMESPACES") == "*"
    assert env_value(operator, "operator", "AI_OPS_PEERING_NAME") == RELEASE
    assert rendered.get_registered("ClusterKopfPeering", RELEASE)
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= rendered.names(
        "CustomResourceDefinition"
    )


def test_peering_off_refuses_more_than_one_operator(chart: helm.Chart):
    with pytest.raises(helm.HelmError, match="peering"):
        render(chart, {"operator": {"replicas": 2, "peering": {"enabled": False}}})
    rendered = render(chart, VALUE_SETS["mcp-off"])
    operator = rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    assert env_value(operator, "operator", "AI_OPS_PEERING_NAME") == ""
    assert rendered.register_entries == []


# --- the chat, its auth and Redis -------------------------------------------------------------------


def _chat_pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", f"{RELEASE}-chat")["spec"]["template"]["spec"]


def test_chat_probes_and_service(rendered: Rendered):
    (container,) = _chat_pod(rendered)["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["args"][:1] == ["chat"] and "0.0.0.0" in container["args"]
    service = rendered.get("Service", f"{RELEASE}-chat")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"]
        == rendered.get("Deployment", f"{RELEASE}-chat")["spec"]["selector"]["matchLabels"]
    )


def test_bundled_redis_password_reaches_the_url_by_reference(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    chat = _chat_pod(rendered)
    names = [e["name"] for e in container_env(chat, "chat")]
    # $(VAR) only expands variables defined earlier in the list.
    assert names.index("AI_OPS_REDIS_PASSWORD") < names.index("AI_OPS_REDIS_URL")
    assert env_value(chat, "chat", "AI_OPS_REDIS_URL") == (
        f"redis://:$(AI_OPS_REDIS_PASSWORD)@{RELEASE}-redis.{NAMESPACE}.svc:6379/0"
    )
    ref = env_value(chat, "chat", "AI_OPS_REDIS_PASSWORD")["secretKeyRef"]
    secret = rendered.get("Secret", ref["name"])
    password = base64.b64decode(secret["data"][ref["key"]]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    redis = rendered.get("StatefulSet", f"{RELEASE}-redis")
    redis_pod = redis["spec"]["template"]["spec"]
    assert env_value(redis_pod, "redis", "REDIS_PASSWORD")["secretKeyRef"] == ref
    assert "$(REDIS_PASSWORD)" in redis_pod["containers"][0]["args"]
    # The password is in no manifest but its Secret.
    for _, obj in rendered.objects:
        if obj is not secret:
            assert password not in json.dumps(obj)
    # The chat restarts when the password changes (env vars are read once); not for the agent ConfigMap.
    annotations = rendered.get("Deployment", f"{RELEASE}-chat")["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {"checksum/redis-secret"}


def _redis_option(args: list[str], option: str) -> str | None:
    """The value after `option` in redis-server's arguments (the last one wins, as in redis-server)."""
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == option]
    return values[-1] if values else None


def test_default_redis_keeps_conversations_in_an_append_only_file_on_a_volume(
    chart: helm.Chart, renders: dict[str, Rendered]
):
    redis = renders["defaults"].get("StatefulSet", f"{RELEASE}-redis")
    pod = redis["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert _redis_option(args, "--appendonly") == "yes"
    assert _redis_option(args, "--appendfsync") == "everysec"
    assert _redis_option(args, "--dir") == "/data"
    assert _redis_option(args, "--save") == ""  # the AOF is the persistence, no RDB snapshots beside it
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default StorageClass
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert "data" not in {volume["name"] for volume in pod["volumes"]}  # the claim, not a pod volume
    # The image's user (999) can write the volume.
    assert pod["securityContext"]["fsGroup"] == 999 == container["securityContext"].get("runAsUser", 999)
    # Turned off: an emptyDir, no claim, nothing written to disk.
    rendered = render(chart, {"redis": {"persistence": {"enabled": False}}})
    redis = rendered.get("StatefulSet", f"{RELEASE}-redis")
    pod = redis["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "volumeClaimTemplates" not in redis["spec"]
    assert rendered.of_kind("PersistentVolumeClaim") == []
    (data,) = [volume for volume in pod["volumes"] if volume["name"] == "data"]
    assert "emptyDir" in data
    assert _redis_option(args, "--appendonly") == "no" and _redis_option(args, "--save") == ""
    assert "--appendfsync" not in args


def test_redis_volume_size_and_storage_class_are_values(chart: helm.Chart):
    rendered = render(chart, {"redis": {"persistence": {"size": "5Gi", "storageClass": "fast-ssd"}}})
    (claim,) = rendered.get("StatefulSet", f"{RELEASE}-redis")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"


def test_external_redis(renders: dict[str, Rendered]):
    rendered = renders["external-redis"]
    chat = _chat_pod(rendered)
    assert (
        env_value(chat, "chat", "AI_OPS_REDIS_URL")
        == "rediss://:$(AI_OPS_REDIS_PASSWORD)@redis.example.com:6380/2"
    )
    assert env_value(chat, "chat", "AI_OPS_REDIS_PASSWORD")["secretKeyRef"] == {
        "name": "redis-creds",
        "key": "redis-password",
    }
    assert rendered.of_kind("StatefulSet") == []
    assert f"{RELEASE}-redis" not in rendered.names("Secret")
    assert "in memory" not in rendered.notes


def test_external_redis_url_with_credentials_is_refused_with_a_secret(chart: helm.Chart):
    values = {
        "redis": {"external": {"url": "redis://user:pw@redis.example.com:6379/0", "existingSecret": "s"}}
    }
    with pytest.raises(helm.HelmError, match="must not contain credentials"):
        render(chart, values)


def test_in_memory_and_auth_off(renders: dict[str, Rendered]):
    rendered = renders["auth-off-in-memory"]
    chat = _chat_pod(rendered)
    names = {e["name"] for e in container_env(chat, "chat")}
    assert not names & {"AI_OPS_REDIS_URL", "AI_OPS_REDIS_PASSWORD", "AI_OPS_AUTH_TOKENS_FILE"}
    assert {v["name"] for v in chat["volumes"]} == {"agent-config", "tmp"}
    assert rendered.of_kind("StatefulSet") == [] and rendered.of_kind("Secret") == []
    assert "conversations are kept in memory" in rendered.notes
    assert "Authentication is OFF" in rendered.notes


def test_generated_auth_tokens_secret_is_mounted(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    chat = _chat_pod(rendered)
    assert env_value(chat, "chat", "AI_OPS_AUTH_TOKENS_FILE") == "/etc/ai-ops/auth/tokens"
    (volume,) = [v for v in chat["volumes"] if v["name"] == "auth-tokens"]
    secret = rendered.get("Secret", volume["secret"]["secretName"])
    tokens = base64.b64decode(secret["data"]["tokens"]).decode()
    assert re.fullmatch(r"admin:[A-Za-z0-9]{48}\n", tokens)
    (container,) = chat["containers"]
    assert {"name": "auth-tokens", "mountPath": "/etc/ai-ops/auth", "readOnly": True} in container[
        "volumeMounts"
    ]
    token = tokens.strip().split(":", 1)[1]
    assert (
        token not in rendered.notes
        and f"secret -n {NAMESPACE} {secret['metadata']['name']}" in rendered.notes
    )


def test_existing_auth_secret_is_used_not_generated(renders: dict[str, Rendered]):
    rendered = renders["hpa-ingress-pdb"]
    (volume,) = [v for v in _chat_pod(rendered)["volumes"] if v["name"] == "auth-tokens"]
    assert volume["secret"]["secretName"] == "my-tokens"
    assert "my-tokens" not in rendered.names("Secret") and f"{RELEASE}-chat-auth" not in rendered.names(
        "Secret"
    )


def test_hpa_ingress_pdb(renders: dict[str, Rendered]):
    rendered = renders["hpa-ingress-pdb"]
    deployment = rendered.get("Deployment", f"{RELEASE}-chat")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    hpa = rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-chat")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    ingress = rendered.get("Ingress", f"{RELEASE}-chat")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{RELEASE}-chat"
    pdb = rendered.get("PodDisruptionBudget", f"{RELEASE}-chat")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    redis = rendered.get("StatefulSet", f"{RELEASE}-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "standard"
    assert rendered.get("Deployment", f"{RELEASE}-operator")["spec"]["replicas"] == 2


# --- MCP servers, NetworkPolicy, ServiceMonitor ------------------------------------------------------


def test_bundled_mcp_servers_are_registered(renders: dict[str, Rendered]):
    rendered = renders["defaults"]
    for server, port in (("kubernetes", 8091), ("netops", 8092)):
        name = f"{RELEASE}-mcp-{server}"
        pod = rendered.get("Deployment", name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
        assert pod["automountServiceAccountToken"] is (server == "kubernetes")
        (container,) = pod["containers"]
        assert container["args"][:2] == ["mcp", server]
        assert container["args"][2:8] == ["--host", "0.0.0.0", "--port", str(port), "--path", "/mcp"]
        service = rendered.get("Service", name)
        assert service["spec"]["ports"][0]["port"] == port
        resource = rendered.get_registered("MCPServer", name)
        assert resource["spec"]["url"] == f"http://{name}.{NAMESPACE}.svc:{port}/mcp"
        assert resource["spec"]["transport"] == "streamable_http"
    netops_bindings = [
        b
        for b in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding")
        if any(s["name"] == f"{RELEASE}-mcp-netops" for s in b["subjects"])
    ]
    assert netops_bindings == []


def test_mcp_servers_off(renders: dict[str, Rendered]):
    rendered = renders["mcp-off"]
    assert not any("mcp" in obj["metadata"]["name"] for _, obj in rendered.objects)
    assert rendered.of_kind("CustomResourceDefinition") == []  # crds.install false, peering off
    assert "bundled MCP servers" not in rendered.notes


def test_network_policies(renders: dict[str, Rendered]):
    rendered = renders["network-policy"]
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.of_kind("NetworkPolicy")}
    assert set(policies) == {
        f"{RELEASE}-{c}" for c in ("chat", "operator", "redis", "mcp-kubernetes", "mcp-netops")
    }
    chat = policies[f"{RELEASE}-chat"]
    sources = chat["ingress"][0]["from"]
    assert {"podSelector": {}} in sources
    assert sources[1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["ingress-nginx", "monitoring"]
    egress = json.dumps(chat["egress"])
    assert '"port": 53' in egress and "172.18.0.0/16" in egress and "10.20.0.0/16" in egress
    assert '"app.kubernetes.io/component": "redis"' in egress and "0.0.0.0/0" in egress
    redis = policies[f"{RELEASE}-redis"]
    assert (
        redis["egress"] == []
        and redis["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "chat"
    )
    assert "Egress" not in policies[f"{RELEASE}-mcp-netops"]["policyTypes"]
    assert "0.0.0.0/0" not in json.dumps(policies[f"{RELEASE}-operator"])
    netops = rendered.get("Deployment", f"{RELEASE}-mcp-netops")["spec"]["template"]["spec"]
    assert env_value(netops, "netops", "AI_OPS_NETOPS_ALLOW") == "*.example.com,10.0.0.0/8"
    monitor = rendered.get("ServiceMonitor", RELEASE)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "http"}
    assert rendered.get("Service", f"{RELEASE}-operator-metrics")["spec"]["ports"][0]["port"] == 9090


# --- the values schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"chat": {"replica": 2}}, "replica"),  # typo'd key
        ({"chatt": {}}, "chatt"),  # typo'd top-level key
        ({"redis": {"persistence": {"enabeld": True}}}, "enabeld"),
        ({"redis": {"persistence": {"size": "0Gi"}}}, "size"),
        ({"redis": {"persistence": {"storageClass": "Fast_SSD"}}}, "storageClass"),
        ({"chat": {"replicas": "two"}}, "replicas"),  # wrong type
        ({"rbac": {"scope": "global"}}, "scope"),  # not in the enum
        ({"operator": {"metricsPort": 70000}}, "metricsPort"),  # out of range
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"redis": {"external": {"url": "http://redis:6379"}}}, "url"),
        ({"networkPolicy": {"llmEgress": [{"cidr": "0.0.0.0/0"}]}}, "ports"),
    ],
)
def test_schema_rejects_bad_values(chart: helm.Chart, values: dict[str, Any], message: str):
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def _schema_properties(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    for key, sub in node.get("properties", {}).items():
        found.append((f"{path}{key}", sub))
        found.extend(_schema_properties(sub, f"{path}{key}."))
    return found


def test_schema_covers_every_value_and_describes_it():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    properties = dict(_schema_properties(schema))

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                assert f"{path}{key}" in properties, f"{path}{key} is not in values.schema.json"
                if properties[f"{path}{key}"].get("additionalProperties") is False:
                    walk(sub, f"{path}{key}.")

    walk(values, "")
    for path, prop in properties.items():
        if prop.get("type") == "object" and "properties" in prop:
            assert prop.get("additionalProperties") is False, path
        assert prop.get("description"), f"{path} has no description"


# --- the helm binary, when there is one ----------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("helm") is None, reason="no helm binary on PATH (the SDK renders the same engine)"
)
def test_helm_binary_renders_the_same_objects(renders: dict[str, Rendered]):
    result = subprocess.run(
        ["helm", "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(result.stdout) if d)
    expected = sorted((o["kind"], o["metadata"]["name"]) for _, o in renders["defaults"].objects)
    assert kinds == expected


def test_notes_warn_when_the_release_namespace_is_not_watched(
    chart: helm.Chart, renders: dict[str, Rendered]
):
    rendered = render(chart, {"rbac": {"scope": "namespace"}, "watchNamespaces": ["team-a"]})
    assert f'does not watch "{NAMESPACE}"' in rendered.notes
    for name in ("defaults", "namespace-scope"):
        assert "WARNING" not in renders[name].notes


@pytest.mark.parametrize(
    "release",
    [
        "a-very-long-release-name-for-ai-ops-at-the-limit-xx53",  # holds the chart name: fullname = release
        "a-very-long-release-name-for-the-assistant-at-the-l53",  # fullname = release + "-ai-ops", cut
    ],
)
def test_a_long_release_name_gives_short_distinct_names(chart: helm.Chart, release: str):
    assert len(release) == 53  # Helm's maximum
    rendered = render(chart, VALUE_SETS["network-policy"], name=release)
    seen: set[tuple[str, str | None, str]] = set()
    for _, obj in rendered.objects:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63 and re.fullmatch(
            r"[a-z]([-a-z0-9]*[a-z0-9])?", meta["name"].split(".")[0]
        )
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, key
        seen.add(key)
    names = rendered.names("Deployment")
    assert {n.rsplit("-", 1)[-1] for n in names} >= {"operator", "chat", "kubernetes", "netops"}
    operator = rendered.get("Deployment", next(n for n in names if n.endswith("-operator")))
    chat_name = env_value(operator["spec"]["template"]["spec"], "operator", "AI_OPS_CHAT_DEPLOYMENT")
    assert chat_name in names
