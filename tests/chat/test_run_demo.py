"""``make run`` (scripts/run_demo.py): the config it renders, its LLM check, the MCP-server hook, and the
whole demo started as a process against the fake LLM and stopped again without leaving processes behind.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from ai_ops_api.agent_config import parse_agent_config
from tests.harness.fake_llm import Reply
from tests.harness.ports import free_port, port_accepts
from tests.harness.subprocesses import python_module_command

if TYPE_CHECKING:
    from tests.harness.fake_llm import FakeLLM

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "run_demo.py"
KEY = "sk-demo-test-key-0123456789"
KEY_ENV = "AI_OPS_SECRET_OPENAI_API_KEY_API_KEY"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_demo", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_demo = _load_script()


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No LLM settings from the developer's shell leak into a test."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "OLLAMA_HOST",
        "OLLAMA_BASE_URL",
        "OLLAMA_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_ollama_by_default_and_says_when_it_is_not_running(
    demo_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = run_demo.plan_demo({})
    assert plan.provider == "ollama" and plan.llm_base_url == "http://localhost:11434/v1" and plan.env == {}

    closed = free_port()
    demo_env.setenv("OLLAMA_HOST", f"127.0.0.1:{closed}")
    assert run_demo.main(["--render-only", "--workdir", str(tmp_path)]) == 0

    config = parse_agent_config((tmp_path / "agent-config.json").read_text())
    assert config.default_model == "llama3"
    (model,) = config.models
    assert (model.provider.type, model.model) == ("ollama", "llama3.1:8b")
    assert model.provider.base_url == f"http://127.0.0.1:{closed}/v1"
    assert config.checksum == config.content_checksum()
    assert (tmp_path / ".gitignore").read_text() == "*\n"
    err = capsys.readouterr().err
    assert f"WARNING: no Ollama answers at http://127.0.0.1:{closed}/v1" in err
    assert "ollama pull llama3.1:8b" in err


def test_ollama_model_check(demo_env: pytest.MonkeyPatch, fresh_fake_llm: FakeLLM) -> None:
    # The fake LLM stands in for Ollama's OpenAI-compatible API; it lists the model "fake-model".
    demo_env.setenv("OLLAMA_BASE_URL", fresh_fake_llm.base_url)
    missing = run_demo.check_llm(run_demo.plan_demo(os.environ))
    assert missing is not None and "Ollama has no model llama3.1:8b" in missing and "fake-model" in missing
    demo_env.setenv("OLLAMA_MODEL", "fake-model")
    assert run_demo.check_llm(run_demo.plan_demo(os.environ)) is None


def test_openai_key_only_in_the_environment(
    demo_env: pytest.MonkeyPatch, tmp_path: Path, fresh_fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_env.setenv("OPENAI_API_KEY", KEY)
    demo_env.setenv("OPENAI_BASE_URL", fresh_fake_llm.base_url)
    demo_env.setenv("OPENAI_MODEL", "fake-model")
    plan = run_demo.plan_demo(os.environ)
    assert plan.provider == "openai" and plan.env == {KEY_ENV: KEY}
    assert KEY not in repr(plan)

    assert run_demo.main(["--render-only", "--workdir", str(tmp_path)]) == 0
    config = parse_agent_config((tmp_path / "agent-config.json").read_text())
    default = config.model_by_name(config.default_model or "")
    assert default is not None and default.provider.type == "openai" and default.model == "fake-model"
    assert default.api_key_secret_ref is not None
    assert default.api_key_secret_ref.name == "openai-api-key"
    for written in tmp_path.iterdir():
        assert KEY not in written.read_text(), written
    output = capsys.readouterr()
    assert KEY not in output.out + output.err
    assert "WARNING" not in output.err
    # The LLM check used the key.
    assert fresh_fake_llm.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"


def test_mcp_server_hook(tmp_path: Path) -> None:
    """A DemoMcpServer is started, handed to the agent config, and stopped again."""
    port = free_port()
    server = run_demo.DemoMcpServer(
        "fixture",
        tuple(
            python_module_command("tests.harness.mcp_fixture_server", "--kind", "healthy", "--port", "{port}")
        ),
        port=port,
        description="fixture tools",
    )
    config_path = run_demo.render(run_demo.plan_demo({}), tmp_path, [server])
    (entry,) = parse_agent_config(config_path.read_text()).mcp_servers
    assert (entry.name, entry.url, entry.transport) == (
        "fixture",
        f"http://127.0.0.1:{port}/mcp",
        "streamable_http",
    )
    with run_demo.mcp_servers_running([server]):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert not port_accepts("127.0.0.1", port)


@contextlib.contextmanager
def started_demo(
    tmp_path: Path, fake_llm: FakeLLM, **extra_env: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``scripts/run_demo.py`` as ``make run`` starts it, with the fake LLM as "OpenAI"."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_", "AI_OPS_"))}
    env.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake_llm.base_url, OPENAI_MODEL="fake-model")
    env.update(extra_env)
    stderr = open(tmp_path / "demo.stderr", "wb")  # noqa: SIM115 - closed below; read by a failing test
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", str(port), "--workdir", str(tmp_path / ".run")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,  # its own process group, so the cleanup below reaches the chat service too
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
        stderr.close()


@pytest.fixture
def demo_process(tmp_path: Path, fresh_fake_llm: FakeLLM) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The demo told not to use a control plane: investigations in memory."""
    with started_demo(tmp_path, fresh_fake_llm, AI_OPS_DEMO_CONTROL_PLANE="false") as demo:
        yield demo


