"""A real redis-server process on a free port of 127.0.0.1, without persistence."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from tests.harness.ports import free_port

REDIS_MISSING = (
    "redis-server is not installed: the tests need a real Redis. "
    "Run `make test` (it installs it with apt) or `apt-get install -y redis-server`."
)


class RedisServer:
    """One redis-server child process; stop() kills it by PID."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="ai-ops-redis-")

    @property
    def _logfile(self) -> str:
        # A file, not a pipe: a pipe nobody reads would block redis once full.
        return f"{self._workdir.name}/redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0, port: int | None = None) -> None:
        """Start on a free port, or on ``port`` (a restart where clients already point: "Redis is back")."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(REDIS_MISSING)
        # Retry: another process may take the free port between our probe and redis' bind.
        last_error = ""
        for _attempt in range(5):
            self.port = port or free_port(self.host)
            self._process = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    self.host,
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._workdir.name,
                    "--logfile",
                    self._logfile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(timeout):
                return
            last_error = self._stop_process()
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def flushall(self) -> None:
        client = redis.Redis(host=self.host, port=self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def _stop_process(self) -> str:
        """Kill the child by PID and return what it printed (for error messages)."""
        if self._process is None:
            return ""
        process, self._process = self._process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            with open(self._logfile, errors="replace") as log:
                return log.read()[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """Stop the process but keep the folder, for a start(port=...) later ("Redis is down")."""
        self._stop_process()

    def stop(self) -> None:
        self._stop_process()
        self._workdir.cleanup()
