"""Run rasd or nvitop-exporter on rasd's fake node of N GPUs (a helper of bench_side_by_side.py).

    <rasd venv>/bin/python sidebyside_fake.py rasd --gpus 72 --port 19001
    PYTHONPATH=<checkout> <nvitop venv>/bin/python sidebyside_fake.py nvitop --gpus 72 --port 19002
    <rasd venv>/bin/python sidebyside_fake.py model --gpus 72 --hz 10

rasd: the daemon exactly as ``rasd run --backend fake`` builds it, except that the node has N GPUs
(scenario files stop at 64). nvitop-exporter: its own process, with every NVML function rasd's fake
offers put into the real ``pynvml`` module in place of the C library's (functions the fake lacks
answer "uninitialised", which nvitop shows as N/A, as on a driver without them).

rasd is imported from wherever the interpreter finds it: the benchmark runs this under the
Python of a virtual environment rasd is installed in, without ``PYTHONPATH``, so the daemon is the
installed package, as on a node; the peer's process finds the fake node's code through
``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import sys


def run_rasd(gpus: int, port: int) -> None:
    from exporters.prometheus import serve
    from rasd import config
    from rasd.backends import open_backend
    from rasd.cli.common import setup_logging
    from rasd.daemon import Daemon, with_listen

    cfg = with_listen(config.Config.default(), f"127.0.0.1:{port}")
    setup_logging("warning")
    daemon = Daemon(cfg, open_backend("fake", gpus=gpus), serve_metrics=serve)
    daemon.start()
    daemon.run_forever()


def run_nvitop(gpus: int, port: int) -> None:
    import pynvml

    from rasd.backends.fake import FakeNode, FakeNvml

    fake = FakeNvml(FakeNode(gpu_count=gpus), pynvml)
    for name in dir(fake):
        if name.startswith("nvml") and name in vars(pynvml) and callable(getattr(fake, name)):
            setattr(pynvml, name, getattr(fake, name))
    pynvml.nvmlInitWithFlags = lambda flags=0: fake.nvmlInit()
    from nvitop_exporter.cli import main

    sys.argv = ["nvitop-exporter", "--bind-address", "127.0.0.1", "--port", str(port)]
    sys.exit(main())


def run_model(gpus: int, hz: float) -> None:
    """The fake node alone, read as rasd reads it, nothing else: every GPU's instant power
    (field 186) ``hz`` times a second, on the native reader where rasd was built with it (the fake
    answers it from its published power model, rasd.backends.fake.instant; its queue taken and
    dropped once a second) and else through the fake NVML from Python, as the sampler calls it;
    and once a second what needs the model stepped in full (average power, energy, temperature:
    the health poll's power readings). What the simulated hardware itself costs a process that
    reads every instant-power update of the fake node; on a real node, NVML's readings are the
    driver's work, not the daemon's."""
    import time

    import pynvml

    from rasd.backends.fake import FakeNode, FakeNvml
    from rasd.backends.nvml import NvmlAdapter
    from rasd.backends.nvml.powerloop import NativeLoop

    lib = FakeNvml(FakeNode(gpu_count=gpus), pynvml)
    adapter = NvmlAdapter(lib)
    adapter.open()
    handles = [lib.nvmlDeviceGetHandleByIndex(g) for g in range(gpus)]
    reads = adapter.native_power(adapter.gpus())
    native = NativeLoop("power", list(range(gpus)), reads, 1.0 / hz, 0.25) if reads is not None else None
    if native is not None:
        native.start()
    full = [pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
    every = 1 if native is not None else max(1, round(hz))
    period = 1.0 if native is not None else 1.0 / hz
    next_at, rounds = time.monotonic(), 0
    while True:
        if native is None:
            for h in handles:
                lib.nvmlDeviceGetFieldValues(h, [186])
        else:
            native.drain()
        rounds += 1
        if rounds % every == 0:
            for h in handles:
                lib.nvmlDeviceGetFieldValues(h, full)
                lib.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["rasd", "nvitop", "model"])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--port", type=int, default=0, help="rasd and nvitop: where /metrics listens")
    ap.add_argument("--hz", type=float, default=10.0, help="model: instant-power reads of every GPU a second")
    a = ap.parse_args()
    if a.which == "model":
        run_model(a.gpus, a.hz)
    elif not a.port:
        ap.error("--port is required for rasd and nvitop")
    else:
        (run_rasd if a.which == "rasd" else run_nvitop)(a.gpus, a.port)
