"""The chart's register Job script (charts/ai-ops/files/register.py) against the Kubernetes API emulator.

It runs exactly as in the hook Job (`python register.py objects.json DEADLINE`), as a subprocess with a
kubeconfig pointing at the emulator, on the objects the chart itself renders.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.emulator import EmulatorHandle
from tests.harness.ports import free_port
from tests.support.chart_render import CHART_DIR, NAMESPACE, RELEASE, load_chart, render

SCRIPT = CHART_DIR / "files" / "register.py"
MCPSERVERS = ("ai-ops.dev/v1alpha1", "mcpservers")
CLUSTER_PEERINGS = ("kopf.dev/v1", "clusterkopfpeerings")


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    """What the chart's default values make the Job register."""
    with load_chart() as chart:
        return render(chart, {}).register_entries


async def _register(
    target: EmulatorHandle | Path, entries: list[dict[str, Any]], tmp_path: Path, deadline: float = 30
) -> tuple[int | None, str, str]:
    """Run the script against the emulator (or a kubeconfig file); (exit code, stdout, stderr)."""
    kubeconfig = target if isinstance(target, Path) else target.kubeconfig_path
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(entries))
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), str(objects), str(deadline),
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=deadline + 30)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_creates_then_replaces_mcpservers_and_keeps_peerings(
    k8s_emulator: EmulatorHandle, entries: list[dict[str, Any]], tmp_path: Path
):
    k8s_emulator.seed_namespace(NAMESPACE)
    kinds = sorted(e["object"]["kind"] for e in entries)
    assert kinds == ["ClusterKopfPeering", "MCPServer", "MCPServer"]

    code, out, err = await _register(k8s_emulator, entries, tmp_path)
    assert code == 0, err
    assert out.count(": created") == 3
    name = f"{RELEASE}-mcp-netops"
    stored = k8s_emulator.get(*MCPSERVERS, NAMESPACE, name)
    assert stored is not None and stored["spec"]["url"] == f"http://{name}.{NAMESPACE}.svc:8092/mcp"
    assert (
        stored["spec"]["healthCheck"]["timeoutSeconds"] == 10
    )  # the CRD's default, filled by the "API server"
    peering = k8s_emulator.get(*CLUSTER_PEERINGS, None, RELEASE)
    assert peering is not None

    # The operator's status and kopf's peers are written meanwhile; then an upgrade changes a spec.
    k8s_emulator.patch(*MCPSERVERS, NAMESPACE, name, {"status": {"health": "Healthy"}}, subresource="status")
    k8s_emulator.patch(*CLUSTER_PEERINGS, None, RELEASE, {"status": {"pod-1": {"priority": 0}}})
    changed = json.loads(json.dumps(entries))
    for entry in changed:
        if entry["object"]["metadata"]["name"] == name:
            entry["object"]["spec"]["healthCheck"]["intervalSeconds"] = 60
    code, out, err = await _register(k8s_emulator, changed, tmp_path)
    assert code == 0, err
    assert out.count(": replaced") == 2 and out.count(": kept") == 1
    stored = k8s_emulator.get(*MCPSERVERS, NAMESPACE, name)
    assert stored is not None
    assert stored["spec"]["healthCheck"]["intervalSeconds"] == 60
    assert stored["status"]["health"] == "Healthy"
    peering = k8s_emulator.get(*CLUSTER_PEERINGS, None, RELEASE)
    assert peering is not None and peering["status"] == {"pod-1": {"priority": 0}}


async def test_retries_an_unreachable_api_server_until_its_deadline(
    entries: list[dict[str, Any]], tmp_path: Path
):
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
        })
    )  # fmt: skip
    code, out, err = await _register(kubeconfig, entries[:1], tmp_path, deadline=3)
    assert code == 1 and out == ""
    assert f"MCPServer {NAMESPACE}/{RELEASE}-mcp-kubernetes:" in err


async def test_refused_objects_fail_at_once(
    k8s_emulator: EmulatorHandle, entries: list[dict[str, Any]], tmp_path: Path
):
    k8s_emulator.seed_namespace(NAMESPACE)
    bad = json.loads(json.dumps([e for e in entries if e["object"]["kind"] == "MCPServer"][:1]))
    bad[0]["object"]["spec"]["transport"] = "carrier-pigeon"
    code, _, err = await _register(k8s_emulator, bad, tmp_path, deadline=60)
    assert code == 1 and ": 422 " in err
