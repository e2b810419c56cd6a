"""The chart installed by a real helm into a real kube-apiserver, its processes run with the chart's RBAC.

`helm install ai-ops charts/ai-ops -n ai-ops --create-namespace` (default values, no --wait: there is no
kubelet) into a control plane of this module's own (the release's cluster-wide objects, CRDs and
ClusterRoles with fixed names, meet no other suite's). Then, as a kubelet would, the operator, the chat
service and the kubernetes MCP server run as local processes from the Deployments helm stored, each with
a TokenRequest token of its own chart ServiceAccount at the in-cluster path: a missing grant is a 403 in
their logs or answers. The register hook Job's script runs the same way with the Job's ServiceAccount,
and this module marks the Job complete (there is no job controller) so that helm goes on.

`helm upgrade` and `helm uninstall` then show what docs/helm.md says they keep and leave.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ai_ops_api.specs import USABLE_SECRET_LABEL, USABLE_SECRET_LABEL_VALUE
from tests.cluster.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneUnavailable,
    find_binaries,
    free_port,
)
from tests.cluster.helpers import HelmUnavailable, PodProcess, find_helm, kubectl
from tests.harness.waiting import eventually
from tests.support.mcp_server_helpers import mcp_client

RELEASE = "ai-ops"
NS = "ai-ops"
CHART = REPO_ROOT / "charts" / "ai-ops"
POLL = 0.2
SA = {
    "operator": "ai-ops-operator",
    "chat": "ai-ops-chat",
    "mcp-kubernetes": "ai-ops-mcp-kubernetes",
    "mcp-netops": "ai-ops-mcp-netops",
}


# --- the control plane, helm, and the hook Job --------------------------------------------------


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    try:
        binaries = find_binaries()
    except ControlPlaneUnavailable as reason:
        pytest.skip(str(reason))
    own = ControlPlane(binaries)
    try:
        own.start()
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    try:
        return find_helm()
    except HelmUnavailable as reason:
        pytest.skip(str(reason))


class Helm:
    """helm as the admin, with the register hook Job played locally (its script, its token, its status)."""

    def __init__(self, binary: Path, plane: ControlPlane, folder: Path) -> None:
        self.binary = binary
        self.plane = plane
        self.folder = folder
        self.register_runs: list[subprocess.CompletedProcess[str]] = []

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), "--kubeconfig", str(self.plane.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(self.folder),
                "HELM_CACHE_HOME": str(self.folder / "cache"),
                "HELM_CONFIG_HOME": str(self.folder / "config"),
                "HELM_DATA_HOME": str(self.folder / "data"),
            },
        )

    def with_register_hook(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`helm install|upgrade ...` while this plays the kubelet and job controller for the hook Job."""
        command = [str(self.binary), "--kubeconfig", str(self.plane.kubeconfig), *args, "--timeout", "180s"]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.folder),
            "HELM_CACHE_HOME": str(self.folder / "cache"),
            "HELM_CONFIG_HOME": str(self.folder / "config"),
            "HELM_DATA_HOME": str(self.folder / "data"),
        }
        with tempfile.TemporaryFile("w+") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL
            )
            try:
                job = self._await_job(process)
                if job is not None:
                    self.register_runs.append(self._run_register_script())
                    self._complete(job)
                process.wait(timeout=180)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            out.seek(0)
            return subprocess.CompletedProcess(command, process.returncode, out.read(), "")

    def _await_job(self, process: subprocess.Popen[str]) -> Any:
        with self.plane.api_client() as api:
            batch = client.BatchV1Api(api)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                jobs = batch.list_namespaced_job(NS).items
                if jobs:
                    return jobs[0]
                time.sleep(POLL)
        return None

    def _run_register_script(self) -> subprocess.CompletedProcess[str]:
        """The Job's command, with the files of its ConfigMap and a token of its ServiceAccount."""
        with self.plane.api_client() as api:
            data = client.CoreV1Api(api).read_namespaced_config_map("ai-ops-register", NS).data
        folder = self.folder / "register"
        folder.mkdir(exist_ok=True)
        (folder / "register.py").write_text(data["register.py"])
        (folder / "objects.json").write_text(data["objects.json"])
        kubeconfig = self.plane.write_kubeconfig(
            self.plane.service_account_token(NS, "ai-ops-register"), folder / "kubeconfig", user="register"
        )
        return subprocess.run(
            [sys.executable, str(folder / "register.py"), str(folder / "objects.json"), "30"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)},
            stdin=subprocess.DEVNULL,
        )

    def _complete(self, job: Any) -> None:
        """What the job controller writes when the pod succeeded (the Job's status only)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
            for kind in ("SuccessCriteriaMet", "Complete")
        ]
        status = {
            "startTime": now,
            "completionTime": now,
            "succeeded": 1,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": conditions,
        }
        with self.plane.api_client() as api:
            client.BatchV1Api(api).patch_namespaced_job_status(job.metadata.name, NS, {"status": status})


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ai-ops-chart-real-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def helm(helm_binary: Path, plane: ControlPlane, folder: Path) -> Helm:
    return Helm(helm_binary, plane, folder)


@pytest.fixture(scope="module")
def installed(helm: Helm) -> subprocess.CompletedProcess[str]:
    done = helm.with_register_hook("install", RELEASE, str(CHART), "-n", NS, "--create-namespace")
    assert done.returncode == 0, done.stdout
    return done


# --- the three processes ------------------------------------------------------------------------


def local_args(args: list[str], port: int) -> list[str]:
    """The container's args with the pod's listen address and port made loopback and free."""
    out = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out


class Workloads:
    def __init__(self, plane: ControlPlane, folder: Path) -> None:
        self.plane = plane
        self.mcp_port, self.chat_port = free_port(), free_port()
        self.mcp = PodProcess(plane, NS, "ai-ops-mcp-kubernetes", folder)
        self.mcp.args = local_args(self.mcp.container_args, self.mcp_port)
        # Nothing listens on netops' port: the operator marks it Unhealthy and leaves it out of the config.
        self.netops_url = f"http://127.0.0.1:{free_port()}/mcp"
        with plane.api_client() as api:
            tokens = client.CoreV1Api(api).read_namespaced_secret("ai-ops-chat-auth", NS).data["tokens"]
        tokens_file = folder / "chat-tokens"
        tokens_file.write_bytes(base64.b64decode(tokens))
        self.chat_token = tokens_file.read_text().strip().splitlines()[0].split(":", 1)[1]
        self.chat = PodProcess(
            plane,
            NS,
            "ai-ops-chat",
            folder,
            overrides={
                # Files a pod has mounted: the agent config only through the API watch (the file is absent).
                "AI_OPS_CONFIG": str(folder / "no-such-dir" / "agent-config.json"),
                "AI_OPS_SECRETS_DIR": str(folder / "secrets"),
                "AI_OPS_AUTH_TOKENS_FILE": str(tokens_file),
                # A Service's DNS name: conversations in memory instead.
                "AI_OPS_REDIS_URL": None,
                "AI_OPS_REDIS_PASSWORD": None,
            },
        )
        self.chat.args = local_args(self.chat.container_args, self.chat_port)
        self.operator = PodProcess(
            plane,
            NS,
            "ai-ops-operator",
            folder,
            overrides={
                "AI_OPS_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
                "AI_OPS_METRICS_PORT": str(free_port()),
                # Test only: the bundled MCP servers listen on loopback here.
                "AI_OPS_ALLOW_LOOPBACK": "true",
            },
        )

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}/mcp"

    def point_registered_servers_here(self) -> None:
        """The registered MCPServers name in-cluster Services: point them at the local processes."""
        with self.plane.api_client() as api:
            custom = client.CustomObjectsApi(api)
            for name, url in (
                ("ai-ops-mcp-kubernetes", self.mcp_url),
                ("ai-ops-mcp-netops", self.netops_url),
            ):
                custom.patch_namespaced_custom_object(
                    "ai-ops.dev", "v1alpha1", NS, "mcpservers", name, {"spec": {"url": url}}
                )

    def all(self) -> list[PodProcess]:
        return [self.mcp, self.operator, self.chat]

    def stop(self) -> None:
        for process in self.all():
            process.stop()


@pytest.fixture(scope="module")
def workloads(installed: Any, plane: ControlPlane, folder: Path) -> Iterator[Workloads]:
    running = Workloads(plane, folder)
    running.point_registered_servers_here()
    try:
        for process in running.all():
            process.start()
        yield running
    finally:
        running.stop()


SUBRESOURCES = ("status", "log", "exec")


def can_i(
    plane: ControlPlane, service_account: str, verb: str, resource: str, namespace: str | None = NS
) -> str:
    """`kubectl auth can-i` as the ServiceAccount; `kind/status` (`log`, `exec`) names a subresource and
    `kind/name` one object."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    kind, _, rest = resource.partition("/")
    target = [kind, f"--subresource={rest}"] if rest in SUBRESOURCES else [resource]
    done = kubectl(
        plane.kubeconfig,
        "auth",
        "can-i",
        verb,
        *target,
        *where,
        f"--as=system:serviceaccount:{NS}:{service_account}",
    )
    answer = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert answer in ("yes", "no"), done.stdout + done.stderr
    return answer


