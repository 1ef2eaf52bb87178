"""The health poll's batched field read: one nvmlDeviceGetFieldValues call per GPU and poll that
answers what the one-by-one calls answer, under the same error rules.

The fake and real NVML (``-m nvml``, skipped without a GPU) run here; NVIDIA's mock runs the same
comparison through the real pynvml in test_mock_nvml.py.
"""

from __future__ import annotations

import pytest

from rasd.backends import open_backend
from rasd.backends.errors import BackendUnavailable, GpuLost
from tests.contract.fieldcheck import both_ways, disagreements


FAKE_PROFILES = ("h100-sxm-80gb", "a100-sxm4-80gb", "v100-sxm2-32gb", "gb200", "b200")


@pytest.fixture(params=[*FAKE_PROFILES, pytest.param("nvml", marks=pytest.mark.nvml)])
def backend(request, fake):
    if request.param in FAKE_PROFILES:
        yield fake(f'[node]\nprofile = "{request.param}"\ngpus = 2\n')
    else:
        try:
            be = open_backend("nvml")
        except BackendUnavailable as e:
            pytest.skip(f"no real NVML here: {e}")
        yield be
        be.close()


def test_fields_answer_what_their_calls_answer(backend):
    for g in backend.adapter.gpus():
        rows = both_ways(g)
        assert rows, "readings with a field standing in for their call"
        assert disagreements(rows) == []


def _count_calls(lib):
    """Wrap the library's device calls to count them (the adapter looks them up at first use)."""
    counts: dict[str, int] = {}
    for name in dir(lib):
        if name.startswith("nvmlDevice") and callable(fn := getattr(lib, name)):
            def counted(*a, _fn=fn, _name=name, **k):
                counts[_name] = counts.get(_name, 0) + 1
                return _fn(*a, **k)
            setattr(lib, name, counted)
    return counts


def test_one_field_values_call_per_gpu_and_poll(fake):
    be = fake()
    counts = _count_calls(be.adapter.lib)
    g = be.adapter.gpus()[0]
    links = g.identity().nvlink_count  # the link count is a field read of its own, once
    counts.clear()
    g.poll()  # the first poll reads the slow part too
    assert counts["nvmlDeviceGetFieldValues"] == 1
    assert "nvmlDeviceGetPowerUsage" not in counts and "nvmlDeviceGetTotalEccErrors" not in counts
    # NVLink: the state by call; DL replay and recovery by field (the link in scopeId); CRC flit
    # and data by their per-link field ids on links 0-11, by call on the rest
    assert counts["nvmlDeviceGetNvLinkState"] == links
    assert counts.get("nvmlDeviceGetNvLinkErrorCounter", 0) == 2 * max(0, links - 12)
    counts.clear()
    g.poll(slow=False)
    assert counts["nvmlDeviceGetFieldValues"] == 1
    assert sum(counts.values()) == 7  # + utilisation, memory, temperature, 2 clocks, clock-event reasons


def test_an_unsupported_field_falls_back_to_its_call_for_good(fake):
    """A driver without a field answers NOT_SUPPORTED in that entry: the call answers instead,
    on this and every later poll, and nothing is marked unsupported or counted."""
    be = fake()
    g = be.adapter.gpus()[0]
    lib = be.adapter.lib
    real = lib.nvmlDeviceGetFieldValues
    fid = g.fids.power_average

    def without_185(handle, ids, **kw):
        out = real(handle, ids, **kw)
        for e in out:
            if e.fieldId == fid:
                e.nvmlReturn = lib.NVML_ERROR_NOT_SUPPORTED
        return out

    lib.nvmlDeviceGetFieldValues = without_185
    calls = _count_calls(lib)
    for _ in range(3):
        assert g.poll(slow=False).power_average_watts == lib.nvmlDeviceGetPowerUsage(g.raw) / 1000.0
    assert calls["nvmlDeviceGetPowerUsage"] == 6  # the poll's and the check's, every time
    assert "power_usage" not in g.unsupported() and not g.error_counts()


