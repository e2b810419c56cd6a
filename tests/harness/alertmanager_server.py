"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on a free loopback port, its one receiver a
webhook to the chat's ``/api/alerts/alertmanager`` with a bearer token from a file, as docs/incidents.md
configures it.

Clustering is off (``--cluster.listen-address=`` empty: no gossip port, no peers) and the route's
``group_wait``/``group_interval``/``repeat_interval`` are seconds, so a test sees the first notification,
a repeat and the resolved one quickly. Everything lives in a temporary folder; stop() ends the process by
PID.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.ports import free_port, wait_until

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
ALERTMANAGER_MISSING = (
    "prometheus-alertmanager is not installed: these tests need a real Alertmanager. "
    "Run `make test` (it installs it with apt) or `apt-get install -y prometheus-alertmanager`."
)
RECEIVER = "ai-ops"


class AlertmanagerServer:
    """One alertmanager child process whose receiver posts every notification to ``webhook_url`` (which may
    be set after construction, before start(): the port is known at once, so the chain Prometheus →
    Alertmanager → chat can be wired in any order)."""

    host = "127.0.0.1"

    def __init__(
        self,
        token: str,
        webhook_url: str = "",
        *,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "3s",
    ) -> None:
        self.webhook_url = webhook_url
        self.token = token
        self.route = {
            "receiver": RECEIVER,
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        }
        # Chosen now, so Prometheus can be pointed here before the receiver's URL is known (it retries).
        self.port = free_port(self.host)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._workdir = tempfile.TemporaryDirectory(prefix="ai-ops-alertmanager-")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        folder = Path(self._workdir.name)
        token_file = folder / "ai-ops-token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        config = {
            "route": self.route,
            "receivers": [
                {
                    "name": RECEIVER,
                    "webhook_configs": [
                        {
                            "url": self.webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                            },
                        }
                    ],
                }
            ],
        }
        path = folder / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout: float = 30.0) -> None:
        if not ALERTMANAGER.exists():
            raise RuntimeError(ALERTMANAGER_MISSING)
        if not self.webhook_url:
            raise ValueError("set webhook_url before start()")
        config = self._write_config()
        self._log = open(Path(self._workdir.name) / "alertmanager.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                str(ALERTMANAGER),
                f"--config.file={config}",
                f"--storage.path={self._workdir.name}/data",
                f"--web.listen-address={self.host}:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self._process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "alertmanager", interval=0.2)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (its v2 API)."""
        answer: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()
        return answer

    def output(self) -> str:
        return (Path(self._workdir.name) / "alertmanager.log").read_text(errors="replace")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._workdir.cleanup()
