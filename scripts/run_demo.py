#!/usr/bin/env python3
"""``make run``: the local demo of the chat service and its web page.

1. Picks the LLM: OpenAI when ``OPENAI_API_KEY`` is set (``examples/openai/``), else Ollama
   (``examples/local/``, http://localhost:11434 by default).
2. Writes those example manifests, with the overrides below applied, to ``.run/port-<PORT>/demo-manifests.yaml``
   and renders them with ``ai-ops render`` into ``agent-config.json`` beside it (``.run/`` ignores itself in
   git). Each demo has its own folder, taken with a lock, and a busy port is refused before anything is
   written: a second ``make run`` never rewrites the files a running demo hot-reloads.
3. Says whether the LLM answers (and for Ollama, whether the model is pulled); the chat page shows the
   same problem in plain words when a message cannot be answered.
4. Starts the demo's MCP servers (``demo_mcp_servers``: netops, kubernetes when a kubeconfig is
   available, prometheus when ``PROMETHEUS_URL`` is set), then ``ai-ops chat`` on 127.0.0.1:8080, prints
   the URL once the service answers, and stops everything on Ctrl-C.
5. Investigations (docs/incidents.md) go to a local real kube-apiserver when one has been built before
   (``make test`` builds it into ``~/.cache/ai-ops/control-plane/<version>/``; ``make run`` never builds
   it): started here with the CRDs applied, the chat writing through a token with the chart's chat Role,
   and an admin kubeconfig printed for ``kubectl get inv``. Without one, they live in the chat's memory.
   ``/api/status`` says which (``investigation_store``). ``AI_OPS_DEMO_CONTROL_PLANE=false`` skips it.

Overrides (environment): ``OLLAMA_BASE_URL`` or ``OLLAMA_HOST`` (Ollama's address), ``OLLAMA_MODEL``,
``OPENAI_MODEL``, ``OPENAI_BASE_URL`` (an OpenAI-compatible endpoint instead of api.openai.com).
The OpenAI key goes to the chat service only through its environment (``AI_OPS_SECRET_<SECRET>_<KEY>``),
never into a file.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
LOCAL_EXAMPLE = REPO / "examples" / "local"
OPENAI_EXAMPLE = REPO / "examples" / "openai" / "openai.yaml"  # not secret.yaml: the key comes from the env
DEFAULT_OLLAMA_URL = "http://localhost:11434"
RUN_ROOT = REPO / ".run"
MANIFESTS_FILE = "demo-manifests.yaml"
CONFIG_FILE = "agent-config.json"


@dataclass(frozen=True)
class DemoMcpServer:
    """An MCP server the demo starts next to the chat service; the agent gets its tools.

    ``argv`` is the command line, with ``{port}`` replaced by ``port``; it must serve streamable HTTP on
    ``http://127.0.0.1:{port}{path}``.
    """

    name: str
    argv: tuple[str, ...]
    port: int
    path: str = "/mcp"
    description: str = ""
    tool_include: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def command(self) -> list[str]:
        return [part.replace("{port}", str(self.port)) for part in self.argv]

    def manifest(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"transport": "streamable_http", "url": self.url}
        if self.description:
            spec["description"] = self.description
        if self.tool_include:
            spec["toolFilter"] = {"include": list(self.tool_include)}
        return {
            "apiVersion": "ai-ops.dev/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": self.name},
            "spec": spec,
        }


def ai_ops_command(*args: str) -> list[str]:
    """``ai-ops ARGS`` with the interpreter running this script (the project's venv under ``make run``)."""
    return [sys.executable, "-m", "ai_ops_cli", *args]


def _kubeconfig(environ: Mapping[str, str]) -> str | None:
    """The kubeconfig the kubernetes MCP server would use, when there is one that names a current context."""
    candidates = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(str(Path(environ.get("HOME", str(Path.home()))) / ".kube" / "config"))
    for path in candidates:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict) and loaded.get("current-context"):
            return path
    return None


