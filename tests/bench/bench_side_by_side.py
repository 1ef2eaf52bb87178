"""Whole daemon side by side with nvitop-exporter: CPU, memory, threads, power-update capture.

Prints figures with their targets; asserts nothing. Each setup (NVIDIA's mock NVML with 8 GPUs,
rasd's fake node with 8 and 72 GPUs; ``nvml``, not among the defaults: the real GPUs of this node)
runs rasd at defaults and nvitop-exporter at its defaults
(1 s updates) in turn, A B A B, one process at a time on an otherwise unchanged machine. Per run:
CPU time of the process (its CPU-time clock, clock_getcpuclockid(3), to the nanosecond: the
kernel's user and system times come in 10 ms ticks, too coarse for a daemon using a few tenths of
a percent of a core) over a fixed window after a warm-up, RSS and
threads at the end, one scrape every 15 s (a default Prometheus) of each. For rasd also the
share of NVML's distinct instant-power updates it captured: on the fake, NVML refreshes field 186
every 100 ms per GPU, so the truth is 10 x GPUs x seconds; NVIDIA's mock stamps every read as new
(there rasd falls back to value changes, and the figure given is its distinct-update rate).

For rasd also where its CPU goes: each thread's CPU time over the window (schedstat), grouped by the
thread's name as the kernel shows it (rasd names its threads; pool workers' numbers dropped), the
main thread (the tick) apart, and what threads that ended within the window used as "ended".

Every figure is printed with its target and merged into a results file (``--json PATH``;
tests/bench/results.py), from which README's tables are generated. The machine's noise is stated
as the spread of the pair ratios and the load average over the runs.

Each runs from its own virtual environment under the cache directory, as an operator installs
it: nvitop-exporter from PyPI (created on first use; ``--nvitop-venv`` to reuse another), rasd
by ``pip install`` of this checkout (not editable; reinstalled when the package's sources change,
committed or not; ``--rasd-venv PATH`` to reuse one as it is; tests/bench/rasd_venv.py). Neither
runs under the interpreter the benchmark runs under, whose site-packages may hold start-up hooks
(``.pth`` files) a virtual environment does not load, and rasd never imports from the checkout
(no ``PYTHONPATH``): ``rasd run`` from the environment on the mock, the helper
``sidebyside_fake.py`` under the environment's Python on the fake. The peer on the fake imports
the fake node's code from the checkout (it is the node, not the exporter). NVIDIA's mock NVML is
looked for at ``<repo>/../shared/nvml-mock``; its setups are skipped, saying so, where it is absent.

    python tests/bench/bench_side_by_side.py [--seconds 30] [--pairs 3] [--setups mock8,fake8,fake72,nvml]
                                             [--rasd-venv PATH] [--nvitop-venv PATH]
                                             [--json tests/bench/results/side_by_side.json]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench import results  # noqa: E402
from tests.bench.rasd_venv import RasdVenv, cache_dir, rasd_venv  # noqa: E402

MOCK = REPO.parent / "shared" / "nvml-mock"
HELPER = Path(__file__).with_name("sidebyside_fake.py")
NVITOP_EXPORTER = "nvitop-exporter==1.7.2"
NVML_REFRESH_HZ = 10.0  # the fake's field-186 refresh (rasd.backends powersim)
SAMPLER_HZ = 12.5  # rasd's instant-power reads a GPU a second at defaults
SCRAPE_EVERY_SECONDS = 15.0


CPU_RATIO_TARGET = 1.0  # rasd's CPU over the peer's
RSS_RATIO_TARGET = 1.25
CAPTURE_TARGET = 99.0  # % of NVML's distinct instant-power updates
MAIN = "main (tick)"
# what each of the daemon's threads does (names as rasd gives them; pool workers' numbers dropped)
DOES = {
    "rasd-power": "instant-power sampler",
    "rasd-health": "health pollers",
    "rasd-watchdog": "hung-call watchdog",
    "rasd-xid": "kernel log reader",
    "rasd-http": "scrape server and its workers",
    "rasd-control": "control socket and its workers",
    "rasd-jobs": "job attribution",
    "rasd-scheduler": "scheduler drains",
    "rasd-action": "remedy commands",
}
ENDED = "other (threads that ended)"
NATIVE = "unnamed (native: the NVML library's, BLAS's)"


@dataclass
class Run:
    cpu_percent: float  # of one core
    rss_mb: float
    threads: int
    load: float  # the machine's 1-minute load average at the end of the window
    wakeups: float = 0.0  # a second: all threads' voluntary context switches over the window
    capture: float | None = None  # rasd only: captured / NVML's distinct updates (fake)
    rate_hz: float | None = None  # rasd only: distinct updates per GPU per second
    by_thread: dict[str, float] = field(default_factory=dict)  # rasd only: % of one core per thread group


_LIBC = ctypes.CDLL(None, use_errno=True)


def cpu_clock(pid: int) -> int | None:
    """The process's CPU-time clock (clock_getcpuclockid(3)): the CPU all its threads used, those
    that ended included, to the nanosecond, where the kernel's user and system times (psutil's)
    come in 10 ms ticks, 0.03% of a core over a 30 s window, a tenth of a light daemon's figure.
    None where the C library does not give it."""
    cid = ctypes.c_int()
    try:
        return cid.value if _LIBC.clock_getcpuclockid(pid, ctypes.byref(cid)) == 0 else None
    except AttributeError:
        return None


def process_cpu(ps: psutil.Process, clock: int | None) -> float:
    """CPU seconds the process has used, all threads (to the tick where ``clock`` is None)."""
    return time.clock_gettime(clock) if clock is not None else sum(ps.cpu_times()[:2])


def thread_cpu(ps: psutil.Process) -> dict[int, tuple[str, float]]:
    """Each thread's name (as the kernel has it) and CPU seconds: the time it ran, from
    /proc/PID/task/TID/schedstat in nanoseconds (user and system times come in 10 ms ticks)."""
    out = {}
    for t in ps.threads():
        task = f"/proc/{ps.pid}/task/{t.id}"
        try:
            name = Path(f"{task}/comm").read_text().strip()
            ran = int(Path(f"{task}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # ended between the listing and the read
        out[t.id] = (name, ran)
    return out


def wakeups(pid: int) -> int:
    """Voluntary context switches of all the process's threads so far (proc(5): each is a wait
    that ended, the wake-up a sleeping thread costs the CPU)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue  # ended between the listing and the read
    return total


