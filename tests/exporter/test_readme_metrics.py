"""README's metric table lists exactly what rasd exports, and the whole exposition lints clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.exporter.live import exported_names, live_exposition, readme_names

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metric_table_equals_exported(fake, tmp_path):
    exported = exported_names(live_exposition(fake, tmp_path))
    documented = readme_names(README)
    assert exported - documented == set(), "exported but missing from README's metric table"
    assert documented - exported == set(), "in README's metric table but not exported"


def test_whole_exposition_lints_clean(fake, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (tests/run.sh installs Debian's prometheus package)")
    text = live_exposition(fake, tmp_path, scenario=None)
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
