"""The chart's kubernetes-actions server: off by default; when on, its own ServiceAccount with exactly the
write grants its tools use, a restricted pod, valid manifests, and an MCPServer only when asked for."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.chart import test_chart as chart_checks
from tests.support.chart_render import NAMESPACE, Rendered, load_chart, render

NAME = "ai-ops-mcp-kubernetes-actions"
COMPONENT = "mcp-kubernetes-actions"
ON = {"mcpServers": {"kubernetesActions": {"enabled": True}}}
# The whole grant, rule by rule: (apiGroup, resource) -> verbs. Anything else is a failure.
WORKLOAD_RULES = {
    ("apps", "deployments"): {"get", "patch"},
    ("apps", "statefulsets"): {"get", "patch"},
    ("apps", "daemonsets"): {"get", "patch"},
    ("", "pods"): {"get", "delete"},
}
NODE_RULES = {("", "nodes"): {"get", "patch"}}


@pytest.fixture(scope="module")
def chart() -> Any:
    return load_chart()


def of_component(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    return [
        obj
        for obj in rendered.of_kind(kind)
        if (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == COMPONENT
    ]


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """A role's rules as (apiGroup, resource) -> verbs; refuses resourceNames and nonResourceURLs."""
    found: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def bound_roles(rendered: Rendered, account: str) -> list[dict[str, Any]]:
    """Every Role and ClusterRole bound to `account`, through any binding in the render."""
    roles = []
    for binding_kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in rendered.of_kind(binding_kind):
            if any(s.get("name") == account for s in binding["subjects"]):
                ref = binding["roleRef"]
                roles.append(rendered.get(ref["kind"], ref["name"], binding["metadata"].get("namespace")))
    return roles


def test_off_by_default(chart: Any) -> None:
    rendered = render(chart, {})
    everything = [obj for _, obj in rendered.objects]
    assert not [obj for obj in everything if COMPONENT in str(obj["metadata"].get("labels"))]
    assert NAME not in {obj["metadata"]["name"] for obj in rendered.registered("MCPServer")}
    network = render(chart, {"networkPolicy": {"enabled": True}})
    assert f"{NAME}" not in network.names("NetworkPolicy")


