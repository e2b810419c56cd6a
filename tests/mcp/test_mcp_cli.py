"""``ai-ops mcp``'s own messages, as a newcomer meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_kubernetes_without_credentials_says_how_to_give_them(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no KUBECONFIG, no ~/.kube/config, not in a pod
    result = subprocess.run(
        [sys.executable, "-m", "ai_ops_cli", "mcp", "kubernetes", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no usable Kubernetes credentials" in result.stderr
    assert "--kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr
