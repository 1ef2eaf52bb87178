"""Judging each host's events of a chunk together (``run_grouped``) gives the steps of judging
them one by one in the log's order (``run``), in that order, for any chunk size; a refused event
or a line that does not parse stops the replay where the one-by-one replay stops."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from rasd.ladder.replay import (
    Names, Numbered, ReadStats, ReplayError, in_time_order, read_events, run, run_grouped,
)

HERE = Path(__file__).parent / "expected"


def _events(lines: list[str]) -> Iterator[Numbered]:
    st = ReadStats()
    return in_time_order(read_events(lines, st, Names()), st)


def _steps(steps: Iterator[Any]) -> list[tuple[int, list[Any], list[Any], list[Any]]]:
    return [(item[1], step.opened, step.superseded, step.closed) for item, step in steps]


def _until_error(steps: Iterator[Any]) -> tuple[list[Any], str | None]:
    out: list[Any] = []
    try:
        for x in steps:
            out.append(x)
    except ReplayError as e:
        return _steps(iter(out)), str(e)
    return _steps(iter(out)), None


@pytest.fixture(scope="module")
def fleet() -> list[str]:
    return gzip.decompress((HERE / "fleet-10d.jsonl.gz").read_bytes()).decode().splitlines()


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 100_000])
def test_grouped_steps_are_the_one_by_one_steps(fleet: list[str], chunk: int) -> None:
    want = _steps(run(_events(fleet)))
    got = _steps(run_grouped(_events(fleet), chunk=chunk))
    assert len(want) > 1000
    assert got == want


def _ev(t: float, host: str, kind: str, gpu: int = 0, **fields: Any) -> str:
    return json.dumps({"time": t, "host": host, "gpu": gpu, "kind": kind, **fields})


def _log() -> list[str]:
    lines = []
    for i in range(40):
        host = f"h{i % 3}"
        # a minute apart: the reorder window (five minutes of log) lets events through
        # each on its own GPU: every event opens a decision
        lines.append(_ev(1000.0 + 60 * i, host, "xid", i, xid=79,
                         message="GPU has fallen off the bus."))
        lines.append(_ev(1030.0 + 60 * i, host, "thermal", i))
    return lines


@pytest.mark.parametrize("chunk", [1, 5, 32, 1000])
def test_a_refused_event_stops_the_grouped_replay_where_the_plain_one_stops(chunk: int) -> None:
    lines = _log()
    # line 31 (host h2, judged after h0 and h1): a remedy the ladder refuses; later events of other hosts in the same
    # chunk were judged by then, but their steps must not come out
    lines.insert(30, _ev(1910.0, "h2", "remedy", action="polish", result="ok"))
    want, want_error = _until_error(run(_events(lines)))
    got, error = _until_error(run_grouped(_events(lines), chunk=chunk))
    assert want_error is not None and want_error.startswith("line 31: action:")
    assert (got, error) == (want, want_error)
    # every step the replays give is of an event before the refused one (in time order)
    assert want and all(d.time_wall < 1910.0 for _, opened, _, _ in want for d in opened)


@pytest.mark.parametrize("chunk", [1, 5, 32, 1000])
def test_the_earliest_of_two_refused_events_stops_the_grouped_replay(chunk: int) -> None:
    lines = _log()
    # host h0 (judged first in a chunk) refuses an event earlier in the log than host h2 does
    lines.insert(60, _ev(2810.0, "h2", "remedy", action="polish", result="ok"))
    lines.insert(30, _ev(1910.0, "h0", "remedy", action="buff", result="ok"))
    want, want_error = _until_error(run(_events(lines)))
    got, error = _until_error(run_grouped(_events(lines), chunk=chunk))
    assert want_error is not None and want_error.startswith("line 31: action:")
    assert (got, error) == (want, want_error)


@pytest.mark.parametrize("chunk", [1, 5, 32, 1000])
def test_a_line_that_does_not_parse_stops_the_grouped_replay_after_the_events_before_it(
        chunk: int) -> None:
    lines = _log()
    lines.insert(50, '{"time": 2525.0, "host": "h1", "gpu": 0, "kind": "thermal"')
    want, want_error = _until_error(run(_events(lines)))
    got, error = _until_error(run_grouped(_events(lines), chunk=chunk))
    assert want_error is not None and want_error.startswith("line 51: not JSON")
    assert (got, error) == (want, want_error)
    assert want
