"""Start this repository's Python modules (``tests.*``, ``benchmarks.*``) in child processes.

The repository root cannot simply go on the child's path: ``operator/`` (the sources of
``ai_ops_operator``) would shadow the standard library's ``operator`` module, which is why the Makefile runs
Python in safe-path mode (``PYTHONSAFEPATH``), and that in turn keeps ``python -m tests....`` from finding
this repository. So the child appends the root to the END of ``sys.path`` and runs the module with runpy:
the standard library always wins, and our top-level folders are still importable.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_BOOTSTRAP = (
    "import runpy, sys; sys.path.append({root!r}); del sys.argv[0]; "
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def python_module_command(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args...`` with this repository importable (see module doc)."""
    code = _BOOTSTRAP.format(root=str(REPO_ROOT), module=module)
    return [sys.executable, "-c", code, "--", *args]
