"""Start this repository's Python modules (``tests.*``, ``benchmarks.*``) in child processes.

A child may run in any working directory, so it appends the repository root to ``sys.path`` and runs the
module with runpy: our top-level folders are importable wherever the child starts.
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
