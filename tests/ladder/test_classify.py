"""Table tests over every catalogued Xid and the classification rules."""

from __future__ import annotations

import pytest

from rasd.ladder import catalog
from rasd.ladder.classify import Context, classify
from rasd.ladder.findings import XidSeen
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung, Scope

S = LadderSettings()
IMMEDIATE = {
    "RESTART_APP": {Rung.RESTART_PROCESS},
    "RESET_GPU": {Rung.RESET_GPU},
    "RESTART_VM": {Rung.REBOOT_NODE},
    "RESTART_BM": {Rung.REBOOT_NODE},
    "CHECK_MECHANICALS": {Rung.REBOOT_NODE},
    "IGNORE": {Rung.NONE, Rung.EXCEPTION},
    "UPDATE_SWFW": {Rung.NONE},
    "CONTACT_SUPPORT": {Rung.RESET_GPU},
    "CHECK_UVM": {Rung.NONE},
}


NO_HISTORY = Context()


def xid(code, message=None, gpu=0, t=0.0, ctx=NO_HISTORY):
    return classify(FaultEvent(t, gpu, FaultKind.XID, None, {"xid": code, "message": message}),
                    ctx, S)


def test_table_covers_the_whole_catalog_revision():
    assert sorted(catalog.XIDS) == list(range(1, 173))
    assert len(catalog.CATALOG_SHA256) == 64
    assert all(e.description and e.mnemonic for e in catalog.XIDS.values())


@pytest.mark.parametrize("code", sorted(catalog.XIDS))
def test_every_catalogued_xid(code):
    e = catalog.XIDS[code]
    f = xid(code)
    assert f is not None and f.xid == code and not f.uncatalogued
    assert f.buckets == e.buckets
    assert f.reason
    if e.immediate in IMMEDIATE:
        assert f.rung in IMMEDIATE[e.immediate], (code, e.immediate, f.rung)
    if f.rung is Rung.REBOOT_NODE:
        assert f.scope is Scope.NODE
    if e.immediate == "CHECK_MECHANICALS":
        assert "technician" in f.investigate
    if e.immediate == "CONTACT_SUPPORT":
        assert f.rma_candidate and f.rung < Rung.RMA  # RMA only once confirmed
    if e.immediate == "UPDATE_SWFW":
        assert "software_update" in f.investigate


def test_power_smoothing_xids_flag_only():
    for code in (162, 163, 164, 165):
        f = xid(code)
        assert f.rung is Rung.NONE and "power_smoothing" in f.investigate


def test_uncatalogued_keeps_code():
    f = xid(999)
    assert f.uncatalogued and f.fault == "xid:999" and f.rung is Rung.RESTART_PROCESS


def test_xid13_repeat_same_gpc_tpc_asks_sdc_check():
    msg = "Graphics SM Warp Exception on (GPC 2, TPC 1, SM 0)"
    first = xid(13, msg, t=100)
    assert first.rung is Rung.RESTART_PROCESS and "sdc_check" not in first.investigate
    ctx = Context(recent_xids=(XidSeen(50, 0, 13, "gpc2/tpc1"),))
    assert "sdc_check" in xid(13, msg, t=100, ctx=ctx).investigate
    other = Context(recent_xids=(XidSeen(50, 0, 13, "gpc3/tpc0"),))
    assert "sdc_check" not in xid(13, msg, t=100, ctx=other).investigate
    spread = Context(recent_xids=(XidSeen(50, 0, 13, None), XidSeen(60, 1, 13, None)))
    assert "sdc_check" not in xid(13, None, t=100, ctx=spread).investigate


def test_xid48_with_remap_drains():
    assert xid(48).degradations == ()
    f = xid(48, t=5, ctx=Context(recent_xids=(XidSeen(1, 0, 63),)))
    assert f.rung is Rung.RESET_GPU and "drain" in f.degradations


def test_xid63_after_xid48_drains_then_resets():
    # The driver prints the DBE first and the remap just after: the pair is WORKFLOW_XID_48's
    # "drain, then reset" even though the 48 saw no companion when it arrived.
    assert xid(63).rung is Rung.NONE
    f = xid(63, t=1, ctx=Context(recent_xids=(XidSeen(0.5, 0, 48),)))
    assert f.rung is Rung.RESET_GPU and "drain" in f.degradations and f.hardware
    other_gpu = xid(63, t=1, ctx=Context(recent_xids=(XidSeen(0.5, 2, 48),)))
    assert other_gpu.rung is Rung.NONE
    f64 = xid(64, t=1, ctx=Context(recent_xids=(XidSeen(0.5, 0, 48),)))
    assert f64.rung >= Rung.RESET_GPU and "drain" in f64.degradations


