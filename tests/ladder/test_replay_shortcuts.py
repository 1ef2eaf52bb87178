"""The replay's shortcuts (findings shared between events, Xid 13/31 findings kept per history
answer, the clock text formatted once a day) give the same report as the plain path, on a fleet
log from the replay benchmark's generator (the Llama 3 failure mix)."""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rasd.ladder import classify, replay_jobs, xids
from rasd.ladder.replay_jobs import Options, fmt_time, report


def _generator() -> ModuleType:
    path = Path(__file__).parents[1] / "bench" / "bench_replay.py"
    spec = importlib.util.spec_from_file_location("bench_replay_generator", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _NoCache(dict):  # type: ignore[type-arg]
    """A cache that keeps nothing: every look-up misses, every finding is built afresh."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _plain_time(t: float) -> str:
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t)[:6]


def _report(path: Path) -> tuple[str, int, int]:
    out: list[str] = []
    o = report([str(path)], Options(year=2024), out.append)
    assert o.error is None
    return "".join(out), o.decisions, o.closed


@pytest.fixture(scope="module")
def fleet_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.jsonl"
    # ten days (decisions expire after seven) at a low noise rate: some thousands of events
    n = _generator().write_log(str(path), 10, 0.03, 7)
    assert n > 4000
    return path


def test_fleet_report_same_without_shortcuts(fleet_log: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shortcut = _report(fleet_log)
    for mod, name in ((classify, "_CORRECTED"), (classify, "_WITHIN_LIMITS"),
                      (classify, "_CRC_MONITOR"), (xids, "_static"), (xids, "_repeat_static"),
                      (xids, "_after_48_static")):
        assert isinstance(getattr(mod, name), dict)
        monkeypatch.setattr(mod, name, _NoCache())
    monkeypatch.setattr(replay_jobs, "fmt_time", _plain_time)
    plain = _report(fleet_log)
    assert shortcut == plain
    text, decisions, closed = shortcut
    assert decisions > 1000 and closed > 100  # a report with substance, closures included
    assert "closed=expired" in text and "rung=reset_gpu" in text


def test_fleet_report_same_with_shared_findings_reused(fleet_log: Path) -> None:
    """A second replay in the same process starts with full caches: same report."""
    assert _report(fleet_log) == _report(fleet_log)


def test_day_cached_clock_matches_gmtime() -> None:
    rnd = random.Random(3)
    times = [0.0, 0.5, 59.999, 86_399.999, 86_400.0, 951_868_800.0, 1_704_067_216.307145,
             253_402_300_799.9, 253_402_300_800.0, 1e12]
    times += [rnd.uniform(0, 2**33) for _ in range(20_000)]
    times += sorted(rnd.uniform(1.7e9, 1.8e9) for _ in range(5_000))  # in order, as a replay
    for t in times:
        assert fmt_time(t) == _plain_time(t), t


_LINES = [
    # well formed: the inline path
    '{"time":1704067216.3,"host":"n1","gpu":1,"kind":"ecc","volatile_corrected":48}',
    '{"time":1704067216.3,"gpu":0,"kind":"thermal"}',
    '{"kind":"xid","gpu":2,"time":1704067216.5,"xid":13,"message":"Graphics Exception","host":"n2"}',
    '{"time":1704067216.3,"host":"n1","gpu":1,"kind":"pcie_replay","count":3,"seconds":60}',
    # parse_object's own: a link, two required fields, an integer or text time
    '{"time":1704067216.3,"host":"n1","gpu":1,"kind":"nvlink","link":4,"state":"down"}',
    '{"time":1704067216.3,"gpu":1,"kind":"remedy","action":"reset_gpu","result":"ok"}',
    '{"time":1704067216,"gpu":1,"kind":"ecc"}',
    '{"time":"2024-01-01T00:00:16Z","gpu":1,"kind":"ecc"}',
    # bad: each refused with parse_object's words
    '{"time":1704067216.3,"gpu":-1,"kind":"ecc"}',
    '{"time":1704067216.3,"gpu":true,"kind":"ecc"}',
    '{"time":1704067216.3,"gpu":1,"kind":"nosuch"}',
    '{"time":1704067216.3,"gpu":1,"kind":["ecc"]}',
    '{"time":1704067216.3,"gpu":1,"kind":"pcie_replay"}',
    '{"time":1704067216.3,"gpu":1,"kind":"xid","host":5,"xid":13}',
    '{"time":"yesterday","gpu":1,"kind":"ecc"}',
    '{"gpu":1,"kind":"ecc"}',
    '{"time":1704067216.3,"kind":"ecc"}',
    '{"time": 1704067216.3, "gpu": 1, "kind": "ecc", "volatile_corrected": 1.5}',
]


@pytest.mark.parametrize("line", _LINES)
def test_inline_line_parse_same_as_parse_object(line: str) -> None:
    """The reader's inline parse of a well-formed line gives parse_object's event and host; any
    other line gets parse_object's event or its error, word for word."""
    import json

    from rasd.ladder.replay import Names, ReadStats, ReplayError, parse_object, read_events

    try:
        want: Any = parse_object(json.loads(line))
    except ValueError as e:
        want = f"line 1: {e}"
    try:
        got: Any = [(x[2], x[3]) for x in read_events([line + "\n"], ReadStats(), Names())]
    except ReplayError as e:
        got = str(e)
    assert got == (want if isinstance(want, str) else [want])


def test_events_waiting_in_a_chunk_keep_little() -> None:
    """The reader keeps one string for a host's name, and details that hold only the kind's
    own fields in a table of their size (a chunk holds 196,608 events waiting to be judged)."""
    import sys

    from rasd.ladder.replay import Names, ReadStats, read_events

    lines = ['{"time":1704067216.3,"host":"node0001","gpu":1,"kind":"ecc",'
             '"volatile_corrected":3,"volatile_uncorrected":0}',
             '{"time":1704067217.3,"host":"node0001","gpu":2,"kind":"nvlink","link":4,'
             '"state":"up","crc_flit_errors":9,"rate_per_second":0.5}']
    got = list(read_events([x + "\n" for x in lines], ReadStats(), Names()))
    assert got[0][3] == "node0001" and got[0][3] is got[1][3]
    assert got[0][2].details == {"volatile_corrected": 3, "volatile_uncorrected": 0}
    assert got[1][2].details == {"state": "up", "crc_flit_errors": 9, "rate_per_second": 0.5,
                                 "link": 4}
    small = sys.getsizeof({"a": 1, "b": 2})  # a table sized for its keys
    assert all(sys.getsizeof(x[2].details) <= small for x in got)
