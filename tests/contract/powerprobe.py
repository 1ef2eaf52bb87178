"""Instant power read both ways, in a process of its own (the NVML library is fixed at load):
the native loop and the Python loop, one after the other, each for ``--seconds``. Prints JSON.

    python -m tests.contract.powerprobe [--seconds S] [--library PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rasd.backends import open_backend
from rasd.telemetry.power import PowerSampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--library", type=Path, default=None, help="the built native reader")
    args = ap.parse_args()
    backend = open_backend("nvml")
    gpus = backend.adapter.gpus()
    out: dict[str, object] = {}
    for mode in ("native", "python"):
        native = backend.adapter.native_power(gpus, args.library) if mode == "native" else None
        samples: list = []
        s = PowerSampler(gpus, 12.5, samples.extend, native=native)
        s.start()
        time.sleep(args.seconds)
        s.stop()
        s.join(1.0)
        s.drain()
        out[mode] = {
            "native": s.native,
            "stats": s.stats(),
            "lost": sorted(g.handle.index for g in s._gpus if g.lost),
            "watts": {str(i): sorted({x.watts for x in samples if x.gpu == i}) for i in range(len(gpus))},
            "lag_ms": max((abs(x.time_wall - x.nvml_timestamp_us / 1e6) * 1e3 for x in samples), default=None),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
