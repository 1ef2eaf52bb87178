"""Escalation rules and hypothesis properties of the ladder."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rasd.ladder.escalate import Escalator
from rasd.ladder.settings import LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung, Scope

E, K = FaultEvent, FaultKind


def rungs(esc, gpu, link=None):
    return max((d.rung for d in esc.open.get((gpu, link), {}).values()), default=Rung.NONE)


def remedy(t, gpu, action, result="ok"):
    return E(t, gpu, K.REMEDY, None, {"action": action, "result": result})


def test_two_resets_that_do_not_hold_reboot_then_two_reboots_rma():
    esc = Escalator()
    ecc = lambda t: E(t, 0, K.ECC, None, {"volatile_uncorrected": 1})  # noqa: E731
    assert esc.feed(ecc(0))[0].rung is Rung.RESET_GPU
    esc.feed(remedy(10, 0, "reset_gpu"))
    assert esc.feed(ecc(100))[0].rung is Rung.RESET_GPU  # first reset did not hold
    esc.feed(remedy(110, 0, "reset_gpu"))
    d = esc.feed(ecc(200))[0]
    assert d.rung is Rung.REBOOT_NODE and d.scope is Scope.NODE and d.escalated
    esc.feed(remedy(210, 0, "reboot_node"))
    assert esc.feed(ecc(300))[0].rung is Rung.REBOOT_NODE
    esc.feed(remedy(310, 0, "reboot_node"))
    assert esc.feed(ecc(400))[0].rung is Rung.RMA


def test_cure_that_holds_does_not_climb():
    esc = Escalator()
    esc.feed(E(0, 0, K.ECC, None, {"volatile_uncorrected": 1}))
    esc.feed(remedy(10, 0, "reset_gpu"))
    assert rungs(esc, 0) is Rung.NONE
    later = 10 + esc.s.cure_window_seconds + 1
    d = esc.feed(E(later, 0, K.ECC, None, {"volatile_uncorrected": 1}))[0]
    assert d.rung is Rung.RESET_GPU and not d.escalated


def test_failed_remedy_climbs_at_once():
    esc = Escalator()
    esc.feed(E(0, 1, K.XID, None, {"xid": 95}))
    d = esc.feed(remedy(5, 1, "reset_gpu", "failed"))[0]
    assert d.rung is Rung.REBOOT_NODE and d.escalated


def test_same_xid_five_times_a_day_is_rma_bursts_count_once():
    esc = Escalator()
    out = []
    for i in range(4):
        for j in range(3):  # a burst within 3 minutes counts once
            out += esc.feed(E(i * 3600 + j * 30, 2, K.XID, None, {"xid": 62}))
    assert rungs(esc, 2) is Rung.RESET_GPU
    out += esc.feed(E(5 * 3600, 2, K.XID, None, {"xid": 62}))
    assert out[-1].rung is Rung.RMA and "technician" in out[-1].investigate


def test_higher_supersedes_lower_never_reverse():
    esc = Escalator()
    esc.feed(E(0, 0, K.XID, None, {"xid": 62}))  # reset
    esc.feed(E(1, 0, K.GPU_LOST, None, {}))  # reboot supersedes the reset
    assert [d.fault for d in esc.open[(0, None)].values()] == ["gpu_lost"]
    assert "drain" in esc.open[(0, None)]["gpu_lost"].degradations
    esc.feed(E(2, 0, K.ECC, None, {"volatile_uncorrected": 1}))  # lower: kept, not in force
    assert rungs(esc, 0) is Rung.REBOOT_NODE


def test_one_open_decision_per_fault():
    esc = Escalator()
    assert esc.feed(E(0, 0, K.THERMAL, None, {}))
    assert esc.feed(E(1, 0, K.THERMAL, None, {})) == []


def test_link_flap_disables_link():
    esc = Escalator()
    for t in (0, 60, 120):
        out = esc.feed(E(t, 0, K.NVLINK, 7, {"link": 7, "state": "down"}))
    assert out[0].fault == "nvlink_flap" and "disable_link" in out[0].degradations
    assert "technician" in out[0].investigate and out[0].link == 7


def test_sdc_suspect_excludes_until_cleared():
    esc = Escalator()
    esc.feed(E(0, 4, K.SDC, None, {"verdict": "suspect"}))
    assert "exclude_gpu" in esc.open[(4, None)]["sdc"].degradations
    d = esc.feed(E(50, 4, K.SDC, None, {"verdict": "cleared"}))
    assert d and d[0].rung is Rung.NONE and not esc.open[(4, None)]


# ---------------------------------------------------------------------------- properties

kinds = st.sampled_from(["xid", "ecc", "remap", "nvlink", "pcie", "lost", "thermal", "sdc",
                         "recovery"])


@st.composite
def fault_events(draw, gpus=4):
    n = draw(st.integers(1, 40))
    t = 0.0
    out = []
    for _ in range(n):
        t += draw(st.floats(0, 20000))
        gpu = draw(st.integers(0, gpus - 1))
        k = draw(kinds)
        if k == "xid":
            code = draw(st.sampled_from([13, 31, 43, 45, 48, 62, 63, 64, 74, 79, 94, 95, 119,
                                         154, 1, 999]))
            msg = draw(st.sampled_from([None, "link 3", "(GPC 1, TPC 2)",
                                        "to 0x2 (Node Reboot Required)"]))
            out.append(E(t, gpu, K.XID, None, {"xid": code, "message": msg}))
        elif k == "ecc":
            out.append(E(t, gpu, K.ECC, None, {"volatile_uncorrected": draw(st.integers(0, 2))}))
        elif k == "remap":
            out.append(E(t, gpu, K.REMAP, None, {"pending": draw(st.booleans()),
                                                 "failure": draw(st.booleans())}))
        elif k == "nvlink":
            link = draw(st.integers(0, 3))
            out.append(E(t, gpu, K.NVLINK, link, {"link": link, "state":
                                                  draw(st.sampled_from(["up", "down"])),
                                                  "replay_errors": draw(st.integers(0, 2))}))
        elif k == "pcie":
            out.append(E(t, gpu, K.PCIE_REPLAY, None, {"count": draw(st.integers(0, 200))}))
        elif k == "lost":
            out.append(E(t, gpu, K.GPU_LOST, None, {}))
        elif k == "thermal":
            out.append(E(t, gpu, K.THERMAL, None, {}))
        elif k == "sdc":
            out.append(E(t, gpu, K.SDC, None, {"verdict": draw(st.sampled_from(
                ["suspect", "confirmed", "inconclusive"]))}))
        else:
            out.append(E(t, gpu, K.RECOVERY_ACTION, None, {"action": draw(st.sampled_from(
                ["none", "gpu_reset", "node_reboot", "drain_p2p", "drain_and_reset"]))}))
    return out


def _all_rungs(esc):
    return {c: max(d.rung for d in ds.values()) for c, ds in esc.open.items() if ds}


@settings(max_examples=150, deadline=None)
@given(fault_events())
def test_without_a_cure_the_rung_never_falls(events):
    # within the decision window: a fault that stays away longer expires by design
    esc = Escalator(LadderSettings(decision_window_seconds=1e12))
    before: dict = {}
    for e in events:
        esc.feed(e)
        now = _all_rungs(esc)
        for comp, r in before.items():
            assert now.get(comp, Rung.NONE) >= r, (comp, r, now.get(comp))
        before = now


@settings(max_examples=150, deadline=None)
@given(fault_events(), st.integers(0, 3), st.integers(0, 17),
       st.sampled_from(["down", "errors", "xid74"]))
def test_a_link_fault_changes_only_its_link(events, gpu, link, how):
    esc = Escalator()
    esc.feed_all(events)
    t = (events[-1].time_wall if events else 0) + 1
    snapshot = {c: dict(ds) for c, ds in esc.open.items()}
    if how == "down":
        e = E(t, gpu, K.NVLINK, link, {"link": link, "state": "down"})
    elif how == "errors":
        e = E(t, gpu, K.NVLINK, link, {"link": link, "state": "up", "recovery_errors": 3})
    else:
        e = E(t, gpu, K.XID, None, {"xid": 74, "message": f"fatal error on link {link}"})
    out = esc.feed(e)
    for d in out:
        assert d.scope is Scope.LINK and d.link == link and d.gpu == gpu
    for comp, ds in esc.open.items():
        if comp != (gpu, link):
            assert ds == snapshot.get(comp, {}), comp


@settings(max_examples=80, deadline=None)
@given(fault_events())
def test_replaying_twice_gives_identical_decisions(events):
    assert Escalator().feed_all(events) == Escalator().feed_all(events)


@settings(max_examples=80, deadline=None)
@given(fault_events())
def test_forgetting_what_no_window_reaches_changes_no_decision(events):
    import rasd.ladder.escalate as escalate

    swept = Escalator()
    escalate.SWEEP_SECONDS, before = 0.0, escalate.SWEEP_SECONDS  # sweep before every event
    try:
        with_sweeps = swept.feed_all(events)
    finally:
        escalate.SWEEP_SECONDS = before
    kept = Escalator(sweep=False)
    assert with_sweeps == kept.feed_all(events)


@settings(max_examples=80, deadline=None)
@given(fault_events())
def test_a_ladder_that_keeps_no_components_decides_the_same(events):
    """A replay's ladders keep no list of the GPUs and links seen (its report reads none):
    the same steps, and nothing kept in those sets."""
    kept, bare = Escalator(sweep=False), Escalator(sweep=False, components=False)
    for e in events:
        assert kept.feed(e) == bare.feed(e)
    assert bare.gpus_seen == set() and bare.links_seen == set()
    assert kept.gpus_seen == {e.gpu for e in events}
