"""Bursts, the catalog followed fully, decisions that end, Xids logged while rasd was down."""

from __future__ import annotations

import stat

from rasd.ladder.escalate import Escalator
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import Store
from rasd.telemetry.kmsg import backlog

E, K = FaultEvent, FaultKind
SM = "Graphics SM Warp Exception on (GPC 2, TPC 1, SM 0): Out Of Range Address"
ESR = "Graphics Exception: ESR 0x514730=0x201000e 0x514734=0x24"


def xid(t, code, msg=None, gpu=0, **more):
    return E(t, gpu, K.XID, None, {"xid": code, "message": msg, **more})


def test_one_sm_exception_burst_is_one_occurrence():
    esc = Escalator()
    out = esc.feed_all([xid(100.0, 13, SM), xid(100.005, 13, SM), xid(100.011, 13, ESR)])
    assert all("sdc_check" not in d.investigate and "exclude_gpu" not in d.degradations
               for d in out)
    # the same GPC/TPC two hours later: a real repeat, possible hardware
    d = esc.feed(xid(7300.0, 13, SM))[0]
    assert "sdc_check" in d.investigate and "exclude_gpu" in d.degradations


def test_xid31_burst_then_repeat():
    esc = Escalator()
    assert not any("sdc_check" in d.investigate
                   for d in esc.feed_all([xid(5.0, 31), xid(5.2, 31), xid(5.9, 31)]))
    assert "sdc_check" in esc.feed(xid(3600.0, 31))[0].investigate


def test_xid45_burst_over_channels_starts_no_investigation():
    esc = Escalator()
    out = esc.feed_all([xid(50 + i * 0.001, 45, f"Ch {i:08x}") for i in range(32)])
    assert [d.rung for d in out] == [Rung.RESTART_PROCESS] and not out[0].investigate


def test_line_burst_window_is_configurable():
    esc = Escalator(LadderSettings(xid_line_burst_seconds=0.0))
    out = esc.feed_all([xid(100.0, 13, SM), xid(100.005, 13, SM)])
    assert "sdc_check" in out[-1].investigate


def test_contact_support_after_the_reset_recommends_diagnostics():
    for code in (62, 79, 109, 120):
        d = Escalator().feed(xid(1.0, code))[0]
        assert "diagnostics" in d.investigate, code
    assert "diagnostics" not in Escalator().feed(xid(1.0, 13))[0].investigate


REG2_BIT16 = "link 3 (0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)"
REG2_PARITY = "link 3 (0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x0)"


def test_field_diagnostics_if_repeated_counts_repeats_a_burst_once():
    esc = Escalator()
    first = esc.feed_all([xid(10.0, 74, REG2_BIT16), xid(10.2, 74, REG2_BIT16)])
    assert first and all("diagnostics" not in d.investigate for d in first)
    assert "if it repeats" in first[0].reason
    again = esc.feed(xid(4000.0, 74, REG2_BIT16))[0]
    assert "diagnostics" in again.investigate and "seen 2 times" in again.reason
    assert again.link == 3


def test_register_decode_only_on_its_architecture():
    hopper = Escalator().feed(xid(1.0, 74, REG2_PARITY, architecture="hopper"))[0]
    assert "ECC/parity" in hopper.reason
    ampere = Escalator().feed(xid(1.0, 74, REG2_PARITY, architecture="ampere"))[0]
    assert "ECC/parity" not in ampere.reason  # the third register is a Hopper register
    blackwell = Escalator().feed(xid(1.0, 74, REG2_PARITY, architecture="blackwell"))[0]
    assert "no register decode" in blackwell.reason


def test_reset_flags_and_cause():
    assert Escalator().feed(xid(1.0, 94, "Contained: SM (0x1). RST: No, D-RST: No"))[0].rung \
        is Rung.RESTART_PROCESS
    d = Escalator().feed(xid(1.0, 94, "Contained: SM (0x1). RST: Yes, D-RST: No"))[0]
    assert d.rung is Rung.RESET_GPU
    d = Escalator().feed(xid(1.0, 95, "Uncontained: FBHUB. RST: Yes, D-RST: Yes"))[0]
    assert d.rung is Rung.RESET_GPU and "drain" in d.degradations and "D-RST" in d.reason
    d = Escalator().feed(xid(1.0, 45, "Ch 00000008, caused by previous Xid 109"))[0]
    assert d.rung is Rung.NONE