def no_forbidden(process: PodProcess) -> None:
    # Not a log timestamp's milliseconds ("04:25:40,403"): that matched once, on a 200.
    lines = [
        line for line in process.log().splitlines() if re.search(r"(?<![,.])\b403\b|forbidden", line, re.I)
    ]
    assert not lines, f"{process.name}: " + "\n".join(lines[:5])


def admin(plane: ControlPlane) -> client.ApiClient:
    return plane.api_client()


# --- the RBAC table, from docs/helm.md -------------------------------------------------------------

# (ServiceAccount, verb, resource, namespace or None for cluster-wide, expected). The namespace is the
# release's; "other" is another namespace (the chart's default cluster scope grants there too).
RBAC_TABLE: list[tuple[str, str, str, str | None, str]] = [
    # The operator: the four kinds (never create or delete them), their status...
    *[
        ("operator", verb, f"{kind}.ai-ops.dev", NS, "yes")
        for kind in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")
        for verb in ("get", "list", "watch", "patch")
    ],
    ("operator", "patch", "mcpservers.ai-ops.dev/status", NS, "yes"),
    ("operator", "update", "llmmodels.ai-ops.dev/status", NS, "yes"),
    ("operator", "create", "llmmodels.ai-ops.dev", NS, "no"),
    ("operator", "delete", "mcpservers.ai-ops.dev", NS, "no"),
    # ... Secrets read only, ConfigMaps written but never deleted, ...
    ("operator", "get", "secrets", NS, "yes"),
    ("operator", "list", "secrets", "other", "yes"),
    ("operator", "watch", "secrets", NS, "yes"),
    ("operator", "create", "secrets", NS, "no"),
    ("operator", "update", "secrets", NS, "no"),
    ("operator", "delete", "secrets", NS, "no"),
    ("operator", "create", "configmaps", NS, "yes"),
    ("operator", "patch", "configmaps", NS, "yes"),
    ("operator", "delete", "configmaps", NS, "no"),
    # ... the chat Deployment patched, no other, no pods, ...
    ("operator", "patch", "deployments.apps/ai-ops-chat", NS, "yes"),
    ("operator", "get", "deployments.apps/ai-ops-chat", NS, "yes"),
    ("operator", "list", "deployments.apps", NS, "yes"),
    ("operator", "watch", "deployments.apps", NS, "yes"),
    ("operator", "patch", "deployments.apps/ai-ops-operator", NS, "no"),
    ("operator", "create", "deployments.apps", NS, "no"),
    ("operator", "delete", "deployments.apps/ai-ops-chat", NS, "no"),
    ("operator", "create", "pods", NS, "no"),
    # ... ActionRequests watched and their status written; their targets read (checked to exist), never
    # written (the executing MCP server's own account does that), ...
    ("operator", "watch", "actionrequests.ai-ops.dev", NS, "yes"),
    ("operator", "update", "actionrequests.ai-ops.dev/status", NS, "yes"),
    ("operator", "create", "actionrequests.ai-ops.dev", NS, "no"),
    ("operator", "get", "pods", NS, "yes"),
    ("operator", "delete", "pods", NS, "no"),
    ("operator", "patch", "statefulsets.apps", NS, "no"),
    ("operator", "patch", "nodes", None, "no"),
    # ... events, peering, and (cluster scope) namespaces and CRDs read.
    ("operator", "create", "events", NS, "yes"),
    ("operator", "patch", "events", NS, "yes"),
    ("operator", "delete", "events", NS, "no"),
    ("operator", "patch", "clusterkopfpeerings.kopf.dev", None, "yes"),
    ("operator", "list", "namespaces", None, "yes"),
    ("operator", "watch", "customresourcedefinitions.apiextensions.k8s.io", None, "yes"),
    ("operator", "create", "customresourcedefinitions.apiextensions.k8s.io", None, "no"),
    ("operator", "create", "rolebindings.rbac.authorization.k8s.io", NS, "no"),
    # The chat: its one ConfigMap, nothing else; never a Secret, not even its own token Secret.
    ("chat", "get", "configmaps/ai-ops-agent-config", NS, "yes"),
    ("chat", "list", "configmaps/ai-ops-agent-config", NS, "yes"),
    ("chat", "watch", "configmaps/ai-ops-agent-config", NS, "yes"),
    ("chat", "get", "configmaps/ai-ops-register", NS, "no"),
    ("chat", "list", "configmaps", NS, "no"),
    ("chat", "patch", "configmaps/ai-ops-agent-config", NS, "no"),
    ("chat", "get", "secrets", NS, "no"),
    ("chat", "get", "secrets/ai-ops-chat-auth", NS, "no"),
    ("chat", "list", "secrets", NS, "no"),
    ("chat", "list", "llmmodels.ai-ops.dev", NS, "no"),
    ("chat", "patch", "deployments.apps/ai-ops-chat", NS, "no"),
    ("chat", "list", "pods", NS, "no"),
    # The kubernetes MCP server: get and list of what its tools read; no watch, no Secrets, no ConfigMaps.
    *[
        ("mcp-kubernetes", verb, resource, NS, "yes")
        for resource in (
            "pods",
            "pods/log",
            "services",
            "events",
            "deployments.apps",
            "statefulsets.apps",
            "daemonsets.apps",
            "replicasets.apps",
        )
        for verb in ("get", "list")
    ],
    ("mcp-kubernetes", "list", "namespaces", None, "yes"),
    ("mcp-kubernetes", "get", "nodes", None, "yes"),
    ("mcp-kubernetes", "watch", "pods", NS, "no"),
    ("mcp-kubernetes", "get", "secrets", NS, "no"),
    ("mcp-kubernetes", "list", "secrets", NS, "no"),
    ("mcp-kubernetes", "list", "secrets", None, "no"),
    ("mcp-kubernetes", "get", "configmaps", NS, "no"),
    ("mcp-kubernetes", "list", "configmaps", NS, "no"),
    ("mcp-kubernetes", "delete", "pods", NS, "no"),
    ("mcp-kubernetes", "create", "pods/exec", NS, "no"),
    ("mcp-kubernetes", "patch", "deployments.apps", NS, "no"),
    ("mcp-kubernetes", "list", "mcpservers.ai-ops.dev", NS, "no"),
    # netops has no API access at all.
    ("mcp-netops", "list", "pods", NS, "no"),
    ("mcp-netops", "get", "secrets", NS, "no"),
    ("mcp-netops", "get", "configmaps/ai-ops-agent-config", NS, "no"),
]


