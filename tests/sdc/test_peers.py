from __future__ import annotations

from rasd.sdc.faults import InjectedFault
from rasd.sdc.gemm import golden_gemm
from rasd.sdc.peers import cross_device_vote, throughput_verdict, vote_verdict
from rasd.sdc.results import Result

P, F, I = Result.PASS, Result.FAIL, Result.INCONCLUSIVE


def test_vote_verdict_table() -> None:
    assert vote_verdict({0: "a", 1: "a", 2: "b"}) == {0: P, 1: P, 2: F}
    assert vote_verdict({0: "a", 1: "a"}) == {0: P, 1: P}
    assert vote_verdict({0: "a", 1: "b"}) == {0: I, 1: I}  # no majority: never pass
    assert vote_verdict({0: "a", 1: "a", 2: "b", 3: "b"}) == {g: I for g in range(4)}
    assert vote_verdict({0: "a", 1: "b", 2: "c"}) == {g: I for g in range(3)}
    assert vote_verdict({0: "a"}) == {0: I}


def test_throughput_verdict_flags_the_slow_device_only() -> None:
    out = throughput_verdict({0: 100.0, 1: 101.0, 2: 99.0, 3: 80.0}, tolerance=0.1)
    assert [out[g][0] for g in range(4)] == [P, P, P, F]
    assert abs(out[3][1] - 0.8) < 1e-9
    assert throughput_verdict({0: 100.0}, 0.1)[0][0] is I
    assert throughput_verdict({0: 95.0, 1: 100.0}, 0.1)[0][0] is P


def test_vote_names_the_device_that_is_wrong_the_same_way_every_time(make_ws) -> None:
    fault = InjectedFault(gpu=2, kind="gemm_bitflip", bit=1, deterministic=True, seed=4)
    wss = [make_ws(g, *([fault] if g == 2 else [])) for g in range(4)]
    results = {r.gpu: r for r in cross_device_vote(wss, seed=3, n=64, dtype="float32")}
    assert [results[g].result for g in range(4)] == [P, P, F, P]
    ev = results[2].evidence
    assert ev["elements"] == 1 and ev["first"][0]["differing_bits"] == [1]
    assert ev["digest"] != ev["majority_digest"]
    # A check of the device against itself (re-running) sees the same answer twice; the golden
    # reference and the vote do not.
    assert golden_gemm(wss[2], 3, 64, "float32").result is F


def test_vote_groups_devices_by_model(make_engine) -> None:
    from rasd.sdc.engines import NumpyEngine
    from rasd.sdc.gemm import Workspace

    wss = [Workspace(NumpyEngine(g, model="a" if g < 2 else "b")) for g in range(3)]
    results = {r.gpu: r for r in cross_device_vote(wss, seed=0, n=32, dtype="float32")}
    assert results[0].result is P and results[1].result is P
    assert results[2].result is I and "no peer" in results[2].evidence["why"]