def _ready_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The script's "ready" line; empty when it exits first or says nothing within ``timeout`` (a ceiling)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")  # EOF: the script exited

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if not line or "is ready" in line:
            return line
    return ""


def test_demo_runs_and_stops(
    demo_process: tuple[subprocess.Popen[str], int], fresh_fake_llm: FakeLLM
) -> None:
    process, port = demo_process
    ready = _ready_line(process, timeout=180)
    url = f"http://127.0.0.1:{port}/"
    assert f"open {url}" in ready

    with httpx.Client(base_url=url, timeout=30) as client:
        assert '<script src="static/app.js"' in client.get("/").text
        models = client.get("/api/models").json()["models"]
        assert [m["name"] for m in models if m["default"]] == ["gpt-4o"]
        # The demo's netops server is on loopback: the chat must be allowed to use it (and it is).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            servers = {s["name"]: s for s in client.get("/api/status").json()["mcp_servers"]}
            if servers.get("netops", {}).get("tools"):
                break
            time.sleep(0.5)
        assert "dns_lookup" in servers["netops"]["tools"], servers
        assert client.get("/api/status").json()["demo"] is True, "run_demo sets AI_OPS_DEMO"
        assert client.get("/api/status").json()["investigation_store"] == "memory"
        answer = client.post("/api/chat", json={"message": "hello demo"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["reply"] == "echo: hello demo"
    # The key reached the LLM through AI_OPS_SECRET_OPENAI_API_KEY_API_KEY.
    chat = fresh_fake_llm.chat_requests[-1]
    assert chat["headers"]["authorization"] == f"Bearer {KEY}"
    assert chat["json"]["model"] == "fake-model"

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    # The chat service went with it: nothing listens on the port any more.
    deadline = time.monotonic() + 10
    while port_accepts("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_accepts("127.0.0.1", port)


def test_a_busy_port_changes_nothing_on_disk(tmp_path: Path) -> None:
    # A running demo hot-reloads its agent config: a second `make run` that fails on the port must not
    # rewrite it (before, it rendered first and pointed the running demo at MCP ports that never started).
    workdir = tmp_path / "demo"
    workdir.mkdir()
    config = workdir / run_demo.CONFIG_FILE
    config.write_text("the running demo's config\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_demo.main(["--port", str(port), "--workdir", str(workdir)]) == 1
    assert config.read_text() == "the running demo's config\n"
    assert sorted(p.name for p in workdir.iterdir()) == [run_demo.CONFIG_FILE]


def test_each_port_gets_its_own_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_demo, "RUN_ROOT", tmp_path)
    for name in ("OPENAI_API_KEY", "OLLAMA_HOST", "OLLAMA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for port in ("8181", "8182"):
        assert run_demo.main(["--render-only", "--port", port]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["port-8181", "port-8182"]
    for folder in tmp_path.iterdir():
        assert (folder / run_demo.CONFIG_FILE).is_file()


def test_a_state_folder_in_use_is_refused(tmp_path: Path) -> None:
    with run_demo.state_folder(tmp_path), pytest.raises(SystemExit, match="another demo is using"):
        run_demo.main(["--render-only", "--workdir", str(tmp_path)])


def test_the_prometheus_server_only_with_prometheus_url(tmp_path: Path) -> None:
    assert "prometheus" not in [s.name for s in run_demo.demo_mcp_servers({"HOME": str(tmp_path)})]
    servers = run_demo.demo_mcp_servers({"HOME": str(tmp_path), "PROMETHEUS_URL": "http://127.0.0.1:9090"})
    (prometheus,) = [s for s in servers if s.name == "prometheus"]
    command = prometheus.command()
    assert command[command.index("prometheus") - 1] == "mcp"
    assert command[command.index("--prometheus-url") + 1] == "http://127.0.0.1:9090"
    assert prometheus.manifest()["spec"]["url"] == f"http://127.0.0.1:{prometheus.port}/mcp"


def test_the_control_plane_is_used_only_when_built_and_never_built(tmp_path: Path) -> None:
    version = next(
        line.split()[2]
        for line in (REPO / "tests/cluster/controlplane/go.mod").read_text().splitlines()
        if line.startswith("require k8s.io/kubernetes ")
    )
    cache = tmp_path / "cache"
    assert run_demo.cached_control_plane({"XDG_CACHE_HOME": str(cache)}) is None
    folder = cache / "ai-ops" / "control-plane" / version
    folder.mkdir(parents=True)
    (folder / "etcd").write_text("#!/bin/sh\n")
    (folder / "etcd").chmod(0o755)
    assert run_demo.cached_control_plane({"XDG_CACHE_HOME": str(cache)}) is None  # no kube-apiserver yet
    (folder / "kube-apiserver").write_text("#!/bin/sh\n")
    (folder / "kube-apiserver").chmod(0o755)
    assert run_demo.cached_control_plane({"XDG_CACHE_HOME": str(cache)}) == folder
    off = {"XDG_CACHE_HOME": str(cache), "AI_OPS_DEMO_CONTROL_PLANE": "false"}
    assert run_demo.cached_control_plane(off) is None


def test_the_demo_keeps_investigations_in_the_local_api_server_when_it_is_built(
    tmp_path: Path, fresh_fake_llm: FakeLLM
) -> None:
    if run_demo.cached_control_plane(os.environ) is None:
        pytest.skip("no control plane built (make test builds it into ~/.cache/ai-ops/control-plane)")
    diagnosis = {"summary": "checkout-1 is out of memory", "confidence": "high"}
    fresh_fake_llm.enqueue(Reply.tool_call("diagnosis", diagnosis))
    alert = {
        "status": "firing",
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-1"},
        "annotations": {},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    notification = {
        "version": "4", "status": "firing", "receiver": "ai-ops", "groupKey": "g", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": [alert],
    }  # fmt: skip
    with started_demo(tmp_path, fresh_fake_llm) as (process, port):
        assert "is ready" in _ready_line(process, timeout=240)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=30) as client:
            store = client.get("/api/status").json()["investigation_store"]
            assert store == "kubernetes", (tmp_path / "demo.stderr").read_text(errors="replace")[-3000:]
            answer = client.post("/api/alerts/alertmanager", json=notification)
            assert answer.status_code == 202, answer.text
            (created,) = answer.json()["investigations"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                detail = client.get(f"/api/investigations/{created['name']}").json()
                if detail["phase"] not in ("Pending", "Running"):
                    break
                time.sleep(0.5)
            assert detail["phase"] == "Diagnosed", detail
            # It is a resource of the API server: read back with the chat's own token, not from the chat.
            kubeconfig = yaml.safe_load((tmp_path / ".run" / "investigations.kubeconfig").read_text())
            token = kubeconfig["users"][0]["user"]["token"]
            server = kubeconfig["clusters"][0]["cluster"]["server"]
            ca = tmp_path / "ca.crt"
            ca.write_bytes(
                base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
            )
            path = f"/apis/ai-ops.dev/v1alpha1/namespaces/default/investigations/{created['name']}"
            stored = httpx.get(server + path, headers={"Authorization": f"Bearer {token}"}, verify=str(ca))
            assert stored.status_code == 200, stored.text
            assert stored.json()["status"]["summary"] == diagnosis["summary"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert not port_accepts(urlparse(server).hostname or "", urlparse(server).port or 0), (
        "control plane stopped"
    )