def test_decisions_expire_in_the_daemon(tmp_path):
    s = LadderSettings(decision_window_seconds=3600)
    store = Store(tmp_path / "r.db")
    svc = LadderService(s, ActionSettings(), store, "n", now_wall=0)
    svc.ingest([E(10.0, 0, K.THERMAL, None, {}), xid(20.0, 62, gpu=1)], 20.0)
    svc.ingest([E(3000.0, 0, K.THERMAL, None, {})], 3000.0)  # thermal came back: stays open
    svc.tick(3700.0)
    assert svc.rung(1) is Rung.NONE and svc.decisions_for(0)
    states = {r.body["fault"]: r.state for r in store.decisions()}
    assert states == {"thermal": "open", "xid:62": "expired"}
    svc.tick(6700.0)
    assert {r.state for r in store.decisions()} == {"expired"}
    # an RMA waits for the board however quiet the GPU is
    svc.ingest([E(6800.0, 2, K.REMAP, None, {"failure": True})], 6800.0)
    svc.tick(6800.0 + 10 * 3600)
    assert svc.rung(2) is Rung.RMA


def test_a_lost_gpus_decision_stays_open_while_the_gpu_stays_lost(tmp_path):
    """A loss is reported once, when it happens; while the GPU stays lost (its reboot held back:
    advisory mode, a full budget, a tripped breaker) the decision must not expire as if the
    fault had gone. Once the GPU is back, the decision expires a quiet window later."""
    s = LadderSettings(decision_window_seconds=3600)
    store = Store(tmp_path / "r.db")
    svc = LadderService(s, ActionSettings(), store, "n", now_wall=0)
    svc.ingest([E(10.0, 3, K.GPU_LOST, None, {"reason": "GPU is lost"})], 10.0)
    assert svc.rung(3) is Rung.REBOOT_NODE
    for t in range(60, 5 * 3600, 60):  # the daemon's ticks while the GPU stays lost
        svc.still_lost([3], float(t))
        svc.tick(float(t))
    assert svc.rung(3) is Rung.REBOOT_NODE
    assert [r.state for r in store.decisions()] == ["open"]
    svc.still_lost([], 5 * 3600.0)  # back (or the node rebooted): reported no more
    svc.tick(5 * 3600.0 + 3700.0)
    assert svc.rung(3) is Rung.NONE and [r.state for r in store.decisions()] == ["expired"]
    # a GPU with no lost-GPU decision (another fault's, or none) is left as it is
    esc = Escalator()
    esc.feed(xid(100.0, 62, gpu=1))
    assert not esc.still_present((1, None), "gpu_lost", 200.0) and not esc.still_present((2, None), "gpu_lost", 200.0)


def test_restart_closes_what_expired_while_down(tmp_path):
    path = tmp_path / "r.db"
    s = LadderSettings(decision_window_seconds=3600)
    svc = LadderService(s, ActionSettings(), Store(path), "n", now_wall=0)
    svc.ingest([xid(20.0, 62, gpu=1)], 20.0)
    svc.store.close()
    again = LadderService(s, ActionSettings(), Store(path), "n", now_wall=20000.0)
    assert again.rung(1) is Rung.NONE
    assert [r.state for r in again.store.decisions()] == ["expired"]


# --------------------------------------------------------------------------- catch-up

BOOT = 1_700_000_000.0


def kmsg_file(tmp_path, lines):
    """A saved copy of /dev/kmsg records (pri,seq,usec,flags;message)."""
    p = tmp_path / "kmsg"
    p.write_text("".join(f"6,{i},{int((t - BOOT) * 1e6)},-;{m}\n" for i, (t, m) in enumerate(lines))
                 + " SUBSYSTEM=pci\n")
    return str(p)


