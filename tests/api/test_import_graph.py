"""The packages depend on each other in one direction only: the contract (``ai_ops_api``) on nothing of
ours, the shared helpers (``ai_ops_common``) on neither side, and neither side on the other, so the
operator image never needs the chat service's code and a change inside one side cannot break the other.

Every import statement counts, also those inside functions and ``TYPE_CHECKING`` blocks, and so does a
string that names a module of ours (``importlib.import_module("chat_service.cli")`` is an import too). Only
the ``ai-ops`` command's dispatcher, ``ai_ops_cli``, may name every part.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"ai_ops_api", "ai_ops_cli", "ai_ops_common", "ai_ops_operator", "chat_service", "mcp_servers"}
# package -> its folder, and the packages of ours it must never import
PACKAGES = {
    "ai_ops_api": (ROOT / "ai_ops_api", OURS - {"ai_ops_api"}),
    "ai_ops_common": (
        ROOT / "ai_ops_common",
        {"ai_ops_cli", "ai_ops_operator", "chat_service", "mcp_servers"},
    ),
    "ai_ops_operator": (ROOT / "operator", {"ai_ops_cli", "chat_service", "mcp_servers"}),
    "chat_service": (ROOT / "chat_service", {"ai_ops_cli", "ai_ops_operator", "mcp_servers"}),
    "mcp_servers": (ROOT / "mcp_servers", {"ai_ops_cli", "ai_ops_operator", "chat_service"}),
}
# A string that is a dotted module path of ours, the way importlib and entry points name a module (a bare
# package name is left out: "mcp_servers" is also a field of the status body).
PACKAGE_NAMES = "|".join(sorted(OURS))
MODULE_NAME = re.compile(rf"({PACKAGE_NAMES})((\.[A-Za-z_]\w*)+(:\w+)?|:\w+)")


def imported_packages(source: str) -> set[str]:
    """The top-level packages a module's source imports (relative imports stay inside its package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_NAME.fullmatch(node.value)
        ):
            found.add(node.value.split(".")[0].split(":")[0])
    return found


def forbidden_imports(package: str) -> dict[str, set[str]]:
    folder, forbidden = PACKAGES[package]
    modules = sorted(folder.rglob("*.py"))
    assert modules, folder
    return {
        str(path.relative_to(ROOT)): bad
        for path in modules
        if (bad := imported_packages(path.read_text()) & forbidden)
    }


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_only_what_it_may(package: str) -> None:
    assert forbidden_imports(package) == {}


def test_the_walk_sees_every_kind_of_import() -> None:
    source = """
import chat_service.app
from ai_ops_operator.core import evaluate
from . import sibling
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from mcp_servers.netops import probes
def later():
    import ai_ops_common.errors
PARTS = {"chat": "ai_ops_cli:main", "mcp": "ai_ops_api.specs"}
"""
    assert imported_packages(source) == {
        "chat_service",
        "ai_ops_operator",
        "typing",
        "mcp_servers",
        "ai_ops_common",
        "ai_ops_cli",
        "ai_ops_api",
    }


def test_a_module_named_in_prose_is_no_import() -> None:
    assert (
        imported_packages('"""Unlike chat_service.cli, this runs the operator."""\nx = {"mcp_servers": 1}')
        == set()
    )
    assert imported_packages('x = "see chat_service.cli for the chat"') == set()
    assert imported_packages('x = "chat_service.cli"') == {"chat_service"}


def test_the_command_names_every_part() -> None:
    imported = imported_packages((ROOT / "ai_ops_cli" / "__init__.py").read_text())
    assert {"ai_ops_operator", "chat_service", "mcp_servers"} <= imported


def test_the_operator_uses_the_contract_and_the_shared_helpers() -> None:
    """The walk reads real modules: the operator does import the packages it may."""
    imported = set().union(*(imported_packages(p.read_text()) for p in (ROOT / "operator").rglob("*.py")))
    assert {"ai_ops_api", "ai_ops_common", "ai_ops_operator"} <= imported
