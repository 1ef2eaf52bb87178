"""Metric families and the fast text renderer used for every scrape, with no third-party import.

prometheus_client's ``GaugeMetricFamily.add_metric`` builds a label dict and a ``Sample`` per
series, and ``generate_latest`` validates and escapes every label of every series on every scrape:
about 4 microseconds a series, 45 ms for a 72-GPU node's 10,000 series. Here a family keeps its
series' label values and values in two lists, and the renderer copies the text of a family whose rows did
not change from the last body and formats the others from a template per family, keeping the
series prefixes (``name{labels} ``) of the families that change every render, so a scrape costs a
row comparison for most series and a dictionary lookup and a cached number for the rest (what
it keeps, and why: ``TextRenderer``). The text is byte-for-byte what ``generate_latest`` writes
(tests compare them over a whole daemon's exposition and over renders of changing families).

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
_MAX_SAFE = 50_000
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
    """A gauge or counter family: its series' label values (tuples, in the order of
    ``labelnames``) in ``keys`` and their values in ``values``, side by side.

    Two lists rather than a ``(label values, value)`` tuple a series: the renderer keeps the
    last render's families to compare with the next, so at 72 GPUs (11,600 series) a tuple each
    held 0.7 MB, and as much again while the next render's families were built.

    ``name`` is the family name (a counter without ``_total``); its series are ``sample_name``.
    ``samples`` is built on demand, only for readers that want prometheus_client's shape (tests,
    registries).
    """

    __slots__ = ("name", "documentation", "type", "labelnames", "keys", "values")

    def __init__(self, name: str, documentation: str, typ: str = "gauge", labels: Sequence[str] = (),
                 value: float | None = None):
        if typ not in ("gauge", "counter"):
            raise ValueError(f"Family supports gauge and counter, not {typ!r}")
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.labelnames: tuple[str, ...] = tuple(labels)
        self.keys: list[tuple[str, ...]] = []
        self.values: list[float] = []
        if value is not None:
            self.keys.append(())
            self.values.append(value)

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def add(self, values: tuple[str, ...], value: float) -> None:
        """One series: its label values (a tuple, kept as it is: callers pass one tuple to
        every family of a GPU) in the order of the family's label names."""
        self.keys.append(values)
        self.values.append(value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        """One series: its label values in the order of the family's label names."""
        self.keys.append(labels if type(labels) is tuple else tuple(labels))
        self.values.append(value)

    @property
    def rows(self) -> list[tuple[tuple[str, ...], float]]:
        """The series as (label values, value) pairs, built on demand."""
        return list(zip(self.keys, self.values))

    @property
    def samples(self) -> list[Sample]:
        n = self.sample_name
        return [Sample(n, dict(zip(self.labelnames, v)), x) for v, x in zip(self.keys, self.values)]

    def __repr__(self) -> str:
        return f"Family({self.name!r}, {self.type!r}, {len(self.keys)} series)"


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


# a family as last rendered: its label values, values, help, and where its text lies in the body
_Last = tuple[list[tuple[str, ...]], list[float], str, int, int]


class _Lines:
    """One family's series prefixes (``name{labels} ``, UTF-8), formatted from a template with its
    label names in the exposition's (sorted) order; values with nothing to escape are formatted
    as they are."""

    __slots__ = ("sname", "labelnames", "template", "order", "safe")

    def __init__(self, sname: str, labelnames: tuple[str, ...], safe: set[str]):
        self.sname, self.labelnames, self.safe = sname, labelnames, safe
        order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
        inner = ",".join(f'{labelnames[i]}="%s"' for i in order)
        self.template = f"{sname}{{{inner}}} " if labelnames else f"{sname} "
        # None: the rows' values are already in the template's order
        self.order = None if order == list(range(len(order))) else order

    def prefix(self, vals: tuple[str, ...]) -> bytes:
        if not self.labelnames:
            return self.template.encode()
        if not self.safe.issuperset(vals):
            if any("\\" in v or "\n" in v or '"' in v for v in vals):
                return _prefix(self.sname, zip(self.labelnames, vals)).encode()
            if len(self.safe) >= _MAX_SAFE:
                self.safe.clear()
            self.safe.update(vals)
        if self.order is not None:
            vals = tuple(vals[i] for i in self.order)
        return (self.template % vals).encode()


class TextRenderer:
    """Prometheus text format (0.0.4) for families, rendered into one body per call.

    What it keeps between renders, and why:
    - each family's rows and help as last rendered, and where its text lies in the last body: a
      family whose rows did not change (identity, limits, NVLink error counters between slow
      reads: most of a big node's series) is copied from the last body, not formatted again. The
      body is the only copy of the text (no per-family pieces beside it).
    - the series prefixes of the families that changed in the last render too (power,
      temperatures, clocks: they change every snapshot), so formatting them is a lookup a series.
      A family that changes now and then is formatted from its template without keeping its
      prefixes: on a 72-GPU node the NVLink error series alone would hold a megabyte of them.
    - the spellings of the numbers the last render formatted, for the next one (0 and 1, levels,
      clocks repeat; watts and energy counters are new nearly every time). Only the last
      render's: a cache of every number seen grew by a few hundred entries a render at 72 GPUs,
      several megabytes before any bound, and after a clear left the heap at its high-water mark.
    A render's pieces are cached bytes objects or slices of the last body; joining them makes
    the text without a new object per line.

    Not thread-safe: one renderer per cache, used under the cache's lock."""

    def __init__(self) -> None:
        self._prefixes: dict[str, dict[tuple[str, ...], bytes]] = {}  # by sample name: the families changing every render
        self._cached = 0
        self._last: dict[str, _Last] = {}
        self._body = b""
        self._values: dict[float, bytes] = {}  # number -> its spelling and newline, as the last render used them
        self._used: dict[float, bytes] = {}  # the same, filled by the render under way
        self._safe: set[str] = set()  # label values seen with nothing to escape

    def _value(self, v: float) -> bytes:
        """The number as Prometheus (Go) writes it, with the line's newline, kept for this
        render and the next (taken from the last render's where it was there)."""
        s = self._values.get(v)
        if s is None:
            # NaN never equals itself: formatting it each time is correct, only slower
            s = (go_float(v) + "\n").encode()
        self._used[v] = s
        return s

    def render(self, families: Iterable[Family]) -> tuple[bytes, tuple[tuple[str, int, int], ...]]:
        """The exposition of ``families``, and each family's (sample name, start, end) in it."""
        if self._cached >= _MAX_PREFIXES:
            self._prefixes.clear()
            self._cached = 0
        prev, last, prefixes = memoryview(self._body), self._last, self._prefixes
        parts: list[bytes | memoryview] = []
        index: list[tuple[str, int, int]] = []
        now: dict[str, _Last] = {}
        changed: dict[str, dict[tuple[str, ...], bytes]] = {}
        self._used = {}
        pos = 0
        for m in families:
            sname, keys, values, doc = m.sample_name, m.keys, m.values, m.documentation
            old = last.get(sname)
            # comparing the lists is a C loop over objects that mostly share identity, several
            # times cheaper than formatting them again
            if old is not None and old[1] == values and old[0] == keys and old[2] == doc:
                text: bytes | memoryview = prev[old[3]:old[4]]
            else:
                fam = prefixes.get(sname)
                # first render, or it did not change last time: format it, keep no prefixes
                text = self._text(m, sname, fam)
                changed[sname] = fam if fam is not None else {}
            parts.append(text)
            n = len(text)
            index.append((sname, pos, pos + n))
            now[sname] = (keys, values, doc, pos, pos + n)
            pos += n
        body = b"".join(parts)
        del parts, prev
        self._cached -= sum(len(v) for k, v in prefixes.items() if k not in changed)
        self._prefixes, self._last, self._body = changed, now, body
        self._values, self._used = self._used, {}
        return body, tuple(index)

    def _text(self, m: Family, sname: str, fam: dict[tuple[str, ...], bytes] | None) -> bytes:
        """The family's HELP, TYPE and series; with ``fam``, the series prefixes are looked up
        there and kept."""
        out = [f"# HELP {sname} {_escape_help(m.documentation)}\n# TYPE {sname} {m.type}\n".encode()]
        append, vget, value = out.append, self._used.get, self._value
        lines = _Lines(sname, m.labelnames, self._safe)
        if fam is None:
            prefix = lines.prefix
            for vals, x in zip(m.keys, m.values):
                append(prefix(vals))
                vs = vget(x)
                append(vs if vs is not None else value(x))
        else:
            fget = fam.get
            for vals, x in zip(m.keys, m.values):  # the hot loop: the families that change every snapshot
                p = fget(vals)
                if p is None:
                    p = fam[vals] = lines.prefix(vals)
                    self._cached += 1
                append(p)
                vs = vget(x)
                append(vs if vs is not None else value(x))
        # pieces are cached objects: the join is the only new object, not one a line
        return b"".join(out)

    def family(self, m: Family) -> tuple[frozenset[str], bytes]:
        """(sample names, UTF-8 text) of one family alone: HELP, TYPE, then its series."""
        body, _ = self.render([m])
        return frozenset((m.sample_name,)), body
