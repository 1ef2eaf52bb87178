"""The power model's per-step loop, in C where rasd was built with a C compiler, else in Python.

``_powerstep.c`` is an optional extension (``pyproject.toml``): an install without a compiler
succeeds and the model steps in Python. Both do the same IEEE double arithmetic in the same order,
so the readings are the same to the bit either way; before the library is used, ``load`` runs it
and the Python loop on a test sequence and keeps it only if every value agrees. It has no Python
API of its own and is loaded with ``ctypes``.

``fold``: the steps of ``GpuPowerSim._fold`` without power smoothing and without a reset among
them: delivered power is the raw draw clipped at the limit, and what integrates it (temperature,
energy, the 1 s window and its sum, the ramp-down hold) advances one step at a time.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import random
from array import array
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("rasd.fake")


class Stepper(Protocol):
    def raw(self, raw: float, runs: list[tuple[float, int]], ripple: array, start: int, response: float,
            out: array) -> float:
        """The board's response to demand: for each step of ``runs`` (base demand, steps) the
        demand is base times the next ripple factor (from ``ripple[start]`` on, around the end)
        and ``raw += (demand - raw) * response``; appends each step's raw draw to ``out`` and
        returns the last."""
        ...

    def fold(self, raws: array, n: int, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        """Fold the first ``n`` raw draws of ``raws`` (watts, one a step) at ``limit`` watts.

        ``state`` (in and out): watts, temperature, energy mJ, hold seconds, window sum; on return
        ``state[5]`` is the window sum after step ``cut`` (1-based; 0: none). ``window``: the last
        len(window) delivered watts, a ring whose oldest entry is at ``wpos``; returns where the
        oldest entry is after the fold. ``consts``: idle temperature, idle watts, watts span, temperature span,
        step seconds, thermal response per step."""
        ...


class PythonStepper:
    def raw(self, raw: float, runs: list[tuple[float, int]], ripple: array, start: int, response: float,
            out: array) -> float:
        got: list[float] = []
        append = got.append
        i, n = start, len(ripple)
        for base, count in runs:
            while count:
                take = count if count < n - i else n - i
                for x in ripple[i:i + take]:
                    raw += (base * x - raw) * response  # the step's demand is base * x
                    append(raw)
                count -= take
                i = i + take if i + take < n else 0
        out.extend(got)
        return raw

    def fold(self, raws: array, n: int, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        out, temp, energy, hold, wsum = state[0], state[1], state[2], state[3], state[4]
        t_idle, w_idle, span, t_span, step_s, thermal = consts
        wlen = len(window)
        # the window oldest first, growing by the new steps; ``olds`` trails it by its length
        seq = window[wpos:].tolist() + window[:wpos].tolist()
        olds = iter(seq)
        outs = [x if x < limit else limit for x in raws[:n]]
        seq += outs
        for part in (outs[:cut], outs[cut:]) if cut else (outs,):
            for now, old in zip(part, olds):
                if now > out:
                    hold = 0.0
                elif now < out:
                    hold += step_s
                out = now
                temp += (t_idle + (out - w_idle) / span * t_span - temp) * thermal
                energy += out * step_s * 1000.0
                wsum += out - old
            if cut:
                state[5] = wsum
                cut = 0
        window[:] = array("d", seq[-wlen:])
        state[0], state[1], state[2], state[3], state[4] = out, temp, energy, hold, wsum
        return 0


VERSION = 2  # _powerstep.c's ps_version(): what its functions take and do


class NativeStepper:
    def __init__(self, lib: ctypes.CDLL):
        lib.ps_version.argtypes, lib.ps_version.restype = [], ctypes.c_int
        if lib.ps_version() != VERSION:  # a stale build: its functions may take other arguments
            raise ValueError(f"built from version {lib.ps_version()} of _powerstep.c, this rasd needs {VERSION}")
        p, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        f = lib.ps_fold
        f.argtypes, f.restype = [p, i, d, p, i, i, p, i, p], i
        self._fold = f
        r = lib.ps_raw
        r.argtypes, r.restype = [d, p, i, i, p, p, i, d, p], d
        self._raw = r

    def raw(self, raw: float, runs: list[tuple[float, int]], ripple: array, start: int, response: float,
            out: array) -> float:
        bases = array("d", [b for b, _ in runs])
        counts = array("i", [c for _, c in runs])
        at = len(out)
        out.frombytes(bytes(8 * sum(counts)))
        return self._raw(raw, ripple.buffer_info()[0], len(ripple), start, bases.buffer_info()[0],
                         counts.buffer_info()[0], len(runs), response, out.buffer_info()[0] + 8 * at)

    def fold(self, raws: array, n: int, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        if not n:
            return wpos
        return self._fold(raws.buffer_info()[0], n, limit, window.buffer_info()[0], len(window), wpos,
                          state.buffer_info()[0], cut, consts.buffer_info()[0])


def _agrees(native: Stepper) -> str | None:
    """None if ``native`` computes test sequences exactly as the Python loops do, else what differs.
    One is made for a fused multiply-add to round differently (it rounds a product and a sum once,
    Python twice); the other crosses the limit both ways, repeats values and wraps around."""
    rng = random.Random(7)
    cases = [  # (consts, state, raws, limit, window, cut)
        ([-0.01, 0.0, 1.0, 0.1, 0.1, 1.0], [0.0, 0.0, -10.0, 0.0, 0.0, 0.0], [0.1, 0.3, 0.7], 1.0, [0.0] * 4, 1),
        ([34.0, 70.0, 630.0, 41.0, 0.005, 2.4996875260e-4], [650.0, 61.5, 12345.678, 0.015, 98765.4321, 0.0],
         [rng.choice([700.0, 699.99, rng.uniform(60.0, 760.0)]) for _ in range(450)], 700.0,
         [rng.uniform(60.0, 700.0) for _ in range(200)], 213),
    ]
    ripple = array("d", [1.0 + rng.uniform(-0.015, 0.015) for _ in range(97)] + [0.1, 0.3])
    runs = [(0.1, 3), (650.0, 150), (0.1, 1), (300.0, 60)]
    got: list[list[Any]] = [[], []]
    for result, stepper in zip(got, (PythonStepper(), native)):
        for consts, state0, raws, limit, window0, cut in cases:
            window, state = array("d", window0), array("d", state0)
            wpos = stepper.fold(array("d", raws), len(raws), limit, window, 3, state, cut, array("d", consts))
            result.append((list(state), window[wpos:].tolist() + window[:wpos].tolist()))
        for start, raw in ((97, 0.01), (5, 300.0)):
            out = array("d", [1.5])
            last = stepper.raw(raw, runs, ripple, start, 0.3934693402873666, out)
            result.append((last, list(out)))
    if got[0] == got[1]:
        return None
    differs = next(i for i, (a, b) in enumerate(zip(*got)) if a != b)
    return f"test {differs}: C gives {str(got[1][differs])[:60]} where Python gives {str(got[0][differs])[:60]}"


def load(path: str | Path) -> Stepper | None:
    """The C loop in the library at ``path``, or None (logged) where it cannot be loaded or does
    not fold exactly as the Python loop does (a build that fused multiply-adds, say)."""
    try:
        native = NativeStepper(ctypes.CDLL(str(path)))
    except (OSError, AttributeError, ValueError) as e:
        log.warning("event=fake_native_step_unavailable path=%s error=%r", path, str(e))
        return None
    differs = _agrees(native)
    if differs is not None:
        log.warning("event=fake_native_step_refused path=%s error=%r", path, differs)
        return None
    return native


def library_path() -> str | None:
    """The built library beside this module, if the install built it."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = here / f"_powerstep{suffix}"
        if p.is_file():
            return str(p)
    return None


def _built() -> Stepper:
    path = library_path()
    return (load(path) or PythonStepper()) if path is not None else PythonStepper()


active: Stepper = _built()  # what the power model uses; tests swap it


def use(stepper: Stepper) -> Any:
    """Make ``stepper`` the active one; returns the one it replaces."""
    global active
    old, active = active, stepper
    return old
