"""Plain JSON requests to the control plane, and installing the ai-ops CRDs into it.

Plain requests, not the official client: the tests need what the typed client hides or cannot send for
a custom kind (the HTTP status, the `Warning` headers, `dryRun` and `fieldValidation`, the Status body).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ai_ops_api.specs import API_VERSION, RESOURCES
from tests.cluster.controlplane import REPO_ROOT, ControlPlane

CRD_DIR = REPO_ROOT / "crds"
# The strict decoder's refusal, `unknown field "spec.baseUrl"`, and the same text in a Warning header.
_UNKNOWN_FIELD_RE = re.compile(r'unknown field \\?"(?P<path>[^"\\]+)\\?"')


@dataclass
class Answer:
    """One answer of the API server."""

    status: int
    body: Any
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else str(self.body)

    def problem_paths(self) -> set[str]:
        """The field paths the server found fault with: its Status causes and its unknown-field warnings.

        A cause without a field (`<nil>`: "some validation rules were not checked") names no problem.
        """
        paths = {m["path"] for warning in self.warnings for m in _UNKNOWN_FIELD_RE.finditer(warning)}
        if not self.ok and isinstance(self.body, dict):
            for cause in (self.body.get("details") or {}).get("causes") or ():
                if cause.get("field") and cause["field"] != "<nil>":
                    paths.add(cause["field"])
            paths |= {m["path"] for m in _UNKNOWN_FIELD_RE.finditer(self.message)}
        return paths


def request(
    plane: ControlPlane,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Answer:
    url = plane.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30, context=plane.ssl_context()) as response:
            return Answer(response.status, json.load(response), response.headers.get_all("Warning") or [])
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(error.code, parsed, error.headers.get_all("Warning") or [])


def collection_path(obj: dict[str, Any], namespace: str) -> str:
    """Where `obj` is created: `/api/v1/...` for core kinds, `/apis/GROUP/VERSION/...` for the others.

    The plural is the CRD's for our kinds and the lower-cased kind plus `s` otherwise (Secret, ConfigMap),
    so a misspelt apiVersion or kind gets a path the server does not serve, as kubectl would.
    """
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    plural = RESOURCES[kind].plural if kind in RESOURCES else f"{kind.lower()}s"
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(obj: dict[str, Any], namespace: str) -> str:
    return f"{collection_path(obj, namespace)}/{obj['metadata']['name']}"


def crd_documents() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]


def install_crds(plane: ControlPlane, crds: list[dict[str, Any]], timeout: float = 60.0) -> None:
    """Create (or replace) `crds` and wait until each is Established and its resource is served."""
    for crd in crds:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        answer = request(plane, "POST", path, crd)
        if answer.status == 409:
            current = request(plane, "GET", f"{path}/{crd['metadata']['name']}").body
            crd = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            answer = request(plane, "PUT", f"{path}/{crd['metadata']['name']}", crd)
        if not answer.ok:
            raise AssertionError(f"the API server refused CRD {crd['metadata']['name']}: {answer.message}")
    deadline = time.monotonic() + timeout
    for crd in crds:
        name = crd["metadata"]["name"]
        plural = crd["spec"]["names"]["plural"]
        while True:
            current = request(plane, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = {
                c["type"]: c["status"] for c in current.body.get("status", {}).get("conditions", [])
            }
            # Established is set before discovery serves the resource: wait for a list to answer too.
            served = request(plane, "GET", f"/apis/{API_VERSION}/{plural}").ok
            if conditions.get("Established") == "True" and served:
                break
            assert time.monotonic() < deadline, f"CRD {name} not established: {current.body.get('status')}"
            time.sleep(0.1)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
