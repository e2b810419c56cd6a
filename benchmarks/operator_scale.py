"""Operator scale benchmark: 1000 MCPServers against an API server and a few real MCP servers.

    .venv/bin/python benchmarks/operator_scale.py [--apiserver emulator|real|both] [--servers 1000]
        [--mcp-processes 4] [--changes 40]

The API server is the emulator of tests/harness (in this process), the real kube-apiserver and etcd of
tests/cluster (child processes, built by scripts/control-plane.sh; objects are written with the admin
certificate), or both, one after the other, with the figures printed side by side at the end. The
operator runs as its own process (``ai-ops operator``), so its CPU time and peak memory are its own.
Printed, not asserted (no timed tests):

- time until every MCPServer has a health, and first-round probes per second;
- steady-state probes per second over one probe interval (from the operator's metrics);
- create-or-update-to-ConfigMap latency (p50, p95): an LLMModel created or changed until the agent
  ConfigMap in the API server shows it;
- the operator's CPU time (and share of one core) and peak memory (VmHWM).

Targets on a 2-core machine: all servers probed within one 30 s interval on at most one core; ConfigMap
propagation p95 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # tests.harness and tests.cluster (the API servers, the MCP fixture servers)

AI = "ai-ops.dev/v1alpha1"
CM = "ai-ops-agent-config"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def probe_count(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("ai_ops_mcp_probe_duration_seconds_count"):
            total += float(line.split()[-1])
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Cluster(Protocol):
    """What the benchmark needs of an API server: the emulator's handle has exactly these methods."""

    kubeconfig_path: Path

    def create(self, obj: dict[str, Any]) -> Any: ...
    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any: ...
    def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[Any]: ...
    def patch(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Any) -> Any: ...


class RealCluster:
    """The same four calls on the real kube-apiserver, as its admin (system:masters)."""

    def __init__(self, plane: Any) -> None:
        from kubernetes import client

        self.kubeconfig_path = plane.kubeconfig
        self.api = plane.api_client()
        self.api.configuration.connection_pool_maxsize = 4
        self.dynamic = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def create(self, obj: dict[str, Any]) -> Any:
        namespace = obj["metadata"]["namespace"]
        group, version = obj["apiVersion"].split("/")
        plural = {"LLMProvider": "llmproviders", "LLMModel": "llmmodels", "MCPServer": "mcpservers"}[
            obj["kind"]
        ]
        return self.dynamic.create_namespaced_custom_object(group, version, namespace, plural, obj)

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            if api_version == "v1" and plural == "configmaps":
                return self.api.sanitize_for_serialization(
                    self.core.read_namespaced_config_map(name, namespace)
                )
            group, version = api_version.split("/")
            return self.dynamic.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[Any]:
        group, version = api_version.split("/")
        items: list[Any] = self.dynamic.list_namespaced_custom_object(group, version, namespace, plural)[
            "items"
        ]
        return items

    def patch(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Any) -> Any:
        group, version = api_version.split("/")
        return self.dynamic.patch_namespaced_custom_object(group, version, namespace, plural, name, patch)


@asynccontextmanager
async def emulator_cluster(log_dir: Path) -> AsyncIterator[tuple[Cluster, str]]:
    import kmock

    from tests.harness.emulator import EmulatorHandle, KubernetesApiEmulator, write_kubeconfig

    async with KubernetesApiEmulator() as emulator, kmock.Server(emulator) as http_server:
        trimmer = asyncio.create_task(emulator.keep_recent_requests())
        try:
            url = str(http_server.url).rstrip("/")
            k8s = EmulatorHandle(emulator, url, write_kubeconfig(url, log_dir))
            k8s.seed_namespace("bench")
            yield k8s, "bench"
        finally:
            trimmer.cancel()


@asynccontextmanager
async def real_cluster() -> AsyncIterator[tuple[Cluster, str]]:
    from tests.cluster.controlplane import ControlPlane, find_binaries
    from tests.cluster.helpers import install_crds

    plane = ControlPlane(await asyncio.to_thread(find_binaries))
    try:
        await asyncio.to_thread(plane.start)
        print(f"kube-apiserver and etcd ready in {plane.started_in:.1f} s")
        install_crds(plane)
        cluster = RealCluster(plane)
        try:
            yield cluster, plane.create_namespace(prefix="bench")
        finally:
            cluster.api.close()
    finally:
        plane.stop()