def test_an_entry_error_is_counted_under_its_reading_and_retried(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 1
        function = "nvmlDeviceGetTotalEccErrors"
        error = "unknown"
        calls = 1
        """
    )
    g = be.adapter.gpus()[1]
    s = g.poll()
    assert s.ecc_volatile_corrected is None and s.ecc_aggregate_uncorrected is None
    assert g.error_counts()[("ecc_volatile_corrected", "unknown")] == 1
    assert g.poll().ecc_volatile_corrected == 0  # asked again, and it answered


def test_the_whole_call_failing_reads_each_reading_by_its_call(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 0
        function = "nvmlDeviceGetFieldValues"
        error = "unknown"
        """
    )
    g = be.adapter.gpus()[0]
    s = g.poll()
    assert s.power_instant_watts is None  # a field only
    assert s.power_average_watts is not None and s.energy_joules is not None and s.ecc_volatile_corrected == 0
    assert set(g.error_counts()) == {("field_values", "unknown")}  # the call's failure, nothing else


def test_a_lost_gpu_in_an_entry_stops_the_poll(fake):
    be = fake(
        """
        [[event]]
        kind = "nvml_error"
        at = 0
        gpu = 0
        function = "nvmlDeviceGetEnforcedPowerLimit"
        error = "gpu_is_lost"
        """
    )
    with pytest.raises(GpuLost):
        be.adapter.gpus()[0].poll()


def test_an_unsupported_field_is_skipped_then_asked_again_after_the_reprobe_interval(fake):
    """A field-only reading the GPU lacks (recovery action before R570 drivers) is asked once,
    left out of the batch for REPROBE_POLLS polls, then asked again."""
    from rasd.backends.nvml.core import REPROBE_POLLS

    be = fake('[node]\nprofile = "v100-sxm2-32gb"\ngpus = 1\n')
    g = be.adapter.gpus()[0]
    lib = be.adapter.lib
    real = lib.nvmlDeviceGetFieldValues
    fid = g.fids.recovery_action
    asked: list[bool] = []

    def recording(handle, ids, **kw):
        asked.append(fid in list(ids))
        return real(handle, ids, **kw)

    g.identity()
    lib.nvmlDeviceGetFieldValues = recording
    for _ in range(REPROBE_POLLS + 2):
        assert g.poll(slow=False).recovery_action is None
    assert "recovery_action" in g.unsupported()
    assert asked[0] and not any(asked[1:REPROBE_POLLS]) and asked[REPROBE_POLLS] and not asked[REPROBE_POLLS + 1]


def test_the_nvlink_readings_are_one_set_for_the_node_and_a_fallback_stays_on_its_gpu(fake):
    """The slow poll's per-link readings are built once for every GPU with the same field ids
    (not once a GPU: 72 of them on an 18-link GPU); which of them goes by call is each GPU's own."""
    be = fake(gpus=2)
    g0, g1 = be.adapter.gpus()
    lib = be.adapter.lib
    p0, p1 = g0._plan(True, True), g1._plan(True, True)
    links0 = [b for b in p0.readings if isinstance(b.key, tuple)]
    links1 = [b for b in p1.readings if isinstance(b.key, tuple)]
    assert len(links0) == 4 * g0._links() > 0
    assert all(a is b for a, b in zip(links0, links1, strict=True))
    target = next(b for b in links0 if b.ids)
    real = lib.nvmlDeviceGetFieldValues

    def unsupported_on_gpu0(handle, ids, **kw):
        out = real(handle, ids, **kw)
        if handle is g0.raw:
            for e in out:
                if (e.fieldId, e.scopeId) == target.ids[0] or e.fieldId == target.ids[0]:
                    e.nvmlReturn = lib.NVML_ERROR_NOT_SUPPORTED
        return out

    lib.nvmlDeviceGetFieldValues = unsupported_on_gpu0
    calls = _count_calls(lib)
    s0, s1 = g0.poll(slow=True), g1.poll(slow=True)
    assert target.key in g0._by_call and target.key not in g1._by_call
    # links without a per-link field id go by call on both GPUs; GPU 0's one counter joins them
    always = sum(1 for b in links0 if not b.ids)
    assert calls.get("nvmlDeviceGetNvLinkErrorCounter", 0) == 2 * always + 1
    link, field = target.key
    assert getattr(s0.nvlinks[link], field) == getattr(s1.nvlinks[link], field) is not None
