"""Where the daemon's memory goes: what each import costs, the daemon's RSS at each stage of its
life on the fake node and on NVIDIA's mock NVML, and what ``rasd --help`` loads.

Prints figures (targets beside them where there is one) and asserts nothing. Every figure is
the median of ``--runs`` fresh processes (the fake's 8 and 72 GPUs and the mock's 8 interleaved;
the mock's column is left out where ``<repo>/../shared/nvml-mock`` is absent); RSS is the kernel's
(``/proc/self/smaps_rollup``), so it counts the shared libraries' pages each process touched as
well as its heap. Stages of a daemon (one child process each run, built as ``rasd run`` builds
it): the CLI and the daemon's modules imported; the daemon built (backend, services, store:
with the power analysis in C where the install built it, else in NumPy, which loads here); ``--seconds`` of running (health polls,
20 Hz power, analysis); then three scrapes, plain and gzip (the rendered exposition is cached);
then ``--more-scrapes`` more, one a second, each of a new snapshot (what renders keep must not
pile up from one to the next).

Everything runs as an operator's install runs: under the Python of a virtual environment that
rasd is installed in by ``pip install`` of this checkout (tests/bench/rasd_venv.py: created under
the cache directory, reinstalled when the package's sources change; ``--rasd-venv PATH`` reuses
one as it is), without ``PYTHONPATH``, from a directory outside the checkout. ``--interpreter
checkout`` measures the checkout under the interpreter running the benchmark instead, as tests
and development run it. The interpreters' start is measured for both: a development machine's
Python may run start-up hooks from its site-packages (``.pth`` files: editable installs,
certificate injectors, ``-S`` goes without them) that a virtual environment does not.

    python tests/bench/bench_memory.py [--runs 3] [--seconds 10] [--more-scrapes 40]
                                       [--interpreter venv|checkout]
                                       [--rasd-venv PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import results  # noqa: E402
from tests.bench.rasd_venv import rasd_venv  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MOCK = REPO.parent / "shared" / "nvml-mock"


@dataclass(frozen=True)
class Python:
    """The interpreter the figures are measured under, where rasd comes from, and from where."""

    exe: str
    env: dict[str, str]
    cwd: str
    label: str

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return subprocess.run([self.exe, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, **kw)

_RSS = """
def rss_kb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Rss:"):
            return int(line.split()[1])
"""

# One import in a fresh interpreter: RSS before and after, in kB.
IMPORT = _RSS + """
import sys
before = rss_kb()
for name in sys.argv[1:]:
    __import__(name)
print(before, rss_kb())
"""

DAEMON = _RSS + """
import json, os, socket, sys, tempfile, threading, time
from dataclasses import replace
gpus, seconds, backend, more = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = {"start": rss_kb()}
import rasd.cli  # what `rasd run` loads before its command runs
from exporters.prometheus import serve
from rasd import config
from rasd.backends import open_backend
from rasd.daemon import Daemon
out["imports"] = rss_kb()
tmp = tempfile.mkdtemp()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
cfg = config.Config.default()
cfg = replace(cfg, daemon=replace(cfg.daemon, listen=f"127.0.0.1:{port}", state_path=tmp + "/state.db",
                                  control_socket=tmp + "/control.sock"))
d = Daemon(cfg, open_backend("fake", gpus=gpus) if backend == "fake" else open_backend(backend),
           serve_metrics=serve)
out["built"] = rss_kb()

def scrape(gz):
    # not create_connection: its name lookup loads the IDNA codec (unicodedata) into the daemon's process
    c = socket.socket()
    c.connect(("127.0.0.1", port))
    c.sendall(b"GET /metrics HTTP/1.0\\r\\n" + (b"Accept-Encoding: gzip\\r\\n" if gz else b"") + b"\\r\\n")
    while c.recv(1 << 16):
        pass
    c.close()

def later():
    try:
        time.sleep(seconds)
        out["running"] = rss_kb()
        for _ in range(3):
            scrape(False)
            scrape(True)
            time.sleep(1.1)  # a new snapshot each time: rendered again
        out["scraped"] = rss_kb()
        # then a scrape a second, each of a new snapshot: what the render keeps from one to the
        # next must not pile up (numbers' spellings, prefixes), nor the power readings' buffers
        for i in range(more):
            scrape(i % 2 == 1)
            time.sleep(1.05)
        out["longer"] = rss_kb()
        # of it, the pages of mapped files (shared libraries, NumPy's among them) and of NumPy's own
        libs = numpy_libs = 0
        path = ""
        for line in open("/proc/self/smaps"):
            f = line.split()
            if "-" in f[0] and len(f) >= 5 and ":" in f[3]:
                path = f[5] if len(f) > 5 else ""
            elif f[0] == "Rss:" and path.startswith("/"):
                libs += int(f[1])
                numpy_libs += int(f[1]) if "/numpy" in path else 0
        out["libraries"], out["numpy_libraries"] = libs, numpy_libs
        out["threads"] = len(os.listdir("/proc/self/task"))
        out["modules"] = len(sys.modules)
        out["numpy"] = "numpy" in sys.modules
    finally:
        d.request_stop()

