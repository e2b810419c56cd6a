"""The chart's CRD templates are `crds/` itself: one source, copied by `make chart`.

Rendered by the real Helm engine and compared as parsed YAML with the files in `crds/`, after removing
the only thing the wrapper adds (the `helm.sh/resource-policy: keep` annotation under `crds.keep`).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from ai_ops_api.specs import RESOURCES
from tests.support.chart_render import CHART_DIR, ROOT, Rendered, load_chart, render

CRDS_DIR = ROOT / "crds"
TEMPLATE_PREFIX = f"{CHART_DIR.name}/templates/crds/"
SYNC_SCRIPT = CHART_DIR / "hack" / "sync-crds.py"


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def kept(chart: helm.Chart) -> Rendered:
    return render(chart, {})


@pytest.fixture(scope="module")
def not_kept(chart: helm.Chart) -> Rendered:
    return render(chart, {"crds": {"keep": False}})


def _source_crds() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(CRDS_DIR.glob("*.yaml"))}


def _template_crds(rendered: Rendered) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path, obj in rendered.objects:
        if path.startswith(TEMPLATE_PREFIX):
            assert Path(path).name not in found, f"{path} holds more than one document"
            found[Path(path).name] = obj
    return found


def test_there_is_one_crd_per_kind_in_the_source():
    assert len(_source_crds()) == len(RESOURCES)


def test_rendered_crds_equal_the_source_without_keep(not_kept: Rendered):
    assert _template_crds(not_kept) == _source_crds()


def test_rendered_crds_equal_the_source_plus_the_keep_annotation(kept: Rendered):
    rendered = _template_crds(kept)
    assert rendered.keys() == _source_crds().keys()
    for name, source in _source_crds().items():
        crd = copy.deepcopy(rendered[name])
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}, name
        assert crd == source, name


def test_crds_install_false_renders_none(chart: helm.Chart):
    rendered = render(chart, {"crds": {"install": False}})
    assert _template_crds(rendered) == {}


def test_templates_are_up_to_date_with_crds_dir():
    """`make chart` was run after the last `make crds` (byte for byte, so the diff stays reviewable)."""
    result = subprocess.run([sys.executable, str(SYNC_SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sync_script_reports_a_stale_template(tmp_path: Path):
    crds = tmp_path / "crds"
    templates = tmp_path / "templates"
    crds.mkdir()
    source = (CRDS_DIR / "mcpservers.yaml").read_text()
    (crds / "mcpservers.yaml").write_text(source)
    assert (
        subprocess.run([sys.executable, str(SYNC_SCRIPT), str(crds), str(templates)], check=False).returncode
        == 0
    )
    check = [sys.executable, str(SYNC_SCRIPT), "--check", str(crds), str(templates)]
    assert subprocess.run(check, capture_output=True).returncode == 0
    (crds / "mcpservers.yaml").write_text(source.replace("Probe health.", "Health of the last probe."))
    stale = subprocess.run(check, capture_output=True, text=True)
    assert stale.returncode == 1 and "mcpservers.yaml" in stale.stderr and "make chart" in stale.stderr
