"""What several real-server suites need: our CRDs installed, the operator running in the test's loop, kubectl.

Everything here talks to a `ControlPlane` (controlplane.py) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.cluster.controlplane import REPO_ROOT, ControlPlane

if TYPE_CHECKING:
    from chat_service.config.kubernetes import KubeConfigMapSource

CRD_DIR = REPO_ROOT / "crds"
AI = "ai-ops.dev/v1alpha1"
# The kinds the namespace-pass tests create and judge (each of crds/ is installed and waited for).
PLURALS = ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")


def install_crds(plane: ControlPlane, timeout: float = 60.0) -> None:
    """Create every CRD of crds/ (kept if already there) and wait until each is served.

    "Established" is not enough for a client that lists right after: wait until a list answers.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with plane.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        served: list[str] = []
        for path in sorted(CRD_DIR.glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            served.append(body["spec"]["names"]["plural"])
            try:
                extensions.create_custom_resource_definition(body)
            except ApiException as error:
                if error.status != 409:
                    raise
        custom = client.CustomObjectsApi(api)
        deadline = time.monotonic() + timeout
        for plural in served:
            while True:
                try:
                    custom.list_cluster_custom_object("ai-ops.dev", "v1alpha1", plural, limit=1)
                    break
                except ApiException as error:
                    if error.status != 404 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)


def quick_kopf(settings: Any) -> None:
    """Short kopf backoffs and batching windows: the tests wait for convergence, not for kopf's idling."""
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.watching.reconnect_backoff = 0.1
    settings.batching.idle_timeout = 0.5
    settings.batching.batch_window = 0.02
    settings.batching.exit_timeout = 0.5


@contextlib.asynccontextmanager
async def running_operator(kubeconfig: Path, namespace: str, **overrides: Any) -> AsyncIterator[Any]:
    """`OperatorRuntime.run` (what `ai-ops operator` runs) in the test's loop, with `kubeconfig`'s user."""
    from ai_ops_operator.runtime.kube import KubeClient
    from ai_ops_operator.runtime.operator import OperatorRuntime
    from ai_ops_operator.runtime.settings import OperatorSettings

    settings = OperatorSettings(**{"namespaces": (namespace,), "allow_loopback": True, **overrides})
    kube = KubeClient.from_environment(str(kubeconfig))
    runtime = OperatorRuntime(settings, kube)
    ready = asyncio.Event()
    task = asyncio.create_task(runtime.run(ready_flag=ready, tune=quick_kopf))
    try:
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            task.result()
            raise RuntimeError("the operator exited before it was ready")
        if not done:
            raise TimeoutError("the operator was not ready after 30 s")
        yield runtime
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        kube.close()


# --- the chat's own access: the chart's Role, its ServiceAccount's token ----------------------------

AGENT_CONFIGMAP = "ai-ops-agent-config"
CHAT_ACCOUNT = "ai-ops-chat"


def chat_namespace(plane: ControlPlane, tmp_path: Path) -> tuple[str, Path]:
    """A namespace with the chart's chat Role, RoleBinding and ServiceAccount, and a file holding that
    account's token (as kubelet projects it)."""
    from tests.cluster.rest import request
    from tests.support.chart_render import load_chart, render

    namespace = plane.create_namespace("chat")
    rendered = render(load_chart(), {}, namespace=namespace)
    for kind, plural in (("Role", "roles"), ("RoleBinding", "rolebindings")):
        obj = rendered.get(kind, CHAT_ACCOUNT)
        answer = request(
            plane, "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}", obj
        )
        assert answer.ok, answer.message
    assert rendered.get("Role", CHAT_ACCOUNT)["rules"][0]["resourceNames"] == [AGENT_CONFIGMAP]
    token = tmp_path / "token"
    token.write_text(plane.service_account_token(namespace, CHAT_ACCOUNT))
    return namespace, token


def source_for(plane: ControlPlane, namespace: str, token: Path, **options: Any) -> KubeConfigMapSource:
    """The chat's KubeConfigMapSource on the agent ConfigMap of `namespace`, as `token`'s user."""
    from chat_service.config.kubernetes import KubeConfigMapSource

    return KubeConfigMapSource(
        plane.url,
        namespace,
        AGENT_CONFIGMAP,
        token_path=token,
        ca_path=plane.certs.ca_cert,
        retry_seconds=0.2,
        **options,
    )


