"""GEMM checks: golden (reference result), ABFT checksums (Huang-Abraham) and Freivalds.

Tolerances come from the rounding-error bound |C - C^| <= gamma_k |A||B| (Higham), with the
device's accumulation precision and output rounding (``numerics.gemm_error_coefficient``); an
element is wrong only when its error exceeds that bound, or, where the engine is bitwise
deterministic against a host reference, when any bit differs. Inputs are uniform in [-1, 1)
from a seed, rounded to the dtype, so every result names the seed that reproduces it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from rasd.sdc.engines import Engine, host_product
from rasd.sdc.numerics import bit_view, differing_bits, gemm_error_coefficient, to_dtype, underflow_term
from rasd.sdc.results import CheckResult, Result

_MAX_REPORTED = 8


# Small caches: at n = 2048 one entry is 32 MB of inputs or 80 MB of references, and the checks
# walk sizes and dtypes in order, GPU after GPU, so the last few entries are the ones reused.
@lru_cache(maxsize=3)
def host_inputs(seed: int, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Square operands of side ``n`` for ``seed``, exactly representable in ``dtype``."""
    rng = np.random.default_rng([seed, n, 0x5DC])
    a = to_dtype(rng.uniform(-1.0, 1.0, (n, n)).astype(np.float32), dtype)
    b = to_dtype(rng.uniform(-1.0, 1.0, (n, n)).astype(np.float32), dtype)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


