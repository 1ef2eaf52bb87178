"""A real Prometheus server scrapes `rasd run --backend fake` and sees all 8 GPUs' power."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port, http_get, rasd_daemon, wait_for

pytestmark = pytest.mark.prometheus


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("the prometheus server is not installed (tests/run.sh installs Debian's package)")
    return path


def _query(base: str, q: str) -> list:
    body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
    data = json.loads(body)
    assert data["status"] == "success", body
    return data["data"]["result"]


def test_prometheus_scrapes_rasd(tmp_path: Path, prometheus_bin: str):
    with rasd_daemon(tmp_path) as (_proc, rasd_url):
        target = rasd_url.removeprefix("http://")
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: rasd\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        port = free_port()
        prom = subprocess.Popen(
            [prometheus_bin, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            up = wait_for(lambda: [r for r in _query(base, 'up{job="rasd"}') if r["value"][1] == "1"], timeout=60, interval=0.5)
            assert up
            series = wait_for(lambda: len(_query(base, "rasd_gpu_power_watts")) == 8 and _query(base, "rasd_gpu_power_watts"), timeout=30, interval=0.5)
            gpus = sorted(int(r["metric"]["gpu"]) for r in series)
            assert gpus == list(range(8))
            assert all(0 < float(r["value"][1]) < 1000 for r in series)
        finally:
            prom.terminate()
            prom.wait(10)
