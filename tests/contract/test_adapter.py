"""The adapter contract: every reading and every error rule, through the real NvmlAdapter.

Runs against the fake NVML always, and against real NVML where a GPU is present (``-m nvml``
tests; skipped otherwise). Fault-injection cases need the fake's scenarios, so they run on it only.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from rasd.backends import open_backend
from rasd.backends.errors import BackendUnavailable, GpuLost
from rasd.model import FaultKind, Health
from rasd.telemetry.aggregate import Aggregator
from rasd.telemetry.poller import GpuPoller


def _real_nvml():
    try:
        return open_backend("nvml")
    except BackendUnavailable as e:
        pytest.skip(f"no real NVML here: {e}")


@pytest.fixture(params=["fake", pytest.param("nvml", marks=pytest.mark.nvml)])
def backend(request, fake):
    if request.param == "fake":
        yield fake()
    else:
        be = _real_nvml()
        yield be
        be.close()


# ----------------------------------------------------------------------------- every reading


def test_identity_is_complete(backend):
    gpus = backend.adapter.gpus()
    assert gpus, "at least one GPU"
    uuids = set()
    for g in gpus:
        ident = g.identity()
        assert ident.index == g.index
        assert ident.uuid.startswith(("GPU-", "MIG-"))
        uuids.add(ident.uuid)
        assert ident.name and ident.name != "unknown"
        assert ":" in ident.pci_bus_id
        assert ident.nvlink_count >= 0
    assert len(uuids) == len(gpus)
    node = backend.adapter.node_identity("host", backend.name)
    assert node.driver_version and node.nvml_version


def test_poll_returns_every_reading_in_base_units(backend):
    for g in backend.adapter.gpus():
        s = g.poll()
        assert s.index == g.index and s.poll_seconds >= 0
        # power in watts, not mW
        for w in (s.power_instant_watts, s.power_average_watts, s.power_limit_watts):
            assert w is None or 0 <= w < 3000
        assert s.power_limit_min_watts is None or s.power_limit_min_watts <= s.power_limit_max_watts
        assert s.energy_joules is None or s.energy_joules >= 0
        assert s.temperature_gpu_celsius is None or 0 < s.temperature_gpu_celsius < 130
        assert s.clock_sm_hz is None or s.clock_sm_hz > 1e6  # Hz, not MHz
        assert s.utilization_gpu_ratio is None or 0 <= s.utilization_gpu_ratio <= 1
        assert s.memory_total_bytes is None or s.memory_total_bytes > 2**30
        assert s.pcie_link_width_max is None or s.pcie_link_width_max in (1, 2, 4, 8, 16, 32)
        for ln in s.nvlinks:
            assert ln.up in (True, False, None)
            for c in (ln.crc_flit_errors, ln.crc_data_errors, ln.replay_errors, ln.recovery_errors):
                assert c is None or c >= 0
        instant = g.instant_power()
        if instant is not None:
            watts, ts = instant
            assert 0 <= watts < 3000 and ts > 0


def test_fake_h100_profile_matches_the_real_part(fake):
    be = fake()
    gpus = be.adapter.gpus()
    assert len(gpus) == 8
    s = gpus[0].poll()
    ident = gpus[0].identity()
    assert "H100" in ident.name and ident.nvlink_count == 18
    assert s.power_limit_max_watts == pytest.approx(700)
    assert (s.pcie_link_gen_max, s.pcie_link_width_max) == (5, 16)
    assert s.ecc_enabled is True and s.remap_pending is False
    assert s.retired_pages_single_bit is None  # Hopper: page retirement is NotSupported
    assert s.temperature_memory_celsius is not None and s.recovery_action == 0
    assert len(s.nvlinks) == 18 and all(ln.up for ln in s.nvlinks)


def test_instant_power_refreshes_every_100ms_and_repeats_in_between(fake, clock):
    g = fake(clock=clock).adapter.gpus()[0]
    stamps = []
    for _ in range(40):  # 2 s at 20 Hz
        stamps.append(g.instant_power()[1])
        clock.advance(0.05)
    distinct = len(set(stamps))
    assert 19 <= distinct <= 21  # ~10 distinct updates per second
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))


def test_same_seed_same_run(fake):
    from rasd.backends.fake.clock import ManualClock

    runs = []
    for _ in range(2):
        c = ManualClock()
        g = fake(seed=7, clock=c).adapter.gpus()[0]
        trace = []
        for _ in range(30):
            trace.append(g.instant_power()[0])
            c.advance(0.1)
        runs.append(trace)
    assert runs[0] == runs[1]
    assert max(runs[0]) - min(runs[0]) > 50  # the workload swings


# ----------------------------------------------------------------------------- error rules


def test_not_supported_is_absent_and_logged_once(fake, caplog):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetPcieReplayCounter"
        error = "not_supported"
        """
    )
    g = be.adapter.gpus()[1]
    with caplog.at_level(logging.INFO, logger="rasd.nvml"):
        for _ in range(3):
            s = g.poll()
            assert s.pcie_replays is None
    assert "pcie_replays" in g.unsupported()
    logged = [r for r in caplog.records if "reading_unsupported" in r.getMessage() and "pcie_replays" in r.getMessage()]
    assert len(logged) == 1
    assert not g.error_counts()  # absent, not an error
    assert be.adapter.gpus()[0].poll().pcie_replays is not None  # other GPUs unaffected