@lru_cache(maxsize=2)
def golden(seed: int, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host reference for ``seed``: (A B in fp64, |A||B| in fp64, the NumPy engine's clean bits)."""
    a, b = host_inputs(seed, n, dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    clean = bit_view(host_product(a, b, dtype), dtype)
    return a64 @ b64, np.abs(a64) @ np.abs(b64), clean


@dataclass(frozen=True)
class _Operands:
    a: Any
    b: Any
    row_ref: Any  # A (B e)
    col_ref: Any  # (e^T A) B
    row_mag: Any  # |A| (|B| e): bounds the row checksums
    col_mag: Any  # (e^T |A|) |B|


class Workspace:
    """Device-resident operands and references of one engine, kept for repeated checks.

    The cache is bounded in bytes (``budget``), never only in entries: an entry at n = 2048 is
    tens of MB, and eight GPUs' workspaces of six entries each once took gigabytes of host RAM on
    the NumPy engine. The entry in use is always kept, whatever its size."""

    def __init__(self, engine: Engine, entries: int = 6, budget: int | None = None):
        self.engine = engine
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._entries = entries
        self._budget = budget

    def _get(self, key: tuple, build: Any) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = build()
        self._cache[key] = value
        self._sizes[key] = _nbytes(value)
        while len(self._cache) > 1 and (len(self._cache) > self._entries or (
                self._budget is not None and sum(self._sizes.values()) > self._budget)):
            old, _ = self._cache.popitem(last=False)
            del self._sizes[old]
        return value

    def cached_bytes(self) -> int:
        return sum(self._sizes.values())


    def operands(self, seed: int, n: int, dtype: str) -> _Operands:
        def build() -> _Operands:
            e, xp = self.engine, self.engine.xp
            a_h, b_h = host_inputs(seed, n, dtype)
            a, b = e.put(a_h), e.put(b_h)
            # fp64 copies only while the checksum vectors are built: kept, they were 4 n^2 x 8
            # bytes per entry per GPU
            a64, b64 = a.astype(xp.float64), b.astype(xp.float64)
            row_ref, col_ref = a64 @ b64.sum(axis=1), a64.sum(axis=0) @ b64
            xp.abs(a64, out=a64)
            xp.abs(b64, out=b64)
            return _Operands(
                a, b, row_ref=row_ref, col_ref=col_ref,
                row_mag=a64 @ b64.sum(axis=1), col_mag=a64.sum(axis=0) @ b64,
            )

        return self._get(("ops", seed, n, dtype), build)

    def reference(self, seed: int, n: int, dtype: str) -> tuple[Any, Any, Any]:
        """(A B in fp64, the elementwise error bound, the clean bits) on the device, built once."""

        def build() -> tuple[Any, Any, Any]:
            ref, mag, clean = golden(seed, n, dtype)
            bound = element_bound(self.engine, n, dtype, mag)
            return self.engine.put(ref), self.engine.put(bound), self.engine.put(clean)

        return self._get(("ref", seed, n, dtype), build)


def _nbytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(_nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return int(getattr(value, "nbytes", 0))


def timed_matmul(ws: Workspace, ops: _Operands, dtype: str) -> tuple[Any, float]:
    e = ws.engine
    e.synchronize()
    t0 = time.perf_counter()
    c = e.matmul(ops.a, ops.b, dtype)
    e.synchronize()
    return c, time.perf_counter() - t0


def _gflops(n: int, seconds: float) -> float | None:
    return 2.0 * n**3 / seconds / 1e9 if seconds > 0 else None


def _coefficient(engine: Engine, n: int, dtype: str) -> float:
    return gemm_error_coefficient(n, dtype, engine.accumulate_roundoff(dtype))


def _eta(engine: Engine, n: int, dtype: str) -> float:
    return underflow_term(n, dtype, engine.accumulate_roundoff(dtype))


def element_bound(engine: Engine, n: int, dtype: str, mag: Any) -> Any:
    """The largest error a correct GEMM element may have: c |A||B| + the underflow term."""
    return _coefficient(engine, n, dtype) * mag + _eta(engine, n, dtype)


def golden_gemm(ws: Workspace, seed: int, n: int, dtype: str) -> CheckResult:
    """Compare a device GEMM of fixed-seed inputs with the host reference, element by element.

    Where the engine is bitwise deterministic against the host, any differing bit fails (and
    the bound is evaluated only on those elements, for the evidence); elsewhere an element
    fails when its error exceeds the gamma_k |A||B| bound.
    """
    e, xp = ws.engine, ws.engine.xp
    t0 = time.perf_counter()
    ops = ws.operands(seed, n, dtype)
    ref, bound, clean = ws.reference(seed, n, dtype)
    c, mm = timed_matmul(ws, ops, dtype)
    if e.bitwise_reference():
        flat = xp.flatnonzero(bit_view_dev(xp, c, dtype) != clean)
    else:
        flat = xp.flatnonzero(~(xp.abs(c.astype(xp.float64) - ref) <= bound))  # NaN fails too
    count = int(flat.size)
    evidence: dict[str, Any] = {"check": "golden_gemm", "dtype": dtype, "n": n, "seed": seed,
                                "bound_coefficient": _coefficient(e, n, dtype), "bitwise": e.bitwise_reference()}
    if count:
        got = c.reshape(-1)[flat]
        exp = ref.reshape(-1)[flat]
        bnd = bound.reshape(-1)[flat]
        beyond = ~(xp.abs(got.astype(xp.float64) - exp) <= bnd)
        top = flat[:_MAX_REPORTED]
        idx, c_h, ref_h, bnd_h = (e.to_host(x[:_MAX_REPORTED]) for x in (flat, got, exp, bnd))
        good = e.to_host(clean.reshape(-1)[top]) if e.bitwise_reference() else None
        evidence.update(
            elements=count,
            beyond_bound=int(beyond.sum()),
            first=[
                _element(int(i), n, float(ref_h[k]), c_h[k], float(bnd_h[k]), dtype,
                         None if good is None else int(good[k]))
                for k, i in enumerate(idx)
            ],
        )
    result = Result.FAIL if count else Result.PASS
    return CheckResult(e.device, "golden_gemm", result, time.perf_counter() - t0, _gflops(n, mm), evidence)


def bit_view_dev(xp: Any, x: Any, dtype: str) -> Any:
    if xp is np:
        return bit_view(x, dtype)
    if dtype == "bfloat16":
        return (x.view(xp.uint32) >> 16).astype(xp.uint16)
    return x.view({"float64": xp.uint64, "float32": xp.uint32, "float16": xp.uint16}[dtype])


def _element(
    flat: int, n: int, expected: float, got: Any, bound: float | None, dtype: str, expected_bits: int | None = None
) -> dict[str, Any]:
    got_f = float(got)
    out = {"row": flat // n, "col": flat % n, "expected": expected, "got": got_f,
           "error": abs(got_f - expected) if np.isfinite(got_f) else None, "bound": bound}
    out.update(differing_bits(expected, got, dtype, expected_bits))
    return out


def abft(ws: Workspace, seed: int, n: int, dtype: str) -> CheckResult:
    """Huang-Abraham: C e against A (B e) and e^T C against (e^T A) B, in fp64, O(n^2) extra.

    A single corrupted element shows in one row and one column sum, which locate it; the
    discrepancy itself gives the expected value back.
    """
    e, xp = ws.engine, ws.engine.xp
    t0 = time.perf_counter()
    ops = ws.operands(seed, n, dtype)
    c, mm = timed_matmul(ws, ops, dtype)
    coef = _coefficient(e, n, dtype)
    c64 = c.astype(xp.float64)
    row_delta = c64.sum(axis=1) - ops.row_ref
    col_delta = c64.sum(axis=0) - ops.col_ref
    # The fp64 checksums add about gamma_n + gamma_2n (fp64) of |A||B| e; |C| <= |A||B| elementwise.
    slack = coef + 3 * n * 2.0**-53
    rows = xp.flatnonzero(~(xp.abs(row_delta) <= slack * ops.row_mag + n * _eta(e, n, dtype)))
    cols = xp.flatnonzero(~(xp.abs(col_delta) <= slack * ops.col_mag + n * _eta(e, n, dtype)))
    evidence: dict[str, Any] = {"check": "abft", "dtype": dtype, "n": n, "seed": seed}
    result = Result.PASS
    if rows.size or cols.size:
        result = Result.FAIL
        rows_h, cols_h = e.to_host(rows), e.to_host(cols)
        rd, cd = e.to_host(row_delta[rows]), e.to_host(col_delta[cols])
        located = []
        for r, dr in list(zip(rows_h.tolist(), rd.tolist()))[:_MAX_REPORTED]:
            # The column whose discrepancy matches this row's is the corrupted element's column.
            if len(cols_h) and np.isfinite(dr):
                k = int(np.argmin(np.abs(cd - dr)))
                col = int(cols_h[k])
                got = e.to_host(c[r, col].reshape(1))[0]
                located.append(_element(r * n + col, n, float(got) - dr, got, None, dtype))
        evidence.update(rows=rows_h[:_MAX_REPORTED].tolist(), cols=cols_h[:_MAX_REPORTED].tolist(),
                        failing_rows=int(rows.size), failing_cols=int(cols.size), located=located)
    return CheckResult(e.device, "abft", result, time.perf_counter() - t0, _gflops(n, mm), evidence)


def freivalds(ws: Workspace, seed: int, n: int, dtype: str, trials: int) -> CheckResult:
    """Freivalds: C x against A (B x) for ``trials`` random +-1 vectors. In exact arithmetic a wrong
    row escapes one trial with probability <= 1/2 (a single wrong element never escapes), so all
    trials miss with probability <= 2^-trials; the tolerance is the same gamma bound, row by row."""
    e, xp = ws.engine, ws.engine.xp
    t0 = time.perf_counter()
    ops = ws.operands(seed, n, dtype)
    c, mm = timed_matmul(ws, ops, dtype)
    coef = _coefficient(e, n, dtype)
    rng = np.random.default_rng([seed, n, trials, 0xF4E1])
    x = e.put(rng.choice(np.array([-1.0, 1.0]), size=(n, trials)))
    f64 = xp.float64
    delta = c.astype(f64) @ x - ops.a.astype(f64) @ (ops.b.astype(f64) @ x)
    # |x| = e, so |A|(|B| |x|) = |A|(|B| e): the row-checksum bound serves every trial.
    bound = (coef + 3 * n * 2.0**-53) * ops.row_mag + n * _eta(e, n, dtype)
    bad = ~(xp.abs(delta) <= bound[:, None])
    rows = xp.flatnonzero(bad.any(axis=1))
    evidence: dict[str, Any] = {"check": "freivalds", "dtype": dtype, "n": n, "seed": seed, "trials": trials,
                                "miss_probability": 2.0**-trials}
    result = Result.PASS
    if rows.size:
        result = Result.FAIL
        evidence.update(rows=e.to_host(rows[:_MAX_REPORTED]).tolist(), failing_rows=int(rows.size),
                        failing_trials=int(bad.any(axis=0).sum()))
    return CheckResult(e.device, "freivalds", result, time.perf_counter() - t0, _gflops(n, mm), evidence)


def bare_matmul_seconds(ws: Workspace, seed: int, n: int, dtype: str) -> float:
    """One device GEMM on cached operands: the baseline the checks are measured against."""
    _, seconds = timed_matmul(ws, ws.operands(seed, n, dtype), dtype)
    return seconds
