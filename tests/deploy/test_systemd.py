"""systemd integration: the unit file, the sample configuration, and the notify protocol.

The notify tests bind a real AF_UNIX datagram socket, put its path in NOTIFY_SOCKET (exactly what
systemd does for a Type=notify unit) and run `rasd run --backend fake` as a subprocess, so the
bytes checked are the bytes systemd would receive.

`systemd-analyze verify` needs ExecStart's program to exist: the test verifies a copy of the unit
whose /usr/local/bin/rasd is replaced by the `rasd` entry point installed here (or, when rasd is
not installed as a command, by `<this python> -m rasd`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Iterator

import pytest

from rasd import config as config_mod
from tests.e2e.helpers import free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "rasd.service"
SAMPLE = ROOT / "systemd" / "rasd.toml"
INSTALLED_RASD = "/usr/local/bin/rasd"

# A key line of the sample: "# key = value" (one space after '#'); examples are indented more.
KEY_LINE = re.compile(r"^# ([a-z][a-z0-9_]*) = (.*)$")
TABLE_LINE = re.compile(r"^\[([a-z_]+)\]\s*$")


# ------------------------------------------------------------------------------ unit file


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; systemd allows a key to repeat."""
    out, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment in {UNIT.name}: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def unit_values(section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_entries(UNIT.read_text()) if s == section and k == key]


