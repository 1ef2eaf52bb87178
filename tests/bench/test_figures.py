"""The benchmarks' results format and README's generated Performance tables."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.bench import results
from tests.bench.figures import BLOCK, FIX, README as README_PATH, main, read_results, render
from tests.bench.results import BadResults

RUN = {
    "bench": "scrape", "command": "bench_scrape.py --pairs 15", "date": "2026-11-29T21:00:00Z",
    "commit": "0123456789ab", "dirty": False, "cores": 2, "load_average": [3.25, 2.5, 2.0],
    "python": "3.11.7", "platform": "Linux x86_64",
}


def _fig(label: str, text: str, column: str, order: int, target: str | None = None, met: bool | None = None) -> dict:
    return {"label": label, "value": 1.0, "unit": "ms", "text": text, "target": target, "met": met,
            "table": "scrape", "column": column, "order": order, "run": "scrape@2026-11-29T21:00:00Z", "notes": {}}


FILES = {"scrape.json": {"schema": 1, "runs": {"scrape@2026-11-29T21:00:00Z": RUN}, "figures": {
    "scrape.cost.72": _fig("scrape of a new snapshot", "7.6 ms", "72 GPUs", 1, "under 10 ms", True),
    "scrape.cost.8": _fig("scrape of a new snapshot", "1.1 ms", "8 GPUs", 0, "under 10 ms", True),
    "scrape.p99": _fig("p99 of 50 scrapers | storm", "156 ms", "72 GPUs", 2, "under 100 ms", False),
    "scrape.series": _fig("series", "11,600", "72 GPUs", 3),
    "scrape.rate.8": _fig("updates", "20 a second", "8 GPUs", 4),
    "scrape.rate.72": _fig("updates", "99.7%", "72 GPUs", 5, "at least 99%", True),
}}}

README = """# x

## Performance

Prose stays.

<!-- figures: targets -->
stale
<!-- /figures -->

More prose.

<!-- figures: scrape -->
<!-- /figures -->
"""

EXPECTED = """# x

## Performance

Prose stays.

<!-- figures: targets -->
| figure | measured | target | met | benchmark |
| --- | --- | --- | --- | --- |
| scrape of a new snapshot, 8 GPUs | 1.1 ms | under 10 ms | yes | `bench_scrape.py` |
| scrape of a new snapshot, 72 GPUs | 7.6 ms | under 10 ms | yes | `bench_scrape.py` |
| p99 of 50 scrapers / storm, 72 GPUs | 156 ms | under 100 ms | **no** | `bench_scrape.py` |
| updates, 72 GPUs | 99.7% | at least 99% | yes | `bench_scrape.py` |
<!-- /figures -->

More prose.

<!-- figures: scrape -->
| figure | 8 GPUs | 72 GPUs | target | met |
| --- | --- | --- | --- | --- |
| scrape of a new snapshot | 1.1 ms | 7.6 ms | under 10 ms | yes |
| p99 of 50 scrapers / storm |  | 156 ms | under 100 ms | **no** |
| series |  | 11,600 |  |  |
| updates | 20 a second | 99.7% | at least 99% | - / yes |

Measured by `bench_scrape.py --pairs 15`, commit 0123456789ab, 2026-11-29 21:00:00Z; 2 cores, load average 3.2/2.5/2.0 (1/5/15 min).
<!-- /figures -->
"""


def test_render_places_each_figure_by_table_row_and_column_and_is_deterministic():
    assert render(README, FILES) == EXPECTED
    assert render(EXPECTED, FILES) == EXPECTED  # idempotent: the generated README regenerates to itself
    shuffled = {"scrape.json": dict(FILES["scrape.json"], figures=dict(reversed(FILES["scrape.json"]["figures"].items())))}
    assert render(README, shuffled) == EXPECTED  # order comes from the figures, not from the file's key order


def test_render_refuses_results_readme_does_not_place_and_blocks_without_figures():
    with pytest.raises(BadResults, match="tables README does not place: scrape"):
        render("<!-- figures: targets -->\n<!-- /figures -->\n", FILES)
    with pytest.raises(BadResults, match="README's table 'power'"):
        render(README + "<!-- figures: power -->\n<!-- /figures -->\n", FILES)


def test_write_gives_a_table_readme_lacks_a_block_at_the_end_of_the_performance_section():
    readme = "## Performance\n\n<!-- figures: targets -->\n<!-- /figures -->\n\n## Development\n"
    out = render(readme, FILES, add_missing=True)
    assert out.index("Figures of `bench_scrape.py`:\n\n<!-- figures: scrape -->\n| figure | 8 GPUs |") < out.index("## Development")
    assert render(out, FILES) == out


def _args(path: Path) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    results.add_arguments(ap)
    return ap.parse_args(["--json", str(path)])


def test_a_partial_run_replaces_its_figures_and_keeps_the_others(tmp_path):
    path = tmp_path / "r.json"
    first = results.Recorder("scrape", _args(path), argv=["bench_scrape.py"])
    a = first.add("scrape.cost.8", "scrape, 8 GPUs", 1.25, "ms", target=results.below(10.0, " ms"))
    b = first.add("scrape.cost.72", "scrape, 72 GPUs", 12.5, "ms", target=results.below(10.0, " ms"), text="12.5 ms CPU")
    assert (a.met, b.met) == (True, False)
    assert b.line() == "scrape, 72 GPUs: 12.5 ms CPU  [target under 10 ms: MISSED]"
    first.save()
    second = results.Recorder("scrape", _args(path), argv=["bench_scrape.py", "--seconds", "0"])
    second.run = replace(second.run, date="2099-01-01T00:00:00Z")  # a later run
    second.add("scrape.cost.72", "scrape, 72 GPUs", 8.0, "ms", target=results.below(10.0, " ms"))
    second.add("scrape.series.72", "series, 72 GPUs", 11600, "series", notes={"pairs": 15})
    second.save()
    data = json.loads(path.read_text())
    figs = data["figures"]
    assert [k for k, _ in sorted(figs.items(), key=lambda kv: kv[1]["order"])] == [
        "scrape.cost.8", "scrape.cost.72", "scrape.series.72"]  # a re-measured figure keeps its place
    assert (figs["scrape.cost.8"]["value"], figs["scrape.cost.72"]["value"], figs["scrape.cost.72"]["met"]) == (1.25, 8.0, True)
    assert figs["scrape.cost.8"]["run"] != figs["scrape.cost.72"]["run"]
    assert sorted(data["runs"]) == sorted({f["run"] for f in figs.values()})
    assert data["runs"][figs["scrape.cost.72"]["run"]]["command"] == "bench_scrape.py --seconds 0"
    assert figs["scrape.series.72"]["notes"] == {"pairs": 15}
    run = data["runs"][figs["scrape.cost.8"]["run"]]
    assert run["cores"] >= 1 and len(run["load_average"]) == 3 and run["commit"]
    # a third run re-measuring the first run's only figure drops that run from the file
    third = results.Recorder("scrape", _args(path), argv=["bench_scrape.py"])
    third.run = replace(third.run, date="2099-01-02T00:00:00Z")
    third.add("scrape.cost.8", "scrape, 8 GPUs", 1.0, "ms")
    third.save()
    assert len(json.loads(path.read_text())["runs"]) == 2


def test_a_file_that_is_not_results_is_refused_with_the_fix(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"figures": []}))
    with pytest.raises(BadResults, match=r"bad.json: not a results file of schema 1; move it away"):
        results.load(bad)
    bad.write_text("{")
    with pytest.raises(BadResults, match=r"bad.json: not a results file \("):
        results.load(bad)
    assert results.load(tmp_path / "none.json")["figures"] == {}
    with pytest.raises(BadResults, match=r"cannot be read \(Is a directory\); pass a results file's path"):
        results.load(tmp_path)


def test_no_json_records_nothing(tmp_path):
    ap = argparse.ArgumentParser()
    results.add_arguments(ap)
    rec = results.Recorder("scrape", ap.parse_args(["--no-json"]), argv=["x"])
    rec.add("k", "label", 1.0, "ms")
    assert rec.save() is None


def test_targets_judge_their_bound():
    assert results.at_most(1.0).met(1.0) and not results.below(1.0).met(1.0)
    assert results.at_least(99.0, "%").met(99.5) and results.at_least(99.0, "%").text == "at least 99%"
    assert results.above(0.0).met(1.0) is True
    assert results.stated("flat").met(5.0) is None
    assert results.below(100000, " events/s").text == "under 100,000 events/s"
    assert (results.below(0.4, "ms/s").text, results.at_most(1.25, "x").text) == ("under 0.4 ms/s", "at most 1.25x")


def test_readme_performance_tables_are_the_committed_results():
    """README cannot drift from the figures: its generated tables re-render to themselves."""
    text = README_PATH.read_text()
    names = [m.group("name") for m in BLOCK.finditer(text)]
    assert "targets" in names and "side_by_side" in names, "README's Performance section lost its generated tables"
    assert render(text, read_results()) == text, f"README's Performance tables differ from tests/bench/results; {FIX}"


def test_the_generator_refuses_bad_results_with_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit) as e:
        main(["--results", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json: not a results file (" in err[0]
    with pytest.raises(SystemExit) as e:
        main(["--results", str(tmp_path / "empty")])
    assert e.value.code == 2 and "no results files" in capsys.readouterr().err


def test_a_bench_with_a_bad_results_path_stops_before_measuring(tmp_path, capsys):
    ap = argparse.ArgumentParser()
    results.add_arguments(ap)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit) as e:
        results.Recorder("scrape", ap.parse_args(["--json", str(tmp_path / "bad.json")]), argv=[])
    assert e.value.code == 2 and "not a results file of schema" in capsys.readouterr().err