def test_cluster_scope_grants_exactly_what_the_tools_use(chart: Any) -> None:
    rendered = render(chart, ON)
    [account] = of_component(rendered, "ServiceAccount")
    assert account["metadata"]["name"] == NAME
    [deployment] = of_component(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is True
    args = pod["containers"][0]["args"]
    assert args[:2] == ["mcp", "kubernetes-actions"]
    assert args[args.index("--port") + 1] == "8094"
    assert args[args.index("--max-replicas") + 1] == "50" and args[args.index("--max-scale-step") + 1] == "5"
    assert "--namespaces" not in args  # the whole cluster: RBAC decides
    roles = bound_roles(rendered, NAME)
    assert {role["kind"] for role in roles} == {"ClusterRole"}
    combined: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for key, verbs in grants(role).items():
            combined.setdefault(key, set()).update(verbs)
    assert combined == {**WORKLOAD_RULES, **NODE_RULES}
    # No other account of the chart is bound to these roles.
    for binding in of_component(rendered, "RoleBinding") + of_component(rendered, "ClusterRoleBinding"):
        assert [s["name"] for s in binding["subjects"]] == [NAME]


def test_listed_namespaces_get_roles_there_only(chart: Any) -> None:
    values = {"mcpServers": {"kubernetesActions": {"enabled": True, "namespaces": ["shop", "billing"]}}}
    rendered = render(chart, values)
    roles = bound_roles(rendered, NAME)
    namespaced = [role for role in roles if role["kind"] == "Role"]
    assert sorted(role["metadata"]["namespace"] for role in namespaced) == ["billing", "shop"]
    for role in namespaced:
        assert grants(role) == WORKLOAD_RULES
    [nodes] = [role for role in roles if role["kind"] == "ClusterRole"]
    assert grants(nodes) == NODE_RULES
    [deployment] = of_component(rendered, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespaces") + 1] == "shop,billing"


def test_namespace_scope_has_no_cluster_grants(chart: Any) -> None:
    values = {
        "rbac": {"scope": "namespace"},
        "watchNamespaces": [NAMESPACE, "team-a"],
        "mcpServers": {"kubernetesActions": {"enabled": True, "maxReplicas": 8}},
    }
    rendered = render(chart, values)
    roles = bound_roles(rendered, NAME)
    assert {role["kind"] for role in roles} == {"Role"}
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted([NAMESPACE, "team-a"])
    for role in roles:
        assert grants(role) == WORKLOAD_RULES
    [deployment] = of_component(rendered, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespaces") + 1] == f"{NAMESPACE},team-a"
    assert args[args.index("--max-replicas") + 1] == "8"
    without_nodes = render(
        chart, {"mcpServers": {"kubernetesActions": {"enabled": True, "nodeActions": False}}}
    )
    assert NODE_RULES.keys().isdisjoint(
        key for role in bound_roles(without_nodes, NAME) for key in grants(role)
    )


def test_pod_is_restricted_and_manifests_are_valid(chart: Any) -> None:
    rendered = render(chart, {**ON, "networkPolicy": {"enabled": True}})
    chart_checks.test_every_pod_meets_the_restricted_pod_security_standard(rendered)
    chart_checks.test_no_wildcards_in_any_role(rendered)
    mine = [obj for _, obj in rendered.objects if COMPONENT in str(obj["metadata"].get("labels"))]
    assert {obj["kind"] for obj in mine} >= {
        "ServiceAccount",
        "Deployment",
        "Service",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
    }
    for obj in mine:
        for version in (chart_checks.OLDEST_KUBERNETES, chart_checks.NEWEST_KUBERNETES):
            kubernetes_validate.validate(obj, version, strict=True)


def test_network_policy_reaches_only_the_api_server_and_is_reached_by_the_operator(chart: Any) -> None:
    network = {"enabled": True, "apiServer": {"cidrs": ["172.18.0.0/16"]}}
    rendered = render(chart, {**ON, "networkPolicy": network})
    policy = rendered.get("NetworkPolicy", NAME)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["spec"]["ingress"]
    [selector] = ingress["from"]
    components = [e for e in selector["podSelector"]["matchExpressions"] if e["key"].endswith("component")]
    assert components[0]["values"] == ["operator"]  # not the chat: it has no MCPServer for these tools
    egress = policy["spec"]["egress"]
    assert [rule.get("to") for rule in egress] == [None, [{"ipBlock": {"cidr": "172.18.0.0/16"}}]]
    assert {p["port"] for p in egress[0]["ports"]} == {53}
    registered = render(
        chart,
        {
            "mcpServers": {"kubernetesActions": {"enabled": True, "mcpServer": {"create": True}}},
            "networkPolicy": network,
        },
    )
    [ingress] = registered.get("NetworkPolicy", NAME)["spec"]["ingress"]
    expressions = ingress["from"][0]["podSelector"]["matchExpressions"]
    assert next(e for e in expressions if e["key"].endswith("component"))["values"] == ["chat", "operator"]


def test_mcp_server_is_registered_only_when_enabled_and_asked(chart: Any) -> None:
    assert not [
        o for o in render(chart, ON).registered("MCPServer") if o["metadata"]["name"] == NAME
    ]  # enabled alone: the chat agent does not get write tools
    asked = {"mcpServers": {"kubernetesActions": {"enabled": True, "mcpServer": {"create": True}}}}
    server = render(chart, asked).get_registered("MCPServer", NAME)
    assert server["spec"]["url"] == f"http://{NAME}.{NAMESPACE}.svc:8094/mcp"
    assert server["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT
    disabled = {"mcpServers": {"kubernetesActions": {"enabled": False, "mcpServer": {"create": True}}}}
    assert NAME not in {o["metadata"]["name"] for o in render(chart, disabled).registered("MCPServer")}


@pytest.mark.parametrize(
    "values",
    [
        {"maxReplicas": -1},
        {"maxReplicas": 10001},
        {"namespaces": ["Not_A_Namespace"]},
        {"namespaces": "shop"},
        {"unknownKey": 1},
    ],
)
def test_schema_refuses_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"(?i)schema|values"):
        render(chart, {"mcpServers": {"kubernetesActions": {"enabled": True, **values}}})