WAKE_PROBE = """
import threading, time
def loop(n, period):
    for _ in range(n):
        time.sleep(period)
t = threading.Thread(target=loop, args=(%d, %r))
c0 = time.process_time()
t.start()
t.join()
print((time.process_time() - c0) / %d)
"""


def wake_cost(python: Path, hz: float = 12.5, seconds: float = 8.0) -> float:
    """CPU seconds one wake-up of a sleeping Python thread costs on this machine: a process whose
    only work is a thread that sleeps ``hz`` times a second, as rasd's power loop does."""
    n = max(1, round(hz * seconds))
    out = subprocess.run([str(python), "-c", WAKE_PROBE % (n, 1.0 / hz, n)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def group(tid: int, pid: int, name: str, process_name: str) -> str:
    """Pool workers and per-loop threads by their common name (``rasd-http_3`` -> ``rasd-http``)."""
    if tid == pid:
        return MAIN
    if name == process_name:
        return NATIVE  # threads Python did not start (the NVML library's, BLAS's) keep the process's name
    return re.sub(r"[_-]?\d+$", "", name)


def by_thread(ps: psutil.Process, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              total_cpu: float, seconds: float) -> dict[str, float]:
    """% of one core per thread group over the window; CPU the process used that no live thread
    accounts for (threads that ended) as ``ENDED``."""
    process_name = ps.name()
    out: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        g = group(tid, ps.pid, name, process_name)
        out[g] = out.get(g, 0.0) + 100 * (cpu - before.get(tid, (name, 0.0))[1]) / seconds
    out[ENDED] = max(0.0, 100 * total_cpu / seconds - sum(out.values()))
    return out


def nvitop_venv(path: Path | None) -> Path:
    venv = path or cache_dir() / "nvitop-venv"
    py = venv / "bin" / "python"
    if not (venv / "bin" / "nvitop-exporter").exists():
        print(f"installing {NVITOP_EXPORTER} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", NVITOP_EXPORTER], check=True)
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def wait_up(port: int, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving /metrics")
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("did not serve /metrics in time")


def measure(cmd: list[str], env: dict[str, str], port: int, gpus: int, warmup: float, seconds: float,
            is_rasd: bool, fake: bool, log: Path) -> Run:
    # not the checkout: a module run from the working directory would shadow the installed one
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=str(log.parent))
    try:
        wait_up(port, proc)
        time.sleep(warmup)  # imports, first polls and the analysis window filling are not steady state
        ps = psutil.Process(proc.pid)
        text = scrape(port)
        th0 = thread_cpu(ps) if is_rasd else {}
        clock = cpu_clock(proc.pid)
        c0, t0, v0 = process_cpu(ps, clock), time.monotonic(), wakeups(proc.pid)
        # rasd's counters are as of its last snapshot: time the window by the snapshots' stamps
        s0 = metric(text, "rasd_power_samples_total") if is_rasd else 0.0
        w0 = metric(text, "rasd_snapshot_timestamp_seconds") if is_rasd else 0.0
        end = t0 + seconds
        while True:
            time.sleep(min(SCRAPE_EVERY_SECONDS, max(0.0, end - time.monotonic())))
            text = scrape(port)
            if time.monotonic() >= end:
                break
        c1, t1, v1 = process_cpu(ps, clock), time.monotonic(), wakeups(proc.pid)
        th1 = thread_cpu(ps) if is_rasd else {}
        run = Run(100 * (c1 - c0) / (t1 - t0), ps.memory_info().rss / 2**20, ps.num_threads(), os.getloadavg()[0],
                  wakeups=(v1 - v0) / (t1 - t0))
        if is_rasd:
            run.by_thread = by_thread(ps, th0, th1, c1 - c0, t1 - t0)
            got = metric(text, "rasd_power_samples_total") - s0
            span = metric(text, "rasd_snapshot_timestamp_seconds") - w0
            run.rate_hz = got / gpus / span
            if fake:
                run.capture = got / (NVML_REFRESH_HZ * gpus * span)
        return run
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_model(cmd: list[str], env: dict[str, str], warmup: float, seconds: float, log: Path) -> float:
    """CPU (% of one core) of the fake's power model alone over the same window as the daemons'."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=str(log.parent))
    try:
        time.sleep(2.0 + warmup)  # its imports, then the same warm-up as the daemons
        if proc.poll() is not None:
            raise RuntimeError(f"the fake's model alone exited with {proc.returncode}; see {log}")
        ps = psutil.Process(proc.pid)
        clock = cpu_clock(proc.pid)
        c0, t0 = process_cpu(ps, clock), time.monotonic()
        time.sleep(seconds)
        c1, t1 = process_cpu(ps, clock), time.monotonic()
        return 100 * (c1 - c0) / (t1 - t0)
    finally:
        proc.kill()
        proc.wait()


def mock_config(tmp: Path, gpus: int) -> Path | None:
    """The stock H100 profile with power that varies per read (as a loaded GPU's does); None when
    the mock cannot show ``gpus`` devices (it stops at 8)."""
    src = (MOCK / "configs" / "mock-nvml-config-h100.yaml").read_text()
    dyn = "device_defaults:\n  dynamic_metrics:\n    power:\n      base_mw: 500000\n      variance_mw: 50000\n"
    text = src.replace("device_defaults:\n", dyn, 1)
    if gpus > 8:
        return None  # MaxDevices = 8 in the mock (its README, "Limitations")
    path = tmp / f"mock-h100-{gpus}.yaml"
    path.write_text(text)
    return path


Command = Callable[[int], list[str]]


@dataclass(frozen=True)
class Setup:
    name: str  # as in --setups: mock8, fake72
    label: str
    gpus: int
    fake: bool
    env: dict[str, str]  # rasd's: no PYTHONPATH, rasd comes from its environment
    peer_env: dict[str, str]
    rasd: Command  # the command, given the port
    nvitop: Command
    model: list[str] | None = None  # the fake's power model alone (sidebyside_fake.py model)


def setups(names: list[str], tmp: Path, venv: Path, rv: RasdVenv) -> list[Setup]:
    """Every runnable setup of ``names``; those that cannot run here are skipped, saying why."""
    base = rv.env()
    out = []
    for name in names:
        if name == "nvml":
            gpus = real_gpus()
            if not gpus:
                print("nvml: skipped, no real NVIDIA GPU and driver here")
                continue
            out.append(Setup(
                name, f"a real node, {gpus} GPU{'s' if gpus > 1 else ''} ({real_name()})", gpus, False, base, base,
                lambda port: [str(rv.rasd), "run", "--backend", "nvml", "--log-level", "warning",
                              "--listen", f"127.0.0.1:{port}"],
                lambda port: [str(venv / "bin" / "nvitop-exporter"), "--bind-address", "127.0.0.1", "--port", str(port)],
            ))
            continue
        m = re.fullmatch(r"(mock|fake)(\d+)", name)
        if not m:
            raise SystemExit(f"--setups: {name!r} is not nvml, mockN or fakeN (e.g. mock8,fake8,fake72)")
        kind, gpus = m.group(1), int(m.group(2))
        if kind == "mock":
            if not (MOCK / "lib").is_dir():
                print(f"{name}: skipped, NVIDIA's mock NVML is not at {MOCK}")
                continue
            cfg = mock_config(tmp, gpus)
            if cfg is None:
                print(f"{name}: skipped, the mock NVML simulates at most 8 GPUs (MaxDevices = 8)")
                continue
            env = dict(base, LD_LIBRARY_PATH=str(MOCK / "lib"), MOCK_NVML_CONFIG=str(cfg))
            out.append(Setup(
                name, f"NVIDIA's mock NVML, {gpus} H100s", gpus, False, env, env,
                lambda port: [str(rv.rasd), "run", "--backend", "nvml", "--log-level", "warning",
                              "--listen", f"127.0.0.1:{port}"],
                lambda port: [str(venv / "bin" / "nvitop-exporter"), "--bind-address", "127.0.0.1", "--port", str(port)],
            ))
        else:
            out.append(Setup(
                name, f"rasd's fake, {gpus} GPUs", gpus, True, base, dict(base, PYTHONPATH=str(REPO)),
                lambda port, n=gpus: [str(rv.python), str(HELPER), "rasd", "--gpus", str(n), "--port", str(port)],
                lambda port, n=gpus: [str(venv / "bin" / "python"), str(HELPER), "nvitop", "--gpus", str(n),
                                      "--port", str(port)],
                [str(rv.python), str(HELPER), "model", "--gpus", str(gpus), "--hz", str(SAMPLER_HZ)],
            ))
    return out


def real_gpus() -> int:
    """GPUs the real NVML reports (0 where there is no driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver, no device: nothing to measure
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def real_name() -> str:
    import pynvml

    pynvml.nvmlInit()
    try:
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        driver = pynvml.nvmlSystemGetDriverVersion()
        return f"{name.decode() if isinstance(name, bytes) else name}, driver {driver.decode() if isinstance(driver, bytes) else driver}"
    finally:
        pynvml.nvmlShutdown()


def spread(xs: list[float], digits: int = 2) -> str:
    return f"{min(xs):.{digits}f}-{max(xs):.{digits}f}" if xs else "n/a"


def pairs_text(ratios: list[float]) -> str:
    """The pair ratios as the noise: their range, or the one ratio there is."""
    if len(ratios) == 1:
        return f"1 pair: {ratios[0]:.2f}, no spread to judge the noise by"
    return f"{len(ratios)} pairs {spread(ratios)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after /metrics answers")
    ap.add_argument("--pairs", type=int, default=3, help="A B pairs per setup")
    ap.add_argument("--setups", default="mock8,fake8,fake72")
    ap.add_argument("--nvitop-venv", type=Path, default=None, help="reuse this environment with nvitop-exporter")
    ap.add_argument("--rasd-venv", type=Path, default=None,
                    help="reuse this environment with rasd installed, as it is (default: one under the "
                         "cache directory, installed from this checkout and reinstalled when it changes)")
    results.add_arguments(ap)
    args = ap.parse_args()
    if args.pairs < 1 or args.seconds <= 0:
        raise SystemExit("--pairs must be at least 1 and --seconds above 0 (e.g. --pairs 3 --seconds 30)")
    rec = results.Recorder("side_by_side", args)
    venv = nvitop_venv(args.nvitop_venv)
    rv = rasd_venv(args.rasd_venv, reuse=args.rasd_venv is not None)
    print(rec.machine())
    print(f"runs: {args.pairs} interleaved pairs (rasd, nvitop-exporter) per setup, {args.seconds:.0f} s windows "
          f"after {args.warmup:.0f} s warm-up, a scrape every {SCRAPE_EVERY_SECONDS:.0f} s; "
          f"peer {NVITOP_EXPORTER} at its defaults")
    print(f"each from its own virtual environment: {rv.describe()}; nvitop-exporter from {venv}")
    with tempfile.TemporaryDirectory(prefix="rasd-sbs-") as t:
        tmp = Path(t)
        threads_by_gpus: dict[int, tuple[str, int]] = {}
        for st in setups(args.setups.split(","), tmp, venv, rv):
            a: list[Run] = []
            b: list[Run] = []
            m: list[float] = []  # the fake's power model alone, in turn with the two
            w: list[float] = []  # CPU seconds of a thread's wake-up here, in turn with the two
            for pair in range(args.pairs):
                state = tmp / f"state-{pair}"
                shutil.rmtree(state, ignore_errors=True)
                # the daemon's state and socket in the run's own directory (the fake's and NVML's
                # defaults alike): never a node's /run/rasd or /var/lib/rasd
                renv = dict(st.env, XDG_STATE_HOME=str(state / "state"), XDG_RUNTIME_DIR=str(state / "run"),
                            STATE_DIRECTORY=str(state / "var-lib-rasd"), RUNTIME_DIRECTORY=str(state / "run-rasd"))
                port = free_port()
                a.append(measure(st.rasd(port), renv, port, st.gpus, args.warmup, args.seconds, True, st.fake,
                                 tmp / "rasd.log"))
                port = free_port()
                b.append(measure(st.nvitop(port), st.peer_env, port, st.gpus, args.warmup, args.seconds, False, st.fake,
                                 tmp / "nvitop.log"))
                if st.model is not None:
                    m.append(measure_model(st.model, st.env, args.warmup, args.seconds, tmp / "model.log"))
                w.append(wake_cost(rv.python))
                print(f"  {st.label} pair {pair + 1}: rasd {a[-1].cpu_percent:.2f}% {a[-1].rss_mb:.0f} MB "
                      f"{a[-1].threads} threads | nvitop-exporter {b[-1].cpu_percent:.2f}% {b[-1].rss_mb:.0f} MB "
                      f"{b[-1].threads} threads | load average {b[-1].load:.2f}"
                      + (f" | the fake's model alone {m[-1]:.2f}%" if m else ""), flush=True)
            report(rec, st, a, b, args.pairs, m, w)
            if st.fake:  # the mock library starts threads of its own: compare like with like
                threads_by_gpus[st.gpus] = (st.label, max(r.threads for r in a))
        if len(threads_by_gpus) > 1:
            (lo, (_, n_lo)), (hi, (label, n_hi)) = min(threads_by_gpus.items()), max(threads_by_gpus.items())
            f = rec.add("side_by_side.threads_growth", f"rasd threads added from {lo} to {hi} fake GPUs", n_hi - n_lo,
                        "threads", target=results.below(hi - lo, text="fewer than one a GPU"), column=label,
                        text=f"{n_hi - n_lo} ({n_lo} -> {n_hi})")
            print(f"rasd threads from {lo} to {hi} fake GPUs: {n_lo} -> {n_hi}  [target: fewer than one added a GPU "
                  f"({hi - lo}): {'ok' if f.met else 'MISSED'}]")
    rec.save()


def report(rec: results.Recorder, st: Setup, a: list[Run], b: list[Run], pairs: int, model: list[float],
           wake: list[float]) -> None:
    """Print the setup's figures with their targets and record them (one README column per setup)."""
    med = statistics.median
    col, key = st.label, f"side_by_side.{st.name}"
    loads = [r.load for r in a + b]
    noise = {"pairs": pairs, "load_average_min": round(min(loads), 2), "load_average_max": round(max(loads), 2)}
    print(f"{st.label} (load average over the runs {spread(loads)}, {rec.run.cores} cores):")
    cpu_r = [x.cpu_percent / y.cpu_percent for x, y in zip(a, b) if y.cpu_percent > 0]
    ours, theirs = med([x.cpu_percent for x in a]), med([y.cpu_percent for y in b])
    ratio = med(cpu_r) if cpu_r else float("nan")
    f = rec.add(f"{key}.cpu_ratio", "whole daemon's CPU beside nvitop-exporter (% of a core; ratio, median of pairs)",
                ratio, "x", target=results.at_most(CPU_RATIO_TARGET, "x", "no more than the peer's"), column=col,
                text=f"{ours:.2f}% vs {theirs:.2f}%: {ratio:.2f}x ({pairs_text(cpu_r)}; load average {spread(loads, 1)})",
                notes=noise | {"rasd_percent": round(ours, 3), "peer_percent": round(theirs, 3),
                               "pair_ratio_min": round(min(cpu_r, default=float("nan")), 3),
                               "pair_ratio_max": round(max(cpu_r, default=float("nan")), 3)})
    print(f"  CPU, % of one core: rasd {ours:.2f} vs nvitop-exporter {theirs:.2f}; ratio (median of pairs) "
          f"{ratio:.2f}  [target <= {CPU_RATIO_TARGET:.2f}: {'ok' if f.met else 'MISSED'}]; "
          f"pair ratios {spread(cpu_r)} (the machine's noise)")
    if model:
        mm = med(model)
        rec.add(f"{key}.fake_model", "of which the fake node itself (a process that only reads it as rasd does: "
                "each GPU's instant power 12.5 times a second on the native reader, its other power readings once a second)", mm, "%", column=col,
                text=f"{mm:.2f}% ({100 * mm / ours:.0f}% of rasd's)" if ours > 0 else f"{mm:.2f}%",
                notes=noise | {"runs_min": round(min(model), 3), "runs_max": round(max(model), 3)})
        print(f"  of which the fake node itself, read for every update by a process doing only that: "
              f"{mm:.2f}% (runs {spread(model)}); rasd beyond it {ours - mm:.2f}%")
    rss_r = [x.rss_mb / y.rss_mb for x, y in zip(a, b)]
    ours, theirs, ratio = med([x.rss_mb for x in a]), med([y.rss_mb for y in b]), med(rss_r)
    f = rec.add(f"{key}.rss_ratio", "RSS beside nvitop-exporter", ratio, "x",
                target=results.at_most(RSS_RATIO_TARGET, "x", f"within {RSS_RATIO_TARGET}x"), column=col,
                text=f"{ours:.0f} vs {theirs:.0f} MB: {ratio:.2f}x", notes=noise)
    print(f"  RSS: rasd {ours:.0f} MB vs {theirs:.0f} MB; ratio {ratio:.2f}  [target <= {RSS_RATIO_TARGET:.2f}: "
          f"{'ok' if f.met else 'MISSED'}]; pair ratios {spread(rss_r)}")
    ours_t, theirs_t = max(x.threads for x in a), max(y.threads for y in b)
    rec.add(f"{key}.threads", "threads, rasd vs nvitop-exporter (most seen)", ours_t, "threads", column=col,
            text=f"{ours_t} vs {theirs_t}")
    print(f"  threads: rasd {ours_t} vs {theirs_t}  [target: not one per GPU per job; judged across GPU counts]")
    ours_w, theirs_w, cost = med([x.wakeups for x in a]), med([y.wakeups for y in b]), med(wake)
    rec.add(f"{key}.wakeups", "thread wake-ups a second (all threads' voluntary context switches), rasd vs "
            "nvitop-exporter", ours_w, "/s", column=col, text=f"{ours_w:.1f} vs {theirs_w:.1f}", notes=noise)
    rec.add(f"{key}.wake_cost", "CPU of one wake-up of a Python thread on this machine (a process whose one "
            "thread only sleeps, 12.5 times a second, as rasd's power loop does)", cost * 1e6, "us", column=col,
            text=f"{cost * 1e6:.0f} us (runs {spread([x * 1e6 for x in wake], 0)})",
            notes=noise | {"runs_min_us": round(min(wake) * 1e6, 1), "runs_max_us": round(max(wake) * 1e6, 1)})
    print(f"  wake-ups a second: rasd {ours_w:.1f} vs nvitop-exporter {theirs_w:.1f}; a Python thread's wake-up "
          f"costs {cost * 1e6:.0f} us of CPU here (runs {spread([x * 1e6 for x in wake], 0)})")
    rates = [x.rate_hz for x in a if x.rate_hz is not None]
    if st.fake:
        caps = [100 * x.capture for x in a if x.capture is not None]
        f = rec.add(f"{key}.capture", "NVML's distinct instant-power updates captured", med(caps), "%",
                    target=results.at_least(CAPTURE_TARGET, "%"), column=col,
                    text=f"{med(caps):.2f}% (runs {spread(caps)})", notes=noise)
        print(f"  instant-power updates captured: {med(caps):.2f}% of NVML's (runs {spread(caps)})"
              f"  [target >= {CAPTURE_TARGET:.0f}%: {'ok' if f.met else 'MISSED'}]")
    elif rates:
        rec.add(f"{key}.capture", "NVML's distinct instant-power updates captured", med(rates), "updates/s",
                column=col, text=f"{med(rates):.1f} a GPU a second (every read is stamped new"
                + (" on the mock)" if st.name.startswith("mock") else " on this driver, as probed)"), notes=noise)
        print(f"  instant-power: every read is stamped new here, so repeats are found by value; "
              f"{med(rates):.1f} distinct updates per GPU per second")
    groups = sorted({g for x in a for g in x.by_thread}, key=lambda g: -med([x.by_thread.get(g, 0.0) for x in a]))
    total = med([x.cpu_percent for x in a])
    print("  rasd's CPU by thread (median of runs, % of one core; share of the daemon's):")
    for g in groups:
        v = med([x.by_thread.get(g, 0.0) for x in a])
        share = 100 * v / total if total > 0 else float("nan")
        print(f"    {g:44s} {v:6.2f}%  ({share:4.1f}%)")
        label = g if g in (MAIN, ENDED, NATIVE) else f"`{g}` ({DOES[g]})" if g in DOES else f"`{g}`"
        rec.add(f"{key}.thread.{g}", label, v, "%", column=col,
                table="side_by_side_threads", text=f"{v:.2f}% ({share:.0f}%)", notes={"pairs": pairs})


if __name__ == "__main__":
    main()
