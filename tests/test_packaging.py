"""Packaging: every source package is in the distribution, the ``ai-ops`` console script works."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from ai_ops_cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
AI_OPS = Path(sys.executable).with_name("ai-ops")
# Imports that must not happen just to print help (they cost seconds on a small machine).
HEAVY = (
    "kopf",
    "kmock",
    "langchain",
    "langchain_core",
    "langgraph",
    "uvicorn",
    "fastapi",
    "kubernetes",
    "mcp",
)


def test_the_operator_folder_is_not_itself_a_package() -> None:
    # A folder without __init__.py never wins over the standard library's module of the same name.
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert SETUPTOOLS["packages"]["find"]["where"] == [".", "operator"]


def test_every_source_package_is_installed() -> None:
    for top in (
        "ai_ops_api",
        "ai_ops_cli",
        "ai_ops_common",
        "ai_ops_operator",
        "chat_service",
        "mcp_servers",
    ):
        package = importlib.import_module(top)
        expected = ROOT / "operator" / top if top == "ai_ops_operator" else ROOT / top
        assert Path(package.__file__ or "").parent == expected


def test_a_plain_interpreter_in_the_root_gets_the_standard_librarys_operator() -> None:
    # Python puts the current folder first on sys.path for -c; operator/ must still not shadow anything,
    # even when nothing imported the stdlib module at start-up.
    code = "import sys; sys.modules.pop('operator', None); import operator; operator.eq; print(operator.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith(str(ROOT / "operator"))


def test_distribution_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == "ai-ops"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"ai-ops": "ai_ops_cli:main"}
    assert {"anthropic", "huggingface", "test"} <= set(project["optional-dependencies"])
    # Runtime dependencies carry lower bounds.
    assert all(">=" in dep or "==" in dep for dep in project["dependencies"]), project["dependencies"]


def test_ai_ops_help_lists_the_subcommands() -> None:
    result = subprocess.run([str(AI_OPS), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ai-ops")
    for name in ("validate", "render", "crds"):
        assert name in result.stdout


@pytest.mark.parametrize("command", ["validate", "render", "crds"])
def test_subcommand_help(command: str) -> None:
    result = subprocess.run([str(AI_OPS), command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: ai-ops {command}")


def test_no_command_is_a_usage_error() -> None:
    result = subprocess.run([str(AI_OPS)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "usage: ai-ops" in result.stderr
    assert "Traceback" not in result.stderr


def test_subcommand_modules_follow_the_contract() -> None:
    for name, (module_name, _) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that part is not built yet
            raise
        assert callable(module.add_arguments) and callable(module.run), name


def test_help_does_not_import_the_heavy_stacks() -> None:
    probe = (
        "import sys\n"
        "from ai_ops_cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "keep heavy imports inside the subcommand's run()"


def distribution_name(requirement: str) -> str:
    """The normalized distribution name of a requirement string ("Foo_Bar[x]>=1" is "foo-bar")."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found.group(1)).lower()


def test_make_install_is_what_make_run_needs_and_make_test_adds_the_toolchain() -> None:
    def planned(target: str) -> str:
        done = subprocess.run(
            ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "pip install --quiet -e .\n" in planned("install")
    assert ".[test]" not in planned("install")
    assert ".[test]" not in planned("run").split("run_demo.py")[0]
    assert ".[test]" in planned("test")
    # `make install` gets all of [project].dependencies: none of the test toolchain may hide there.
    project = PYPROJECT["project"]
    runtime = {distribution_name(dep) for dep in project["dependencies"]}
    toolchain = {distribution_name(dep) for dep in project["optional-dependencies"]["test"]}
    assert runtime & toolchain == set()


def test_every_file_of_the_web_page_is_package_data() -> None:
    # A static file that package-data misses is absent from the wheel and the image: the page would 404.
    import fnmatch

    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["chat_service"]
    static = ROOT / "chat_service" / "web" / "static"
    files = [p.relative_to(ROOT / "chat_service").as_posix() for p in static.rglob("*") if p.is_file()]
    assert files
    missing = [
        f
        for f in files
        if not any(
            fnmatch.fnmatchcase(f, pattern) and "/" not in f[len(pattern.rstrip("*")) :]
            for pattern in patterns
        )
    ]
    assert not missing, f"add these to [tool.setuptools.package-data]: {missing}"


# What setuptools says when the packaging configuration is out of date; the build goes on, so only the
# build output tells.
SETUPTOOLS_COMPLAINTS = (
    "SetuptoolsDeprecationWarning",
    "is absent from the `packages` configuration",
    "`project.license` as a TOML table is deprecated",
)


def test_the_wheel_builds_without_setuptools_warnings_and_carries_the_web_page(tmp_path: Path) -> None:
    # A copy without the local build state: a stale egg-info's SOURCES.txt feeds files into the build.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Offline: the test extra brings [build-system]'s setuptools, and pip checks that it does.
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation"),
            *("--check-build-dependencies", "--verbose", "--wheel-dir", str(wheels), str(source)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert "adding 'chat_service/web/static/index.html'" in output, "the build output is setuptools' own"
    assert [c for c in SETUPTOOLS_COMPLAINTS if c in output] == [], output
    (wheel,) = wheels.glob("ai_ops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    static = ROOT / "chat_service" / "web" / "static"
    files = {p.relative_to(ROOT).as_posix() for p in static.rglob("*") if p.is_file()}
    assert files - packed == set()
    assert {
        "chat_service/web/static/vendor/marked.esm.js",
        "chat_service/web/static/vendor/purify.es.mjs",
    } <= packed
