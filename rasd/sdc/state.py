"""The SDC part of the snapshot: immutable, built by the service, read by the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The last result of one check on one GPU."""

    gpu: int
    check: str
    result: str  # pass | fail | inconclusive
    time_wall: float
    seconds: float
    gflops: float | None


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why the checks cannot run on this node now, and when they are tried again."""

    reason: str  # one line for people (the engine's or the driver's words)
    permanent: bool  # no engine can exist in this installation: never tried again until a restart
    since_wall: float  # Unix time of the first failure in this spell
    failures: int  # failed tries in a row (a try counts from when it starts until it answers)
    retry_wall: float | None  # Unix time from which the next check is a retry; None when permanent


@dataclass(frozen=True, slots=True)
class SdcState:
    checks: tuple[CheckStatus, ...] = ()
    runs: Mapping[tuple[int, str, str], int] = field(default_factory=dict)  # (gpu, check, result) -> count
    check_seconds: Mapping[tuple[int, str], float] = field(default_factory=dict)  # (gpu, check) -> total s
    accusations: Mapping[tuple[int, str], int] = field(default_factory=dict)  # (gpu, outcome) -> count
    suspects: frozenset[int] = frozenset()
    technician: frozenset[int] = frozenset()  # GPUs flagged for a person (repeated unreproduced accusations)
    gflops: Mapping[int, float] = field(default_factory=dict)  # latest GEMM rate per GPU (GFLOP/s)
    running: frozenset[int] = frozenset()  # GPUs with a check in progress
    gpus: tuple[int, ...] = ()
    unavailable: Unavailable | None = None  # None: the checks can run (or none has needed them yet)
    unavailable_tries: int = 0  # tries that found the checks unavailable, since the start
