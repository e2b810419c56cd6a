"""One chat replica in its own process, its investigations in a Kubernetes API at an explicit URL: what a
takeover test kills (SIGKILL) or freezes (SIGSTOP) while another replica goes on.

``python -m tests.harness.chat_replica --config PATH --port N --kube-url URL [--namespace NS]
[--lease SECONDS]`` (through ``python_module_command``); the replica's identity starts with ``$HOSTNAME``
as in a pod. It serves the production app (tests/support/incidents_support.py) with uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import httpx

from tests.harness.ports import free_port, wait_until
from tests.harness.subprocesses import REPO_ROOT, python_module_command


def main() -> None:
    import uvicorn

    from chat_service.incidents.store import KubernetesInvestigationStore
    from tests.support.chat_support import settings_for
    from tests.support.incidents_support import app_with_store

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kube-url", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--lease", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    settings = settings_for(args.config, investigation_lease_seconds=args.lease)
    store = KubernetesInvestigationStore(args.kube_url, args.namespace, poll_seconds=0.5)
    uvicorn.run(app_with_store(settings, store), host="127.0.0.1", port=args.port, log_level="warning")


class ChatReplica:
    """The replica process: started and awaited, then killed, frozen or thawed by its PID."""

    host = "127.0.0.1"

    def __init__(self, config: Path, kube_url: str, hostname: str, lease_seconds: float) -> None:
        self.port = free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        self._argv = python_module_command(
            "tests.harness.chat_replica",
            *("--config", str(config), "--port", str(self.port), "--kube-url", kube_url),
            *("--lease", str(lease_seconds)),
        )
        self._env = {**os.environ, "HOSTNAME": hostname}
        self._log = tempfile.NamedTemporaryFile(prefix="chat-replica-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:  # a cold Python import on a loaded machine
        self.process = subprocess.Popen(
            self._argv, cwd=REPO_ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT
        )

        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"chat replica exited with {self.process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, "chat replica", interval=0.1)

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
        os.unlink(self._log.name)


if __name__ == "__main__":
    main()
