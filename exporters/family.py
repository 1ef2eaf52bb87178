"""A light metric family for the big sections, and the fast text renderer used for every scrape.

prometheus_client's ``GaugeMetricFamily.add_metric`` builds a label dict and a ``Sample`` per
series, and ``generate_latest`` validates and escapes every label of every series on every scrape:
about 4 microseconds a series, 45 ms for a 72-GPU node's 10,000 series. Here a family keeps its
rows as (label values, value) tuples, and the renderer formats each distinct series prefix
(``name{labels} ``) once and reuses it while the series exists, so a scrape costs a dictionary
lookup and a number format per series. The text is byte-for-byte what ``generate_latest`` writes
(a test compares them over a whole daemon's exposition).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Caches are bounded: label values that churn (a new Xid code, a new error kind) must not grow
# them forever. Clearing costs one re-format of each live series, on the next scrape only.
_MAX_PREFIXES = 200_000
_MAX_VALUES = 50_000


class Family(Metric):
    """A gauge or counter family whose rows are ``(label values, value)`` tuples.

    ``name`` is the family name (a counter without ``_total``). ``samples`` is built on demand,
    only for prometheus_client's own code paths (registries in tests, restricted registries).
    """

    def __init__(self, name: str, documentation: str, typ: str = "gauge", labels: Sequence[str] = (),
                 value: float | None = None):
        if typ not in ("gauge", "counter"):
            raise ValueError(f"Family supports gauge and counter, not {typ!r}")
        super().__init__(name, documentation, typ)
        self.labelnames: tuple[str, ...] = tuple(labels)
        self.rows: list[tuple[tuple[str, ...], float]] = []
        if value is not None:
            self.rows.append(((), value))

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.rows.append((values, value))

    # prometheus_client reads and (in Metric.__init__) writes ``samples``; rows are the truth.
    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        n = self.sample_name
        return [Sample(n, dict(zip(self.labelnames, v)), x, None, None) for v, x in self.rows]

    @samples.setter
    def samples(self, _value: list[Sample]) -> None:
        pass


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefix(name: str, labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}} " if inner else f"{name} "


class TextRenderer:
    """Prometheus text format (0.0.4) for metric families, with the per-series prefixes cached.

    Not thread-safe: one renderer per cache, used under the cache's lock."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[str, ...]], str] = {}  # other families' series
        self._by_family: dict[str, dict[tuple[str, ...], str]] = {}  # Family series, by sample name
        self._cached = 0
        self._last: dict[str, tuple[list[tuple[tuple[str, ...], float]], str, str]] = {}  # per family
        self._values: dict[float, str] = {}

    def _value(self, v: float) -> str:
        """The number as Prometheus (Go) writes it, with the line's newline."""
        s = self._values.get(v)
        if s is None:
            if len(self._values) >= _MAX_VALUES:
                self._values.clear()
            # NaN never equals itself: formatting it each time is correct, only slower
            s = self._values[v] = floatToGoString(v) + "\n"
        return s

    def family(self, m: Metric) -> tuple[frozenset[str], str]:
        """(sample names, text) of one family: HELP, TYPE, then its series."""
        if self._cached >= _MAX_PREFIXES:
            self._prefixes.clear()
            self._by_family.clear()
            self._last.clear()
            self._cached = 0
        mname, mtype = m.name, m.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "info":
            mname, mtype = mname + "_info", "gauge"
        elif mtype == "stateset":
            mtype = "gauge"
        elif mtype == "unknown":
            mtype = "untyped"
        out = [f"# HELP {mname} {_escape_help(m.documentation)}\n# TYPE {mname} {mtype}\n"]
        names = {mname}
        prefixes, value, values = self._prefixes, self._value, self._values
        if isinstance(m, Family):
            sname, labelnames = m.sample_name, m.labelnames
            # Most families hold the same rows as in the last render (identity, limits, NVLink
            # error counters between slow reads): comparing the row lists is a C loop over tuples
            # that mostly share identity, several times cheaper than formatting them again.
            prev = self._last.get(sname)
            if prev is not None and prev[0] == m.rows and prev[1] == m.documentation:
                return frozenset(names), prev[2]
            fam = self._by_family.get(sname)
            if fam is None:
                fam = self._by_family[sname] = {}
            append, fget, vget = out.append, fam.get, values.get
            for vals, x in m.rows:  # the hot loop: about 10,000 rows at 72 GPUs
                p = fget(vals)
                if p is None:
                    p = fam[vals] = _prefix(sname, zip(labelnames, vals))
                    self._cached += 1
                vs = vget(x)
                append(p + (vs if vs is not None else value(x)))
            text = "".join(out)
            self._last[sname] = (m.rows, m.documentation, text)
            return frozenset(names), text
        late: dict[str, list[str]] = {}  # OpenMetrics-only samples: their own gauge after, as upstream
        extra = {m.name + "_created", m.name + "_gsum", m.name + "_gcount"}
        for s in m.samples:
            key = (s.name, tuple(f"{k}\0{v}" for k, v in s.labels.items()))
            p = prefixes.get(key)
            if p is None:
                p = prefixes[key] = _prefix(s.name, s.labels.items())
                self._cached += 1
            ts = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
            line = p + value(s.value)[:-1] + ts + "\n"
            if s.name in extra:
                late.setdefault(s.name, []).append(line)
            else:
                names.add(s.name)
                out.append(line)
        for extra_name, lines in sorted(late.items()):
            out.append(f"# HELP {extra_name} {_escape_help(m.documentation)}\n# TYPE {extra_name} gauge\n")
            out.extend(lines)
            names.add(extra_name)
        return frozenset(names), "".join(out)
