"""The live power analysis in C (this package's ``_*.c`` files, declared in ``_kernel.h``).

Why native: the daemon analyses each GPU's window and the node sum every few seconds. In NumPy
that is about 0.4 ms a series, but importing NumPy costs the daemon about 14 MB of its 44 MB
resident memory, more than anything else it holds. The C computes what the NumPy functions in
``analysis.py`` compute (the tests compare them window by window) and needs nothing but libm.

``_kernel`` is an optional extension (``pyproject.toml``): an install without a compiler
succeeds, ``active`` is then None, and ``window.py`` analyses with NumPy. Loaded with ctypes,
which the daemon already has for its native power reads.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import math
import os
from array import array
from typing import Sequence

from rasd.power.metrics import SeriesMetrics

log = logging.getLogger("rasd.power")

VERSION = 1  # _kernel.c's pk_version(): what its functions take and return
METRICS = 22  # PK_METRICS: SeriesMetrics's fields in their declared order
BANDS = (None, "below", "in", "above")  # the oscillation_band codes

Series = tuple["array[float]", "array[float]"]  # (seconds, watts), oldest first
Held = list[tuple[ctypes.Array[ctypes.c_double], ctypes.Array[ctypes.c_double]]]
Columns = tuple[ctypes.Array[ctypes.c_void_p], ctypes.Array[ctypes.c_void_p], ctypes.Array[ctypes.c_int], Held]


def _at(x: array[float]) -> ctypes.Array[ctypes.c_double]:
    """The array's doubles as ctypes sees them. The array exports its buffer while this lives, so
    another thread cannot resize (and free) it under a call, which runs without the GIL."""
    if x.typecode != "d":
        raise TypeError(f"the power kernel takes array('d'), not array({x.typecode!r})")
    if len(x) >= 1 << 31:
        raise ValueError(f"a series of {len(x)} readings is more than the power kernel takes (2**31)")
    return (ctypes.c_double * len(x)).from_buffer(x)


def _finite(*xs: float) -> None:
    """Refuse NaN and infinite parameters: the C would cast them to integers (undefined)."""
    if not all(map(math.isfinite, xs)):
        raise ValueError(f"non-finite parameter among {xs}")


def _none(x: float) -> float | None:
    return None if math.isnan(x) else x


class Kernel:
    def __init__(self, lib: ctypes.CDLL):
        lib.pk_version.argtypes, lib.pk_version.restype = [], ctypes.c_int
        if lib.pk_version() != VERSION:  # a stale build: its functions may take other arguments
            raise ValueError(f"built from version {lib.pk_version()} of _kernel.c, this rasd needs {VERSION}")
        p, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        self._analyze = lib.pk_analyze
        self._analyze.argtypes, self._analyze.restype = [p, p, i, d, d, d, i, p], i
        self._percentiles = lib.pk_percentiles
        self._percentiles.argtypes, self._percentiles.restype = [p, i, p, i, p], i
        self._ramp = lib.pk_ramp_percentile
        self._ramp.argtypes, self._ramp.restype = [p, p, i, d], d
        self._grid = lib.pk_node_grid
        self._grid.argtypes, self._grid.restype = [i, p, p, p, p], i
        self._fill = lib.pk_fill_grid
        self._fill.argtypes, self._fill.restype = [d, d, i, p], None
        self._interp_sum = lib.pk_interp_sum
        self._interp_sum.argtypes, self._interp_sum.restype = [p, i, i, p, p, p, p], None

    def analyze(self, t: array[float], w: array[float], band: tuple[float, float],
                min_amplitude_watts: float, uniform: bool = False) -> SeriesMetrics | None:
        """``analysis.analyze_series`` of one sorted series (seconds, watts)."""
        if len(t) != len(w):
            raise ValueError(f"{len(t)} times for {len(w)} readings")
        _finite(band[0], band[1], min_amplitude_watts)
        out = (ctypes.c_double * METRICS)()
        rc = self._analyze(_at(t), _at(w), len(t), band[0], band[1], min_amplitude_watts, int(uniform),
                           ctypes.addressof(out))
        if rc < 0:
            raise MemoryError("the power kernel could not allocate its work space")
        if rc == 0:
            return None
        v = list(out)
        return SeriesMetrics(
            samples=int(v[0]),
            duration_seconds=v[1],
            sample_rate_hz=v[2],
            nyquist_hz=v[3],
            band_low_hz=v[4],
            band_high_hz=v[5],
            band_beyond_nyquist=bool(v[6]),
            oscillation_hz=_none(v[7]),
            oscillation_amplitude_watts=v[8],
            swing_watts=v[9],
            peak_watts=v[10],
            trough_watts=v[11],
            mean_watts=v[12],
            ramp_up_watts_per_second=v[13],
            ramp_down_watts_per_second=v[14],
            band_energy_ratio=_none(v[15]),
            oscillation_band=BANDS[int(v[16])],
            band_oscillation_hz=_none(v[17]),
            steady_peak_watts=_none(v[18]),
            steady_trough_watts=_none(v[19]),
            steady_ratio=v[20],
            steady_band_energy_ratio=_none(v[21]),
        )

    def percentiles(self, x: array[float], qs: Sequence[float]) -> list[float]:
        """``stats.percentiles``: NumPy's linear percentiles, the same to the bit."""
        if not len(x):
            raise ValueError("percentiles of an empty array")
        if not all(0.0 <= q <= 100.0 for q in qs):
            raise ValueError(f"percentiles must lie in [0, 100], not {qs}")
        q = (ctypes.c_double * len(qs))(*qs)
        out = (ctypes.c_double * len(qs))()
        if self._percentiles(_at(x), len(x), ctypes.addressof(q), len(qs), ctypes.addressof(out)) < 0:
            raise MemoryError("the power kernel could not allocate its work space")
        return list(out)

    def ramp_percentile(self, t: array[float], w: array[float], q: float) -> float:
        """The ``q``-th percentile of the rates (W/s, either way) between consecutive readings."""
        if len(t) < 2 or len(t) != len(w):
            raise ValueError(f"ramps need two readings or more and a time for each ({len(t)}, {len(w)})")
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"a percentile must lie in [0, 100], not {q}")
        out: float = self._ramp(_at(t), _at(w), len(t), q)
        # NaN is also the answer (as NumPy's) where a reading is NaN or two times repeat
        if math.isnan(out) and all(map(math.isfinite, w)) and all(a < b for a, b in zip(t, t[1:])):
            raise MemoryError("the power kernel could not allocate its work space")
        return out

    def node_sum(self, rows: Sequence[Series]) -> Series | None:
        """``analysis.node_sum`` over series that all still report (the caller leaves the others
        out, as ``metrics.reporting`` says): the common grid and the sum on it, or None."""
        if not rows:
            return None
        cols = self._rows(rows)
        head = (ctypes.c_double * 2)()
        count = self._grid(len(rows), *cols[:3], head)
        if count < 0:
            raise MemoryError("the power kernel could not allocate its work space")
        if count == 0:
            return None
        grid = array("d", bytes(8 * count))
        self._fill(head[0], head[1], count, _at(grid))
        return grid, self._sum(grid, rows, cols)

    def interp_sum(self, points: array[float], rows: Sequence[Series]) -> array[float]:
        """Sum over the rows of ``np.interp(points, t, w)`` (each row held at its ends)."""
        return self._sum(points, rows, self._rows(rows))

    def _sum(self, points: array[float], rows: Sequence[Series], cols: Columns) -> array[float]:
        out = array("d", bytes(8 * len(points)))
        if points:
            self._interp_sum(_at(points), len(points), len(rows), *cols[:3], _at(out))
        return out

    @staticmethod
    def _rows(rows: Sequence[Series]) -> Columns:
        """Three C arrays over ``rows``: the addresses of their times and of their watts, and
        their lengths; and the rows' buffers, held (unresizable) while the caller keeps them."""
        for t, w in rows:
            if len(t) != len(w) or not len(t):
                raise ValueError(f"a series of {len(t)} times and {len(w)} readings")
        held = [(_at(t), _at(w)) for t, w in rows]
        k = len(rows)
        ts = (ctypes.c_void_p * k)(*[ctypes.addressof(t) for t, _ in held])
        ws = (ctypes.c_void_p * k)(*[ctypes.addressof(w) for _, w in held])
        ns = (ctypes.c_int * k)(*[len(t) for t, _ in rows])
        return ts, ws, ns, held


def load(path: str) -> Kernel | None:
    """The kernel in the library at ``path``, or None (logged) where it cannot be loaded."""
    try:
        return Kernel(ctypes.CDLL(path))
    except (OSError, AttributeError, ValueError) as e:
        log.warning("event=power_kernel_unavailable path=%s error=%r", path, str(e))
        return None


def library_path() -> str | None:
    """The built library beside this module, if the install built it."""
    here = os.path.dirname(os.path.abspath(__file__))  # os.path: pathlib would cost the daemon 0.7 MB
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = os.path.join(here, f"_kernel{suffix}")
        if os.path.isfile(p):
            return p
    return None


def _built() -> Kernel | None:
    path = library_path()
    return load(path) if path is not None else None


active: Kernel | None = _built()  # what the live analysis uses; None: NumPy. Tests swap it.


def use(kernel: Kernel | None) -> Kernel | None:
    """Make ``kernel`` the active one (None: NumPy); returns the one it replaces."""
    global active
    old, active = active, kernel
    return old
