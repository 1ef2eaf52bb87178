"""nvmlDeviceGetFieldValues' entries: the binding's ``c_nvmlFieldValue_t`` read out, and a
prepared request of the C function.

A health poll reads six entries a GPU every second, and the Python power sampler one entry ten
times a second a GPU: reading each entry member by member through ctypes costs several times
unpacking the array's memory at once. Where the binding's entry has nvml.h's layout (checked
member by member, never assumed) the whole array is unpacked with one ``struct`` call, and each
value is taken from the union's eight bytes as the member its ``valueType`` names (the member's
own size and sign, read from the binding's union); any other layout is read entry by entry.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
from types import ModuleType
from typing import Any, Callable

Entry = tuple[int, int, float, int]  # (field id, nvmlReturn, value, timestamp us)

# nvmlValueType_t -> the member of the nvmlValue_t union that holds the value
_VALUE_MEMBERS = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)
_DEFAULT_MEMBER = "ullVal"  # a valueType the binding does not name

# nvml.h's nvmlFieldValue_t: member -> byte offset (40 bytes in all)
_LAYOUT = {"fieldId": 0, "scopeId": 4, "timestamp": 8, "latencyUsec": 16, "valueType": 24, "nvmlReturn": 28,
           "value": 32}
_ENTRY_BYTES = 40
# fieldId, scopeId, timestamp, (latencyUsec), valueType, nvmlReturn, the value union's 8 bytes
_ENTRY = struct.Struct("=IIq8xIIQ")
_RAW = struct.Struct("=Q")
_DOUBLE = struct.Struct("=d")

# Keyed by the library object itself (held for the process's life), never by id(): an id can
# be reused by another object once the first is collected.
_MEMBERS: dict[Any, dict[int, str]] = {}
_PLAIN: dict[Any, Any] = {}
_DECODERS: dict[Any, "Callable[[Any], list[Entry]] | None"] = {}
_READERS: dict[Any, tuple[Any, Any, "Callable[[Any], list[Entry]] | None"]] = {}  # (entry type, twin, decoder)


def members(lib: Any) -> dict[int, str]:
    """nvmlValueType_t value -> union member, per library object (looked up once, not per read)."""
    got = _MEMBERS.get(lib)
    if got is None:
        got = {}
        for const, member in _VALUE_MEMBERS:
            t = getattr(lib, const, None)
            if isinstance(t, int):
                got.setdefault(t, member)
        _MEMBERS[lib] = got
    return got


def plain_field_value(lib: Any) -> Any:
    """A plain ctypes twin of the binding's ``c_nvmlFieldValue_t`` (its own ``_fields_``, so the
    layout nvml.h gives it), without pynvml's Python-level ``__getattribute__``/``__setattr__``
    on every member access. None where the binding has no such type or the sizes differ."""
    got = _PLAIN.get(lib, False)
    if got is False:
        base = getattr(lib, "c_nvmlFieldValue_t", None)
        got = None
        if isinstance(base, type) and issubclass(base, ctypes.Structure):
            attrs: dict[str, Any] = {"_fields_": list(base._fields_)}
            if hasattr(base, "_pack_"):
                attrs["_pack_"] = base._pack_
            twin = type("FieldValue", (ctypes.Structure,), attrs)
            got = twin if ctypes.sizeof(twin) == ctypes.sizeof(base) else None
        _PLAIN[lib] = got
    return got


def _member_kind(union: Any, member: str) -> tuple[int, int] | None:
    """How to take ``member`` of the value union from its 8 bytes read as one little-endian
    unsigned integer: (mask, sign bit or 0) for an integer member, (0, 0) for a double; None
    for a member the union lacks or of another kind (the entry-by-entry path reads those)."""
    t: Any = {f[0]: f[1] for f in getattr(union, "_fields_", ())}.get(member)
    if t is None or getattr(union, member).offset != 0:
        return None
    if t is ctypes.c_double:
        return (0, 0)
    size = ctypes.sizeof(t)
    if not issubclass(t, ctypes._SimpleCData) or t._type_ not in "bBhHiIlLqQ" or size > 8:
        return None
    signed = t._type_ in "bhilq"
    return ((1 << (8 * size)) - 1, (1 << (8 * size - 1)) if signed else 0)


def _decoder(lib: Any) -> Callable[[Any], list[Entry]] | None:
    """The whole-array reader for this binding, or None where its entry is not nvml.h's layout
    (or the machine is big-endian, where the union's members do not start at the low bytes)."""
    if lib in _DECODERS:
        return _DECODERS[lib]
    fn = None
    base = getattr(lib, "c_nvmlFieldValue_t", None)
    if sys.byteorder == "little" and isinstance(base, type) and issubclass(base, ctypes.Structure):
        types: dict[str, Any] = {f[0]: f[1] for f in base._fields_}
        try:
            same = ctypes.sizeof(base) == _ENTRY_BYTES and all(
                getattr(base, name).offset == off for name, off in _LAYOUT.items()
            ) and ctypes.sizeof(types["timestamp"]) == 8
            union = types["value"]
        except (AttributeError, KeyError):
            same, union = False, None
        if same and ctypes.sizeof(union) == 8:
            kinds: dict[int, tuple[int, int]] = {}
            for vt, member in members(lib).items():
                kind = _member_kind(union, member)
                if kind is None:
                    break
                kinds[vt] = kind
            else:
                default = _member_kind(union, _DEFAULT_MEMBER)
                if default is not None:
                    fn = _make_decoder(kinds, default)
    _DECODERS[lib] = fn
    return fn


def _make_decoder(kinds: dict[int, tuple[int, int]], default: tuple[int, int]) -> Callable[[Any], list[Entry]]:
    unpack, get = _ENTRY.iter_unpack, kinds.get
    raw_bytes, as_double = _RAW.pack, _DOUBLE.unpack

    def decode(values: Any) -> list[Entry]:
        out: list[Entry] = []
        append = out.append
        for fid, _scope, ts, vt, ret, raw in unpack(values):
            if ret:
                append((fid, ret, 0.0, ts))  # the value is 0.0 where the entry failed
                continue
            mask, sign = get(vt, default)
            if not mask:
                append((fid, 0, as_double(raw_bytes(raw))[0], ts))
                continue
            v = raw & mask
            if sign and v & sign:
                v -= mask + 1
            append((fid, 0, float(v), ts))
        return out

    return decode


def entries(lib: Any, values: Any) -> list[Entry]:
    """The binding's ``c_nvmlFieldValue_t`` entries -> (field id, nvmlReturn, value, timestamp us);
    the value is 0.0 where the entry failed (NVML_SUCCESS is 0 in nvml.h).

    A ctypes array of the binding's entry (or its plain twin) in nvml.h's layout is unpacked at
    once; another ctypes array is read through the plain twin of its entry type (the same memory,
    without the Python-level attribute hooks); anything else entry by entry."""
    got = _READERS.get(lib)
    if got is None:
        got = _READERS[lib] = (getattr(lib, "c_nvmlFieldValue_t", None), plain_field_value(lib), _decoder(lib))
    base, twin, decode = got
    if isinstance(values, ctypes.Array):
        t = values._type_
        if t is base or (t is twin and twin is not None):
            if decode is not None:
                return decode(values)
            if twin is not None and t is not twin:
                values = (twin * len(values)).from_buffer(values)
    kinds = members(lib)
    out = []
    for v in values:
        ret = int(v.nvmlReturn)
        value = float(getattr(v.value, kinds.get(v.valueType, _DEFAULT_MEMBER))) if ret == 0 else 0.0
        out.append((int(v.fieldId), ret, value, int(v.timestamp)))
    return out


class FieldRequest:
    """A prepared nvmlDeviceGetFieldValues request for one GPU and one list of field ids.

    pynvml's wrapper allocates and fills a new array and converts every member through Python on
    each call, and the power sampler makes that call about ten times a second per GPU. Here the
    array's request (ids in place, the rest zero) is built once and copied in before each call,
    the C function comes from pynvml's own function-pointer lookup (its cache, its errors), and a
    failed call raises pynvml's own ``NVMLError`` subclass, so the one classifier judges it as
    before. A request in use by another thread is not shared: that caller gets a fresh one."""

    __slots__ = ("lib", "ids", "struct", "arr", "ref", "count", "fn", "lock", "request", "size")

    def __init__(self, lib: Any, ids: tuple[int | tuple[int, int], ...], struct: Any):
        self.lib = lib
        self.ids = ids
        self.struct = struct
        self.arr = (struct * len(ids))()
        self.ref = ctypes.byref(self.arr)
        self.count = ctypes.c_int32(len(ids))
        self.fn: Any = None
        self.lock = threading.Lock()
        for e, fid in zip(self.arr, ids):
            if type(fid) is tuple:
                e.fieldId, e.scopeId = fid
            else:
                e.fieldId = fid
        self.size = ctypes.sizeof(self.arr)
        # a fresh request, as pynvml's: every other member zero, copied in before each call
        self.request = ctypes.create_string_buffer(bytes(self.arr), self.size)

    @staticmethod
    def prepare(lib: Any, ids: tuple[int | tuple[int, int], ...]) -> "FieldRequest | None":
        """A request where ``lib`` is pynvml over the C library, else None (use the library's
        own call: the fake NVML, or a binding without the function-pointer lookup)."""
        if not isinstance(lib, ModuleType) or not callable(getattr(lib, "_nvmlGetFunctionPointer", None)):
            return None
        struct = plain_field_value(lib)
        return FieldRequest(lib, ids, struct) if struct is not None else None

    def __call__(self, raw: Any) -> list[Entry]:
        if not self.lock.acquire(False):  # another thread is in this request: use a fresh one
            return FieldRequest(self.lib, self.ids, self.struct)(raw)
        try:
            fn = self.fn
            if fn is None:  # raises NVMLError (uninitialised, function not found) as pynvml does
                fn = self.fn = self.lib._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")
            ctypes.memmove(self.arr, self.request, self.size)
            ret = fn(raw, self.count, self.ref)
            if ret != 0:
                raise self.lib.NVMLError(ret)
            return entries(self.lib, self.arr)  # copied out before another caller can reuse it
        finally:
            self.lock.release()
