"""What a process does not load: code a daemon never runs costs memory on every node.

Each test runs the real entry point (``python -m rasd ...``) in a child process with a
``sitecustomize`` module on its path that writes ``sys.modules`` out at exit, so nothing in rasd
exists for the test's sake.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Callable

from tests.e2e.helpers import free_port, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]

_DUMP = """\
import atexit, json, os, sys

def _dump():
    with open(os.environ["RASD_TEST_MODULES_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)

atexit.register(_dump)
"""

# The SDC checks proper (engines, GEMM, memory patterns, peers, the accusation workflow) and what
# they pull in; the service, its state and history are light and always loaded.
SDC_CHECKS = ("rasd.sdc.accusation", "rasd.sdc.engines", "rasd.sdc.engines_cupy", "rasd.sdc.faults",
              "rasd.sdc.gemm", "rasd.sdc.memory", "rasd.sdc.numerics", "rasd.sdc.peers", "rasd.sdc.runner",
              "rasd.sdc.validation", "threadpoolctl", "cupy")
SCHEDULER_CLIENTS = ("rasd.scheduler.kube", "rasd.scheduler.slurm", "kubernetes", "grpc")
# The exporter renders with its own families: prometheus_client (its whole client loads on any
# import) is for tests and registries only; its server reads requests without http.server, whose
# http.client loads OpenSSL and the email parser. Its gzip bodies are zlib's, without the gzip module.
EXPORTER_EXTRAS = ("prometheus_client", "http.server", "http.client", "ssl", "gzip")
# its own CPU, memory and threads are read from the kernel directly
SELF_STATS = ("psutil",)
# Where the power kernel is not built the live analysis runs in NumPy: np.median and np.percentile
# load NumPy's masked arrays (about 1 MB), so it takes its order statistics from one partition
# (rasd.power.stats); nor does it draw random numbers or fit polynomials with NumPy's packages
NUMPY_EXTRAS = ("numpy.ma", "numpy.random", "numpy.polynomial")
# rasd run loads its own commands only
OTHER_COMMANDS = ("rasd.cli.ladder", "rasd.cli.sdc", "rasd.cli.power", "rasd.cli.power_report", "rasd.cli.scheduler",
                  "rasd.ladder.replay", "rasd.ladder.replay_json", "rasd.ladder.replay_kmsg", "rasd.ladder.replay_input")


def _env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_DUMP)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RASD_TEST_MODULES_OUT"] = str(tmp / "modules.json")
    env.update({"XDG_STATE_HOME": str(tmp / "state"), "XDG_RUNTIME_DIR": str(tmp / "run")})
    return env


def _start(env: dict[str, str], backend: str, tmp_path: Path) -> tuple[subprocess.Popen, IO[str], int, Callable[[], float]]:
    """`rasd run` on ``backend``, logging to tmp_path/rasd.log; and how many polls it has made."""
    port = free_port()
    log = open(tmp_path / "rasd.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "rasd", "run", "--backend", backend, "--listen",
                             f"127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def polls() -> float:
        m = re.search(r"^rasd_health_polls_total (\S+)$", http_get(f"http://127.0.0.1:{port}/metrics"), re.M)
        return float(m.group(1)) if m else 0.0

    return proc, log, port, polls


def _stop(proc: subprocess.Popen, log: IO[str]) -> None:
    """SIGTERM the daemon and wait for it (killed past 30 s), then close its log."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def _loaded(tmp: Path, name: str = "modules.json") -> set[str]:
    return set(json.loads((tmp / name).read_text()))


def _present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_help_loads_no_numpy_and_no_area_code(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "rasd", "--help"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "run" in r.stdout and "replay" in r.stdout
    mods = _loaded(tmp_path)
    assert "click" in mods  # the dump saw the CLI
    assert _present(mods, ("numpy", "pynvml", "psutil", "prometheus_client", "rasd.power.analysis",
                           "rasd.sdc.service", "rasd.daemon")) == []


def test_a_daemon_at_defaults_loads_no_sdc_checks_scheduler_client_or_prometheus_client(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc, log, port, polls = _start(env, "fake", tmp_path)
    try:

        def analysed() -> bool:  # the power analysis has taken a spectrum: its band energy is exported
            return "rasd_power_band_energy_ratio{" in http_get(f"http://127.0.0.1:{port}/metrics")

        # a few main-loop passes: the first periodic SDC check falls due at the first one
        wait_for(lambda: proc.poll() is None and polls() >= 4 and analysed(), timeout=120)
        # the commands that read the daemon's state (through its socket, or its store) need only
        # the data shapes: no NumPy
        for cmd in ("status", "history", "ladder"):
            out = dict(env, RASD_TEST_MODULES_OUT=str(tmp_path / f"{cmd}.json"))
            r = subprocess.run([sys.executable, "-m", "rasd", cmd, "--backend", "fake", "--json"], env=out,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (cmd, r.stderr)
            assert _present(_loaded(tmp_path, f"{cmd}.json"), ("numpy", "rasd.power.analysis")) == [], cmd
    finally:
        _stop(proc, log)
    assert proc.returncode == 0, (tmp_path / "rasd.log").read_text()[-2000:]
    mods = _loaded(tmp_path)
    assert "rasd.daemon" in mods and "rasd.sdc.service" in mods  # the dump saw a whole daemon
    assert _present(mods, SDC_CHECKS) == []
    assert _present(mods, SCHEDULER_CLIENTS) == []
    assert _present(mods, EXPORTER_EXTRAS) == []
    assert _present(mods, OTHER_COMMANDS) == []
    assert _present(mods, SELF_STATS) == []
    from rasd.power import kernel

    if kernel.active is not None:  # the install built the analysis in C: no NumPy at all
        assert "rasd.power.kernel" in mods and _present(mods, ("numpy", "rasd.power.analysis")) == []
    else:
        assert "numpy.fft" in mods  # the analysis ran
        assert _present(mods, NUMPY_EXTRAS) == []


# a daemon without a configuration file reads no TOML; the fake node's scenarios are TOML, so
# this is seen on NVIDIA's mock NVML, where the fake's code has no business either
CONFIG_FILE_ONLY = ("tomllib", "tomli")
FAKE_NODE = ("rasd.backends.fake",)


def test_a_daemon_on_the_mock_nvml_without_a_config_file_loads_no_toml_parser(tmp_path: Path) -> None:
    from tests.contract.mocknvml import config, env_for, mock_dir

    env = _env(tmp_path)
    mock = env_for(mock_dir() / "lib", config("h100"))
    env.update(LD_LIBRARY_PATH=mock["LD_LIBRARY_PATH"], MOCK_NVML_CONFIG=mock["MOCK_NVML_CONFIG"])
    # the NVML backend's state and socket default to the system's: keep them to this test
    env.update({"STATE_DIRECTORY": str(tmp_path / "state"), "RUNTIME_DIRECTORY": str(tmp_path / "run")})
    proc, log, port, polls = _start(env, "nvml", tmp_path)
    try:

        wait_for(lambda: proc.poll() is None and polls() >= 3, timeout=120)
    finally:
        _stop(proc, log)
    assert proc.returncode == 0, (tmp_path / "rasd.log").read_text()[-2000:]
    mods = _loaded(tmp_path)
    assert "rasd.daemon" in mods and "pynvml" in mods  # the dump saw a whole daemon on NVML
    assert _present(mods, CONFIG_FILE_ONLY) == []
    assert _present(mods, FAKE_NODE) == []
    assert _present(mods, SDC_CHECKS + SCHEDULER_CLIENTS + EXPORTER_EXTRAS + OTHER_COMMANDS + SELF_STATS) == []


def test_the_daemon_on_nvml_imports_no_pathlib() -> None:
    """pathlib brings urllib.parse and ipaddress: 0.7 MB of a daemon's memory, for paths that
    os.path joins as well. Imported without the interpreter's start-up hooks (``-S``: an editable
    install's finder loads pathlib), with the installed packages on the path."""
    import site

    code = ("import sys\n"
            "import rasd.cli.telemetry, rasd.daemon, rasd.backends.nvml.adapter, rasd.backends.nvml.powerloop\n"
            "import exporters.http, rasd.ladder.service, rasd.power.service, rasd.scheduler.build, rasd.sdc.service\n"
            "print(' '.join(m for m in ('pathlib', 'urllib.parse', 'ipaddress') if m in sys.modules))")
    path = os.pathsep.join([str(REPO), *site.getsitepackages(), site.getusersitepackages()])
    r = subprocess.run([sys.executable, "-S", "-c", code], env=dict(os.environ, PYTHONPATH=path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == []
