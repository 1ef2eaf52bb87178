"""README's Performance tables, generated from the committed benchmark results.

Each bench merges its figures into ``tests/bench/results/<bench>.json`` (see ``results.py``).
README marks every generated table with a pair of comments::

    <!-- figures: scrape -->
    ...generated, do not edit...
    <!-- /figures -->

and this module rewrites what lies between them: the figures whose ``table`` is the name, one
row per label, a column per ``column`` (in the order the bench recorded them), the target and
whether it was met, and under the table the runs it came from (command, commit, date, cores and
load average: the machine is shared, and its load is part of every figure). The name
``targets`` is special: every figure that has a target, from every bench. Prose around the
tables is written by hand and left alone. Without ``--write`` a table README does not place is an
error, which is how the test finds a README that has fallen behind its results.

    python -m tests.bench.figures            # print the generated blocks
    python -m tests.bench.figures --write    # rewrite README's blocks from the results (a table
                                             # README lacks gets a block at the section's end)
    python -m tests.bench.figures --results tests/bench/results/local   # from uncommitted runs
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tests.bench.results import RESULTS, BadResults, load, refuse

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TARGETS = "targets"
BLOCK = re.compile(r"(<!-- figures: (?P<name>[a-z0-9_-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)
SECTION = "## Performance\n"
FIX = "regenerate them: python -m tests.bench.figures --write"


@dataclass(frozen=True, slots=True)
class Placed:
    """A figure with what the tables need to place and attribute it."""

    key: str
    fig: Mapping[str, Any]
    run: Mapping[str, Any]
    rank: tuple[int, int]  # (file, order in file): the row and column order


def collect(files: Mapping[str, Mapping[str, Any]]) -> list[Placed]:
    """Every figure of every results file (``files``: name -> loaded file), in a fixed order."""
    out = []
    for i, name in enumerate(sorted(files)):
        data = files[name]
        for key, fig in data["figures"].items():
            run = data["runs"].get(fig["run"])
            if run is None:
                raise BadResults(f"{name}: figure {key} points at run {fig['run']!r}, which the file lacks; "
                                 "rerun the bench with --json on a fresh file")
            out.append(Placed(key, fig, run, (i, int(fig["order"]))))
    return sorted(out, key=lambda p: p.rank)


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _verdict(fig: Mapping[str, Any] | None) -> str:
    if fig is None or fig.get("target") is None or fig.get("met") is None:
        return "-"
    return "yes" if fig["met"] else "**no**"


def _met(figs: list[Mapping[str, Any] | None]) -> str:
    """One verdict where the row's judged figures agree, else one a column (``-``: not judged)."""
    present = [f for f in figs if f is not None]
    judged = {_verdict(f) for f in present} - {"-"}
    if not judged:
        return ""
    if len(judged) == 1 and all(_verdict(f) != "-" for f in present):
        return judged.pop()
    return " / ".join(_verdict(f) for f in figs)


def _target(figs: Iterable[Mapping[str, Any]]) -> str:
    seen: list[str] = []
    for f in figs:
        if f.get("target") and f["target"] not in seen:
            seen.append(f["target"])
    return "; ".join(seen)


def _row_label(fig: Mapping[str, Any]) -> str:
    """The label with its column where it has one (the targets table has a single measured column)."""
    return fig["label"] if fig["column"] == "measured" else f"{fig['label']}, {fig['column']}"


def _script(run: Mapping[str, Any]) -> str:
    return str(run["command"]).split(" ")[0]


