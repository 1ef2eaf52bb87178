"""Readings taken together in one ``nvmlDeviceGetFieldValues`` call per GPU and poll.

Where NVML offers a field id with the same meaning and unit as a one-by-one call (nvml.h: field
185 and ``nvmlDeviceGetPowerUsage``, 190 and ``nvmlDeviceGetEnforcedPowerLimit``, 3-6 and
``nvmlDeviceGetTotalEccErrors``, 161/162 with the link in ``scopeId`` and
``nvmlDeviceGetNvLinkErrorCounter``, ...), the poll asks for all of them in one call instead of
one call each: every call is a trip into the driver, and on a real GPU node the ioctl costs more
than the Python around it.

The field stands in for its call only where it answers. Each entry carries its own nvmlReturn:
- NOT_SUPPORTED (or INVALID_ARGUMENT: a driver older than the field id) -> that reading goes back
  to its own call on this GPU for good, and the call's answer (value or error) is this poll's;
- GPU_IS_LOST -> the poll stops with GpuLost, as the call would;
- any other error -> counted under the reading's name, None this poll, asked again next poll;
- the call itself failing (judged as ``field_values``) -> every reading of the batch is read by its
  own call this poll.
So a reading's meaning, unit and error handling are the call's whatever the driver offers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

from rasd.backends.nvml.core import REPROBE_POLLS, HandleCore, Outcome, classify

FieldId = int | tuple[int, int]  # an id, or (id, scopeId)


@dataclass(frozen=True, slots=True)
class Batched:
    """One reading from field entries: ``shape`` turns the entries' values (in ``ids`` order) into
    what ``call`` would have returned, so the reading's own conversion applies unchanged.
    ``call(gpu)`` reads it one by one on that GPU under the error rules (None: a field-only
    reading, whose entry errors are judged under ``reading`` like any read). The call takes the
    GPU rather than holding it, so one reading serves every GPU whose binding gives it the same
    ids: a node's NVLink counters are 72 readings, not 72 a GPU."""

    key: Hashable  # where the answer goes in the poll's results
    reading: str  # the reading's name in logs, error counts and the unsupported list
    ids: tuple[FieldId, ...]
    shape: Callable[[tuple[float, ...]], Any]
    call: Callable[["BatchReads"], Any] | None = None


class Plan:
    """A poll's batched readings, with what every poll would otherwise work out again: the
    readings that go by field, their ids in one tuple, those that always go by call."""

    __slots__ = ("readings", "fielded", "called", "ids", "names", "sorted", "scalars")

    def __init__(self, readings: Sequence[Batched]):
        self.readings = tuple(readings)
        self.fielded = tuple(b for b in self.readings if b.ids)
        self.called = tuple(b for b in self.readings if not b.ids)
        self.ids = tuple(i for b in self.fielded for i in b.ids)
        self.names = frozenset(b.reading for b in self.readings)
        # where every reading by field is one entry shaped by ``first`` or ``as_int`` (a fast
        # poll's six): what the shape does to that entry's value (None: the value itself)
        self.scalars: tuple[Callable[[float], Any] | None, ...] | None = (
            tuple(_SCALAR[b.shape] for b in self.fielded)
            if all(len(b.ids) == 1 and b.shape in _SCALAR for b in self.fielded) else None
        )
        # the last sorting of the readings where some are skipped or go by call: (unsupported
        # changes, readings by call, valid before poll, asked, by call, skipped, ids)
        self.sorted: tuple[int, int, int, tuple[Batched, ...], tuple[Batched, ...], tuple[Batched, ...],
                           tuple[FieldId, ...]] | None = None


def first(v: tuple[float, ...]) -> float:
    return v[0]


def as_int(v: tuple[float, ...]) -> int:
    return int(v[0])


_SCALAR: dict[Callable[[tuple[float, ...]], Any], Callable[[float], Any] | None] = {first: None, as_int: int}


