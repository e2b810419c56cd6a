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
from typing import Any

import yaml

from tests.cluster.controlplane import REPO_ROOT, ControlPlane

CRD_DIR = REPO_ROOT / "crds"
AI = "ai-ops.dev/v1alpha1"
PLURALS = ("llmproviders", "llmmodels", "llmmiddlewares", "mcpservers")


def install_crds(plane: ControlPlane, timeout: float = 60.0) -> None:
    """Create our four CRDs from crds/ (kept if already there) and wait until each is served.

    "Established" is not enough for a client that lists right after: wait until a list answers.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with plane.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        for path in sorted(CRD_DIR.glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            try:
                extensions.create_custom_resource_definition(body)
            except ApiException as error:
                if error.status != 409:
                    raise
        custom = client.CustomObjectsApi(api)
        deadline = time.monotonic() + timeout
        for plural in PLURALS:
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
