"""The benchmarks' figures in one small JSON format, so README's Performance tables can be
regenerated from measured results (``python -m tests.bench.figures --write``) instead of copied.

A bench prints its figures with their targets as it always has, and also hands each one to a
:class:`Recorder`; at the end the recorder merges them into a results file:

    rec = results.Recorder("scrape", args)                    # after argparse; notes the machine
    rec.add("scrape.cost.72", "scrape of a new snapshot, 72 GPUs", 7.6, "ms",
            target=results.below(10.0), text="7.6 ms CPU", table="scrape")
    rec.save()                                                # --json PATH, or the default below

``results.add_arguments(parser)`` adds ``--json PATH`` (merge the figures into PATH) and
``--no-json``. Without ``--json`` the figures go to ``tests/bench/results/local/<bench>.json``,
which git ignores; the committed files are ``tests/bench/results/<bench>.json`` and are what
README is generated from, so publishing a run is ``--json tests/bench/results/<bench>.json``.

Merging, not overwriting: a run that measures only part of a bench (``--quick-only``, one setup)
replaces the figures it measured and keeps the others, each figure pointing at the run (date,
commit, command, machine: cores and load average) it came from.

File layout (keys sorted, so a file changes only where a figure did)::

    {"schema": 1,
     "runs": {"<run id>": {"bench", "command", "date", "commit", "dirty", "cores", "load_average",
                           "python", "platform"}},
     "figures": {"<key>": {"label", "value", "unit", "text", "target", "met", "table", "column",
                           "order", "run", "notes"}}}
"""

from __future__ import annotations

import argparse
import datetime as _dt
import enum
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, NoReturn

SCHEMA = 1
REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().with_name("results")  # committed: what README is generated from
LOCAL = RESULTS / "local"  # git-ignored: where a run goes unless told otherwise

Note = str | float | int | bool | None
# what a figure depends on: local changes here make a run "with local changes" (README, docs and
# the results files themselves do not)
MEASURED = ("rasd", "exporters", "tests/bench/*.py", "pyproject.toml")


class Op(enum.Enum):
    """How a figure is compared with its target bound."""

    AT_MOST = "<="
    BELOW = "<"
    AT_LEAST = ">="
    ABOVE = ">"


@dataclass(frozen=True, slots=True)
class Target:
    """A bound (``op`` ``bound``, in the figure's unit) or, where the target is not a number
    ("flat", "not one per GPU per job"), only ``text``; then the bench decides ``met`` itself."""

    text: str
    op: Op | None = None
    bound: float | None = None

    def met(self, value: float) -> bool | None:
        if self.op is None or self.bound is None or math.isnan(value):
            return None
        return {
            Op.AT_MOST: value <= self.bound,
            Op.BELOW: value < self.bound,
            Op.AT_LEAST: value >= self.bound,
            Op.ABOVE: value > self.bound,
        }[self.op]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) and abs(x) >= 1000 else f"{x:g}"


def _bound(x: float, unit: str) -> str:
    """``10 ms``, ``99%``, ``1.25x``: a unit that is a word gets a space before it."""
    sep = " " if unit[:1].isalpha() and unit != "x" else ""
    return f"{_num(x)}{sep}{unit}"


def at_most(bound: float, unit: str = "", text: str | None = None) -> Target:
    return Target(text or f"at most {_bound(bound, unit)}", Op.AT_MOST, bound)


def below(bound: float, unit: str = "", text: str | None = None) -> Target:
    return Target(text or f"under {_bound(bound, unit)}", Op.BELOW, bound)


def at_least(bound: float, unit: str = "", text: str | None = None) -> Target:
    return Target(text or f"at least {_bound(bound, unit)}", Op.AT_LEAST, bound)


def above(bound: float, unit: str = "", text: str | None = None) -> Target:
    return Target(text or f"over {_bound(bound, unit)}", Op.ABOVE, bound)


def stated(text: str) -> Target:
    """A target that is not a bound on the value (the bench passes ``met`` when it can judge)."""
    return Target(text)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. ``value`` is in ``unit``; ``text`` is how README shows it (default:
    value and unit); ``table``/``column`` place it in README (rows are figures with the same
    ``label``, in ``order``); ``notes`` carry what qualifies it (pair spread, runs, sizes)."""

    label: str
    value: float
    unit: str
    text: str
    target: str | None
    met: bool | None
    table: str
    column: str
    order: int
    run: str
    notes: Mapping[str, Note] = field(default_factory=dict)

    def line(self) -> str:
        """The figure as a bench prints it: label, measured, and the target with ok/MISSED."""
        if self.target is None:
            return f"{self.label}: {self.text}"
        verdict = "" if self.met is None else ": ok" if self.met else ": MISSED"
        return f"{self.label}: {self.text}  [target {self.target}{verdict}]"


@dataclass(frozen=True, slots=True)
class Run:
    """Where and when a bench ran: the machine is shared, so its load is part of the figure."""

    bench: str
    command: str
    date: str  # UTC, ISO 8601, seconds
    commit: str
    dirty: bool  # uncommitted changes to the measured code (MEASURED)
    cores: int
    load_average: tuple[float, float, float]
    python: str
    platform: str

    @property
    def id(self) -> str:
        return f"{self.bench}@{self.date}"


def git(*args: str) -> str:
    """``git -C <checkout> ARGS``'s output, or "" where git or the checkout is not there."""
    try:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def this_run(bench: str, argv: list[str] | None = None) -> Run:
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).name if argv else bench
    args: list[str] = []
    rest = iter(argv[1:])
    for a in rest:  # where the figures were written says nothing about how they were measured
        if a == "--json":
            next(rest, None)
        elif not a.startswith("--json=") and a != "--no-json":
            args.append(a)
    la = os.getloadavg()
    return Run(
        bench=bench,
        command=" ".join([script, *args]),
        date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        commit=git("rev-parse", "--short=12", "HEAD") or "unknown",
        dirty=bool(git("status", "--porcelain", "--untracked-files=no", "--", *MEASURED)),
        cores=os.cpu_count() or 0,
        load_average=(round(la[0], 2), round(la[1], 2), round(la[2], 2)),
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
    )


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help=f"merge the figures into this results file (default {LOCAL.relative_to(REPO)}/<bench>.json; "
                         f"README is generated from {RESULTS.relative_to(REPO)}/<bench>.json)")
    ap.add_argument("--no-json", action="store_true", help="print the figures only")