def ints(v: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


class BatchReads(HandleCore):
    """``_batch``: a list of ``Batched`` readings, one field-values call for those that go by field."""

    _by_call: set[Hashable] | None = None  # keys whose field answered "not supported" on this GPU

    def _batch(self, plan: Plan) -> dict[Hashable, Any]:
        """{key: value or None} for every reading of ``plan``. Raises GpuLost."""
        by_call = self._by_call
        if by_call is None:
            by_call = self._by_call = set()
        out: dict[Hashable, Any] = {}
        ask: Sequence[Batched]
        calls: list[Batched]
        if not by_call and plan.names.isdisjoint(self._unsupported):  # the usual poll
            ask, calls, ids = plan.fielded, list(plan.called), plan.ids
        else:
            ask, called, skipped, ids = self._sort(plan, by_call)
            calls = list(called)
            for b in skipped:
                out[b.key] = None
        if ask:
            got = self._field_entries(ids)
            if got is None:  # the whole call failed (judged as field_values): one by one this poll
                for b in ask:
                    if b.call is not None:
                        calls.append(b)
                    else:
                        out[b.key] = None
            elif ask is plan.fielded and plan.scalars is not None:  # the usual poll: an entry a reading
                for b, conv, e in zip(ask, plan.scalars, got):
                    if e[1]:
                        self._failed(b, e[1], out, calls, by_call)
                    else:
                        out[b.key] = e[2] if conv is None else conv(e[2])
            else:
                self._place(ask, got, out, calls, by_call)
        for b in calls:
            assert b.call is not None
            out[b.key] = b.call(self)
        return out

    def _sort(
        self, plan: Plan, by_call: set[Hashable],
    ) -> tuple[tuple[Batched, ...], tuple[Batched, ...], tuple[Batched, ...], tuple[FieldId, ...]]:
        """Which readings go by field, by call, or are skipped as unsupported: worked out again
        only when a reading was marked or re-probed, one went to its call, or a skipped one is
        due to be asked again (a driver that lacks recovery action, field 230, skips it on
        every poll)."""
        got = plan.sorted
        if (
            got is not None and got[0] == self._unsupported_changes and got[1] == len(by_call)
            and self._polls < got[2]
        ):
            return got[3], got[4], got[5], got[6]
        changes = self._unsupported_changes
        ask: list[Batched] = []
        calls: list[Batched] = []
        skipped: list[Batched] = []
        for b in plan.readings:
            if b.call is not None and (not b.ids or b.key in by_call):
                calls.append(b)
            elif self._skipped(b.reading):
                skipped.append(b)
            else:
                ask.append(b)
        due = min((self._unsupported.get(b.reading, self._polls) + REPROBE_POLLS for b in skipped),
                  default=1 << 62)
        ids = tuple(i for b in ask for i in b.ids)
        # stamped with the count from before: a re-probe inside _skipped (or another thread's
        # mark) meanwhile makes the next poll sort again, which is cheap and always right
        done = (changes, len(by_call), due, tuple(ask), tuple(calls), tuple(skipped), ids)
        plan.sorted = done
        return done[3], done[4], done[5], ids

    def _place(
        self, ask: Sequence[Batched], got: list[tuple[int, int, float, int]], out: dict[Hashable, Any],
        calls: list[Batched], by_call: set[Hashable],
    ) -> None:
        """Each reading's entries -> its value, or the error rules above."""
        i = 0
        for b in ask:
            n = len(b.ids)
            if n == 1:  # most readings are one entry
                e = got[i]
                i += 1
                bad = e[1]
                if not bad:
                    out[b.key] = b.shape((e[2],))
                    continue
            else:
                mine = got[i:i + n]
                i += n
                bad = next((e[1] for e in mine if e[1] != 0), 0)
                if not bad:
                    out[b.key] = b.shape(tuple(e[2] for e in mine))
                    continue
            self._failed(b, bad, out, calls, by_call)

    def _failed(
        self, b: Batched, bad: int, out: dict[Hashable, Any], calls: list[Batched], by_call: set[Hashable],
    ) -> None:
        """A reading whose entry answered ``bad``: the error rules above."""
        lib = self.lib
        out[b.key] = None
        err = lib.NVMLError(bad)
        if b.call is not None and (
            bad == getattr(lib, "NVML_ERROR_INVALID_ARGUMENT", 2) or classify(lib, err) is Outcome.UNSUPPORTED
        ):
            by_call.add(b.key)  # for good: the call answers (or marks the reading unsupported)
            calls.append(b)
        else:
            self._judge(b.reading, err)
