"""Kernel logs as operators have them: every line form, every Xid form, replay per host."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rasd.cli import main
from rasd.ladder.xidtext import decode
from rasd.telemetry.kmsg import parse_xid_line, split_record

LOGS = Path(__file__).parent / "logs"


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """dmesg -T and syslog print local time: read the samples in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def replay(*args):
    r = CliRunner().invoke(main, ["replay", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.mark.parametrize("line, form, host, when", [
    ("[ 8123.456001] NVRM: Xid (PCI:0000:3b:00): 13, x", "dmesg", "", 8123.456001),
    ("[ 8123.456001] node-a kernel: NVRM: Xid (PCI:0000:3b:00): 13, x", "dmesg", "node-a",
     8123.456001),
    ("[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:3b:00): 13, x", "dmesg-T", "", 1725018189.0),
    ("Nov 29 11:28:11 node-a kernel: NVRM: Xid (PCI:0000:3b:00): 13, x", "syslog", "node-a",
     1732879691.0),
    ("Nov 29 11:28:11 node-a kernel: [ 4201.118230] NVRM: Xid (PCI:0000:3b:00): 13, x", "syslog",
     "node-a", 1732879691.0),
    ("2024-11-29T11:28:11+0000 node-a kernel: NVRM: Xid (PCI:0000:3b:00): 13, x", "iso", "node-a",
     1732879691.0),
    ("2024-11-29T11:28:11.250000+01:00 node-a kernel: NVRM: Xid (PCI:0000:3b:00): 13, x", "iso",
     "node-a", 1732876091.25),
    ("6,1234,8123456001,-;NVRM: Xid (PCI:0000:3b:00): 13, x", "kmsg", "", 8123.456001),
    ("NVRM: Xid (PCI:0000:3b:00): 13, x", "bare", "", None),
])
def test_every_line_form(line, form, host, when):
    r = split_record(line, year=2024)
    assert r is not None and r.form == form and r.host == host
    got = r.time_wall if r.time_wall is not None else r.boot_seconds
    assert got == pytest.approx(when) if when is not None else got is None
    x = parse_xid_line(r.text)
    assert x is not None and x.xid == 13 and x.pci == (0, 0x3B, 0) and x.message == "x"


def test_every_xid_form():
    x = parse_xid_line("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.")
    assert (x.xid, x.pid, x.process, x.message) == (79, 1234, "python", "GPU has fallen off the bus.")
    x = parse_xid_line("NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.")
    assert x.pid is None and x.message == "GPU has fallen off the bus."
    x = parse_xid_line("NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.")
    assert x.pid is None and x.process is None and x.message == "GPU has fallen off the bus."
    x = parse_xid_line("NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7, name=a, Contained: CE User Channel (0x9). RST: No, D-RST: No")
    assert x.gpu_instance == 5 and x.pci == (0, 1, 0) and x.xid == 94
    x = parse_xid_line("NVRM: Xid (0000:03:00): 14, Channel 00000001")
    assert x.xid == 14 and x.pci == (0, 3, 0) and x.message == "Channel 00000001"
    x = parse_xid_line("nvidia-nvswitch0: SXid (PCI:0000:c3:00.0): 20009, Non-fatal, Link 28 RX Short Error Rate")
    assert x.switch == "nvidia-nvswitch0" and x.xid == 20009 and x.pci == (0, 0xC3, 0)
    assert parse_xid_line("NVRM: GPU at PCI:0000:86:00: GPU-5f1c9a0e") is None


def test_message_fields():
    t = decode(13, "Graphics SM Warp Exception on (GPC 2, TPC 1, SM 0): Out Of Range Address")
    assert (t.gpc, t.tpc, t.sm) == (2, 1, 0)
    t = decode(31, "Ch 00000003, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_3 faulted "
                   "@ 0x7f39_e4000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ")
    assert t.channel == 3 and t.engine == "GRAPHICS"
    assert t.mmu_fault == "FAULT_PDE ACCESS_TYPE_VIRT_READ"
    t = decode(95, "Uncontained: FBHUB. RST: Yes, D-RST: No")
    assert t.reset_required is True and t.drain_and_reset is False
    assert decode(45, "Ch 00000008, caused by previous Xid 109").caused_by == 109
    t = decode(145, "RLW_REMAP NonFatal XC0 i0 Link 12 (0x00000024 0x00000000 0x0 0x0 0x0 0x0 0x0)")
    assert t.link == 12 and t.unit == "RLW_REMAP" and t.registers[0] == 0x24
    assert decode(74, "NVLink: fatal error detected on link 5(0x10, 0x0, 0x0)").link == 5
    assert decode(154, "GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot "
                       "Required)").recovery_action == "node_reboot"


def test_dmesg_bursts_are_one_occurrence_and_other_lines_are_counted():
    out = replay(LOGS / "dmesg.log")
    ds = out["decisions"]
    # three Xid 13 lines of one SM exception: one application problem, no SDC check, not excluded
    x13 = [d for d in ds if d["fault"] == "xid:13"]
    assert len(x13) == 1 and x13[0]["investigate"] == ["application"]
    assert "exclude_gpu" not in x13[0]["degradations"] and x13[0]["gpu"] == "0000:3b:00"
    # Xid 45 torn down over four channels: one restart, no hardware investigation
    x45 = [d for d in ds if d["fault"] == "xid:45"]
    assert len(x45) == 1 and x45[0]["rung"] == "restart_process" and not x45[0]["investigate"]
    x79 = [d for d in ds if d["fault"] == "xid:79"][0]
    assert x79["rung"] == "reboot_node" and "diagnostics" in x79["investigate"]
    f = out["files"][0]
    assert f["form"] == "kernel log" and f["events"] == 8 and f["line_forms"] == {"dmesg": 14}
    assert f["skipped_not_nvidia"] == 2 and f["skipped_nvidia_without_xid"] == 4


def test_dmesg_T_mig_and_reset_flags_and_cause():
    ds = replay(LOGS / "dmesg-T.log")["decisions"]
    by = {d["fault"]: d for d in ds}
    assert by["xid:94"]["rung"] == "restart_process" and by["xid:94"]["time"] == 1725018189.0
    assert by["xid:95"]["rung"] == "reset_gpu" and "drain" in by["xid:95"]["degradations"]
    assert by["xid:45"]["rung"] == "none" and "Xid 109" in by["xid:45"]["reason"]


def test_syslog_with_two_hosts_is_judged_per_host():
    ds = replay(LOGS / "syslog.log", "--year", "2024")["decisions"]
    assert {(d["host"], d["gpu"], d["fault"]) for d in ds} == {
        ("node-a", "0000:18:00", "xid:62"), ("node-b", "0000:18:00", "xid:48"),
        ("node-b", "0000:18:00", "xid:63")}
    assert [d for d in ds if d["fault"] == "xid:62"][0]["time"] == 1732879691.0
    x62 = [d for d in ds if d["fault"] == "xid:62"][0]
    assert "diagnostics" in x62["investigate"]  # contact support once the reset is done


def test_journal_short_iso_with_nvswitch_and_xid74():
    ds = replay(LOGS / "journal-short-iso.log")["decisions"]
    sx = [d for d in ds if d["fault"] == "sxid:20009"]
    assert [d["rung"] for d in sx] == ["none", "none"] and sx[1]["investigate"] == ["technician"]
    assert sx[0]["gpu"] == "nvidia-nvswitch0 0000:c3:00" and sx[0]["host"] == "fabric-01"
    fatal = [d for d in ds if d["fault"] == "sxid:24007"][0]
    assert fatal["rung"] == "reboot_node" and fatal["host"] == "fabric-02"
    x74 = [d for d in ds if d["fault"] == "xid:74"][0]
    assert x74["link"] == 5 and x74["scope"] == "link"


def test_bare_lines_older_form_and_field_summary():
    ds = replay(LOGS / "bare.log")["decisions"]
    assert [d["fault"] for d in ds] == ["xid:14", "xid:31", "xid:154"]
    assert "engine GRAPHICS" in ds[1]["reason"] and "FAULT_PDE" in ds[1]["reason"]
    assert ds[2]["rung"] == "reset_gpu"
    assert ds[1]["time"] - ds[0]["time"] == 60.0  # no time in the log: a minute apart


def test_nothing_recognisable_exits_2_naming_the_forms():
    r = CliRunner().invoke(main, ["replay", str(LOGS / "not-a-log.txt")])
    assert r.exit_code == 2
    assert "nothing recognisable" in r.output and "dmesg" in r.output and "JSON" in r.output
    assert "Traceback" not in r.output


def test_several_files_each_detected(tmp_path):
    ev = tmp_path / "events.jsonl"
    ev.write_text('{"time": 1732879000, "kind": "thermal", "gpu": 1, "host": "node-c"}\n')
    out = replay(LOGS / "syslog.log", ev, "--year", "2024")
    assert [f["form"] for f in out["files"]] == ["kernel log", "events"]
    assert out["decisions"][0]["host"] == "node-c"  # earliest first, across files
    assert out["events"] == 4


def test_plain_output_and_counts_on_stderr():
    r = CliRunner().invoke(main, ["replay", str(LOGS / "syslog.log"), "--year", "2024"])
    assert r.exit_code == 0
    assert "host=node-a gpu=0000:18:00" in r.output
    assert "skipped 2 lines not from NVIDIA drivers" in r.output


def test_syslog_year_defaults_to_the_file_and_steps_over_new_year(tmp_path):
    p = tmp_path / "kern.log"
    p.write_text("Dec 31 23:59:59 n kernel: NVRM: Xid (PCI:0000:18:00): 43, pid=1, name=a, Ch 1\n"
                 "Jan  1 00:00:05 n kernel: NVRM: Xid (PCI:0000:18:00): 43, pid=1, name=a, Ch 1\n")
    os.utime(p, (1_600_000_000, 1_600_000_000))  # modified in 2020
    ds = replay(p)["decisions"]
    assert ds[0]["time"] == 1609459199.0  # 2020-12-31T23:59:59Z
    assert json.loads(json.dumps(ds))  # plain data


def test_decisions_close_in_a_replay(tmp_path):
    p = tmp_path / "e.jsonl"
    day = 86400
    lines = [
        {"time": 0, "kind": "xid", "gpu": 0, "xid": 13},  # an application problem
        {"time": 10, "kind": "ecc", "gpu": 1, "volatile_uncorrected": 1},
        {"time": 20, "kind": "remedy", "gpu": 1, "action": "reset_gpu", "result": "ok"},
        {"time": 30 * day, "kind": "thermal", "gpu": 2},  # weeks later
        {"time": 30 * day + 5, "kind": "xid", "gpu": 0, "xid": 13},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines))
    out = replay(p)
    closed = {(c["decision"]["fault"], c["outcome"]) for c in out["closed"]}
    assert ("ecc_uncorrected", "remedied") in closed and ("xid:13", "expired") in closed
    # the new Xid 13 weeks later is a fresh single occurrence, not a repeat of the old one
    last = out["decisions"][-1]
    assert last["fault"] == "xid:13" and "sdc_check" not in last["investigate"]


def _replay_on_a_terminal(path, tty: bool) -> str:
    """Run `rasd replay` with stderr on a pseudo-terminal (or a pipe); what stderr showed."""
    import pty
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), TZ="UTC")
    if not tty:
        p = subprocess.run([sys.executable, "-m", "rasd", "replay", str(path)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        return p.stderr.decode()
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "rasd", "replay", str(path)], env=env,
                         stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.wait()
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n".join(json.dumps({"time": i, "kind": "thermal", "gpu": i % 8})
                           for i in range(20000)))
    on_tty = _replay_on_a_terminal(p, tty=True)
    assert "replay" in on_tty and "100%" in on_tty
    piped = _replay_on_a_terminal(p, tty=False)
    assert "%" not in piped and "20000 events" in piped


