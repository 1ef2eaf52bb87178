"""Scenario files: packaged ones load; bad ones give one line naming the file and every bad key."""

from __future__ import annotations

import textwrap

import pytest

from rasd.backends.fake import FakeNode
from rasd.backends.fake.scenario import (
    EventKind,
    ScenarioError,
    load_scenario,
    packaged_scenarios,
    parse_scenario,
)

REQUIRED = {"healthy", "xid79", "nvlink-flap", "ecc-burst", "sdc", "chaos", "power-swing"}


def test_every_packaged_scenario_loads_and_binds_to_a_node(mclock):
    names = set(packaged_scenarios())
    assert REQUIRED <= names
    for name in sorted(names):
        scn = load_scenario(name)
        assert scn.description, name
        node = FakeNode(scenario=scn, clock=mclock)
        assert node.gpu_count >= 1


def test_required_scenarios_script_what_their_names_say():
    assert [(e.kind, e.gpus, e.at) for e in load_scenario("xid79").events] == [
        (EventKind.FALL_OFF_BUS, (3,), 2.0)
    ]
    assert {e.kind for e in load_scenario("nvlink-flap").events} >= {EventKind.NVLINK_FLAP}
    ecc = load_scenario("ecc-burst")
    assert any(e.kind is EventKind.ECC and e.params["type"] == "uncorrected" for e in ecc.events)
    assert any(e.kind is EventKind.ROW_REMAP and e.params["pending"] for e in ecc.events)
    sdc = load_scenario("sdc")
    assert sdc.workload.kind == "idle" and sdc.sdc_faults[0].kind == "gemm_bitflip"
    chaos = {e.kind for e in load_scenario("chaos").events}
    assert {EventKind.NVML_HANG, EventKind.NVML_ERROR, EventKind.FALL_OFF_BUS, EventKind.RESET} <= chaos
    assert load_scenario("healthy").events == ()
    assert load_scenario("power-swing").workload.comm_power_ratio < 0.3


def test_load_by_path_and_unknown_name(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[[event]]\nkind = "xid"\nat = 1\ngpu = 0\nxid = 31\n')
    scn = load_scenario(str(p))
    assert scn.name == "mine" and scn.events[0].params["xid"] == 31
    assert "MMU Fault" in scn.events[0].params["message"]  # default driver text
    with pytest.raises(ScenarioError) as e:
        load_scenario("no-such-scenario")
    assert "healthy" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.toml")


def _problems(text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(textwrap.dedent(text), source="bad.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("bad.toml: ")
    return msg


def test_every_problem_is_collected_on_one_line():
    msg = _problems("""
        [node]
        gpus = 4

        [[event]]
        kind = "xid"
        at = 1

        [[event]]
        kind = "ecc"
        at = -3
        gpu = 1
        type = "medium"

        [[event]]
        kind = "nvlink_errors"
        at = 0
        gpu = 9
        link = 2
        counter = "crc_flit"
        rate_per_second = 5

        [[event]]
        kind = "teleport"
        at = 0
        """)
    assert "event[0].gpu: is required" in msg
    assert "event[0].xid: is required" in msg
    assert "event[1].at: -3 is out of range" in msg
    assert "event[1].type: unknown value 'medium'; use one of corrected, uncorrected" in msg
    assert "event[2].duration_seconds: is required for nvlink_errors" in msg
    assert "event[3].kind: unknown value 'teleport'" in msg


def test_gpu_and_link_ranges_are_checked_against_the_node():
    msg = _problems("""
        [node]
        gpus = 4

        [[event]]
        kind = "nvlink_down"
        at = 0
        gpu = 4
        link = 18

        [[event]]
        kind = "xid"
        at = 0
        gpu = 0
        """)
    assert "event[1].xid: is required" in msg  # reported together with the binding problems
    assert "event[0].gpu: GPU 4 does not exist; this node has GPUs 0..3" in msg
    assert "event[0].link: h100-sxm-80gb has links 0..17" in msg


def test_profile_features_are_checked():
    msg = _problems("""
        [node]
        profile = "h100-sxm-80gb"

        [[event]]
        kind = "retired_pages"
        at = 0
        gpu = 0
        cause = "double_bit"
        """)
    assert "event[0].kind: h100-sxm-80gb has no page retirement" in msg and "v100-sxm2-32gb" in msg


def test_node_binding_is_checked_when_the_node_is_smaller(mclock):
    scn = parse_scenario('[[event]]\nkind = "xid"\nat = 1\ngpu = 6\nxid = 13\n', source="s.toml")
    with pytest.raises(ScenarioError, match=r"s.toml: event\[0\].gpu: GPU 6 does not exist"):
        FakeNode(scenario=scn, gpu_count=4, clock=mclock)


def test_typos_wrong_types_and_bad_windows():
    msg = _problems("""
        descripton = "typo"

        [workload]
        kind = "inference"
        step_seconds = "fast"

        [[event]]
        kind = "thermal"
        at = 5
        until = 2
        gpu = "three"

        [[event]]
        kind = "xid"
        at = 1
        gpu = 0
        xid = 79
        duration_seconds = 3

        [[event]]
        kind = "nvml_error"
        at = 0
        function = "GetPower"
        error = "on_fire"
        """)
    assert "descripton: unknown key" in msg
    assert "workload.kind: unknown value 'inference'" in msg
    assert "workload.step_seconds: 'fast' is not a number" in msg
    assert "event[0].until: 2.0 is before at = 5.0" in msg
    assert "event[0].gpu: 'three' is not a GPU index" in msg
    assert "event[1].duration_seconds: xid happens at one instant" in msg
    assert "event[2].function: 'GetPower' is not an NVML function name" in msg
    assert "event[2].error: unknown value 'on_fire'" in msg


def test_sdc_fault_validation():
    msg = _problems("""
        [[sdc_fault]]
        gpu = 1
        kind = "gemm_bitflip"
        bit = 40
        dtypes = ["float32"]
        fraction = 2.0

        [[sdc_fault]]
        gpu = 2
        kind = "memory_stuck"
        stuck_value = 3
        min_size = 100
        max_size = 10
        """)
    assert "sdc_fault[0].bit: 40 does not exist in float32 (32 bits)" in msg
    assert "sdc_fault[0].fraction: 2.0 is out of range" in msg
    assert "sdc_fault[1].addresses: memory_stuck needs byte offsets" in msg
    assert "sdc_fault[1].stuck_value: 3 is out of range" in msg
    assert "sdc_fault[1].max_size: 10 is below min_size = 100" in msg


def test_not_toml_at_all():
    msg = _problems("[[event]\nkind = ")
    assert "not valid TOML" in msg