def test_xids_while_down_are_judged_once(tmp_path):
    store = Store(tmp_path / "r.db")
    svc = LadderService(LadderSettings(), ActionSettings(), store, "n", now_wall=BOOT + 100)
    svc.ingest([xid(BOOT + 100.0, 79, "GPU has fallen off the bus.", gpu=2)], BOOT + 100.0)
    path = kmsg_file(tmp_path, [
        (BOOT + 50.0, "NVRM: Xid (PCI:0000:18:00): 43, pid=1, name=a, Ch 00000001"),  # before
        (BOOT + 99.998, "NVRM: Xid (PCI:0000:86:00): 79, pid='<unknown>', name=<unknown>, "
                        "GPU has fallen off the bus."),  # the stored one
        (BOOT + 500.0, "NVRM: Xid (PCI:0000:18:00): 62, pid=1, name=a, 0000a1e0"),  # while down
        (BOOT + 501.0, "usb 1-1: new high-speed USB device"),
        (BOOT + 502.0, "NVRM: Xid (PCI:0000:99:00): 62, pid=1, name=a, x"),  # not our GPU now
    ])
    logged, source = backlog(path, BOOT + 100.0, BOOT + 1000.0, boot_wall=BOOT, journal=None)
    assert source == path and [x.line.xid for x in logged] == [62, 62]
    gpus = {(0, 0x18, 0): 0, (0, 0x86, 0): 2}
    n = svc.catch_up(logged, gpus, BOOT + 1000.0)
    assert n == 1
    xs = [(f.event.gpu, f.event.details["xid"]) for f in store.faults()]
    assert xs == [(2, 79), (0, 62)]
    assert svc.rung(0) is Rung.RESET_GPU
    assert svc.catch_up(logged, gpus, BOOT + 1000.0) == 0  # a second start: nothing new


def test_catch_up_from_the_journal_when_the_ring_is_gone(tmp_path):
    fake = tmp_path / "journalctl"
    fake.write_text("#!/bin/sh\n"
                    "echo '2023-11-14T22:20:00.000000+0000 n kernel: NVRM: Xid "
                    "(PCI:0000:18:00): 48, pid=1, name=a, An uncorrectable double bit error'\n"
                    "echo '2023-11-14T22:20:01.000000+0000 n systemd[1]: Started x.'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    logged, source = backlog(str(tmp_path / "no-kmsg"), BOOT, BOOT + 3600, boot_wall=BOOT,
                             journal=(str(fake),))
    assert source == "journal" and [(x.line.xid, x.time_wall) for x in logged] == \
        [(48, 1700000400.0)]


def nvl5(code, intr, status, fatal="NonFatal"):
    return (f"SUB {fatal} XC0 i0 Link 3 (0x{intr:08x} 0x{status:08x} 0x0 0x0 0x0 0x0 0x0)")


def test_nvlink5_xids_decoded_by_the_catalog_table():
    d = Escalator().feed(xid(1.0, 144, nvl5(144, 0x1, 0x2)))[0]  # SAW_MVB, fatal error bit
    assert d.rung is Rung.RESET_GPU and d.link == 3 and "diagnostics" in d.investigate
    assert "SAW_MVB" in d.reason
    d = Escalator().feed(xid(1.0, 144, nvl5(144, 0x21, 0x2)))[0]  # the pre-R575 sub-code
    assert d.rung is Rung.RESET_GPU
    d = Escalator().feed(xid(1.0, 144, nvl5(144, 0x1, 0x4)))[0]  # an ignorable bit
    assert d.rung is Rung.NONE and "no action" in d.reason
    # RLW_REMAP: Xid 154 decides when it came along, else restart the application
    d = Escalator().feed(xid(1.0, 145, nvl5(145, 0x4, 0x1)))[0]
    assert d.rung is Rung.RESTART_PROCESS
    esc = Escalator()
    esc.feed(xid(1.0, 154, "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset "
                           "Required)"))
    out = esc.feed(xid(1.5, 145, nvl5(145, 0x4, 0x1)))
    assert out[0].rung is Rung.NONE and "Xid 154 decides" in out[0].reason


def test_nvlink5_decode_only_on_blackwell():
    msg = nvl5(144, 0x1, 0x2)
    assert "SAW_MVB" in Escalator().feed(xid(1.0, 144, msg, architecture="blackwell"))[0].reason
    assert "SAW_MVB" not in Escalator().feed(xid(1.0, 144, msg, architecture="hopper"))[0].reason
