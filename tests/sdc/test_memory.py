from __future__ import annotations

import pytest

from rasd.sdc.faults import InjectedFault
from rasd.sdc.memory import TESTS, memory_check
from rasd.sdc.results import Result

SIZE = 256 << 10


@pytest.mark.parametrize("test", TESTS)
def test_healthy_memory_passes(test: str, make_engine) -> None:
    r = memory_check(make_engine(), SIZE, test, seed=1)
    assert r.result is Result.PASS
    assert r.evidence["tested_bytes"] == SIZE


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("value", [0, 1])
def test_stuck_bit_is_found_at_its_address(test: str, value: int, make_engine) -> None:
    fault = InjectedFault(gpu=0, kind="memory_stuck", addresses=(4099,), bit=5, stuck_value=value)
    r = memory_check(make_engine(0, fault), SIZE, test, seed=2)
    assert r.result is Result.FAIL
    first = r.evidence["first"][0]
    assert first["address"] == 4096  # the 64-bit word holding byte 4099
    assert first["bit_addresses"] == [[4099, 5]]
    assert first["differing_bits"] == [3 * 8 + 5]
    assert first["test"] == test


def test_flipping_bit_is_found_by_every_read_pass(make_engine) -> None:
    fault = InjectedFault(gpu=0, kind="memory_flip", addresses=(80000,), bit=0, probability=1.0)
    r = memory_check(make_engine(0, fault), SIZE, "random", seed=0)
    assert r.result is Result.FAIL
    assert r.evidence["first"][0]["bit_addresses"] == [[80000, 0]]


def test_faults_outside_the_tested_region_are_not_seen(make_engine) -> None:
    fault = InjectedFault(gpu=0, kind="memory_stuck", addresses=(SIZE + 64,), bit=0, stuck_value=1)
    assert memory_check(make_engine(0, fault), SIZE, "march_c_minus", seed=0).result is Result.PASS
