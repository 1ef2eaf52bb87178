"""Device memory tests: March C-, moving inversions, walking ones/zeros and random patterns.

Each test runs over one region of device memory in blocks; the march order (ascending or
descending) is kept between blocks, while inside a block the reads and writes run as vector
operations (a GPU has no meaningful order inside one kernel). Failures name the byte address
of the word, the expected and read patterns and the bits that differ.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np

from rasd.sdc.engines import DeviceMemory, Engine
from rasd.sdc.results import CheckResult, Result

ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
ZERO = np.uint64(0)
_MAX_REPORTED = 8
TESTS = ("march_c_minus", "moving_inversions", "walking_ones", "random")


class _Verifier:
    def __init__(self, engine: Engine, mem: DeviceMemory, test: str):
        self.engine, self.mem, self.test = engine, mem, test
        self.failures: list[dict[str, Any]] = []
        self.failing_words = 0

    def check(self, start: int, stop: int, expected: Any, pattern: str) -> None:
        xp = self.engine.xp
        got = self.mem.read(start, stop)
        bad = xp.flatnonzero(got != expected)
        if not bad.size:
            return
        self.failing_words += int(bad.size)
        room = _MAX_REPORTED - len(self.failures)
        if room <= 0:
            return
        idx = self.engine.to_host(bad[:room])
        got_h = self.engine.to_host(got[bad[:room]])
        exp_h = np.broadcast_to(self.engine.to_host(xp.asarray(expected)), (stop - start,))
        for k, i in enumerate(idx.tolist()):
            e, g = int(exp_h[i]), int(got_h[k])
            word_address = self.mem.base_address + (start + i) * 8
            bits = [b for b in range(64) if (e ^ g) >> b & 1]
            self.failures.append({
                "test": self.test, "pattern": pattern, "address": word_address,
                "expected": f"0x{e:016x}", "got": f"0x{g:016x}", "differing_bits": bits,
                # the failing bits as (byte address, bit in that byte), little-endian words
                "bit_addresses": [[word_address + b // 8, b % 8] for b in bits],
            })


def _blocks(words: int, descending: bool = False) -> Iterator[tuple[int, int]]:
    size = max(1 << 16, words // 16)
    starts = list(range(0, words, size))
    if descending:
        starts.reverse()
    for s in starts:
        yield s, min(s + size, words)


def _fill(mem: DeviceMemory, value: Any) -> None:
    for s, e in _blocks(mem.words):
        mem.write(s, e, value)


def march_c_minus(engine: Engine, mem: DeviceMemory, v: _Verifier, seed: int) -> None:
    """{⇕(w0); ⇑(r0,w1); ⇑(r1,w0); ⇓(r0,w1); ⇓(r1,w0); ⇕(r0)}: 10N operations."""
    _fill(mem, ZERO)
    for descending in (False, True):
        for want, write in ((ZERO, ALL_ONES), (ALL_ONES, ZERO)):
            for s, e in _blocks(mem.words, descending):
                v.check(s, e, want, f"march {'down' if descending else 'up'} r{int(bool(want))}")
                mem.write(s, e, write)
    for s, e in _blocks(mem.words):
        v.check(s, e, ZERO, "march final r0")


def moving_inversions(engine: Engine, mem: DeviceMemory, v: _Verifier, seed: int) -> None:
    """Write p; ⇑(r p, w ~p); ⇓(r ~p, w p) for several patterns, one of them random."""
    rnd = int(np.random.default_rng([seed, 0x4D49]).integers(0, 2**63)) | 1
    for p in (0x0000000000000000, 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, rnd):
        pat, inv = np.uint64(p), ~np.uint64(p)
        _fill(mem, pat)
        for s, e in _blocks(mem.words):
            v.check(s, e, pat, f"0x{p:016x} up")
            mem.write(s, e, inv)
        for s, e in _blocks(mem.words, descending=True):
            v.check(s, e, inv, f"0x{p:016x} down")
            mem.write(s, e, pat)


def walking_ones(engine: Engine, mem: DeviceMemory, v: _Verifier, seed: int) -> None:
    """Word i holds 1 << ((i + s) % 64) in pass s, then its complement: after 64 passes every
    bit of every word has held 1 among zeros and 0 among ones."""
    xp = engine.xp
    one, mask = xp.uint64(1), xp.uint64(63)
    phases = {(s, e): xp.arange(s, e, dtype=xp.uint64) & mask for s, e in _blocks(mem.words)}
    for shift in range(64):
        for invert in (False, True):
            label = f"walking {'zeros' if invert else 'ones'} shift {shift}"
            for (s, e), phase in phases.items():
                pat = one << ((phase + xp.uint64(shift)) & mask)
                mem.write(s, e, ~pat if invert else pat)
            for (s, e), phase in phases.items():
                pat = one << ((phase + xp.uint64(shift)) & mask)
                v.check(s, e, ~pat if invert else pat, label)


def random_patterns(engine: Engine, mem: DeviceMemory, v: _Verifier, seed: int) -> None:
    """Seeded random words, then their complement (so every bit is read back as 0 and as 1)."""
    for invert in (False, True):
        patterns: dict[tuple[int, int], Any] = {}
        for s, e in _blocks(mem.words):
            host = np.random.default_rng([seed, s]).integers(0, 2**64, size=e - s, dtype=np.uint64, endpoint=False)
            pat = engine.put(~host if invert else host)
            patterns[(s, e)] = pat
            mem.write(s, e, pat)
        for (s, e), pat in patterns.items():
            v.check(s, e, pat, f"random seed {seed}{' inverted' if invert else ''}")


_TESTS: dict[str, Callable[[Engine, DeviceMemory, _Verifier, int], None]] = {
    "march_c_minus": march_c_minus,
    "moving_inversions": moving_inversions,
    "walking_ones": walking_ones,
    "random": random_patterns,
}


def memory_check(engine: Engine, nbytes: int, test: str, seed: int) -> CheckResult:
    """Run one memory ``test`` over ``nbytes`` of freshly allocated device memory."""
    t0 = time.perf_counter()
    words = max(1, nbytes // 8)
    mem = engine.memory(words)
    v = _Verifier(engine, mem, test)
    _TESTS[test](engine, mem, v, seed)
    engine.synchronize()
    evidence: dict[str, Any] = {"check": "memory", "test": test, "tested_bytes": words * 8, "seed": seed,
                                "base_address": mem.base_address}
    if v.failing_words:
        evidence.update(failing_reads=v.failing_words, first=v.failures)
    result = Result.FAIL if v.failing_words else Result.PASS
    del mem
    return CheckResult(engine.device, "memory", result, time.perf_counter() - t0, None, evidence)