def test_unit_speaks_notify_with_watchdog_and_restarts() -> None:
    assert unit_values("Service", "Type") == ["notify"]
    assert unit_values("Service", "NotifyAccess") == ["main"]
    assert unit_values("Service", "Restart") == ["on-failure"]
    assert unit_values("Service", "StateDirectory") == ["rasd"]
    assert unit_values("Service", "RuntimeDirectory") == ["rasd"]
    assert unit_values("Service", "CacheDirectory") == ["rasd"]  # CuPy's kernels: home is read-only
    assert unit_values("Service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    (exec_start,) = unit_values("Service", "ExecStart")
    assert exec_start.split()[:2] == [INSTALLED_RASD, "run"]
    assert "--config /etc/rasd/rasd.toml" in exec_start and "--backend nvml" in exec_start
    (watchdog,) = unit_values("Service", "WatchdogSec")
    assert watchdog.endswith("s") and int(watchdog[:-1]) >= 10  # many health intervals
    (stop,) = unit_values("Service", "TimeoutStopSec")
    assert int(stop.rstrip("s")) > 5  # rasd exits within 5 s; systemd must not kill it sooner


def test_unit_hardening_leaves_nvml_and_kmsg_reachable() -> None:
    for key, value in (
        ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
    ):
        assert unit_values("Service", key) == [value], key
    caps = unit_values("Service", "CapabilityBoundingSet")[0].split()
    assert {"CAP_SYS_ADMIN", "CAP_SYSLOG", "CAP_KILL"} <= set(caps)
    devices = unit_values("Service", "DeviceAllow")
    assert "char-nvidia-frontend rw" in devices and "char-nvidia-uvm rw" in devices
    assert "/dev/kmsg r" in devices
    # These would hide the GPUs or the driver's Xid messages from rasd.
    for key in ("PrivateDevices", "ProtectKernelLogs"):
        assert unit_values("Service", key) in ([], ["no"]), key


def _verifiable_unit(tmp: Path) -> Path:
    exe = shutil.which("rasd")
    replacement = exe if exe else f"{sys.executable} -m rasd"
    text = UNIT.read_text()
    assert INSTALLED_RASD in text
    path = tmp / "rasd.service"
    path.write_text(text.replace(INSTALLED_RASD, replacement))
    return path


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = _verifiable_unit(tmp_path)
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    about_us = [ln for ln in (r.stdout + r.stderr).splitlines() if "rasd" in ln]
    assert r.returncode == 0 and not about_us, r.stdout + r.stderr


# ------------------------------------------------------------------------------ sample config


def sample_keys() -> dict[str, dict[str, str]]:
    """{table: {key: default text}} from the commented key lines of the sample."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in SAMPLE.read_text().splitlines():
        m = TABLE_LINE.match(line)
        if m:
            current = m.group(1)
            assert current not in tables, f"[{current}] appears twice"
            tables[current] = {}
            continue
        k = KEY_LINE.match(line)
        if k:
            assert current is not None, f"key before any table: {line!r}"
            assert k.group(1) not in tables[current], f"{current}.{k.group(1)} twice"
            tables[current][k.group(1)] = k.group(2)
    return tables


def test_sample_names_exactly_the_settings_fields() -> None:
    sections = config_mod._section_types()
    keys = sample_keys()
    assert list(keys) == list(sections), "tables of the sample differ from rasd.config's"
    for name, cls in sections.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = sorted(set(fields) - set(keys[name]))
        extra = sorted(set(keys[name]) - set(fields))
        assert not missing and not extra, f"[{name}] missing {missing}, unknown {extra}"


def test_sample_parses_as_shipped_and_uncommented() -> None:
    shipped = config_mod.load(SAMPLE)
    assert shipped == config_mod.Config.default()
    # Uncommenting every key line must give a valid file whose values are the real defaults,
    # so the documented default cannot drift from the code.
    text = "\n".join(
        line[2:] if KEY_LINE.match(line) else line for line in SAMPLE.read_text().splitlines()
    )
    uncommented = config_mod.parse(text, source="uncommented sample")
    for name in config_mod._section_types():
        got, want = getattr(uncommented, name), getattr(shipped, name)
        for f in dataclasses.fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            if isinstance(b, MappingProxyType):
                a, b = dict(a), dict(b)
            assert a == b, f"{name}.{f.name}: sample says {a!r}, the default is {b!r}"


def test_every_sample_key_is_documented() -> None:
    lines = SAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if KEY_LINE.match(line):
            above = lines[i - 1] if i else ""
            assert above.startswith("#") and not KEY_LINE.match(above) and len(above) > 12, (
                f"line {i + 1} ({line!r}) needs a comment above it saying what the key means"
            )


# ------------------------------------------------------------------------------ notify protocol


class NotifyListener:
    """The receiving end of sd_notify: an AF_UNIX datagram socket like systemd's."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes: keep it short, whatever tmp_path is.
        self.dir = tempfile.mkdtemp(prefix="rasd-n", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, str]] = []

    def receive(self, timeout: float) -> list[str]:
        """Datagrams that arrive within ``timeout`` s, each split into its assignments."""
        got: list[str] = []
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            for part in data.decode().split("\n"):
                if part:
                    got.append(part)
                    self.messages.append((time.monotonic(), part))
        return got

    def wait_for(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.receive(min(0.5, max(0.01, end - time.monotonic()))):
                if m.startswith(prefix):
                    return m
        seen = [m for _, m in self.messages]
        raise AssertionError(f"no {prefix!r} within {timeout}s; received {seen}")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Rasd:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def metric(self, name: str) -> float | None:
        for line in http_get(self.url + "/metrics").splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    n = NotifyListener()
    yield n
    n.close()


def start_rasd(tmp: Path, notify: NotifyListener, *, config: Path | None = None, env: dict | None = None) -> Rasd:
    port = free_port()
    e = dict(os.environ)
    e.pop("WATCHDOG_USEC", None)
    e.pop("WATCHDOG_PID", None)
    e.update({
        "XDG_STATE_HOME": str(tmp / "state"), "XDG_RUNTIME_DIR": str(tmp / "run"),
        "NOTIFY_SOCKET": notify.path, "PYTHONUNBUFFERED": "1",
    })
    e.update(env or {})
    cmd = [sys.executable, "-m", "rasd", "run", "--backend", "fake", "--listen", f"127.0.0.1:{port}"]
    if config is not None:
        cmd += ["--config", str(config)]
    log = tmp / "rasd.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=e, cwd=ROOT)
    return Rasd(proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def daemons() -> Iterator[list[Rasd]]:
    started: list[Rasd] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


def test_ready_after_first_poll_then_readable_status(tmp_path: Path, notify: NotifyListener, daemons: list[Rasd]) -> None:
    d = start_rasd(tmp_path, notify)
    daemons.append(d)
    assert notify.wait_for("READY=1", timeout=30) == "READY=1"
    # READY=1 is sent from the first main-loop pass, after the snapshot is published: the first
    # poll is visible on /metrics the moment systemd would consider the unit started.
    polls = wait_for(lambda: d.metric("rasd_health_polls_total"), timeout=5)
    assert polls >= 1
    up = wait_for(lambda: d.metric("rasd_gpus"), timeout=5)
    status = notify.wait_for("STATUS=", timeout=5)
    m = re.match(r"STATUS=(\d+)/(\d+) GPUs up, (\d+) lost, (\d+) stale; [0-9.]+ kW", status)
    assert m, f"STATUS line not in the documented shape: {status!r}"
    assert int(m.group(2)) == int(up) and int(m.group(1)) >= 1
    # Without WATCHDOG_USEC, no keep-alives are sent.
    later = notify.receive(2.5)
    assert "WATCHDOG=1" not in [m for _, m in notify.messages], later
    assert [m for _, m in notify.messages].count("READY=1") == 1


def test_watchdog_pings_when_systemd_asks(tmp_path: Path, notify: NotifyListener, daemons: list[Rasd]) -> None:
    d = start_rasd(tmp_path, notify, env={"WATCHDOG_USEC": "3000000"})
    daemons.append(d)
    notify.wait_for("READY=1", timeout=30)
    t0 = time.monotonic()
    notify.receive(3.0)
    pings = [t for t, m in notify.messages if m == "WATCHDOG=1" and t >= t0]
    # The main loop passes once per health interval (1 s): several pings per watchdog period.
    assert len(pings) >= 2, notify.messages
    assert max(b - a for a, b in zip(pings, pings[1:])) < 3.0


def test_sigterm_exits_zero_within_five_seconds(tmp_path: Path, notify: NotifyListener, daemons: list[Rasd]) -> None:
    d = start_rasd(tmp_path, notify)
    daemons.append(d)
    notify.wait_for("READY=1", timeout=30)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(10)
    took = time.monotonic() - t0
    assert rc == 0, d.log_text()
    assert took < 5.0, f"took {took:.2f}s to stop"
    assert "STOPPING=1" in [m for _, m in notify.messages] + notify.receive(0.2)
    assert "event=stopped" in d.log_text()


def test_sighup_with_invalid_config_keeps_running_on_the_old_one(tmp_path: Path, notify: NotifyListener, daemons: list[Rasd]) -> None:
    cfg = tmp_path / "rasd.toml"
    cfg.write_text("[telemetry]\nhealth_interval_seconds = 0.5\n")
    d = start_rasd(tmp_path, notify, config=cfg)
    daemons.append(d)
    notify.wait_for("READY=1", timeout=30)

    cfg.write_text('[telemetry]\nhealth_interval_seconds = "fast"\n[nonsense]\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "action=kept_previous_config" in d.log_text(), timeout=10)
    log = d.log_text()
    assert "event=reload_rejected" in log and "health_interval_seconds" in log and "nonsense" in log
    assert d.proc.poll() is None, "a bad config on reload must not stop rasd"
    before = d.metric("rasd_health_polls_total")
    wait_for(lambda: d.metric("rasd_health_polls_total") > before, timeout=5)

    # The reload path still works afterwards: a valid file is taken.
    cfg.write_text("[telemetry]\nhealth_interval_seconds = 0.5\n[daemon]\nlog_level = \"info\"\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=reloaded" in d.log_text(), timeout=10)
    assert d.proc.poll() is None
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0