async def measure(k8s: Cluster, ns: str, args: argparse.Namespace, log_dir: Path) -> dict[str, str]:
    """One run: returns the figures for the side-by-side table (each also printed as it is measured)."""
    import httpx

    from tests.harness.mcp_servers import McpFixtureServer
    from tests.harness.ports import free_port

    figures: dict[str, str] = {}
    own_cpu = time.process_time()  # this process runs both backends one after the other
    mcp = [McpFixtureServer("healthy", log_dir) for _ in range(args.mcp_processes)]
    for server in mcp:
        server.spawn()
    for server in mcp:
        server.wait_ready()
    k8s.create(
        {
            "apiVersion": AI,
            "kind": "LLMProvider",
            "metadata": {"name": "local", "namespace": ns},
            "spec": {"type": "ollama"},
        }
    )
    began = time.monotonic()
    for i in range(args.servers):
        k8s.create(
            {
                "apiVersion": AI,
                "kind": "MCPServer",
                "metadata": {"name": f"mcp-{i:04d}", "namespace": ns},
                "spec": {
                    "url": mcp[i % len(mcp)].url,
                    "healthCheck": {
                        "intervalSeconds": args.interval,
                        "timeoutSeconds": min(10, args.interval - 1),
                    },
                },
            }
        )
    print(
        f"created {args.servers} MCPServers in {time.monotonic() - began:.1f} s on {len(mcp)} MCP server processes"
    )

    metrics_port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "AI_OPS_WATCH_NAMESPACES": ns,
        "AI_OPS_ALLOW_LOOPBACK": "true",
        "AI_OPS_METRICS_PORT": str(metrics_port),
        "AI_OPS_LOG_LEVEL": "WARNING",
        "AI_OPS_PROBE_CONCURRENCY": str(args.concurrency),
    }
    started = time.monotonic()
    with open(log_dir / "operator.log", "wb") as log:
        operator = subprocess.Popen(
            [
                sys.executable,
                *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
                "-m",
                "ai_ops_cli",
                "operator",
                "--kubeconfig",
                str(k8s.kubeconfig_path),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # 1. Every server probed (operator's metrics), then every server has a health in its status.
        first_probe_at = None
        first_round_done = None
        async with httpx.AsyncClient() as client:
            while first_round_done is None:
                try:
                    count = probe_count((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
                except httpx.TransportError:
                    count = 0  # not serving yet
                if count and first_probe_at is None:
                    first_probe_at = time.monotonic() - started
                if count >= args.servers:
                    first_round_done = time.monotonic() - started
                if operator.poll() is not None:
                    raise SystemExit(f"operator exited: {(log_dir / 'operator.log').read_text()[-2000:]}")
                await asyncio.sleep(0.2)
        assert first_probe_at is not None
        first_round = first_round_done - first_probe_at
        print(
            f"first probe {first_probe_at:.1f} s after start; {args.servers} probes done "
            f"{first_round_done:.1f} s after start, i.e. in {first_round:.1f} s "
            f"({args.servers / max(0.001, first_round):.0f} probes/s)"
        )
        figures["first probe after start"] = f"{first_probe_at:.1f} s"
        figures[f"first round of {args.servers} probes"] = (
            f"{first_round:.1f} s ({args.servers / max(0.001, first_round):.0f}/s)"
        )
        while True:
            healthy = sum(
                1
                for o in k8s.list(AI, "mcpservers", ns)
                if (o.get("status") or {}).get("health") not in (None, "Unknown")
            )
            if healthy >= args.servers:
                break
            if operator.poll() is not None:
                raise SystemExit(f"operator exited: {(log_dir / 'operator.log').read_text()[-2000:]}")
            await asyncio.sleep(0.5)
        all_health = time.monotonic() - started
        print(f"every server has a probed health in its status {all_health:.1f} s after start")
        figures["every health in its status"] = f"{all_health:.1f} s"
        in_cm = 0
        while in_cm < args.servers:
            cm = k8s.get("v1", "configmaps", ns, CM)
            in_cm = len(json.loads(cm["data"]["agent-config.json"])["mcpServers"]) if cm else 0
            await asyncio.sleep(0.1)
        in_cm_after = time.monotonic() - started
        print(f"all {args.servers} servers in the ConfigMap after {in_cm_after:.1f} s")
        figures["all servers in the ConfigMap"] = f"{in_cm_after:.1f} s"

        # 2. Create-or-update to ConfigMap latency.
        latencies = []
        for i in range(args.changes):
            name = f"model-{i // 2:03d}"
            if i % 2 == 0:
                k8s.create(
                    {
                        "apiVersion": AI,
                        "kind": "LLMModel",
                        "metadata": {"name": name, "namespace": ns},
                        "spec": {"providerRef": {"name": "local"}, "model": name},
                    }
                )
                expected: tuple[str, float | None] = (name, None)
            else:
                k8s.patch(AI, "llmmodels", ns, name, {"spec": {"temperature": 0.5}})
                expected = (name, 0.5)
            t0 = time.monotonic()
            while True:
                cm = k8s.get("v1", "configmaps", ns, CM) or {"data": {"agent-config.json": '{"models": []}'}}
                models = json.loads(cm["data"]["agent-config.json"])["models"]
                if any((m["name"], m["temperature"]) == expected for m in models):
                    break
                await asyncio.sleep(0.005)
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(0.05)
        p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
        print(
            f"create/update -> ConfigMap over {len(latencies)} changes: p50 {p50:.0f} ms, "
            f"p95 {p95:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
        figures["create/update -> ConfigMap p50 / p95"] = f"{p50:.0f} / {p95:.0f} ms"

        # 3. Steady state over one interval.
        async with httpx.AsyncClient() as client:
            before = probe_count((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
            cpu_before, t_before = cpu_seconds(operator.pid), time.monotonic()
            await asyncio.sleep(args.interval)
            after = probe_count((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
            cpu_after, t_after = cpu_seconds(operator.pid), time.monotonic()
        steady = (after - before) / (t_after - t_before)
        steady_cpu = (cpu_after - cpu_before) / (t_after - t_before) * 100
        print(
            f"steady state: {steady:.0f} probes/s over one {args.interval} s interval "
            f"({(after - before):.0f} probes; target {args.servers / args.interval:.0f}/s), "
            f"operator CPU {steady_cpu:.0f}% of one core"
        )
        figures["steady state probes/s"] = f"{steady:.0f} (target {args.servers / args.interval:.0f})"
        figures["steady state operator CPU"] = f"{steady_cpu:.0f}% of a core"
        total_cpu, wall = cpu_seconds(operator.pid), time.monotonic() - started
        print(
            f"benchmark process (API client or emulator, MCP clients): {time.process_time() - own_cpu:.1f} s CPU"
        )
        peak = peak_memory_mb(operator.pid)
        print(
            f"operator: {total_cpu:.1f} s CPU in {wall:.1f} s wall ({total_cpu / wall * 100:.0f}% of one core "
            f"on average, start-up included), peak memory {peak:.0f} MB"
        )
        figures["operator CPU, whole run"] = f"{total_cpu:.1f} s in {wall:.0f} s"
        figures["operator peak memory"] = f"{peak:.0f} MB"
        return figures
    finally:
        operator.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(operator.wait, 15)
        except subprocess.TimeoutExpired:
            operator.kill()
        for server in mcp:
            server.stop()


def print_side_by_side(results: dict[str, dict[str, str]]) -> None:
    names = list(results)
    rows = list(dict.fromkeys(row for figures in results.values() for row in figures))
    width = max(len(r) for r in rows)
    columns = [max(len(n), *(len(results[n].get(r, "")) for r in rows)) for n in names]
    print()
    print("  ".join([" " * width, *(n.ljust(c) for n, c in zip(names, columns, strict=True))]))
    for row in rows:
        cells = (results[n].get(row, "-").ljust(c) for n, c in zip(names, columns, strict=True))
        print("  ".join([row.ljust(width), *cells]))


async def main(args: argparse.Namespace) -> None:
    backends = {"emulator": ["emulator"], "real": ["real"], "both": ["emulator", "real"]}[args.apiserver]
    results: dict[str, dict[str, str]] = {}
    for backend in backends:
        log_dir = Path(tempfile.mkdtemp(prefix=f"ai-ops-bench-{backend}-"))
        print(f"--- {backend} API server (logs in {log_dir})")
        opened = emulator_cluster(log_dir) if backend == "emulator" else real_cluster()
        async with opened as (k8s, ns):
            label = "emulator" if backend == "emulator" else "kube-apiserver"
            results[label] = await measure(k8s, ns, args, log_dir)
    print_side_by_side(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--apiserver",
        choices=("emulator", "real", "both"),
        default="emulator",
        help="the emulator, the real kube-apiserver of tests/cluster, or both side by side",
    )
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--mcp-processes", type=int, default=4)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", default=None, help="write a cProfile of the operator process here")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    asyncio.run(main(parser.parse_args()))