def provenance(runs: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for r in runs:
        la = "/".join(f"{x:.1f}" for x in r["load_average"])
        dirty = " with local changes" if r["dirty"] else ""
        lines.append(f"`{r['command']}`, commit {r['commit']}{dirty}, {r['date'].replace('T', ' ')}; "
                     f"{r['cores']} cores, load average {la} (1/5/15 min)")
    return "Measured by " + "; ".join(lines) + "." if len(lines) == 1 else \
        "Measured by:\n" + "\n".join(f"- {ln}" for ln in lines)


def _unique_runs(placed: Iterable[Placed]) -> list[Mapping[str, Any]]:
    seen: dict[tuple[str, str], Mapping[str, Any]] = {}
    for p in placed:
        seen.setdefault((p.run["bench"], p.run["date"]), p.run)
    return list(seen.values())


def table(name: str, placed: list[Placed]) -> str:
    """The block for ``name``: the table, a blank line, and where its figures came from."""
    if name == TARGETS:
        mine = [p for p in placed if p.fig.get("target") is not None]
        if not mine:
            raise BadResults(f"README's '{TARGETS}' table: no figure in the results has a target; run the benches with --json")
        rows = ["| figure | measured | target | met | benchmark |", "| --- | --- | --- | --- | --- |"]
        rows += [f"| {_cell(_row_label(p.fig))} | {_cell(p.fig['text'])} | {_cell(p.fig['target'])} | {_met([p.fig])} "
                 f"| `{_script(p.run)}` |" for p in mine]
        return "\n".join(rows) + "\n"
    mine = [p for p in placed if p.fig["table"] == name]
    if not mine:
        raise BadResults(f"README's table '{name}': no figure in the results has table={name!r}; "
                         "run its bench with --json into tests/bench/results, or remove the block")
    columns: list[str] = []
    labels: dict[str, dict[str, Placed]] = {}
    for p in mine:
        if p.fig["column"] not in columns:
            columns.append(p.fig["column"])
        labels.setdefault(p.fig["label"], {})[p.fig["column"]] = p
    has_target = any(p.fig.get("target") is not None for p in mine)
    head = ["figure", *columns] + (["target", "met"] if has_target else [])
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, cells in labels.items():
        figs = [c.fig for c in cells.values()]
        row = [_cell(label)] + [_cell(cells[c].fig["text"]) if c in cells else "" for c in columns]
        if has_target:
            row += [_cell(_target(figs)), _met([cells[c].fig if c in cells else None for c in columns])]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows) + "\n\n" + provenance(_unique_runs(mine)) + "\n"


def add_blocks(readme: str, names: Iterable[str], placed: list[Placed]) -> str:
    """Empty blocks for ``names`` at the end of the Performance section, each after a line naming
    its benchmark (to be moved and introduced by hand where they read best)."""
    start = readme.index(SECTION)
    nxt = readme.find("\n## ", start + len(SECTION))
    end = len(readme) if nxt < 0 else nxt + 1
    blocks = ""
    for name in names:
        script = next(_script(p.run) for p in placed if p.fig["table"] == name)
        blocks += f"Figures of `{script}`:\n\n<!-- figures: {name} -->\n<!-- /figures -->\n\n"
    return readme[:end] + blocks + readme[end:]


def render(readme: str, files: Mapping[str, Mapping[str, Any]], add_missing: bool = False) -> str:
    """``readme`` with every figures block regenerated from ``files``; a table the results have
    and README lacks is refused, or given a block at the section's end with ``add_missing``."""
    placed = collect(files)
    names = [m.group("name") for m in BLOCK.finditer(readme)]
    unplaced = sorted({p.fig["table"] for p in placed} - set(names))
    if unplaced and add_missing:
        readme, unplaced = add_blocks(readme, unplaced, placed), []
    if unplaced:
        raise BadResults(f"results have tables README does not place: {', '.join(unplaced)}; add a "
                         f"'<!-- figures: NAME -->' ... '<!-- /figures -->' block for each to README's Performance section")
    return BLOCK.sub(lambda m: m.group(1) + table(m.group("name"), placed) + m.group(4), readme)


def read_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    return {p.name: load(p) for p in sorted(folder.glob("*.json"))}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.figures",
                                 description="README's Performance tables from the benchmarks' results files")
    ap.add_argument("--write", action="store_true", help="rewrite README's figures blocks (default: print them)")
    ap.add_argument("--results", type=Path, default=RESULTS, metavar="DIR",
                    help=f"folder of results files (default {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    try:
        files = read_results(args.results)
        if not files:
            raise BadResults(f"{args.results}: no results files (*.json); run a bench with "
                             f"--json {args.results}/<bench>.json")
        readme = README.read_text()
        new = render(readme, files, add_missing=args.write)
    except BadResults as e:
        refuse(e)
    if args.write:
        README.write_text(new)
    else:
        print("\n".join(m.group(0) for m in BLOCK.finditer(new)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
