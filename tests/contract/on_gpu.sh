#!/usr/bin/env bash
# The checks that need a real NVIDIA GPU and driver, in one run from the repository's root:
#   1. the NVML contract suite and the CuPy SDC engine's tests (pytest -m nvml);
#   2. `rasd status --backend nvml`;
#   3. how field 186 (instant power) refreshes, and the share of its updates the sampler captures
#      (tests/contract/refreshprobe.py: idle, then under a matrix-multiply load), and where a
#      health poll's time goes (tests/contract/pollprofile.py);
#   4. the native power reader against the Python loop (tests/contract/powerprobe.py);
#   5. `rasd validate --level quick` on the GPUs (CuPy engine), and the GPUs a check of GPU 0 holds
#      CUDA contexts on while it runs;
#   6. the daemon itself on NVML for 20 s: its start line, /healthz, its RSS and threads (no CUDA
#      context may stay in it after its periodic SDC check), and a scrape.
# Each step's output goes to OUT_DIR/<step>.txt (the daemon's log to run.txt, what was seen of it
# to daemon.txt), and a summary to stdout. Needs Python >= 3.10 with
# rasd's dependencies, CuPy for steps 1 and 5, gcc for the native reader (the Python loop otherwise).
# Nothing here changes the GPU's settings.
#
#   bash tests/contract/on_gpu.sh OUT_DIR
set -u
out=${1:?usage: bash tests/contract/on_gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, keep its output, show its end
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s%N)
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    rc=$?
    echo "== $name: rc=$rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    tail -n "${TAIL:-15}" "$out/$name.txt"
}

nvidia-smi --query-gpu=index,name,driver_version,power.limit,power.draw --format=csv 2>&1 | head -n 20
"$py" -c 'import sys, pynvml; print("python", sys.version.split()[0], "nvidia-ml-py", getattr(pynvml, "__version__", "?"))'

# The native readers, built in place as the install would (no compiler: the Python loop reads)
suf=$("$py" -c 'import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])')
gcc -std=gnu11 -O2 -shared -fPIC -o "rasd/backends/nvml/_powerloop$suf" rasd/backends/nvml/_powerloop.c -lpthread \
    && echo "native reader built" || echo "native reader not built: the sampler reads from Python"

step nvml-suite 300 "$py" -m pytest -q -p no:cacheprovider -m nvml tests/contract tests/sdc/test_cupy_engine.py
step status 60 "$py" -m rasd status --backend nvml
TAIL=80 step refresh 120 "$py" -m tests.contract.refreshprobe --seconds 5
TAIL=40 step pollprofile 60 "$py" -m tests.contract.pollprofile --polls 50
TAIL=40 step powerprobe 60 "$py" -m tests.contract.powerprobe --seconds 3
step validate 180 "$py" -m rasd validate --backend nvml --level quick --json
# which GPUs a check of GPU 0 alone holds contexts on while it runs (it must leave busy GPUs alone)
{
    "$py" -m rasd validate --backend nvml --gpu 0 --level standard --json >/dev/null 2>&1 &
    check=$!
    while kill -0 "$check" 2>/dev/null; do
        nvidia-smi --query-compute-apps=pid,gpu_bus_id,used_memory --format=csv,noheader 2>&1 | tr '\n' ';'
        echo
        sleep 0.5
    done | sort -u
} >"$out/contexts.txt"
echo "== contexts during a check of GPU 0 (pid, bus, memory):"
cat "$out/contexts.txt"

# The daemon on NVML, with its state and socket in a scratch directory
scratch=$(mktemp -d)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STATE_DIRECTORY=$scratch RUNTIME_DIRECTORY=$scratch "$py" -m rasd run --backend nvml --listen "127.0.0.1:$port" \
    --log-level info >"$out/run.txt" 2>&1 &
pid=$!
sleep 20  # the periodic SDC check on an idle GPU starts at once, in a child process that ends
{
    echo "healthz: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")"
    # no CUDA context may stay in the daemon: its RSS, its threads, the GPUs' compute processes
    grep -E '^(VmRSS|Threads)' "/proc/$pid/status"
    echo "threads: $(cat /proc/$pid/task/*/comm | sort | uniq -c | tr -s ' \n' ' ')"
    echo "compute processes on the GPUs (pid, memory): $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | tr '\n' ';')"
    curl -s "http://127.0.0.1:$port/metrics" >"$scratch/metrics"
    echo "rasd_ series: $(grep -c '^rasd_' "$scratch/metrics")"
    grep -E '^rasd_(gpu_power_watts|gpu_power_sample_rate_hz|gpu_power_dedup_info|gpu_temperature_celsius|gpu_poll_duration_seconds|sdc_)' "$scratch/metrics" | head -n 30
} >"$out/daemon.txt" 2>&1  # not the daemon's own log file: its writes would overwrite these
kill -TERM "$pid"
wait "$pid"
echo "daemon exit: $?" >>"$out/daemon.txt"
echo "== daemon"
grep -v '^level=INFO' "$out/run.txt" | tail -n 15
cat "$out/daemon.txt"