# --- the tests ----------------------------------------------------------------------------------


def test_helm_install_stores_the_release_and_the_register_job_registers_with_its_own_token(
    plane: ControlPlane, installed: subprocess.CompletedProcess[str], helm: Helm
) -> None:
    assert "STATUS: deployed" in installed.stdout, installed.stdout
    (register,) = helm.register_runs
    assert register.returncode == 0, register.stdout + register.stderr
    assert "MCPServer ai-ops/ai-ops-mcp-kubernetes: created" in register.stdout
    assert "ClusterKopfPeering ai-ops: created" in register.stdout
    with admin(plane) as api:
        custom = client.CustomObjectsApi(api)
        names = {
            o["metadata"]["name"]
            for o in custom.list_namespaced_custom_object("ai-ops.dev", "v1alpha1", NS, "mcpservers")["items"]
        }
        assert names == {"ai-ops-mcp-kubernetes", "ai-ops-mcp-netops"}
        custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "ai-ops")
        # The hook's objects are gone once the Job succeeded, as the chart's delete policy says.
        with pytest.raises(ApiException) as gone:
            client.CoreV1Api(api).read_namespaced_service_account("ai-ops-register", NS)
        assert gone.value.status == 404


def test_register_script_run_again_updates_the_registered_servers_with_the_jobs_grant(
    plane: ControlPlane, installed: Any, helm: Helm
) -> None:
    """An upgrade runs the hook again: the objects exist, the script replaces their spec (its Role's verbs)."""
    done = helm.with_register_hook("upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values")
    assert done.returncode == 0, done.stdout
    register = helm.register_runs[-1]
    assert register.returncode == 0, register.stdout + register.stderr
    assert "MCPServer ai-ops/ai-ops-mcp-kubernetes: replaced" in register.stdout
    assert "ClusterKopfPeering ai-ops: kept" in register.stdout