def _demo_port(preferred: int) -> int:
    """`preferred` when free, else a port the kernel picks (the agent config gets the actual URL)."""
    if not port_in_use("127.0.0.1", preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_mcp_servers(environ: Mapping[str, str]) -> tuple[DemoMcpServer, ...]:
    """The bundled MCP servers `make run` starts next to the chat service; the demo agent gets their tools:
    netops always, kubernetes (read-only) when a kubeconfig is available."""
    servers = [
        DemoMcpServer(
            "netops",
            tuple(ai_ops_command("mcp", "netops", "--port", "{port}")),
            port=_demo_port(8092),
            description="DNS, TCP, HTTP(S) and TLS checks (the bundled netops server)",
        )
    ]
    kubeconfig = _kubeconfig(environ)
    if kubeconfig:
        servers.append(
            DemoMcpServer(
                "kubernetes",
                tuple(ai_ops_command("mcp", "kubernetes", "--kubeconfig", kubeconfig, "--port", "{port}")),
                port=_demo_port(8091),
                description="Read-only view of the cluster in " + kubeconfig,
            )
        )
    prometheus = environ.get("PROMETHEUS_URL", "").strip()
    if prometheus:
        servers.append(
            DemoMcpServer(
                "prometheus",
                tuple(
                    ai_ops_command("mcp", "prometheus", "--prometheus-url", prometheus, "--port", "{port}")
                ),
                port=_demo_port(8093),
                description="Read-only PromQL queries, alerts, rules and targets of " + prometheus,
            )
        )
    return tuple(servers)


CONTROL_PLANE_MODULE = REPO / "tests" / "cluster" / "controlplane" / "go.mod"
# What the chat may do with Investigations: the chart's chat Role (templates/chat/rbac.yaml), no more.
CHAT_RULES = (
    {
        "apiGroups": ["ai-ops.dev"],
        "resources": ["investigations"],
        "verbs": ["create", "get", "list", "watch", "patch"],
    },
    {"apiGroups": ["ai-ops.dev"], "resources": ["investigations/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
)
DEMO_NAMESPACE = "default"


def cached_control_plane(environ: Mapping[str, str]) -> Path | None:
    """The folder holding the kube-apiserver and etcd scripts/control-plane.sh built for the pinned version,
    when it has built them; never builds them (that takes minutes: ``make run`` stays fast)."""
    if environ.get("AI_OPS_DEMO_CONTROL_PLANE", "").lower() in ("false", "0", "no"):
        return None
    version = None
    with contextlib.suppress(OSError):
        for line in CONTROL_PLANE_MODULE.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "require" and parts[1] == "k8s.io/kubernetes":
                version = parts[2]  # the line scripts/control-plane.sh reads
    if version is None:
        return None
    home = environ.get("HOME", str(Path.home()))
    cache = Path(environ.get("XDG_CACHE_HOME") or Path(home) / ".cache")
    folder = cache / "ai-ops" / "control-plane" / version
    if all(os.access(folder / binary, os.X_OK) for binary in ("kube-apiserver", "etcd")):
        return folder
    return None


def _grant_chat(plane: Any) -> str:
    """A ServiceAccount with the chart's chat Role in the demo namespace, and a token of it."""
    from kubernetes import client

    with plane.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            DEMO_NAMESPACE,
            {"metadata": {"name": "ai-ops-chat"}, "rules": [dict(rule) for rule in CHAT_RULES]},
        )
        rbac.create_namespaced_role_binding(
            DEMO_NAMESPACE,
            {
                "metadata": {"name": "ai-ops-chat"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ai-ops-chat"},
                "subjects": [{"kind": "ServiceAccount", "name": "ai-ops-chat", "namespace": DEMO_NAMESPACE}],
            },
        )
    return str(plane.service_account_token(DEMO_NAMESPACE, "ai-ops-chat", expiration_seconds=86400))


@contextlib.contextmanager
def investigation_store(environ: Mapping[str, str], workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """("kubernetes", the chat's extra env) with the local control plane running while the demo runs, or
    ("memory", {}) when none has been built or it does not start (the demo goes on either way)."""
    binaries = cached_control_plane(environ)
    if binaries is None:
        yield "memory", {}
        return
    # The real-API-server harness of tests/cluster: the same start-up, certificates and CRD install.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.cluster.controlplane import ControlPlane
    from tests.cluster.rest import crd_documents, install_crds

    plane = ControlPlane(binaries)
    try:
        plane.start()
        install_crds(plane, crd_documents())
        kubeconfig = plane.write_kubeconfig(
            _grant_chat(plane), workdir / "investigations.kubeconfig", "ai-ops-chat"
        )
    except Exception as exc:  # a demo without the control plane is still a demo
        print(
            f"make run: the local control plane did not start ({exc}); investigations in memory",
            file=sys.stderr,
        )
        plane.stop()
        yield "memory", {}
        return
    print(
        f"make run: investigations in the local kube-apiserver {plane.url}: "
        f"kubectl --kubeconfig {plane.kubeconfig} get inv",
        file=sys.stderr,
    )
    try:
        yield "kubernetes", {"AI_OPS_INVESTIGATIONS_KUBECONFIG": str(kubeconfig)}
    finally:
        plane.stop()


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the manifests to render, the LLM it talks to, and the chat service's extra env."""

    provider: str  # "ollama" or "openai"
    manifests: list[dict[str, Any]]
    llm_base_url: str  # OpenAI-compatible base, ending in /v1
    model: str
    api_key: str | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        where = "OpenAI" if self.provider == "openai" else "Ollama"
        return f"{where} model {self.model} at {self.llm_base_url}"


def load_documents(path: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    docs: list[dict[str, Any]] = []
    for file in files:
        docs.extend(doc for doc in yaml.safe_load_all(file.read_text()) if isinstance(doc, dict))
    return docs


def _default_model(docs: list[dict[str, Any]]) -> dict[str, Any]:
    models = [d for d in docs if d.get("kind") == "LLMModel"]
    return next((m for m in models if m["spec"].get("default")), models[0])


def _with_v1(url: str) -> str:
    url = url.rstrip("/")
    if "://" not in url:
        url = "http://" + url  # OLLAMA_HOST is often host:port
    return url if url.endswith("/v1") else url + "/v1"


def plan_demo(environ: Mapping[str, str]) -> DemoPlan:
    """The demo for this environment: OpenAI when OPENAI_API_KEY is set, else Ollama."""
    from ai_ops_api.agent_config import SecretRef
    from chat_service.secrets import secret_env_var

    api_key = environ.get("OPENAI_API_KEY", "").strip()
    if api_key:
        docs = copy.deepcopy(load_documents(OPENAI_EXAMPLE))
        provider = next(d for d in docs if d.get("kind") == "LLMProvider")
        base_url = environ.get("OPENAI_BASE_URL", "").strip()
        if base_url:
            provider["spec"]["baseURL"] = base_url.rstrip("/")
        model = _default_model(docs)
        if environ.get("OPENAI_MODEL", "").strip():
            model["spec"]["model"] = environ["OPENAI_MODEL"].strip()
        ref = provider["spec"]["apiKeySecretRef"]
        env_var = secret_env_var(SecretRef(name=ref["name"], key=ref["key"]))
        return DemoPlan(
            provider="openai",
            manifests=docs,
            llm_base_url=(base_url or "https://api.openai.com/v1").rstrip("/"),
            model=model["spec"]["model"],
            api_key=api_key,
            env={env_var: api_key},
        )
    docs = copy.deepcopy(load_documents(LOCAL_EXAMPLE))
    provider = next(d for d in docs if d.get("kind") == "LLMProvider")
    ollama = environ.get("OLLAMA_BASE_URL", "").strip() or environ.get("OLLAMA_HOST", "").strip()
    base_url = _with_v1(ollama or DEFAULT_OLLAMA_URL)
    provider["spec"]["baseURL"] = base_url
    model = _default_model(docs)
    if environ.get("OLLAMA_MODEL", "").strip():
        model["spec"]["model"] = environ["OLLAMA_MODEL"].strip()
    return DemoPlan(provider="ollama", manifests=docs, llm_base_url=base_url, model=model["spec"]["model"])


def render(plan: DemoPlan, workdir: Path, mcp_servers: Sequence[DemoMcpServer] = ()) -> Path:
    """Write the demo manifests and render them with ``ai-ops render``; returns the agent config's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    # The folder keeps itself out of git, whoever's checkout it is in.
    (workdir / ".gitignore").write_text("*\n")
    manifests = workdir / MANIFESTS_FILE
    docs = [*plan.manifests, *(server.manifest() for server in mcp_servers)]
    manifests.write_text(
        "# Written by scripts/run_demo.py (make run) from the examples; edits are overwritten.\n"
        + yaml.safe_dump_all(docs, sort_keys=False)
    )
    config = workdir / CONFIG_FILE
    # Loopback MCP servers are fine here: they are the demo's own, on this machine.
    command = ai_ops_command(
        "render", str(manifests), str(REPO / "examples" / "runbooks"), "--allow-loopback", "-o", str(config)
    )
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"make run: ai-ops render failed:\n{done.stderr.strip()}")
    for line in done.stderr.strip().splitlines():
        print(f"make run: render: {line}", file=sys.stderr)
    return config


def check_llm(plan: DemoPlan, timeout: float = 3.0) -> str | None:
    """A warning when the LLM does not answer or (Ollama) lacks the model; None when all is well."""
    request = urllib.request.Request(plan.llm_base_url + "/models")
    if plan.api_key:
        request.add_header("Authorization", f"Bearer {plan.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            listing = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if plan.provider == "openai" and exc.code == 401:
            return (
                "OpenAI refused the API key in OPENAI_API_KEY (HTTP 401); the chat page will show the error."
            )
        return f"{plan.llm_base_url}/models answered HTTP {exc.code}; replies may fail."
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if plan.provider == "ollama":
            return (
                f"no Ollama answers at {plan.llm_base_url} ({reason}). The chat page will say the model cannot "
                f"be reached. Start Ollama (`ollama serve`, then `ollama pull {plan.model}`), set OLLAMA_HOST "
                "to where it runs, or set OPENAI_API_KEY to use OpenAI instead."
            )
        return f"the LLM at {plan.llm_base_url} does not answer ({reason}); the chat page will say so."
    if plan.provider == "ollama":
        names = {str(item.get("id")) for item in listing.get("data") or [] if isinstance(item, dict)}
        if plan.model not in names:
            pulled = ", ".join(sorted(names)) or "none"
            return (
                f"Ollama has no model {plan.model} (pulled: {pulled}). Run `ollama pull {plan.model}`, or set "
                "OLLAMA_MODEL to one you have."
            )
    return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Polls ``url`` until it answers 200; False when the process exited or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return False


def stop(process: subprocess.Popen[bytes], name: str) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            print(f"make run: {name} did not stop in 10 s; killing it", file=sys.stderr)
            process.kill()
            process.wait()


@contextlib.contextmanager
def mcp_servers_running(servers: Sequence[DemoMcpServer]) -> Iterator[None]:
    """Starts each demo MCP server, waits until its port accepts, and stops them all on exit."""
    started: list[tuple[subprocess.Popen[bytes], DemoMcpServer]] = []
    try:
        for server in servers:
            if port_in_use("127.0.0.1", server.port):
                raise SystemExit(f"make run: port {server.port} for the MCP server {server.name} is in use")
            started.append((subprocess.Popen(server.command()), server))
        for process, server in started:
            deadline = time.monotonic() + 30
            while not port_in_use("127.0.0.1", server.port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"make run: the MCP server {server.name} did not start ({server.command()})"
                    )
                time.sleep(0.1)
            print(f"make run: MCP server {server.name} at {server.url}", file=sys.stderr)
        yield
    finally:
        for process, server in reversed(started):
            stop(process, f"MCP server {server.name}")


@contextlib.contextmanager
def state_folder(workdir: Path) -> Iterator[Path]:
    """``workdir``, held with an exclusive lock for as long as the demo runs (released when it exits)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f"make run: another demo is using {workdir}; stop it, or choose another port: "
                "make run RUN_PORT=8081"
            ) from None
        yield workdir


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ai-ops chat demo (make run).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the rendered files go (default: .run/port-PORT)"
    )
    parser.add_argument("--render-only", action="store_true", help="render the config, check the LLM, stop")
    args = parser.parse_args(argv)

    # Before anything is written: a demo already on this port keeps its files untouched.
    if not args.render_only and port_in_use(args.host, args.port):
        print(
            f"make run: port {args.port} is in use; choose another: make run RUN_PORT=8081", file=sys.stderr
        )
        return 1
    workdir = args.workdir or RUN_ROOT / f"port-{args.port}"
    with state_folder(workdir):
        return _run(args, workdir)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    plan = plan_demo(os.environ)
    mcp_servers = demo_mcp_servers(os.environ)
    config = render(plan, workdir, mcp_servers)
    print(f"make run: {plan.describe()}; agent config {config}", file=sys.stderr)
    warning = check_llm(plan)
    if warning:
        print(f"make run: WARNING: {warning}", file=sys.stderr)
    if args.render_only:
        return 0

    # A `kill` of this script (not only Ctrl-C) also stops the service and the MCP servers.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    url = f"http://{args.host}:{args.port}/"
    chat: subprocess.Popen[bytes] | None = None
    try:
        with (
            mcp_servers_running(mcp_servers),
            investigation_store(os.environ, workdir) as (_store, store_env),
        ):
            command = ai_ops_command(
                "chat", "--config", str(config), "--host", args.host, "--port", str(args.port)
            )
            # The demo's MCP servers listen on 127.0.0.1: the chat refuses loopback addresses unless told.
            env = {
                **os.environ,
                **plan.env,
                **store_env,
                "AI_OPS_ALLOW_LOOPBACK": "true",
                "AI_OPS_DEMO": "true",
            }
            chat = subprocess.Popen(command, env=env)
            if wait_until_up(url + "healthz", chat, timeout=120):
                print(f"\nmake run: the ai-ops chat is ready: open {url}  (Ctrl-C stops it)\n", flush=True)
            return chat.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if chat is not None:
            stop(chat, "ai-ops chat")


if __name__ == "__main__":
    sys.exit(main())
