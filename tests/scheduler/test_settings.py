"""[scheduler] settings: bad values are reported at once, one line each, with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rasd import config
from rasd.scheduler.settings import parse_budget


def test_budget_counts_and_percents() -> None:
    assert parse_budget("2").limit(100) == 2
    assert parse_budget("10%").limit(45) == 4
    assert parse_budget("10%").limit(3) == 1  # never below one node
    assert parse_budget("0").limit(10) == 0  # never take a node out


def test_bad_values_are_all_reported() -> None:
    with pytest.raises(config.ConfigError) as e:
        config.parse('[scheduler]\nkind = "pbs"\nmax_nodes_out = "ten"\nbreaker_share = 0.0\n'
                     'retry_seconds = -1\n')
    text = "\n".join(e.value.problems)
    assert "scheduler.kind: 'pbs' is not one of none, slurm, kubernetes" in text
    assert "scheduler.max_nodes_out: 'ten' is not a count or a percent" in text
    assert "scheduler.breaker_share" in text and "scheduler.retry_seconds" in text
    assert len(e.value.problems) == 4


def test_run_with_a_bad_scheduler_table_is_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "rasd.toml"
    cfg.write_text('[scheduler]\nmax_nodes_out = "150%"\n')
    r = subprocess.run([sys.executable, "-m", "rasd", "run", "--backend", "fake", "--config",
                        str(cfg)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "max_nodes_out: '150%': a percent must be above 0" in lines[0]


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rasd", "scheduler", "status", "--socket",
                        str(tmp_path / "none.sock")], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 2 and "no rasd daemon answers" in r.stderr
