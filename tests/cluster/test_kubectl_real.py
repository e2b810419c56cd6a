"""kubectl against the real API server with the CRDs: the printer columns the docs promise, and explain.

One resource of each kind is created and given a status through `/status` (as the operator writes it),
so every column has a value. The columns checked are the ones docs/resources.md lists per kind
("`kubectl get llmm` columns: ...") and the tables docs/operator.md shows.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ai_ops_api.specs import API_VERSION, RESOURCES
from tests.cluster.controlplane import REPO_ROOT, ControlPlane
from tests.cluster.rest import collection_path, object_path, request

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")

DOCS_RESOURCES = REPO_ROOT / "docs" / "resources.md"
DOCS_OPERATOR = REPO_ROOT / "docs" / "operator.md"
COLUMNS_RE = re.compile(
    r"^`kubectl get (?P<short>\w+)` columns: (?P<columns>[^(]+?)(?: \(`-o wide`: (?P<wide>[^)]+)\))?\.$"
)


def condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-10T09:12:03Z",
    }


# One resource of each kind, with the status the operator would write.
RESOURCES_WITH_STATUS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"kind": "LLMProvider", "metadata": {"name": "openai"}, "spec": {"type": "openai"}},
        {
            "observedGeneration": 1,
            "conditions": [condition("False", "SecretNotFound", "Secret 'k' not found")],
        },
    ),
    (
        {
            "kind": "LLMModel",
            "metadata": {"name": "llama"},
            "spec": {"providerRef": {"name": "openai"}, "model": "llama3.1:8b", "default": True},
        },
        {
            "observedGeneration": 1,
            "conditions": [condition("False", "ProviderNotReady", "provider not ready")],
        },
    ),
    (
        {
            "kind": "LLMMiddleware",
            "metadata": {"name": "limits"},
            "spec": {"modelRef": {"name": "llama"}, "type": "model_call_limit", "priority": 50},
        },
        {"observedGeneration": 1, "conditions": [condition("True", "Ready", "ready")]},
    ),
    (
        {
            "kind": "MCPServer",
            "metadata": {"name": "kube"},
            "spec": {"url": "http://mcp-kubernetes.ai-ops:8000/mcp"},
        },
        {
            "observedGeneration": 1,
            "health": "Healthy",
            "tools": {"count": 12, "names": [f"tool_{i}" for i in range(12)]},
            "conditions": [condition("True", "Healthy", "initialize and tools/list answered (12 tools)")],
        },
    ),
    (
        {
            "kind": "Investigation",
            "metadata": {"name": "inv-kubepodcrashlooping-0123456789"},
            "spec": {
                "source": "alertmanager",
                "alert": {"name": "KubePodCrashLooping", "labels": {"severity": "critical"}},
            },
        },
        {"phase": "Diagnosed", "summary": "checkout crashes: OOMKilled at 512Mi"},
    ),
    (
        {
            "kind": "Runbook",
            "metadata": {"name": "crashloop"},
            "spec": {
                "title": "Pod stuck in CrashLoopBackOff",
                "match": {"alertNames": ["KubePodCrashLooping"]},
                "content": "## Symptoms\nRestarts.\n## Resolution\nFix it.",
            },
        },
        {"observedGeneration": 1, "sections": 3, "conditions": [condition("True", "Ready", "ready")]},
    ),
    (
        {
            "kind": "ActionRequest",
            "metadata": {"name": "restart-checkout"},
            "spec": {
                "server": "kubernetes-actions",
                "tool": "rollout_restart",
                "arguments": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": "shop",
                    "name": "checkout",
                },
                "reason": "stale connection pool after the database failover",
                "risk": "low",
                "requestedBy": {"caller": "alice", "threadId": "t-42"},
            },
        },
        {"phase": "Succeeded", "decision": {"approved": True, "by": "bob", "at": "2026-05-01T10:01:00Z"}},
    ),
]


@pytest.fixture(scope="module")
def populated(ai_ops_crds: ControlPlane) -> str:
    namespace = ai_ops_crds.create_namespace("kubectl")
    for resource, status in RESOURCES_WITH_STATUS:
        obj = {"apiVersion": API_VERSION, **resource}
        created = request(
            ai_ops_crds, "POST", collection_path(obj, namespace), obj, {"fieldValidation": "Strict"}
        )
        assert created.ok, created.message
        written = request(
            ai_ops_crds, "PUT", object_path(obj, namespace) + "/status", {**created.body, "status": status}
        )
        assert written.ok, written.message
        # The status subresource leaves the spec alone and keeps the generation.
        assert written.body["spec"] == created.body["spec"]
        assert written.body["metadata"]["generation"] == 1
    return namespace


def kubectl(plane: ControlPlane, *args: str) -> str:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(plane.kubeconfig), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def tables(output: str) -> list[list[dict[str, str]]]:
    """kubectl's tables (one per kind, blank-line separated) as rows of {HEADER: cell}, cut at the header's
    column starts, so an empty cell stays empty."""
    found = []
    for block in output.strip().split("\n\n"):
        header, *lines = block.splitlines()
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        names = header.split()
        bounds = [*starts[1:], None]
        found.append(
            [
                {
                    name: line[start:end].strip()
                    for name, start, end in zip(names, starts, bounds, strict=True)
                }
                for line in lines
            ]
        )
    return found


def documented_columns() -> dict[str, tuple[list[str], list[str]]]:
    """docs/resources.md: short name -> (columns, extra `-o wide` columns)."""
    found = {}
    for line in DOCS_RESOURCES.read_text().splitlines():
        match = COLUMNS_RE.match(line)
        if match:
            wide = [c.strip() for c in match["wide"].split(",")] if match["wide"] else []
            found[match["short"]] = ([c.strip() for c in match["columns"].split(",")], wide)
    return found


def short_name(kind: str) -> str:
    return RESOURCES[kind].short_names[0]


def test_the_docs_list_the_columns_of_every_kind() -> None:
    assert set(documented_columns()) == {short_name(kind) for kind in RESOURCES}


@pytest.mark.parametrize("kind", list(RESOURCES))
def test_kubectl_get_shows_the_documented_columns(
    ai_ops_crds: ControlPlane, populated: str, kind: str
) -> None:
    columns, wide = documented_columns()[short_name(kind)]
    (plain,) = tables(kubectl(ai_ops_crds, "get", short_name(kind), "-n", populated))
    assert list(plain[0]) == ["NAME", *(c.upper() for c in columns)]
    (wide_table,) = tables(kubectl(ai_ops_crds, "get", short_name(kind), "-n", populated, "-o", "wide"))
    headers = list(wide_table[0])
    assert sorted(headers) == sorted(["NAME", *(c.upper() for c in columns + wide)])
    # The wide columns come in among the others in the CRD's order (Reason right after Ready).
    if "READY" in headers:
        assert headers.index("REASON") == headers.index("READY") + 1


def test_kubectl_get_llmm_shows_the_model_and_why_it_is_not_ready(
    ai_ops_crds: ControlPlane, populated: str
) -> None:
    (table,) = tables(kubectl(ai_ops_crds, "get", "llmm", "-n", populated))
    (row,) = table
    assert row["NAME"] == "llama"
    assert (row["PROVIDER"], row["MODEL"], row["DEFAULT"], row["READY"]) == (
        "openai",
        "llama3.1:8b",
        "true",
        "False",
    )
    assert re.fullmatch(r"\d+s", row["AGE"]), row["AGE"]


def test_kubectl_get_ai_ops_wide_lists_every_kind_with_its_values(
    ai_ops_crds: ControlPlane, populated: str
) -> None:
    by_name = {
        row["NAME"]: row
        for table in tables(kubectl(ai_ops_crds, "get", "ai-ops", "-n", populated, "-o", "wide"))
        for row in table
    }
    assert set(by_name) == {
        "llmprovider.ai-ops.dev/openai",
        "llmmodel.ai-ops.dev/llama",
        "llmmiddleware.ai-ops.dev/limits",
        "mcpserver.ai-ops.dev/kube",
        "investigation.ai-ops.dev/inv-kubepodcrashlooping-0123456789",
        "runbook.ai-ops.dev/crashloop",
        "actionrequest.ai-ops.dev/restart-checkout",
    }
    runbook = by_name["runbook.ai-ops.dev/crashloop"]
    assert (runbook["TITLE"], runbook["READY"], runbook["SECTIONS"]) == (
        "Pod stuck in CrashLoopBackOff",
        "True",
        "3",
    )
    provider = by_name["llmprovider.ai-ops.dev/openai"]
    assert (provider["TYPE"], provider["ENABLED"], provider["READY"], provider["REASON"]) == (
        "openai",
        "true",
        "False",
        "SecretNotFound",
    )
    middleware = by_name["llmmiddleware.ai-ops.dev/limits"]
    assert (middleware["MODEL"], middleware["TYPE"], middleware["PRIORITY"], middleware["ACTIVE"]) == (
        "llama",
        "model_call_limit",
        "50",
        "true",
    )
    assert (middleware["READY"], middleware["REASON"]) == ("True", "Ready")
    server = by_name["mcpserver.ai-ops.dev/kube"]
    assert (server["TRANSPORT"], server["HEALTH"], server["TOOLS"], server["READY"], server["REASON"]) == (
        "streamable_http",
        "Healthy",
        "12",
        "True",
        "Healthy",
    )
    assert server["URL"] == "http://mcp-kubernetes.ai-ops:8000/mcp"


def documented_headers(doc: Path) -> list[list[str]]:
    """The header lines of the `kubectl get ... -o wide` tables shown in a doc's console examples."""
    headers = []
    for block in re.findall(r"```console\n\$ kubectl get [^\n]*-o wide\n(.*?)```", doc.read_text(), re.S):
        headers += [line.split() for line in block.splitlines() if line.startswith("NAME ")]
    return headers


