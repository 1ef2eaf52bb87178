"""Recorded power traces (CSV) for ``rasd power analyze``.

Accepted forms (README "Power traces" shows one example of each):
- rasd's own: header ``timestamp,gpu,watts``, timestamp in seconds (any epoch).
- any ``nvidia-smi --query-gpu=... --format=csv[,nounits] -lms N`` log whose columns include
  ``timestamp`` and a power column, in any order and with any other columns. The power column is
  ``power.draw.instant`` where present (NVML's instant reading), else ``power.draw`` (a 1 s
  average on recent drivers), else ``power.draw.average``. Values may carry units (``312.45 W``).
  The GPU is named by ``index``, ``pci.bus_id``, ``uuid`` or ``serial`` (that order of preference);
  without any of them the rows are assigned by nvidia-smi's row cycle (each sample prints one row
  per GPU, in order), recognised from the timestamps or given as ``gpus=N``.
nvidia-smi's timestamps are local time without a zone; only differences matter, so they are read
as UTC. Every bad row is reported with its line number; nothing is silently dropped.

A log polled faster than NVML refreshes (about 10 Hz for instant power) repeats each reading until
the next refresh; only distinct updates are kept, timed by the row where each first appears, so
rates, ramps and spectra are those of the sensor, not of the logging loop.

Reading is streamed in blocks and vectorised per column, so a 2-million-row log costs about a
second and tens of MB (tests/bench/bench_power.py).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Iterable

import numpy as np

POWER_COLUMNS = ("power.draw.instant", "power.draw", "power.draw.average")  # preference order
GPU_COLUMNS = {  # header name -> the id it carries (nvidia-smi prints either spelling)
    "index": "index",
    "pci.bus_id": "pci.bus_id",
    "gpu_bus_id": "pci.bus_id",
    "uuid": "uuid",
    "gpu_uuid": "uuid",
    "serial": "serial",
    "gpu_serial": "serial",
}
GPU_PREFERENCE = ("index", "pci.bus_id", "uuid", "serial")
SMI_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")
MAX_REPORTED = 20
MAX_GPUS = 128  # largest row cycle searched for (a node, not a rack)
BLOCK_CHARS = 1 << 20  # ~1 MB of text per vectorised block (cache-sized; larger costs page faults)
_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")


class TraceError(ValueError):
    """The trace cannot be used; ``problems`` holds one "line N: why" string per bad row."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        text = "\n".join(f"{source}: {p}" for p in shown)
        if more:
            text += f"\n{source}: ... and {more} more bad rows"
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class Trace:
    layout: str  # "rasd" or "nvidia-smi"
    rows: int  # data rows read
    series: dict[int, tuple[np.ndarray, np.ndarray]]  # gpu -> distinct updates (seconds, watts)
    power_column: str  # the column the watts came from
    gpu_source: str  # "column index", "column pci.bus_id", ..., "row cycle", "gpus option"
    gpu_ids: dict[int, str] = field(default_factory=dict)  # gpu -> its id in the file
    repeats: int = 0  # rows that repeated the GPU's previous reading (one NVML update, kept once)
    notes: tuple[str, ...] = ()  # what was chosen and why, one sentence each

    @property
    def updates(self) -> int:
        return sum(t.size for t, _ in self.series.values())


@dataclass(frozen=True, slots=True)
class _Layout:
    name: str  # "rasd" | "nvidia-smi"
    header: str  # the header line as written (a repeat of it later is skipped)
    ncols: int
    time_col: int
    power_col: int
    power_name: str
    gpu_col: int | None
    gpu_name: str | None  # "index", "pci.bus_id", "uuid", "serial"; None: by row cycle
    notes: tuple[str, ...] = ()


def parse_trace(text: str, source: str = "<trace>", gpus: int | None = None) -> Trace:
    """Parse a whole trace held in memory (tests, small files); see ``read_trace``."""
    return read_trace(io.StringIO(text), source, gpus)