@pytest.mark.parametrize("error,kind", [("unknown", "unknown"), ("timeout", "timeout"), ("no_permission", "no_permission")])
def test_transient_errors_are_counted_and_retried(fake, error, kind):
    be = fake(
        f"""
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 2
        function = "nvmlDeviceGetTemperatureV"
        error = "{error}"
        calls = 2
        """
    )
    g = be.adapter.gpus()[2]
    assert g.poll().temperature_gpu_celsius is None
    assert g.poll().temperature_gpu_celsius is None
    assert g.error_counts() == {("temperature_gpu", kind): 2}
    assert g.poll().temperature_gpu_celsius is not None  # retried, and it recovered


def test_lost_gpu_is_a_fault_and_others_carry_on(fake, clock):
    be = fake(
        """
        [[event]]
        kind = "fall_off_bus"
        at = 1
        gpu = 3
        """,
        clock=clock,
    )
    gpus = be.adapter.gpus()
    pollers = [GpuPoller(g, 1.0, 2.0, clock=clock) for g in gpus]
    agg = Aggregator()
    for p in pollers:
        p.poll_once()
    clock.advance(2)
    events = []
    states = {}
    for p in pollers:
        p.poll_once()
        st, ev = agg.update(p.view(), 2000.0)
        states[p.index] = st
        events += ev
    assert states[3].health is Health.LOST
    assert all(states[i].health is Health.UP for i in states if i != 3)
    lost = [e for e in events if e.kind is FaultKind.GPU_LOST]
    assert [e.gpu for e in lost] == [3]
    with pytest.raises(GpuLost):
        gpus[3].poll()
    # reported once, not every poll
    pollers[3].poll_once()
    _, again = agg.update(pollers[3].view(), 2001.0)
    assert not [e for e in again if e.kind is FaultKind.GPU_LOST]


