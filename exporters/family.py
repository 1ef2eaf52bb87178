"""Metric families and the fast text renderer used for every scrape, with no third-party import.

prometheus_client's ``GaugeMetricFamily.add_metric`` builds a label dict and a ``Sample`` per
series, and ``generate_latest`` validates and escapes every label of every series on every scrape:
about 4 microseconds a series, 45 ms for a 72-GPU node's 10,000 series. Here a family keeps its
rows as (label values, value) tuples, and the renderer formats each distinct series prefix
(``name{labels} ``) once and reuses it while the series exists, so a scrape costs a dictionary
lookup and a number format per series. The text is byte-for-byte what ``generate_latest`` writes
(a test compares them over a whole daemon's exposition).

The daemon imports nothing of prometheus_client: the package loads its whole client (metrics,
registry, exposition with its HTTP and WSGI servers, urllib) on any import, about 1.3 MB of a
daemon's memory for the two things used here (a family's shape and Go's number spelling). A
``Family`` has the attributes prometheus_client's registry and ``generate_latest`` read (``name``,
``type``, ``documentation``, ``samples``), so tests still collect, parse and compare with it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple, Sequence

# Caches are bounded: label values that churn (a new Xid code, a new error kind) must not grow
# them forever. Clearing costs one re-format of each live series, on the next scrape only.
_MAX_PREFIXES = 200_000
_MAX_VALUES = 50_000
_INF = math.inf


class Sample(NamedTuple):
    """One series as prometheus_client's ``Sample`` spells it (same fields, same order)."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: Any = None
    native_histogram: Any = None


class Family:
    """A gauge or counter family whose rows are ``(label values, value)`` tuples.

    ``name`` is the family name (a counter without ``_total``); its series are ``sample_name``.
    ``samples`` is built on demand, only for readers that want prometheus_client's shape (tests,
    registries).
    """

    __slots__ = ("name", "documentation", "type", "labelnames", "rows")

    def __init__(self, name: str, documentation: str, typ: str = "gauge", labels: Sequence[str] = (),
                 value: float | None = None):
        if typ not in ("gauge", "counter"):
            raise ValueError(f"Family supports gauge and counter, not {typ!r}")
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.labelnames: tuple[str, ...] = tuple(labels)
        self.rows: list[tuple[tuple[str, ...], float]] = []
        if value is not None:
            self.rows.append(((), value))

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.rows.append((values, value))

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        """One series: its label values in the order of the family's label names."""
        self.rows.append((tuple(labels), value))

    @property
    def samples(self) -> list[Sample]:
        n = self.sample_name
        return [Sample(n, dict(zip(self.labelnames, v)), x) for v, x in self.rows]

    def __repr__(self) -> str:
        return f"Family({self.name!r}, {self.type!r}, {len(self.rows)} series)"


def GaugeFamily(name: str, documentation: str, value: float | None = None,  # noqa: N802 - a constructor
                labels: Sequence[str] | None = None) -> Family:
    """A gauge: one unlabelled series of ``value``, or series added with ``add_metric``."""
    return Family(name, documentation, "gauge", labels or (), value)


def CounterFamily(name: str, documentation: str, value: float | None = None,  # noqa: N802 - a constructor
                  labels: Sequence[str] | None = None) -> Family:
    """A counter; ``name`` with or without ``_total`` (its series always end in ``_total``)."""
    if name.endswith("_total"):
        name = name[: -len("_total")]
    return Family(name, documentation, "counter", labels or (), value)


def go_float(v: float) -> str:
    """A sample value as the Prometheus text format spells it: ``+Inf``, ``-Inf``, ``NaN``, else
    Python's shortest round-trip digits, with positive numbers of seven or more integer digits
    in exponent form with at least two exponent digits (1234567.0 -> ``1.234567e+06``), as Go
    writes them and prometheus_client copies."""
    v = float(v)
    if v != v:
        return "NaN"
    if v == _INF:
        return "+Inf"
    if v == -_INF:
        return "-Inf"
    text = repr(v)
    whole, dot, frac = text.partition(".")
    if v > 0 and dot and len(whole) > 6:  # positional repr (below 1e16) with 7+ integer digits
        digits = (whole + frac).rstrip("0")
        head, tail = digits[0], digits[1:]
        exp = len(whole) - 1
        return f"{head}.{tail}e+{exp:02d}" if tail else f"{head}e+{exp:02d}"
    return text


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefix(name: str, labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}} " if inner else f"{name} "


class TextRenderer:
    """Prometheus text format (0.0.4) for families, with the per-series prefixes cached.

    Not thread-safe: one renderer per cache, used under the cache's lock."""

    def __init__(self) -> None:
        self._by_family: dict[str, dict[tuple[str, ...], str]] = {}  # series prefixes, by sample name
        self._cached = 0
        # per family: its rows, help and text as last rendered; the text is the very bytes object
        # the scrape cache keeps, so an unchanged family costs no copy
        self._last: dict[str, tuple[list[tuple[tuple[str, ...], float]], str, bytes]] = {}
        self._values: dict[float, str] = {}

    def _value(self, v: float) -> str:
        """The number as Prometheus (Go) writes it, with the line's newline."""
        s = self._values.get(v)
        if s is None:
            if len(self._values) >= _MAX_VALUES:
                self._values.clear()
            # NaN never equals itself: formatting it each time is correct, only slower
            s = self._values[v] = go_float(v) + "\n"
        return s

    def family(self, m: Family) -> tuple[frozenset[str], bytes]:
        """(sample names, UTF-8 text) of one family: HELP, TYPE, then its series."""
        if self._cached >= _MAX_PREFIXES:
            self._by_family.clear()
            self._last.clear()
            self._cached = 0
        sname, labelnames = m.sample_name, m.labelnames
        names = frozenset((sname,))
        # Most families hold the same rows as in the last render (identity, limits, NVLink
        # error counters between slow reads): comparing the row lists is a C loop over tuples
        # that mostly share identity, several times cheaper than formatting them again.
        prev = self._last.get(sname)
        if prev is not None and prev[0] == m.rows and prev[1] == m.documentation:
            return names, prev[2]
        out = [f"# HELP {sname} {_escape_help(m.documentation)}\n# TYPE {sname} {m.type}\n"]
        fam = self._by_family.get(sname)
        if fam is None:
            fam = self._by_family[sname] = {}
        append, fget, vget, value = out.append, fam.get, self._values.get, self._value
        for vals, x in m.rows:  # the hot loop: about 10,000 rows at 72 GPUs
            p = fget(vals)
            if p is None:
                p = fam[vals] = _prefix(sname, zip(labelnames, vals))
                self._cached += 1
            vs = vget(x)
            append(p + (vs if vs is not None else value(x)))
        text = "".join(out).encode()
        self._last[sname] = (m.rows, m.documentation, text)
        return names, text