def read_trace(fh: IO[str], source: str = "<trace>", gpus: int | None = None) -> Trace:
    """Read a trace from an open text file, block by block.

    ``gpus``: the number of GPUs when the file has no GPU column (nvidia-smi's row cycle);
    without it the cycle is recognised from the timestamps.
    """
    header_line, lineno = _first_line(fh)
    if header_line is None:
        raise TraceError(source, ["the file is empty; expected a header such as 'timestamp,gpu,watts' "
                                  "or nvidia-smi's 'timestamp, index, power.draw.instant [W]'"])
    layout = _layout(header_line, lineno, source)
    if gpus is not None and layout.gpu_col is not None:
        raise TraceError(source, [f"line {lineno}: the file names its GPUs in column {layout.gpu_name}; "
                                  "drop --gpus"])
    if gpus is not None and gpus < 1:
        raise TraceError(source, [f"--gpus {gpus}: give the number of GPUs the log cycles through (1 or more)"])
    pending = _peek_power(fh, layout)
    layout, first_block = pending
    times: list[np.ndarray] = []
    watts: list[np.ndarray] = []
    names: list[np.ndarray] = []
    ids: dict[str, int] = {}
    problems: list[str] = []
    line = lineno + 1
    block = first_block
    while block:
        if not block.endswith("\n"):
            block += fh.readline()
        count = block.count("\n") + (0 if block.endswith("\n") else 1)
        got = _fast_block(block, layout, ids)
        if got is None:
            got = _slow_block(block, layout, ids, line, problems)
        if got is not None:
            times.append(got[0])
            watts.append(got[1])
            names.append(got[2])
        line += count
        block = fh.read(BLOCK_CHARS)
    if problems:
        raise TraceError(source, problems)
    if not times or sum(a.size for a in times) == 0:
        raise TraceError(source, [f"line {lineno}: a header but no rows"])
    t = np.concatenate(times)
    w = np.concatenate(watts)
    g = np.concatenate(names)
    del times, watts, names
    notes = list(layout.notes)
    gpu_ids: dict[int, str]
    if layout.gpu_col is not None:
        source_text = f"column {layout.gpu_name}"
        notes.append(f"GPUs named by column {layout.gpu_name}")
        if layout.gpu_name == "index":
            gpu_ids = {int(v): str(int(v)) for v in np.unique(g)}
        else:
            gpu_ids = {v: k for k, v in ids.items()}
    else:
        n = _cycle(t) if gpus is None else gpus
        if n is None:
            raise TraceError(source, [
                "no GPU column (index, pci.bus_id, uuid or serial) and the rows show no steady "
                "cycle of one row per GPU; add index to --query-gpu or give --gpus N"
            ])
        whole = t.size // n * n
        if whole < t.size:
            notes.append(f"the last {t.size - whole} rows are an incomplete sample of {n} GPUs; left out")
        t, w = t[:whole], w[:whole]
        g = (np.arange(whole) % n).astype(np.int32)
        source_text = "gpus option" if gpus is not None else "row cycle"
        how = "as given by --gpus" if gpus is not None else "recognised from the timestamps"
        notes.append(f"no GPU column: rows taken as a cycle of {n} GPUs (index 0-{n - 1} in order), {how}")
        gpu_ids = {k: str(k) for k in range(n)}
    series, repeats = _distinct(t, w, g)
    if repeats:
        notes.append(f"{repeats} rows repeat the GPU's previous reading (logged faster than NVML "
                     "refreshes); each update counted once")
    return Trace(layout=layout.name, rows=int(t.size), series=series, power_column=layout.power_name,
                 gpu_source=source_text, gpu_ids=gpu_ids, repeats=repeats, notes=tuple(notes))


def _first_line(fh: IO[str]) -> tuple[str | None, int]:
    lineno = 0
    while True:
        raw = fh.readline()
        if not raw:
            return None, lineno
        lineno += 1
        if raw.strip():
            return raw.rstrip("\n"), lineno


def _names(cells: list[str]) -> list[str]:
    """Column names without their unit suffix (``power.draw [W]`` -> ``power.draw``)."""
    return [c.split("[")[0].strip().lower() for c in cells]


def _layout(header: str, lineno: int, source: str) -> _Layout:
    cells = [c.strip() for c in header.split(",")]
    names = _names(cells)
    if names == ["timestamp", "gpu", "watts"]:
        return _Layout("rasd", header, 3, 0, 2, "watts", 1, "index")
    if _looks_like_data(cells[0]):
        raise TraceError(source, [
            f"line {lineno}: the first line is data, not a header (recorded with --format=csv,noheader?); "
            "record with --format=csv so rasd knows the columns"
        ])
    if "timestamp" not in names:
        raise TraceError(source, [
            f"line {lineno}: header {', '.join(cells)!s} has no timestamp column; expected "
            "'timestamp,gpu,watts' or nvidia-smi's CSV with timestamp among --query-gpu's columns"
        ])
    power = next((p for p in POWER_COLUMNS if p in names), None)
    if power is None:
        raise TraceError(source, [
            f"line {lineno}: header {', '.join(cells)!s} has no power column; add power.draw.instant "
            "(or power.draw) to --query-gpu"
        ])
    gpu_name = next((GPU_COLUMNS[n] for pref in GPU_PREFERENCE for n in names if GPU_COLUMNS.get(n) == pref), None)
    gpu_col = None
    if gpu_name is not None:
        gpu_col = next(i for i, n in enumerate(names) if GPU_COLUMNS.get(n) == gpu_name)
    notes = [f"power from column {power}" + ("" if power == "power.draw.instant" else
                                             " (power.draw.instant is not in the file)")]
    return _Layout("nvidia-smi", header, len(cells), names.index("timestamp"), names.index(power), power,
                   gpu_col, gpu_name, tuple(notes))