@pytest.mark.parametrize(("component", "verb", "resource", "namespace", "expected"), RBAC_TABLE)
def test_rbac_table(
    plane: ControlPlane,
    installed: Any,
    component: str,
    verb: str,
    resource: str,
    namespace: str | None,
    expected: str,
) -> None:
    if namespace == "other":
        namespace = "default"
    assert can_i(plane, SA[component], verb, resource, namespace) == expected


async def test_the_processes_run_with_their_chart_service_accounts(
    plane: ControlPlane, workloads: Workloads
) -> None:
    with admin(plane) as api:
        custom = client.CustomObjectsApi(api)
        apps = client.AppsV1Api(api)
        core = client.CoreV1Api(api)

        def health(name: str) -> str | None:
            status = (
                custom.get_namespaced_custom_object("ai-ops.dev", "v1alpha1", NS, "mcpservers", name).get(
                    "status"
                )
                or {}
            )
            return status.get("health")

        # The operator (its token) probes the kubernetes MCP server (its own token), which lists for it.
        await eventually(
            lambda: health("ai-ops-mcp-kubernetes") == "Healthy", "the bundled server Healthy", 60, POLL
        )
        await eventually(
            lambda: health("ai-ops-mcp-netops") == "Unhealthy", "netops (not running) Unhealthy", 90, POLL
        )

        def agent_config() -> dict[str, Any] | None:
            try:
                cm = core.read_namespaced_config_map("ai-ops-agent-config", NS)
            except ApiException:
                return None
            return {
                "checksum": cm.metadata.annotations["ai-ops.dev/checksum"],
                **json.loads(cm.data["agent-config.json"]),
            }

        config = await eventually(
            lambda: (
                (c := agent_config())
                and [s["name"] for s in c["mcpServers"]] == ["ai-ops-mcp-kubernetes"]
                and c
            ),
            "the agent ConfigMap with the bundled server",
            60,
            POLL,
        )
        # The chat reads it through the API watch its Role allows (its config file does not exist here).
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{workloads.chat_port}") as http:

            async def ready() -> Any:
                try:
                    answer = await http.get("/readyz")
                except httpx.TransportError:
                    return None
                body = answer.json()
                return (
                    body
                    if answer.status_code == 200
                    and (body.get("config") or {}).get("checksum") == config["checksum"]
                    else None
                )

            await eventually(ready, "the chat ready on the operator's config", 60, POLL)

        # The kubernetes MCP server's tools with its own token: what it may read works, Secrets are refused.
        async with mcp_client(workloads.mcp_url) as mcp:
            pods = await mcp.call("list_resources", kind="deployments", namespace=NS)
            assert not pods.is_error, pods.text
            assert {row["name"] for row in pods.json()["items"]} >= {"ai-ops-chat", "ai-ops-operator"}
            # Every read-only tool a turn uses on a workload, each within the grants.
            for tool, arguments in (
                ("describe_workload", {"kind": "deployment", "name": "ai-ops-chat", "namespace": NS}),
                ("describe_workload", {"kind": "statefulset", "name": "ai-ops-redis", "namespace": NS}),
                ("get_resource", {"kind": "services", "name": "ai-ops-chat", "namespace": NS}),
                ("list_events", {"namespace": NS}),
                ("list_resources", {"kind": "nodes"}),
                ("list_namespaces", {}),
            ):
                answer = await mcp.call(tool, **arguments)
                assert not answer.is_error, f"{tool}: {answer.text}"
            secrets = await mcp.call("list_secrets", namespace=NS)
        assert secrets.is_error
        assert "forbidden" in secrets.text.lower()
        assert "ai-ops-chat-auth" not in secrets.text

        # A Secret referenced by an MCPServer header (and opted in with the usable label) reaches the chat
        # Deployment as a projected volume.
        core.create_namespaced_secret(
            NS,
            client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name="tool-token", labels={USABLE_SECRET_LABEL: USABLE_SECRET_LABEL_VALUE}
                ),
                string_data={"authorization": "Bearer x"},
            ),
        )
        custom.patch_namespaced_custom_object(
            "ai-ops.dev",
            "v1alpha1",
            NS,
            "mcpservers",
            "ai-ops-mcp-kubernetes",
            {
                "spec": {
                    "headers": [
                        {
                            "name": "Authorization",
                            "valueFrom": {"secretKeyRef": {"name": "tool-token", "key": "authorization"}},
                        }
                    ]
                }
            },
        )

        def wired() -> Any:
            template = apps.read_namespaced_deployment("ai-ops-chat", NS).spec.template
            names = [v.name for v in template.spec.volumes]
            return names if "ai-ops-secrets" in names else None

        await eventually(wired, "the chat Deployment wired by the operator", 60, POLL)
    for process in workloads.all():
        assert process.running, process.log()[-3000:]
        no_forbidden(process)


