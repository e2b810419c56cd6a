"""docs/helm.md stays true to the chart: its values table is the one generated from the schema."""

from __future__ import annotations

import subprocess
import sys

from tests.support.chart_render import CHART_DIR, ROOT

TABLE_SCRIPT = CHART_DIR / "hack" / "values-table.py"


def test_values_table_in_docs_is_current():
    result = subprocess.run([sys.executable, str(TABLE_SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_values_table_lists_every_leaf_value_with_its_default():
    table = subprocess.run(
        [sys.executable, str(TABLE_SCRIPT)], capture_output=True, text=True, check=True
    ).stdout
    doc = (ROOT / "docs" / "helm.md").read_text()
    for key, default in [
        ("rbac.scope", '`"cluster"`'),
        ("operator.metricsPort", "`9090`"),
        ("chat.auth.enabled", "`true`"),
        ("mcpServers.netops.port", "`8092`"),
    ]:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` |"))
        assert f"| {default} |" in row
        assert row in doc