def _looks_like_data(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        pass
    try:
        _smi_time(cell)
        return True
    except ValueError:
        return False


def _peek_power(fh: IO[str], layout: _Layout) -> tuple[_Layout, str]:
    """Fall back from power.draw.instant when the driver prints [N/A] for it but has power.draw."""
    block = fh.read(BLOCK_CHARS)
    if layout.power_name != "power.draw.instant":
        return layout, block
    names = _names([c.strip() for c in layout.header.split(",")])
    if "power.draw" not in names:
        return layout, block
    first = next((ln for ln in block.split("\n", 64)[:64] if ln.strip() and ln != layout.header), None)
    if first is None:
        return layout, block
    cells = first.split(",")
    if len(cells) != layout.ncols:
        return layout, block
    try:
        _watts(cells[layout.power_col])
        return layout, block
    except ValueError:
        pass
    alt = names.index("power.draw")
    try:
        _watts(cells[alt])
    except ValueError:
        return layout, block
    note = (f"power from column power.draw: power.draw.instant reads {cells[layout.power_col].strip()!r} "
            "on this driver")
    return _Layout(layout.name, layout.header, layout.ncols, layout.time_col, alt, "power.draw",
                   layout.gpu_col, layout.gpu_name, (note,)), block


def _fast_block(block: str, lay: _Layout, ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Whole-column conversion of a block of clean rows; None sends the block to the slow path."""
    body = block[:-1] if block.endswith("\n") else block
    if not body or "\n\n" in body or body.startswith("\n") or lay.header in body:
        return None
    rows = body.count("\n") + 1
    if lay.name == "rasd":
        return _fast_numeric(body, rows)
    cells = body.replace("\n", ",").split(",")
    if len(cells) != rows * lay.ncols:
        return None
    step = lay.ncols
    try:
        tcol = cells[lay.time_col::step]
        if lay.name == "rasd":
            t = np.array(list(map(float, tcol)))
        else:
            # One join and two replaces over the column instead of work per cell: nvidia-smi
            # writes "YYYY/MM/DD HH:MM:SS.mmm", numpy parses "YYYY-MM-DD HH:MM:SS.mmm" natively.
            joined = "\n".join(tcol).replace("/", "-").replace("\n ", "\n").strip()
            stamps = np.array(joined.split("\n"), dtype="datetime64[us]")
            if np.isnat(stamps).any():
                return None
            t = (stamps - _EPOCH).astype(np.int64) / 1e6
        wtext = "\n".join(cells[lay.power_col::step]).replace("W", " ")
        w = np.array(wtext.split(), dtype=float)
        if w.size != rows:
            return None
        gcol = cells[lay.gpu_col::step] if lay.gpu_col is not None else None
        if gcol is None:
            g = np.zeros(rows, dtype=np.int32)
        elif lay.gpu_name == "index":
            g = np.array(list(map(int, gcol)), dtype=np.int32)
        else:
            g = np.array([ids.setdefault(c.strip(), len(ids)) for c in gcol], dtype=np.int32)
    except ValueError:
        return None
    if not (np.isfinite(t).all() and np.isfinite(w).all()) or (w < 0).any() or (g < 0).any():
        return None
    return t, w, g


def _fast_numeric(body: str, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """rasd's own layout is all numbers: numpy parses the whole block in C."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns instead of raising
        try:
            flat = np.fromstring(body.replace("\n", ","), dtype=float, sep=",")
        except ValueError:
            return None
    if flat.size != rows * 3:
        return None
    table = flat.reshape(rows, 3)
    t, g, w = table[:, 0].copy(), table[:, 1], table[:, 2].copy()
    if not (np.isfinite(t).all() and np.isfinite(w).all()) or (w < 0).any():
        return None
    if (g < 0).any() or (g != np.floor(g)).any():
        return None
    return t, w, g.astype(np.int32)


def _slow_block(
    block: str, lay: _Layout, ids: dict[str, int], first_line: int, problems: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Row by row, collecting one "line N: why" per bad row."""
    t: list[float] = []
    w: list[float] = []
    g: list[int] = []
    for k, raw in enumerate(block.split("\n")):
        if not raw.strip() or raw == lay.header:
            continue
        lineno = first_line + k
        cells = raw.split(",")
        if len(cells) != lay.ncols:
            problems.append(f"line {lineno}: expected {lay.ncols} columns, found {len(cells)}")
            continue
        try:
            ts = cells[lay.time_col].strip()
            ti = _number(ts, "timestamp") if lay.name == "rasd" else _smi_time(ts)
            wi = _watts(cells[lay.power_col])
            gi = 0
            if lay.gpu_col is not None:
                text = cells[lay.gpu_col].strip()
                if lay.gpu_name == "index":
                    if not text.isdigit():
                        raise ValueError(f"GPU index {text!r} is not a whole number")
                    gi = int(text)
                elif not text or text.startswith("["):
                    raise ValueError(f"GPU {lay.gpu_name} {text!r} is not an id")
                else:
                    gi = ids.setdefault(text, len(ids))
        except ValueError as e:
            problems.append(f"line {lineno}: {e}")
            continue
        t.append(ti)
        w.append(wi)
        g.append(gi)
    if problems or not t:
        return None
    return np.asarray(t), np.asarray(w), np.asarray(g, dtype=np.int32)


def _watts(text: str) -> float:
    v = text.strip()
    if v.endswith("W"):
        v = v[:-1].strip()
    if v.startswith("[") or v.upper() == "N/A":  # [N/A], [Not Supported], [Unknown Error]
        raise ValueError(f"power reading {text.strip()!r} is not a number")
    watts = _number(v, "power")
    if watts < 0:
        raise ValueError(f"power {text.strip()!r} is negative")
    return watts


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} {text!r} is not finite")
    return v


def _smi_time(text: str) -> float:
    for fmt in SMI_TIME_FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return dt.replace(tzinfo=timezone.utc).timestamp()
    raise ValueError(f"timestamp {text!r} is not like 2024/05/01 12:00:00.123")


def _cycle(t: np.ndarray) -> int | None:
    """The number of GPUs in nvidia-smi's row cycle, from the timestamps; None if no cycle fits.

    With N GPUs each sample prints N rows within a few milliseconds, then waits the logging
    interval. The smallest N whose groups are tight (spread under half a step) and whose steps are
    steady (no step under half, most under twice the median) is the cycle. A divisor of the true N
    fails the steadiness test (half its steps fall inside one sample), a multiple the tightness.
    """
    n = t.size
    for gpus in range(1, min(MAX_GPUS, n // 4) + 1):
        whole = n // gpus * gpus
        groups = t[:whole].reshape(-1, gpus)
        starts = groups[:, 0]
        steps = np.diff(starts)
        if steps.size < 3:
            break
        med = float(np.median(steps))
        if med <= 0:
            continue
        spread = groups[:, -1] - groups[:, 0]
        lo, hi = np.percentile(steps, [10.0, 90.0])
        if float(np.max(spread)) < 0.5 * med and lo > 0.5 * med and hi < 2.0 * med:
            return gpus
    return None


def _distinct(t: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], int]:
    """Per GPU, time-ordered distinct updates: a reading equal to the GPU's previous one is the
    same NVML update seen again (kept once, at its first row); so is a repeated timestamp."""
    order = np.argsort(g, kind="stable")
    cuts = np.cumsum(np.bincount(g))[:-1]
    series: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    repeats = 0
    for part in np.split(order, cuts):
        if part.size == 0:
            continue
        tg, wg = t[part], w[part]
        if tg.size > 1 and (np.diff(tg) < 0).any():
            o = np.argsort(tg, kind="stable")
            tg, wg = tg[o], wg[o]
        keep = np.ones(tg.size, dtype=bool)
        keep[1:] = wg[1:] != wg[:-1]
        tk, wk = tg[keep], wg[keep]
        later = np.ones(tk.size, dtype=bool)
        later[1:] = np.diff(tk) > 0
        tk, wk = tk[later], wk[later]
        repeats += int(tg.size - tk.size)
        series[int(g[part[0]])] = (tk, wk)
    return dict(sorted(series.items())), repeats


def write_trace(series: dict[int, tuple[Iterable[float], Iterable[float]]]) -> str:
    """rasd's own layout (used by tests and to save a live trace)."""
    out = ["timestamp,gpu,watts"]
    rows = []
    for gpu, (t, w) in series.items():
        rows += [(float(ti), gpu, float(wi)) for ti, wi in zip(t, w)]
    rows.sort()
    out += [f"{t:.6f},{g},{w:.3f}" for t, g, w in rows]
    return "\n".join(out) + "\n"
