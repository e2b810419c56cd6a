"""Static checks of the Dockerfile (no Docker engine here; the kind suite builds and runs the image).

They catch the drift that would only show at build or run time: a package added to pyproject but not
copied into the image, a base image that floats, a final stage running as root or carrying compilers,
and the chart expecting a user or entrypoint the image does not have.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.support.chart_render import CHART_DIR, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(DOCKERFILE):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _build_args() -> dict[str, str]:
    return {
        name: value
        for word, rest in _instructions(DOCKERFILE)
        if word == "ARG" and "=" in rest
        for name, value in [rest.split("=", 1)]
    }


def test_base_image_is_pinned_by_version():
    base = _build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-[a-z]+)?", base), base
    for stage in _stages():
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"


def test_multi_stage_with_a_non_root_final_stage_and_no_build_tools():
    stages = _stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] == "10001:10001"
    final_text = " ".join(rest for _, rest in final)
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_text
    assert ("ENTRYPOINT", '["ai-ops"]') in final
    assert not any(word == "HEALTHCHECK" for word, _ in final)  # Kubernetes probes do that


def test_oci_labels():
    labels = " ".join(rest for word, rest in _stages()[-1] if word == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_every_python_package_is_copied_and_not_ignored():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    # Every top-level source folder the package finder looks in, by the folder that holds it.
    package_dirs = {
        (top if where == "." else where)
        for where in find["where"]
        for top in (p.name for p in (ROOT / where).iterdir() if p.is_dir())
        if any(top.startswith(pattern.rstrip("*")) for pattern in find["include"])
    }
    assert package_dirs == {
        "ai_ops_api",
        "ai_ops_cli",
        "ai_ops_common",
        "operator",
        "chat_service",
        "mcp_servers",
    }
    copied = {
        source.rstrip("/")
        for word, rest in _stages()[0]
        if word == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]  # every argument but the destination
    }
    assert package_dirs | {"pyproject.toml", "README.md"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    # .dockerignore ignores everything but what it re-includes.
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and line[0] != "#"
    ]
    assert patterns[0] == "*"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert copied <= included
    assert not any(fnmatch.fnmatch(".venv", p[1:]) for p in patterns if p.startswith("!"))


def test_chart_runs_the_image_as_its_user():
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    assert (
        'include "ai-ops.podSecurityContext" (dict "uid" 10001)'
        in (CHART_DIR / "templates" / "chat" / "deployment.yaml").read_text()
    )
    assert "runAsUser: {{ .uid }}" in helpers
