from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scheduler.slurmcluster import SlurmCluster, missing_reason


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[SlurmCluster]:
    """A fresh real Slurm cluster per test: rasd0 runs a slurmd, rasdx1..3 are configured only."""
    why = missing_reason()
    if why:
        pytest.skip(why)
    c = SlurmCluster(tmp_path / "slurm")
    (tmp_path / "slurm").mkdir()
    try:
        c.start()
        yield c
    finally:
        c.stop()
