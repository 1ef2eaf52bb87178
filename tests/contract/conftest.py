"""The mock NVML probes, run once per session (each profile and failure mode in its own process)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.contract.mocknvml import PROFILES, config, env_for, failure_config, finish_probe, mock_dir, start_probe

FAILURES = {
    "lost": {"mode": "lost"},
    "fallen_off_bus": {"mode": "fallen_off_bus"},
    "ecc_uncorrectable": {"mode": "ecc_uncorrectable", "xid": {"code": 48}},
}
FAILED_GPU = 2


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every probe, run two at a time (CI has 2 cores)."""
    lib = mock_dir() / "lib"
    tmp = tmp_path_factory.mktemp("mock")
    jobs: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
        p: (env_for(lib, config(p)), ("--xid-wait-ms", "150")) for p in PROFILES
    }
    for name, failure in FAILURES.items():
        path = failure_config(tmp, "h100", FAILED_GPU, failure)
        jobs[f"h100+{name}"] = (env_for(lib, path), ("--polls", "3", "--xid-wait-ms", "400"))

    def run(item: tuple[str, tuple[dict[str, str], tuple[str, ...]]]) -> tuple[str, dict[str, Any]]:
        key, (env, args) = item
        return key, finish_probe(start_probe(env, *args))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, jobs.items()))