class BadResults(Exception):
    """A results file or README block that cannot be used: the message names the problem and the fix."""


def refuse(e: BadResults) -> NoReturn:
    """One line on stderr and exit status 2, as for any bad input to a command."""
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2)


class Recorder:
    """Collects one bench run's figures and merges them into a results file."""

    def __init__(self, bench: str, args: argparse.Namespace | None = None, argv: list[str] | None = None):
        self.run = this_run(bench, argv)
        self.path: Path | None = None if args is not None and getattr(args, "no_json", False) else (
            getattr(args, "json", None) or LOCAL / f"{bench}.json")
        self.figures: dict[str, Figure] = {}
        if self.path is not None:
            # A results file that cannot take the figures is refused before minutes of measuring.
            try:
                load(self.path)
            except BadResults as e:
                refuse(e)

    def machine(self) -> str:
        """The line every bench prints first."""
        r = self.run
        la = ", ".join(f"{x:.2f}" for x in r.load_average)
        return (f"machine: {r.cores} cores, load average {la} (1/5/15 min; other work shares them), "
                f"python {r.python}, commit {r.commit}{' (with local changes)' if r.dirty else ''}")

    def add(self, key: str, label: str, value: float, unit: str, *, target: Target | None = None,
            met: bool | None = None, text: str | None = None, table: str | None = None,
            column: str = "measured", notes: Mapping[str, Note] | None = None) -> Figure:
        """Record a figure (``key`` unique and stable across runs, e.g. ``scrape.cost.72``).
        ``met`` defaults to the target's own verdict on ``value``."""
        if met is None and target is not None:
            met = target.met(value)
        fig = Figure(label=label, value=float(value), unit=unit, text=text or f"{value:g} {unit}".strip(),
                     target=target.text if target else None, met=met, table=table or self.run.bench,
                     column=column, order=len(self.figures), run=self.run.id, notes=dict(notes or {}))
        self.figures[key] = fig
        return fig

    def save(self) -> Path | None:
        """Merge this run's figures into the results file; returns its path (None with --no-json)."""
        if self.path is None or not self.figures:
            return None
        try:
            merged = merge(load(self.path), self.run, self.figures)
        except BadResults as e:
            refuse(e)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(dumps(merged))
        tmp.replace(self.path)
        print(f"figures written to {self.path}")
        return self.path


def load(path: Path) -> dict[str, Any]:
    """A results file, or an empty one where ``path`` does not exist. A file of another layout
    is refused with one line naming it and the fix."""
    if not path.exists():
        return {"schema": SCHEMA, "runs": {}, "figures": {}}
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise BadResults(f"{path}: cannot be read ({e.strerror}); pass a results file's path") from None
    except ValueError as e:
        raise BadResults(f"{path}: not a results file ({e}); move it away or pass another path") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("figures"), dict) \
            or not isinstance(data.get("runs"), dict):
        raise BadResults(f"{path}: not a results file of schema {SCHEMA}; move it away or pass another path")
    return data


def merge(data: Mapping[str, Any], run: Run, figures: Mapping[str, Figure]) -> dict[str, Any]:
    """``data`` with ``figures`` replacing those of the same key (the others kept, in their
    places), and only the runs some figure still points at."""
    figs = {k: dict(v) for k, v in data["figures"].items()}
    runs = {k: dict(v) for k, v in data["runs"].items()}
    base = 1 + max((int(v.get("order", 0)) for v in figs.values()), default=-1)
    for key, fig in figures.items():
        d = asdict(fig)
        d["notes"] = dict(fig.notes)
        # a figure measured before keeps its place in the tables; a new one goes after the rest
        d["order"] = figs[key]["order"] if key in figs else base + fig.order
        figs[key] = d
    runs[run.id] = {k: v for k, v in asdict(run).items()} | {"load_average": list(run.load_average)}
    used = {v["run"] for v in figs.values()}
    return {"schema": SCHEMA, "runs": {k: v for k, v in runs.items() if k in used}, "figures": figs}


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
