"""A real kube-apiserver and etcd on 127.0.0.1, for tests of what only the API server does.

The emulator the other suites use has no RBAC, admission or API-server-side validation. This starts the real
binaries (built by scripts/control-plane.sh, or taken from KUBEBUILDER_ASSETS) with RBAC, PodSecurity and
ValidatingAdmissionPolicy on, client certificates made here, and nothing listening or called beyond loopback.
No kubelet, scheduler or controller manager: objects are stored and admitted, never run.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "control-plane.sh"
HOST = "127.0.0.1"
ADMIN_USER = "ai-ops-test-admin"
# The script's exit status when Go is missing: the suite skips then, and fails on any other error.
NO_GO_EXIT = 2


def timings_line(timings: dict[str, float]) -> str:
    """The summary line of a run: what finding the binaries and starting the servers cost."""
    return (
        f"control plane: binaries ready in {timings['binaries']:.1f} s, "
        f"etcd and kube-apiserver ready in {timings['start']:.1f} s"
    )


class ControlPlaneUnavailable(Exception):
    """Neither prebuilt binaries nor Go to build them: the tests that need a control plane are skipped."""


def find_binaries() -> Path:
    """The folder holding kube-apiserver and etcd: KUBEBUILDER_ASSETS, else the build script's cache folder.

    The script builds the binaries the first time (minutes on two cores: its progress goes to stderr, seen
    with `pytest -s`) and reuses them after; the last line it prints is the folder.
    """
    process = subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    messages: list[str] = []
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            messages.append(line)
        stdout = process.stdout.read()
        process.wait()
    except BaseException:
        # A Ctrl-C must not leave the Go compilers running: end the script's whole process group.
        _kill_group(process)
        raise
    stderr = "".join(messages)
    if process.returncode == NO_GO_EXIT:
        raise ControlPlaneUnavailable(stderr.strip() or "scripts/control-plane.sh found no Go")
    if process.returncode != 0:
        raise RuntimeError(f"scripts/control-plane.sh failed ({process.returncode}):\n{stderr[-4000:]}")
    lines = stdout.strip().splitlines()
    folder = Path(lines[-1]) if lines else Path()
    for binary in ("kube-apiserver", "etcd"):
        if not os.access(folder / binary, os.X_OK):
            raise RuntimeError(f"scripts/control-plane.sh printed {folder}, which has no executable {binary}")
    return folder


def free_port() -> int:
    """A loopback port that was free a moment ago (start() retries if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _kill_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace` seconds, and reap the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Also after the leader exited: anything it started in its group goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Certificates:
    """A throwaway CA, the apiserver's serving certificate, an admin client certificate and the SA key.

    ECDSA P-256 throughout: generated in milliseconds, and accepted by the apiserver for each of these uses.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca_cert = folder / "ca.crt"
        self.serving_cert = folder / "apiserver.crt"
        self.serving_key = folder / "apiserver.key"
        self.admin_cert = folder / "admin.crt"
        self.admin_key = folder / "admin.key"
        self.service_account_key = folder / "sa.key"
        self.service_account_pub = folder / "sa.pub"

    def generate(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ai-ops-test-ca")])
        ca = (
            self._builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(self._usage(cert_sign=True), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        self._write_cert(self.ca_cert, ca)

        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                ca_name,
                serving_key.public_key(),
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(HOST)),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._write_cert(self.serving_cert, serving)
        self._write_key(self.serving_key, serving_key)

        # The apiserver takes the client certificate's CN as the user and each O as a group.
        admin_key = ec.generate_private_key(ec.SECP256R1())
        admin_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_USER),
            ]
        )
        admin = (
            self._builder(admin_name, ca_name, admin_key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self._write_cert(self.admin_cert, admin)
        self._write_key(self.admin_key, admin_key)

        sa_key = ec.generate_private_key(ec.SECP256R1())
        self._write_key(self.service_account_key, sa_key)
        self.service_account_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            # A little in the past: the apiserver and the clients must not see a certificate from the future.
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    @staticmethod
    def _usage(cert_sign: bool = False) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=cert_sign,
            crl_sign=cert_sign,
            encipher_only=False,
            decipher_only=False,
        )

    @staticmethod
    def _write_cert(path: Path, cert: x509.Certificate) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)


class ControlPlane:
    """etcd and kube-apiserver as child processes, each in its own process group; stop() ends both."""

    def __init__(self, binaries: Path, extra_args: list[str] | None = None) -> None:
        self.binaries = binaries
        # More kube-apiserver flags (a later flag wins), e.g. to turn the watch cache off for one resource.
        self.extra_args = list(extra_args or ())
        self._workdir = tempfile.TemporaryDirectory(prefix="ai-ops-control-plane-")
        self.workdir = Path(self._workdir.name)
        self.certs = Certificates(self.workdir)
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.etcd_url = ""
        self.url = ""
        self.started_in = 0.0
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None

    # Starting and stopping

    def start(self, timeout: float = 120.0, attempts: int = 3) -> None:
        """Start etcd, then the apiserver, and return once /readyz answers ok."""
        began = time.monotonic()
        self.certs.generate()
        self._start_etcd(timeout, attempts)
        self._start_apiserver(timeout, attempts)
        self._write_admin_kubeconfig()
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """End the apiserver, then etcd (by process group), and remove the data and keys."""
        for process in (self._apiserver, self._etcd):
            if process is not None:
                _kill_group(process)
        self._apiserver = self._etcd = None
        self._workdir.cleanup()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # A log file, not a pipe: a pipe nobody reads would stall the server once full.
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )

    def log(self, name: str, tail: int = 4000) -> str:
        """The end of `etcd.log` or `kube-apiserver.log`, for error messages."""
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _start_etcd(self, timeout: float, attempts: int) -> None:
        for _attempt in range(attempts):
            client, peer = free_port(), free_port()
            self.etcd_url = f"http://{HOST}:{client}"
            peer_url = f"http://{HOST}:{peer}"
            self._etcd = self._spawn(
                "etcd",
                [
                    str(self.binaries / "etcd"),
                    "--name=test",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=test={peer_url}",
                    # Throwaway data: no fsync per write, the bulk of etcd's write latency on a slow disk.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
            )
            if self._wait(self._etcd, f"{self.etcd_url}/health", timeout, tls=False):
                return
            _kill_group(self._etcd)
            self._etcd = None
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        raise RuntimeError(f"etcd did not become healthy:\n{self.log('etcd')}")

    def _start_apiserver(self, timeout: float, attempts: int) -> None:
        certs = self.certs
        for _attempt in range(attempts):
            port = free_port()
            self.url = f"https://{HOST}:{port}"
            self._apiserver = self._spawn(
                "kube-apiserver",
                [
                    str(self.binaries / "kube-apiserver"),
                    f"--etcd-servers={self.etcd_url}",
                    f"--bind-address={HOST}",
                    f"--advertise-address={HOST}",
                    f"--secure-port={port}",
                    f"--cert-dir={self.workdir}",
                    f"--tls-cert-file={certs.serving_cert}",
                    f"--tls-private-key-file={certs.serving_key}",
                    f"--client-ca-file={certs.ca_cert}",
                    f"--service-account-key-file={certs.service_account_pub}",
                    f"--service-account-signing-key-file={certs.service_account_key}",
                    f"--service-account-issuer={self.url}",
                    "--authorization-mode=Node,RBAC",
                    # As kubeadm and kind set it: then a privileged pod is refused by Pod Security admission
                    # (which the tests are about), not by the apiserver's own validation first.
                    "--allow-privileged=true",
                    # Added to the default-on plugins (NamespaceLifecycle, ServiceAccount, ...), which stay on.
                    "--enable-admission-plugins=NodeRestriction,PodSecurity,ValidatingAdmissionPolicy",
                    # Only the range Service IPs are allocated from: nothing is ever sent there.
                    "--service-cluster-ip-range=10.0.0.0/24",
                    # The default reconciler writes the advertise address into the `kubernetes` Endpoints,
                    # which refuses a loopback address; no client here resolves that Service.
                    "--endpoint-reconciler-type=none",
                    "--profiling=false",
                    "--v=1",
                    *self.extra_args,
                ],
            )
            if self._wait(self._apiserver, f"{self.url}/readyz", timeout, tls=True):
                return
            _kill_group(self._apiserver)
            self._apiserver = None
        raise RuntimeError(f"kube-apiserver did not become ready:\n{self.log('kube-apiserver')}")

    def _wait(self, process: subprocess.Popen[bytes], url: str, timeout: float, tls: bool) -> bool:
        """Poll `url` until it answers 200; False if the process exits first or time runs out."""
        context = self.ssl_context() if tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    # Clients

    def ssl_context(self) -> ssl.SSLContext:
        """TLS trusting the test CA and presenting the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return context

    def api_client(self, token: str | None = None) -> ApiClient:
        """A `kubernetes.client.ApiClient`: the admin (system:masters) by default, or a bearer token's user.

        Built from a Configuration, not the global default, so tests cannot leak settings into each other.
        """
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.certs.ca_cert)
        if token is None:
            configuration.cert_file = str(self.certs.admin_cert)
            configuration.key_file = str(self.certs.admin_key)
        else:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def _write_admin_kubeconfig(self) -> None:
        self._write_kubeconfig(
            self.kubeconfig,
            ADMIN_USER,
            {
                "client-certificate-data": _b64(self.certs.admin_cert.read_bytes()),
                "client-key-data": _b64(self.certs.admin_key.read_bytes()),
            },
        )

    def write_kubeconfig(self, token: str, path: Path | None = None, user: str = "token") -> Path:
        """A kubeconfig for `token` (its file is `path`, or a new one in the work folder); returns its path."""
        if path is None:
            path = self.workdir / f"{user}-{uuid.uuid4().hex[:8]}.kubeconfig"
        self._write_kubeconfig(path, user, {"token": token})
        return path

    def _write_kubeconfig(self, path: Path, user: str, credential: dict[str, str]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ai-ops-test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.certs.ca_cert.read_bytes()),
                    },
                }
            ],
            "users": [{"name": user, "user": credential}],
            "contexts": [{"name": user, "context": {"cluster": "ai-ops-test", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    # Objects the RBAC tests need

    def create_namespace(self, prefix: str = "test", labels: dict[str, str] | None = None) -> str:
        """A new namespace with a unique name starting with `prefix`, and its `default` ServiceAccount.

        The controller manager would create that ServiceAccount; there is none here, and without it the
        ServiceAccount admission plugin refuses every pod in the namespace.
        """
        from kubernetes import client

        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
            core.create_namespaced_service_account(
                name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
            )
        return name

    def service_account_token(
        self,
        namespace: str,
        name: str,
        expiration_seconds: int = 3600,
        audiences: list[str] | None = None,
    ) -> str:
        """A token for ServiceAccount `namespace/name` (created if missing) from the TokenRequest API.

        The audience defaults to the apiserver's own (its issuer), so the token authenticates against it.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as error:
                if error.status != 409:
                    raise
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=audiences or [], expiration_seconds=expiration_seconds
                )
            )
            response = core.create_namespaced_service_account_token(name, namespace, request)
        if response.status is None or not response.status.token:
            raise RuntimeError(f"the TokenRequest for {namespace}/{name} returned no token")
        return str(response.status.token)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