def test_helm_upgrade_keeps_the_operators_projected_volume(
    plane: ControlPlane, workloads: Workloads, helm: Helm
) -> None:
    with admin(plane) as api:
        apps = client.AppsV1Api(api)
        before = api.sanitize_for_serialization(apps.read_namespaced_deployment("ai-ops-chat", NS))
        assert "ai-ops-secrets" in {v["name"] for v in before["spec"]["template"]["spec"]["volumes"]}
        # The upgrade's hook sets the registered servers' URLs back to the chart's Service names, which
        # the operator must not resolve here: it stops first (the upgrade is about the Deployment).
        workloads.operator.stop()
        done = helm.with_register_hook(
            "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values", "--set", "chat.logLevel=debug"
        )
        assert done.returncode == 0, done.stdout
        after = api.sanitize_for_serialization(apps.read_namespaced_deployment("ai-ops-chat", NS))
    template = after["spec"]["template"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert (
        volumes["ai-ops-secrets"]
        == {v["name"]: v for v in before["spec"]["template"]["spec"]["volumes"]}["ai-ops-secrets"]
    )
    assert set(volumes) == {v["name"] for v in before["spec"]["template"]["spec"]["volumes"]}
    (container,) = template["spec"]["containers"]
    assert {"name": "ai-ops-secrets", "mountPath": "/var/run/secrets/ai-ops", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "ai-ops.dev/secret-refs-checksum" in template["metadata"]["annotations"]
    # The upgrade itself reached the Deployment.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AI_OPS_LOG_LEVEL"] == "DEBUG"


def test_helm_uninstall_leaves_what_the_docs_say(
    plane: ControlPlane, workloads: Workloads, helm: Helm
) -> None:
    workloads.stop()
    done = helm.run("uninstall", RELEASE, "-n", NS)
    assert done.returncode == 0, done.stdout + done.stderr
    with admin(plane) as api:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        extensions = client.ApiextensionsV1Api(api)
        # Kept: the CRDs (crds.keep), the register Job's objects, the agent ConfigMap the operator wrote.
        crds = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
        assert {
            f"{p}.ai-ops.dev" for p in ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")
        } <= crds
        servers = custom.list_namespaced_custom_object(
            "ai-ops.dev", "v1alpha1", NS, "mcpservers", label_selector=f"app.kubernetes.io/instance={RELEASE}"
        )
        assert {o["metadata"]["name"] for o in servers["items"]} == {
            "ai-ops-mcp-kubernetes",
            "ai-ops-mcp-netops",
        }
        custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "ai-ops")
        agent = core.read_namespaced_config_map("ai-ops-agent-config", NS)
        assert agent.metadata.labels["app.kubernetes.io/managed-by"] == "ai-ops-operator"
        # Gone: every workload and grant of the release.
        assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == []
        assert [s.metadata.name for s in apps.list_namespaced_stateful_set(NS).items] == []
        assert {r.metadata.name for r in rbac.list_cluster_role().items} & {
            "ai-ops-operator",
            "ai-ops-mcp-kubernetes",
            "ai-ops-view",
            "ai-ops-edit",
        } == set()
        assert [r.metadata.name for r in rbac.list_namespaced_role(NS).items] == []
        assert {s.metadata.name for s in core.list_namespaced_service_account(NS).items} <= {"default"}
        assert "ai-ops-chat-auth" not in {s.metadata.name for s in core.list_namespaced_secret(NS).items}
    # With the grants gone, the chart's ServiceAccounts can do nothing any more.
    assert can_i(plane, SA["operator"], "list", "secrets", NS) == "no"
