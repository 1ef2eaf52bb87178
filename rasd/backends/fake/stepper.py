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
    def fold(self, raws: array, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        """Fold the raw draws ``raws`` (watts, one a step) at ``limit`` watts.

        ``state`` (in and out): watts, temperature, energy mJ, hold seconds, window sum; on return
        ``state[5]`` is the window sum after step ``cut`` (1-based; 0: none). ``window``: the last
        len(window) delivered watts, a ring whose oldest entry is at ``wpos``; returns its new
        oldest position. ``consts``: idle temperature, idle watts, watts span, temperature span,
        step seconds, thermal response per step."""
        ...


class PythonStepper:
    def fold(self, raws: array, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        out, temp, energy, hold, wsum = state[0], state[1], state[2], state[3], state[4]
        t_idle, w_idle, span, t_span, step_s, thermal = consts
        wlen = len(window)
        for part in (raws[:cut], raws[cut:]) if cut else (raws,):
            for raw in part:
                now = raw if raw < limit else limit
                if now > out:
                    hold = 0.0
                elif now < out:
                    hold += step_s
                out = now
                temp += (t_idle + (out - w_idle) / span * t_span - temp) * thermal
                energy += out * step_s * 1000.0
                wsum += out - window[wpos]
                window[wpos] = out
                wpos += 1
                if wpos == wlen:
                    wpos = 0
            if cut:
                state[5] = wsum
                cut = 0
        state[0], state[1], state[2], state[3], state[4] = out, temp, energy, hold, wsum
        return wpos


class NativeStepper:
    def __init__(self, lib: ctypes.CDLL):
        f = lib.ps_fold
        p, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        f.argtypes, f.restype = [p, i, d, p, i, i, p, i, p], i
        self._fold = f

    def fold(self, raws: array, limit: float, window: array, wpos: int, state: array, cut: int,
             consts: array) -> int:
        if not raws:
            return wpos
        return self._fold(raws.buffer_info()[0], len(raws), limit, window.buffer_info()[0], len(window), wpos,
                          state.buffer_info()[0], cut, consts.buffer_info()[0])


def _agrees(native: Stepper) -> str | None:
    """None if ``native`` folds a test sequence exactly as the Python loop does, else what differs.
    The sequence crosses the limit both ways, repeats values and wraps the window."""
    rng = random.Random(7)
    consts = array("d", [34.0, 70.0, 630.0, 41.0, 0.005, 2.4996875260e-4])
    raws = array("d", (rng.choice([700.0, 699.99, rng.uniform(60.0, 760.0)]) for _ in range(450)))
    window0 = [rng.uniform(60.0, 700.0) for _ in range(200)]
    got = []
    for stepper in (PythonStepper(), native):
        window = array("d", window0)
        state = array("d", [650.0, 61.5, 12345.678, 0.015, 98765.4321, 0.0])
        wpos = stepper.fold(raws, 700.0, window, 37, state, 213, consts)
        got.append((wpos, list(state), list(window)))
    return None if got[0] == got[1] else f"C gives {got[1][:2]} where Python gives {got[0][:2]}"


def load(path: str | Path) -> Stepper | None:
    """The C loop in the library at ``path``, or None (logged) where it cannot be loaded or does
    not fold exactly as the Python loop does (a build that fused multiply-adds, say)."""
    try:
        native = NativeStepper(ctypes.CDLL(str(path)))
    except (OSError, AttributeError) as e:
        log.warning("event=fake_native_step_unavailable path=%s error=%r", path, str(e))
        return None
    differs = _agrees(native)
    if differs is not None:
        log.warning("event=fake_native_step_refused path=%s error=%r", path, differs)
        return None
    return native


def _built() -> Stepper:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = here / f"_powerstep{suffix}"
        if p.is_file():
            return load(p) or PythonStepper()
    return PythonStepper()


active: Stepper = _built()  # what the power model uses; tests swap it


def use(stepper: Stepper) -> Any:
    """Make ``stepper`` the active one; returns the one it replaces."""
    global active
    old, active = active, stepper
    return old