def test_a_hung_call_stalls_only_its_gpu(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_hang"
        at = 0
        gpu = 4
        function = "nvmlDeviceGetTotalEccErrors"
        seconds = 3
        calls = 1
        """
    )
    gpus = be.adapter.gpus()
    pollers = [GpuPoller(g, 0.1, 0.5) for g in gpus]
    hung = threading.Thread(target=pollers[4].poll_once, daemon=True)
    t0 = time.monotonic()
    hung.start()
    for p in pollers:
        if p.index != 4:
            p.poll_once()
    others_took = time.monotonic() - t0
    assert others_took < 2.5, "other GPUs waited on the hung one"
    # power keeps flowing on the hung GPU's neighbours and even on itself (another call)
    assert gpus[0].instant_power() is not None
    time.sleep(0.6)
    view = pollers[4].view()
    assert view.stalled and view.overruns == 1
    agg = Aggregator()
    st, _ = agg.update(view, time.time())
    assert st.health is Health.STALE
    assert all(not p.view().stalled for p in pollers if p.index != 4)
    hung.join(5)
    view = pollers[4].view()
    assert not view.stalled and view.overruns == 1  # counted once, then it recovered


def test_counter_reset_never_exports_a_decrease(fake, clock):
    be = fake(
        """
        [[event]]
        kind = "ecc"
        at = 1
        gpu = 0
        type = "corrected"
        count = 40

        [[event]]
        kind = "reset"
        at = 3
        gpu = 0

        [[event]]
        kind = "ecc"
        at = 5
        gpu = 0
        type = "corrected"
        count = 2
        """,
        clock=clock,
    )
    p = GpuPoller(be.adapter.gpus()[0], 1.0, 2.0, clock=clock)
    agg = Aggregator()
    totals, energy, raws = [], [], []
    for _ in range(7):
        p.poll_once()
        st, _ = agg.update(p.view(), clock())
        totals.append(st.counters["ecc_volatile_corrected"])
        energy.append(st.counters["energy_joules"])
        raws.append(st.sample.ecc_volatile_corrected)
        clock.advance(1.0)
    assert min(raws[3:5]) < max(raws[:3]), "the scenario's reset should zero the raw counter"
    assert all(b >= a for a, b in zip(totals, totals[1:]))
    assert all(b >= a for a, b in zip(energy, energy[1:]))
    assert totals[-1] == 42
    assert st.counter_resets >= 1


def test_xid_events_arrive_with_driver_message(fake, clock):
    from rasd.telemetry.xid import XidWatcher

    be = fake(
        """
        [[event]]
        kind = "xid"
        at = 0.5
        gpu = 5
        xid = 48
        message = "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0."
        """,
        clock=clock,
    )
    w = XidWatcher(be.adapter, be.kernel_log(""), wait_ms=50)
    w.start()
    try:
        clock.advance(1.0)
        deadline = time.monotonic() + 3
        got = []
        while not got and time.monotonic() < deadline:
            got = w.drain()
            time.sleep(0.02)
    finally:
        w.stop()
        w.join(2)
    assert [(x.gpu, x.xid) for x in got] == [(5, 48)]
    assert "double bit error" in (got[0].message or "")


@pytest.mark.nvml
def test_real_xid_wait_times_out_quietly():
    from rasd.telemetry.xid import XidWatcher

    be = _real_nvml()
    try:
        es = be.adapter.xid_event_set()
        assert es.wait(10) is None or isinstance(es.wait(10), tuple)
        es.close()
        XidWatcher(be.adapter, None, 10)
    finally:
        be.close()


def test_an_unsupported_reading_is_logged_once_across_its_re_probes(fake, caplog):
    """Field-only readings (recovery action before R570) are asked again every REPROBE_POLLS polls
    like every unsupported reading; the log says so once a GPU, not every five minutes."""
    from rasd.backends.nvml.core import REPROBE_POLLS

    be = fake('[node]\nprofile = "v100-sxm2-32gb"\ngpus = 1\n')
    g = be.adapter.gpus()[0]
    with caplog.at_level(logging.INFO, logger="rasd.nvml"):
        for _ in range(2 * REPROBE_POLLS + 3):
            g.poll(slow=False)
    unsupported = g.unsupported()
    assert unsupported, "the V100 profile has readings it does not support"
    for reading in unsupported:
        logged = [r for r in caplog.records
                  if "reading_unsupported" in r.getMessage() and f"reading={reading}" in r.getMessage()]
        assert len(logged) == 1, (reading, len(logged))
