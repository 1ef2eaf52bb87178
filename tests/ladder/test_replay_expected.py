"""`rasd replay` writes the same report as it always has, byte for byte: a stored fleet log (ten
days of 2,048 hosts from the replay benchmark's generator, the Llama 3 failure mix at a low noise
rate: Xid bursts, ECC, NVLink, PCIe, remedies, decisions that expire and that are remedied) and
the report rasd wrote for it before its replay path was made leaner. In one process and spread
over worker processes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rasd.ladder.replay_jobs import Options, report, report_parallel

HERE = Path(__file__).parent / "expected"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("fleet") / "fleet-10d.jsonl"
    path.write_bytes(gzip.decompress((HERE / "fleet-10d.jsonl.gz").read_bytes()))
    expected = gzip.decompress((HERE / "fleet-10d.report.gz").read_bytes()).decode()
    return path, expected


def _first_difference(got: str, want: str) -> str:
    for i, (a, b) in enumerate(zip(got.splitlines(), want.splitlines()), 1):
        if a != b:
            return f"line {i}:\n  got  {a}\n  want {b}"
    return f"lengths differ: {len(got.splitlines())} lines, want {len(want.splitlines())}"


def test_report_is_the_stored_one(fleet: tuple[Path, str]) -> None:
    path, expected = fleet
    out: list[str] = []
    o = report([str(path)], Options(year=2024), out.append)
    got = "".join(out)
    assert o.error is None
    assert got == expected, _first_difference(got, expected)
    assert (o.decisions, o.closed) == (1401, 143)
    assert [(st.events, st.lines) for _, st in o.stats] == [(2078, 2078)]


def test_report_over_workers_is_the_stored_one(fleet: tuple[Path, str]) -> None:
    path, expected = fleet
    out: list[str] = []
    o = report_parallel([str(path)], Options(year=2024), out.append, 3)
    got = "".join(out)
    assert o.error is None
    assert got == expected, _first_difference(got, expected)
    assert (o.decisions, o.closed) == (1401, 143)