def kubectl(kubeconfig: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run kubectl with `kubeconfig` (never the user's own); the caller checks the return code."""
    binary = shutil.which("kubectl")
    if binary is None:
        raise RuntimeError("kubectl is not on PATH")
    return subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --- helm ----------------------------------------------------------------------------------------

HELM_SCRIPT = REPO_ROOT / "scripts" / "helm.sh"
NO_GO_EXIT = 2


class HelmUnavailable(Exception):
    """Neither a helm binary (AI_OPS_HELM) nor Go to build one: the chart suite is skipped."""


def find_helm() -> Path:
    """The helm binary scripts/helm.sh built (or found): the last line it prints."""
    done = subprocess.run(
        ["bash", str(HELM_SCRIPT)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3000
    )
    if done.returncode == NO_GO_EXIT:
        raise HelmUnavailable(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"scripts/helm.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


# --- a Deployment's container as a local process, the way a kubelet would run it ------------------------


SERVICE_ACCOUNT_MOUNT = "/run/secrets/kubernetes.io/serviceaccount"
# In a mount namespace of the child only: a fresh /run (/var/run links to it) holding the ServiceAccount
# folder a pod has, so the process finds in-cluster credentials exactly where a pod's kubelet puts them.
_POD_MOUNTS = (
    'mount -t tmpfs -o size=1m tmpfs /run && mkdir -p "$0" && mount --bind "$AI_OPS_TEST_SA_DIR" "$0" '
    '&& unset AI_OPS_TEST_SA_DIR && exec "$@"'
)


class PodProcess:
    """One container of a Deployment stored in the apiserver, run locally with its ServiceAccount's token.

    Like a kubelet: the container's args (with `ai-ops` from this checkout), its env with `valueFrom`
    resolved (downward API, Secret and ConfigMap keys, read as the admin the way the kubelet reads them),
    `$(VAR)` references expanded, and a TokenRequest token of the pod's ServiceAccount at the in-cluster
    path, with KUBERNETES_SERVICE_HOST/PORT pointing at the apiserver. `overrides` replace (None: drop)
    variables whose value names something only a pod has (a mounted file, a Service's DNS name).
    """

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        deployment: str,
        folder: Path,
        overrides: dict[str, str | None] | None = None,
        args: list[str] | None = None,
    ) -> None:
        from kubernetes import client

        self.plane = plane
        self.namespace = namespace
        self.name = deployment
        with plane.api_client() as api:
            stored = client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace)
            pod = stored.spec.template.spec
            (container,) = pod.containers
            self.service_account = str(pod.service_account_name)
            self.container_args = list(container.args or [])
            self.env = self._resolve_env(client.CoreV1Api(api), container.env or [])
        for key, value in (overrides or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.args = args if args is not None else self.container_args
        self.folder = folder / deployment
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "process.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _resolve_env(self, core: Any, entries: list[Any]) -> dict[str, str]:
        import base64
        import re

        env: dict[str, str] = {}
        for entry in entries:
            if entry.value is not None:
                value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), entry.value)
            elif entry.value_from and entry.value_from.field_ref:
                path = entry.value_from.field_ref.field_path
                value = {"metadata.namespace": self.namespace, "metadata.name": f"{self.name}-local"}[path]
            elif entry.value_from and entry.value_from.secret_key_ref:
                ref = entry.value_from.secret_key_ref
                data = core.read_namespaced_secret(ref.name, self.namespace).data or {}
                value = base64.b64decode(data[ref.key]).decode()
            elif entry.value_from and entry.value_from.config_map_key_ref:
                ref = entry.value_from.config_map_key_ref
                value = (core.read_namespaced_config_map(ref.name, self.namespace).data or {})[ref.key]
            elif entry.value_from is None:
                value = ""  # the API server stores `value: ""` as no value at all (omitempty)
            else:
                raise ValueError(f"env {entry.name}: a source this helper does not know")
            env[entry.name] = value
        return env

    def start(self) -> None:
        import os

        sa_dir = self.folder / "serviceaccount"
        sa_dir.mkdir(exist_ok=True)
        (sa_dir / "token").write_text(self.plane.service_account_token(self.namespace, self.service_account))
        (sa_dir / "ca.crt").write_bytes(self.plane.certs.ca_cert.read_bytes())
        (sa_dir / "namespace").write_text(self.namespace)
        host, port = self.plane.url.removeprefix("https://").rsplit(":", 1)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            **self.env,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "AI_OPS_TEST_SA_DIR": str(sa_dir),
        }
        argv = [str(REPO_ROOT / ".venv" / "bin" / "ai-ops"), *self.args]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _POD_MOUNTS,
                    SERVICE_ACCOUNT_MOUNT,
                    *argv,
                ],
                env=env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group (a pod's termination), SIGKILL after 10 s."""
        import os
        import signal

        if self._process is None:
            return
        process, self._process = self._process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
