"""Start, await, stop and restart the MCP fixture server processes (tests/harness/mcp_fixture_server.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.harness.ports import free_port
from tests.harness.subprocesses import python_module_command

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # generous: four Python processes import the MCP SDK at once on 2 cores


class McpFixtureServer:
    """One fixture server process. `url` is the MCP endpoint; the port stays the same across restarts."""

    host = "127.0.0.1"

    def __init__(self, kind: str, log_dir: Path, token: str | None = None) -> None:
        self.kind = kind
        self.token = token
        self.port = 0
        self._log_path = log_dir / f"mcp-{kind}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.port}/healthz"

    @property
    def headers(self) -> dict[str, str]:
        """The headers a client needs (the bearer token of the `auth` kind, else none)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def spawn(self) -> None:
        """Start the process without waiting (see wait_ready); picks a free port on the first start."""
        if self.running:
            return
        if not self.port:
            self.port = free_port(self.host)
        env = dict(os.environ)
        if self.token:
            env["MCP_FIXTURE_TOKEN"] = self.token
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                python_module_command(
                    "tests.harness.mcp_fixture_server", "--kind", self.kind, "--port", str(self.port)
                ),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until GET /healthz answers 200; raise with the server's log if it exits or times out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, headers=self.headers) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise RuntimeError(f"MCP fixture server {self.kind!r} exited:\n{self.log_tail()}")
                try:
                    if client.get(self.health_url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(
            f"MCP fixture server {self.kind!r} not ready after {timeout:.0f}s:\n{self.log_tail()}"
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (again, on the same port) and wait until it answers."""
        self.spawn()
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Kill the process by PID and wait for it: the port is free afterwards."""
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class McpFixtureServers:
    """The four fixture servers of the `mcp_fixture_servers` fixture."""

    def __init__(self) -> None:
        self._log_dir = tempfile.TemporaryDirectory(prefix="ai-ops-mcp-")
        log_dir = Path(self._log_dir.name)
        self.healthy = McpFixtureServer("healthy", log_dir)
        self.auth = McpFixtureServer("auth", log_dir, token=secrets.token_urlsafe(24))
        self.restartable = McpFixtureServer("restartable", log_dir)
        self.hanging = McpFixtureServer("hanging", log_dir)

    @property
    def all(self) -> tuple[McpFixtureServer, ...]:
        return (self.healthy, self.auth, self.restartable, self.hanging)

    def start(self) -> None:
        """Spawn all in parallel, then await each; a server that lost its port race gets a new one."""
        for server in self.all:
            server.spawn()
        for server in self.all:
            for attempt in range(3):
                try:
                    server.wait_ready()
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
                    server.stop()
                    server.port = 0
                    server.spawn()

    def stop(self) -> None:
        for server in self.all:
            server.stop()
        self._log_dir.cleanup()
