"""Thin wrappers over kubectl and helm for the kind suite: every call names its context, never the user's current one."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

REQUIRED_TOOLS = ("docker", "kind", "kubectl", "helm")


def missing_prerequisite(cluster: str) -> str | None:
    """Why the kind suite cannot run here, or None when it can."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"the kind suite needs {', '.join(missing)} on PATH (see docs/testing.md; run it with `make e2e`)"
        )
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "the Docker engine is not reachable (`docker info` failed): the kind suite needs one"
    clusters = subprocess.run(
        ["kind", "get", "clusters"], capture_output=True, text=True, timeout=30, check=False
    )
    if cluster not in clusters.stdout.split():
        return f"no kind cluster named {cluster!r}: `make e2e` creates it (or `make kind-up KIND_CLUSTER={cluster}`)"
    return None


class CommandError(AssertionError):
    pass


@dataclass
class Cluster:
    context: str
    namespace: str

    def _run(
        self, argv: list[str], *, stdin: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}{result.stdout}"
            )
        return result

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        namespaced: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", "--context", self.context]
        if namespaced:
            argv += ["--namespace", self.namespace]
        return self._run([*argv, *args], stdin=stdin, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = ["helm", "--kube-context", self.context, "--namespace", self.namespace, *args]
        return self._run(argv, check=check, timeout=timeout)

    def get(self, *what: str, namespaced: bool = True) -> dict[str, Any]:
        out = self.kubectl("get", *what, "-o", "json", namespaced=namespaced).stdout
        return json.loads(out)

    def exists(self, *what: str) -> bool:
        return (
            self.kubectl("get", *what, "--ignore-not-found", "-o", "name", check=False).stdout.strip() != ""
        )

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float, interval: float = 2.0
    ) -> None:
        """Poll `condition` (a cluster read) until true; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not true after {timeout:.0f}s")
            time.sleep(interval)

    @contextlib.contextmanager
    def port_forward(self, target: str, remote_port: int) -> Iterator[int]:
        """`kubectl port-forward` to a random local port; yields that port."""
        process = subprocess.Popen(
            [
                "kubectl",
                "--context",
                self.context,
                "--namespace",
                self.namespace,
                "port-forward",
                target,
                f":{remote_port}",
                "--address",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> REMOTE"
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if match is None:
                raise CommandError(
                    f"port-forward {target}: {line}{process.stderr.read() if process.stderr else ''}"
                )
            yield int(match.group(1))
        finally:
            process.terminate()
            process.wait(timeout=10)


def restricted_pod_security() -> dict[str, Any]:
    """The security settings our own fixture pods need in a namespace that enforces `restricted`."""
    return {
        "pod": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "container": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