def test_xid45_follows_companion():
    assert xid(45).rung is Rung.RESTART_PROCESS
    assert xid(45, t=3, ctx=Context(recent_xids=(XidSeen(1, 0, 48),))).rung is Rung.NONE


def test_xid74_link_scope_and_registers():
    f = xid(74, "NVLink: fatal error detected on link 5")
    assert f.scope is Scope.LINK and f.link == 5 and f.rung is Rung.RESET_GPU
    assert "stop_p2p" in f.degradations
    parity = "link 5 (0x10, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)"
    assert xid(74, parity).link_parity
    third = xid(74, parity, ctx=Context(link_parity_hits=2))
    assert "disable_link" in third.degradations and "technician" in third.investigate
    benign = xid(74, "link 5 (0x1, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)")
    assert benign.rung is Rung.NONE
    mech = xid(74, "link 5 (0x100, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)")
    assert "technician" in mech.investigate


def test_xid154_follows_reported_action():
    f = xid(154, "GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)")
    assert f.rung is Rung.REBOOT_NODE
    f = xid(154, "GPU recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)")
    assert f.rung is Rung.RESET_GPU and "drain" in f.degradations


def ev(kind, gpu=0, link=None, t=0.0, **details):
    return classify(FaultEvent(t, gpu, kind, link, details), Context(), S)


def test_memory_rules():
    assert ev(FaultKind.ECC, volatile_uncorrected=1).rung is Rung.RESET_GPU
    assert ev(FaultKind.ECC, volatile_uncorrected=0, volatile_corrected=0) is None
    p = ev(FaultKind.REMAP, pending=True, failure=False)
    assert p.rung is Rung.RESET_GPU and "drain" in p.degradations
    assert ev(FaultKind.REMAP, pending=False, failure=True).rung is Rung.RMA
    assert ev(FaultKind.RETIRED_PAGES, single_bit=60, double_bit=3).rung is Rung.RMA
    assert ev(FaultKind.RETIRED_PAGES, single_bit=1, double_bit=16).rung is Rung.RMA
    assert ev(FaultKind.RETIRED_PAGES, single_bit=1, double_bit=2).rung is Rung.NONE


def test_nvlink_pcie_thermal_lost_recovery_sdc():
    d = ev(FaultKind.NVLINK, link=2, state="down")
    assert d.scope is Scope.LINK and d.link == 2 and "stop_p2p" in d.degradations
    assert ev(FaultKind.NVLINK, link=2, state="up") is None
    assert ev(FaultKind.NVLINK, link=2, state="up", replay_errors=1).rung is Rung.RESET_GPU
    assert ev(FaultKind.NVLINK, link=2, state="up", crc_flit_errors=5,
              rate_per_second=5.0).rung is Rung.NONE
    assert ev(FaultKind.NVLINK, link=2, state="up", crc_flit_errors=5000,
              rate_per_second=500.0).rung is Rung.RESET_GPU
    assert ev(FaultKind.PCIE_REPLAY, count=10, lanes=16, gen=4) is None
    hot = ev(FaultKind.PCIE_REPLAY, count=100, lanes=16, gen=4)
    assert hot.rung is Rung.NONE and "technician" in hot.investigate
    assert ev(FaultKind.GPU_LOST).rung is Rung.REBOOT_NODE
    t = ev(FaultKind.THERMAL)
    assert t.rung is Rung.NONE and "cooling" in t.investigate
    assert ev(FaultKind.RECOVERY_ACTION, action="node_reboot").rung is Rung.REBOOT_NODE
    assert ev(FaultKind.RECOVERY_ACTION, action="drain_p2p").degradations == ("stop_p2p",)
    assert ev(FaultKind.SDC, verdict="confirmed").rung is Rung.RMA
    s = ev(FaultKind.SDC, verdict="suspect")
    assert "exclude_gpu" in s.degradations and "sdc_check" in s.investigate