def test_the_tables_shown_in_operator_docs_have_the_real_headers(
    ai_ops_crds: ControlPlane, populated: str
) -> None:
    real = [
        list(table[0])
        for table in tables(kubectl(ai_ops_crds, "get", "ai-ops", "-n", populated, "-o", "wide"))
    ]
    shown = documented_headers(DOCS_OPERATOR)
    assert len(shown) >= 4
    for headers in shown:
        assert headers in real, f"docs/operator.md shows {headers}; kubectl prints {real}"


def test_kubectl_explain_describes_the_health_check(ai_ops_crds: ControlPlane) -> None:
    out = kubectl(ai_ops_crds, "explain", "mcpservers.spec.healthCheck")
    assert "KIND:       MCPServer" in out
    assert "How the server is probed." in out
    for field in (
        "enabled",
        "intervalSeconds",
        "timeoutSeconds",
        "failureThreshold",
        "successThreshold",
        "path",
    ):
        assert re.search(rf"^  {field}\t<(boolean|integer|string)>", out, re.M), f"{field} missing:\n{out}"
    assert "Seconds between probes, at least 5." in out


def test_kubectl_get_inv_shows_the_alert_its_severity_and_the_phase(
    ai_ops_crds: ControlPlane, populated: str
) -> None:
    (table,) = tables(kubectl(ai_ops_crds, "get", "inv", "-n", populated, "-o", "wide"))
    (row,) = table
    assert (row["ALERT"], row["SEVERITY"], row["PHASE"]) == ("KubePodCrashLooping", "critical", "Diagnosed")
    assert row["SUMMARY"] == "checkout crashes: OOMKilled at 512Mi"
