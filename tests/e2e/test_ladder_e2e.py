"""End to end: Xid 79 on one GPU of the fake node -> `reboot_node` on /metrics within two polls."""

from __future__ import annotations

import re

from tests.e2e.helpers import http_get, rasd_daemon, wait_for

INTERVAL = 1.0


def _value(text: str, pattern: str) -> float | None:
    m = re.search("^" + pattern + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_xid79_shows_reboot_node_within_two_polls(tmp_path):
    with rasd_daemon(tmp_path, "--scenario", "xid79") as (_proc, url):
        def rung_visible():
            text = http_get(url + "/metrics")
            rung = _value(text, r"rasd_node_repair_rung")
            return text if rung == 4 else None  # 4 = reboot_node

        text = wait_for(rung_visible, timeout=20, interval=0.1)
        m = re.search(r'rasd_gpu_last_xid_timestamp_seconds\{gpu="(\d+)"\} (\S+)', text)
        assert m, "the Xid that caused the decision is exported"
        gpu, xid_at = m.group(1), float(m.group(2))
        snap_at = _value(text, "rasd_snapshot_timestamp_seconds")
        assert snap_at - xid_at <= 2 * INTERVAL
        assert f'rasd_gpu_xid_errors_total{{gpu="{gpu}",xid="79"}} 1.0' in text
        info = [ln for ln in text.splitlines() if ln.startswith("rasd_gpu_repair_rung_info{")]
        assert any(f'gpu="{gpu}"' in ln and 'rung="reboot_node"' in ln for ln in info), info
        others = [g for g in range(8) if str(g) != gpu]
        for g in others:  # the smallest blast radius: other GPUs get no rung of their own
            m = re.search(rf'^rasd_gpu_repair_rung\{{gpu="{g}",scope="gpu"\}} (\S+)$', text, re.M)
            assert m is None or float(m.group(1)) == 0.0