d.start()
threading.Thread(target=later, daemon=True).start()
d.run_forever()
print(json.dumps(out))
"""

IMPORTS = [
    ("numpy", ("numpy",)),
    ("pynvml (nvidia-ml-py)", ("pynvml",)),
    ("psutil", ("psutil",)),
    ("click", ("click",)),
    ("prometheus_client", ("prometheus_client",)),
    ("http.server (with http.client: OpenSSL, email)", ("http.server",)),
    ("importlib.metadata (with email)", ("importlib.metadata",)),
    ("rasd.cli, rasd.daemon and exporters with what they import (pynvml, click, sqlite3, ...), "
     "NumPy aside", ("numpy", "rasd.cli", "rasd.daemon", "exporters.prometheus")),
]


def mb(kb: float) -> float:
    return kb / 1024


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    return f"{min(xs):.1f}-{max(xs):.1f}"


def interpreter(py: Python, flags: list[str]) -> float:
    r = py.run([*flags, "-c", _RSS + "print(rss_kb())"], check=True)
    return float(r.stdout)


def import_cost(py: Python, names: tuple[str, ...]) -> float:
    """kB the imports add in a fresh interpreter."""
    r = py.run(["-c", IMPORT, *names], check=True)
    before, after = map(float, r.stdout.split())
    return after - before


@dataclass(frozen=True)
class Setup:
    """A node the daemon runs on: rasd's fake with ``gpus`` GPUs, or NVIDIA's mock NVML (its H100
    profile: 8 GPUs) through the real pynvml, as ``rasd run --backend nvml`` opens it."""

    label: str
    gpus: int
    backend: str  # "fake" or "nvml"

    def env(self) -> dict[str, str]:
        if self.backend == "fake":
            return {}
        return {"LD_LIBRARY_PATH": str(MOCK / "lib"),
                "MOCK_NVML_CONFIG": str(MOCK / "configs" / "mock-nvml-config-h100.yaml")}


SETUPS = (Setup("8 GPUs", 8, "fake"), Setup("72 GPUs", 72, "fake"),
          Setup("8 GPUs, NVIDIA's mock NVML", 8, "nvml"))


def daemon_run(py: Python, setup: Setup, seconds: float, more: int) -> dict[str, float]:
    r = subprocess.run([py.exe, "-c", DAEMON, str(setup.gpus), str(seconds), setup.backend, str(more)],
                       env=dict(py.env, **setup.env()), cwd=py.cwd, capture_output=True, text=True,
                       timeout=seconds + 1.2 * more + 180)
    if r.returncode != 0:
        raise SystemExit(f"daemon run on {setup.label} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def help_run(py: Python) -> tuple[float, float, bool]:
    """(wall seconds, peak RSS in kB, NumPy loaded) of ``rasd --help``."""
    probe = ("import atexit, resource, sys\n"
             "atexit.register(lambda: sys.stderr.write(f\"\\nPEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} "
             "{int('numpy' in sys.modules)}\\n\"))\n"
             "sys.argv = ['rasd', '--help']\n"
             "import runpy\n"
             "runpy.run_module('rasd', run_name='__main__')\n")
    t0 = time.perf_counter()
    r = py.run(["-c", probe])
    wall = time.perf_counter() - t0
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("PEAK ")][-1].split()
    return wall, float(line[1]), line[2] == "1"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per figure (median)")
    ap.add_argument("--seconds", type=float, default=10.0, help="daemon running time before the scrapes")
    ap.add_argument("--more-scrapes", type=int, default=40,
                    help="scrapes after the first three, one a second, each of a new snapshot")
    ap.add_argument("--interpreter", choices=["venv", "checkout"], default="venv",
                    help="venv: rasd installed in its own virtual environment, as an operator installs it "
                         "(default); checkout: this checkout under the interpreter running the benchmark")
    ap.add_argument("--rasd-venv", type=Path, default=None, help="reuse this environment with rasd installed, as it is")
    results.add_arguments(ap)
    args = ap.parse_args()
    rec = results.Recorder("memory", args)
    outside = tempfile.mkdtemp(prefix="rasd-mem-")  # no checkout on the path through the working directory
    here = Python(sys.executable, dict(os.environ, PYTHONPATH=str(REPO)), outside,
                  f"the checkout under {sys.executable}")
    if args.interpreter == "venv":
        rv = rasd_venv(args.rasd_venv, reuse=args.rasd_venv is not None)
        py = Python(str(rv.python), rv.env(), outside, rv.describe())
    else:
        py = here
    print(rec.machine())
    print(f"measured: {py.label}")

    starts = [interpreter(py, []) for _ in range(args.runs)]
    host = [interpreter(here, []) for _ in range(args.runs)]
    bare = [interpreter(here, ["-S"]) for _ in range(args.runs)]
    where = "rasd's virtual environment" if py is not here else "this machine's Python, start-up hooks included"
    rec.add("memory.interpreter", f"Python at start ({where})", mb(med(starts)), "MB",
            text=f"{mb(med(starts)):.1f} MB (this machine's Python: {mb(med(host)):.1f} MB with its site-packages' "
                 f"start-up hooks, {mb(med(bare)):.1f} MB without them, -S)",
            table="memory_imports", notes={"host_mb": round(mb(med(host)), 2), "without_site_mb": round(mb(med(bare)), 2)})
    for i, (label, names) in enumerate(IMPORTS):
        costs = [import_cost(py, names) for _ in range(args.runs)]
        if names[0] == "numpy" and len(names) > 1:
            np_cost = med([import_cost(py, ("numpy",)) for _ in range(args.runs)])
            costs = [c - np_cost for c in costs]
        v = mb(med(costs))
        rec.add(f"memory.import.{i}", f"import {label}", v, "MB", text=f"+{v:.1f} MB", table="memory_imports")
    for f in rec.figures.values():
        print(f.line())

    stages = [("imports", "the CLI and the daemon's modules imported"),
              ("built", "daemon built (backend, services, store, power analysis)"),
              ("running", "running, before any scrape"),
              ("scraped", "after three scrapes, plain and gzip"),
              ("longer", f"after {args.more_scrapes} more scrapes, one a second (a render each)"),
              ("libraries", "of which mapped files' pages (shared libraries: the interpreter, NVML, SQLite, ...)")]
    setups = [st for st in SETUPS if st.backend == "fake" or (MOCK / "lib" / "libnvidia-ml.so.1").is_file()]
    if len(setups) < len(SETUPS):
        print(f"NVIDIA's mock NVML is not at {MOCK}: its column is left out")
    runs: dict[Setup, list[dict[str, float]]] = {st: [] for st in setups}
    for _ in range(args.runs):
        for st in setups:  # interleaved, so the machine's load falls on all alike
            runs[st].append(daemon_run(py, st, args.seconds, args.more_scrapes))
    for st, rs in runs.items():
        col = st.label
        gpus = st.gpus if st.backend == "fake" else f"mock{st.gpus}"
        for key, label in stages:
            xs = [mb(r[key]) for r in rs]
            rec.add(f"memory.daemon.{key}.{gpus}", f"daemon RSS: {label}", med(xs), "MB",
                    text=f"{med(xs):.1f} MB (runs {spread(xs)})", table="memory", column=col)
        threads = [r["threads"] for r in rs]
        rec.add(f"memory.daemon.threads.{gpus}", "threads", med(threads), "", text=f"{med(threads):.0f}",
                table="memory", column=col)
        mods = [r["modules"] for r in rs]
        rec.add(f"memory.daemon.modules.{gpus}", "modules loaded", med(mods), "", text=f"{med(mods):.0f}",
                table="memory", column=col)
        numpy = any(r["numpy"] for r in rs)
        rec.add(f"memory.daemon.numpy.{gpus}", "the daemon loads NumPy (its libraries' pages)", float(numpy), "",
                met=not numpy, target=results.stated("no"), table="memory", column=col,
                text=f"yes ({med([mb(r['numpy_libraries']) for r in rs]):.1f} MB)" if numpy else "no")

    helps = [help_run(py) for _ in range(max(args.runs, 5))]
    wall = med([h[0] for h in helps])
    peak = mb(med([h[1] for h in helps]))
    numpy = any(h[2] for h in helps)
    rec.add("memory.help.wall", "`rasd --help`: wall time, peak RSS", wall, "s",
            text=f"{wall:.2f} s, {peak:.0f} MB", table="memory_help")
    rec.add("memory.help.numpy", "`rasd --help` loads NumPy", float(numpy), "", met=not numpy,
            target=results.stated("no"), text="yes" if numpy else "no", table="memory_help")
    for f in list(rec.figures.values())[len(IMPORTS) + 1:]:
        print(f.line())
    rec.save()


if __name__ == "__main__":
    main()
