"""What a check returns: pass, fail or inconclusive, with evidence; and how results combine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


class Cancelled(RuntimeError):
    """A check stopped between steps because the daemon is stopping (no result to report)."""


class ChecksUnavailable(ValueError):
    """The checks cannot run on this node; the message is the reason, one line for people.
    ``permanent``: no engine can exist in this installation (never tried again until a restart)."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


class Result(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def combine(results: Iterable[Result]) -> Result:
    """Fail beats inconclusive beats pass; nothing at all is inconclusive, never pass."""
    seen = set(results)
    if Result.FAIL in seen:
        return Result.FAIL
    if Result.INCONCLUSIVE in seen or not seen:
        return Result.INCONCLUSIVE
    return Result.PASS


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check on one GPU. ``gflops`` is the device GEMM rate seen by the check, if any."""

    gpu: int
    name: str  # golden_gemm, abft, freivalds, memory, vote, throughput, available
    result: Result
    seconds: float
    gflops: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "result": self.result.value, "seconds": round(self.seconds, 4)}
        if self.gflops is not None:
            out["gflops"] = round(self.gflops, 2)
        if self.result is not Result.PASS:
            out["evidence"] = dict(self.evidence)
        return out

    @classmethod
    def from_dict(cls, gpu: int, d: Mapping[str, Any]) -> CheckResult:
        """A check read back from its dict (``to_dict``'s keys; a check process sends every
        check's evidence and unrounded seconds)."""
        return cls(gpu, str(d["name"]), Result(d["result"]), float(d["seconds"]),
                   None if d.get("gflops") is None else float(d["gflops"]), dict(d.get("evidence", {})))


def merge(gpu: int, name: str, parts: list[CheckResult]) -> CheckResult:
    """One row of the report from several sub-runs (dtypes, patterns, rounds) of one check.

    Evidence keeps every non-passing part (at most 8, then a count) so a failure stays reproducible.
    """
    result = combine(p.result for p in parts)
    bad = [dict(p.evidence) for p in parts if p.result is not Result.PASS]
    evidence: dict[str, Any] = {"runs": len(parts), "failed": sum(p.result is Result.FAIL for p in parts)}
    if bad:
        evidence["details"] = bad[:8]
        if len(bad) > 8:
            evidence["more"] = len(bad) - 8
    rates = [p.gflops for p in parts if p.gflops is not None]
    return CheckResult(
        gpu=gpu,
        name=name,
        result=result,
        seconds=sum(p.seconds for p in parts),
        gflops=max(rates) if rates else None,
        evidence=evidence,
    )


@dataclass(frozen=True, slots=True)
class GpuReport:
    gpu: int
    checks: tuple[CheckResult, ...]

    @property
    def result(self) -> Result:
        return combine(c.result for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "result": self.result.value, "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GpuReport:
        gpu = int(d["gpu"])
        return cls(gpu, tuple(CheckResult.from_dict(gpu, c) for c in d["checks"]))


@dataclass(frozen=True, slots=True)
class RunReport:
    level: str
    seed: int
    started_wall: float
    seconds: float
    gpus: tuple[GpuReport, ...]
    notes: tuple[str, ...] = ()

    @property
    def result(self) -> Result:
        return combine(g.result for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result.value,
            "level": self.level,
            "seed": self.seed,
            "started_wall": self.started_wall,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "gpus": [g.to_dict() for g in self.gpus],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunReport:
        return cls(str(d["level"]), int(d["seed"]), float(d["started_wall"]), float(d["seconds"]),
                   tuple(GpuReport.from_dict(g) for g in d["gpus"]), tuple(str(n) for n in d.get("notes", ())))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One validation run: its report, and per checked GPU each round's combined result."""

    report: RunReport
    rounds: Mapping[int, tuple[Result, ...]]

