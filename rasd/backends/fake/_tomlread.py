"""A checked reader over one TOML table: every bad key becomes a "key: why; fix" problem.

Problems are collected, never raised, so a file with five mistakes reports all five at once.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

_MISSING = object()


class TableReader:
    def __init__(self, table: dict[str, Any], prefix: str, problems: list[str]):
        self.table = table
        self.prefix = prefix
        self.problems = problems
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def problem(self, name: str, why: str) -> None:
        self.problems.append(f"{self.key(name)}: {why}")

    def has(self, name: str) -> bool:
        return name in self.table

    def _get(self, name: str, required: bool) -> Any:
        self._seen.add(name)
        if name in self.table:
            return self.table[name]
        if required:
            self.problem(name, "is required; add it")
        return _MISSING

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        required: bool = False,
        integer: bool = False,
    ) -> Any:
        v = self._get(name, required)
        if v is _MISSING:
            return default
        what = "a whole number" if integer else "a number"
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
            self.problem(name, f"{v!r} is not {what}; write e.g. {name} = {lo if lo is not None else 1}")
            return default
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.problem(name, f"{v!r} is out of range; use a value {rng}")
            return default
        return v if integer else float(v)

    def integer(self, name: str, default: int | None = None, **kw: Any) -> Any:
        return self.number(name, default, integer=True, **kw)

    def flag(self, name: str, default: bool = False) -> bool:
        v = self._get(name, False)
        if v is _MISSING:
            return default
        if not isinstance(v, bool):
            self.problem(name, f"{v!r} is not true or false; write {name} = true")
            return default
        return v

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        v = self._get(name, required)
        if v is _MISSING:
            return default
        if not isinstance(v, str):
            self.problem(name, f"{v!r} is not a string; quote it")
            return default
        return v

    def choice(
        self, name: str, choices: Iterable[str], default: str | None = None, *, required: bool = False
    ) -> Any:
        options = tuple(choices)
        v = self.text(name, None, required=required)
        if v is None:
            return default
        if v not in options:
            self.problem(name, f"unknown value {v!r}; use one of {', '.join(options)}")
            return default
        return v

    def choices(self, name: str, choices: Iterable[str], default: tuple[str, ...] = ()) -> tuple[str, ...]:
        options = tuple(choices)
        v = self._get(name, False)
        if v is _MISSING:
            return default
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problem(name, f"{v!r} is not a list of strings; write e.g. {name} = [{options[0]!r}]")
            return default
        bad = [x for x in v if x not in options]
        if bad:
            self.problem(name, f"unknown value {bad[0]!r}; use any of {', '.join(options)}")
            return default
        return tuple(v)

    def integers(self, name: str, *, lo: int = 0, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        v = self._get(name, False)
        if v is _MISSING:
            return default
        if not isinstance(v, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v
        ):
            self.problem(name, f"{v!r} is not a list of whole numbers >= {lo}; write e.g. {name} = [0, 4096]")
            return default
        return tuple(v)

    def raw(self, name: str) -> Any:
        v = self._get(name, False)
        return None if v is _MISSING else v

    def finish(self) -> None:
        """Report keys nobody asked for (typos are the usual cause)."""
        for name in self.table:
            if name not in self._seen:
                known = ", ".join(sorted(self._seen))
                self.problem(name, f"unknown key; known keys here: {known}")
