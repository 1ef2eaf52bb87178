"""README's metric table lists exactly what rasd exports, and the whole exposition lints clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.exporter.live import live_exposition
from tests.exporter.metric_table import expositions, readme_rows, rows

README = Path(__file__).resolve().parents[2] / "README.md"
FIX = "regenerate it: python -m tests.exporter.metric_table --write"


def test_readme_metric_table_equals_the_exposition_names_types_and_labels():
    """Every family, sampled (so its labels are known) after runs that exercise every section."""
    found, empty = rows(expositions())
    assert empty == set(), f"no run filled these families: {sorted(empty)}"
    exported = {r.name: (r.type, r.labels) for r in found.values()}
    documented = readme_rows(README.read_text())
    assert sorted(set(exported) - set(documented)) == [], f"exported but missing from README's table; {FIX}"
    assert sorted(set(documented) - set(exported)) == [], f"in README's table but not exported; {FIX}"
    wrong = {n: (documented[n], exported[n]) for n in exported if documented[n] != exported[n]}
    assert wrong == {}, f"type or labels differ (README, exposition); {FIX}"


def test_whole_exposition_lints_clean(fake, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (tests/run.sh installs Debian's prometheus package)")
    text = live_exposition(fake, tmp_path, scenario=None)
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
