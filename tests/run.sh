#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine (as root): installs what the tests need
# (Debian's prometheus package for promtool and the real-Prometheus end-to-end test, rasd with
# its test extras), checks lint (ruff) and types (mypy; settings in pyproject.toml), then runs
# pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    else
        echo "tests/run.sh: prometheus/promtool missing; run as root to install Debian's prometheus package" >&2
    fi
fi
# Debian's Slurm and munge: the scheduler tests start a real single-node cluster (root only)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || \
        ! command -v scontrol >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    else
        echo "tests/run.sh: Slurm missing; run as root to install slurmctld slurmd slurm-client munge" >&2
    fi
fi
# gcc compiles the NVML contract stub against nvml.h (PyPI nvidia-nvml-dev, in the test extras)
if ! command -v gcc >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
    else
        echo "tests/run.sh: gcc missing; run as root to install Debian's gcc package" >&2
    fi
fi
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q -e '.[test]'
python3 -m ruff check
python3 -m mypy
exec python3 -m pytest "$@"