def test_hosts_spread_over_workers_give_the_same_report(tmp_path):
    import random

    rnd = random.Random(3)
    lines = []
    for i in range(3000):
        host = f"node{rnd.randrange(12)}"
        kind = rnd.choice(["xid", "thermal", "ecc", "remedy"])
        ev = {"time": 1_700_000_000 + i * 7.5, "host": host, "gpu": rnd.randrange(8), "kind": kind}
        if kind == "xid":
            ev.update(xid=rnd.choice([13, 31, 62, 79, 94]), message="Ch 00000001")
        elif kind == "ecc":
            ev.update(volatile_uncorrected=rnd.randrange(2), volatile_corrected=1)
        elif kind == "remedy":
            ev.update(action=rnd.choice(["reset_gpu", "reboot_node"]), result="ok")
        lines.append(json.dumps(ev))
    ev_path = tmp_path / "fleet.jsonl"
    ev_path.write_text("\n".join(lines))
    one = CliRunner().invoke(main, ["replay", str(ev_path), str(LOGS / "syslog.log"),
                                    "--year", "2024", "--jobs", "1"])
    three = CliRunner().invoke(main, ["replay", str(ev_path), str(LOGS / "syslog.log"),
                                      "--year", "2024", "--jobs", "3"])
    assert one.exit_code == 0 and three.exit_code == 0, three.output
    assert one.output == three.output and "host=node-b" in one.output
    assert one.output.count("\n") > 500


def test_a_bad_line_found_by_a_worker_still_names_its_line(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n".join([json.dumps({"time": i, "kind": "thermal", "gpu": 0, "host": f"h{i}"})
                            for i in range(10)] + ['{"time": 11, "kind": "thermal", "host": "h3"}']))
    r = CliRunner().invoke(main, ["replay", str(p), "--jobs", "2"])
    assert r.exit_code == 2 and "line 11" in r.output and "missing 'gpu'" in r.output


def test_a_bad_line_names_its_file_among_several(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"time": 5, "kind": "thermal", "gpu": 0}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": 1, "kind": "thermal", "gpu": 0}\n{"time": 2, "kind": "nope", "gpu": 0}\n')
    for args in ([str(bad), str(good)], [str(good), str(bad)], [str(good), str(bad), "--json"]):
        r = CliRunner().invoke(main, ["replay", *args])
        assert r.exit_code == 2 and "bad.jsonl: line 2" in r.output, (args, r.output)
