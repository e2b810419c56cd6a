"""Run a test function inside its own network (and mount) namespace, with trap listeners.

`run_in_netns(function, *args)` starts `unshare -n -m python -m tests.security.netns SPEC`. The child
brings loopback up, puts the addresses SSRF tests aim at (cloud metadata and their IPv6 forms) on `lo`,
listens on each of them and on 127.0.0.1 / ::1 (where connecting to 0.0.0.0 / :: lands) at the trap
ports, and appends every accepted connection to a file. /etc/resolv.conf points at 127.0.0.1:53 and
/etc/nsswitch.conf at files+dns (bind mounts visible to the child only), so a test serves names from a
local responder. The child refuses to run when any interface but `lo` exists: no packet can leave.

The function (importable by module and name; async or not) runs in the child; its JSON-serializable
return value comes back with the recorded connections. Skips with a reason when namespaces are not
permitted.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAPPED_ADDRESSES = (
    "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack... metadata
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud metadata
    "168.63.129.16",  # Azure WireServer
    "192.0.0.192",  # Oracle Cloud metadata
    "fd00:ec2::254",  # AWS IPv6 metadata
    "fd20:ce::254",  # GCP IPv6 metadata (IPv6-only and dual-stack VMs)
    "64:ff9b::a9fe:a9fe",  # NAT64 for 169.254.169.254 (no translator here: trapped as itself)
    "127.0.0.1",  # where 0.0.0.0 leads
    "::1",  # where :: leads
)
TRAP_PORTS = (80, 443, 8080)
UNSHARE = ["unshare", "--net", "--mount", "--propagation", "private"]


@dataclass(frozen=True)
class NetnsRun:
    result: Any
    connections: list[dict[str, Any]]  # {"address", "port", "peer"} for each connection a trap accepted


@functools.cache
def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None."""
    missing = [tool for tool in ("unshare", "ip", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare -n -m failed: {error}"
    if probe.returncode != 0:
        return f"unshare -n -m is not permitted here (needs root or user namespaces): {probe.stderr.strip()}"
    return None


def run_in_netns(function: Callable[..., Any], *args: Any, timeout: float = 90) -> NetnsRun:
    """Run `function(*args)` in a fresh network namespace; its result and the trapped connections."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="netns-") as workdir:
        spec = {
            "module": function.__module__,
            "name": function.__qualname__,
            "args": list(args),
            "trap_file": str(Path(workdir) / "trap.jsonl"),
            "result_file": str(Path(workdir) / "result.json"),
            "workdir": workdir,
        }
        spec_file = Path(workdir) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        child = subprocess.run(
            [*UNSHARE, sys.executable, "-m", "tests.security.netns", str(spec_file)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result_file = Path(spec["result_file"])
        if child.returncode != 0 or not result_file.exists():
            raise AssertionError(
                f"the namespaced run failed (exit {child.returncode}):\n{child.stdout}\n{child.stderr}"
            )
        outcome = json.loads(result_file.read_text())
        trap_file = Path(spec["trap_file"])
        lines = trap_file.read_text().splitlines() if trap_file.exists() else []
    if "error" in outcome:
        raise AssertionError(f"{function.__qualname__} raised in the namespace:\n{outcome['error']}")
    return NetnsRun(result=outcome["result"], connections=[json.loads(line) for line in lines])


# --------------------------------------------------------------------------------------------- child side


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def _isolate(workdir: Path) -> None:
    links = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.strip()]
    if names != ["lo"]:
        raise SystemExit(f"refusing to run: interfaces besides lo exist in the namespace: {names}")
    _run("ip", "link", "set", "lo", "up")
    for address in TRAPPED_ADDRESSES:
        if address in ("127.0.0.1", "::1"):
            continue
        if ":" in address:
            _run("ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
        else:
            _run("ip", "addr", "add", f"{address}/32", "dev", "lo")
    resolv = workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    nsswitch = workdir / "nsswitch.conf"
    nsswitch.write_text("hosts: files dns\n")
    _run("mount", "--bind", str(resolv), "/etc/resolv.conf")
    _run("mount", "--bind", str(nsswitch), "/etc/nsswitch.conf")


def _start_traps(trap_file: Path) -> Callable[[], None]:
    """Start a listener thread per trapped address and port; returns ``drain``, which records the
    connections the kernel accepted but no thread took yet (a client that connects and exits at once
    would otherwise end the process before its trap thread wrote the record)."""
    lock = threading.Lock()
    listeners: list[tuple[socket.socket, str, int]] = []

    def record(connection: socket.socket, address: str, port: int, peer: Any) -> None:
        with lock, trap_file.open("a") as records:
            records.write(json.dumps({"address": address, "port": port, "peer": str(peer[0])}) + "\n")
        connection.close()

    def serve(listener: socket.socket, address: str, port: int) -> None:
        while True:
            try:
                connection, peer = listener.accept()
            except OSError:  # closed by drain
                return
            record(connection, address, port, peer)

    for address in TRAPPED_ADDRESSES:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for port in TRAP_PORTS:
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(16)
            listeners.append((listener, address, port))
            threading.Thread(target=serve, args=(listener, address, port), daemon=True).start()

    def drain() -> None:
        for listener, address, port in listeners:
            ready, _, _ = select.select([listener], [], [], 0)
            while ready:
                try:
                    listener.setblocking(False)
                    connection, peer = listener.accept()
                except (BlockingIOError, OSError):
                    break
                record(connection, address, port, peer)
                ready, _, _ = select.select([listener], [], [], 0)
        time.sleep(0.05)  # a trap thread in the middle of writing a record finishes it

    return drain


def _child(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    result_file = Path(spec["result_file"])
    _isolate(Path(spec["workdir"]))
    drain = _start_traps(Path(spec["trap_file"]))
    try:
        target: Any = importlib.import_module(spec["module"])
        for part in spec["name"].split("."):
            target = getattr(target, part)
        value = target(*spec["args"])
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
        drain()
        result_file.write_text(json.dumps({"result": value}))
    except BaseException:
        drain()
        result_file.write_text(json.dumps({"error": traceback.format_exc()}))


if __name__ == "__main__":
    _child(sys.argv[1])
