"""Field-value entries read out at once agree with reading them member by member through ctypes."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from rasd.backends.nvml import pynvml_module
from rasd.backends.nvml.values import entries, plain_field_value

# every nvmlValueType_t pynvml names, with the member its value is in
MEMBERS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}
UNNAMED_TYPE = 99  # a valueType the binding does not name: read as the unsigned long long


def by_members(lib: Any, values: Any) -> list[tuple[int, int, float, int]]:
    """What each entry says, member by member (the reading nvml.h's documentation describes)."""
    out = []
    for v in values:
        member = next((m for c, m in MEMBERS.items() if getattr(lib, c) == v.valueType), "ullVal")
        value = float(getattr(v.value, member)) if v.nvmlReturn == 0 else 0.0
        out.append((int(v.fieldId), int(v.nvmlReturn), value, int(v.timestamp)))
    return out


entry = st.tuples(
    st.integers(0, 2**32 - 1),  # field id
    st.integers(0, 2**32 - 1),  # scope id
    st.integers(-(2**63), 2**63 - 1),  # timestamp
    st.sampled_from([*MEMBERS, UNNAMED_TYPE]),
    st.sampled_from([0, 0, 0, 3, 15, 999]),  # nvmlReturn: mostly success
    st.binary(min_size=8, max_size=8),  # the value union's bytes, whatever the type
)


def fill(lib: Any, kind: Any, rows: list[tuple[Any, ...]]) -> Any:
    arr = (kind * len(rows))()
    for e, (fid, scope, ts, vtype, ret, raw) in zip(arr, rows):
        e.fieldId, e.scopeId, e.timestamp, e.nvmlReturn = fid, scope, ts, ret
        e.latencyUsec = 12345
        e.valueType = getattr(lib, vtype) if isinstance(vtype, str) else vtype
        ctypes.memmove(ctypes.addressof(e) + type(e).value.offset, raw, 8)
    return arr


@settings(max_examples=300, deadline=None)
@given(st.lists(entry, min_size=1, max_size=24))
def test_entries_read_at_once_are_the_members_values(rows: list[tuple[Any, ...]]) -> None:
    lib = pynvml_module()
    for kind in (lib.c_nvmlFieldValue_t, plain_field_value(lib)):
        arr = fill(lib, kind, rows)
        got = entries(lib, arr)
        want = by_members(lib, arr)
        # NaN payloads compare by their bits; everything else by value
        assert [(f, r, repr(v), t) for f, r, v, t in got] == [(f, r, repr(v), t) for f, r, v, t in want]


def test_signed_and_narrow_members_keep_their_sign_and_width() -> None:
    lib = pynvml_module()
    rows = [
        (1, 0, 7, "NVML_VALUE_TYPE_SIGNED_INT", 0, (-5).to_bytes(4, "little", signed=True) + b"\xff" * 4),
        (2, 0, 7, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 0, (-(2**40)).to_bytes(8, "little", signed=True)),
        (3, 0, 7, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 0, (65535).to_bytes(2, "little") + b"\xaa" * 6),
        (4, 0, 7, "NVML_VALUE_TYPE_UNSIGNED_INT", 0, (4_000_000_000).to_bytes(4, "little") + b"\x01" * 4),
        (5, 0, 7, "NVML_VALUE_TYPE_DOUBLE", 0, bytes(ctypes.c_double(-2.5))),
        (6, 0, 7, "NVML_VALUE_TYPE_UNSIGNED_INT", 3, (9).to_bytes(8, "little")),  # failed: 0.0
    ]
    got = entries(lib, fill(lib, lib.c_nvmlFieldValue_t, rows))
    assert [v for _, _, v, _ in got] == [-5.0, float(-(2**40)), 65535.0, 4_000_000_000.0, -2.5, 0.0]
    assert [r for _, r, _, _ in got] == [0, 0, 0, 0, 0, 3]


def test_a_binding_of_another_layout_is_read_member_by_member() -> None:
    """An entry type whose members sit elsewhere (here a 32-bit timestamp) is never unpacked as
    nvml.h's layout: its members are read one by one."""
    real = pynvml_module()

    class Value(ctypes.Union):
        _fields_ = [("dVal", ctypes.c_double), ("uiVal", ctypes.c_uint), ("ullVal", ctypes.c_ulonglong)]

    class Entry(ctypes.Structure):
        _fields_ = [("fieldId", ctypes.c_uint), ("scopeId", ctypes.c_uint), ("timestamp", ctypes.c_int32),
                    ("latencyUsec", ctypes.c_int32), ("valueType", ctypes.c_uint), ("nvmlReturn", ctypes.c_uint),
                    ("value", Value)]

    class Binding:  # a library object, as pynvml is one
        c_nvmlFieldValue_t = Entry
        NVML_VALUE_TYPE_DOUBLE = real.NVML_VALUE_TYPE_DOUBLE
        NVML_VALUE_TYPE_UNSIGNED_INT = real.NVML_VALUE_TYPE_UNSIGNED_INT

    lib = Binding()
    arr = (Entry * 2)()
    arr[0].fieldId, arr[0].timestamp, arr[0].valueType, arr[0].value.uiVal = 186, 77, real.NVML_VALUE_TYPE_UNSIGNED_INT, 300
    arr[1].fieldId, arr[1].timestamp, arr[1].valueType, arr[1].value.dVal = 82, 78, real.NVML_VALUE_TYPE_DOUBLE, 1.5
    assert entries(lib, arr) == [(186, 0, 300.0, 77), (82, 0, 1.5, 78)]


@pytest.mark.parametrize("ids", [(186,), (186, 82, (161, 3), 83)])
def test_the_fake_answers_the_same_read_either_way(ids: tuple[Any, ...]) -> None:
    """Through the fake NVML (pynvml's own entry type), as the health poll reads it."""
    from rasd.backends.fake import FakeNode, FakeNvml
    from rasd.backends.fake.clock import ManualClock

    base = pynvml_module()
    lib = FakeNvml(FakeNode(gpu_count=1, clock=ManualClock(10.0)), base)
    lib.nvmlInit()
    arr = lib.nvmlDeviceGetFieldValues(lib.nvmlDeviceGetHandleByIndex(0), list(ids))
    assert entries(lib, arr) == by_members(base, arr)
