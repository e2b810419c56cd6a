"""A real Prometheus (Debian's ``prometheus``) on a free loopback port, scraping an exporter the test controls.

The exporter is prometheus-client's HTTP server in this process with its own registry: a test sets a gauge
and, one scrape later, PromQL sees it; a rule file can make an alert fire on it. Everything listens on
127.0.0.1 and lives in a temporary folder; stop() kills the process by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.harness.ports import free_port, wait_until

PROMETHEUS_MISSING = (
    "prometheus is not installed: these tests need a real Prometheus. "
    "Run `make test` (it installs it with apt) or `apt-get install -y prometheus`."
)


class MetricsExporter:
    """A /metrics endpoint on 127.0.0.1 whose gauges the test sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.port = free_port()
        self._server: Any = None
        self.gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, documentation: str = "set by the test", labels: tuple[str, ...] = ()) -> Gauge:
        if name not in self.gauges:
            self.gauges[name] = Gauge(name, documentation, labels, registry=self.registry)
        return self.gauges[name]

    def start(self) -> None:
        self._server, _thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class PrometheusServer:
    """One prometheus child process: scrape and rule evaluation every second, for fast tests."""

    host = "127.0.0.1"

    def __init__(
        self,
        scrape_targets: list[str],
        rules: list[dict[str, Any]] | None = None,
        alertmanager_url: str | None = None,
        resend_delay: str | None = None,
    ) -> None:
        self.scrape_targets = scrape_targets
        self.rules = rules or []
        self.alertmanager_url = alertmanager_url
        # How often a firing alert is sent to Alertmanager again (Prometheus' default is a minute): short,
        # so a first send that found Alertmanager not yet listening is not a minute's wait.
        self.resend_delay = resend_delay
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="ai-ops-prometheus-")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        folder = Path(self._workdir.name)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "test", "static_configs": [{"targets": self.scrape_targets}]},
            ],
        }
        if self.rules:
            (folder / "rules.yaml").write_text(
                yaml.safe_dump({"groups": [{"name": "test", "rules": self.rules}]})
            )
            config["rule_files"] = [str(folder / "rules.yaml")]
        if self.alertmanager_url:
            target = self.alertmanager_url.removeprefix("http://").rstrip("/")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        path = folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(PROMETHEUS_MISSING)
        config = self._write_config()
        self.port = free_port(self.host)
        log = open(Path(self._workdir.name) / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self._workdir.name}/data",
                f"--web.listen-address={self.host}:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--web.enable-lifecycle",
                *([f"--rules.alert.resend-delay={self.resend_delay}"] if self.resend_delay else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "prometheus", interval=0.2)

    def output(self) -> str:
        return (Path(self._workdir.name) / "prometheus.log").read_text(errors="replace")

    def wait_for(self, expr: str, predicate: Any, timeout: float = 20.0) -> Any:
        """Poll an instant query until ``predicate(result)`` holds (a scrape or an evaluation away)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
            last = body.get("data", {}).get("result")
            if predicate(last):
                return last
            time.sleep(0.3)
        raise AssertionError(f"{expr}: condition not met within {timeout} s; last result {last!r}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        self._workdir.cleanup()
